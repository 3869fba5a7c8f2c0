"""What the runner asks of a method: how to train on the current task, given everything about it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clgraft.batches import Encoded
from clgraft.models import HeadedModel
from clgraft.train import TrainOptions, train_task


@dataclass
class TaskStep:
    """One task of the stream as the runner hands it to a method."""

    index: int
    name: str
    head: str
    label_offset: int
    train: Encoded
    seed: int
    device: torch.device
    on_step: object = None
    progress: bool = True


class Method:
    """Sequential fine-tuning; subclasses override `train` and say which paper they come from."""

    name: str = ""
    description: str = ""
    paper: str = ""

    def train(self, model: HeadedModel, step: TaskStep, opts: TrainOptions) -> list[float]:
        """Fine-tune `model` in place on the task; returns the loss per optimisation step."""
        return train_task(
            model,
            step.head,
            step.train,
            opts,
            seed=step.seed,
            device=step.device,
            label_offset=step.label_offset,
            desc=f"task {step.index + 1} {step.name}",
            on_step=step.on_step,
            progress=step.progress,
        )
