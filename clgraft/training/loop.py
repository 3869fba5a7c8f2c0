"""The one fine-tuning loop every method shares, and batched evaluation under `torch.inference_mode()`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from clgraft.config import Optimizer
from clgraft.data.batches import Encoded, eval_batches, train_batches
from clgraft.errors import NonFiniteLoss
from clgraft.model.headed import HeadedModel

SGD_WEIGHT_DECAY = 1e-4
"""Weight decay of `--optimizer sgd`: the official grafting code's fine-tuning (run_experiment.sh, `--weight_decay
1e-4` with `--optimizer SGD`)."""

NO_DECAY = ("bias", "LayerNorm.weight")
"""Parameters whose names contain one of these are not decayed: the official code's `no_decay` (src/trainer.py,
`Trainer.create_optimizer_and_scheduler`)."""


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings of one task's fine-tuning."""

    steps: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float = 0.0
    eval_batch_size: int = 64
    optimizer: Optimizer = "adamw"
    """RunConfig.optimizer: AdamW (multi-tensor or fused kernel), or SGD as the official grafting code runs it."""
    probe_steps: int = 0
    """LP-FT: full-batch steps fitting the head on the frozen body's features before fine-tuning (0: none)."""
    l1_to_init: float = 0.0
    """RunConfig.l1_to_init: coefficient of the ℓ1 pull of the body towards where the fine-tuning starts (0: off)."""


def body_parameters(model: HeadedModel) -> list[tuple[str, nn.Parameter]]:
    """The body's trained parameters by name: the ones the optimiser moves at `lr` and the ℓ1 pull acts on."""
    return [(name, p) for name, p in model.body.named_parameters() if p.requires_grad]


def make_optimizer(model: HeadedModel, heads: list[str], opts: TrainOptions) -> torch.optim.Optimizer:
    """The optimiser over the body (lr) and the heads being trained (head_lr); other heads stay untouched. AdamW's
    multi-tensor kernel gives the same bits as the per-parameter loop (tested) in less time; the fused one is opt-in,
    since its rounding differs. SGD is the official grafting code's: torch's SGD with no momentum (its defaults),
    weight decay on all but NO_DECAY, a constant learning rate."""
    body = body_parameters(model)
    head = [(f"{h}.{name}", p) for h in heads for name, p in model.heads[h].named_parameters()]
    if opts.optimizer == "sgd":
        groups = _decay_groups(body, opts.lr, opts.weight_decay) + _decay_groups(head, opts.head_lr, opts.weight_decay)
        return torch.optim.SGD(groups, lr=opts.lr, momentum=0.0, foreach=True)
    groups = [{"params": [p for _, p in body], "lr": opts.lr}, {"params": [p for _, p in head], "lr": opts.head_lr}]
    if opts.optimizer == "adamw-fused":
        return torch.optim.AdamW(groups, weight_decay=opts.weight_decay, fused=True)
    return torch.optim.AdamW(groups, weight_decay=opts.weight_decay, foreach=True)


def _decay_groups(named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    """Two parameter groups at `lr`: those decayed by `weight_decay`, and those named in NO_DECAY (not decayed)."""
    undecayed = {name for name, _ in named if any(k in name for k in NO_DECAY)}
    return [
        {"params": [p for n, p in named if n not in undecayed], "lr": lr, "weight_decay": weight_decay},
        {"params": [p for n, p in named if n in undecayed], "lr": lr, "weight_decay": 0.0},
    ]


class L1Pull:
    """Σ|θ − θ_init| over the body's trained parameters, θ_init their values when the pull is made (where a task's
    fine-tuning starts: θ₀ for every fine-tune from θ₀), summed, not averaged. The official grafting code's `l1_reg`
    term (src/models.py, `RobertaForPromptFinetuning.forward`: `loss += l1_reg * Σ_p sum(|p − p_init|)` over the
    encoder's parameters, θ_init the pre-trained ones), which keeps a fine-tune's update τ sparse; its gradient is
    sign(θ − θ_init), 0 where equal."""

    def __init__(self, model: HeadedModel):
        self.pairs = [(p, p.detach().clone()) for _, p in body_parameters(model)]

    def distance(self) -> torch.Tensor:
        if not self.pairs:  # no body parameter is trained (a head-only fine-tune): nothing to pull
            return torch.zeros(())
        return torch.stack([(p - start).abs().sum() for p, start in self.pairs]).sum()


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
    """Fine-tune on one task for opts.steps steps; returns the task's loss per step (without the ℓ1 pull); raises
    NonFiniteLoss on NaN/inf.

    `grad_hook` runs between backward and the optimiser step (graft-freeze masks frozen entries there); `on_step`
    is called with 0 before the first update (the weights training starts from) and with each step after it.
    """
    if opts.probe_steps:
        probe_head(model, head, data, opts, device, label_offset)
    model.train()
    optimizer = make_optimizer(model, [head], opts)
    pull = L1Pull(model) if opts.l1_to_init else None
    loss_fn = nn.CrossEntropyLoss()
    batches = train_batches(len(data), opts.batch_size, opts.steps, torch.Generator().manual_seed(seed))
    losses = []
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="step")
    if on_step is not None:
        on_step(0)
    for step, index in enumerate(bar, start=1):
        input_ids, mask, labels = (t.to(device) for t in data.collate(index))
        loss = loss_fn(model(input_ids, mask, head), labels + label_offset)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss became {value} at step {step} of {desc}; lower --lr / --head-lr")
        if pull is not None:
            loss = loss + opts.l1_to_init * pull.distance()
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


def both(*callbacks: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """One per-step callback calling each given one (None where none is given)."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def call(step: int) -> None:
        for callback in given:
            callback(step)

    return call


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
