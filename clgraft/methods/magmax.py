"""MagMax (Marczak et al. 2024, ECCV; docs/methods.md): fine-tune the tasks sequentially, each from the weights after
the previous one; after task i evaluate θ₀ + λ·maxmag(τ_1..τ_i), τ_t = θ_t − θ₀ the sequential checkpoints' task
vectors and maxmag the per-entry value of largest magnitude. The next task trains on from θ_i, not from the merged
model. λ is chosen on the dev sets of the tasks so far, as merge chooses its λ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.base import Method, TaskStep

if TYPE_CHECKING:
    import torch

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class MagMaxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lambdas: list[float] = Field(default=[0.5, 0.7, 1.0], min_length=1, description="λ grid (dev-selected)")


class MagMax(Method):
    name = "magmax"
    data_kept = "none"
    per_task_state = "none (one merged vector and the last checkpoint)"
    relative_cost = 1.5
    description = "sequential fine-tuning; evaluate θ₀ + λ·(per-entry max-magnitude task vector), λ chosen on dev"
    paper = "Marczak et al. 2024, MagMax: Leveraging Model Merging for Seamless Continual Learning (ECCV)"
    cite = ("marczak2024magmax",)
    Options = MagMaxOptions
    keeps_state = True

    @classmethod
    def kept(cls, options: MagMaxOptions, run: RunSizes) -> list[Kept]:
        """The max-magnitude vector, folded task by task, and its λ: the answers are θ₀ + λ·maxmag while the model
        trains on from the last sequential checkpoint."""
        from clgraft.methods.memory import Dense

        return [Dense(run.blocks, "shared"), Dense(1, "shared")]

    def setup(self, model: HeadedModel) -> None:
        from clgraft.model.headed import BlockView, BodySnapshot

        self.view = BlockView(model.body)
        self.theta0 = BodySnapshot(model, self.view)
        self.sequential: BodySnapshot | None = None  # θ_i, where the next task's fine-tuning starts
        self.merged: torch.Tensor | None = None  # maxmag(τ_1..τ_i), folded task by task: one vector kept
        self.choices: list[dict] = []

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        from clgraft.grafting.merging import max_magnitude
        from clgraft.model.headed import BodySnapshot

        if self.sequential is not None:
            self.sequential.restore(model)
        losses = super().train(model, step)
        self.sequential = BodySnapshot(model, self.view)
        tau = self.sequential.blocks - self.theta0.blocks
        self.merged = merged = tau if self.merged is None else max_magnitude([self.merged, tau])
        score, lam = self._choose(model, merged, step.index)
        self.theta0.restore(model, self.theta0.blocks + lam * merged)
        self.choices.append({"after_task": step.index + 1, "dev_acc": score, "lam": lam})
        return losses

    def _choose(self, model: HeadedModel, merged: torch.Tensor, upto: int) -> tuple[float, float]:
        """The λ of the grid with the best mean dev accuracy over the tasks so far (the first wins ties)."""
        best = None
        for lam in self.options.lambdas:
            self.theta0.restore(model, self.theta0.blocks + lam * merged)
            score = self.dev_accuracy(model, upto)
            if best is None or score > best[0]:
                best = (score, lam)
        return best

    def report(self) -> dict:
        return {
            "grid": self.options.lambdas,
            "chosen_on_dev": self.choices,
        }
