"""Continual-learning metrics from the accuracy matrix R, exactly as docs/metrics.md defines them.

R has T+1 rows and T columns: row 0 is the model before any training on the stream, row i (1..T) after training on
tasks 1..i. Every mean is unweighted over tasks (not by example count, unlike Avalanche's stream accuracy). A row may
be None where it was never evaluated (joint training has only rows 0 and T), and so may a single entry (a run with
`--evaluate seen|final` evaluates only what the metrics need); a metric that needs a missing entry is None, as are
BWT, FWT and forgetting for T = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

EVALUATE_PLANS = ("all", "seen", "final")


def evaluated_columns(plan: str, row: int, T: int) -> list[int]:
    """The tasks (0-based columns) evaluated in row `row` of R under an evaluation plan.

    all: every task in every row, (T+1)·T evaluations (accuracy-over-time plots and Chaudhry's forgetting need
    it). seen: what every other metric here needs — row 0 for FWT's b_j (j > 1), then in row i the tasks seen so
    far and the next one, T(T−1)/2 + 3T − 2 in all. final: what ACC, LA, BWT and FWT need — b_j, each task right
    after its training and just before it, and every task at the end, 4T − 3; forgetting and average incremental
    accuracy are then None.
    """
    if plan not in EVALUATE_PLANS:
        raise ValueError(f"evaluation plan {plan!r}: choose one of {', '.join(EVALUATE_PLANS)}")
    if plan == "all" or row == T:
        return list(range(T))
    if row == 0:
        return list(range(1, T))
    nxt = [row] if row < T else []
    return (list(range(row)) if plan == "seen" else [row - 1]) + nxt


def _as_matrix(R: Any) -> np.ndarray:
    """R as floats with missing (None) rows or entries as NaN; NaN or inf given as values are refused."""
    rows = list(R)
    widths = {len(r) if np.ndim(r) == 1 else 0 for r in rows if r is not None}
    T = widths.pop() if len(widths) == 1 else 0
    if T < 1 or len(rows) != T + 1:
        raise ValueError(f"R must be a (T+1)×T matrix (row 0 = before training); got {len(rows)} rows of {T}")
    given = [v for r in rows if r is not None for v in r if v is not None]
    if not np.isfinite(np.array(given, dtype=np.float64)).all():
        raise ValueError("R holds NaN or infinite entries (an entry never evaluated is None, not NaN)")
    return np.array([[None] * T if r is None else r for r in rows], dtype=np.float64)


def _defined(compute: Callable[[], float]) -> float | None:
    value = compute()
    return None if np.isnan(value) else float(value)


FWT_UNDEFINED = (
    "not defined with a fresh head per task: R[j−1, j] and b_j both score task j's untrained random head, so their "
    "difference is noise (use --head shared, where earlier tasks train the head task j is read through)"
)


CHAUDHRY_UNDEFINED = (
    "not defined with a fresh head per task: the rows before task j's training read task j through its untrained "
    "random head, which can beat its trained accuracy on an imbalanced test set (use `forgetting`, or --head shared)"
)


def cl_metrics(R: Any, fresh_task_heads: bool = False) -> dict[str, float | None]:
    """ACC, LA, BWT, FWT, forgetting (two forms) and average incremental accuracy of a (T+1)×T accuracy matrix.

    forgetting: mean over j < T of max_{l ∈ j..T−1} R[l, j] − R[T, j] (the best accuracy since task j was learned).
    forgetting_chaudhry: Chaudhry et al. 2018's form, max over l ∈ 1..T−1 (rows before task j's training count too).
    With `fresh_task_heads` (a fresh head per task: --head task) FWT and Chaudhry's forgetting are None: both read
    task j through its untrained random head (FWT_UNDEFINED, CHAUDHRY_UNDEFINED say why)."""
    m = _as_matrix(R)
    T = m.shape[1]
    final, diag, before = m[T], np.diag(m[1:]), m[0]
    out: dict[str, float | None] = {
        "acc": _defined(lambda: final.mean()),
        "la": _defined(lambda: diag.mean()),
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "forgetting_chaudhry": None,
        "avg_incremental_acc": _defined(lambda: np.mean([m[i, :i].mean() for i in range(1, T + 1)])),
    }
    if T > 1:
        out["bwt"] = _defined(lambda: (final[: T - 1] - diag[: T - 1]).mean())
        # R[j-1, j] with 1-based columns is m[c, c] for the 0-based column c = j-1
        if not fresh_task_heads:
            out["fwt"] = _defined(lambda: np.mean([m[c, c] - before[c] for c in range(1, T)]))
            out["forgetting_chaudhry"] = _defined(lambda: np.mean([m[1:T, j].max() - final[j] for j in range(T - 1)]))
        out["forgetting"] = _defined(lambda: np.mean(forgetting_by_task(R)))
    return out


def forgetting_by_task(R: Any) -> list[float]:
    """Each task's forgetting, the terms `forgetting` averages: for every task j but the last, the best accuracy
    since it was learned, max_{l ∈ j..T−1} R[l, j], less its final accuracy R[T, j] (NaN where an entry is missing).
    A claim reads them per task, to leave out tasks the run never learned (docs/claims.md)."""
    m = _as_matrix(R)
    T = m.shape[1]
    # max over l in [j, T-1] of R[l, j], with 1-based rows: rows j+1..T-1 of the 0-based column j
    return [float(m[j + 1 : T, j].max() - m[T, j]) for j in range(T - 1)]
