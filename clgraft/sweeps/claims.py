"""The seed papers' claims as data (`tasks/claims/*.yaml`): what a paper claims and where, how clgraft's setting
departs from the paper's, the runs that test it, the number each seed's records give, and a verdict from the mean and
its 95% confidence interval over seeds.

A claim's records live in `RESULTS/claims/CLAIM/runs/` (run.json, localize.json, analysis/*.json); `clgraft claims
run` makes or reuses them, `clgraft claims report` recomputes every number from them and writes RESULTS/CLAIMS.md
(clgraft/sweeps/claim_report.py). A seed's number pools its learned tasks (clgraft/sweeps/claim_statistics.py); the
verdict reads the interval against the paper's expectation and says what that means for the paper given the claim's
departures (clgraft/sweeps/claim_verdicts.py): *not run* without records, *needs …* where the claim asks for something
clgraft cannot do yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clgraft.config import TEST_SUBSET, RunConfig
from clgraft.data.registry import builtin_tasks_dir
from clgraft.errors import ClgraftError, validation_message
from clgraft.io.records import read_json
from clgraft.metrics.seeds import confidence_interval
from clgraft.results.run_records import Skipped, read_records, readable_record
from clgraft.runs.identity import identity, record_identity
from clgraft.sweeps.claim_statistics import (
    CONTROL_NAMES,
    STATISTICS,
    TaskPart,
    analysis_key,
    covers_tasks,
    learned_in,
    localize_rows,
    summary_tasks,
)
from clgraft.sweeps.claim_verdicts import MIN_SEEDS, NO_VALUE, read_interval, verdict_words

if TYPE_CHECKING:
    from clgraft.data.registry import Registry
    from clgraft.runs.runner import Runner


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sesoi(_Strict):
    """An effect claim's smallest effect of interest: an interval inside value ± margin is "no effect larger than
    margin", a verdict against the claimed effect rather than an inconclusive one."""

    margin: float = Field(gt=0)
    why: str = Field(description="why this margin: what effect would be too small to matter, and why")


class Expect(_Strict):
    """The paper's number or direction: the measured value should be `op` `value`."""

    op: Literal[">", ">=", "<", "<="] = Field(
        description="> or < where the paper claims a strict effect (better, degrades, ρ > 0): an interval that only "
        "touches the value, as a measured zero does, does not reproduce it"
    )
    value: float
    text: str = Field(description="the expectation as the paper states it, e.g. '> 95% of fine-tuned accuracy'")
    sesoi: Sesoi | None = Field(default=None, description="effect claims (> or <): the smallest effect of interest")

    @model_validator(mode="after")
    def _effect_only(self) -> Expect:
        if self.sesoi is not None and self.op not in (">", "<"):
            raise ValueError("`sesoi` belongs to an effect claim: use op > or < (a strict effect)")
        return self


class Departure(_Strict):
    """One aspect in which the claim's setting departs from the paper's: what, the paper's, clgraft's (docs/claims.md
    says where each paper fact comes from)."""

    what: Literal["model", "head", "optimizer", "shots", "steps", "sparsity", "search", "test", "measure", "basis"]
    paper: str
    here: str


