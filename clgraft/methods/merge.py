"""Merging baselines (docs/methods.md): fine-tune each task from θ₀, then evaluate θ₀ + merge(τ_1..τ_i) after task i.

`merge` picks task arithmetic (λ Σ τ), TIES (trim to the top density of |τ|, elect signs, disjoint mean, λ) or DARE
(drop p, rescale, λ Σ). λ (and TIES's density, DARE's p) are chosen on the dev sets of the tasks merged so far —
mean dev accuracy over the grid — never on test; the grid and each choice are recorded in run.json. mergekit works
on checkpoint files through YAML configs and peft merges LoRA adapters; neither fits in-memory flat task vectors
with per-task heads, so the arithmetic is `clgraft/grafting/merging.py` (pure functions, tested by hand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.base import FromTheta0, TaskStep

if TYPE_CHECKING:
    import torch

    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class MergeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    merge: Literal["task-arithmetic", "ties", "dare"] = "task-arithmetic"
    lambdas: list[float] = Field(default=[0.3, 0.5, 0.7, 1.0], min_length=1, description="λ grid (dev-selected)")
    densities: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default=[0.1, 0.2], min_length=1, description="TIES density grid (the fraction of each τ kept, 0 to 1)"
    )
    drops: list[float] = Field(default=[0.5, 0.9], min_length=1, description="DARE drop grid")


class MergeTaskVectors(FromTheta0):
    name = "merge"
    data_kept = "none"
    per_task_state = "a task vector"
    relative_cost = 4.0
    description = "task arithmetic / TIES / DARE over independently fine-tuned task vectors, λ chosen on dev"
    paper = "Ilharco et al. 2023 (task arithmetic); Yadav et al. 2023 (TIES); Yu et al. 2024 (DARE)"
    cite = ("ilharco2023editing",)
    Options = MergeOptions
    keeps_state = True

    @classmethod
    def revision(cls, options: MergeOptions) -> int:
        """TIES 2: the official trim (⌊dN⌋ + 1 entries) and the majority sign for an entry summing to 0
        (2026-12-05); task arithmetic and DARE unchanged."""
        return 2 if options.merge == "ties" else 1

    @classmethod
    def citations(cls, options: dict) -> tuple[str, ...]:
        merge = options.get("merge", "task-arithmetic")
        return {"ties": ("yadav2023ties",), "dare": ("yu2024dare",)}.get(merge, ()) + cls.cite

    @classmethod
    def kept(cls, options: MergeOptions, run: RunSizes) -> list[Kept]:
        """Task arithmetic: the running sum Σ τ_t, one vector for all tasks. TIES and DARE: every τ_t, since each task
        trims (or drops) and elects over all of them again. The merged model is the one model answers come from."""
        from clgraft.methods.memory import Dense

        if options.merge == "task-arithmetic":
            return [Dense(run.blocks, "shared")]
        return [Dense(run.blocks, "task") for _ in range(run.tasks)]

    def setup(self, model: HeadedModel) -> None:
        super().setup(model)
        self.taus: list[torch.Tensor] = []
        self.choices: list[dict] = []

    def _settings(self) -> list[dict]:
        """The grid's settings other than λ: TIES's densities, DARE's drops, or none."""
        extra = {"ties": ("density", self.options.densities), "dare": ("drop", self.options.drops)}
        if self.options.merge not in extra:
            return [{}]
        key, values = extra[self.options.merge]
        return [{key: v} for v in values]

    def _grid(self) -> list[dict]:
        return [{"lam": lam, **rest} for rest in self._settings() for lam in self.options.lambdas]

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        from clgraft.model.headed import set_blocks

        losses = super().train(model, step)
        self.taus.append(self.view.flatten(dict(model.body.named_parameters())) - self.theta0.blocks)
        self.theta0.restore(model)
        score, choice, merged = self._choose(model, step)
        set_blocks(model, self.view, self.theta0.blocks + merged)
        self.choices.append({"after_task": step.index + 1, "dev_acc": score, **choice})
        return losses

    def _choose(self, model: HeadedModel, step: TaskStep) -> tuple[float, dict, torch.Tensor]:
        """The grid setting with the best mean dev accuracy over the tasks so far, and its merged vector."""
        from clgraft.grafting.merging import combine_vectors
        from clgraft.model.headed import set_blocks

        best = None
        for rest in self._settings():  # sparsify and elect once per setting; λ only scales the result
            combined = combine_vectors(self.taus, self.options.merge, seed=step.seed, **rest)
            for lam in self.options.lambdas:
                merged = lam * combined
                set_blocks(model, self.view, self.theta0.blocks + merged)
                score = self.dev_accuracy(model, step.index)
                if best is None or score > best[0]:
                    best = (score, {"lam": lam, **rest}, merged)
        return best

    def report(self) -> dict:
        return {
            "merge": self.options.merge,
            "grid": self._grid(),
            "chosen_on_dev": self.choices,
        }
