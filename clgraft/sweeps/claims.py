"""The seed papers' claims as data (`tasks/claims/*.yaml`): what a paper claims and where, the runs that test it, the
number each seed's records give, and a verdict from the mean and its 95% confidence interval over seeds.

A claim's records live in `RESULTS/claims/CLAIM/runs/` (run.json, localize.json, analysis/*.json); `clgraft claims
run` makes or reuses them, `clgraft claims report` recomputes every number from them and writes RESULTS/CLAIMS.md.
The verdict compares the interval with the paper's expectation (docs/claims.md): *reproduced* when the whole
interval is on the expected side, *not reproduced* when the whole interval is on the other side, *inconclusive*
when it straddles the threshold or fewer than 3 seeds are in; *not run* without records, and *needs …* where the
claim asks for something clgraft cannot do yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clgraft.config import TEST_SUBSET, RunConfig
from clgraft.data.registry import builtin_tasks_dir
from clgraft.errors import ClgraftError, validation_message
from clgraft.io.records import read_json
from clgraft.metrics.seeds import confidence_interval
from clgraft.results.run_records import Skipped, read_records, readable_record, skipped_note
from clgraft.runs.identity import identity, record_identity

MIN_SEEDS = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(_Strict):
    """The paper's number or direction: the measured value should be `op` `value`."""

    op: Literal[">", ">=", "<", "<="] = Field(
        description="> or < where the paper claims a strict effect (better, degrades, ρ > 0): an interval that only "
        "touches the value, as a measured zero does, does not reproduce it"
    )
    value: float
    text: str = Field(description="the expectation as the paper states it, e.g. '> 95% of fine-tuned accuracy'")


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
    statistic: str = Field(description="what a seed's records give (STATISTICS in clgraft/sweeps/claims.py)")
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
        if needs in ("overlap", "subspace", "closeness") and self.analyze != needs:
            raise ValueError(f"statistic '{self.statistic}' reads the {needs} analysis: set `analyze: {needs}`")
        if self.analyze == "overlap" and not self.localize:
            raise ValueError("the overlap analysis compares grafts: give `localize` (their sparsity)")
        if self.analyze == "subspace" and self.run.get("trajectory", 0) < 2:
            raise ValueError("the subspace analysis reads checkpoints: set `run: {trajectory: N}` with N ≥ 2")
        if self.statistic == "critical_layers_of_full" and not self.critical_layers:
            raise ValueError("statistic 'critical_layers_of_full' needs `critical_layers: k`")
        if needs == "pair" and len(self.methods) != 2:
            raise ValueError(f"statistic '{self.statistic}' compares two methods: list two")
        return self


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
    setting_note: str = Field(default="", description="why this setting, where it departs from the paper's")
    origin: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _testable(self) -> Claim:
        if self.evidence is None and self.needs is None:
            raise ValueError("give `evidence` (the runs that test the claim) or `needs` (why it cannot be run yet)")
        return self


@dataclass(frozen=True)
class Statistic:
    """A number per seed from that seed's records: `read(records)` with records = {method: (run.json, run dir)}."""

    needs: Literal["run", "pair", "localize", "overlap", "subspace", "closeness"]
    describe: str
    read: Callable[[dict[str, tuple[dict, Path]], Evidence], float | None]


def _localize_rows(run_dir: Path, evidence: Evidence) -> list[dict]:
    path = run_dir / "localize.json"
    if not path.is_file():
        return []
    wanted = float(evidence.localize["sparsity"]), evidence.localize.get("method", "scaled")
    return [r for r in read_json(path)["results"] if (float(r["sparsity"]), r["method"]) == wanted]


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _per_task(formula: Callable[[dict], float | None]) -> Callable[[dict, Evidence], float | None]:
    def read(records: dict, evidence: Evidence) -> float | None:
        (_, run_dir), *_ = records.values()
        return _mean([formula(r) for r in _localize_rows(run_dir, evidence)])

    return read


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _analysis_key(evidence: Evidence, name: str) -> str:
    """The key under which an analysis merges its summary into run.json (overlap: one per sparsity)."""
    from clgraft.analysis.overlap import overlap_name

    if name != "overlap":
        return name
    return overlap_name(float(evidence.localize["sparsity"]), None)


def _analysis(records: dict, evidence: Evidence, name: str) -> dict | None:
    """The summary an analysis merged into run.json (docs/run-record.md), or None when it has not run."""
    (record, _), *_ = records.values()
    return record.get("analysis", {}).get(_analysis_key(evidence, name))


