"""PNG plots a person can read: for one run the R heatmap and accuracy over the stream per task; for a results
folder ACC and forgetting bars per method and stream (mean ± std over seeds). Analysis plots already in a run's
analysis/ folder are listed with them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from clgraft.io.figures import NOT_EVALUATED, pyplot, run_line, save, stream_label, wrap
from clgraft.io.records import read_json

CELL_IN = 0.75  # inches per heatmap cell: room for a 3-digit value and square cells whatever the stream's length
LABEL_WIDTH = 28  # characters per line of a bar label; longer labels wrap so the bars keep most of the width
VALUE_WIDTH = 16  # an option value longer than this is cut, so one "key=value" always fits on a label line


def report_run(run_dir: Path) -> list[Path]:
    """report/R.png and report/accuracy-over-time.png for a finished run, plus its analysis PNGs."""
    record = read_json(run_dir / "run.json")
    out = [
        save(r_heatmap(record), run_dir / "report" / "R.png"),
        save(accuracy_over_time(record), run_dir / "report" / "accuracy-over-time.png"),
    ]
    return out + sorted((run_dir / "analysis").glob("*.png"))


def _accuracy_rows(record: dict) -> tuple[list[int], list[str], np.ndarray]:
    """Stream steps that have an R row, their labels ('before', then 'after TASK'), and those rows in % (NaN where
    an entry was not evaluated)."""
    names = [t["name"] for t in record["tasks"]]
    rows = [(i, r) for i, r in enumerate(record["R"]) if r is not None]
    steps = [i for i, _ in rows]
    labels = ["before" if i == 0 else f"after {names[i - 1]}" for i in steps]
    return steps, labels, np.array([r for _, r in rows], dtype=float) * 100


def _annotate_cells(ax, values: np.ndarray) -> None:
    """Write each cell's accuracy in it, dark on the bright end of viridis and light on the dark end; '–' where the
    entry was not evaluated."""
    for (i, j), value in np.ndenumerate(values):
        if np.isnan(value):
            ax.text(j, i, "–", ha="center", va="center", color="0.35", fontsize=9)
        else:
            color = "black" if value >= 60 else "white"
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color=color, fontsize=9)


def r_heatmap(record: dict):
    """The R matrix as a heatmap: square cells with their values, rows the model after each task, columns the task
    tested, a two-line title naming the run, and a colorbar in accuracy %."""
    names = [t["name"] for t in record["tasks"]]
    _, labels, values = _accuracy_rows(record)
    plt = pyplot()
    width = CELL_IN * len(names) + 3.6  # + row labels and colorbar
    height = CELL_IN * len(labels) + 2.4  # + title and rotated column labels
    fig, ax = plt.subplots(figsize=(max(width, 5.5), height), layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad=NOT_EVALUATED)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="equal")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("tested on task")
    ax.set_ylabel("model")
    _annotate_cells(ax, values)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label("test accuracy (%)")
    title = "R: test accuracy % per task after each step\n" + run_line(record)
    ax.set_title(wrap(title, width=int(9 * fig.get_figwidth())), fontsize=10)
    if np.isnan(values).any():
        fig.supxlabel("– : not evaluated", fontsize=8, color="0.35")
    return fig


def accuracy_over_time(record: dict):
    """One line per task: its test accuracy % after each step of the stream, titled with the run; the legend sits
    outside the axes so it hides no line."""
    names = [t["name"] for t in record["tasks"]]
    steps, labels, values = _accuracy_rows(record)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for j, name in enumerate(names):
        ax.plot(steps, values[:, j], marker="o", label=name)
    ax.set_xticks(steps, labels, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_xlabel("model")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title="tested on", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(wrap("Test accuracy per task over the stream\n" + run_line(record), width=70), fontsize=10)
    return fig


def _value(value) -> str:
    """An option value as short as it reads: 1e+06 rather than 1000000.0, and at most VALUE_WIDTH characters."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def bar_labels(methods: list[dict]) -> list[str]:
    """A short label per bar entry ({'name', 'options'} and, for a leaderboard row, its 'setting'): the method's name,
    plus only the options and settings whose values differ among entries of the same method (`steps=50` for a run
    with other steps), wrapped to LABEL_WIDTH. Whole option strings would take most of the plot."""
    labels = []
    for method in methods:
        same = [m for m in methods if m["name"] == method["name"]]
        shown = [
            f"{k}={_value(values[k])}"
            for part in ("options", "setting")
            for values in [method.get(part, {})]
            for k in values
            if k not in _IN_OPTIONS and len({repr(m.get(part, {}).get(k)) for m in same}) > 1
        ]
        name = f"{method['name']} ({', '.join(shown)})" if shown else method["name"]
        labels.append(textwrap.fill(name, LABEL_WIDTH, break_on_hyphens=False))
    return labels


