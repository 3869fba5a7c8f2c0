"""Merging baselines (DESIGN §4): fine-tune each task from θ₀, then evaluate θ₀ + merge(τ_1..τ_i) after task i.

`merge` picks task arithmetic (λ Σ τ), TIES (trim to the top density of |τ|, elect signs, disjoint mean, λ) or DARE
(drop p, rescale, λ Σ). λ (and TIES's density, DARE's p) are chosen on the dev sets of the tasks merged so far —
mean dev accuracy over the grid — never on test; the grid and each choice are recorded in run.json. mergekit works
on checkpoint files through YAML configs and peft merges LoRA adapters; neither fits in-memory flat task vectors
with per-task heads, so the arithmetic is `clgraft/merging.py` (pure functions, tested by hand).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from clgraft.merging import combine_vectors
from clgraft.methods.base import Method, TaskStep
from clgraft.methods.grafting import set_blocks
from clgraft.models import BlockView, HeadedModel
from clgraft.train import accuracy, predict


class MergeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    merge: Literal["task-arithmetic", "ties", "dare"] = "task-arithmetic"
    lambdas: list[float] = Field(default=[0.3, 0.5, 0.7, 1.0], min_length=1, description="λ grid (dev-selected)")
    densities: list[float] = Field(default=[0.1, 0.2], min_length=1, description="TIES density grid")
    drops: list[float] = Field(default=[0.5, 0.9], min_length=1, description="DARE drop grid")


class MergeTaskVectors(Method):
    name = "merge"
    relative_cost = 4.0
    description = "task arithmetic / TIES / DARE over independently fine-tuned task vectors, λ chosen on dev"
    paper = "Ilharco et al. 2023 (task arithmetic); Yadav et al. 2023 (TIES); Yu et al. 2024 (DARE)"
    cite = ("ilharco2023editing",)
    Options = MergeOptions
    keeps_state = True
    from_theta0 = True

    @classmethod
    def citations(cls, options: dict) -> tuple[str, ...]:
        merge = options.get("merge", "task-arithmetic")
        return {"ties": ("yadav2023ties",), "dare": ("yu2024dare",)}.get(merge, ()) + cls.cite

    def setup(self, model: HeadedModel) -> None:
        self.view = BlockView(model.body)
        self.theta0_body = {k: v.detach().clone() for k, v in model.body.state_dict().items()}
        self.theta0 = self.view.flatten(dict(model.body.named_parameters()))
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

    def _dev_score(self, model: HeadedModel, upto: int) -> float:
        scores = []
        for task in self.ctx.tasks[: upto + 1]:
            logits = predict(model, task.head, task.dev, self.ctx.opts.eval_batch_size, self.ctx.device)
            scores.append(accuracy(logits, task.dev.labels + task.label_offset))
        return sum(scores) / len(scores)

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        model.body.load_state_dict(self.theta0_body)
        losses = super().train(model, step)
        self.taus.append(self.view.flatten(dict(model.body.named_parameters())) - self.theta0)
        model.body.load_state_dict(self.theta0_body)
        best = None
        for rest in self._settings():  # sparsify and elect once per setting; λ only scales the result
            combined = combine_vectors(self.taus, self.options.merge, seed=step.seed, **rest)
            for lam in self.options.lambdas:
                merged = lam * combined
                set_blocks(model, self.view, self.theta0 + merged)
                score = self._dev_score(model, step.index)
                if best is None or score > best[0]:
                    best = (score, {"lam": lam, **rest}, merged)
        set_blocks(model, self.view, self.theta0 + best[2])
        self.choices.append({"after_task": step.index + 1, "dev_acc": best[0], **best[1]})
        return losses

    def report(self) -> dict:
        return {
            "merge": self.options.merge,
            "grid": self._grid(),
            "chosen_on_dev": self.choices,
            "extra_bytes_per_task": self.view.numel * 4,
        }