class Evidence(_Strict):
    """The runs that test a claim, the steps after them, and the statistic each seed's records give."""

    stream: str
    methods: list[str] = Field(min_length=1, max_length=2, description="two for a paired difference (first − second)")
    seeds: list[int] = Field(min_length=MIN_SEEDS)
    run: dict[str, Any] = Field(default={}, description="RunConfig settings shared by the runs (steps, max_test, ...)")
    localize: dict[str, Any] | None = Field(
        default=None, description="localize options (clgraft.api.localize): sparsity, method, steps"
    )
    analyze: Literal["overlap", "subspace", "closeness"] | None = None
    subspace_dims: list[int] = Field(
        default=[], description="subspace analysis: dimensions d of intrinsic fine-tuning (--finetune-in-subspace)"
    )
    critical_layers: int | None = Field(
        default=None,
        gt=0,
        description="closeness analysis: fine-tune only the k blocks that moved most (--critical-layers)",
    )
    analysis_controls: bool = Field(
        default=False,
        description="the analysis's controls (--controls): closeness, the distances between two tasks' fine-tunes "
        "as a reference scale, and the k least-moved blocks, k random blocks and the head alone beside the critical "
        "layers; subspace, a random subspace, the next task's and none beside the intrinsic one",
    )
    cross_grafts: bool = Field(
        default=False,
        description="overlap analysis of a joint run: each task's region grafted on θ₀ and read on every task, and "
        "the regions' union, a random region of its size and θ₀ with the heads on each (`analyze overlap "
        "--cross-grafts`)",
    )
    localize_controls: list[Literal["top-tau", "random", "bias", "scaled"]] = Field(
        default=[],
        description="regions of the localization's size, each grafted from the same θ_t beside the claim's own "
        "(`localize --method`) and made before it: three searched for nothing (the top-|τ| region, a random one, "
        "the bias entries), and the scaled search's own region, for a claim on another region (`disjoint`, which "
        "excludes it)",
    )
    localize_curve: list[float] = Field(
        default=[],
        description="more sparsities at which the claim's statistic is read too, as a curve beside the verdict (which "
        "reads `localize`'s): the localization is made at each with the same options",
    )
    control_methods: dict[str, str] = Field(
        default={},
        description="a pair claim's controls: name → method spec (NAME[:KEY=VALUE...]) run in place of the second "
        "method and read with the claim's statistic, e.g. graft-freeze with a random region of the same size",
    )
    statistic: str = Field(description="what a seed's records give (STATISTICS in clgraft/sweeps/claim_statistics.py)")
    records: str | None = Field(
        default=None, description="folder of run directories, relative to RESULTS; default claims/CLAIM/runs"
    )
    test_subset: Literal["stratified"] | None = Field(
        default=TEST_SUBSET,
        description="how the records' capped test sets were drawn: stratified (clgraft's own), or null for records "
        "made with the earlier random subset (such a claim is read from its records; `claims run` cannot make them)",
    )

    @model_validator(mode="after")
    def _known(self) -> Evidence:
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic '{self.statistic}': choose one of {', '.join(STATISTICS)}")
        needs = STATISTICS[self.statistic].needs
        if needs == "localize" and not self.localize:
            raise ValueError(f"statistic '{self.statistic}' reads localize.json: give `localize`")
        analysis = "overlap" if needs == "cross_grafts" else needs
        if analysis in ("overlap", "subspace", "closeness") and self.analyze != analysis:
            raise ValueError(f"statistic '{self.statistic}' reads the {analysis} analysis: set `analyze: {analysis}`")
        if self.analyze == "overlap" and not self.localize:
            raise ValueError("the overlap analysis compares grafts: give `localize` (their sparsity)")
        if self.analyze == "subspace" and self.run.get("trajectory", 0) < 2:
            raise ValueError("the subspace analysis reads checkpoints: set `run: {trajectory: N}` with N ≥ 2")
        if needs == "cross_grafts" and not self.cross_grafts:
            raise ValueError(f"statistic '{self.statistic}' reads the cross grafts: set `cross_grafts: true`")
        if self.cross_grafts and self.analyze != "overlap":
            raise ValueError("`cross_grafts` are part of the overlap analysis: set `analyze: overlap`")
        if self.cross_grafts and not all(_joint(spec) for spec in self.methods):
            raise ValueError("`cross_grafts` read every region from one multi-task model: the methods must be joint")
        if self.statistic == "critical_layers_of_full" and not self.critical_layers:
            raise ValueError("statistic 'critical_layers_of_full' needs `critical_layers: k`")
        if self.analysis_controls and not (
            self.analyze == "closeness" or (self.analyze == "subspace" and self.subspace_dims)
        ):
            raise ValueError(
                "`analysis_controls` needs what they are compared with: the closeness analysis, or `subspace_dims` "
                "(subspace)"
            )
        if (of := STATISTICS[self.statistic].control_of) is not None:
            raise ValueError(f"statistic '{self.statistic}' is a control of '{of}': list it under `controls`")
        self._localize_extras()
        self._control_methods(needs)
        if needs == "pair" and len(self.methods) != 2:
            raise ValueError(f"statistic '{self.statistic}' compares two methods: list two")
        return self

    def _localize_extras(self) -> None:
        """Raise unless the control regions and the curve add to the localization: no region that is its own
        method, no curve point at its own sparsity."""
        if (self.localize_controls or self.localize_curve) and not self.localize:
            raise ValueError("`localize_controls` and `localize_curve` add to the localization: give `localize`")
        if self.localize_curve and STATISTICS[self.statistic].needs != "localize":
            raise ValueError(f"`localize_curve` reads localize.json, statistic '{self.statistic}' does not")
        if not all(0 < x < 1 for x in self.localize_curve):
            raise ValueError("`localize_curve`: every sparsity must be in (0, 1), e.g. 1e-5")
        if self.localize and float(self.localize["sparsity"]) in self.localize_curve:
            raise ValueError("`localize_curve` lists the localization's own sparsity: the curve reads it already")
        if self.localize and self.localize.get("method", "scaled") in self.localize_controls:
            raise ValueError("`localize_controls` lists the localization's own method: a control is another region")
        if self.localize and self.localize.get("method") == "disjoint":
            if "scaled" not in self.localize_controls:
                raise ValueError(
                    "a `disjoint` localization excludes the scaled region: list scaled in `localize_controls`"
                )
            if self.localize_curve:
                raise ValueError("a `disjoint` localization has no curve: its first region is made at one sparsity")

    def _control_methods(self, needs: str) -> None:
        """Raise unless each control method is a valid spec that differs from the claim's own methods and whose
        name no statistic has."""
        from clgraft.methods import parse_method_spec

        if self.control_methods and needs != "pair":
            raise ValueError("`control_methods` replace a pair claim's second method: the statistic compares two")
        for name, spec in self.control_methods.items():
            if name in STATISTICS:
                raise ValueError(f"control method '{name}': a statistic has that name, choose another")
            if spec in self.methods:
                raise ValueError(f"control method '{name}': {spec} is one of the claim's own methods")
            try:
                parse_method_spec(spec)
            except ClgraftError as e:
                raise ValueError(f"control method '{name}': {e}") from None