_IN_OPTIONS = {"method_options"}  # a setting key the options already show


def _seed_counts(counts: pd.Series) -> str:
    """'3 seeds' or '2–3 seeds': how many seeds the bars average."""
    low, high = int(counts.min()), int(counts.max())
    return f"{low} seed{'s' * (low != 1)}" if low == high else f"{low}–{high} seeds"


def _bar_panel(ax, means: pd.Series, stds: pd.Series, axis_label: str) -> None:
    """Horizontal bars of means ± std, each with its value written past the error bar (a zero bar is still read)
    and 'n/a' where the metric is undefined (e.g. forgetting for joint training)."""
    positions = np.arange(len(means))
    ax.barh(positions, means.fillna(0), xerr=stds.fillna(0), color="tab:blue", capsize=2)
    for y, mean, std in zip(positions, means, stds.fillna(0), strict=True):
        x = 0 if np.isnan(mean) else max(mean + std, 0)
        ax.annotate(
            "n/a" if np.isnan(mean) else f"{round(mean, 1) + 0.0:.1f}",  # + 0.0: no "-0.0"
            (x, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color="0.25",
        )
    ax.set_xlabel(axis_label)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.12)


def method_bars(stream: str, records: list[dict]):
    """ACC and forgetting bars per leaderboard row of one stream — method, options and every other setting but the
    seed (leaderboard.setting), so that runs with other steps, heads or test caps are bars of their own and never
    averaged into one — mean ± std over seeds, labelled with bar_labels."""
    from clgraft.io.records import config_hash
    from clgraft.results.leaderboard import setting

    settings = [setting(r) for r in records]
    frame = pd.DataFrame(
        {
            "key": config_hash(row),
            "method": {**r["method"], "setting": row},
            "acc": r["metrics"]["acc"],
            "forgetting": r["metrics"]["forgetting"],  # None where undefined (joint) or not evaluated
        }
        for r, row in zip(records, settings, strict=True)
    )
    groups = frame.groupby("key", sort=False)
    stats = groups[["acc", "forgetting"]].agg(["mean", "std"]).astype(float) * 100
    labels = bar_labels(list(groups["method"].first()))
    plt = pyplot()
    lines = max(label.count("\n") + 1 for label in labels)  # bars are evenly spaced: the tallest label sets the pitch
    height = len(labels) * (0.17 * lines + 0.22) + 1.6
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True, layout="constrained")
    _bar_panel(axes[0], stats[("acc", "mean")], stats[("acc", "std")], "ACC (%) — higher is better")
    _bar_panel(
        axes[1], stats[("forgetting", "mean")], stats[("forgetting", "std")], "forgetting (points) — lower is better"
    )
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    axes[0].set_xlim(0, 112)  # room for a value label past a bar near 100
    axes[0].set_xticks(range(0, 101, 20))
    axes[1].tick_params(labelleft=False)
    fig.suptitle(f"{stream}: ACC and forgetting per method (mean ± std over {_seed_counts(groups.size())})")
    return fig


def report_results(results: Path, records: list[dict]) -> list[Path]:
    """plots/STREAM-ORDER.png per stream: ACC and forgetting bars per method (mean ± std over seeds)."""
    by_stream: dict[str, list[dict]] = {}
    for r in records:
        by_stream.setdefault(f"{r['stream']['name']}-{r['stream'].get('order', '')}", []).append(r)
    return [
        save(method_bars(stream_label(part[0]["stream"]), part), results / "plots" / f"{stream}.png")
        for stream, part in by_stream.items()
    ]
