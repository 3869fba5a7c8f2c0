"""The mask search of an MbPA task, today's against the search before length-sorted gradient batches (benchmarks/
mask_search.py), alternated round by round in one run at one thread. Targets: the same masks (Jaccard ≥ 0.999),
kept step, scores at every step and grafted test accuracy; ≥ 2× faster — missed (xfail): 1.37× on 2026-12-05, and
no batching can give more than ≈ 1.7× here (the scored masks were length-sorted already, and every real token's
forward and backward is still needed; bfloat16 autocast gives 1.5× with another mask, Jaccard 0.95); see
benchmarks/README.md."""

import pytest

from benchmarks.mask_search import before_module, compare
from benchmarks.mfu import data_dir

pytestmark = [
    pytest.mark.skipif(data_dir() is None, reason="no task data (clgraft data fetch mbpa-fewshot)"),
    pytest.mark.skipif(before_module() is None, reason="no git history to read the search before from"),
]


@pytest.fixture(scope="module")
def measured() -> dict:
    out = compare(rounds=2)
    print(
        f"\nmask search, MbPA yelp-fs: before {out['before_s']:.1f} s, today {out['today_s']:.1f} s: "
        f"{out['speedup']:.2f}× (CPU time {out['before_cpu_s']:.1f} / {out['today_cpu_s']:.1f} s: "
        f"{out['cpu_speedup']:.2f}×); MFU {out['before_mfu']:.2f} → {out['today_mfu']:.2f} of "
        f"{out['gemm_gflops']:.0f} GFLOP/s; Jaccard {out['jaccard']:.4f}, kept step {out['best_step']}"
    )
    return out


def test_the_same_masks_steps_and_accuracy(measured):
    before, today = measured["records"]
    assert measured["jaccard"] >= 0.999
    assert measured["best_step"][0] == measured["best_step"][1]
    assert measured["test_accuracy"][0] == measured["test_accuracy"][1]
    assert [(s["train"], s["dev"]) for s in today] == [(s["train"], s["dev"]) for s in before]


@pytest.mark.xfail(reason="1.37× measured; 2× needs less work than the official rule computes", strict=False)
def test_twice_as_fast(measured):
    assert measured["speedup"] >= 2.0
