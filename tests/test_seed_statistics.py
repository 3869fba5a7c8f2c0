"""Statistics over seeds restated by hand: the Student-t interval and the paired comparison with a baseline."""

import math

import pytest
from scipy import stats

from clgraft.metrics.seeds import confidence_interval, paired_difference


def test_t_interval_by_hand():
    mean, low, high = confidence_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2 df) · s / √n, s = 1
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(confidence_interval([0.5])[1])


def test_paired_difference_uses_only_shared_seeds_and_the_paired_t_test():
    ours, base = {1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.4, 2: 0.45, 3: 0.5, 4: 0.9}
    out = paired_difference(ours, base)
    diffs = [0.1, 0.15, 0.2]  # seed 4 has no pair
    sd = 0.05
    t = (sum(diffs) / 3) / (sd / math.sqrt(3))
    assert out["n_pairs"] == 3 and out["diff"] == pytest.approx(0.15)
    assert out["p"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert out["ci_low"] == pytest.approx(0.15 - 4.302652729911275 * sd / math.sqrt(3))
    same = paired_difference({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.5})
    assert math.isnan(same["p"]) and same["ci_low"] == pytest.approx(0.1)
    assert paired_difference({1: 0.5}, {2: 0.5})["n_pairs"] == 0
