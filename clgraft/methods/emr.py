"""EMR-merging (Huang et al. 2024, NeurIPS; docs/methods.md): Elect, Mask & Rescale, tuning-free. Tasks are fine-tuned
from θ₀; after task i, over τ_1..τ_i: the unified sign γ = sign(Σ τ_t) (0 counts as −1, as the official code),
the unified vector τ_uni = γ ⊙ max_t |τ_t| over the tasks whose τ_t agrees with γ there, per task a mask
M_t = 1{τ_t ⊙ γ > 0} and a rescaler λ_t = Σ_k mean|τ_t,k| / Σ_k mean|M_t ⊙ τ_uni,k| over the parameter
tensors k. Task t is evaluated as θ₀ + λ_t · M_t ⊙ τ_uni with its head: it needs the task id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clgraft.methods.base import FromTheta0, TaskStep

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import BlockView, HeadedModel


def emr_merge(taus: list[torch.Tensor], view: BlockView) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """(τ_uni, the masks M_t, the rescalers λ_t) of flat task vectors; the rescalers sum per-tensor means, as the
    official `emr_merge` does over a state dict."""
    import torch

    total = torch.stack(taus).sum(0)
    sign = (total > 0).float() * 2 - 1
    masks = [tau * sign > 0 for tau in taus]
    magnitude = torch.stack([(tau * mask).abs() for tau, mask in zip(taus, masks, strict=True)]).amax(0)
    unified = magnitude * sign

    def mean_abs_per_tensor(flat: torch.Tensor) -> float:
        return float(sum(part.abs().mean() for part in view.split(flat).values()))

    rescalers = [
        mean_abs_per_tensor(tau) / mean_abs_per_tensor(unified * m) for tau, m in zip(taus, masks, strict=True)
    ]
    return unified, masks, rescalers


class Emr(FromTheta0):
    name = "emr"
    data_kept = "none"
    per_task_state = "a task vector until the merge, then a mask and a rescaler"
    relative_cost = 2.0
    description = "EMR-merging: elected unified task vector with a mask and a rescaler per task (task id at test time)"
    paper = "Huang et al. 2024, EMR-Merging: Tuning-Free High-Performance Model Merging (NeurIPS)"
    cite = ("huang2024emr",)
    needs_task_id = True
    keeps_state = True

    @classmethod
    def kept(cls, options: BaseModel, run: RunSizes) -> list[Kept]:
        """Every τ_t: each new task changes the elected sign, so τ_uni, every mask and every rescaler are made again
        from all of them (the paper's one τ_uni, a bit per parameter and a rescaler per task suffice only once the
        stream is over)."""
        from clgraft.methods.memory import Dense

        return [Dense(run.blocks, "task") for _ in range(run.tasks)]

    def setup(self, model: HeadedModel) -> None:
        super().setup(model)
        self.taus: list[torch.Tensor] = []
        self.unified: torch.Tensor | None = None
        self.masks: list[torch.Tensor] = []
        self.rescalers: list[float] = []

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        losses = super().train(model, step)
        self.taus.append(self.view.flatten(dict(model.body.named_parameters())) - self.theta0.blocks)
        self.unified, self.masks, self.rescalers = emr_merge(self.taus, self.view)
        self.theta0.restore(model)
        return losses

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """θ₀ + λ_t · M_t ⊙ τ_uni for a task learned so far, θ₀ for one not learned yet."""
        if self.unified is None:
            return
        if task_index < len(self.masks):
            delta = self.rescalers[task_index] * (self.masks[task_index] * self.unified)
            self.theta0.restore(model, self.theta0.blocks + delta)
        else:
            self.theta0.restore(model)

    def report(self) -> dict:
        return {
            "rescalers": self.rescalers,
            "mask_fractions": [float(m.float().mean()) for m in self.masks],
        }
