"""What the two grafting methods share: their options and localizing one task's region inside a run."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from clgraft.graft import Graft
from clgraft.localize import LocalizeOptions, MaskLearner
from clgraft.methods.base import PreparedTask
from clgraft.models import BlockView, HeadedModel


class GraftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sparsity: float = Field(default=0.01, gt=0, lt=1, description="fraction of block parameters per task region")
    localize_steps: int = Field(default=10, ge=0, description="mask-learning steps (official rule) per task")
    localize_lr: float = Field(default=1e7, gt=0, description="mask learning rate")
    localizer: Literal["official", "stitch"] = Field(
        default="official", description="mask learner: grafting's official rule or Localize-and-Stitch's"
    )


def set_blocks(model: HeadedModel, view: BlockView, flat: torch.Tensor) -> None:
    """Write a flat vector into the body's block parameters."""
    params = dict(model.body.named_parameters())
    with torch.no_grad():
        for name, value in view.split(flat).items():
            params[name].copy_(value)


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
    head = {k: v.detach().clone() for k, v in model.heads[task.head].state_dict().items()}
    meta = {
        "task": task.task.task,
        "task_version": str(task.task.version),
        "method": method,
        "sparsity": repr(sparsity),
    }
    return Graft.from_mask(view, region, tau, head, meta)


def localize_task(
    model: HeadedModel,
    view: BlockView,
    start: torch.Tensor,
    task: PreparedTask,
    opts: GraftOptions,
    device: torch.device,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The region γ of the update τ = θ_now − start that keeps the task's train+dev accuracy (DESIGN §3);
    returns (γ, τ) and leaves the model's weights as they were."""
    theta = view.flatten(dict(model.body.named_parameters()))
    tau = theta - start
    learner = MaskLearner(model, view, start, task.head, task.label_offset, task.train, [task.train, task.dev], device)
    found = learner.learn(
        tau,
        tau,
        LocalizeOptions(
            sparsity=opts.sparsity, method=opts.localizer, steps=opts.localize_steps, lr=opts.localize_lr, seed=seed
        ),
    )
    learner.restore(theta)
    for p in model.parameters():
        p.requires_grad_(True)
    return found.mask & (tau != 0), tau
