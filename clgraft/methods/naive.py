"""Naive sequential fine-tuning: train on each task in turn, nothing against forgetting (the lower bound).

`engine=avalanche` runs the same thing through avalanche-lib's `Naive` strategy, to check that both give one R.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from clgraft.methods.avalanche_engine import AvalancheMethod
from clgraft.methods.base import Method, TaskStep

if TYPE_CHECKING:
    from clgraft.model.headed import HeadedModel


class NaiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    engine: Literal["clgraft", "avalanche"] = "clgraft"


class _AvalancheNaive(AvalancheMethod):
    strategy_class = "Naive"


class Naive(Method):
    name = "naive"
    data_kept = "none"
    per_task_state = "none"
    description = "sequential fine-tuning on each task in turn, no protection against forgetting (lower bound)"
    paper = "McCloskey & Cohen 1989, catastrophic interference; via avalanche-lib Naive with engine=avalanche"
    cite = ("mccloskey1989catastrophic", "lomonaco2021avalanche")
    Options = NaiveOptions

    @classmethod
    def runs_clgraft_loop(cls, options: NaiveOptions) -> bool:
        return options.engine == "clgraft"

    def __init__(self, options: NaiveOptions, ctx):
        super().__init__(options, ctx)
        self._avalanche = _AvalancheNaive(options, ctx) if options.engine == "avalanche" else None

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        if self._avalanche is not None:
            return self._avalanche.train(model, step)
        return super().train(model, step)
