"""The one fine-tuning loop every method shares, and batched evaluation under `torch.inference_mode()`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from clgraft.data.batches import Encoded, eval_batches, train_batches
from clgraft.errors import NonFiniteLoss
from clgraft.model.headed import HeadedModel


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings of one task's fine-tuning."""

    steps: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float = 0.0
    eval_batch_size: int = 64
    fused: bool = False
    """torch's fused AdamW kernel (RunConfig.optimizer = adamw-fused) instead of the multi-tensor one."""
    probe_steps: int = 0
    """LP-FT: full-batch steps fitting the head on the frozen body's features before fine-tuning (0: none)."""


def make_optimizer(model: HeadedModel, heads: list[str], opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW over the body (lr) and the heads being trained (head_lr); other heads stay untouched. The multi-tensor
    kernel gives the same bits as the per-parameter loop (tested) in less time; the fused one is opt-in, since its
    rounding differs."""
    groups = [
        {"params": [p for p in model.body.parameters() if p.requires_grad], "lr": opts.lr},
        {"params": [p for h in heads for p in model.heads[h].parameters()], "lr": opts.head_lr},
    ]
    if opts.fused:
        return torch.optim.AdamW(groups, weight_decay=opts.weight_decay, fused=True)
    return torch.optim.AdamW(groups, weight_decay=opts.weight_decay, foreach=True)


def train_task(
    model: HeadedModel,
    head: str,
    data: Encoded,
    opts: TrainOptions,
    seed: int,
    device: torch.device,
    label_offset: int = 0,
    desc: str = "train",
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
    grad_hook: Callable[[], None] | None = None,
) -> list[float]:
    """Fine-tune on one task for opts.steps steps; returns the loss per step; raises NonFiniteLoss on NaN/inf.

    `grad_hook` runs between backward and the optimiser step (graft-freeze masks frozen entries there).
    """
    if opts.probe_steps:
        probe_head(model, head, data, opts, device, label_offset)
    model.train()
    optimizer = make_optimizer(model, [head], opts)
    loss_fn = nn.CrossEntropyLoss()
    batches = train_batches(len(data), opts.batch_size, opts.steps, torch.Generator().manual_seed(seed))
    losses = []
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="step")
    for step, index in enumerate(bar, start=1):
        input_ids, mask, labels = (t.to(device) for t in data.collate(index))
        loss = loss_fn(model(input_ids, mask, head), labels + label_offset)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss became {value} at step {step} of {desc}; lower --lr / --head-lr")
        loss.backward()
        if grad_hook is not None:
            grad_hook()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(value)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
        if on_step is not None:
            on_step(step)
    model.eval()
    return losses


def probe_head(
    model: HeadedModel, head: str, data: Encoded, opts: TrainOptions, device: torch.device, label_offset: int = 0
) -> list[float]:
    """Linear probing, the LP of LP-FT (Kumar et al. 2022, ICLR): the body's pooled features of every training
    example are computed once (eval mode, no dropout), then `opts.probe_steps` full-batch AdamW steps at the head's
    learning rate fit the head on them; the body does not change. Returns the loss per step."""
    features = pooled_features(model, data, opts.eval_batch_size, device).to(device).clone()  # usable in autograd
    labels = (data.labels + label_offset).to(device)
    layer = model.heads[head]
    optimizer = torch.optim.AdamW(layer.parameters(), lr=opts.head_lr, weight_decay=opts.weight_decay, foreach=True)
    loss_fn, losses = nn.CrossEntropyLoss(), []
    for _ in range(opts.probe_steps):
        loss = loss_fn(layer(features), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@torch.inference_mode()
def pooled_features(model: HeadedModel, data: Encoded, batch_size: int, device: torch.device) -> torch.Tensor:
    """What every head sees: the body's mean-pooled output for each example of a split, in the split's order (CPU)."""
    model.eval()
    out = torch.empty((len(data), model.body.config.hidden_size))
    for index in eval_batches(data, batch_size):
        input_ids, mask, _ = data.collate(index)
        out[index] = model.pooled(input_ids.to(device), mask.to(device)).float().cpu()
    return out


@torch.inference_mode()
def predict(model: HeadedModel, head: str, data: Encoded, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits for every example of a split, in the split's order."""
    model.eval()
    out = torch.empty((len(data), model.heads[head].out_features))
    for index in eval_batches(data, batch_size):
        input_ids, mask, _ = data.collate(index)
        out[index] = model(input_ids.to(device), mask.to(device), head).float().cpu()
    return out


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to the labels."""
    return float((logits.argmax(-1) == labels).float().mean())


def f1(logits: torch.Tensor, labels: torch.Tensor, positive: int) -> float:
    """F1 of the class `positive` (the official grafting code scores MRPC and QQP so, as GLUE does)."""
    predicted = logits.argmax(-1) == positive
    actual = labels == positive
    tp = int((predicted & actual).sum())
    denominator = int(predicted.sum()) + int(actual.sum())
    return 2 * tp / denominator if denominator else 0.0


def split_accuracy(
    model: HeadedModel, head: str, data: Encoded, label_offset: int, batch_size: int, device: torch.device
) -> float:
    """Accuracy of `model` on one encoded split through `head` (labels shifted by the task's offset): the one way R,
    dev selection and localization score a task."""
    return accuracy(predict(model, head, data, batch_size, device), data.labels + label_offset)
