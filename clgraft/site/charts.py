"""The site's interactive figures as Vega-Lite specs (plain dicts, rendered in the browser by the vendored Vega,
Vega-Lite and vega-embed in clgraft/site/assets/): every metric with its 95% interval, R heatmaps, accuracy over the
stream, accuracy against memory, and each claim against its threshold. Colours are Okabe-Ito's (distinguishable
with the common colour-vision deficiencies) and heatmaps use viridis; a value with no interval or fixed by
construction is drawn with its own mark and named so, never as a measured interval of zero width."""

from __future__ import annotations

from clgraft.results.frontier import pareto_front
from clgraft.results.leaderboard import MEMORY_UNKNOWN
from clgraft.results.report import NOT_EVALUATED
from clgraft.site.data import Cell, Row, Run

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # names the spec's version; never fetched
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442"]
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down", "triangle-right", "triangle-left"]
KINDS = {
    "interval": "mean, 95% CI (n ≥ 2 seeds)",
    "one-seed": "one seed: no interval",
    "by-construction": "fixed by construction, not measured",
}
KIND_SHAPES = {"domain": list(KINDS.values()), "range": ["circle", "square", "diamond"]}
LABEL_LIMIT = {"expr": "containerSize()[0] < 520 ? 115 : 280"}  # a row label's pixels: shorter on a phone
ROW_STEP = 22  # pixels per row of a dot plot: room for a label line and its whisker
CELL_STEP = 38  # pixels per heatmap cell: a two-digit value fits at the default font size
CONFIG = {
    "font": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
    "axis": {"labelFontSize": 12, "titleFontSize": 12, "labelLimit": 220},
    "legend": {"labelFontSize": 12, "titleFontSize": 12, "labelLimit": 260},
    "title": {"fontSize": 14, "anchor": "start"},
    "view": {"stroke": None},
}


def _spec(description: str, values: list[dict], **rest) -> dict:
    """A top-level spec: its data inline, an accessible description, and the site's look."""
    return {"$schema": SCHEMA, "description": description, "data": {"values": values}, "config": CONFIG, **rest}


def family_scale(families: list[str]) -> dict:
    """Colour by method family, the same colour for a family on every page."""
    return {"domain": families, "range": OKABE_ITO[: len(families)]}


