"""Averaged GEM through avalanche-lib's `AGEM` strategy (gradient projection against a memory of past tasks)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.avalanche_engine import AvalancheMethod


class AGemOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    patterns_per_exp: int = Field(default=64, gt=0, description="examples kept in memory per task")
    sample_size: int = Field(default=32, gt=0, description="memory examples drawn for each reference gradient")


class AGem(AvalancheMethod):
    name = "agem"
    description = "projects each gradient so the loss on a memory of past tasks does not rise, avalanche-lib AGEM"
    paper = "Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR)"
    cite = ("chaudhry2019agem", "lomonaco2021avalanche")
    Options = AGemOptions
    keeps_state = True
    strategy_class = "AGEM"

    def kept_bytes(self) -> int:
        """patterns_per_exp examples per task."""
        return self.options.patterns_per_exp * len(self.ctx.tasks) * self._example_bytes()

    def strategy_kwargs(self):
        return {"patterns_per_exp": self.options.patterns_per_exp, "sample_size": self.options.sample_size}
