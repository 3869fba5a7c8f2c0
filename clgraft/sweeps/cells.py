"""One attempt at one sweep cell, as every backend runs it (in the driver, in a local worker process, as a Ray task),
and what came of it: the run's record, or why the cell failed, in words the sweep can print."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clgraft.config import RunConfig
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError, DiskFull

RETRIES = 2
"""How many times a cell whose worker died (killed, out of memory, a lost Ray node) is run again before it is
reported failed. A cell that fails with an error is not retried: the same input gives the same error."""

CellArgs = tuple[list[str] | None, str | None, str, bool, int]
"""What every cell of a sweep shares: task folders, data folder, the runs folder, whether a finished cell keeps its
weights, torch threads per cell (last: the Ray backend reserves that many CPUs)."""


@dataclass(frozen=True)
class Outcome:
    """A cell's end: `result` (run_cell's) when it finished, else `failure` (why, one line); `disk_full` when more
    space would fix it, which stops the sweep."""

    config: RunConfig
    result: dict | None = None
    failure: str | None = None
    disk_full: bool = False


def describe(config: RunConfig) -> str:
    """A cell in a few words: method (with its options), stream/order, seed."""
    options = "".join(f":{k}={v}" for k, v in config.method_options.items())
    return f"{config.method}{options} {config.stream}/{config.order} seed {config.seed}"


def run_cell(
    config: dict, tasks_dir: list[str] | None, data_dir: str | None, root: str, keep_weights: bool, threads: int
) -> dict:
    """Run (or reuse, or resume) one cell; returns its run folder's name, its record, the seconds it took and whether
    the record was there already (another sweep on the same results folder finished it). Without `keep_weights` a
    finished cell's weights/ folder (the model after each task, which a resumed run starts from) is removed: its
    record does not need it, and a sweep's weights fill a disk (about 0.5 GB a MiniLM cell)."""
    import torch

    from clgraft.runs.runner import Runner

    torch.set_num_threads(threads)
    registry = Registry.discover([Path(p) for p in tasks_dir] if tasks_dir else None)
    runner = Runner(
        RunConfig(**config),
        registry,
        Path(data_dir) if data_dir else None,
        root=Path(root),
        progress=False,
        echo=lambda s: None,
        waiting=lambda s: print(f"clgraft: {s}", file=sys.stderr, flush=True),
    )
    started = time.perf_counter()
    record = runner.run()
    if not keep_weights:
        shutil.rmtree(runner.dir / "weights", ignore_errors=True)
    return {"dir": runner.dir.name, "record": record, "cell_s": time.perf_counter() - started, "reused": runner.reused}


def attempt(config: dict, args: CellArgs) -> Outcome:
    """run_cell, with any error turned into a failed Outcome (a worker process or Ray task sends it back whole)."""
    cell = RunConfig(**config)
    try:
        return Outcome(cell, result=run_cell(config, *args))
    except DiskFull as e:
        return Outcome(cell, failure=str(e), disk_full=True)
    except ClgraftError as e:
        return Outcome(cell, failure=str(e))
    except Exception as e:  # a bug in one cell must not take the others down; the sweep reports it
        first = str(e).splitlines()[0] if str(e) else ""
        return Outcome(cell, failure=f"internal error: {type(e).__name__}: {first}")
