"""graft-compose (DESIGN §4): fine-tune each task from θ₀, keep only its localized graft γ_t⊙τ_t, and evaluate the
composed model: task-aware (task j sees θ₀ + γ_j⊙τ_j and its head; needs the task id), union (θ₀ + Σ γ⊙τ) or stitch
(overlapping entries averaged). Grafts of tasks not yet learned are absent, so R row i composes tasks 1..i.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clgraft.compose import compose_into
from clgraft.graft import Graft
from clgraft.methods.base import Method, TaskStep
from clgraft.methods.grafting import GraftOptions, localize_task, set_blocks, task_graft
from clgraft.models import BlockView, HeadedModel


class ComposeOptions(GraftOptions):
    compose: Literal["task-aware", "union", "stitch"] = Field(
        default="task-aware", description="how the per-task grafts make the evaluated model"
    )


class GraftCompose(Method):
    name = "graft-compose"
    relative_cost = 2.4
    description = (
        "fine-tune each task from θ₀, keep its sparse graft, evaluate grafts composed (task-aware/union/stitch)"
    )
    paper = "clgraft (DESIGN §4); stitch as in He et al. 2024, Localize-and-Stitch"
    cite = ("panigrahi2023grafting",)
    Options = ComposeOptions
    keeps_state = True
    from_theta0 = True

    @classmethod
    def citations(cls, options: dict) -> tuple[str, ...]:
        stitch = options.get("compose") == "stitch" or options.get("localizer") == "stitch"
        return cls.cite + (("he2024localize",) if stitch else ())

    @classmethod
    def requires_task_id(cls, options: ComposeOptions) -> bool:
        return options.compose == "task-aware"

    def setup(self, model: HeadedModel) -> None:
        self.view = BlockView(model.body)
        self.theta0_body = {k: v.detach().clone() for k, v in model.body.state_dict().items()}
        self.theta0 = self.view.flatten(dict(model.body.named_parameters()))
        self.by_task: dict[int, Graft] = {}

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        task = self.ctx.tasks[step.index]
        model.body.load_state_dict(self.theta0_body)
        losses = super().train(model, step)
        region, tau = localize_task(model, self.view, self.theta0, task, self.options, self.ctx.device, step.seed)
        self.by_task[step.index] = task_graft(model, self.view, task, region, tau, self.name, self.options.sparsity)
        model.body.load_state_dict(self.theta0_body)  # embeddings back to θ₀: grafts cover block parameters only
        if self.options.compose != "task-aware":
            compose_into(model, list(self.by_task.values()), self.options.compose)
        return losses

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """Task-aware: θ₀ plus this task's graft (θ₀ alone for a task not learned yet); one graft per task
        evaluated, never per batch. Union and stitch were composed once after training."""
        if self.options.compose != "task-aware" or not hasattr(self, "by_task"):
            return
        set_blocks(model, self.view, self.theta0)
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
            "stored_bytes_per_task": [k * (4 + 4) for k in sizes],
            "extra_bytes_per_task": sum(k * (4 + 4) for k in sizes) / max(1, len(sizes)),
        }
