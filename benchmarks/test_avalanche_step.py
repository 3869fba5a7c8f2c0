"""Avalanche strategy training step vs clgraft's own loop, same model and batches (target ≤ 1.15×).

The Avalanche side is `naive` with engine=avalanche: a persistent avalanche-lib Naive strategy fed clgraft's batch
schedule, so each round pays Avalanche's per-experience set-up (dataset adaptation, model adaptation, callbacks)
on top of STEPS steps, as a real run does. The two alternate round by round; fastest rounds are compared.
"""

import time

import torch

from benchmarks.conftest import BATCH, STEPS
from clgraft.data.loading import Split, TaskData
from clgraft.data.registry import Registry
from clgraft.methods.base import PreparedTask, RunContext, TaskStep
from clgraft.methods.naive import Naive, NaiveOptions
from clgraft.training.loop import TrainOptions, train_task

ROUNDS = 6


def test_avalanche_step_vs_clgraft_loop(benchmark, minilm, fixed_data):
    opts = TrainOptions(steps=STEPS, batch_size=BATCH, lr=5e-5, head_lr=5e-5)
    task = Registry.discover().task("tiny-agnews")
    data = TaskData(task, None, {"train": Split([], []), "dev": Split([], []), "test": Split([], [])})
    ctx = RunContext(
        [PreparedTask(data, "t", 0, fixed_data, fixed_data, fixed_data)], "task", torch.device("cpu"), opts, False
    )
    avalanche = Naive(NaiveOptions(engine="avalanche"), ctx)
    avalanche.train(minilm, TaskStep(0, 0))  # build the strategy once, as a run does before its first task
    ours: list[float] = []

    def time_ours_then_hand_over():
        start = time.perf_counter()
        train_task(minilm, "t", fixed_data, opts, seed=0, device=torch.device("cpu"), progress=False)
        ours.append(time.perf_counter() - start)
        return (minilm, TaskStep(0, 0)), {}

    benchmark.group = "avalanche-step"
    benchmark.pedantic(avalanche.train, setup=time_ours_then_hand_over, rounds=ROUNDS, warmup_rounds=1)
    avalanche_ms, ours_ms = benchmark.stats.stats.min / STEPS * 1e3, min(ours) / STEPS * 1e3
    ratio = avalanche_ms / ours_ms
    benchmark.extra_info.update(avalanche_step_ms=avalanche_ms, clgraft_step_ms=ours_ms, ratio=ratio)
    print(f"\navalanche step {avalanche_ms:.1f} ms, clgraft step {ours_ms:.1f} ms, ratio {ratio:.3f} (target ≤ 1.15)")
    assert ratio <= 1.15
