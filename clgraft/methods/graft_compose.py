"""graft-compose (docs/methods.md): fine-tune each task from θ₀, keep only its localized graft γ_t⊙τ_t, and evaluate the
composed model: task-aware (task j sees θ₀ + γ_j⊙τ_j and its head; needs the task id), union (θ₀ + Σ γ⊙τ) or stitch
(overlapping entries averaged). Grafts of tasks not yet learned are absent, so R row i composes tasks 1..i. The
embeddings stay at θ₀ (freeze_embeddings, on by default here), so every evaluated body is exactly θ₀ + grafts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from clgraft.methods.base import FromTheta0, TaskStep
from clgraft.methods.grafting import GraftOptions, localize_task, search_summary, task_graft

if TYPE_CHECKING:
    from clgraft.grafting.graft import Graft
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class ComposeOptions(GraftOptions):
    compose: Literal["task-aware", "union", "stitch"] = Field(
        default="task-aware", description="how the per-task grafts make the evaluated model"
    )


class GraftCompose(FromTheta0):
    name = "graft-compose"
    data_kept = "none"
    per_task_state = "a graft: a sparse mask and its τ values"
    relative_cost = 2.4
    description = (
        "fine-tune each task from θ₀, keep its sparse graft, evaluate grafts composed (task-aware/union/stitch)"
    )
    paper = "clgraft (docs/methods.md); stitch as in He et al. 2024, Localize-and-Stitch"
    cite = ("panigrahi2023grafting",)
    Options = ComposeOptions
    keeps_state = True
    keeps_regions = True
    freezes_embeddings = True

    @classmethod
    def citations(cls, options: dict) -> tuple[str, ...]:
        stitch = options.get("compose") == "stitch" or options.get("localizer") == "stitch"
        return cls.cite + (("he2024localize",) if stitch else ())

    @classmethod
    def requires_task_id(cls, options: ComposeOptions) -> bool:
        return options.compose == "task-aware"

    @classmethod
    def by_construction(cls, options: dict) -> dict[str, str]:
        if options.get("compose", "task-aware") != "task-aware":
            return {}
        why = "task j is always evaluated as θ₀ + its own graft and head, so its accuracy never changes"
        return {"bwt": why, "forgetting": why}

    @classmethod
    def kept(cls, options: ComposeOptions, run: RunSizes) -> list[Kept]:
        """Task-aware and stitch: each task's graft, its k_t positions and values (stitch averages the grafts where
        they overlap, so it keeps them apart). Union: their sum alone, at most Σ k_t entries (as many when the
        regions are disjoint), since a new graft is added to it."""
        from clgraft.methods.memory import Dense, Mask

        sizes = run.report["region_sizes"]
        if options.compose == "union":
            return [Mask(run.blocks, sum(sizes), "shared"), Dense(sum(sizes), "shared")]
        return [item for k in sizes for item in (Mask(run.blocks, k, "task"), Dense(k, "task"))]

    def setup(self, model: HeadedModel) -> None:
        super().setup(model)
        self.by_task: dict[int, Graft] = {}
        self.searches: list[dict] = []

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        losses = super().train(model, step)
        self._localize(model, step)
        self._compose(model)
        return losses

    def _localize(self, model: HeadedModel, step: TaskStep) -> None:
        """Keep the graft of the task just trained (and how its mask search went)."""
        task = self.ctx.tasks[step.index]
        region, tau, found = localize_task(self, model, self.theta0, step)
        self.by_task[step.index] = task_graft(model, self.view, task, region, tau, self.name, self.options.sparsity)
        self.searches.append(search_summary(found))

    def _compose(self, model: HeadedModel) -> None:
        """Back to θ₀, then union or stitch of the grafts so far (task-aware applies one graft per evaluation)."""
        from clgraft.grafting.compose import compose_into

        self.theta0.restore(model)
        if self.options.compose != "task-aware":
            compose_into(model, list(self.by_task.values()), self.options.compose)

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """Task-aware: θ₀ plus this task's graft (θ₀ alone for a task not learned yet); one graft per task
        evaluated, never per batch. Union and stitch were composed once after training."""
        if self.options.compose != "task-aware" or not hasattr(self, "by_task"):
            return
        self.theta0.restore(model)
        if task_index in self.by_task:
            self.by_task[task_index].apply(model)

    def grafts(self) -> dict[str, Graft]:
        return {f"{self.ctx.tasks[t].task.task}-{self.name}": g for t, g in self.by_task.items()}

    def report(self) -> dict:
        sizes = [g.k for g in self.by_task.values()]
        return {
            "compose": self.options.compose,
            "region_sizes": sizes,
            "region_fractions": [k / self.view.numel for k in sizes],
            "mask_search": self.searches,
        }