def _tasks_of(summary: dict) -> list[dict]:
    return [v for k, v in summary.items() if k != "details" and isinstance(v, dict)]


def _overlap_rho(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "overlap")
    return None if summary is None else summary["correlations_with_jaccard"]["same_type"]["rho"]


def _subspace_d90(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "subspace")
    if summary is None:
        return None
    centred = [task["d90_centred"] for task in _tasks_of(summary)]
    return _mean([max(d90.items(), key=lambda kv: int(kv[0]))[1] for d90 in centred])


def _largest_d_rows(summary: dict) -> list[dict]:
    """Each task's intrinsic fine-tuning row at its largest d (tasks without one are left out)."""
    rows = []
    for task in _tasks_of(summary):
        by_d = task.get("finetune_in_subspace", {}).get("by_d", {})
        if by_d:
            rows.append(by_d[max(by_d, key=int)])
    return rows


def _subspace_recovery(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "subspace")
    return None if summary is None else _mean([row["of_full"] for row in _largest_d_rows(summary)])


def _subspace_outlier_drop(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "subspace")
    if summary is None:
        return None
    ablations = [row["outliers"] for row in _largest_d_rows(summary) if "outliers" in row]
    return _mean([o["acc_zero_random"] - o["acc_zero_outliers"] for o in ablations])


def _closeness_rel_l2(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "closeness")
    if summary is None:
        return None
    return _mean([_mean(list(task["rel_l2_by_layer"].values())) for task in _tasks_of(summary)])


def _critical_layers_of_full(records: dict, evidence: Evidence) -> float | None:
    summary = _analysis(records, evidence, "closeness")
    if summary is None:
        return None
    return _mean([task.get("critical_layers", {}).get("of_full") for task in _tasks_of(summary)])


def _forgetting_difference(records: dict, evidence: Evidence) -> float | None:
    first, second = (records[m][0]["metrics"]["forgetting"] for m in evidence.methods)
    return None if first is None or second is None else first - second


STATISTICS: dict[str, Statistic] = {
    "recovered": Statistic(
        "localize",
        "acc(θ̄)/acc(θ_t), mean over tasks (the paper's ratio; inflated by a trained head)",
        _per_task(lambda r: r["recovered"]),
    ),
    "body_gain_recovered": Statistic(
        "localize",
        "(acc θ̄ − acc θ₀+head)/(acc θ_t − acc θ₀+head), mean over tasks whose body gained",
        _per_task(lambda r: _ratio(r["acc_grafted"] - r["acc_base"], r["acc_finetuned"] - r["acc_base"])),
    ),
    "ece_reduction": Statistic(
        "localize",
        "1 − ECE(θ̄)/ECE(θ_t), mean over tasks",
        _per_task(lambda r: None if not r["ece_finetuned"] else 1 - r["ece_grafted"] / r["ece_finetuned"]),
    ),
    "ood_gain": Statistic(
        "localize",
        "acc(θ̄) − acc(θ_t) on the tasks' out-of-distribution test sets (task YAML `ood`), mean over (task, shift)",
        lambda records, evidence: _mean(
            [
                shift["acc_grafted"] - shift["acc_finetuned"]
                for row in _localize_rows(next(iter(records.values()))[1], evidence)
                for shift in row.get("ood", {}).values()
            ]
        ),
    ),
    "forgetting_difference": Statistic(
        "pair",
        "forgetting of the first method − forgetting of the second (accuracy as a fraction)",
        _forgetting_difference,
    ),
    "overlap_same_type_rho": Statistic(
        "overlap", "Spearman ρ of region Jaccard with same task type, over task pairs", _overlap_rho
    ),
    "subspace_d90": Statistic(
        "subspace",
        "d90 of the centred trajectory (as DLDR's PCA, which Zhang et al. build on) at the largest t, mean over tasks "
        "(at most t − 1, so only a threshold below t tests anything)",
        _subspace_d90,
    ),
    "subspace_recovery": Statistic(
        "subspace",
        "accuracy of fine-tuning only in the d-dimensional subspace (largest d; basis from the first half of the "
        "trajectory) as a share of full fine-tuning, mean over tasks",
        _subspace_recovery,
    ),
    "subspace_outlier_drop": Statistic(
        "subspace",
        "accuracy lost by zeroing the outlier coordinates (≥ 3σ of their tensor) of the subspace-trained update beyond "
        "what zeroing as many random ones loses, acc(−random) − acc(−outliers) at the largest d, mean over tasks",
        _subspace_outlier_drop,
    ),
    "closeness_rel_l2": Statistic(
        "closeness", "‖θ_t − θ_start‖₂/‖θ_start‖₂, mean over blocks and tasks", _closeness_rel_l2
    ),
    "critical_layers_of_full": Statistic(
        "closeness",
        "test accuracy of fine-tuning only the k blocks that moved most (relative L2) over full fine-tuning's, mean "
        "over tasks",
        _critical_layers_of_full,
    ),
}


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


