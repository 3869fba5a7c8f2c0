"""Run or reuse a set of runs and put their metrics side by side: mean ± std over seeds, one row per method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from clgraft.config import RunConfig
from clgraft.registry import Registry
from clgraft.results import write_text

METRICS = ("acc", "bwt", "forgetting", "fwt", "la")


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{100 * values.iloc[0]:.2f}"
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"


def summarize(records: list[dict]) -> pd.DataFrame:
    """One row per (method, options): n seeds, mean ± std (in points) of each metric, mean memory kept per task
    (from the method's report; old records without one count 0) and mean wall time."""
    rows = [
        {
            "method": r["method"]["name"],
            "options": r["method"]["options"],
            "seed": r["seed"],
            "wall_s": r["wall_s"],
            "extra_kb": r["method"].get("report", {}).get("extra_bytes_per_task", 0) / 1024,
            **{m: r["metrics"][m] for m in METRICS},
        }
        for r in records
    ]
    frame = pd.DataFrame(rows).astype({m: float for m in METRICS})
    frame["options"] = frame["options"].map(lambda o: ", ".join(f"{k}={v}" for k, v in o.items()) or "-")
    grouped = frame.groupby(["method", "options"], sort=False)
    table = grouped.agg(
        n=("seed", "count"),
        **{m: (m, _cell) for m in METRICS},
        extra_kb_per_task=("extra_kb", "mean"),
        wall_s=("wall_s", "mean"),
    )
    table["extra_kb_per_task"] = table["extra_kb_per_task"].map(lambda v: f"{v:.0f}")
    table["wall_s"] = table["wall_s"].map(lambda v: f"{v:.0f}")
    return table.reset_index()


def compare_runs(
    configs: list[RunConfig],
    registry: Registry,
    data_dir: Path | None,
    root: Path,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run each configuration (reusing finished runs under root), then print and write the comparison."""
    from clgraft.runner import Runner

    records = []
    for i, config in enumerate(configs, start=1):
        echo(f"[{i}/{len(configs)}] {config.method} seed {config.seed}")
        runner = Runner(config, registry, data_dir, root=root, progress=progress, echo=echo)
        records.append(runner.run())
    table = summarize(records)
    header = (
        f"stream {configs[0].stream}, {len(configs)} runs; metrics in accuracy points from R (DESIGN §2), "
        "mean ± std over seeds; extra_kb_per_task = memory kept per task beyond the model (grafts, buffers, "
        "Fisher, teacher); wall_s = mean seconds per run"
    )
    markdown = f"{header}\n\n{table.to_markdown(index=False)}\n"
    write_text(root / "compare.md", markdown)
    write_text(root / "compare.csv", table.to_csv(index=False))
    echo(f"\n{header}\n{table.to_string(index=False)}\nwritten: {root / 'compare.md'}, {root / 'compare.csv'}")
    return table
