"""Where a run's time goes: wall seconds per phase (fine-tuning, evaluation of R, localization, selection on dev,
writes), so that run.json can say what a cell cost and the benchmarks can say what to make faster.

A phase's time is exclusive: a write inside fine-tuning counts as a write, not as fine-tuning. The totals are per
process; a run reads the difference between two `totals()`, so runs in one process do not mix.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("train", "evaluate", "localize", "select", "write")
"""The phases a run records: fine-tuning steps, evaluation of R, mask searches, choices on dev sets (λ grids),
atomic writes of records and weights. The rest of a run's wall time is recorded as `other`."""

_totals: dict[str, float] = defaultdict(float)
_open: list[list] = []  # [name, start, seconds spent in phases opened inside it]


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the time inside the block as `name`, less the time of phases opened inside it."""
    _open.append([name, time.perf_counter(), 0.0])
    try:
        yield
    finally:
        _, start, inner = _open.pop()
        elapsed = time.perf_counter() - start
        _totals[name] += elapsed - inner
        if _open:
            _open[-1][2] += elapsed


def totals() -> dict[str, float]:
    """Seconds spent so far in each phase by this process."""
    return {name: _totals[name] for name in PHASES}


def spent_since(before: dict[str, float], wall: float, earlier: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds per phase since `before` (added to `earlier`, the record of a resumed run's first part), with `other`
    = the rest of `wall` (the whole run's wall time); rounded for the record."""
    now = totals()
    spent = {name: now[name] - before[name] + (earlier or {}).get(name, 0.0) for name in PHASES}
    spent["other"] = max(0.0, wall - sum(spent.values()))
    return {name: round(seconds, 3) for name, seconds in spent.items()}