def _config(evidence: Evidence, method: str, seed: int) -> RunConfig:
    """The RunConfig of this method spec (NAME[:KEY=VALUE...]) and seed in the claim's setting."""
    from clgraft.methods import parse_method_spec

    name, options = parse_method_spec(method)
    return RunConfig(stream=evidence.stream, method=name, method_options=options, seed=seed, **evidence.run)


def _matches(record: dict, evidence: Evidence, method: str, seed: int) -> bool:
    """Whether a record is the run of this method spec and seed in the claim's setting: the same configuration
    exactly (config.identity), not one whose options or settings merely contain the claim's."""
    return record_identity(record) == identity(_config(evidence, method, seed), evidence.test_subset)


def seed_records(results: Path, claim: Claim) -> tuple[dict[int, dict[str, tuple[dict, Path]]], list[Skipped]]:
    """The finished records of each seed of the claim, by method (seeds missing a method are left out), and the
    records of its folder skipped as unreadable (not JSON, a newer format: clgraft/results/run_records.py), with
    why."""
    evidence = claim.evidence
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
    """A claim's number over seeds and its verdict."""

    values: dict[int, float]
    mean: float | None
    low: float | None
    high: float | None
    verdict: str
    why: str
    setting: str
    skipped: list[Skipped] = field(default_factory=list)
    """Records in the claim's folder left out as unreadable, with why."""


def verdict(claim: Claim, low: float, high: float, n: int) -> tuple[str, str]:
    """(verdict, why) from the 95% interval and the paper's expectation."""
    op, value = claim.expect.op, claim.expect.value
    if n < MIN_SEEDS:
        return "inconclusive", f"{n} of the {MIN_SEEDS} seeds needed have records"
    agrees, disagrees = {
        ">": (low > value, high <= value),
        ">=": (low >= value, high < value),
        "<": (high < value, low >= value),
        "<=": (high <= value, low > value),
    }[op]
    interval = f"95% CI [{low:.3g}, {high:.3g}]"
    if agrees:
        return "reproduced", f"the whole {interval} is {op} {value:g}"
    if disagrees:
        return "not reproduced", f"the whole {interval} is on the other side of {value:g}"
    return "inconclusive", f"the {interval} contains {value:g}"


def _setting(claim: Claim, records: dict[int, dict[str, tuple[dict, Path]]]) -> str:
    evidence = claim.evidence
    parts = [f"{evidence.stream}, {' vs '.join(evidence.methods)}"]
    if records:
        record = next(iter(next(iter(records.values())).values()))[0]
        config, tests = record["config"], [t["test_size"] for t in record["tasks"]]
        test = f"test {min(tests)}{f'–{max(tests)}' if max(tests) > min(tests) else ''} per task"
    else:  # what `claims run` would make
        config = _config(evidence, evidence.methods[0], evidence.seeds[0]).model_dump()
        test = f"test ≤ {config['max_test']} per task" if config["max_test"] else "whole test sets"
    parts += [f"model {config['model']}, head {config['head']}, {config['steps']} steps", test]
    parts.append(f"seeds {', '.join(str(s) for s in sorted(records) or evidence.seeds)}")
    return "; ".join(parts)


def measure(results: Path, claim: Claim) -> Measured:
    """The claim's number per seed from its records, the mean, its 95% interval and the verdict."""
    if claim.needs is not None and claim.evidence is None:
        return Measured({}, None, None, None, "needs " + claim.needs, "not testable in clgraft yet", "")
    records, skipped = seed_records(results, claim)
    return replace(_measured(claim, records), skipped=skipped)


