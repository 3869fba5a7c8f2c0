"""The Mantel test: the rank correlation of two T×T task-similarity matrices over their T(T−1)/2 pairs, with a
p-value from permuting one matrix's task labels (rows and columns together). Pairs that share a task are not
independent, so an ordinary correlation test over the pairs would be too confident."""

from __future__ import annotations

import numpy as np
from scipy import stats

PERMUTATIONS = 9999
"""Resamples of the permutation test (all T! orders are enumerated where there are fewer)."""


def correlate(similarity: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict:
    """Spearman ρ between two symmetric T×T matrices over the pairs i < j, with a Mantel permutation p-value
    (task labels of the reference permuted jointly over rows and columns, two-sided)."""
    reference = (reference + reference.T) / 2
    iu = np.triu_indices(len(similarity), k=1)
    x = similarity[iu]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(reference[iu]) == 0:
        return {"rho": None, "p": None, "pairs": len(x), "note": "constant or too few pairs"}

    def rho(order: np.ndarray) -> float:
        return float(stats.spearmanr(x, reference[np.ix_(order, order)][iu]).statistic)

    result = stats.permutation_test(
        (np.arange(len(similarity)),),
        rho,
        permutation_type="pairings",
        n_resamples=PERMUTATIONS,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return {"rho": float(result.statistic), "p": float(result.pvalue), "pairs": len(x)}
