"""Benchmark fixtures: the default model with a fresh head, and fixed synthetic batches."""

import time

import pytest
import torch

from clgraft.data.batches import Encoded
from clgraft.model.headed import DEFAULT_MODEL, HeadedModel, load_backbone

BATCH, LENGTH, STEPS = 8, 64, 10


@pytest.fixture(scope="module")
def minilm() -> HeadedModel:
    """A fresh model per benchmark module, so that no suite runs on a model another one has used."""
    return HeadedModel(load_backbone(DEFAULT_MODEL).model, {"t": 4}, seed=0)


@pytest.fixture(scope="session")
def fixed_data() -> Encoded:
    """Examples of exactly LENGTH tokens, so that every batch has the same shape in both loops."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (BATCH * STEPS, LENGTH), generator=gen)
    return Encoded(ids.tolist(), torch.randint(0, 4, (BATCH * STEPS,), generator=gen), pad_id=0)


@pytest.fixture()
def paired(benchmark):
    """paired(op, reference, rounds=10) → fastest op time / fastest reference time, the two alternating round by
    round (the reference runs as the benchmark's setup), so that both see the same machine state."""

    def run(op, reference, rounds: int = 10) -> float:
        ref: list[float] = []

        def setup():
            start = time.perf_counter()
            reference()
            ref.append(time.perf_counter() - start)

        benchmark.pedantic(op, setup=setup, rounds=rounds, warmup_rounds=1)
        return benchmark.stats.stats.min / min(ref)

    return run
