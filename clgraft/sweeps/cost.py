"""What a sweep still costs, from measured cells (`clgraft sweep SPEC --plan`): per stream, order, method and run
settings, how many cells are finished and how many are left, and the seconds a cell takes — the mean cost of
finished records of the same configuration (any seed), else of the same method with other values of the options
the sweep varies for it, on the same stream at the same settings (a memory knob's other points), else
naive's at the same settings times the method's cost over naive's measured on other streams at otherwise the same
settings, else times the method's rough relative cost (`Method.relative_cost`), else unknown. A record's cost is
its CPU seconds (`cpu_s`: core-seconds, which other jobs on the machine barely change) where it has them, else its
wall seconds (inflated by whatever ran beside it). A plan to fit a budget is made from these numbers, not from
guesses."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import pandas as pd

from clgraft.config import RunConfig
from clgraft.errors import ClgraftError
from clgraft.io.records import config_hash, read_json, runs_folder
from clgraft.methods import get_method
from clgraft.runs.identity import identity, record_identity
from clgraft.sweeps.sweep import finished_runs


def cost_key(ident: dict) -> str:
    """The hash of a configuration's identity without what does not change its cost: the seed, the task order (the
    same tasks; and `clgraft compare` records leave it unset where sweeps name it) and which test examples a capped
    run drew (`test_subset`: as many either way)."""
    config = {k: v for k, v in ident["config"].items() if k not in ("seed", "order")}
    return config_hash({**{k: v for k, v in ident.items() if k != "test_subset"}, "config": config})


def _across_streams_key(ident: dict) -> str:
    """cost_key without the stream: the configuration a method's cost ratio to naive is carried across streams by."""
    return cost_key({**ident, "config": {k: v for k, v in ident["config"].items() if k != "stream"}})


def _other_values_key(ident: dict, knobs: frozenset[str]) -> str:
    """_across_streams_key without the values of the method's options in `knobs` (those a sweep varies for it): the
    key under which a method's cells at other points of its knobs are pooled (marked so that it cannot equal a
    configuration's own key)."""
    options = {k: v for k, v in ident["method_options"].items() if k not in knobs}
    return "other values " + _across_streams_key({**ident, "method_options": options})


Costs = dict[str, dict[str, list[float]]]
"""Measured seconds by _across_streams_key, then by stream (the pair is the cost_key); also by _other_values_key."""


def measured_seconds(folders: list[Path], knobs: dict[str, frozenset[str]] | None = None) -> Costs:
    """The cost of every finished run under the folders (each a results folder or a folder of run folders): CPU
    seconds, or wall seconds for records made before runs kept them; unreadable records skipped. `knobs`: per
    method, the options a sweep varies (its runs are also pooled over their values)."""
    out: Costs = {}
    for folder in folders:
        runs = runs_folder(folder)
        for path in sorted(runs.glob("*/run.json")):
            try:
                record = read_json(path)
                ident, seconds = record_identity(record), float(record.get("cpu_s", record["wall_s"]))
            except (ClgraftError, KeyError, TypeError, ValueError):
                continue
            keys = [_across_streams_key(ident)]
            if (knobs or {}).get(ident["config"]["method"]):
                keys.append(_other_values_key(ident, knobs[ident["config"]["method"]]))
            for key in keys:
                out.setdefault(key, {}).setdefault(ident["config"]["stream"], []).append(seconds)
    return out


def _naive_twin(config: RunConfig) -> RunConfig:
    """The same cell with naive sequential fine-tuning (the reference every relative cost is measured against)."""
    return config.model_copy(update={"method": "naive", "method_options": {}, "freeze_embeddings": None})


def _by_stream(config: RunConfig, measured: Costs) -> dict[str, list[float]]:
    """The measured seconds of this configuration, on any stream, by stream."""
    return measured.get(_across_streams_key(identity(config)), {})


def measured_ratio(config: RunConfig, measured: Costs) -> tuple[float, list[str]] | None:
    """The method's cost over naive's, measured on the other streams where both ran at otherwise the same settings
    (the mean of the streams' ratios of mean costs), and those streams; None where no stream has both."""
    own, naive = _by_stream(config, measured), _by_stream(_naive_twin(config), measured)
    streams = sorted(s for s in own.keys() & naive.keys() if s != config.stream)
    if not streams:
        return None
    return mean(mean(own[s]) / mean(naive[s]) for s in streams), streams


