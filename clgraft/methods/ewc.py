"""Elastic Weight Consolidation through avalanche-lib's `EWC` strategy (separate penalty per past task)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.avalanche_engine import AvalancheMethod


class EwcOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ewc_lambda: float = Field(
        default=1e6,
        ge=0,
        description="weight of the quadratic penalty; the diagonal Fisher of a fine-tuned transformer is tiny "
        "(at 1e3 the penalty moved MiniLM's loss by ~1e-4 on LM-BFF), so the default is 1e6",
    )


class Ewc(AvalancheMethod):
    name = "ewc"
    relative_cost = 1.9
    description = "quadratic penalty on moving weights important to earlier tasks (diagonal Fisher), avalanche-lib EWC"
    paper = "Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks (PNAS)"
    cite = ("kirkpatrick2017ewc", "lomonaco2021avalanche")
    Options = EwcOptions
    keeps_state = True
    strategy_class = "EWC"

    def kept_bytes(self) -> int:
        """mode=separate keeps an importance tensor and a copy of the weights per task."""
        return 2 * self._param_bytes() * len(self.ctx.tasks)

    def strategy_kwargs(self):
        return {"ewc_lambda": self.options.ewc_lambda, "mode": "separate"}
