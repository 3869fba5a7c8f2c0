"""Runner training step vs a plain PyTorch loop on the same model, batch and sequence length (target ≤ 1.10×).

Both run STEPS optimisation steps per round with AdamW made once per round, as for a task. The plain loop runs in
each round's setup, so the two alternate (plain, runner, plain, ...) and share whatever else the machine is doing;
the ratio of their fastest rounds is asserted.
"""

import time

import torch
from torch import nn

from benchmarks.conftest import BATCH, STEPS
from clgraft.training.loop import TrainOptions, train_task

ROUNDS = 6


def _plain_loop(model, data) -> None:
    model.train()
    params = [*model.body.parameters(), *model.heads["t"].parameters()]
    optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0)
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


def test_runner_step_vs_plain_loop(benchmark, minilm, fixed_data):
    plain: list[float] = []

    def time_plain_then_hand_over():
        start = time.perf_counter()
        _plain_loop(minilm, fixed_data)
        plain.append(time.perf_counter() - start)
        return (minilm, fixed_data), {}

    benchmark.group = "train-step"
    benchmark.pedantic(_runner_loop, setup=time_plain_then_hand_over, rounds=ROUNDS, warmup_rounds=1)
    runner_ms, plain_ms = benchmark.stats.stats.min / STEPS * 1e3, min(plain) / STEPS * 1e3
    ratio = runner_ms / plain_ms
    benchmark.extra_info.update(runner_step_ms=runner_ms, plain_step_ms=plain_ms, ratio=ratio)
    print(f"\nrunner step {runner_ms:.1f} ms, plain loop step {plain_ms:.1f} ms, ratio {ratio:.3f} (target ≤ 1.10)")
    assert ratio <= 1.10
