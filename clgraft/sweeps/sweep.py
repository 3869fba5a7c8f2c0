"""Benchmark sweeps (docs/run-record.md): a YAML grid of streams × orders × methods × option values × seeds, expanded
into run configurations; each cell is an ordinary run directory under RESULTS/runs/, so a finished cell is never
recomputed and a killed sweep resumes where it stopped. Cells run in-process, in worker processes, or as Ray tasks.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm.auto import tqdm

from clgraft.config import DEFAULT_MODEL, Optimizer, RunConfig
from clgraft.data.registry import Registry, task_dirs
from clgraft.errors import ClgraftError, Stopped, validation_message
from clgraft.io.records import config_hash, read_json, write_json
from clgraft.methods import get_method, parse_method_spec, parse_options
from clgraft.runs.identity import identity, record_identity
from clgraft.sweeps.cells import CellArgs, Outcome, attempt
from clgraft.sweeps.local import run_local
from clgraft.sweeps.on_ray import run_on_ray, start_ray
from clgraft.sweeps.stopping import stop_on_signals
from clgraft.sweeps.tally import Tally


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepStream(_Strict):
    stream: str
    orders: list[str] | None = Field(default=None, description="orders to run; default: the stream's first")
    methods: list[str] | None = Field(
        default=None, min_length=1, description="this stream's methods; default: the sweep's"
    )
    seeds: list[int] | None = Field(default=None, min_length=1, description="this stream's seeds; default: the sweep's")


class RunSettings(_Strict):
    """The run options a sweep fixes for every cell (RunConfig's fields other than stream, method and seed)."""

    steps: int = Field(default=50, gt=0)
    batch_size: int = Field(default=8, gt=0)
    lr: float = Field(default=1e-4, gt=0)
    head_lr: float = Field(default=1e-3, gt=0)
    max_length: int = Field(default=128, gt=1)
    max_test: int | None = Field(default=None, gt=0)
    head: str = "task"
    device: str = "cpu"
    evaluate: str = "all"
    freeze_embeddings: bool | None = None
    probe_steps: int = Field(default=0, ge=0)
    optimizer: Optimizer = "adamw"
    l1_to_init: float = Field(default=0.0, ge=0)


class Sweep(_Strict):
    """A sweep file: `sweep`, `version`, the grid, and the settings shared by its cells."""

    sweep: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    model: str = DEFAULT_MODEL
    streams: list[SweepStream] = Field(min_length=1)
    methods: list[str] = Field(min_length=1, description="NAME or alias, optionally NAME:KEY=VALUE[:KEY=VALUE]")
    grid: dict[str, dict[str, list[Any]]] = Field(
        default={}, description="per method item: option → values, every combination run"
    )
    seeds: list[int] = Field(min_length=1)
    run: RunSettings = RunSettings()
    vary: dict[str, list[Any]] = Field(
        default={}, description="run settings (keys of `run`) → values, every combination run (e.g. a pilot's steps)"
    )

    @model_validator(mode="after")
    def _vary_run_settings(self) -> Sweep:
        unknown = sorted(set(self.vary) - set(RunSettings.model_fields))
        if unknown:
            raise ValueError(f"vary: {', '.join(unknown)} not a run setting ({', '.join(RunSettings.model_fields)})")
        self.settings()  # every combination must be valid run settings
        return self

    def settings(self) -> list[RunSettings]:
        """The run settings of the cells: `run`, once per combination of the `vary` values."""
        return [
            RunSettings.model_validate({**self.run.model_dump(), **dict(zip(self.vary, values, strict=True))})
            for values in itertools.product(*self.vary.values())
        ]


def load_sweep(spec: str, tasks_dir: list[Path] | None = None) -> tuple[Sweep, Path]:
    """A sweep from a YAML path, or by name from the `sweeps/` folders of the task directories."""
    path = Path(spec)
    if not path.is_file():
        found = [
            d / "sweeps" / f"{spec}.yaml" for d in task_dirs(tasks_dir) if (d / "sweeps" / f"{spec}.yaml").is_file()
        ]
        if not found:
            raise ClgraftError(f"sweep '{spec}': no such file, and no sweeps/{spec}.yaml in the task folders")
        path = found[-1]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Sweep.model_validate(doc), path
    except yaml.YAMLError as e:
        raise ClgraftError(f"{path}: not valid YAML ({getattr(e, 'problem', e)})") from e
    except ValidationError as e:
        raise ClgraftError(validation_message(path, e)) from e


def expand(sweep: Sweep, registry: Registry, where: Path) -> list[RunConfig]:
    """Every cell of the grid as a RunConfig (streams, orders, methods and tasks checked before anything runs): per
    stream and order, its methods (the stream's own list, else the sweep's) × option values × run settings × its
    seeds."""
    cells = []
    for i, entry in enumerate(sweep.streams):
        try:
            stream = registry.stream(entry.stream)
            orders = entry.orders or [stream.order(None)[0]]
            for order in orders:
                stream.order(order)
        except ClgraftError as e:
            raise ClgraftError(f"{where}: streams.{i}: {e}") from None
        for order in orders:
            for item in entry.methods or sweep.methods:
                method, option_sets = _method_options(sweep, item, where)
                for opts in option_sets:
                    for settings in sweep.settings():
                        for seed in entry.seeds or sweep.seeds:
                            cells.append(
                                RunConfig(
                                    stream=entry.stream,
                                    order=order,
                                    method=method,
                                    method_options=opts,
                                    model=sweep.model,
                                    seed=seed,
                                    **settings.model_dump(),
                                )
                            )
    return cells


def _method_options(sweep: Sweep, item: str, where: Path) -> tuple[str, list[dict]]:
    """One `methods` item's method and option sets: its own options, crossed with its `grid` values; each checked."""
    try:
        method, options = parse_method_spec(item)
    except ClgraftError as e:
        raise ClgraftError(f"{where}: methods: {e}") from None
    grid = sweep.grid.get(item, {})
    out = []
    for values in itertools.product(*grid.values()):
        opts = {**options, **dict(zip(grid, values, strict=True))}
        try:
            parse_options(get_method(method), opts)
        except ClgraftError as e:
            raise ClgraftError(f"{where}: grid.{item}: {e}") from None
        out.append(opts)
    return method, out


def select_cells(cells: list[RunConfig], streams: list[str] | None, methods: list[str] | None) -> list[RunConfig]:
    """The cells of the given streams and methods (None: all). A method is a name or an alias with options
    (`ties`, `graft-compose:sparsity=0.2`): it selects the cells of that method whose options, defaults filled in,
    include those given.
    A stream or method that selects nothing is an error naming what the sweep has."""
    chosen = [c for c in cells if not streams or c.stream in streams]
    if streams and not chosen:
        have = ", ".join(sorted({c.stream for c in cells}))
        raise ClgraftError(f"--stream {', '.join(streams)}: the sweep has no such stream ({have})")
    if not methods:
        return chosen
    wanted = [parse_method_spec(m) for m in methods]
    for spec, (method, options) in zip(methods, wanted, strict=True):
        if not any(_picks(c, method, options) for c in chosen):
            have = ", ".join(dict.fromkeys(c.method for c in chosen))
            raise ClgraftError(
                f"--method {spec}: no cell of the sweep{' on those streams' if streams else ''} ({have})"
            )
    return [c for c in chosen if any(_picks(c, m, o) for m, o in wanted)]


def _picks(cell: RunConfig, method: str, options: dict[str, Any]) -> bool:
    """Whether `cell` is of `method` with these option values, its own options read with their defaults filled in
    (`localizer=scaled` picks the cells that leave it at its default)."""
    return cell.method == method and options.items() <= identity(cell)["method_options"].items()


def finished_runs(runs_dir: Path) -> set[str]:
    """The configurations (hashes of config.identity) of the finished runs under runs_dir, as run.json records
    them; a record that cannot be read is not a finished run."""
    done = set()
    for path in sorted(runs_dir.glob("*/run.json")):
        try:
            done.add(config_hash(record_identity(read_json(path))))
        except (ClgraftError, KeyError):
            continue
    return done


MANIFESTS = "sweeps"
"""RESULTS/sweeps/NAME.json: the cells of each sweep run into a results folder."""


def write_manifest(results: Path, sweep: Sweep, cells: list[RunConfig]) -> Path:
    """Write RESULTS/sweeps/NAME.json: the sweep's name and version and every cell (its configuration hash, stream,
    order, method and seed), so that a leaderboard built while the sweep is still running says how many of its
    cells are finished."""
    path = results / MANIFESTS / f"{sweep.sweep}.json"
    write_json(
        path,
        {
            "sweep": sweep.sweep,
            "version": sweep.version,
            "cells": [
                {
                    "hash": config_hash(identity(c)),
                    "stream": c.stream,
                    "order": c.order,
                    "method": c.method,
                    "seed": c.seed,
                }
                for c in cells
            ],
        },
    )
    return path


def sweep_progress(results: Path) -> list[str]:
    """One line per sweep manifest in RESULTS: 'sweep NAME vV: k of n cells finished (stream/order: k of n; …); in
    progress', or 'complete (n cells)' once every cell has its record."""
    done = finished_runs(results / "runs")
    lines = []
    for path in sorted((results / MANIFESTS).glob("*.json")):
        manifest = read_json(path)
        per_stream: dict[str, list[int]] = {}
        for cell in manifest["cells"]:
            count = per_stream.setdefault(f"{cell['stream']}/{cell['order']}", [0, 0])
            count[0] += cell["hash"] in done
            count[1] += 1
        finished, total = sum(c[0] for c in per_stream.values()), sum(c[1] for c in per_stream.values())
        name = f"sweep {manifest['sweep']} v{manifest['version']}"
        if finished == total:
            lines.append(f"{name}: complete ({total} cells)")
        else:
            parts = "; ".join(f"{stream}: {k} of {n}" for stream, (k, n) in per_stream.items())
            lines.append(f"{name}: {finished} of {total} cells finished ({parts}); in progress")
    return lines


def _is_done(config: RunConfig, done: set[str]) -> bool:
    """Whether a finished run has exactly this configuration (config.identity: a record whose options merely contain
    the cell's is another configuration). Data files and model weights are not read here; a cell that runs is
    checked against them by the runner."""
    return config_hash(identity(config)) in done


def longest_first(cells: list[RunConfig]) -> list[RunConfig]:
    """Cells ordered by estimated cost (the method's relative cost × steps), costliest first: a pool that ends on
    short cells leaves no worker idle for long at the end (longest-processing-time-first scheduling)."""
    return sorted(cells, key=lambda c: -get_method(c.method).relative_cost * c.steps)


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(
    cells: list[RunConfig],
    results: Path,
    tasks_dir: list[Path] | None,
    data_dir: Path | None,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    keep_weights: bool = True,
) -> dict:
    """Run every cell not finished yet; returns timing (sweep wall time vs the cells' own time). Without
    `keep_weights` each finished cell's weights/ folder is removed (run_cell).

    A cell whose worker dies is run again a bounded number of times, then reported failed with its reason while the
    others finish; a sweep with failed cells ends with a one-line error listing them. A full disk stops the sweep.
    SIGTERM or SIGINT ends every worker and raises Stopped, saying what finished and what is left; the same command
    resumes."""
    runs = results / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    done = finished_runs(runs)
    todo = longest_first([c for c in cells if not _is_done(c, done)])
    # torch threads × workers ≤ cores: no oversubscription. From the workers asked for, not the cells left: the
    # thread count changes losses in their last bits, so a resumed sweep's cells run as an uninterrupted one's would
    threads = max(1, cores() // workers)
    workers = max(1, min(workers, len(todo) or 1))
    echo(
        f"{len(cells)} cells, {len(cells) - len(todo)} finished already; {len(todo)} to run on {backend} "
        f"({workers} worker(s) × {threads} torch thread(s))"
    )
    task_dirs = [str(p) for p in tasks_dir] if tasks_dir else None
    args = (task_dirs, str(data_dir) if data_dir else None, str(runs), keep_weights, threads)
    tally = Tally(len(cells), todo)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="sweep", unit="cell", disable=not progress)
    start = time.perf_counter()
    outcomes = _backend(backend, todo, args, workers, address, echo)
    with stop_on_signals(), closing(outcomes):
        try:
            for outcome in outcomes:
                tally.add(outcome, runs, echo)
                bar.update(1)
                if not progress and (line := tally.finished_line(outcome)):
                    echo(line)  # a log without bars (nohup, CI) still says what finished when
        except Stopped as e:
            bar.close()
            raise Stopped(e.signum, tally.stopped()) from None
    bar.close()
    wall = time.perf_counter() - start
    overhead = (wall * workers - tally.cell_s) / tally.cell_s if tally.cell_s else 0.0
    reused = f"; {tally.reused} of them finished meanwhile by another sweep on {results}" if tally.reused else ""
    echo(
        f"sweep: {len(todo)} cells in {wall:.1f} s (cells' own time {tally.cell_s:.1f} s; overhead "
        f"{100 * overhead:.1f}%){reused}"
    )
    if tally.failed:
        raise ClgraftError(tally.failures())
    return {"cells": len(cells), "ran": len(todo), "wall_s": wall, "cell_s": tally.cell_s, "overhead": overhead}


def _backend(
    backend: str, todo: list[RunConfig], args: CellArgs, workers: int, address: str | None, echo: Callable[[str], None]
) -> Iterator[Outcome]:
    """The cells' outcomes as they end: as Ray tasks, in worker processes, or one after another in this process."""
    if backend == "ray":
        return run_on_ray(todo, args, start_ray(address, cores()))
    if workers > 1:
        return run_local(todo, args, workers, echo)
    return (attempt(config.model_dump(), args) for config in todo)
