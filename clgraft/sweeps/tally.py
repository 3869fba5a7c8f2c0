"""What a sweep's cells came to while it runs — finished, reused, failed, left — and the words it ends with: the
summary a stopped sweep prints, the error listing failed cells, the stop on a full disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clgraft.config import RunConfig
from clgraft.errors import DiskFull
from clgraft.io.records import write_json
from clgraft.sweeps.cells import Outcome, describe

_RESUME = "rerun the same command to resume"
_LISTED = 5
"""How many cells a message names before it says 'and N more'."""


class Tally:
    """What a sweep's cells came to so far (finished, reused, failed, left) and the words it ends with."""

    def __init__(self, total: int, todo: list[RunConfig]):
        self.total, self.before = total, total - len(todo)
        self.left = list(todo)
        self.finished, self.reused, self.cell_s = 0, 0, 0.0
        self.failed: list[str] = []

    def add(self, outcome: Outcome, runs: Path, echo: Callable[[str], None]) -> None:
        """Count one cell's outcome. A record that was written on another machine (Ray without a shared results
        folder) is written here; a failure is printed at once; a full disk stops the sweep."""
        self.left.remove(outcome.config)
        if outcome.failure is not None:
            self.failed.append(f"{describe(outcome.config)}: {outcome.failure}")
            echo(f"cell failed: {self.failed[-1]}")
            if outcome.disk_full:
                raise DiskFull(f"{self.failed[-1]} — the sweep stopped ({self._counts()}); {_RESUME}")
            return
        result = outcome.result
        target = runs / result["dir"] / "run.json"
        if not target.exists():
            write_json(target, result["record"])
        self.finished += 1
        self.reused += result["reused"]
        self.cell_s += 0.0 if result["reused"] else result["cell_s"]

    def finished_line(self, outcome: Outcome) -> str | None:
        """The line a sweep without progress bars prints for a finished cell (None for a failed one, which `add`
        printed): which cell, its own time, and the counts."""
        if outcome.failure is not None:
            return None
        how = "finished meanwhile by another sweep" if outcome.result["reused"] else f"{outcome.result['cell_s']:.0f} s"
        return f"cell {describe(outcome.config)}: done ({how}); {self._counts()}"

    def _counts(self) -> str:
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"finished: {self.before + self.finished} of {self.total} cells{failed}; left: {len(self.left)}"

    def stopped(self) -> str:
        """What a stopped sweep prints: the counts, the cells left (a few named), and how to resume."""
        return f"{self._counts()}{_named([describe(c) for c in self.left])} — {_RESUME}"

    def failures(self) -> str:
        """The one-line error of a sweep whose cells failed: how many, each with its reason."""
        return (
            f"{len(self.failed)} of {self.total} cells failed, the others finished: {'; '.join(self.failed[:_LISTED])}"
            f"{_more(self.failed)} — rerun the same command to run the failed cells again"
        )


def _named(cells: list[str]) -> str:
    return f" ({', '.join(cells[:_LISTED])}{_more(cells)})" if cells else ""


def _more(items: list) -> str:
    return f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
