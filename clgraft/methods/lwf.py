"""Learning without Forgetting through avalanche-lib's `LwF` strategy (distillation from the previous model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.avalanche_engine import AvalancheMethod

if TYPE_CHECKING:
    from clgraft.methods.memory import Kept, RunSizes


class LwfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(default=1.0, ge=0, description="weight of the distillation loss")
    temperature: float = Field(default=2.0, gt=0, description="softmax temperature of the distillation")


class Lwf(AvalancheMethod):
    name = "lwf"
    data_kept = "none"
    per_task_state = "none (one copy of the previous model)"
    relative_cost = 2.5
    description = "distils the previous model's outputs on earlier heads/classes while training, avalanche-lib LwF"
    paper = "Li & Hoiem 2017, Learning without Forgetting (TPAMI)"
    cite = ("li2017lwf", "lomonaco2021avalanche")
    Options = LwfOptions
    keeps_state = True
    strategy_class = "LwF"

    @classmethod
    def kept(cls, options: LwfOptions, run: RunSizes) -> list[Kept]:
        """The previous model (the teacher): the trained body, and a shared head, which keeps training (task heads
        are frozen after their task, so the model's own are the teacher's)."""
        from clgraft.methods.memory import Dense

        head = run.head_parameters if run.head_mode == "shared" else 0
        return [Dense(run.trained + head, "shared")]

    def strategy_kwargs(self):
        return {"alpha": self.options.alpha, "temperature": self.options.temperature}
