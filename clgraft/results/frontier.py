"""The memory–accuracy frontier (docs/metrics.md, "Memory"): per stream, every leaderboard row's ACC and forgetting
against the memory it keeps per task — one rule for every method, heads apart — on a log axis, with 95% Student-t
intervals over seeds and the Pareto-optimal rows joined; and the best row within each memory budget, with its paired
difference from the runner-up over the seeds both have. Read from the leaderboard's own per-record frame
(`seed_rows`): the same rows, ids and memory as `clgraft leaderboard`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clgraft.io.figures import pyplot, save, wrap
from clgraft.metrics.seeds import confidence_interval, paired_difference

BUDGETS_KB = (1.0, 10.0, 100.0, 1024.0, 10240.0, math.inf)
"""Memory budgets per task in KB of 1,024 bytes: ≤ 1 KB, 10 KB, 100 KB, 1 MB, 10 MB, unlimited."""
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000")
"""The Okabe–Ito palette, told apart with every common colour-vision deficiency (its yellow left out: too faint on
white)."""
MARKERS = ("o", "s", "^", "D", "v", "P")
LABEL_DECADES = 0.25
"""Points closer than this on the log x axis get numbers pushed apart vertically (a number is about as wide)."""
LABEL_GAP = 0.045
"""Least vertical distance between two such numbers, as a share of the panel's y range."""
PANELS = (("acc", "ACC (%) — higher is better", True), ("forgetting", "forgetting (points) — lower is better", False))


@dataclass(frozen=True)
class Point:
    """One leaderboard row of a stream on the frontier: memory per task and, per metric, the mean, its 95% interval
    (NaN ends below two seeds) and the value of every seed, in accuracy points."""

    id: str
    label: str
    kb: float
    head_kb: float
    stats: dict[str, tuple[float, float, float]]
    by_seed: dict[str, dict[int, float]]
    reference: bool
    """Joint training: an upper bound that sees every task at once, drawn for reference, never on the front or in
    the budget table."""


def budget_name(kb: float) -> str:
    """'≤ 1 KB', '≤ 1 MB', 'unlimited'."""
    if math.isinf(kb):
        return "unlimited"
    return f"≤ {kb / 1024:g} MB" if kb >= 1024 else f"≤ {kb:g} KB"


def display_name(method: str, options: dict) -> str:
    """A row's method by the name the literature gives its configuration where an alias has it (task-arithmetic,
    ties, consensus, stitch: `clgraft methods list`), else the method's own name."""
    from clgraft.methods import ALIASES

    for alias, (name, preset) in ALIASES.items():
        if name == method and all(options.get(k) == v for k, v in preset.items()):
            return alias
    return method


def stream_points(frame: pd.DataFrame) -> list[Point]:
    """The frontier points of one stream's records (`seed_rows` lines): one per configuration, labelled by
    `display_name` plus the options and settings that tell rows of one name apart (report.bar_labels)."""
    from clgraft.methods import get_method
    from clgraft.results.leaderboard import row_id
    from clgraft.results.report import bar_labels

    groups = list(frame.groupby("key", sort=False))
    first = [g.iloc[0] for _, g in groups]
    labels = bar_labels(
        [
            {
                "name": display_name(r["method"], r["option_values"]),
                "options": r["option_values"],
                "setting": r["setting"],
            }
            for r in first
        ]
    )
    points = []
    for (key, group), label in zip(groups, labels, strict=True):
        method = get_method(group["method"].iloc[0])
        by_seed = {
            m: {}
            if m == "forgetting" and method.r_rows_are_transfer
            else (100 * group.set_index("seed")[m].dropna()).to_dict()
            for m, _, _ in PANELS
        }
        points.append(
            Point(
                id=row_id(key),
                label=label.replace("\n", " "),
                kb=float(group["extra_kb_per_task"].mean()),
                head_kb=float(group["head_kb_per_task"].mean()),
                stats={m: _interval(list(values.values())) for m, values in by_seed.items()},
                by_seed=by_seed,
                reference=method.joint,
            )
        )
    return points


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval; all NaN for a metric with no value (joint's forgetting; independent's, whose R rows
    are transfer between separate fine-tunes, not forgetting: neither is drawn)."""
    return confidence_interval(values) if values else (math.nan, math.nan, math.nan)


def pareto_front(kb: list[float], value: list[float], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point dominates — one that keeps no more memory and is no worse, and is
    better in one of the two — in order of memory; a point whose value is NaN is never on it."""
    sign = 1 if higher_is_better else -1
    ok = [i for i in range(len(kb)) if not math.isnan(value[i]) and not math.isnan(kb[i])]

    def dominates(j: int, i: int) -> bool:
        no_worse = kb[j] <= kb[i] and sign * value[j] >= sign * value[i]
        return no_worse and (kb[j] < kb[i] or sign * value[j] > sign * value[i])

    front = [i for i in ok if not any(dominates(j, i) for j in ok)]
    return sorted(front, key=lambda i: (kb[i], -sign * value[i]))


