"""What the two grafting methods share: their options, the body state a task's graft is built on, and localizing
one task's region inside a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import torch

    from clgraft.grafting.graft import Graft
    from clgraft.grafting.localize import LocalizeOptions, MaskResult, ScoredTask
    from clgraft.methods.base import Method, PreparedTask, TaskStep
    from clgraft.model.headed import BlockView, BodySnapshot, HeadedModel


class GraftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sparsity: float = Field(default=0.01, gt=0, lt=1, description="fraction of block parameters per task region")
    localize_steps: int = Field(default=10, ge=0, description="mask-learning steps per task")
    localize_lr: float = Field(default=1e7, gt=0, description="mask learning rate of the official and stitch rules")
    localize_scale: float = Field(
        default=0.1, gt=0, description="scaled rule: move of S at the k-th largest |∂L/∂θ⊙τ| in step 1, in units of b"
    )
    localizer: Literal["official", "scaled", "stitch", "top-tau", "random", "bias"] = Field(
        default="scaled",
        description="mask learner: grafting's official rule, the same rule with lr scaled to τ, or Localize-and-Stitch;"
        " or a control region of the same size, searched for nothing: top-tau (the largest |τ|), random, bias (the"
        " largest |τ| among biases)",
    )


def task_graft(
    model: HeadedModel,
    view: BlockView,
    task: PreparedTask,
    region: torch.Tensor,
    tau: torch.Tensor,
    method: str,
    sparsity: float,
) -> Graft:
    """The graft γ⊙τ of one task in a run, with the task's head as it is now."""
    from clgraft.grafting.graft import Graft

    head = {k: v.detach().clone() for k, v in model.heads[task.head].state_dict().items()}
    meta = {
        "task": task.task.task,
        "task_version": str(task.task.version),
        "method": method,
        "sparsity": repr(sparsity),
    }
    return Graft.from_mask(view, region, tau, head, meta)


def scored_task(task: PreparedTask) -> ScoredTask:
    """A prepared task as the mask search scores it (train + dev, the task's official metric)."""
    from clgraft.grafting.localize import ScoredTask

    return ScoredTask(task.head, task.label_offset, task.train, task.dev, task.task.metric)


def localize_opts(opts: GraftOptions, seed: int) -> LocalizeOptions:
    """A method's graft options as the settings of one mask search."""
    from clgraft.grafting.localize import LocalizeOptions

    return LocalizeOptions(
        sparsity=opts.sparsity,
        method=opts.localizer,
        steps=opts.localize_steps,
        lr=opts.localize_lr,
        scale=opts.localize_scale,
        seed=seed,
    )


def localize_task(
    method: Method, model: HeadedModel, start: BodySnapshot, step: TaskStep
) -> tuple[torch.Tensor, torch.Tensor, MaskResult]:
    """The region γ of task `step`'s update τ = θ_now − start (blocks) in a grafting method's run, with the method's
    options, device, the task's seed and the run's progress bar: the region that keeps the task's train + dev score
    (docs/protocols.md), searched and scored on exactly the model its graft builds: the start body (embeddings
    included) + γ⊙τ. Returns (γ, τ, the search) and leaves the body at the start body + γ⊙τ."""
    from clgraft.grafting.localize import MaskLearner
    from clgraft.io.phases import phase

    view = start.view
    tau = view.flatten(dict(model.body.named_parameters())) - start.blocks
    start.restore(model)
    task, desc = method.ctx.tasks[step.index], method.step_label(step, "mask search")
    with phase("localize"), MaskLearner(model, view, start.blocks, scored_task(task), method.ctx.device) as learner:
        found = learner.learn(tau, tau, localize_opts(method.options, step.seed), method.ctx.progress, desc)
    region = found.mask & (tau != 0)
    start.restore(model, start.blocks + region * tau)
    return region, tau, found


def search_summary(found: MaskResult) -> dict:
    """What run.json keeps of one task's mask search."""
    return {"best_step": found.best_step, "lr": found.lr, "steps": found.search}
