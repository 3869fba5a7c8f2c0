"""The Python API: what the command line does, for a notebook — run a stream, localize its tasks, compose grafts —
returning numbers and tables instead of printing them. Every call writes the same run directories, records and graft
files as the command line, so results from either are interchangeable (and a finished run is reused, not redone).

    from clgraft import api
    result = api.run("tiny", method="naive", steps=20)
    result.R                      # pandas DataFrame: rows before / after each task, columns = tasks
    result.metrics["acc"]         # ACC, BWT, forgetting, ... (docs/metrics.md)

Every accuracy the API returns is in accuracy points (0–100), as the command line prints them: R, the metrics, a
graft's accuracies and a composed model's. Ratios (`recovered`) and calibration errors (ECE) stay fractions, and
`RunResult.record` is run.json as written (fractions, docs/run-record.md).
    grafts = api.localize(result.run_dir, sparsity=0.01)
    composed = api.compose(result.run_dir, grafts["graft"], mode="union")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from clgraft.config import RunConfig

POINTS = 100.0
"""Accuracy points per unit of the fraction run.json records."""
ACCURACY_COLUMNS = ("acc_finetuned", "acc_grafted", "acc_base")
"""The columns of `localize`'s table that are accuracies (in points); `recovered` and the ECEs are not."""


@dataclass
class RunResult:
    """A finished run: its directory, R as a table and its metrics (accuracy points), and the whole run.json record
    (as written: fractions)."""

    run_dir: Path
    R: pd.DataFrame
    metrics: dict[str, float | None]
    record: dict[str, Any]


@dataclass
class Composed:
    """A model made of θ₀ and grafts, and the test accuracy (points) of each grafted task through its own head."""

    model: Any
    accuracy: dict[str, float]


def _registry(tasks_dirs: Sequence[str | Path] | None):
    from clgraft.data.registry import Registry

    return Registry.discover([Path(d) for d in tasks_dirs or []])


def _data_dir(data_dir: str | Path | None) -> Path | None:
    from clgraft.data.loading import data_dir_from

    return data_dir_from(Path(data_dir) if data_dir is not None else None)


def r_table(record: dict[str, Any]) -> pd.DataFrame:
    """R of a run record as a DataFrame in accuracy points: index 'before', 'after 1: task', ...; None where not
    evaluated."""
    names = [t["name"] for t in record["tasks"]]
    rows = [row if row is not None else [None] * len(names) for row in record["R"]]
    index = ["before"] + [f"after {i}: {n}" for i, n in enumerate(names, start=1)]
    return pd.DataFrame(rows, index=index, columns=names, dtype=float) * POINTS


def _points(values: dict[str, float | None]) -> dict[str, float | None]:
    """Accuracy fractions (or differences of them) as points; None stays None."""
    return {k: None if v is None else v * POINTS for k, v in values.items()}


def run(
    stream: str,
    method: str = "naive",
    options: dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    tasks_dirs: Sequence[str | Path] | None = None,
    progress: bool = False,
    **settings: Any,
) -> RunResult:
    """Run (or reuse, or resume) one stream with one method, as `clgraft run` does; `settings` are RunConfig fields
    (seed, steps, model, max_test, head, evaluate, ...). Method aliases (ties, stitch, ...) are resolved."""
    from clgraft.methods import get_method, parse_options, resolve
    from clgraft.runs.runner import Runner

    name, resolved = resolve(method, dict(options or {}))
    parse_options(get_method(name), resolved)
    config = RunConfig(stream=stream, method=name, method_options=resolved, **settings)
    runner = Runner(
        config,
        _registry(tasks_dirs),
        _data_dir(data_dir),
        Path(out) if out is not None else None,
        progress=progress,
        echo=lambda s: None,
    )
    record = runner.run()
    return RunResult(runner.dir, r_table(record), _points(record["metrics"]), record)


def localize(
    run_dir: str | Path,
    sparsity: float = 0.01,
    method: Literal["official", "scaled", "stitch", "sparsify", "disjoint", "top-tau", "random", "bias"] = "scaled",
    steps: int = 10,
    tasks: Sequence[str] | None = None,
    *,
    data_dir: str | Path | None = None,
    tasks_dirs: Sequence[str | Path] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Learn a graft per task of a finished run, as `clgraft localize` does; one row per task (accuracy points of θ_t,
    of the grafted model and of θ₀, recovered, ECE, graft path relative to the run directory)."""
    from clgraft.runs.localize_run import localize_finished_run

    registry, data = _registry(tasks_dirs), _data_dir(data_dir)
    rows = localize_finished_run(Path(run_dir), registry, data, sparsity, method, steps, tasks or (), seed)
    table = pd.DataFrame(rows).drop(columns=["search"])
    for column in ACCURACY_COLUMNS:
        table[column] = table[column] * POINTS
    if "ood" in table:
        table["ood"] = [{name: _points(accs) for name, accs in ood.items()} for ood in table["ood"]]
    return table


def compose(
    run_dir: str | Path,
    grafts: Sequence[str | Path],
    mode: Literal["union", "stitch"] = "union",
    *,
    data_dir: str | Path | None = None,
    tasks_dirs: Sequence[str | Path] | None = None,
) -> Composed:
    """θ₀ of a finished run plus the given grafts (paths relative to the run directory or absolute), summed
    (union) or with overlaps averaged (stitch), and each grafted task's test accuracy through its graft's head."""
    import torch

    from clgraft.grafting.compose import compose_into
    from clgraft.grafting.graft import load
    from clgraft.runs.runner import Runner
    from clgraft.training.loop import split_accuracy

    run_dir = Path(run_dir)
    runner, _ = Runner.from_run_dir(run_dir, _registry(tasks_dirs), _data_dir(data_dir))
    loaded = [load(g if Path(g).is_absolute() else run_dir / g) for g in grafts]
    model = runner.new_model(runner.backbone.model)
    compose_into(model, loaded, mode)
    tasks = {t.task.task: t for t in runner._context().tasks}
    accuracy = {}
    for graft in loaded:
        task = tasks[graft.meta["task"]]
        model.heads[task.head].load_state_dict({k: v.to(runner.device) for k, v in graft.head.items()})
        with torch.no_grad():
            accuracy[task.task.task] = POINTS * split_accuracy(
                model, task.head, task.test, task.label_offset, runner.opts.eval_batch_size, runner.device
            )
    return Composed(model, accuracy)
