"""Averaged GEM (Chaudhry et al. 2019) through avalanche-lib's `AGEMPlugin`: each gradient whose dot product with
the gradient on a sample of the episodic memory is negative is projected so the memory loss does not rise.

Two things make avalanche-lib's plugin do that on clgraft's model, and both are tested:
- gradients are cleared on the whole model at every `zero_grad` (`clear_whole_model`): avalanche clears only what
  the optimiser holds, and clgraft's optimiser holds only the current head, so earlier heads' gradients from the
  memory batches piled up in both the current and the reference gradient and kept their dot product positive —
  the projection never fired;
- every projection is counted (`projections` in run.json, per task), so a run shows that the method acted.
The memory holds `patterns_per_exp` random examples of each finished task (avalanche's choice), a stated share of
its training set (run.json: memory_per_task, memory_fraction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.errors import ClgraftError
from clgraft.methods.avalanche_engine import AvalancheMethod, memory_report
from clgraft.methods.base import TaskStep

if TYPE_CHECKING:
    from clgraft.model.headed import HeadedModel


class AGemOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    patterns_per_exp: int = Field(
        default=8, gt=0, description="examples kept in memory per task (8 = a quarter of a 2-label k = 16 task)"
    )
    sample_size: int = Field(default=8, gt=0, description="memory examples drawn for each reference gradient")


def _counting_plugin(patterns_per_exp: int, sample_size: int):
    import torch
    from avalanche.training.plugins import AGEMPlugin

    class CountingAGEM(AGEMPlugin):
        """avalanche-lib's AGEMPlugin, counting the iterations whose gradient it projects."""

        def __init__(self):
            super().__init__(patterns_per_exp, sample_size)
            self.checked = 0
            self.projected = 0

        @torch.no_grad()
        def after_backward(self, strategy, **kwargs):
            if len(self.buffers) > 0:
                current = [
                    p.grad.view(-1) if p.grad is not None else torch.zeros(p.numel(), device=strategy.device)
                    for p in strategy.model.parameters()
                ]
                self.checked += 1
                self.projected += bool(torch.dot(torch.cat(current), self.reference_gradients) < 0)
            super().after_backward(strategy, **kwargs)

    return CountingAGEM()


class AGem(AvalancheMethod):
    name = "agem"
    data_kept = "`patterns_per_exp` random examples per task"
    per_task_state = "its memory examples"
    description = "projects each gradient so the loss on a memory of past tasks does not rise, avalanche-lib AGEM"
    paper = "Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR)"
    cite = ("chaudhry2019agem", "lomonaco2021avalanche")
    Options = AGemOptions
    keeps_state = True
    strategy_class = "Naive"  # avalanche's AGEM strategy is Naive + AGEMPlugin; the plugin here counts projections

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        if options.sample_size < len(ctx.tasks) - 1:  # avalanche draws sample_size // (finished tasks) per task
            raise ClgraftError(
                f"--opt sample_size={options.sample_size}: A-GEM draws sample_size // (finished tasks) memory examples "
                f"of each task, so it needs at least {len(ctx.tasks) - 1} for this {len(ctx.tasks)}-task stream"
            )
        self.agem = _counting_plugin(options.patterns_per_exp, options.sample_size)
        self.per_task: list[dict] = []

    def plugins(self):
        return [self.agem]

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        checked, projected = self.agem.checked, self.agem.projected
        losses = super().train(model, step)
        self.per_task.append({"checked": self.agem.checked - checked, "projected": self.agem.projected - projected})
        return losses

    def kept_bytes(self) -> int:
        """patterns_per_exp examples per task."""
        return self.options.patterns_per_exp * len(self.ctx.tasks) * self._example_bytes()

    def report(self) -> dict:
        kept = [min(self.options.patterns_per_exp, len(t.train)) for t in self.ctx.tasks]
        return {**super().report(), **memory_report(self.ctx.tasks, kept), "projections": self.per_task}