def _measured(claim: Claim, records: dict[int, dict[str, tuple[dict, Path]]]) -> Measured:
    """measure() from the claim's records by seed."""
    statistic = STATISTICS[claim.evidence.statistic]
    values = {s: v for s, r in sorted(records.items()) if (v := statistic.read(r, claim.evidence)) is not None}
    setting = _setting(claim, records)
    if not values and claim.requires is not None:
        why = f"no records; on a machine with {claim.requires}: `clgraft claims run {claim.claim}`"
        return Measured({}, None, None, None, f"needs {claim.requires.split(':')[0]}", why, setting)
    if not values:
        return Measured({}, None, None, None, "not run", f"no records; `clgraft claims run {claim.claim}`", setting)
    mean, low, high = confidence_interval(list(values.values()))
    name, why = verdict(claim, low, high, len(values))
    if claim.needs is not None:
        name, why = f"{name} (partial)", f"{why}; still needs {claim.needs}"
    return Measured(values, mean, low, high, name, why, setting)


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
        for spec in evidence.methods:
            config = _config(evidence, spec, seed)
            echo(f"{claim.claim}: {spec} seed {seed}")
            runner = Runner(
                config, registry, data_dir, root=claim_runs_dir(results, claim), progress=progress, echo=echo
            )
            runner.run()
            if evidence.localize and not _localize_rows(runner.dir, evidence):
                localize_finished_run(runner.dir, registry, data_dir_from(data_dir), **evidence.localize)
            if evidence.analyze:
                _analyze(runner.dir, evidence, registry, data_dir, echo)


def _analyze(run_dir: Path, evidence: Evidence, registry, data_dir: Path | None, echo: Callable[[str], None]) -> None:
    from clgraft.analysis.run_files import open_run

    done = read_json(run_dir / "run.json").get("analysis", {}).get(_analysis_key(evidence, evidence.analyze))
    if done is not None and (not evidence.critical_layers or _has_critical_layers(done, evidence.critical_layers)):
        return
    run = open_run(run_dir, registry, data_dir, echo)
    if evidence.analyze == "overlap":
        from clgraft.analysis.overlap import analyze_overlap

        analyze_overlap(run, float(evidence.localize["sparsity"]), evidence.localize.get("method", "scaled"))
    elif evidence.analyze == "subspace":
        from clgraft.analysis.subspace import analyze_subspace

        analyze_subspace(run, [evidence.run["trajectory"]], evidence.subspace_dims, run.select(None), 0.05)
    else:
        from clgraft.analysis.closeness import analyze_closeness

        analyze_closeness(run, run.select(None), evidence.critical_layers)


def _has_critical_layers(summary: dict, k: int) -> bool:
    """Whether a closeness summary holds the critical-layers comparison at k for every task."""
    return all(task.get("critical_layers", {}).get("k") == k for task in _tasks_of(summary))


def _measured_text(m: Measured) -> str:
    """The mean and its interval as the report prints them; one seed has no interval and says so."""
    if m.mean is None:
        return "–"
    if len(m.values) < 2:
        return f"{m.mean:.3g} (n = 1, no interval)"
    return f"{m.mean:.3g} [{m.low:.3g}, {m.high:.3g}]"


def _skipped_lines(measured: list[tuple[Claim, Measured]]) -> list[str]:
    """The report's line on records skipped as unreadable (each once, though claims share folders), if any."""
    skipped = list({str(s.path): s for _, m in measured for s in m.skipped}.values())
    return [f"**{skipped_note(skipped)}**", ""] if skipped else []


def report(results: Path, claims: list[Claim]) -> str:
    """RESULTS/CLAIMS.md: a summary table, then per claim its statement, setting, values per seed and verdict."""
    measured = [(c, measure(results, c)) for c in claims]
    lines = [
        "# Claims of the seed papers, measured",
        "",
        "Regenerated by `clgraft claims report` from the records under `claims/*/runs/` (docs/claims.md). Measured:",
        "mean over seeds [95% Student-t interval]. A verdict needs the whole interval on one side of the paper's",
        "threshold and at least 3 seeds.",
        "",
        *_skipped_lines(measured),
        "| claim | paper | expected | measured | n | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c, m in measured:
        lines.append(
            f"| [{c.claim}](#{c.claim}) | {c.paper}, {c.where} | {c.expect.text} | {_measured_text(m)} | "
            f"{len(m.values)} | {m.verdict} |"
        )
    for c, m in measured:
        lines += ["", f"## {c.claim}", "", f"**{c.paper}, {c.where}:** {c.statement}", ""]
        lines.append(f"- expected: {c.expect.text} (tested as measured {c.expect.op} {c.expect.value:g})")
        if c.evidence is not None:
            lines.append(f"- statistic: {STATISTICS[c.evidence.statistic].describe}")
            lines.append(f"- setting: {m.setting}")
        if m.values:
            lines.append("- per seed: " + ", ".join(f"{s}: {v:.4g}" for s, v in m.values.items()))
        lines.append(f"- verdict: **{m.verdict}** — {m.why}")
        if c.setting_note:
            lines.append(f"- note: {c.setting_note}")
    return "\n".join(lines) + "\n"
