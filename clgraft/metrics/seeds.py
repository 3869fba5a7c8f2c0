"""Statistics over seeds: a mean with its Student-t confidence interval, and a paired comparison of two methods run
with the same seeds (the same data splits, heads and batch orders), as a reviewer asks of a leaderboard row."""

from __future__ import annotations

import math


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval over seeds (NaN ends below two values; both ends at
    the mean when the values are all equal)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sem = stats.sem(values)
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def paired_difference(ours: dict[int, float], base: dict[int, float], level: float = 0.95) -> dict:
    """`ours − base` over the seeds both have: the mean difference, its Student-t confidence interval, and the
    two-sided paired t-test's p (NaN below two pairs, or when every difference is the same)."""
    from scipy import stats

    seeds = sorted(set(ours) & set(base))
    diffs = [ours[s] - base[s] for s in seeds]
    if not diffs:
        return {"n_pairs": 0, "diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    mean, low, high = confidence_interval(diffs, level)
    p = math.nan
    if len(diffs) >= 2 and len(set(diffs)) > 1:
        p = float(stats.ttest_rel([ours[s] for s in seeds], [base[s] for s in seeds]).pvalue)
    return {"n_pairs": len(diffs), "diff": mean, "ci_low": low, "ci_high": high, "p": p}
