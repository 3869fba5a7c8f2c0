"""The regions a run's method kept, one per task (its grafts: a grafting method's γ_t, TALL-masks' final masks),
summarised in the run record under `regions`: what the premise predicts beside ACC — whether the tasks' regions are
small and nearly disjoint (Jaccard against random regions of the same sizes) and whether tasks of one type share
more of theirs (a Mantel test of Jaccard against same-type). Computed once per run from the masks in memory, so the
committed records carry it without the graft files, which stay out of git."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clgraft.metrics.mantel import correlate
from clgraft.metrics.overlap import empty_mask_matrix, intersection_counts, jaccard_matrix

if TYPE_CHECKING:
    from clgraft.grafting.graft import Graft


def task_regions(grafts: dict[str, Graft], names: list[str]) -> list[Graft] | None:
    """The graft of each task in stream order (matched by the task each graft records), or None unless every task
    has exactly one."""
    by_task: dict[str, list[Graft]] = {}
    for graft in grafts.values():
        by_task.setdefault(graft.meta.get("task", ""), []).append(graft)
    if any(len(by_task.get(name, [])) != 1 for name in names):
        return None
    return [by_task[name][0] for name in names]


def region_matrix(grafts: list[Graft]) -> np.ndarray:
    """The grafts' regions as one T×N bool matrix, laid out so that the pair counts read it in place."""
    matrix = empty_mask_matrix(len(grafts), grafts[0].numel)
    for row, graft in zip(matrix, grafts, strict=True):
        row[graft.positions.numpy()] = True
    return matrix


def random_jaccard(sizes: np.ndarray, numel: int) -> np.ndarray:
    """The expected Jaccard of independent random regions of these sizes over `numel` entries, E|a ∧ b| / (|a| + |b|
    − E|a ∧ b|) with E|a ∧ b| = |a|·|b| / N (1 on the diagonal)."""
    both = np.outer(sizes, sizes) / numel
    union = sizes[:, None] + sizes[None, :] - both
    with np.errstate(divide="ignore", invalid="ignore"):
        null = np.where(union > 0, both / union, 0.0)
    np.fill_diagonal(null, 1.0)
    return null


def regions_record(regions: list[Graft], names: list[str], types: list[str]) -> dict:
    """`regions` of run.json: per task its size; the T×T Jaccard matrix; the mean over task pairs of Jaccard and of
    its random-region null; and Spearman ρ of Jaccard with same-type (1 for two tasks of one type, else 0) with its
    Mantel p-value (None where every pair has the same type, or there are fewer than 3 pairs)."""
    counts = intersection_counts(region_matrix(regions))
    jaccard = jaccard_matrix(counts)
    sizes = np.diag(counts).astype(float)
    null = random_jaccard(sizes, regions[0].numel)
    same_type = np.array([[float(a == b) for b in types] for a in types])
    pairs = ~np.eye(len(regions), dtype=bool)
    return {
        "tasks": names,
        "sizes": [int(k) for k in sizes],
        "jaccard": jaccard.round(6).tolist(),
        "mean_jaccard": float(jaccard[pairs].mean()) if pairs.any() else None,
        "mean_random_jaccard": float(null[pairs].mean()) if pairs.any() else None,
        "types": types,
        "jaccard_vs_same_type": correlate(jaccard, same_type),
    }
