"""PNG plots a person can read: for one run the R heatmap and accuracy over the stream per task; for a results
folder ACC and forgetting bars per method and stream (mean ± std over seeds). Analysis plots already in a run's
analysis/ folder are listed with them."""

from __future__ import annotations

import textwrap
from collections import Counter
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
    """A short label per bar entry ({'name', 'options'} and, for a leaderboard row, its 'setting'): the method's name
    (or the alias its options make it: `ties`, `stitch`, `consensus`), plus only the options whose values differ
    among entries of the same name — a number (a knob, such as `sparsity`) on every entry, any other value (a choice,
    such as `localizer=random`) only where it is not the method's default — and the run settings where an entry's
    value is not the one most entries of that name share (`steps=50` on the run with other steps, nothing on the
    others; between two equally common values, the one most entries of any name share goes unnamed), wrapped to
    LABEL_WIDTH. Whole option strings would take most of the plot."""
    labels = []
    names = [_known_as(m) for m in methods]
    for method, known_as in zip(methods, names, strict=True):
        same = [m for m, n in zip(methods, names, strict=True) if n == known_as]
        options = method.get("options", {})
        defaults = _option_defaults(method["name"])
        shown = [f"{k}={_value(options[k])}" for k in options if _named(same, k, options[k], defaults)]
        setting = method.get("setting", {})
        shown += [
            f"{k}={_value(setting[k])}"
            for k in setting
            if k not in _IN_OPTIONS and _unusual(same, methods, k, setting[k])
        ]
        name = f"{known_as} ({', '.join(shown)})" if shown else known_as
        labels.append(textwrap.fill(name, LABEL_WIDTH, break_on_hyphens=False))
    return labels


def _named(same: list[dict], key: str, value: object, defaults: dict) -> bool:
    """Whether a label names option `key`: its values differ among `same`, and it is a number (a knob: every entry
    says where it sits) or this value is not the method's default (a choice: only the entries that made another)."""
    if len({repr(m.get("options", {}).get(key)) for m in same}) < 2:
        return False
    knob = isinstance(value, int | float) and not isinstance(value, bool)
    return knob or key not in defaults or value != defaults[key]


def _option_defaults(name: str) -> dict:
    """A method's option defaults, {} for a name clgraft does not know (a record of a method since removed)."""
    from clgraft.methods import METHODS

    return METHODS[name].option_defaults() if name in METHODS else {}


def _unusual(same: list[dict], entries: list[dict], key: str, value: object) -> bool:
    """Whether `value` of run setting `key` is not the one most of `same` (the entries of one name) share; where
    several values are as common there (naive once at each recipe), whether it is not the one most of all `entries`
    share (every value is named where that is a tie too)."""

    def unusual_among(group: list[dict]) -> bool | None:
        counts = Counter(repr(m.get("setting", {}).get(key)) for m in group)
        most = max(counts.values())
        if len(counts) == 1 or counts[repr(value)] < most:
            return len(counts) > 1
        return None if list(counts.values()).count(most) > 1 else False

    within = unusual_among(same)
    if within is not None:
        return within
    across = unusual_among(entries)
    return True if across is None else across


def _known_as(method: dict) -> str:
    """The name the literature gives a configured method (methods.ALIASES: `ties` for merge with merge=ties), else
    the method's own name."""
    from clgraft.methods import ALIASES

    options = method.get("options", {})
    return next(
        (
            alias
            for alias, (name, preset) in ALIASES.items()
            if name == method["name"] and all(options.get(k) == v for k, v in preset.items())
        ),
        method["name"],
    )


_IN_OPTIONS = {"method_options"}  # a setting key the options already show


def _spread(counts: pd.Series) -> str:
    """What the error bars are: 'mean ± std over 3 seeds' (or 2–3 seeds), saying so where a bar has one seed and so
    no bar, and 'one seed each: no error bars' where no bar has more."""
    low, high = int(counts.min()), int(counts.max())
    if high == 1:
        return "one seed each: no error bars"
    seeds = f"{low} seeds" if low == high else f"{low}–{high} seeds"
    return f"mean ± std over {seeds}" + ("; a bar of one seed has no error bar" if low == 1 else "")


def _bar_panel(ax, means: pd.Series, stds: pd.Series, notes: pd.Series, axis_label: str) -> None:
    """Horizontal bars of means with ± std error bars where there are two seeds or more, each with its value written
    past the error bar (a zero bar is still read): '(1 seed)' after a value without spread, the bar's note (`by
    construction`) after a value the method fixes, and the note or 'n/a' where the metric is undefined (joint's
    forgetting; independent's, whose R rows are transfer). The axis keeps room on the right for the longest text."""
    positions = np.arange(len(means))
    ax.barh(positions, means.fillna(0), color="tab:blue")
    spread = stds.notna() & (notes == "")
    ax.errorbar(means[spread], positions[spread.to_numpy()], xerr=stds[spread], fmt="none", ecolor="black", capsize=2)
    for y, mean, std, has_spread, note in zip(positions, means, stds.where(spread, 0), spread, notes, strict=True):
        value = f"{round(mean, 1) + 0.0:.1f}"  # + 0.0: no "-0.0"
        if np.isnan(mean):
            text = note or "n/a"
        elif note:
            text = f"{mean + 0.0:.0f} ({note})"
        else:
            text = value if has_spread else f"{value} (1 seed)"
        x = 0 if np.isnan(mean) else max(mean + std, 0)
        ax.annotate(text, (x, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8, color="0.25")
    ax.set_xlabel(axis_label)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.05)
    low, high = ax.get_xlim()
    ax.set_xlim(low, high + 0.3 * (high - low))  # the value labels sit inside the frame, past the longest bar


def _forgetting_note(record: dict) -> str:
    """Why a run's forgetting bar is not a measured forgetting: fixed 'by construction' by the method, or the R rows
    of a method that trains each task from θ₀ alone measure 'transfer, not forgetting'; '' for a measured one."""
    from clgraft.methods import get_method

    if get_method(record["method"]["name"]).r_rows_are_transfer:
        return "transfer, not forgetting"
    return "by construction" if "forgetting" in record.get("metrics_by_construction", {}) else ""


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
            "note": _forgetting_note(r),
            # None where undefined (joint), not evaluated, or not a forgetting (transfer rows)
            "forgetting": None if _forgetting_note(r).startswith("transfer") else r["metrics"]["forgetting"],
        }
        for r, row in zip(records, settings, strict=True)
    )
    groups = frame.groupby("key", sort=False)
    stats = groups[["acc", "forgetting"]].agg(["mean", "std"]).astype(float) * 100
    notes = groups["note"].first()
    labels = bar_labels(list(groups["method"].first()))
    plt = pyplot()
    lines = max(label.count("\n") + 1 for label in labels)  # bars are evenly spaced: the tallest label sets the pitch
    height = len(labels) * (0.17 * lines + 0.22) + 1.6
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True, layout="constrained")
    no_notes = pd.Series("", index=notes.index)
    _bar_panel(axes[0], stats[("acc", "mean")], stats[("acc", "std")], no_notes, "ACC (%) — higher is better")
    _bar_panel(
        axes[1],
        stats[("forgetting", "mean")],
        stats[("forgetting", "std")],
        notes,
        "forgetting (points) — lower is better",
    )
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    axes[0].set_xlim(0, 125)  # room for a value label past a bar near 100
    axes[0].set_xticks(range(0, 101, 20))
    axes[1].tick_params(labelleft=False)
    fig.suptitle(f"{stream}: ACC and forgetting per method\n({_spread(groups.size())})")
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
