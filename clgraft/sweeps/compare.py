"""Run or reuse a set of runs and put their metrics side by side: mean ± std over seeds, one row per method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from clgraft.config import RunConfig
from clgraft.data.registry import Registry
from clgraft.io.records import write_text
from clgraft.results.leaderboard import summarize


def compare_runs(
    configs: list[RunConfig],
    registry: Registry,
    data_dir: Path | None,
    root: Path,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    tensorboard: Path | None = None,
) -> pd.DataFrame:
    """Run each configuration (reusing finished runs under root), then print and write the comparison; with
    `tensorboard`, each run logs to a folder of its own under it."""
    from clgraft.runs.runner import Runner

    records = []
    for i, config in enumerate(configs, start=1):
        echo(f"[{i}/{len(configs)}] {config.method} seed {config.seed}")
        runner = Runner(config, registry, data_dir, root=root, progress=progress, echo=echo)
        runner.tensorboard = tensorboard / runner.dir.name if tensorboard else None
        records.append(runner.run())
    table = summarize(records, keys=("method", "options"), data_dir=data_dir)
    header = (
        f"stream {configs[0].stream}, {len(configs)} runs; metrics in accuracy points from R (docs/metrics.md), "
        "mean ± sample std [95% t interval] over seeds; *_vs_naive = paired difference from naive over shared seeds "
        "[95% interval] with the paired t-test's p; extra_kb_per_task = what the method keeps from task to task "
        "beyond θ₀ and its one model, per task (grafts, buffers, Fisher, teacher; docs/metrics.md), head_kb_per_task "
        "= its heads per task; wall_s = mean seconds per run"
    )
    markdown = f"{header}\n\n{table.to_markdown(index=False)}\n"
    write_text(root / "compare.md", markdown)
    write_text(root / "compare.csv", table.to_csv(index=False))
    echo(f"\n{header}\n{table.to_string(index=False)}\nwritten: {root / 'compare.md'}, {root / 'compare.csv'}")
    return table
