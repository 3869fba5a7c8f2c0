"""Runner training step vs a plain PyTorch loop on the same model, batch and sequence length (target ≤ 1.10×).

Both run STEPS optimisation steps per round (AdamW made once per round, as for a task). The last test asserts the
ratio of the fastest rounds (the least disturbed by other load), timed in this same pytest-benchmark run.
"""

import torch
from torch import nn

from benchmarks.conftest import BATCH, STEPS
from clgraft.train import TrainOptions, train_task

FASTEST: dict[str, float] = {}
ROUNDS = 5


def _plain_loop(model, data) -> None:
    model.train()
    params = [*model.body.parameters(), *model.heads["t"].parameters()]
    optimizer = torch.optim.AdamW(params, lr=5e-5)
    loss_fn = nn.CrossEntropyLoss()
    batches = [data.collate(list(range(i * BATCH, (i + 1) * BATCH))) for i in range(STEPS)]
    for input_ids, mask, labels in batches:
        loss = loss_fn(model(input_ids, mask, "t"), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _runner_loop(model, data) -> None:
    opts = TrainOptions(steps=STEPS, batch_size=BATCH, lr=5e-5, head_lr=5e-5)
    train_task(model, "t", data, opts, seed=0, device=torch.device("cpu"), progress=False)


def test_plain_pytorch_loop(benchmark, minilm, fixed_data):
    benchmark.group = "train-step"
    benchmark.pedantic(_plain_loop, args=(minilm, fixed_data), rounds=ROUNDS, warmup_rounds=1)
    FASTEST["plain"] = benchmark.stats.stats.min / STEPS


def test_runner_train_task(benchmark, minilm, fixed_data):
    benchmark.group = "train-step"
    benchmark.pedantic(_runner_loop, args=(minilm, fixed_data), rounds=ROUNDS, warmup_rounds=1)
    FASTEST["runner"] = benchmark.stats.stats.min / STEPS


def test_runner_step_ratio(record_property):
    ratio = FASTEST["runner"] / FASTEST["plain"]
    record_property("runner_over_plain", ratio)
    print(f"\nrunner step {FASTEST['runner'] * 1e3:.1f} ms, plain {FASTEST['plain'] * 1e3:.1f} ms, ratio {ratio:.3f}")
    assert ratio <= 1.10