def budget_table(points: list[Point]) -> pd.DataFrame:
    """Per budget (BUDGETS_KB), the row of best mean ACC among the sequential rows keeping at most that much per task,
    the runner-up, and best − runner-up paired over the seeds both have (mean, 95% t interval, paired t-test's p,
    pairs), in accuracy points; empty cells where the budget holds fewer rows."""
    rows = []
    for budget in BUDGETS_KB:
        fits = sorted(
            (p for p in points if not p.reference and p.kb <= budget and not math.isnan(p.stats["acc"][0])),
            key=lambda p: -p.stats["acc"][0],
        )
        best, runner = (fits + [None, None])[:2]
        pair = paired_difference(best.by_seed["acc"], runner.by_seed["acc"]) if runner else {}
        rows.append(
            {
                "budget": budget_name(budget),
                "rows_within": len(fits),
                **_side("best", best),
                **_side("runner_up", runner),
                "diff": pair.get("diff", math.nan),
                "diff_low": pair.get("ci_low", math.nan),
                "diff_high": pair.get("ci_high", math.nan),
                "p": pair.get("p", math.nan),
                "n_pairs": pair.get("n_pairs", 0),
            }
        )
    return pd.DataFrame(rows)


def _side(prefix: str, point: Point | None) -> dict:
    """One side of a budget row: the row's label, id, KB per task and ACC with its interval (empty for no row)."""
    if point is None:
        return {prefix: "", f"{prefix}_id": ""} | {
            f"{prefix}_{s}": math.nan for s in ("kb", "acc", "acc_low", "acc_high")
        }
    mean, low, high = point.stats["acc"]
    return {
        prefix: point.label,
        f"{prefix}_id": point.id,
        f"{prefix}_kb": point.kb,
        f"{prefix}_acc": mean,
        f"{prefix}_acc_low": low,
        f"{prefix}_acc_high": high,
    }


def budget_markdown(table: pd.DataFrame) -> str:
    """The budget table for a reader: the best row and its ACC [95% interval], the runner-up's, and the paired
    difference [95% interval] with p and the number of seeds paired."""
    from clgraft.results.leaderboard import kb_cell

    lines = [
        "| budget per task | rows | best (id) | its KB per task | its ACC [95% CI] | runner-up (id) | its ACC [95% CI] "
        "| best − runner-up, paired [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        if not r.best:
            lines.append(f"| {r.budget} | 0 | none | | | | | |")
            continue
        runner = f"{r.runner_up} (`{r.runner_up_id}`)" if r.runner_up else "none"
        lines.append(
            f"| {r.budget} | {r.rows_within} | {r.best} (`{r.best_id}`) | {kb_cell(r.best_kb)} | "
            f"{_acc(r.best_acc, r.best_acc_low, r.best_acc_high)} | {runner} | "
            f"{_acc(r.runner_up_acc, r.runner_up_acc_low, r.runner_up_acc_high)} | {_difference(r)} |"
        )
    return "\n".join(lines)


def _acc(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.2f}" if math.isnan(low) else f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def _difference(r) -> str:
    """'+1.23 [−0.50, +2.96] p=0.120 (n=5)'; one pair: no interval; none: '-'."""
    if r.n_pairs == 0:
        return "-"
    if r.n_pairs < 2:
        return f"{r.diff:+.2f} (1 seed)"
    from clgraft.results.leaderboard import difference_text

    return difference_text(r.diff, r.diff_low, r.diff_high, r.p, r.n_pairs)


def _zero_x(points: list[Point]) -> float:
    """Where a row keeping nothing per task sits on the log axis: a decade left of the smallest memory kept (its
    tick reads 0, set apart by a break in the axis)."""
    kept = [p.kb for p in points if p.kb > 0]
    return 10.0 ** (math.floor(math.log10(min(kept))) - 1) if kept else 1.0


def frontier_figure(title: str, points: list[Point]):
    """ACC above forgetting against KB per task (log axis; rows keeping 0 at a tick of their own), every row with its
    95% interval as a whisker and its number beside it, the Pareto-optimal sequential rows joined by a step line, one
    colour and marker per row (Okabe–Ito), joint training hollow, for reference. Rows are numbered by memory kept
    (then name), and a key right of the panels gives each number's marker and full name: names written beside the
    points would cover each other where many rows keep about the same memory. A row whose memory could not be counted
    (NaN; the leaderboard warned) has no place on the axis and is left out."""
    points = sorted((p for p in points if not math.isnan(p.kb)), key=lambda p: (p.kb, p.label))
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(15, 11), sharex=True, layout="constrained")
    zero = _zero_x(points)
    xs = [p.kb if p.kb > 0 else zero for p in points]
    for ax, (metric, axis_label, higher) in zip(axes, PANELS, strict=True):
        _panel(ax, points, xs, metric, higher)
        ax.set_ylabel(axis_label)
        _zero_tick(ax, zero, xs)
    axes[1].set_xlabel("memory kept per task beyond θ₀, the model and the heads (KB, log scale)")
    key = [
        plt.Line2D([], [], color="0.35", linestyle="--"),
        plt.Line2D([], [], linestyle="", marker="o", color="0.35", markerfacecolor="white"),
    ]
    axes[0].legend(key, ["Pareto front (sequential rows)", "joint training (reference: not sequential)"], fontsize=8)
    rows = [
        plt.Line2D(
            [],
            [],
            linestyle="",
            marker=_style(i)[1],
            color=_style(i)[0],
            markerfacecolor="white" if p.reference else _style(i)[0],
        )
        for i, p in enumerate(points)
    ]
    names = [f"{i + 1}  {p.label}" for i, p in enumerate(points)]
    fig.legend(rows, names, loc="outside right upper", fontsize=7.5, title="row (by memory kept)", title_fontsize=8)
    heading = f"{title}: accuracy and forgetting against memory per task (mean, 95% t interval over seeds)"
    axes[0].set_title(wrap(heading, 90))  # over the panels alone: the key takes the figure's right
    return fig