def _joint(spec: str) -> bool:
    """Whether a method spec (NAME[:KEY=VALUE...]) trains one model on every task at once."""
    from clgraft.methods import get_method, parse_method_spec

    return get_method(parse_method_spec(spec)[0]).joint


class Claim(_Strict):
    """One claim of one paper, with what tests it."""

    claim: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    paper: str = Field(description="BibTeX key in clgraft/data/references.bib")
    where: str = Field(description="section, table or figure of the paper")
    statement: str
    expect: Expect
    evidence: Evidence | None = None
    needs: str | None = Field(default=None, description="what clgraft lacks to test it; the report says so")
    requires: str | None = Field(
        default=None,
        description="what a machine needs to make the runs beyond the default's, as 'LABEL: details' (e.g. "
        "'GPU/network: roberta-base from the hub'): `claims run` without names skips the claim, and without records "
        "the report's verdict is 'needs LABEL' and its reason gives the details and the command",
    )
    departures: list[Departure] = Field(
        default=[], description="how the setting departs from the paper's; none means the paper's own setting"
    )
    quantity: Literal["paper", "clgraft"] = Field(
        default="paper",
        description="paper: the paper's own quantity; clgraft: a stricter one clgraft defines (the body's share of "
        "the gain), whose verdict is a clgraft finding and not one on the paper",
    )
    setting_note: str = Field(default="", description="why this setting; what the departures do not say")
    controls: list[str] = Field(
        default=[],
        description="statistics of a control read from the same records (CONTROL_NAMES), each reported beside the "
        "claim's number with the paired difference claim − control over seeds",
    )
    origin: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _testable(self) -> Claim:
        if self.evidence is None and self.needs is None:
            raise ValueError("give `evidence` (the runs that test the claim) or `needs` (why it cannot be run yet)")
        own = self.evidence.control_methods if self.evidence is not None else {}
        if unknown := [c for c in self.controls if c not in CONTROL_NAMES and c not in own]:
            raise ValueError(f"control '{unknown[0]}': choose one of {', '.join([*CONTROL_NAMES, *own])}")
        for control in self.controls:
            self._readable(control)
        if unlisted := [n for n in (self.evidence.control_methods if self.evidence else {}) if n not in self.controls]:
            raise ValueError(f"control method '{unlisted[0]}' is not read: list it under `controls`")
        aspects = [d.what for d in self.departures]
        if repeated := sorted({a for a in aspects if aspects.count(a) > 1}):
            raise ValueError(f"departure '{repeated[0]}' is listed twice: one entry per aspect")
        return self

    def _readable(self, control: str) -> None:
        """Raise unless the control is read beside the claim's statistic and the evidence makes what it reads: a
        region's localization, the localize rows, or the analysis with its controls."""
        evidence = self.evidence
        if evidence is None:
            raise ValueError("`controls` are read from the claim's records: give `evidence`")
        if control in evidence.control_methods:
            return
        statistic = STATISTICS[control]
        if statistic.control_of != evidence.statistic:
            raise ValueError(f"control '{control}' is read beside '{statistic.control_of}', not '{evidence.statistic}'")
        if statistic.localizer is not None and statistic.localizer not in evidence.localize_controls:
            raise ValueError(
                f"control '{control}' grafts the {statistic.localizer} region: list it in `localize_controls`"
            )
        if statistic.needs == "localize" and not evidence.localize:
            raise ValueError(f"control '{control}' reads localize.json: give `localize`")
        if statistic.needs in ("closeness", "subspace") and not evidence.analysis_controls:
            raise ValueError("`controls` are read from the analysis's controls: set `analysis_controls: true`")


