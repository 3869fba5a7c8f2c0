"""The leaderboard (docs/run-record.md): finished run records aggregated with pandas into one row per configuration —
everything that changes a number except the seed — with mean ± sample std and a 95% Student-t interval over its
distinct seeds, each method's paired difference from naive in the same setting (same seeds), what a method assumes
and keeps, memory kept per task, wall time and the BibTeX keys a row should cite, as Markdown, CSV, HTML or JSON."""

from __future__ import annotations

import json
import math
import re
import sys
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pandas as pd

from clgraft.config import HASHED_WHEN_SET, RunConfig
from clgraft.errors import ClgraftError
from clgraft.io.records import config_hash, runs_folder
from clgraft.metrics.seeds import confidence_interval, paired_difference
from clgraft.results.run_records import LISTED, Skipped, read_records, skipped_note
from clgraft.runs.identity import record_identity

METRICS = ("acc", "bwt", "forgetting", "fwt", "la")
ROW_KEYS = ("stream", "order", "method", "options")
# config keys that are not part of a row's setting: the seed is what a row pools over, `trajectory` only saves
# checkpoints (it cannot change a number), and the stream, order, method and model enter as the run resolved them
_NOT_SETTING = {"seed", "trajectory", "stream", "order", "method", "model"}
ROW_ID_DIGITS = 8
LEADERBOARD_VERSION = 2
"""Bumped when a column's meaning changes (2: per-configuration rows, intervals, paired differences, assumptions)."""
BASELINE = "naive"
IN_EVERY_ROW = ("evaluate", "optimizer", "probe_steps")
"""Run options added after the first records whose default every row's setting names (the row ids people cite were
made with them). Options added since (`l1_to_init`) enter a row's setting only when set, as they enter the config
hash, so that adding an option never changes the id of a row it does not touch."""
PAIRED = ("acc", "forgetting")


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load(results: Path) -> tuple[dict[Path, dict], list[Skipped]]:
    """The readable finished records under RESULTS/runs/ (or RESULTS itself when it holds run folders) by run folder,
    and the records skipped with why (clgraft/results/run_records.py); no readable record at all is an error."""
    runs = runs_folder(results)
    records, skipped = read_records(runs)
    if not records and not skipped:
        raise ClgraftError(f"no finished runs under {runs}; run `clgraft sweep FILE --results {results}` first")
    if not records:
        raise ClgraftError(f"no readable run record under {runs}: {skipped_note(skipped)}")
    return records, skipped


def load_records(results: Path, warn: Callable[[str], None] = _to_stderr) -> list[dict]:
    """The readable finished records of a results folder; each skipped record is named with why (`warn`)."""
    records, skipped = load(results)
    for s in skipped:
        warn(f"clgraft: warning: skipped, not counted: {s}")
    return list(records.values())


