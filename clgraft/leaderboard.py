"""The leaderboard (docs/run-record.md): finished run records aggregated with pandas into one row per (stream, order,
method, options) — mean ± std and n over seeds, memory kept per task, wall time and the BibTeX keys a row should cite —
as Markdown, CSV or HTML."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from clgraft.config import HASHED_WHEN_SET
from clgraft.errors import ClgraftError
from clgraft.results import read_json

METRICS = ("acc", "bwt", "forgetting", "fwt", "la")
ROW_KEYS = ("stream", "order", "method", "options")


def load_records(results: Path) -> list[dict]:
    """Every finished run record under RESULTS/runs/ (or RESULTS itself when it holds run folders)."""
    runs = results / "runs" if (results / "runs").is_dir() else results
    records = [read_json(p) for p in sorted(runs.glob("*/run.json"))]
    if not records:
        raise ClgraftError(f"no finished runs under {runs}; run `clgraft sweep FILE --results {results}` first")
    return records


def citations(record: dict) -> list[str]:
    """BibTeX keys for a run: the method's papers, each task's data set, and clgraft."""
    from clgraft.methods import get_method

    method = get_method(record["method"]["name"]).citations(record["method"]["options"])
    data = [t.get("citation") or _task_citation(t["name"], t["version"]) for t in record["tasks"]]
    return list(dict.fromkeys([*method, *(d for d in data if d), "clgraft"]))


@lru_cache(maxsize=1)
def _builtin_registry():
    from clgraft.registry import Registry

    return Registry.discover()


def _task_citation(name: str, version: int) -> str | None:
    """A task's citation key from the registry, for records written before run.json carried it."""
    try:
        return _builtin_registry().task(f"{name}@{version}").citation
    except ClgraftError:
        return None


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{100 * values.iloc[0]:.2f}"
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"


def summarize(
    records: list[dict], keys: tuple[str, ...] = ROW_KEYS, sort_by: str | None = None, ascending: bool = False
) -> pd.DataFrame:
    """One row per combination of `keys`: n seeds, mean ± std (accuracy points) of each metric, mean memory kept per
    task (from the method's report; 0 when it has none), mean wall time, and the row's citation keys; sorted by the
    mean of `sort_by` (a metric, wall_s or extra_kb_per_task) when given, else in order of first appearance."""
    rows = [
        {
            "stream": r["stream"]["name"],
            "order": r["stream"].get("order", ""),
            "method": r["method"]["name"],
            "options": ", ".join(f"{k}={v}" for k, v in r["method"]["options"].items()) or "-",
            "seed": r["seed"],
            "wall_s": r["wall_s"],
            "extra_kb_per_task": r["method"].get("report", {}).get("extra_bytes_per_task", 0) / 1024,
            "cite": ", ".join(citations(r)) if "tasks" in r else "",
            **{m: r["metrics"][m] for m in METRICS},
            **{f"{m}_fixed": m in r.get("metrics_by_construction", {}) for m in METRICS},
        }
        for r in records
    ]
    frame = pd.DataFrame(rows).astype({m: float for m in METRICS})
    grouped = frame.groupby(list(keys), sort=False)
    numeric = grouped[[*METRICS, "wall_s", "extra_kb_per_task"]].mean()
    table = grouped.agg(n=("seed", "count"), **{m: (m, _cell) for m in METRICS})
    for m in METRICS:  # a value the method fixes by construction is said to be so, never shown as a measured ± 0
        fixed = grouped[f"{m}_fixed"].all() & numeric[m].notna()
        table.loc[fixed, m] = numeric.loc[fixed, m].map(lambda v: f"{100 * v + 0.0:.0f} (by construction)")
    table["extra_kb_per_task"] = numeric["extra_kb_per_task"].map(lambda v: f"{v:.0f}")
    table["wall_s"] = numeric["wall_s"].map(lambda v: f"{v:.0f}")
    table["cite"] = grouped["cite"].first()
    if sort_by is not None:
        if sort_by not in numeric.columns:
            raise ClgraftError(f"--sort {sort_by!r}: choose one of {', '.join(numeric.columns)}")
        table = table.loc[numeric[sort_by].sort_values(ascending=ascending, na_position="last").index]
    return table.reset_index()


def header(records: list[dict]) -> str:
    """What the numbers are: model, steps, test cap, evaluated R entries, seeds and machine(s) of the runs."""
    configs = [r["config"] for r in records]

    def values(key: str) -> str:  # a record older than a setting ran with its default
        return ", ".join(str(v) for v in sorted({str(c.get(key, HASHED_WHEN_SET.get(key))) for c in configs}))

    machines = sorted(
        {
            f"{h.get('machine', '?')} × {h.get('cpu_count', '?')} cores, {h.get('device', '?')}"
            for h in (r.get("hardware", {}) for r in records)
        }
    )
    return (
        f"{len(records)} runs; model {values('model')}; {values('steps')} steps per task, "
        f"batch {values('batch_size')}, lr {values('lr')} (head {values('head_lr')}), {values('max_length')} tokens, "
        f"test capped at {values('max_test')} per task, R entries evaluated: {values('evaluate')}; "
        f"seeds {values('seed')}; heads {values('head')}. Metrics in "
        "accuracy points from R (docs/metrics.md), mean ± std over seeds (n); extra_kb_per_task = memory kept per task "
        f"beyond the model; wall_s = mean seconds per run on: {'; '.join(machines)}."
    )


def render(table: pd.DataFrame, fmt: str, title: str = "") -> str:
    """The table as md (with a header paragraph), csv or html."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "html":
        return f"<p>{title}</p>\n" + table.to_html(index=False)
    if fmt == "md":
        return f"{title}\n\n{table.to_markdown(index=False)}\n"
    raise ClgraftError(f"--format {fmt!r}: choose md, csv or html")