def claims_dir() -> Path:
    """The shipped claims: `claims/` in the built-in tasks folder."""
    return builtin_tasks_dir() / "claims"


def load_claims(folder: Path | None = None) -> list[Claim]:
    """Every claim file of a folder (the shipped ones by default), validated, in file-name order."""
    out = []
    for path in sorted((folder or claims_dir()).glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            out.append(Claim.model_validate({**doc, "origin": str(path)}))
        except yaml.YAMLError as e:
            raise ClgraftError(f"{path}: not valid YAML ({getattr(e, 'problem', e)})") from e
        except ValidationError as e:
            raise ClgraftError(validation_message(path, e)) from e
        except TypeError as e:
            raise ClgraftError(f"{path}: expected a mapping with a `claim:` key") from e
    names = [c.claim for c in out]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ClgraftError(f"claim '{dup[0]}' is defined twice")
    return out


def claim_runs_dir(results: Path, claim: Claim) -> Path:
    """Where a claim's run directories are kept (a comparison's folder, where the claim reuses its runs)."""
    if claim.evidence is not None and claim.evidence.records:
        return results / claim.evidence.records
    return results / "claims" / claim.claim / "runs"


def run_config(evidence: Evidence, method: str, seed: int) -> RunConfig:
    """The RunConfig of this method spec (NAME[:KEY=VALUE...]) and seed in the claim's setting."""
    from clgraft.methods import parse_method_spec

    name, options = parse_method_spec(method)
    return RunConfig(stream=evidence.stream, method=name, method_options=options, seed=seed, **evidence.run)


def _matches(record: dict, evidence: Evidence, method: str, seed: int) -> bool:
    """Whether a record is the run of this method spec and seed in the claim's setting: the same configuration
    exactly (config.identity), not one whose options or settings merely contain the claim's."""
    return record_identity(record) == identity(run_config(evidence, method, seed), evidence.test_subset)


def seed_records(
    results: Path, claim: Claim, evidence: Evidence | None = None
) -> tuple[dict[int, dict[str, tuple[dict, Path]]], list[Skipped]]:
    """The finished records of each seed of the claim (of `evidence` in its place: a control's), by method (seeds
    missing a method are left out), and the records of its folder skipped as unreadable (not JSON, a newer format:
    clgraft/results/run_records.py), with why."""
    evidence = evidence or claim.evidence
    found: dict[int, dict[str, tuple[dict, Path]]] = {}
    records, skipped = read_records(claim_runs_dir(results, claim), check=readable_record)
    for folder, record in records.items():
        for method in evidence.methods:
            for seed in evidence.seeds:
                if _matches(record, evidence, method, seed):
                    found.setdefault(seed, {})[method] = (record, folder)
    return {s: r for s, r in found.items() if len(r) == len(evidence.methods)}, skipped


@dataclass
class Measured:
    """A claim's number over seeds, its verdict, and what each seed's number pools."""

    values: dict[int, float]
    mean: float | None
    low: float | None
    high: float | None
    verdict: str
    why: str
    setting: str
    parts: dict[int, list[TaskPart]] = field(default_factory=dict)
    learned: dict[int, dict[str, bool]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    """Records in the claim's folder left out as unreadable, with why."""
    records: dict[int, dict[str, tuple[dict, Path]]] = field(default_factory=dict, repr=False)
    """The records each seed's number was read from (by method), which the claim's controls read too."""


def _setting(claim: Claim, records: dict[int, dict[str, tuple[dict, Path]]]) -> str:
    evidence = claim.evidence
    parts = [f"{evidence.stream}, {' vs '.join(evidence.methods)}"]
    if records:
        record = next(iter(next(iter(records.values())).values()))[0]
        config, tests = record["config"], [t["test_size"] for t in record["tasks"]]
        test = f"test {min(tests)}{f'–{max(tests)}' if max(tests) > min(tests) else ''} per task"
    else:  # what `claims run` would make
        config = run_config(evidence, evidence.methods[0], evidence.seeds[0]).model_dump()
        test = f"test ≤ {config['max_test']} per task" if config["max_test"] else "whole test sets"
    parts += [f"model {config['model']}, head {config['head']}, {config['steps']} steps", test]
    parts.append(f"seeds {', '.join(str(s) for s in sorted(records) or evidence.seeds)}")
    return "; ".join(parts)


def measure(results: Path, claim: Claim) -> Measured:
    """The claim's number per seed from its records, the mean, its 95% interval, the verdict, and each seed's
    parts and learned tasks."""
    if claim.needs is not None and claim.evidence is None:
        return Measured({}, None, None, None, "needs " + claim.needs, "not testable in clgraft yet", "")
    records, skipped = seed_records(results, claim)
    setting = _setting(claim, records)
    if not records and claim.requires is not None:
        why = f"no records; on a machine with {claim.requires}: `clgraft claims run {claim.claim}`"
        return Measured({}, None, None, None, f"needs {claim.requires.split(':')[0]}", why, setting, skipped=skipped)
    if not records:
        why = f"no records; `clgraft claims run {claim.claim}`"
        return Measured({}, None, None, None, "not run", why, setting, skipped=skipped)
    statistic = STATISTICS[claim.evidence.statistic]
    read = {s: statistic.read(r, claim.evidence) for s, r in sorted(records.items())}
    values = {s: v.value for s, v in read.items() if v.value is not None}
    mean, low, high = confidence_interval(list(values.values())) if values else (None, None, None)
    reading = read_interval(claim.expect, low, high, len(values)) if values else NO_VALUE
    why = "" if claim.needs is None else f"partial: still needs {claim.needs}"
    parts = {s: v.parts for s, v in read.items()}
    learned = {s: learned_in(r) for s, r in sorted(records.items())}
    words = verdict_words(claim, reading)
    return Measured(values, mean, low, high, words, why, setting, parts, learned, skipped, records)


def run_claim(
    results: Path, claim: Claim, data_dir: Path | None, echo: Callable[[str], None], progress: bool = True
) -> None:
    """Make or reuse the claim's runs, then its localization and analysis, seed by seed (each step is skipped where
    its output is already there, so an interrupted call resumes)."""
    from clgraft.data.loading import data_dir_from
    from clgraft.data.registry import Registry
    from clgraft.runs.localize_run import localize_finished_run
    from clgraft.runs.runner import Runner

    if claim.evidence is None:
        raise ClgraftError(f"claim {claim.claim} cannot be run yet: it needs {claim.needs}")
    evidence, registry = claim.evidence, Registry.discover()
    if evidence.test_subset != TEST_SUBSET:
        echo(f"{claim.claim}: read from its records (made with the earlier random test subset); nothing to run")
        return
    for seed in evidence.seeds:
        for spec in [*evidence.methods, *evidence.control_methods.values()]:
            config = run_config(evidence, spec, seed)
            echo(f"{claim.claim}: {spec} seed {seed}")
            runner = Runner(
                config, registry, data_dir, root=claim_runs_dir(results, claim), progress=progress, echo=echo
            )
            runner.run()
            localize = evidence.localize is not None and not localize_rows(runner.dir, evidence)
            regions = [c for c in evidence.localize_controls if not localize_rows(runner.dir, evidence, c)]
            curve = [{**evidence.localize, "sparsity": x} for x in missing_curve(runner.dir, evidence)]
            unanalysed = evidence.analyze and not _analysed(runner.dir, evidence, REFERENCE in claim.controls)
            regraft = not localize and unanalysed and grafts_missing(runner.dir, evidence)
            first = localize and "scaled" not in regions and first_regions_missing(runner.dir, evidence)
            if localize or regions or curve or unanalysed:
                ensure_weights(runner, registry, data_dir, echo, progress)
            for region in regions:  # first: the disjoint search reads the scaled region
                options = {**evidence.localize, "method": region}
                localize_finished_run(runner.dir, registry, data_dir_from(data_dir), **options)
            if first:
                echo(f"{runner.dir.name}: the scaled grafts are not here; searching them again for the disjoint search")
                regraft_run(runner.dir, scaled_evidence(evidence), registry, data_dir_from(data_dir))
            if localize:
                localize_finished_run(runner.dir, registry, data_dir_from(data_dir), **evidence.localize)
            if regraft:
                echo(f"{runner.dir.name}: its grafts are not here; searching them again for the analysis")
                regraft_run(runner.dir, evidence, registry, data_dir_from(data_dir))
            for options in curve:
                localize_finished_run(runner.dir, registry, data_dir_from(data_dir), **options)
            if evidence.analyze:  # an analysis of grafts is made again after they are searched again
                again = localize and evidence.analyze == "overlap"
                _analyze(runner.dir, evidence, registry, data_dir, echo, again, REFERENCE in claim.controls)


def grafts_missing(run_dir: Path, evidence: Evidence) -> bool:
    """Whether the overlap analysis the evidence asks for lacks a graft file of its localize rows (graft files are
    not committed: a fresh clone has the rows and not the grafts)."""
    return evidence.analyze == "overlap" and _files_missing(run_dir, evidence)


def scaled_evidence(evidence: Evidence) -> Evidence:
    """The evidence whose localization is the scaled region that a `disjoint` claim's search excludes."""
    return evidence.model_copy(update={"localize": {**evidence.localize, "method": "scaled"}})


def first_regions_missing(run_dir: Path, evidence: Evidence) -> bool:
    """Whether a `disjoint` claim's search lacks the graft files of the scaled regions it excludes (their rows are
    committed, the files not: a fresh clone searches them again, checked against the rows, before it)."""
    return evidence.localize.get("method") == "disjoint" and _files_missing(run_dir, scaled_evidence(evidence))


def _files_missing(run_dir: Path, evidence: Evidence) -> bool:
    return any(not (run_dir / row["graft"]).is_file() for row in localize_rows(run_dir, evidence))


def regraft_run(run_dir: Path, evidence: Evidence, registry: Registry, data_dir: Path | None) -> None:
    """Search the claim's grafts again on the run's (remade) weights, keeping localize.json as it was unless every
    task's search ends as its row says (the kept step, the region's size, the grafted accuracy): the same weights
    give the same masks, so a difference means other code, data or rounding, and grafts that are not the record's."""
    from clgraft.runs.localize_run import localize_finished_run

    path = run_dir / "localize.json"
    before, old = path.read_bytes(), {row["task"]: row for row in localize_rows(run_dir, evidence)}
    new = localize_finished_run(run_dir, registry, data_dir, **evidence.localize)
    key = ("best_step", "k", "acc_grafted")
    if any(tuple(row[x] for x in key) != tuple(old[row["task"]][x] for x in key) for row in new):
        path.write_bytes(before)
        raise ClgraftError(
            f"{run_dir}: the grafts searched again do not end as localize.json's rows (other code, data or rounding); "
            "localize.json is kept as it was: move the folder aside to make the claim's runs anew"
        )


def at_sparsity(evidence: Evidence, sparsity: float) -> Evidence:
    """The evidence with its localization at another sparsity (a point of its curve)."""
    return evidence.model_copy(update={"localize": {**evidence.localize, "sparsity": sparsity}})


def missing_curve(run_dir: Path, evidence: Evidence) -> list[float]:
    """The sparsities of the evidence's curve that the run's localize.json has no rows at."""
    return [x for x in evidence.localize_curve if not localize_rows(run_dir, at_sparsity(evidence, x))]


def ensure_weights(
    runner: Runner, registry: Registry, data_dir: Path | None, echo: Callable[[str], None], progress: bool
) -> None:
    """Give a finished run back the weights (and trajectory checkpoints) its record was made with, where they are
    gone (results are committed without them): the same configuration is run again in a scratch folder beside it,
    and what it saved is moved in only if its R is the record's, entry for entry (a run is deterministic on one
    machine and software stack; a different R means other code, data or rounding, and weights that did not make the
    record's numbers)."""
    import shutil

    from clgraft.runs.runner import Runner

    if has_weights(runner.dir, read_json(runner.dir / "run.json")):
        return
    record = read_json(runner.dir / "run.json")
    scratch = runner.dir.parent / f".weights-{runner.dir.name}"
    echo(f"{runner.dir.name}: its weights (or checkpoints) are not here; running it again to make them")
    twin = Runner(runner.config, registry, data_dir, out=scratch, progress=progress, echo=lambda s: None).run()
    if twin["R"] != record["R"]:
        shutil.rmtree(scratch)
        raise ClgraftError(
            f"{runner.dir}: the run made again gives another R than its record (other code, data or rounding), so "
            "its weights would not be the record's; move the folder aside to make the claim's runs anew"
        )
    for part in ("weights", "trajectory"):
        if (scratch / part).is_dir():
            shutil.rmtree(runner.dir / part, ignore_errors=True)
            (scratch / part).rename(runner.dir / part)
    shutil.rmtree(scratch)


def has_weights(run_dir: Path, record: dict) -> bool:
    """Whether a finished run's folder holds what its analyses read: the weights after every task and, for a run
    that saved a trajectory, each task's checkpoints."""
    from clgraft.runs.runner import weights_path

    tasks, method = len(record["tasks"]), record["method"]["name"]
    if not all(weights_path(run_dir, method, t, tasks).is_file() for t in range(tasks)):
        return False
    if record["config"].get("trajectory", 0) > 0:
        return all(any((run_dir / "trajectory" / f"task-{t:02d}").glob("step-*")) for t in range(1, tasks + 1))
    return True


def _analyze(
    run_dir: Path,
    evidence: Evidence,
    registry,
    data_dir: Path | None,
    echo: Callable[[str], None],
    again: bool = False,
    reference: bool = False,
) -> None:
    from clgraft.analysis.run_files import open_run

    if _analysed(run_dir, evidence, reference) and not again:
        return
    run = open_run(run_dir, registry, data_dir, echo)
    if evidence.analyze == "overlap":
        from clgraft.analysis.overlap import analyze_overlap

        sparsity, method = float(evidence.localize["sparsity"]), evidence.localize.get("method", "scaled")
        analyze_overlap(run, sparsity, method, cross=evidence.cross_grafts)
    elif evidence.analyze == "subspace":
        from clgraft.analysis.subspace import analyze_subspace

        analyze_subspace(
            run,
            [evidence.run["trajectory"]],
            evidence.subspace_dims,
            run.select(None),
            0.05,
            controls=evidence.analysis_controls,
        )
    else:
        from clgraft.analysis.closeness import analyze_closeness

        analyze_closeness(run, run.select(None), evidence.critical_layers, evidence.analysis_controls)


REFERENCE = "closeness_rel_l2_control_reference"
"""Closeness's control: the only one its analysis makes without training, and the only one a claim reads from the
`reference` entries (the critical-layers claim, also with `analysis_controls`, does not ask for them)."""


def _analysed(run_dir: Path, evidence: Evidence, reference: bool) -> bool:
    """Whether the run's record holds the evidence's analysis with everything it asks for (`reference`: closeness's
    reference scale too)."""
    record = read_json(run_dir / "run.json")
    done = record.get("analysis", {}).get(analysis_key(evidence, evidence.analyze))
    return done is not None and analysis_complete(done, evidence, record, reference)


def analysis_complete(summary: dict, evidence: Evidence, record: dict, reference: bool = False) -> bool:
    """Whether the analysis summary of a run's record holds what the evidence asks of it for every task of the run
    (an analysis stopped midway lacks the last ones): the critical-layers comparison at k, every subspace dimension
    asked, the controls where asked, closeness's reference scale where the claim reads it (`reference`: REFERENCE
    among its controls), subspace bases of today's precision, and the overlap analysis's cross grafts where
    asked."""
    if not covers_tasks(summary, record, evidence.analyze):
        return False
    if evidence.analyze == "overlap":
        return not evidence.cross_grafts or "cross_grafts" in summary
    tasks = [task for _, task in summary_tasks(summary)]
    if evidence.analyze == "closeness":
        return all(
            (not reference or "reference" in task)
            and (
                not evidence.critical_layers
                or (
                    task.get("critical_layers", {}).get("k") == evidence.critical_layers
                    and (not evidence.analysis_controls or "controls" in task["critical_layers"])
                )
            )
            for task in tasks
        )
    if evidence.analyze == "subspace" and evidence.subspace_dims:
        from clgraft.analysis.subspace import current_section  # a section with older, float32 bases is done again

        wanted = {str(d) for d in evidence.subspace_dims}
        sections = [current_section(task) for task in tasks]
        return all(
            wanted <= set(section.get("by_d", {})) and (not evidence.analysis_controls or "controls" in section)
            for section in sections
        )
    return True


@dataclass
class ControlMeasured:
    """A control beside a claim: its value per seed, mean and interval, and the paired difference claim − control
    over the seeds both have (mean, interval)."""

    name: str
    values: dict[int, float]
    mean: float | None
    low: float | None
    high: float | None
    difference: tuple[float, float, float] | None


@dataclass
class CurvePoint:
    """The claim's statistic at one sparsity: its value per seed, mean and 95% interval."""

    sparsity: float
    values: dict[int, float]
    mean: float | None
    low: float | None
    high: float | None


def measure_curve(claim: Claim, measured: Measured) -> list[CurvePoint]:
    """The claim's statistic at its own sparsity and every sparsity of its curve, ascending, read from the records
    `measure` read the claim's number from and pooled the same way."""
    evidence, records = claim.evidence, measured.records
    if evidence is None or not evidence.localize_curve:
        return []
    statistic, out = STATISTICS[evidence.statistic], []
    for sparsity in sorted({*evidence.localize_curve, float(evidence.localize["sparsity"])}):
        at = at_sparsity(evidence, sparsity)
        read = {s: statistic.read(r, at).value for s, r in sorted(records.items())}
        values = {s: v for s, v in read.items() if v is not None}
        out.append(
            CurvePoint(sparsity, values, *(confidence_interval(list(values.values())) if values else [None] * 3))
        )
    return out


def control_evidence(evidence: Evidence, control: str) -> Evidence:
    """A pair claim's evidence with a control method (`control_methods`) in place of its second method."""
    return evidence.model_copy(update={"methods": [evidence.methods[0], evidence.control_methods[control]]})


def measure_controls(results: Path, claim: Claim, measured: Measured) -> list[ControlMeasured]:
    """Each of the claim's controls read from the records `measure` read the claim's number from (a control method's
    from its own), with the paired difference from the claim's number."""
    if not claim.controls:
        return []
    evidence, records = claim.evidence, measured.records
    out = []
    for control in claim.controls:
        if control in evidence.control_methods:
            out.append(_method_control(results, claim, control, records))
            continue
        read = {s: STATISTICS[control].read(r, evidence).value for s, r in sorted(records.items())}
        out.append(_control_measured(CONTROL_NAMES[control], read, measured.values))
    return out


def _method_control(results: Path, claim: Claim, control: str, records: dict) -> ControlMeasured:
    """A control method read with the claim's statistic in place of its second method. Both the control and the
    claim's number it is paired with read only the tasks all three runs learned, so that the first method's terms
    cancel in claim − control and the difference is the second method's against the control's alone."""
    evidence = claim.evidence
    own, statistic = control_evidence(evidence, control), STATISTICS[evidence.statistic]
    found, _ = seed_records(results, claim, own)
    read, claimed = {}, {}
    for seed in sorted(set(records) & set(found)):
        three = {**records[seed], **found[seed]}  # learned_in reads every run of the dict: tasks all three learned
        read[seed] = statistic.read(three, own).value
        claimed[seed] = statistic.read(three, evidence).value
    name = f"{evidence.control_methods[control]} in place of {evidence.methods[1]}"
    return _control_measured(name, read, {s: v for s, v in claimed.items() if v is not None})


def _control_measured(name: str, read: dict[int, float | None], claimed: dict[int, float]) -> ControlMeasured:
    """A control's values per seed (None: no value), mean, interval and paired difference claim − control over the
    seeds both have (`claimed`: the claim's value per seed)."""
    values = {s: v for s, v in read.items() if v is not None}
    mean, low, high = confidence_interval(list(values.values())) if values else (None, None, None)
    both = [s for s in values if s in claimed]
    difference = confidence_interval([claimed[s] - values[s] for s in both]) if len(both) >= 2 else None
    return ControlMeasured(name, values, mean, low, high, difference)
