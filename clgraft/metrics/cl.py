"""Continual-learning metrics from the accuracy matrix R, exactly as DESIGN §2 defines them.

R has T+1 rows and T columns: row 0 is the model before any training on the stream, row i (1..T) after training on
tasks 1..i. Every mean is unweighted over tasks (not by example count, unlike Avalanche's stream accuracy). A row may
be None where it was never evaluated (joint training has only rows 0 and T); a metric that needs a missing entry
is None, as are BWT, FWT and forgetting for T = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _as_matrix(R: Any) -> np.ndarray:
    """R as floats with missing (None) rows as NaN; NaN or inf given as values are refused."""
    rows = list(R)
    present = np.array([r for r in rows if r is not None], dtype=np.float64)
    T = present.shape[1] if present.ndim == 2 else 0
    if present.ndim != 2 or T < 1 or len(rows) != T + 1:
        raise ValueError(f"R must be a (T+1)×T matrix (row 0 = before training); got {len(rows)} rows of {T}")
    if not np.isfinite(present).all():
        raise ValueError("R holds NaN or infinite entries (a row never evaluated is None, not NaN)")
    return np.array([[np.nan] * T if r is None else r for r in rows], dtype=np.float64)


def _defined(compute: Callable[[], float]) -> float | None:
    value = compute()
    return None if np.isnan(value) else float(value)


def cl_metrics(R: Any) -> dict[str, float | None]:
    """ACC, LA, BWT, FWT, forgetting and average incremental accuracy of a (T+1)×T accuracy matrix."""
    m = _as_matrix(R)
    T = m.shape[1]
    final, diag, before = m[T], np.diag(m[1:]), m[0]
    out: dict[str, float | None] = {
        "acc": _defined(lambda: final.mean()),
        "la": _defined(lambda: diag.mean()),
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "avg_incremental_acc": _defined(lambda: np.mean([m[i, :i].mean() for i in range(1, T + 1)])),
    }
    if T > 1:
        out["bwt"] = _defined(lambda: (final[: T - 1] - diag[: T - 1]).mean())
        # R[j-1, j] with 1-based columns is m[c, c] for the 0-based column c = j-1
        out["fwt"] = _defined(lambda: np.mean([m[c, c] - before[c] for c in range(1, T)]))
        # max over l in [j, T-1] of R[l, j], with 1-based rows: rows j+1..T-1 of the 0-based column j
        out["forgetting"] = _defined(lambda: np.mean([m[j + 1 : T, j].max() - final[j] for j in range(T - 1)]))
    return out
