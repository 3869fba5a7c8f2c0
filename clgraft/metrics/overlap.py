"""Overlap of localized regions as a measure of task similarity (DESIGN §5): asymmetric overlap, Jaccard, the
random-mask null, and all T×T counts from one pass over the masks packed to bits."""

from __future__ import annotations

from typing import Any

import numpy as np

from clgraft.metrics._arrays import as_numpy


def _bool(mask: Any) -> np.ndarray:
    m = as_numpy(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"masks must be bool, got {m.dtype}")
    return m.reshape(-1)


def overlap(a: Any, b: Any) -> float:
    """O(a→b) = |a ∧ b| / |b|: the share of b's region that a also selects (0 when b is empty)."""
    a, b = _bool(a), _bool(b)
    size = np.count_nonzero(b)
    return float(np.count_nonzero(a & b) / size) if size else 0.0


def jaccard(a: Any, b: Any) -> float:
    """|a ∧ b| / |a ∨ b| (0 when both are empty)."""
    a, b = _bool(a), _bool(b)
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def intersection_counts(masks: list[Any]) -> np.ndarray:
    """C[i, j] = |γ_i ∧ γ_j| for T masks over the same N entries (C[i, i] = |γ_i|).

    Each mask is read once and packed to N/8 bytes; the T(T+1)/2 pairs are then AND + popcount over the packed
    words (one vector operation per row), never over the N-entry masks again.
    """
    packed = np.stack([np.packbits(_bool(m)) for m in masks]) if masks else np.zeros((0, 0), np.uint8)
    words = packed if packed.shape[1] % 8 else packed.view(np.uint64)
    t = len(masks)
    counts = np.zeros((t, t), dtype=np.int64)
    for i in range(t):
        counts[i, i:] = np.bitwise_count(words[i] & words[i:]).sum(axis=1)
    return np.triu(counts) + np.triu(counts, 1).T


def overlap_matrix(counts: np.ndarray) -> np.ndarray:
    """O[i, j] = |γ_i ∧ γ_j| / |γ_j| from intersection counts (columns of empty masks are 0)."""
    sizes = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sizes[None, :] > 0, counts / sizes[None, :], 0.0)


def jaccard_matrix(counts: np.ndarray) -> np.ndarray:
    """J[i, j] = |γ_i ∧ γ_j| / |γ_i ∨ γ_j| from intersection counts."""
    sizes = np.diag(counts).astype(float)
    union = sizes[:, None] + sizes[None, :] - counts
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, counts / union, 0.0)


def random_overlap(counts: np.ndarray, numel: int) -> np.ndarray:
    """The null: expected O[i, j] for independent random masks of the same sizes, |γ_i|·|γ_j| / N / |γ_j| = s_i."""
    sizes = np.diag(counts).astype(float)
    return np.repeat((sizes / numel)[:, None], len(sizes), axis=1)