def interval_chart(rows: list[Row], column: str, axis: str, families: list[str], href: str) -> dict:
    """One line per leaderboard row of a stream (in the table's order): the cell's value with a whisker over its 95%
    interval, coloured by family and shaped by what the number is (KINDS; the page's key says which is which),
    hover for the cell as printed, click for the row's page; a zero line where the values can be negative. Rows the
    table lists as n/a are left out (the caption names them). `shown` (row ids) is set by the page's filters."""
    values = [_point(row, row.cells[column], href) for row in rows if row.cells[column].value is not None]
    crosses_zero = any(v < 0 for p in values for v in (p["value"], p["low"]) if v is not None)
    y = {"field": "label", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": LABEL_LIMIT}}
    tooltip = [
        {"field": "label", "title": "row"},
        {"field": "id"},
        {"field": "n", "title": "seeds"},
        {"field": "text", "title": axis},
    ]
    zero = {"mark": {"type": "rule", "color": "#999"}, "encoding": {"x": {"datum": 0, "type": "quantitative"}}}
    return _spec(
        f"{axis} per leaderboard row with 95% confidence intervals",
        values,
        params=[{"name": "shown", "value": None}],
        transform=[{"filter": "shown == null || indexof(shown, datum.id) >= 0"}],
        width="container",
        height=ROW_STEP * len(values),  # a fixed height: Vega-Lite drops a step height beside a container width
        encoding={"y": y},
        layer=[
            *([zero] if crosses_zero else []),
            *_whiskers(
                values,
                {
                    "x": {"field": "low", "type": "quantitative", "title": axis, "scale": {"zero": False}},
                    "x2": {"field": "high"},
                    "color": {"field": "family", "scale": family_scale(families), "legend": None},
                },
            ),
            {
                "mark": {"type": "point", "filled": True, "size": 70, "cursor": "pointer"},
                "encoding": {
                    "x": {"field": "value", "type": "quantitative", "title": axis, "scale": {"zero": False}},
                    "color": {"field": "family", "scale": family_scale(families), "legend": None},
                    "shape": {"field": "kind", "scale": KIND_SHAPES, "legend": None},
                    "href": {"field": "href"},
                    "tooltip": tooltip,
                },
            },
        ],
    )


def _whiskers(values: list[dict], encoding: dict) -> list[dict]:
    """The layer of 95% intervals (rules from `low` to `high`), or none where no value has one: an empty layer would
    make Vega warn of an infinite extent."""
    if all(v["low"] is None for v in values):
        return []
    return [
        {
            "transform": [{"filter": "datum.low != null"}],
            "mark": {"type": "rule", "strokeWidth": 2},
            "encoding": encoding,
        }
    ]


def _point(row: Row, cell: Cell, href: str) -> dict:
    return {
        "id": row.id,
        "label": row.label,
        "family": row.family,
        "n": row.frame["n"],
        "value": cell.value,
        "low": cell.low,
        "high": cell.high,
        "kind": KINDS[cell.kind],
        "text": cell.text,
        "href": href.format(id=row.id),
    }


def _steps(record: dict) -> list[tuple[int, str, list]]:
    """The R rows a run evaluated: (index, 'before' or 'after TASK', the row)."""
    names = [t["name"] for t in record["tasks"]]
    return [(i, "before" if i == 0 else f"after {names[i - 1]}", r) for i, r in enumerate(record["R"]) if r is not None]


def _points(accuracy: float) -> float:
    """An accuracy in points, to the hundredth the tables print (the figure's data stays small)."""
    return round(100 * accuracy, 2)


def r_entries(runs: list[Run]) -> list[dict]:
    """R as one entry per (model, task tested), in %, averaged over the given runs' seeds where evaluated; an entry
    no run evaluated is kept with value None, shown as not evaluated."""
    names = [t["name"] for t in runs[0].record["tasks"]]
    cells: dict[tuple[int, str, int], list[float]] = {}
    for run in runs:
        for i, step, values in _steps(run.record):
            for j, value in enumerate(values):
                cells.setdefault((i, step, j), []).extend([] if value is None else [_points(value)])
    return [
        {
            "model": step,
            "model_index": i,
            "task": names[j],
            "task_index": j,
            "value": round(sum(v) / len(v), 2) if v else None,
            "seeds": len(v),
        }
        for (i, step, j), v in sorted(cells.items())
    ]


def r_heatmap(runs: list[Run], title: str) -> dict:
    """R (test accuracy % of each task after each step) as a heatmap with each value written in its cell."""
    entries = r_entries(runs)
    x = {"field": "task", "type": "ordinal", "sort": {"field": "task_index"}, "title": "tested on task"}
    y = {"field": "model", "type": "ordinal", "sort": {"field": "model_index"}, "title": "model"}
    tooltip = [{"field": "model"}, {"field": "task"}, {"field": "value", "format": ".1f", "title": "accuracy %"}]
    if len(runs) > 1:
        tooltip.append({"field": "seeds", "title": "seeds averaged"})
    return _spec(
        f"R heatmap: {title}",
        entries,
        title=title,
        width={"step": CELL_STEP},
        height={"step": CELL_STEP},
        encoding={"x": {**x, "axis": {"labelAngle": -40}}, "y": y},
        layer=[
            {
                "transform": [{"filter": "datum.value != null"}],
                "mark": "rect",
                "encoding": {
                    "color": {
                        "field": "value",
                        "type": "quantitative",
                        "title": "accuracy %",
                        "scale": {"scheme": "viridis", "domain": [0, 100]},
                        "legend": {"orient": "bottom", "direction": "horizontal", "gradientLength": 150},
                    },
                    "tooltip": tooltip,
                },
            },
            {
                "transform": [{"filter": "datum.value == null"}, {"calculate": "'not evaluated'", "as": "status"}],
                "mark": {"type": "rect", "color": NOT_EVALUATED},
                "encoding": {"tooltip": [{"field": "model"}, {"field": "task"}, {"field": "status"}]},
            },
            {
                "mark": {"type": "text", "fontSize": 11},
                "encoding": {
                    "text": {
                        "condition": {"test": "datum.value == null", "value": "–"},
                        "field": "value",
                        "format": ".0f",
                    },
                    "color": {
                        "condition": {"test": "datum.value == null || datum.value >= 60", "value": "black"},
                        "value": "white",
                    },
                },
            },
        ],
    )


def accuracy_over_time(runs: list[Run]) -> dict:
    """Each task's test accuracy % after each step of the stream: a line through the mean over seeds and a dot per
    seed; click a legend entry to pick one task out."""
    names = [t["name"] for t in runs[0].record["tasks"]]
    values = [
        {"step": step, "step_index": i, "task": names[j], "seed": run.record["seed"], "value": _points(value)}
        for run in runs
        for i, step, row in _steps(run.record)
        for j, value in enumerate(row)
        if value is not None
    ]
    colour = {
        "field": "task",
        "type": "nominal",
        "title": "tested on",
        "sort": names,
        "scale": {"domain": names, "range": OKABE_ITO[: len(names)]},
        "legend": {"orient": "top", "direction": "horizontal", "columns": 3, "title": "tested on (click to pick)"},
    }
    x = {
        "field": "step",
        "type": "ordinal",
        "sort": {"field": "step_index"},
        "title": "model",
        "axis": {"labelAngle": -30},
    }
    y = {"type": "quantitative", "title": "test accuracy (%)", "scale": {"domain": [0, 100]}}
    pick = {"param": "task_pick", "empty": True}
    return _spec(
        "Test accuracy of each task after each step of the stream, mean over seeds and each seed",
        values,
        width="container",
        height=260,
        encoding={"x": x, "color": colour},
        layer=[
            {
                "params": [{"name": "task_pick", "select": {"type": "point", "fields": ["task"]}, "bind": "legend"}],
                "mark": {"type": "line", "point": {"filled": True, "size": 50}},
                "encoding": {
                    "y": {**y, "aggregate": "mean", "field": "value"},
                    "opacity": {"condition": {**pick, "value": 1}, "value": 0.15},
                    "shape": {"field": "task", "sort": names, "scale": {"domain": names, "range": SHAPES}},
                    "tooltip": [
                        {"field": "task"},
                        {"field": "step"},
                        {"aggregate": "mean", "field": "value", "format": ".1f", "title": "mean accuracy %"},
                    ],
                },
            },
            {
                "mark": {"type": "point", "size": 25, "opacity": 0.45},
                "encoding": {
                    "y": {**y, "field": "value"},
                    "opacity": {"condition": {**pick, "value": 0.45}, "value": 0.05},
                    "tooltip": [
                        {"field": "task"},
                        {"field": "step"},
                        {"field": "seed"},
                        {"field": "value", "format": ".1f", "title": "accuracy %"},
                    ],
                },
            },
        ],
    )


def frontier_points(rows: list[Row], href: str) -> list[dict]:
    """The rows a frontier chart places (those whose ACC and memory per task are known), each with `kb` and `front`:
    its number on the Pareto front (1, 2, … in order of memory; rows no other row beats on both, higher ACC with no
    more memory), 0 for a row off it. The chart writes the numbers beside the points and the page lists them as
    its key, so that no name is written over another where the points crowd."""
    points = [
        {**_point(row, row.cells["acc"], href), "kb": float(row.frame["extra_kb_per_task"])}
        for row in rows
        if row.cells["acc"].value is not None and row.frame["extra_kb_per_task"] != MEMORY_UNKNOWN
    ]
    on_front = pareto_front([p["kb"] for p in points], [p["value"] for p in points])
    number = {points[i]["id"]: n + 1 for n, i in enumerate(on_front)}
    return [{**p, "front": number.get(p["id"], 0), "kb_text": _kb(p["kb"])} for p in points]


def _kb(kb: float) -> str:
    """Memory per task as the key prints it: whole KB from 10 up, two significant digits below (0 stays 0)."""
    return f"{kb:,.0f}" if kb >= 10 else f"{kb:.2g}"


def frontier_chart(points: list[dict], references: list[Row], families: list[str]) -> dict:
    """ACC (mean with its 95% interval) against the memory a method keeps per task beyond the model, on a symlog
    axis (0 KB stays on it), for `frontier_points`; the front's rows are joined by a dashed line and numbered (the
    page's key names them, neighbours' numbers alternating above and below their points). `references` (joint
    training: every task's data at once, not a continual learner) are drawn as labelled horizontal lines instead of
    points. Drag to pan, wheel to zoom, double-click to reset."""
    values = [{**p, "dy": 15 if p["front"] % 2 else -9} for p in points]
    lines = [
        {"label": f"{row.label} (reference)", "value": row.cells["acc"].value, "text": row.cells["acc"].text}
        for row in references
    ]
    top = max((p["kb"] for p in points), default=1.0)
    ticks = [0, *(10**k for k in range(0, 7) if 10**k <= 10 * top)]
    x = {
        "field": "kb",
        "type": "quantitative",
        "title": "memory kept per task (symlog)",
        "scale": {"type": "symlog", "constant": 10, "domain": [-3, 2 * top], "nice": False},
        "axis": {"values": ticks, "labelExpr": "datum.value < 1000 ? datum.value + ' KB' : datum.value / 1000 + ' MB'"},
    }
    y = {"type": "quantitative", "title": "ACC (%)", "scale": {"zero": False}}
    return _spec(
        "ACC with 95% confidence intervals against memory kept per task",
        values,
        width="container",
        height=340,
        params=[{"name": "shown", "value": None}],
        layer=[
            *(_reference_lines(lines, y) if lines else []),
            {
                "transform": [{"filter": "shown == null || indexof(shown, datum.id) >= 0"}],
                "layer": [
                    {
                        "transform": [{"filter": "datum.front > 0"}],
                        "mark": {"type": "line", "interpolate": "step-after", "color": "#777", "strokeDash": [4, 3]},
                        "encoding": {"x": x, "y": {**y, "field": "value"}},
                    },
                    *_whiskers(
                        values,
                        {
                            "x": x,
                            "y": {**y, "field": "low"},
                            "y2": {"field": "high"},
                            "color": {"field": "family", "scale": family_scale(families), "legend": None},
                        },
                    ),
                    {
                        "params": [{"name": "zoom", "select": "interval", "bind": "scales"}],
                        "mark": {"type": "point", "filled": True, "size": 80, "cursor": "pointer"},
                        "encoding": {
                            "x": x,
                            "y": {**y, "field": "value"},
                            "color": {"field": "family", "scale": family_scale(families), "legend": None},
                            "shape": {"field": "kind", "scale": KIND_SHAPES, "legend": None},
                            "href": {"field": "href"},
                            "tooltip": [
                                {"field": "label", "title": "row"},
                                {"field": "id"},
                                {"field": "text", "title": "ACC"},
                                {"field": "kb", "title": "KB per task", "format": ",.0f"},
                            ],
                        },
                    },
                    {  # a front point's number, just right of it
                        "transform": [{"filter": "datum.front > 0"}],
                        "mark": {
                            "type": "text",
                            "align": "left",
                            "dx": 6,
                            "dy": {"expr": "datum.dy"},
                            "fontSize": 12,
                            "fontWeight": "bold",
                        },
                        "encoding": {"x": x, "y": {**y, "field": "value"}, "text": {"field": "front"}},
                    },
                ],
            },
        ],
    )


def _reference_lines(lines: list[dict], y: dict) -> list[dict]:
    """Horizontal lines, each labelled, at the ACC of rows that are references rather than points of the frontier."""
    return [
        {
            "data": {"values": lines},
            "mark": {"type": "rule", "color": "#777", "strokeWidth": 1.5},
            "encoding": {
                "y": {**y, "field": "value"},
                "tooltip": [{"field": "label"}, {"field": "text", "title": "ACC"}],
            },
        },
        {
            "data": {"values": lines},
            "mark": {"type": "text", "align": "left", "x": 4, "dy": -7, "fontSize": 11, "color": "#555"},
            "encoding": {"y": {**y, "field": "value"}, "text": {"field": "label"}},
        },
    ]


def claim_chart(values: dict[int, float], mean: float, low: float, high: float, op: str, threshold: float) -> dict:
    """A claim's measured mean with its 95% interval, each seed's value, and the paper's threshold (dashed) that
    the whole interval must clear: one line, so the verdict can be read off it."""
    seeds = [{"seed": s, "value": v} for s, v in values.items()]
    summary = {"mean": mean, "low": low, "high": high, "threshold": threshold, "op": op}
    x = {
        "type": "quantitative",
        "title": None,
        "scale": {"zero": False, "nice": True},
        "axis": {"tickCount": 6, "format": "~g"},
    }
    return _spec(
        f"measured {mean:.3g} with 95% CI [{low:.3g}, {high:.3g}] against the threshold {op} {threshold:g}",
        seeds,
        width="container",
        height=46,
        layer=[
            {
                "data": {"values": [summary]},
                "mark": {"type": "rule", "color": "#D55E00", "strokeDash": [5, 3], "strokeWidth": 2},
                "encoding": {"x": {**x, "field": "threshold"}, "tooltip": [{"field": "op"}, {"field": "threshold"}]},
            },
            {
                "data": {"values": [summary]},
                "mark": {"type": "rule", "color": "#0072B2", "strokeWidth": 3},
                "encoding": {"x": {**x, "field": "low"}, "x2": {"field": "high"}},
            },
            {
                "mark": {"type": "tick", "color": "#555", "thickness": 1},
                "encoding": {
                    "x": {**x, "field": "value"},
                    "tooltip": [{"field": "seed"}, {"field": "value", "format": ".4g"}],
                },
            },
            {
                "data": {"values": [summary]},
                "mark": {"type": "point", "filled": True, "size": 90, "color": "#0072B2"},
                "encoding": {
                    "x": {**x, "field": "mean"},
                    "tooltip": [
                        {"field": "mean", "format": ".3g"},
                        {"field": "low", "format": ".3g", "title": "95% CI low"},
                        {"field": "high", "format": ".3g", "title": "95% CI high"},
                    ],
                },
            },
        ],
    )
