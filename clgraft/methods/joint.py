"""Joint (multitask) training through avalanche-lib's `JointTraining`: the upper bound every method is placed under.

All tasks are trained in one phase of T × --steps batches drawn from their union; R keeps its (T+1)×T shape with
row 0 before training, row T after the single phase, and rows 1..T−1 empty (null), so only ACC is defined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clgraft.methods.avalanche_engine import AvalancheMethod

if TYPE_CHECKING:
    from pydantic import BaseModel

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class Joint(AvalancheMethod):
    name = "joint"
    data_kept = "all of every task (trains on all at once)"
    per_task_state = "none"
    relative_cost = 0.85
    description = "multitask upper bound: one training phase on all tasks at once, avalanche-lib JointTraining"
    paper = "Caruana 1997, Multitask Learning (Machine Learning); the standard CL upper bound"
    cite = ("caruana1997multitask", "lomonaco2021avalanche")
    joint = True
    strategy_class = "JointTraining"

    @classmethod
    def kept(cls, options: BaseModel, run: RunSizes) -> list[Kept]:
        """Every training example of every task: it trains on all of them at once."""
        from clgraft.methods.memory import Examples

        return [Examples(t, n) for t, n in enumerate(run.train_examples)]

    def train_all(self, model: HeadedModel, seed: int) -> list[float]:
        """One training phase on the union of the stream's tasks."""
        indices = list(range(len(self.ctx.tasks)))
        steps = self.ctx.opts.steps * len(indices)
        return self._run(model, indices, steps, seed, f"joint ({len(indices)} tasks)", None)
