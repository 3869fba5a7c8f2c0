"""The torch and avalanche-lib side of `avalanche_engine`: packed datasets, the model adapters, clgraft's optimiser
and batch schedule inside a strategy, and the per-iteration watch. Imported when an avalanche-lib method runs, so that
reading the method registry (`clgraft methods list`) does not load torch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clgraft.data.batches import Encoded
from clgraft.errors import NonFiniteLoss
from clgraft.methods.avalanche_schedule import PAD_LOGIT, EpochBatches
from clgraft.model.headed import HeadedModel
from clgraft.training.loop import L1Pull, make_optimizer


class PackedDataset(Dataset):
    """(packed ids+mask, label) pairs of one task; labels are offset into the shared head where there is one.

    Every task of a stream is packed to the same width, because replay and A-GEM stack examples of several tasks
    into one batch; `unpack` cuts each batch back to its longest example.
    """

    def __init__(self, data: Encoded, label_offset: int, width: int):
        self.x = torch.zeros((len(data), 2, width), dtype=torch.long)
        self.x[:, 0] = data.pad_id
        for i, ids in enumerate(data.ids):
            self.x[i, 0, : len(ids)] = torch.tensor(ids)
            self.x[i, 1, : len(ids)] = 1
        self.y = (data.labels + label_offset).tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.y[i]


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, cut to the longest example of the batch."""
    mask = x[:, 1]
    width = int(mask.sum(1).max())
    return x[:, 0, :width], mask[:, :width]


def _multitask_adapter_class():
    from avalanche.models import MultiTaskModule

    class MultiHeadAdapter(MultiTaskModule):
        """A HeadedModel as an Avalanche multi-task module: task label t → head of task t."""

        def __init__(self, model: HeadedModel, heads: list[str]):
            super().__init__()
            self.model = model
            self.head_keys = heads

        def adaptation(self, experience) -> None:
            """Heads exist from the start; only remember which tasks were trained (LwF distils on those)."""
            if self.training:
                self.known_train_tasks_labels |= set(experience.task_labels)

        def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
            return self.model(*unpack(x), self.head_keys[task_label])

        def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
            """Every trained task's logits from one pass of the body (Avalanche's own runs the whole network once
            per task — with a fresh dropout draw each time — for LwF's teacher and student alike; Li & Hoiem's
            multi-head network computes all heads from one pass)."""
            tasks = sorted(self.known_train_tasks_labels)
            out = self.model.forward_heads(*unpack(x), [self.head_keys[t] for t in tasks])
            return {t: out[self.head_keys[t]] for t in tasks}

        def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
            if task_labels is None:
                return self.forward_all_tasks(x)
            if isinstance(task_labels, int):
                return self.forward_single_task(x, task_labels)
            tasks = torch.unique(task_labels).tolist()
            if len(tasks) == 1:
                return self.forward_single_task(x, tasks[0])
            width = max(self.model.heads[self.head_keys[t]].out_features for t in tasks)
            out = torch.full((x.shape[0], width), PAD_LOGIT, device=x.device)
            for t in tasks:
                rows = task_labels == t
                logits = self.forward_single_task(x[rows], t)
                out[rows, : logits.shape[1]] = logits.to(out.dtype)
            return out

    return MultiHeadAdapter


class SharedHeadAdapter(nn.Module):
    """A HeadedModel with one shared head as a plain Avalanche model (no task labels)."""

    def __init__(self, model: HeadedModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(*unpack(x), "shared")


def clear_whole_model(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """Make `optimizer.zero_grad()` clear the gradients of every parameter of `model`, not only of those it holds.

    Avalanche's plugins (A-GEM's reference gradient, EWC's Fisher) read `p.grad` of every parameter after
    `optimizer.zero_grad()`; clgraft's optimiser holds only the current task's head, so earlier heads' gradients
    would otherwise pile up across iterations and enter those readings."""
    optimizer.zero_grad = lambda set_to_none=True: model.zero_grad(set_to_none=set_to_none)
    return optimizer


class ClgraftHooks:
    """Mixed into any avalanche-lib strategy class: clgraft's optimiser, batch schedule and heads."""

    clgraft_model: HeadedModel
    clgraft_opts: Any
    clgraft_heads: list[str]
    clgraft_schedule: EpochBatches
    clgraft_seed: int

    def make_optimizer(self, **kwargs) -> None:
        self.optimizer = clear_whole_model(
            make_optimizer(self.clgraft_model, self.clgraft_heads, self.clgraft_opts), self.clgraft_model
        )

    def make_train_dataloader(self, **kwargs) -> None:
        self.dataloader = DataLoader(
            self.adapted_dataset, batch_sampler=self.clgraft_schedule, collate_fn=self.adapted_dataset.collate_fn
        )


def _watch_plugin(desc: str, total: int, progress: bool, on_step, seed: int):
    """Records the loss of every iteration, stops on NaN/inf, drives the progress bar and per-step callbacks.

    It also re-seeds torch right before the first forward pass: Avalanche's set-up and its DataLoader draw from the
    global generator, and dropout must see the same random stream as in clgraft's loop for the same seed.
    """
    from avalanche.core import SupervisedPlugin

    class Watch(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.losses: list[float] = []
            self.bar = tqdm(total=total, desc=desc, leave=False, disable=not progress, unit="step")

        def before_training_iteration(self, strategy, *args, **kwargs):
            if not self.losses:
                torch.manual_seed(seed)

        def before_backward(self, strategy, *args, **kwargs):
            value = strategy.loss.item()
            if not math.isfinite(value):
                self.bar.close()
                raise NonFiniteLoss(f"loss became {value} at step {len(self.losses) + 1} of {desc}; lower --lr")
            self.losses.append(value)

        def after_training_iteration(self, strategy, *args, **kwargs):
            self.bar.update(1)
            if on_step is not None:
                on_step(len(self.losses))

        def after_training_exp(self, strategy, *args, **kwargs):
            self.bar.close()

    return Watch()


def _l1_plugin(model: HeadedModel, coefficient: float):
    """The ℓ1 pull of the body towards its weights now, where the training starts (RunConfig.l1_to_init), added to
    the strategy's loss before backward as clgraft's loop adds it: after the watch has recorded the loss, and before
    the gradient exists, so that whatever a strategy does to gradients (A-GEM's projection, PackNet's masks) it does
    to the pull's too."""
    from avalanche.core import SupervisedPlugin

    pull = L1Pull(model)

    class PullToInit(SupervisedPlugin):
        def before_backward(self, strategy, *args, **kwargs):
            strategy.loss += coefficient * pull.distance()

    return PullToInit()