def _style(i: int) -> tuple[str, str]:
    """Row i's colour and marker: no two of the first 42 rows share both."""
    return OKABE_ITO[i % len(OKABE_ITO)], MARKERS[(i // len(OKABE_ITO)) % len(MARKERS)]


def _panel(ax, points: list[Point], xs: list[float], metric: str, higher: bool) -> None:
    """One metric against memory: whiskers of the 95% interval, the points with their numbers, the front as a step
    line."""
    shown = [i for i, p in enumerate(points) if not math.isnan(p.stats[metric][0])]
    for i in shown:
        mean, low, high = points[i].stats[metric]
        colour, marker = _style(i)
        ax.errorbar(
            xs[i],
            mean,
            yerr=None if math.isnan(low) else [[mean - low], [high - mean]],
            fmt=marker,
            color=colour,
            markerfacecolor="white" if points[i].reference else colour,
            markersize=7,
            capsize=3,
            elinewidth=1,
        )
    means = [p.stats[metric][0] for p in points]
    sequential = [i for i in shown if not points[i].reference]
    front = [sequential[j] for j in pareto_front([xs[i] for i in sequential], [means[i] for i in sequential], higher)]
    ax.plot([xs[i] for i in front], [means[i] for i in front], "--", color="0.35", drawstyle="steps-post", zorder=0)
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="major")
    _name_points(ax, [str(i + 1) for i in shown], [xs[i] for i in shown], [means[i] for i in shown])


def _name_points(ax, labels: list[str], xs: list[float], ys: list[float]) -> None:
    """Each point's number just right of it; numbers of points closer than LABEL_DECADES on the x axis are pushed
    apart vertically (a thin line leads from a point to a number that moved), so that none is written over another."""
    heights = _label_heights(xs, ys)
    low, high = min([*ys, *heights]), max([*ys, *heights])
    ax.set_ylim(min(ax.get_ylim()[0], low - 0.04 * (high - low)), max(ax.get_ylim()[1], high + 0.04 * (high - low)))
    gap = LABEL_GAP * (high - low)
    for label, x, y, height in zip(labels, xs, ys, heights, strict=True):
        moved = abs(height - y) > gap / 2
        ax.annotate(
            label,
            (x, y),
            xytext=(x * 10**0.07, height),
            fontsize=7.5,
            va="center",
            color="0.15",
            bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
            arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0} if moved else None,
        )


def _label_heights(xs: list[float], ys: list[float]) -> list[float]:
    """Where each number goes on the y axis: at its point, unless points close on the (log) x axis have numbers less
    than LABEL_GAP of the y range apart; such a group's numbers are spaced by that gap around the group's points."""
    span = (max(ys) - min(ys)) or 1.0
    gap = LABEL_GAP * span
    heights = list(ys)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    groups, current = [], [order[0]] if order else []
    for prev, i in zip(order, order[1:], strict=False):
        if math.log10(xs[i]) - math.log10(xs[prev]) < LABEL_DECADES:
            current.append(i)
        else:
            groups.append(current)
            current = [i]
    groups.append(current)
    for group in groups:
        ranked = sorted(group, key=lambda i: ys[i])
        placed = []
        for i in ranked:
            placed.append(max(ys[i], placed[-1] + gap) if placed else ys[i])
        shift = (sum(placed) - sum(ys[i] for i in ranked)) / len(ranked)
        for i, height in zip(ranked, placed, strict=True):
            heights[i] = height - shift
    return heights


