"""Composition cost (issue 6, DESIGN §4): composing T grafts into a model ≤ 2× the time of T graft applications, and a
composed model evaluates as fast as a plain one (it is a plain model: no per-batch re-grafting). Timed operation and
reference alternate round by round; fastest rounds are compared."""

import math

import pytest
import torch

from clgraft.data.batches import Encoded
from clgraft.grafting.compose import compose_into
from clgraft.grafting.graft import Graft
from clgraft.model.headed import DEFAULT_MODEL, BlockView, HeadedModel, load_backbone
from clgraft.training.loop import predict

from .peak_memory import extra_peak

T = 5
SPARSITY = 1e-2  # the largest region the issue allows per task


@pytest.fixture(scope="module")
def setting():
    body = load_backbone(DEFAULT_MODEL).model
    view = BlockView(body)
    gen = torch.Generator().manual_seed(0)
    k = math.floor(SPARSITY * view.numel)
    layout = [(n, view.shapes[n]) for n in view.names]
    grafts = [
        Graft(
            layout,
            torch.randperm(view.numel, generator=gen)[:k].sort().values,
            torch.randn(k, generator=gen) * 1e-6,
            {},
            {},
        )
        for _ in range(T)
    ]
    return body, grafts


@pytest.mark.parametrize("mode", ["union", "stitch"])
def test_compose_vs_t_applications(benchmark, paired, setting, mode):
    body, grafts = setting
    benchmark.group = "compose"

    def apply_each():
        for g in grafts:
            g.apply(body)

    ratio = paired(lambda: compose_into(body, grafts, mode), apply_each)
    benchmark.extra_info.update(ratio=ratio, grafts=T, sparsity=SPARSITY)
    print(f"\ncompose {mode}, {T} grafts at s={SPARSITY:g}: {ratio:.2f}× {T} graft applications (target ≤ 2)")
    assert ratio <= 2.0


def test_composed_model_evaluates_like_a_plain_one(benchmark, paired, setting):
    body, grafts = setting
    plain = HeadedModel(load_backbone(DEFAULT_MODEL).model, {"t": 2}, 0)
    composed = HeadedModel(compose_into(body, grafts, "stitch"), {"t": 2}, 0)
    gen = torch.Generator().manual_seed(1)
    data = Encoded(torch.randint(1000, 20000, (64, 64), generator=gen).tolist(), torch.zeros(64, dtype=torch.long), 0)
    benchmark.group = "evaluate"
    ratio = paired(
        lambda: predict(composed, "t", data, 32, torch.device("cpu")),
        lambda: predict(plain, "t", data, 32, torch.device("cpu")),
        rounds=5,
    )
    print(f"\nevaluating a composed model: {ratio:.2f}× a plain one (target: the same, ≤ 1.10)")
    assert ratio <= 1.10


@pytest.mark.parametrize("mode", ["union", "stitch"])
def test_composition_memory(mode):
    """Peak memory of composing T grafts into a loaded model, beyond the model and the grafts themselves, in a fresh
    process (benchmarks/peak_memory.py); target ≤ 3× the model's parameter memory (issue 9)."""
    param_bytes, extra = extra_peak(
        setup=f"""
        import math
        from clgraft.grafting.compose import compose_into
        from clgraft.grafting.graft import Graft
        from clgraft.model.headed import BlockView
        view = BlockView(body)
        k = math.floor({SPARSITY} * view.numel)
        layout = [(n, view.shapes[n]) for n in view.names]
        grafts = [
            Graft(layout, torch.randperm(view.numel)[:k].sort().values, torch.randn(k) * 1e-6, {{}}, {{}})
            for _ in range({T})
        ]
        """,
        op=f"compose_into(body, grafts, {mode!r})",
    )
    ratio = extra / param_bytes
    print(f"\ncompose {mode}: {extra / 2**20:.1f} MiB extra peak, {ratio:.2f}× parameter memory (target ≤ 3)")
    assert ratio <= 3.0