def cell_seconds(config: RunConfig, measured: Costs, knobs: frozenset[str] = frozenset()) -> tuple[float | None, str]:
    """A cell's expected cost in seconds (core-seconds where the records kept them) and where the figure comes from;
    `knobs`: the options the sweep varies for its method."""
    own = _by_stream(config, measured).get(config.stream)
    if own:
        return mean(own), f"measured ({len(own)} run{'s' * (len(own) != 1)})"
    other = measured.get(_other_values_key(identity(config), knobs), {}).get(config.stream) if knobs else None
    if other:
        named = ", ".join(sorted(knobs))
        return mean(other), f"other {named} measured ({len(other)} run{'s' * (len(other) != 1)})"
    naive = _by_stream(_naive_twin(config), measured).get(config.stream)
    if not naive:
        return None, "unknown: no run of it or of naive at these settings"
    ratio = measured_ratio(config, measured)
    if ratio is not None:
        return ratio[0] * mean(naive), f"naive's × {ratio[0]:.2g} (measured on {', '.join(ratio[1])})"
    factor = get_method(config.method).relative_cost
    return factor * mean(naive), f"naive's × {factor:g} (relative cost)"


def varied_options(cells: list[RunConfig]) -> dict[str, frozenset[str]]:
    """Per method, the options whose values differ among its cells (a memory knob's grid)."""
    values: dict[str, dict[str, set[str]]] = {}
    for config in cells:
        for key, value in identity(config)["method_options"].items():
            values.setdefault(config.method, {}).setdefault(key, set()).add(repr(value))
    return {m: frozenset(k for k, v in options.items() if len(v) > 1) for m, options in values.items()}


def plan(cells: list[RunConfig], results: Path, costs: list[Path], runs: Path | None = None) -> pd.DataFrame:
    """One row per stream, method (with options) and the run settings that vary among the cells (e.g. `steps=50`):
    cells, finished, left, seconds per cell (core-seconds where measured so) and their source, and the seconds the
    cells left should take. A cell is finished where a record of it is in `runs` (default RESULTS/runs)."""
    done = finished_runs(runs or results / "runs")
    knobs = varied_options(cells)
    measured = measured_seconds([results, *costs], knobs)
    fixed = {"seed", "stream", "order", "method", "method_options"}
    dumps = [c.model_dump(exclude=fixed) for c in cells]
    varying = sorted(k for k in dumps[0] if len({repr(d[k]) for d in dumps}) > 1) if dumps else []
    rows = []
    for config, dump in zip(cells, dumps, strict=True):
        seconds, source = cell_seconds(config, measured, knobs.get(config.method, frozenset()))
        options = ", ".join(f"{k}={v}" for k, v in config.method_options.items())
        rows.append(
            {
                "stream": f"{config.stream}/{config.order}",
                "method": f"{config.method} ({options})" if options else config.method,
                "settings": ", ".join(f"{k}={dump[k]}" for k in varying) or "-",
                "key": cost_key(identity(config)),
                "finished": config_hash(identity(config)) in done,
                "s_per_cell": seconds,
                "source": source,
            }
        )
    frame = pd.DataFrame(rows)
    table = frame.groupby("key", sort=False).agg(
        stream=("stream", "first"),
        method=("method", "first"),
        settings=("settings", "first"),
        cells=("finished", "size"),
        finished=("finished", "sum"),
        s_per_cell=("s_per_cell", "first"),
        source=("source", "first"),
    )
    table["left"] = table["cells"] - table["finished"]
    table["s_left"] = table["left"] * table["s_per_cell"]
    columns = ["stream", "method", "settings", "cells", "finished", "left", "s_per_cell", "source", "s_left"]
    return table.reset_index(drop=True)[columns]


def summary(table: pd.DataFrame, cores: int) -> str:
    """The plan's total in one line: cells left, their core-hours, the wall time on `cores` cores kept busy, and how
    many cells have no estimate."""
    left, total = int(table["left"].sum()), int(table["cells"].sum())
    unknown = int(table.loc[table["s_per_cell"].isna(), "left"].sum())
    hours = float(table["s_left"].sum(skipna=True)) / 3600
    head = f"{left} of {total} cells left"
    if unknown == left and left:
        return f"{head}; {unknown} cells without an estimate (no finished run of them, or of naive at their settings)"
    cost = f"≈ {hours:.1f} core-hours (≈ {hours / cores:.1f} h wall on {cores} core{'s' * (cores != 1)} kept busy)"
    return f"{head}: {cost}" + (f"; {unknown} more cell{'s' * (unknown != 1)} without an estimate" if unknown else "")


def render(table: pd.DataFrame) -> str:
    """The plan as a Markdown table, seconds rounded."""
    shown = table.copy()
    for column in ("s_per_cell", "s_left"):
        shown[column] = shown[column].map(lambda v: "?" if pd.isna(v) else f"{v:.0f}")
    return shown.to_markdown(index=False)
