"""Overlap of localized regions as a measure of task similarity (docs/protocols.md): asymmetric overlap, Jaccard, the
random-mask null, and all T×T counts (overall and per segment) from one pass over the masks."""

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


def empty_mask_matrix(t: int, n: int) -> np.ndarray:
    """T empty masks over N entries, laid out as the pair-count kernel reads them (N rounded up to a multiple of 8,
    the padding left False), so that filling it in place and counting needs no copy."""
    return np.zeros((t, -(-n // 8) * 8), dtype=bool)


def mask_matrix(masks: Any) -> np.ndarray:
    """T masks as one T×N' bool matrix (C order, N' = N rounded up to a multiple of 8, zero-padded) that the
    pair-count kernel reads as 64-bit words: the input itself when it already is one, else one copy."""
    if isinstance(masks, (list, tuple)):
        rows = [_bool(m) for m in masks]
        n = len(rows[0]) if rows else 0
        if any(len(r) != n for r in rows):
            raise ValueError(f"masks must have the same length, got {sorted({len(r) for r in rows})}")
    else:
        rows = as_numpy(masks)
        if rows.dtype != np.bool_ or rows.ndim != 2:
            raise TypeError(f"masks must be a list of bool vectors or a T×N bool matrix, got {rows.dtype} {rows.shape}")
        n = rows.shape[1]
        if n % 8 == 0 and rows.flags.c_contiguous and rows.ctypes.data % 8 == 0:
            return rows
    out = empty_mask_matrix(len(rows), n)
    for i, row in enumerate(rows):
        out[i, :n] = row
    return out


def segment_intersection_counts(masks: Any, bounds: Any) -> np.ndarray:
    """C[s, i, j] = |γ_i ∧ γ_j| over entries [bounds[s], bounds[s+1]) for T masks over the same N entries.

    masks: a list of T bool vectors or a T×N bool matrix (numpy or torch); a C-ordered matrix with N a multiple of 8
    is read in place, anything else is copied once. All T(T+1)/2 pairs of all segments come from one pass over
    the masks (a compiled kernel, `_pair_counts`), so per-layer and whole-model overlap cost one read.
    """
    matrix = mask_matrix(masks)
    bounds = np.asarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or len(bounds) < 2 or np.any(np.diff(bounds) < 0) or bounds[0] < 0:
        raise ValueError(f"bounds must be at least two increasing offsets from 0, got {bounds.tolist()}")
    if bounds[-1] > matrix.shape[1]:
        raise ValueError(f"bounds end at {bounds[-1]}, past the masks' {matrix.shape[1]} entries")
    return _counts(matrix, bounds)


def intersection_counts(masks: Any) -> np.ndarray:
    """C[i, j] = |γ_i ∧ γ_j| for T masks over the same N entries (C[i, i] = |γ_i|), in one pass over the masks."""
    matrix = mask_matrix(masks)
    return _counts(matrix, np.array([0, matrix.shape[1]]))[0]


def _counts(matrix: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Symmetric per-segment counts from the kernel's upper triangles (the zero padding adds nothing)."""
    from clgraft.metrics._pair_counts import segment_counts  # compiles on first use: keep it off import

    t = len(matrix)
    if t == 0:
        return np.zeros((len(bounds) - 1, 0, 0), dtype=np.int64)
    upper = segment_counts(matrix.view(np.uint8), matrix.view(np.uint64), bounds)
    return upper + np.triu(upper, 1).transpose(0, 2, 1)


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
