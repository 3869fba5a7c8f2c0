"""What the claims' runs still cost (`clgraft claims run --plan`), priced as `clgraft sweep --plan` prices cells: per
claim its runs finished and left, with seconds per run from measured runs (`clgraft/sweeps/cost.py`), and the work
after the runs that is still to do — runs made again where their weights are gone and an analysis, a localization or
a control region still needs them (each at the CPU time its own record took), and the analysis fine-tunes not made
yet (one task each, counted per task from the analysis's own file, which a stopped analysis leaves behind), priced
at the CPU time the claim's complete analyses spent per fine-tune, else at the run's own seconds per task (a run
trains every task once and evaluates them, so an upper bound); a localization not made yet is priced at the CPU time
the claim's other localizations recorded, else left unknown; an overlap analysis with cross grafts not made yet
(T² + 4T test evaluations) at the CPU time the claim's complete ones recorded, else at that many evaluations of the
claim's runs. Other analyses cost their fine-tunes (the rest reads weights and graft files), so those are what they
are priced by."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import pandas as pd

from clgraft.analysis.run_files import kept_analysis
from clgraft.config import TEST_SUBSET, RunConfig
from clgraft.grafting.localize import CONTROLS
from clgraft.io.records import config_hash, read_json, runs_folder
from clgraft.runs.identity import identity
from clgraft.runs.localize_run import DEFAULT_STEPS
from clgraft.sweeps.claim_statistics import analysis_key, localize_rows
from clgraft.sweeps.claims import (
    REFERENCE,
    Claim,
    Evidence,
    analysis_complete,
    claim_runs_dir,
    control_evidence,
    first_regions_missing,
    grafts_missing,
    has_weights,
    missing_curve,
    run_config,
    scaled_evidence,
    seed_records,
)
from clgraft.sweeps.cost import plan
from clgraft.sweeps.sweep import finished_runs


def finetunes_per_task(evidence: Evidence, entry: dict | None) -> int:
    """The analysis fine-tunes the evidence asks for that one task's entry of the run's analysis lacks (None: the
    task not analysed yet): one for the critical layers and for each subspace d, three for the controls (a subspace
    section with bases older than today's precision lacks everything)."""
    entry = entry or {}
    if evidence.analyze == "closeness" and evidence.critical_layers:
        critical = entry.get("critical_layers", {})
        missing = critical.get("k") != evidence.critical_layers
        return int(missing) + (3 if evidence.analysis_controls and "controls" not in critical else 0)
    if evidence.analyze == "subspace" and evidence.subspace_dims:
        from clgraft.analysis.subspace import current_section

        section = current_section(entry)  # older bases: all again
        missing = [d for d in evidence.subspace_dims if str(d) not in section.get("by_d", {})]
        return len(missing) + (3 if evidence.analysis_controls and "controls" not in section else 0)
    return 0


def finetunes_left(evidence: Evidence, folder: Path, record: dict) -> int:
    """The analysis fine-tunes (one task each) a finished run still needs, summed over its tasks. Each task's entry
    is read from the analysis's own file (analysis/NAME.json, written after every task, so it holds what a stopped
    analysis made), else from run.json's summary; 0 for an analysis that trains nothing."""
    if not finetunes_per_task(evidence, None):
        return 0
    key = analysis_key(evidence, evidence.analyze)
    entries = kept_analysis(folder, key)[0] or record.get("analysis", {}).get(key) or {}
    return sum(finetunes_per_task(evidence, entries.get(task["name"])) for task in record["tasks"])


def _finetune_seconds(complete: list[dict], evidence: Evidence) -> float | None:
    """The CPU seconds of one analysis fine-tune (one task): over the claim's complete analyses (`complete`: their
    records) that record their time, the time spent over the fine-tunes made (their tasks × those a task asks, the
    rest of the analysis counted in); None where none records it."""
    key = analysis_key(evidence, evidence.analyze)
    timed = [record for record in complete if record["analysis"][key].get("cpu_s")]
    made = sum(len(record["tasks"]) for record in timed) * finetunes_per_task(evidence, None)
    return sum(record["analysis"][key]["cpu_s"] for record in timed) / made if made else None


def _localize_seconds(folders: list[Path], evidence: Evidence, pool: list[Path]) -> float | None:
    """The CPU seconds of one run's localization: the mean of the claim's localizations made so far (a run's rows
    summed) — before a disjoint claim's first, those of the scaled search it repeats outside the scaled region.
    Where none of them records its time (rows from before localize did), the runs' tasks × the mean time a task's
    search took at another sparsity or candidate change with as many steps (a search costs its steps' gradient
    passes and scored masks, whatever region it selects), in the claim's own folders first, else in every run under
    the folders the plan reads (`pool`: results folders or folders of runs); None where no search records its time."""
    for made in (evidence, *_searched_regions(evidence)):
        spent = [sum(r.get("cpu_s") or 0.0 for r in localize_rows(f, made)) for f in folders]
        if spent := [s for s in spent if s > 0]:
            return mean(spent)
    tasks = [len(read_json(f / "run.json")["tasks"]) for f in folders if (f / "run.json").is_file()]
    steps = int(evidence.localize.get("steps", DEFAULT_STEPS))
    per_task = _task_search_seconds(folders, steps) or _task_search_seconds(_runs_under(pool), steps)
    return mean(tasks) * mean(per_task) if per_task and tasks else None


def _task_search_seconds(folders: list[Path], steps: int) -> list[float]:
    """The CPU seconds each timed search of a task took in these runs, for searches of `steps` steps."""
    return [r["cpu_s"] for f in folders for r in _search_rows(f) if r.get("cpu_s") and r.get("steps") == steps]


def _runs_under(pool: list[Path]) -> list[Path]:
    """Every run folder under the plan's folders (results folders or folders of runs)."""
    return [run for d in pool for run in sorted(runs_folder(d).glob("*/"))]


def _search_rows(folder: Path) -> list[dict]:
    """Every searched row of a run's localize.json, whatever its sparsity and method (control regions search
    nothing)."""
    path = folder / "localize.json"
    rows = read_json(path)["results"] if path.is_file() else []
    return [r for r in rows if r["method"] not in CONTROLS]


@dataclass
class _Counted:
    """The work the claims planned so far already price, so that claims reading one folder of runs (critical-layers
    and subspace read the closeness claim's) do not price the same work twice: runs left, runs made again for their
    weights, analysis fine-tunes (one task each) by (run, analysis), and localizations by (run, method, sparsity)."""

    runs: set = field(default_factory=set)
    remade: set = field(default_factory=set)
    finetunes: dict = field(default_factory=dict)
    localized: set = field(default_factory=set)
    analysed: set = field(default_factory=set)

    def new_analysis(self, run: object, key: str) -> int:
        """1 if no claim priced this analysis (`key`: its name in run.json, with what it asks) of `run` yet."""
        fresh = (run, key) not in self.analysed
        self.analysed.add((run, key))
        return int(fresh)

    def new_localizations(self, run: object, evidence: Evidence, sparsities: list[float]) -> int:
        """How many of the evidence's localizations of `run` at these sparsities no claim priced yet (a
        localization is its options: method, steps, seed per task, sparsity)."""
        if not sparsities:
            return 0
        options = {k: v for k, v in evidence.localize.items() if k != "sparsity"}
        keys = {(run, repr(sorted(options.items())), float(x)) for x in sparsities}
        fresh = keys - self.localized
        self.localized |= keys
        return len(fresh)

    def new_runs(self, todo: set) -> int:
        fresh = todo - self.runs
        self.runs |= todo
        return len(fresh)

    def remake(self, folder: Path) -> int:
        fresh = folder not in self.remade
        self.remade.add(folder)
        return int(fresh)

    def new_finetunes(self, run: object, analysis: str | None, n: int) -> int:
        before = self.finetunes.get((run, analysis), 0)
        self.finetunes[(run, analysis)] = max(before, n)
        return max(0, n - before)


def claim_plan(results: Path, claims: list[Claim], costs: list[Path]) -> pd.DataFrame:
    """One row per claim with runs to make (not those read from records of another test subset): runs (cells),
    finished, left, seconds per run and their source, runs to make again for their weights, analysis fine-tunes still
    to do (one task each, summed over runs), localizations still to do, overlap analyses with cross grafts still to do,
    and the seconds all of it should take (NaN where a part has no price). A control region (`localize_controls`)
    searched for nothing is priced only by the run made again for its weights; the scaled region (beside a
    `disjoint` claim) is a search, priced as a localization where its rows are missing, or its graft files while the
    disjoint search is still to make. Work another claim of the list already prices is not priced again."""
    counted = _Counted()
    folders = [*costs, *(claim_runs_dir(results, c) for c in claims if c.evidence is not None)]
    rows = [
        _claim_row(results, claim, folders, counted)
        for claim in claims
        if claim.evidence is not None and claim.evidence.test_subset == TEST_SUBSET  # else read from its records
    ]
    return pd.DataFrame(rows)


def _claim_row(results: Path, claim: Claim, folders: list[Path], counted: _Counted) -> dict:
    evidence = claim.evidence
    methods = [*evidence.methods, *evidence.control_methods.values()]
    cells = [run_config(evidence, m, s) for s in evidence.seeds for m in methods]
    runs = claim_runs_dir(results, claim)
    table = plan(cells, results, folders, runs=runs)
    per_run = float(table["s_per_cell"].mean()) if table["s_per_cell"].notna().all() else float("nan")
    done = finished_runs(runs)
    todo = {(runs, h) for h in (config_hash(identity(c)) for c in cells) if h not in done}
    left = counted.new_runs(todo)
    tasks = _stream_tasks(cells[0]) if evidence.analyze else 0
    finetunes = sum(
        counted.new_finetunes(run, evidence.analyze, tasks * finetunes_per_task(evidence, None)) for run in todo
    )
    wanted = [float(evidence.localize["sparsity"]), *evidence.localize_curve] if evidence.localize else []
    searched = _searched_regions(evidence)
    to_localize = sum(counted.new_localizations(run, evidence, wanted) for run in todo)
    to_localize += sum(counted.new_localizations(run, e, wanted[:1]) for run in todo for e in searched)
    priced = _priced_analysis(evidence)
    analyses = sum(counted.new_analysis(run, priced) for run in todo) if priced else 0
    made = [
        (record, folder)
        for found in _records_made(results, claim)
        for by_method in found.values()
        for record, folder in by_method.values()
    ]
    remake, remake_s, complete_records = 0, 0.0, []
    for record, folder in made:
        key = analysis_key(evidence, evidence.analyze) if evidence.analyze else None
        summary = record.get("analysis", {}).get(key) if key else None
        complete = summary is not None and analysis_complete(summary, evidence, record, REFERENCE in claim.controls)
        complete_records += [record] if complete else []
        unanalysed = key is not None and not complete
        localize = evidence.localize is not None and not localize_rows(folder, evidence)
        localize = localize or (unanalysed and grafts_missing(folder, evidence))  # searched again for the analysis
        regions = any(not localize_rows(folder, evidence, c) for c in evidence.localize_controls)
        curve = missing_curve(folder, evidence) if evidence.localize else []
        if (unanalysed or localize or regions or curve) and not has_weights(folder, record):
            if counted.remake(folder):  # the same configuration again: the CPU time its record says it took
                remake, remake_s = remake + 1, remake_s + (record.get("cpu_s") or per_run)
        finetunes += counted.new_finetunes(
            folder, evidence.analyze, finetunes_left(evidence, folder, record) if key else 0
        )
        analyses += counted.new_analysis(folder, priced) if priced and unanalysed else 0
        missing = [float(evidence.localize["sparsity"])] if localize else []
        to_localize += counted.new_localizations(folder, evidence, missing + curve) if evidence.localize else 0
        for region in searched:  # absent, or its graft files gone where the disjoint search still needs them
            again = not localize_rows(folder, region) or (localize and first_regions_missing(folder, evidence))
            to_localize += counted.new_localizations(
                folder, region, [float(evidence.localize["sparsity"])] if again else []
            )
    localize_s = _localize_seconds([f for _, f in made], evidence, folders) if to_localize else 0.0
    analysis_s = _analysis_seconds([r for r, _ in made], evidence) if analyses else 0.0
    finetune_s = _finetune_seconds(complete_records, evidence) if finetunes else 0.0
    if finetune_s is None:  # no complete analysis records its time: the run's own seconds per task
        finetune_s = per_run / tasks
    seconds = per_run * left + remake_s + finetunes * finetune_s
    seconds += to_localize * localize_s if localize_s is not None else 0
    seconds += analyses * analysis_s if analysis_s is not None else 0
    priced_all = localize_s is not None and analysis_s is not None
    return {
        "claim": claim.claim,
        "runs": int(table["cells"].sum()),
        "finished": int(table["finished"].sum()),
        "left": left,
        "s_per_run": per_run,
        "source": "; ".join(dict.fromkeys(table["source"])),
        "remake_weights": remake,
        "analysis_finetunes": finetunes,
        "localize": to_localize,
        "analyses": analyses,
        "s_left": seconds if priced_all else float("nan"),
    }


def _stream_tasks(config: RunConfig) -> int:
    """How many tasks a run of this configuration trains: its stream's order."""
    from clgraft.data.registry import Registry

    return len(Registry.discover().stream(config.stream).order(config.order)[1])


def _priced_analysis(evidence: Evidence) -> str | None:
    """The key in run.json of the overlap analysis with cross grafts the evidence asks for: the one analysis priced
    by its own time (its test evaluations); None for the others (an overlap alone reads graft files)."""
    return analysis_key(evidence, "overlap") if evidence.analyze == "overlap" and evidence.cross_grafts else None


def _analysis_seconds(records: list[dict], evidence: Evidence) -> float | None:
    """The CPU seconds of one overlap analysis with cross grafts: the mean of those the claim's records hold
    complete, else T² + 4T test evaluations at the claim's runs' mean seconds per evaluation (their evaluation time
    over R's entries); None where no record says either."""
    key = analysis_key(evidence, "overlap")
    summaries = [(record.get("analysis", {}).get(key), record) for record in records]
    if spent := [s["cpu_s"] for s, r in summaries if s and s.get("cpu_s") and analysis_complete(s, evidence, r)]:
        return mean(spent)
    per_evaluation = [_seconds_per_evaluation(record) for record in records]
    if not (per_evaluation := [s for s in per_evaluation if s is not None]):
        return None
    tasks = mean(len(record["tasks"]) for record in records)
    return (tasks**2 + 4 * tasks) * mean(per_evaluation)


def _seconds_per_evaluation(record: dict) -> float | None:
    """A run's evaluation seconds over the test evaluations it made (R's entries), None where it records neither."""
    evaluated = sum(v is not None for row in record.get("R") or [] if row is not None for v in row)
    seconds = (record.get("time_s") or {}).get("evaluate")
    return seconds / evaluated if seconds and evaluated else None


def _searched_regions(evidence: Evidence) -> list[Evidence]:
    """The control regions that are searches — the scaled region beside a `disjoint` claim — as the evidence whose
    localization each is."""
    return [scaled_evidence(evidence)] if "scaled" in evidence.localize_controls else []


def _records_made(results: Path, claim: Claim) -> list[dict]:
    """The claim's finished records per seed, and its control methods' (each run once however many claims list
    it)."""
    evidence = claim.evidence
    controls = [control_evidence(evidence, c) for c in evidence.control_methods]
    return [seed_records(results, claim)[0], *(seed_records(results, claim, e)[0] for e in controls)]


def summary(table: pd.DataFrame, cores: int) -> str:
    """The plan's total in one line: core-hours and wall hours on `cores` busy cores, and the claims without a price."""
    unknown = table.loc[table["s_left"].isna(), "claim"].tolist()
    hours = float(table["s_left"].sum(skipna=True)) / 3600
    line = f"claims' work left: ≈ {hours:.1f} core-hours (≈ {hours / cores:.1f} h wall on {cores} cores kept busy)"
    return line + (f"; without a price: {', '.join(unknown)}" if unknown else "")


def render(table: pd.DataFrame) -> str:
    """The plan as a Markdown table, seconds rounded."""
    shown = table.copy()
    for column in ("s_per_run", "s_left"):
        shown[column] = shown[column].map(lambda v: "?" if pd.isna(v) else f"{v:.0f}")
    return shown.to_markdown(index=False)