def verify_predictions(records: dict[Path, dict]) -> list[Path]:
    """Recompute R from the predictions each run kept (predictions.npz) and check it against its record, so that a
    row's numbers are the examples' and not an edited record's; returns the run folders that kept no predictions
    (written before predictions were kept: not verified). An R that differs, or predictions that cannot be read, is
    a one-line error: a number changed by hand is neither counted nor silently dropped."""
    from clgraft.runs.predictions import FILE, recompute_R

    unverified = []
    for d, record in records.items():
        if not (d / FILE).is_file():
            unverified.append(d)
            continue
        try:
            recomputed = recompute_R(d / FILE, record["R"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ClgraftError(f"{d / FILE}: unreadable ({e}); delete the run folder to recompute it") from None
        if recomputed != record["R"]:
            raise ClgraftError(f"{d}: R in run.json differs from the R of its predictions.npz; the record was edited")
    return unverified


def citations(record: dict) -> list[str]:
    """BibTeX keys for a run: the method's papers, the stream's benchmark paper, each task's data set, and clgraft."""
    from clgraft.methods import get_method

    method = get_method(record["method"]["name"]).citations(record["method"]["options"])
    stream = record["stream"]
    papers = [stream.get("citation") or _registered_citation("stream", stream["name"], stream["version"])]
    papers += [t.get("citation") or _registered_citation("task", t["name"], t["version"]) for t in record["tasks"]]
    return list(dict.fromkeys([*method, *(p for p in papers if p), "clgraft"]))


@lru_cache(maxsize=1)
def _builtin_registry():
    from clgraft.data.registry import Registry

    return Registry.discover()


def _registered_citation(kind: str, name: str, version: int) -> str | None:
    """A task's or stream's citation key from the registry, for records written before run.json carried it."""
    registry = _builtin_registry()
    find = registry.task if kind == "task" else registry.stream
    try:
        return find(f"{name}@{version}").citation
    except ClgraftError:
        return None


def setting(record: dict) -> dict:
    """What a leaderboard row pools seeds over: everything a run's numbers depend on except its seed — the run's
    configuration as sweeps and the runner identify it (config.record_identity), less `trajectory` (saving
    checkpoints changes no number), with the stream, its tasks and the order as run (name@version), and the model by
    its weights' sha256 rather than the name or path it was loaded from."""
    identity = record_identity(record)
    config = {k: v for k, v in identity.pop("config").items() if k not in _NOT_SETTING}
    return {
        "stream": f"{record['stream']['name']}@{record['stream']['version']}",
        "order": record["stream"]["order"],
        "tasks": [f"{t['name']}@{t['version']}" for t in record["tasks"]],
        "method": record["method"]["name"],
        "model": record["model"]["sha256"],
        **{k: HASHED_WHEN_SET[k] for k in IN_EVERY_ROW},  # left out of identity at their default
        **config,
        "freeze_embeddings": identity.pop("freeze_embeddings", False),
        **identity,
    }


def row_id(key: str) -> str:
    """A row's id: the first 8 hex digits of its configuration's hash (`config_hash(setting(record))`). It names the
    configuration, not a position, so the same records give the same id whatever the sort and whichever other rows
    are there; `clgraft cite ID` takes the id the table prints (32 bits: a clash among a leaderboard's rows is
    negligible, and rows are grouped by the whole hash, so it could never merge two)."""
    return key[:8]


def row_citations(records: list[dict]) -> dict[str, list[str]]:
    """Each leaderboard row's id → the BibTeX keys it cites (its first record's, as the table's `cite` column), in
    order of first appearance: what `clgraft cite` needs, without aggregating (or reading any task data)."""
    out: dict[str, list[str]] = {}
    for record in records:
        out.setdefault(row_id(config_hash(setting(record))), citations(record))
    return out


def is_row_id(text: str) -> bool:
    """Whether a `clgraft cite` argument is meant as a row id rather than a method: ids are hex digits, which no
    method name or alias is."""
    return re.fullmatch(r"[0-9a-f]+", text) is not None


def _one_per_seed(records: list[dict], keys: list[str], warn: Callable[[str], None]) -> list[int]:
    """Indices of the records to count: one per (configuration key, seed), the first in the order given (for
    load_records, by folder name). A second record of a seed — the same cell run again into another folder, or with
    only its checkpoints changed — would make n count one seed twice; it is left out with a warning."""
    first: dict[tuple[str, int], int] = {}
    for i, (record, key) in enumerate(zip(records, keys, strict=True)):
        kept = first.setdefault((key, record["seed"]), i)
        if kept != i:
            warn(
                f"leaderboard: {record['stream']['name']}/{record['stream']['order']} {record['method']['name']} seed "
                f"{record['seed']}: run {record.get('config_hash')} repeats run {records[kept].get('config_hash')} of "
                "the same configuration; counted once (the first kept)"
            )
    return sorted(first.values())


def _differences(shown: pd.DataFrame, settings: dict[str, dict]) -> pd.Series:
    """Per row (indexed by configuration key), the setting values that tell it apart from the rows that look the same
    in the shown columns (e.g. `head=shared, steps=50`); "-" for a row with no such twin."""
    out = pd.Series("-", index=shown.index)
    for _, group in shown.groupby(list(shown.columns), sort=False, dropna=False):
        twins = [settings[key] for key in group.index]
        differ = sorted(k for k in set().union(*twins) if len({repr(s.get(k)) for s in twins}) > 1)
        for key, twin in zip(group.index, twins, strict=True):
            out[key] = ", ".join(f"{k}={_shown(k, twin.get(k))}" for k in differ) or "-"
    return out


def _shown(key: str, value: object) -> str:
    return f"sha256:{value[:12]}" if key == "model" else str(value)


def metric_text(values: pd.Series) -> str:
    """mean ± sample std [95% Student-t interval], in accuracy points; one seed: its value; none: n/a."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{100 * values.iloc[0]:.2f}"
    mean, low, high = confidence_interval([100 * v for v in values])
    return f"{mean:.2f} ± {100 * values.std(ddof=1):.2f} [{low:.2f}, {high:.2f}]"


def fixed_text(value: float) -> str:
    """A metric the method fixes by construction, in points, said to be so (never shown as a measured ± 0)."""
    return f"{100 * value + 0.0:.0f} (by construction)"


def baseline_setting(setting_of_row: dict) -> dict:
    """The setting of the same runs with naive sequential fine-tuning instead of the row's method: what a method is
    compared with, seed by seed (naive's own code revision, not the row method's)."""
    from clgraft.methods import get_method, parse_options

    naive = get_method(BASELINE)
    options = parse_options(naive, {})
    ours = {k: v for k, v in setting_of_row.items() if k != "method_revision"}
    revision = naive.revision(options)
    return {
        **ours,
        "method": BASELINE,
        "method_options": options.model_dump(),
        "freeze_embeddings": False,
        **({"method_revision": revision} if revision > 1 else {}),
    }


def paired_text(ours: dict[int, float], base: dict[int, float]) -> str:
    """Mean difference ours − base (naive, in the table) over shared seeds, in points, with its 95% interval
    and the paired t-test's p."""
    out = paired_difference({s: 100 * v for s, v in ours.items()}, {s: 100 * v for s, v in base.items()})
    if out["n_pairs"] < 2:
        return "-" if out["n_pairs"] == 0 else f"{out['diff']:+.2f} (1 seed)"
    return difference_text(out["diff"], out["ci_low"], out["ci_high"], out["p"], out["n_pairs"])


def difference_text(diff: float, low: float, high: float, p: float, pairs: int) -> str:
    """A paired difference over ≥ 2 seeds as every table prints it: 'diff [low, high] p=P (n=pairs)', with p as
    `p<0.001` below a thousandth (never a rounded 'p=0.000') and left out where it is undefined (NaN: no spread in
    the differences)."""
    shown = "" if math.isnan(p) else " p<0.001" if p < 0.001 else f" p={p:.3f}"
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]{shown} (n={pairs})"


def _assumptions(record: dict) -> dict:
    """What a row's method assumes and uses: task identity at test time, examples of finished tasks kept, state kept
    per task, whether its tasks' regions are disjoint by construction, and the optimisation budget per task (steps;
    examples seen, memory batches included)."""
    from clgraft.methods import get_method, parse_options

    method = get_method(record["method"]["name"])
    options = parse_options(method, record["method"]["options"])
    config = RunConfig(**record["config"])  # a record older than an option ran with its default
    seen = record["method"].get("report", {}).get("examples_seen_per_task")
    return {
        "task_id_at_test": "yes" if method.requires_task_id(options) or config.head != "shared" else "no",
        "data_kept": method.data_kept,
        "kept_per_task": method.per_task_state,
        "regions_disjoint": method.disjoint_regions,
        "steps_per_task": config.steps,
        "examples_per_task": round(sum(seen) / len(seen)) if seen else config.steps * config.batch_size,
    }


def _memory_kb(record: dict, data_dir: Path | None, uncounted: dict[str, list[str]]) -> dict:
    """A record's memory per task and its heads' per task, in KB of 1,024 bytes (clgraft/results/memory.py); NaN
    (shown n/a) where it cannot be counted, the record's method then added to `uncounted` under why."""
    from clgraft.results.memory import run_memory

    try:
        memory = run_memory(record, data_dir)
    except ClgraftError as e:
        uncounted.setdefault(str(e), []).append(record["method"]["name"])
        return {"extra_kb_per_task": math.nan, "head_kb_per_task": math.nan}
    return {"extra_kb_per_task": memory.per_task / 1024, "head_kb_per_task": memory.heads_per_task / 1024}


def _warn_uncounted(uncounted: dict[str, list[str]], warn: Callable[[str], None]) -> None:
    """One warning per reason memory could not be counted (a missing task's files fail every record that keeps its
    examples: one line, not one per record), with how many records and their methods."""
    for reason, methods in uncounted.items():
        named = ", ".join(sorted(set(methods)))
        warn(f"leaderboard: memory of {len(methods)} record(s) not counted ({named}): {reason}")


def _regions(record: dict) -> dict:
    """A record's regions (clgraft/runs/regions.py): the mean Jaccard of its tasks' regions over task pairs, that of
    random regions of the same sizes, and Spearman ρ of Jaccard with same-type (NaN for a run that kept no region per
    task, or a record older than `regions`). Whether they are disjoint by construction is the method's
    (`_assumptions`)."""
    regions = record.get("regions") or {}
    rho = (regions.get("jaccard_vs_same_type") or {}).get("rho")
    return {
        "region_jaccard": _number(regions.get("mean_jaccard")),
        "region_random_jaccard": _number(regions.get("mean_random_jaccard")),
        "region_type_rho": _number(rho),
    }


def _trajectory(record: dict) -> dict:
    """The mean over a record's tasks of its trajectories' d90 (clgraft/runs/trajectory.py: 8 checkpoints per task
    held in memory by a method that keeps a region per task); NaN for a record without them."""
    d90 = [d["d90"] for d in record.get("trajectory_dims") or [] if d is not None]
    return {"trajectory_d90": sum(d90) / len(d90) if d90 else math.nan}


def _number(value: object) -> float:
    """A record's number, NaN where absent."""
    return float(value) if isinstance(value, int | float) else math.nan


def _row(record: dict, key: str, data_dir: Path | None, uncounted: dict[str, list[str]]) -> dict:
    """One record's line of the table before aggregation (key: its configuration's hash)."""
    return {
        "key": key,
        "stream": record["stream"]["name"],
        "order": record["stream"].get("order", ""),
        "method": record["method"]["name"],
        "options": ", ".join(f"{k}={v}" for k, v in record["method"]["options"].items()) or "-",
        "option_values": record["method"]["options"],
        "seed": record["seed"],
        "wall_s": record["wall_s"],
        **_memory_kb(record, data_dir, uncounted),
        **_regions(record),
        **_trajectory(record),
        "cite": ", ".join(citations(record)),
        **_assumptions(record),
        **{m: record["metrics"][m] for m in METRICS},
        **{f"{m}_fixed": m in record.get("metrics_by_construction", {}) for m in METRICS},
    }


def seed_rows(
    records: list[dict], warn: Callable[[str], None] = _to_stderr, data_dir: Path | None = None
) -> pd.DataFrame:
    """The records a leaderboard counts, one line each before aggregation: the configuration's hash (`key`) and its
    `setting`, stream, order, method, options (text and `option_values`), seed, the metrics (and whether the method
    fixes them by construction), memory and head KB per task, wall time, assumptions and citation keys. A seed with
    several records counts once (`warn` says which). What `summarize` aggregates and the frontier plots."""
    settings = [setting(r) for r in records]
    row_keys = [config_hash(s) for s in settings]
    kept = _one_per_seed(records, row_keys, warn)
    uncounted: dict[str, list[str]] = {}
    frame = pd.DataFrame([_row(records[i], row_keys[i], data_dir, uncounted) for i in kept])
    _warn_uncounted(uncounted, warn)
    frame["setting"] = [settings[i] for i in kept]
    return frame.astype({m: float for m in METRICS})


def summarize(
    records: list[dict],
    keys: tuple[str, ...] = ROW_KEYS,
    sort_by: str | None = None,
    ascending: bool = False,
    warn: Callable[[str], None] = _to_stderr,
    data_dir: Path | None = None,
) -> pd.DataFrame:
    """One row per configuration (`setting`): its id (row_id), the `keys` columns, `setting` (what tells the row
    apart from rows with the same `keys`), n distinct seeds, mean ± sample std [95% t interval] (accuracy points) of
    each metric, the paired difference from naive's row in the same setting for acc and forgetting, the method's
    assumptions (task id at test time, data kept, state per task, steps and examples per task), mean memory per task
    and heads per task (clgraft/results/memory.py: the one rule of docs/metrics.md; task data read from `data_dir`
    for the methods that keep examples), mean wall time, and the row's citation keys; sorted by the mean of
    `sort_by` (a metric, wall_s, extra_kb_per_task or head_kb_per_task) when given, else in order of first
    appearance. A seed with several records counts once (`warn` says which)."""
    frame = seed_rows(records, warn, data_dir)
    settings = dict(zip(frame["key"], frame["setting"], strict=True))
    grouped = frame.groupby("key", sort=False)
    numeric = grouped[[*METRICS, "wall_s", "extra_kb_per_task", "head_kb_per_task", *REGIONS, "trajectory_d90"]].mean()
    table = grouped.agg(
        **{k: (k, "first") for k in keys}, n=("seed", "nunique"), **{m: (m, metric_text) for m in METRICS}
    )
    table.insert(0, "id", table.index.map(row_id))
    table.insert(len(keys) + 1, "setting", _differences(table[list(keys)], settings))
    for m in METRICS:  # a value the method fixes by construction is said to be so, never shown as a measured ± 0
        fixed = grouped[f"{m}_fixed"].all() & numeric[m].notna()
        table.loc[fixed, m] = numeric.loc[fixed, m].map(fixed_text)
    by_seed = {key: group.set_index("seed") for key, group in frame.groupby("key", sort=False)}
    base_of = {key: config_hash(baseline_setting(s)) for key, s in settings.items()}
    for m in PAIRED:
        fixed = grouped[f"{m}_fixed"].all()
        table[f"{m}_vs_{BASELINE}"] = [_versus(by_seed, key, base_of[key], m, bool(fixed[key])) for key in table.index]
    for column in ("task_id_at_test", "data_kept", "kept_per_task", "steps_per_task", "examples_per_task"):
        table[column] = grouped[column].first()
    for column in ("extra_kb_per_task", "head_kb_per_task"):
        table[column] = numeric[column].map(kb_cell)
    measured = grouped["region_jaccard"].count()
    disjoint = grouped["regions_disjoint"].all()
    table["region_jaccard"] = [
        region_cell(numeric.loc[k, "region_jaccard"], numeric.loc[k, "region_random_jaccard"], measured[k], disjoint[k])
        for k in table.index
    ]
    rho_seeds = grouped["region_type_rho"].count()
    table["region_type_rho"] = [
        "-" if not rho_seeds[k] else f"{numeric.loc[k, 'region_type_rho']:+.2f} (n={rho_seeds[k]})" for k in table.index
    ]
    d90_seeds = grouped["trajectory_d90"].count()
    table["trajectory_d90"] = [
        "-" if not d90_seeds[k] else f"{numeric.loc[k, 'trajectory_d90']:.2g} (n={d90_seeds[k]})" for k in table.index
    ]
    table["wall_s"] = numeric["wall_s"].map(lambda v: f"{v:.0f}")
    table["cite"] = grouped["cite"].first()
    if sort_by is not None:
        if sort_by not in numeric.columns:
            raise ClgraftError(f"--sort {sort_by!r}: choose one of {', '.join(numeric.columns)}")
        table = table.loc[numeric[sort_by].sort_values(ascending=ascending, na_position="last").index]
    return table.reset_index(drop=True)


REGIONS = ("region_jaccard", "region_random_jaccard", "region_type_rho")
"""The per-seed region columns (`_regions`), averaged over seeds into the row's two region cells."""


def region_cell(jaccard: float, random: float, seeds: int, disjoint: bool) -> str:
    """The mean Jaccard of a row's task regions beside random regions' ('-' for a row that keeps no region per
    task); where the method's regions cannot overlap, said to be by construction (never shown as a measured 0)."""
    if not seeds:
        return "-"
    return f"{jaccard:.3g} ({'by construction; ' if disjoint else ''}random {random:.2g}; n={seeds})"


MEMORY_UNKNOWN = "n/a"
"""The memory cell of a row whose memory could not be counted (the task data it needs is absent)."""


def kb_cell(value: float) -> str:
    """KB with the digits a small figure needs (0.29, 4.0, 832, 41589), n/a where it could not be counted."""
    if math.isnan(value):
        return MEMORY_UNKNOWN
    return f"{value:.0f}" if value >= 100 else f"{value:.2g}" if value < 1 else f"{value:.1f}"


def _versus(by_seed: dict[str, pd.DataFrame], key: str, base: str, metric: str, fixed: bool) -> str:
    """A row's paired cell against naive: '-' for naive itself, a row without a naive twin or an undefined metric."""
    if key == base or base not in by_seed:
        return "-"
    ours, theirs = by_seed[key][metric].dropna(), by_seed[base][metric].dropna()
    if ours.empty:
        return "-"
    cell = paired_text(ours.to_dict(), theirs.to_dict())
    return f"{cell} (by construction)" if fixed and cell != "-" else cell


def _number_first(text: str) -> tuple[int, float, str]:
    """Sort key: numbers by value (seeds 13, 21, 100, not 100, 13, 21), then other text alphabetically."""
    try:
        return 0, float(text), text
    except ValueError:
        return 1, 0.0, text


def header(records: list[dict]) -> str:
    """What the numbers are: model, steps, test cap, evaluated R entries, seeds and machine(s) of the runs."""
    configs = [r["config"] for r in records]

    def values(key: str) -> str:  # a record older than a setting ran with its default; numbers in numeric order
        return ", ".join(sorted({str(c.get(key, HASHED_WHEN_SET.get(key))) for c in configs}, key=_number_first))

    machines = sorted(
        {
            f"{h.get('machine', '?')} × {h.get('cpu_count', '?')} cores, {h.get('device', '?')}"
            for h in (r.get("hardware", {}) for r in records)
        }
    )
    return (
        f"{identification(records)}\n\n"
        f"{len(records)} runs; model {values('model')}; {values('steps')} steps per task, "
        f"batch {values('batch_size')}, lr {values('lr')} (head {values('head_lr')}), {values('max_length')} tokens, "
        f"test capped at {values('max_test')} per task, R entries evaluated: {values('evaluate')}; "
        f"seeds {values('seed')}; heads {values('head')}. Metrics in accuracy points from R (docs/metrics.md): mean ± "
        "sample std (ddof 1) [95% Student-t interval] over seeds (n); *_vs_naive = the mean paired difference from "
        "naive in the same setting over the seeds both have [95% t interval] and the two-sided paired t-test's p; "
        "extra_kb_per_task = what the method keeps from task to task beyond θ₀ and its one model, after the stream, "
        "per task (shared state as its share; docs/metrics.md, one rule for every method), head_kb_per_task = its "
        "heads per task, in KB of 1,024 bytes; region_jaccard = for a method that keeps a region per task, the "
        "mean over seeds of the tasks' regions' mean pairwise Jaccard (random = regions of the same sizes drawn at "
        "random; 'by construction' where the method's regions cannot overlap, as graft-freeze's), region_type_rho = "
        "the mean over seeds of Spearman ρ between Jaccard and same task type "
        "(clgraft/runs/regions.py; runs recorded before 2026-12-05 have no regions: -); trajectory_d90 = for such a "
        "method, the mean over seeds of the mean over tasks of d90 of each task's fine-tuning trajectory, 8 "
        "checkpoints (clgraft/runs/trajectory.py; runs recorded before 2026-12-06 have none: -); "
        "wall_s = mean seconds per run on: "
        f"{'; '.join(machines)}."
    )


def title(records: dict[Path, dict], unverified: list[Path], skipped: list[Skipped], progress: list[str]) -> str:
    """The leaderboard's header: what the numbers are (`header`), whose R was recomputed from their predictions (the
    runs that kept none named), each sweep's progress, and the records skipped with why."""
    checked = f"{len(records) - len(unverified)} of {len(records)}"
    text = f"{header(list(records.values()))} R of {checked} runs recomputed from their kept predictions"
    if unverified:
        names = ", ".join(d.name for d in unverified[:LISTED]) + _more(unverified)
        text += f" (not {names}: no predictions.npz, written before runs kept them)"
    notes = [f"{line}." for line in progress] + ([skipped_note(skipped)] if skipped else [])
    return text + "." + "".join(f"\n\n**{note}**" for note in notes)


def _more(items: list) -> str:
    return f" and {len(items) - LISTED} more" if len(items) > LISTED else ""


def _short_commit(commit: str | None) -> str:
    """A record's clgraft commit in 12 hex digits; records made outside a git checkout have none."""
    return commit[:12] if commit else "unknown (not a git checkout)"


def identification(records: list[dict]) -> str:
    """The versions a leaderboard is made of: its own, clgraft's (version and commit) that ran the records, each
    task's version and data hash, and each base model's weights hash. A task's data hash covers every data file any
    record read for it (each data seed reads its own files), with its sha256, whatever the records' order."""
    import hashlib

    def distinct(values) -> str:
        return ", ".join(sorted({str(v) for v in values}))

    files: dict[str, set[tuple[str, str]]] = {}
    for r in records:
        for t in r["tasks"]:
            files.setdefault(f"{t['name']}@{t['version']}", set()).update(t.get("checksums", {}).items())
    tasks = {name: hashlib.sha256(json.dumps(sorted(f)).encode()).hexdigest()[:12] for name, f in files.items()}
    versions = [r.get("versions", {}) for r in records]
    return (
        f"leaderboard v{LEADERBOARD_VERSION}; clgraft {distinct(v.get('clgraft') for v in versions)} "
        f"at commit {distinct(_short_commit(v.get('git_commit')) for v in versions)}; base model sha256 "
        f"{distinct(r['model']['sha256'][:12] for r in records)}; tasks (data sha256) "
        + ", ".join(f"{k} ({v})" for k, v in sorted(tasks.items()))
    )


def render(table: pd.DataFrame, fmt: str, title: str = "") -> str:
    """The table as md (with a header paragraph), csv, html or json (the header and one object per row)."""
    if fmt == "json":
        return json.dumps({"header": title, "rows": table.to_dict(orient="records")}, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "html":
        return f"<p>{title}</p>\n" + table.to_html(index=False)
    if fmt == "md":
        return f"{title}\n\n{table.to_markdown(index=False)}\n"
    raise ClgraftError(f"--format {fmt!r}: choose md, csv, html or json")
