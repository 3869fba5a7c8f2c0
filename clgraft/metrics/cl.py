"""Continual-learning metrics from the accuracy matrix R, exactly as DESIGN §2 defines them.

R has T+1 rows and T columns: row 0 is the model before any training on the stream, row i (1..T) after training on
tasks 1..i. Every mean is unweighted over tasks (not by example count, unlike Avalanche's stream accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_matrix(R: Any) -> np.ndarray:
    m = np.asarray(R, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 1 or m.shape[0] != m.shape[1] + 1:
        raise ValueError(f"R must be a (T+1)×T matrix (row 0 = before training); got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("R holds NaN or infinite entries")
    return m


def cl_metrics(R: Any) -> dict[str, float | None]:
    """ACC, LA, BWT, FWT, forgetting and average incremental accuracy; BWT/FWT/forgetting are None when T = 1."""
    m = _as_matrix(R)
    T = m.shape[1]
    final, diag, before = m[T], np.diag(m[1:]), m[0]
    acc = float(final.mean())
    la = float(diag.mean())
    aia = float(np.mean([m[i, :i].mean() for i in range(1, T + 1)]))
    if T == 1:
        return {"acc": acc, "la": la, "bwt": None, "fwt": None, "forgetting": None, "avg_incremental_acc": aia}
    bwt = float((final[: T - 1] - diag[: T - 1]).mean())
    # R[j-1, j] with 1-based columns is m[c, c] for the 0-based column c = j-1
    fwt = float(np.mean([m[c, c] - before[c] for c in range(1, T)]))
    # max over l in [j, T-1] of R[l, j], with 1-based rows: rows j+1..T-1 (0-based column j)
    forgetting = float(np.mean([m[j + 1 : T, j].max() - final[j] for j in range(T - 1)]))
    return {"acc": acc, "la": la, "bwt": bwt, "fwt": fwt, "forgetting": forgetting, "avg_incremental_acc": aia}