def _zero_tick(ax, zero: float, xs: list[float]) -> None:
    """Decade ticks in KB, the leftmost reading 0 for rows that keep nothing, with '//' breaking the axis after it."""
    top = max(xs)
    decades = [10.0**e for e in range(round(math.log10(zero)) + 1, math.ceil(math.log10(top)) + 1)]
    ax.set_xlim(zero / 2.5, top * 2.5)
    ax.set_xticks([zero, *decades], ["0", *(_decade(d) for d in decades)])
    ax.minorticks_off()
    ax.annotate(
        "//",
        (np.sqrt(zero * decades[0]) if decades else zero * 3, 0),
        xycoords=("data", "axes fraction"),
        ha="center",
        va="center",
        fontsize=11,
        color="0.3",
        annotation_clip=False,
    )


def _decade(kb: float) -> str:
    """A decade tick in KB as a reader says it: 0.01, 1, 100, 10k, 1M."""
    if kb >= 1e6:
        return f"{kb / 1e6:g}M"
    if kb >= 1e4:
        return f"{kb / 1e3:g}k"
    return f"{kb:g}"


def write_frontier(results: Path, out: Path, data_dir: Path | None) -> list[Path]:
    """Per stream OUT/STREAM-ORDER.png, and over all streams OUT/budgets.csv, OUT/budgets.json (with every point)
    and OUT/README.md (each stream's plot and budget table); returns the paths written."""
    from clgraft.io.records import write_text
    from clgraft.results.leaderboard import load_records, seed_rows

    frame = seed_rows(load_records(results), data_dir=data_dir)
    written, tables, sections, points_out = [], [], [], []
    for (stream, order), part in frame.groupby(["stream", "order"], sort=False):
        name = f"{stream}-{order}" if order else stream
        title = f"{stream}, order {order}" if order else stream
        points = stream_points(part)
        written.append(save(frontier_figure(title, points), out / f"{name}.png"))
        table = budget_table(points)
        tables.append(pd.concat([pd.DataFrame({"stream": stream, "order": order}, index=table.index), table], axis=1))
        sections.append(f"## {title}\n\n![{title}]({name}.png)\n\n{budget_markdown(table)}\n")
        points_out += [_point_record(p, stream, order) for p in points]
    budgets = pd.concat(tables, ignore_index=True)
    document = {"header": HEADER, "budgets": json.loads(budgets.to_json(orient="records")), "points": points_out}
    texts = {
        "budgets.csv": budgets.to_csv(index=False),
        "budgets.json": json.dumps(document, indent=2, ensure_ascii=False),
        "README.md": f"# Memory–accuracy frontier\n\n{HEADER}\n\n" + "\n".join(sections),
    }
    for name, text in texts.items():
        write_text(out / name, text)
    return written + [out / name for name in texts]


def _point_record(p: Point, stream: str, order: str) -> dict:
    """A point as budgets.json lists it (NaN as null)."""
    stats = {
        f"{m}{suffix}": v
        for m, interval in p.stats.items()
        for suffix, v in zip(("", "_low", "_high"), interval, strict=True)
    }
    return {
        "stream": stream,
        "order": order,
        "id": p.id,
        "label": p.label,
        "kb_per_task": p.kb,
        "head_kb_per_task": p.head_kb,
        "reference": p.reference,
        **{k: None if math.isnan(v) else v for k, v in stats.items()},
    }


HEADER = (
    "Every leaderboard row (`clgraft leaderboard`: same ids) placed by the memory it keeps per task — what its method "
    "holds from one task to the next beyond θ₀ and its one model, after the stream, shared state as its share, the "
    "heads apart; one rule for every method (docs/metrics.md) — against its ACC and forgetting in accuracy points: "
    "mean and 95% Student-t interval over seeds. The x axis is logarithmic; rows that keep nothing per task sit at "
    "the tick marked 0, left of the axis break (//). The dashed step line joins the Pareto-optimal rows: none keeps "
    "less and scores better. Joint training is drawn hollow for reference: it trains on every task at once, so it "
    "is on no front and in no budget. Budgets are per task, in KB of 1,024 bytes; the best row within a budget is the "
    "one of highest mean ACC, and best − runner-up is their paired difference over the seeds both have (95% t "
    "interval, two-sided paired t-test's p): an interval that holds 0 does not tell the two apart."
)
