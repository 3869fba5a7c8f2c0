"""Averaged GEM (Chaudhry et al. 2019) on avalanche-lib's `AGEMPlugin`: each gradient g whose dot product with the
gradient r on a sample of the episodic memory is negative is replaced by the paper's projection g − (gᵀr / rᵀr)·r,
so that to first order the step does not raise the memory loss.

The projection is taken over one vector, the parameters the optimiser steps (the body's trainable parameters and
the current task's head), as the official code (facebookresearch/agem, `model/model.py`) takes it over the variables
its optimiser applies the gradients to. Earlier tasks' heads are in no optimiser in clgraft, so their share of r
cannot change the memory loss through the step. avalanche-lib's plugin counts that share in rᵀr, which shrinks the
correction, and writes the projection back only where the current gradient exists, which drops the heads' part of
it: after a projection gᵀr was still about half its value before. Three things make the plugin do A-GEM on clgraft's
model, all tested:
- g and r are taken over the optimiser's parameters, a missing gradient counting as 0, and the projected vector is
  written back to each of them (`ProjectingAGEM`);
- gradients are cleared on the whole model at every `zero_grad` (`clear_whole_model`): avalanche clears only what
  the optimiser holds, and clgraft's optimiser holds only the current head, so earlier heads' gradients from the
  memory batches piled up in both g and r and kept their dot product positive — the projection never fired;
- every projection is counted (`projections` in run.json, per task), so a run shows that the method acted.
The memory holds `patterns_per_exp` random examples of each finished task (avalanche's choice), a stated share of
its training set (run.json: memory_per_task, memory_fraction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from clgraft.errors import ClgraftError
from clgraft.methods.avalanche_engine import AvalancheMethod, kept_examples, memory_report
from clgraft.methods.base import TaskStep

if TYPE_CHECKING:
    import torch
    from torch import nn

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class AGemOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    patterns_per_exp: int = Field(
        default=8, gt=0, description="examples kept in memory per task (8 = a quarter of a 2-label k = 16 task)"
    )
    sample_size: int = Field(default=8, gt=0, description="memory examples drawn for each reference gradient")


def optimised_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The parameters of `model` that `optimizer` steps, in the model's order: the vector A-GEM projects on."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [p for p in model.parameters() if id(p) in held]


def _part(whole: torch.Tensor, model: nn.Module, params: list[nn.Parameter]) -> torch.Tensor:
    """The entries of `params` in a flat vector over every parameter of `model` (avalanche's reference gradient)."""
    import torch

    everything = list(model.parameters())
    kept = {id(p) for p in params}
    pieces = whole.split([p.numel() for p in everything])
    return torch.cat([piece for p, piece in zip(everything, pieces, strict=True) if id(p) in kept])


def _flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    """The gradients of `params` as one vector, a missing gradient as zeros."""
    import torch

    return torch.cat([p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params])


def _write_grad(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Each parameter's share of `flat` as its gradient. One that neither loss reached (no gradient, share 0) keeps
    none, so AdamW skips it as it would without A-GEM; a zero gradient would still decay it."""
    for p, piece in zip(params, flat.split([p.numel() for p in params]), strict=True):
        if p.grad is not None:
            p.grad.copy_(piece.view_as(p))
        elif piece.any():
            p.grad = piece.view_as(p).clone()


def agem_plugin(patterns_per_exp: int, sample_size: int) -> Any:
    """avalanche-lib's AGEMPlugin (its memory, its sampling, its reference loss) projecting over the optimiser's
    parameters and counting the checks and projections; built here so that the registry does not load torch."""
    import torch
    from avalanche.training.plugins import AGEMPlugin

    class ProjectingAGEM(AGEMPlugin):
        """The paper's projection of g over the parameters the optimiser steps, counted."""

        def __init__(self):
            super().__init__(patterns_per_exp, sample_size)
            self.checked = 0
            self.projected = 0

        def before_training_iteration(self, strategy, **kwargs):
            """avalanche's reference gradient, cut to the optimiser's parameters."""
            super().before_training_iteration(strategy, **kwargs)
            if len(self.buffers) > 0:
                params = optimised_parameters(strategy.model, strategy.optimizer)
                self.reference_gradients = _part(self.reference_gradients, strategy.model, params)

        @torch.no_grad()
        def after_backward(self, strategy, **kwargs):
            """g ← g − (gᵀr / rᵀr)·r when gᵀr < 0, written to every parameter of the vector."""
            if len(self.buffers) == 0:
                return
            params = optimised_parameters(strategy.model, strategy.optimizer)
            g, r = _flat_grad(params), self.reference_gradients
            dot = torch.dot(g, r)
            self.checked += 1
            if dot < 0:
                self.projected += 1
                _write_grad(params, g - (dot / torch.dot(r, r)) * r)

    return ProjectingAGEM()


class AGem(AvalancheMethod):
    name = "agem"
    data_kept = "`patterns_per_exp` random examples per task"
    per_task_state = "its memory examples"
    description = "projects each gradient so the loss on a memory of past tasks does not rise, avalanche-lib AGEM"
    paper = "Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR)"
    cite = ("chaudhry2019agem", "lomonaco2021avalanche")
    Options = AGemOptions
    keeps_state = True
    strategy_class = "Naive"  # avalanche's AGEM strategy is Naive + AGEMPlugin; the plugin here is `agem_plugin`

    @classmethod
    def revision(cls, options: AGemOptions) -> int:
        """2: the paper's projection over the optimised parameters (2026-12-05); 1 projected avalanche-lib's way."""
        return 2

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        if options.sample_size < len(ctx.tasks) - 1:  # avalanche draws sample_size // (finished tasks) per task
            raise ClgraftError(
                f"--opt sample_size={options.sample_size}: A-GEM draws sample_size // (finished tasks) memory examples "
                f"of each task, so it needs at least {len(ctx.tasks) - 1} for this {len(ctx.tasks)}-task stream"
            )
        self.agem = agem_plugin(options.patterns_per_exp, options.sample_size)
        self.per_task: list[dict] = []

    def plugins(self):
        return [self.agem]

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        checked, projected = self.agem.checked, self.agem.projected
        losses = super().train(model, step)
        self.per_task.append({"checked": self.agem.checked - checked, "projected": self.agem.projected - projected})
        return losses

    @classmethod
    def kept(cls, options: AGemOptions, run: RunSizes) -> list[Kept]:
        """The memory: `patterns_per_exp` examples of each task (at most its training set)."""
        return kept_examples(run.report)

    def report(self) -> dict:
        kept = [min(self.options.patterns_per_exp, len(t.train)) for t in self.ctx.tasks]
        return {**memory_report(self.ctx.tasks, kept), "projections": self.per_task}
