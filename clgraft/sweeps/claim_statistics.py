"""What one seed's records say about a claim (docs/claims.md, "Statistics"): each task's part — a numerator and a
denominator — whether the fine-tune learned the task, and the seed's value pooled over the tasks that count.

A seed's value is Σ numerator / Σ denominator over its counted tasks. A ratio claim (recovered accuracy, the body's
gain) pools its parts, so that a task with a one-point gain weighs one point and not as much as a task with twenty; a
difference or a per-task mean has denominator 1, which makes the pool the plain mean. A task counts when the
fine-tune learned it (`learned_tasks`) and the claim's own rule keeps it (calibration: the graft keeps ≥ 95% of the
accuracy). One statistic, the overlap ρ, is one number over task pairs and has no parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Literal

from clgraft.io.records import read_json
from clgraft.metrics.chance import beats_chance
from clgraft.metrics.cl import forgetting_by_task

if TYPE_CHECKING:
    from clgraft.sweeps.claims import Evidence

Records = dict[str, tuple[dict, Path]]
"""One seed's records of a claim: method spec → (run.json, run directory)."""

NOT_LEARNED = "not learned"
CALIBRATION_KEEP = 0.95
"""Calibration is compared only where the graft keeps at least this share of θ_t's accuracy: a graft that lost the
skill is better calibrated the way a model at chance is, which says nothing of the skill's calibration."""


@dataclass(frozen=True)
class TaskPart:
    """One task's part of a seed's value; `left_out` says why it does not count (None when it does)."""

    task: str
    num: float
    den: float
    learned: bool
    left_out: str | None = None

    @property
    def value(self) -> float | None:
        """The task's own number, num / den (None where the denominator is not positive)."""
        return self.num / self.den if self.den > 0 else None


@dataclass(frozen=True)
class SeedValue:
    """A seed's value and the parts it pools (none for a statistic over the whole seed)."""

    value: float | None
    parts: list[TaskPart]


def pool(parts: list[TaskPart]) -> float | None:
    """Σ num / Σ den over the parts that count; None when none counts or the pooled denominator is not positive."""
    counted = [p for p in parts if p.left_out is None]
    den = sum(p.den for p in counted)
    return sum(p.num for p in counted) / den if counted and den > 0 else None


@dataclass(frozen=True)
class Statistic:
    """A number per seed from that seed's records: pooled from `parts`, or read `whole` (exactly one is given).
    `ratio` marks parts with real denominators, which the report prints beside each task's ratio."""

    needs: Literal["run", "pair", "localize", "overlap", "cross_grafts", "subspace", "closeness"]
    describe: str
    parts: Callable[[Records, Evidence], list[TaskPart]] | None = None
    whole: Callable[[Records, Evidence], float | None] | None = None
    ratio: bool = False
    localizer: str | None = None
    """The localize method whose rows a control reads instead of the claim's (another region of the same size)."""
    control_of: str | None = None
    """For a control: the statistic it is read beside (a claim lists it only under that statistic)."""

    def __post_init__(self) -> None:
        if (self.parts is None) == (self.whole is None):
            raise ValueError(f"statistic '{self.describe}': give `parts` or `whole`, one of them")

    def read(self, records: Records, evidence: Evidence) -> SeedValue:
        """The seed's value and its parts."""
        if self.whole is not None:
            return SeedValue(self.whole(records, evidence), [])
        parts = self.parts(records, evidence)
        return SeedValue(pool(parts), parts)


def trained_accuracy(record: dict, j: int) -> float | None:
    """Task j's test accuracy right after its training, R[j+1][j]; the final row's where that row was not evaluated
    (joint training has rows 0 and T only)."""
    R = record["R"]
    row = R[j + 1] if R[j + 1] is not None and R[j + 1][j] is not None else R[-1]
    return row[j]


def learned_tasks(record: dict) -> dict[str, bool]:
    """Task name → whether the run learned it: its accuracy right after training beats chance (1 / its number of
    labels) on its test set by the one-sided binomial test of clgraft.metrics.chance."""
    out = {}
    for j, task in enumerate(record["tasks"]):
        acc = trained_accuracy(record, j)
        out[task["name"]] = acc is not None and beats_chance(acc, task["test_size"], len(task["labels"]))
    return out


def learned_in(records: Records) -> dict[str, bool]:
    """Task name → learned in every method's record of the seed (a paired claim compares only tasks both learned)."""
    by_method = [learned_tasks(record) for record, _ in records.values()]
    return {task: all(m[task] for m in by_method) for task in by_method[0]}


def _part(task: str, num: float, den: float, learned: bool, other_rule: str | None = None) -> TaskPart:
    """A part, left out when not learned, else for `other_rule` (a claim's own reason) if given."""
    return TaskPart(task, num, den, learned, NOT_LEARNED if not learned else other_rule)


def localize_rows(run_dir: Path, evidence: Evidence, method: str | None = None) -> list[dict]:
    """The localize.json rows at the claim's sparsity and method (another `method` for a control's region; seed per
    task where the claim asks for it; rows from before localize.json said so were searched with one seed)."""
    path = run_dir / "localize.json"
    if not path.is_file():
        return []
    wanted = (
        float(evidence.localize["sparsity"]),
        method or evidence.localize.get("method", "scaled"),
        bool(evidence.localize.get("seed_per_task", False)),
    )
    rows = read_json(path)["results"]
    found = [r for r in rows if (float(r["sparsity"]), r["method"], r.get("seed_per_task", False)) == wanted]
    if wanted[1] == "disjoint":  # current only beside the scaled region it excluded, as that region is now
        first = {r["task"]: r for r in rows if (float(r["sparsity"]), r["method"]) == (wanted[0], "scaled")}
        found = [r for r in found if _excluded_current(r, first.get(r["task"]))]
    return found


def _excluded_current(row: dict, first: dict | None) -> bool:
    """Whether a disjoint row's `excluded` (what it recorded of the scaled row whose region it excluded) still
    matches that scaled row: a later scaled search that ended otherwise makes the disjoint region stale."""
    excluded = row.get("excluded")
    return first is not None and isinstance(excluded, dict) and all(first.get(k) == v for k, v in excluded.items())


def _graft_parts(
    formula: Callable[[dict], tuple[float, float] | None],
    rule: Callable[[dict], str | None] = lambda row: None,
    method: str | None = None,
) -> Callable[[Records, Evidence], list[TaskPart]]:
    """Parts from the localize.json rows of the seed's one run (of `method`'s region where given): `formula(row)` =
    (num, den), or None where the row lacks what it reads (a row from before localize recorded it: that task is then
    absent); `rule(row)` a reason to leave a learned task out."""

    def parts(records: Records, evidence: Evidence) -> list[TaskPart]:
        learned = learned_in(records)
        (_, run_dir), *_ = records.values()
        found = ((row, formula(row)) for row in localize_rows(run_dir, evidence, method))
        return [_part(row["task"], *numbers, learned[row["task"]], rule(row)) for row, numbers in found if numbers]

    return parts


def _keeps_accuracy(row: dict) -> str | None:
    """Calibration's rule: None where the graft keeps ≥ 95% of θ_t's accuracy, else the share it keeps."""
    kept = row["acc_grafted"] / row["acc_finetuned"] if row["acc_finetuned"] else 0.0
    return None if kept >= CALIBRATION_KEEP else f"graft keeps {kept:.0%}"


def _ood_parts(records: Records, evidence: Evidence) -> list[TaskPart]:
    """One part per (task, shifted test set): acc(θ̄) − acc(θ_t) there; learned is the training task's."""
    learned = learned_in(records)
    (_, run_dir), *_ = records.values()
    return [
        _part(f"{row['task']} → {name}", shift["acc_grafted"] - shift["acc_finetuned"], 1.0, learned[row["task"]])
        for row in localize_rows(run_dir, evidence)
        for name, shift in row.get("ood", {}).items()
    ]


def _forgetting_parts(records: Records, evidence: Evidence) -> list[TaskPart]:
    """One part per task but the last: its forgetting under the first method less under the second, from each
    record's R; a task counts when both runs learned it (a task never learned cannot be forgotten)."""
    learned = learned_in(records)
    (first, _), (second, _) = (records[m] for m in evidence.methods)
    names = [t["name"] for t in first["tasks"]]
    pairs = zip(forgetting_by_task(first["R"]), forgetting_by_task(second["R"]), strict=True)
    parts = [_part(name, a - b, 1.0, learned[name]) for name, (a, b) in zip(names[:-1], pairs, strict=True)]
    return [p for p in parts if math.isfinite(p.num)]


def analysis_key(evidence: Evidence, name: str) -> str:
    """The key under which an analysis merges its summary into run.json (overlap: one per sparsity)."""
    from clgraft.analysis.overlap import overlap_name

    if name != "overlap":
        return name
    return overlap_name(float(evidence.localize["sparsity"]), None)


def analysis_summary(records: Records, evidence: Evidence, name: str) -> dict | None:
    """The summary an analysis merged into run.json (docs/run-record.md), or None when it has not run — or, for an
    analysis made task by task, when it stopped before its last task (`covers_tasks`)."""
    (record, _), *_ = records.values()
    summary = record.get("analysis", {}).get(analysis_key(evidence, name))
    return summary if summary is not None and covers_tasks(summary, record, name) else None


def covers_tasks(summary: dict, record: dict, name: str) -> bool:
    """Whether the summary of analysis `name` covers its run: a per-task one (closeness, subspace) has an entry for
    every task of the run (subspace merges its summary after each task, so one stopped midway lacks the last ones);
    overlap is written whole."""
    if name == "overlap":
        return True
    return {task for task, _ in summary_tasks(summary)} >= {task["name"] for task in record["tasks"]}


def summary_tasks(summary: dict) -> Iterator[tuple[str, dict]]:
    """(task, entry) of an analysis summary, in its order (the other keys — details, cpu_s — are not tasks)."""
    return ((k, v) for k, v in summary.items() if k != "details" and isinstance(v, dict))


def _analysis_parts(
    name: str, formula: Callable[[dict], tuple[float, float] | None]
) -> Callable[[Records, Evidence], list[TaskPart]]:
    """Parts from an analysis summary's task entries: `formula(entry)` = (num, den), or None where the entry lacks
    what the statistic reads (that task is then absent)."""

    def parts(records: Records, evidence: Evidence) -> list[TaskPart]:
        summary = analysis_summary(records, evidence, name)
        if summary is None:
            return []
        learned = learned_in(records)
        found = ((task, formula(entry)) for task, entry in summary_tasks(summary))
        return [_part(task, *numbers, learned[task]) for task, numbers in found if numbers is not None]

    return parts


def _subspace_section(entry: dict) -> dict:
    """A task's intrinsic fine-tuning section with today's bases (`current_section`), so that a claim never pools
    seeds whose "d" meant different things; `claims run` makes older sections again."""
    from clgraft.analysis.subspace import current_section

    return current_section(entry)


def _largest_d_row(entry: dict) -> dict | None:
    """A task's intrinsic fine-tuning row at its largest d (None without one)."""
    by_d = _subspace_section(entry).get("by_d", {})
    return by_d[max(by_d, key=int)] if by_d else None


def _subspace_recovery(entry: dict) -> tuple[float, float] | None:
    row = _largest_d_row(entry)
    return None if row is None else (row["acc"], _subspace_section(entry)["full_acc"])


def _outlier_drop(entry: dict) -> tuple[float, float] | None:
    row = _largest_d_row(entry)
    if row is None or "outliers" not in row:
        return None
    return row["outliers"]["acc_zero_random"] - row["outliers"]["acc_zero_outliers"], 1.0


def _d90(entry: dict) -> tuple[float, float]:
    return float(max(entry["d90_centred"].items(), key=lambda kv: int(kv[0]))[1]), 1.0


def _rel_l2(entry: dict) -> tuple[float, float]:
    return fmean(entry["rel_l2_by_layer"].values()), 1.0


def _reference_rel_l2(entry: dict) -> tuple[float, float] | None:
    """The reference scale's relative L2 (to the other tasks' fine-tunes), mean over blocks; None without it."""
    reference = entry.get("reference")
    return None if reference is None else (fmean(reference["rel_l2_by_layer"].values()), 1.0)


def _critical_layers(entry: dict) -> tuple[float, float] | None:
    critical = entry.get("critical_layers")
    return None if critical is None else (critical["acc"], critical["full_acc"])


def _control(section: str, control: str) -> Callable[[dict], tuple[float, float] | None]:
    """A control's (accuracy, full fine-tuning's) from the `section` of a task's analysis summary (critical_layers
    or finetune_in_subspace), None without it."""

    def formula(entry: dict) -> tuple[float, float] | None:
        part = _subspace_section(entry) if section == "finetune_in_subspace" else entry.get(section, {})
        found = part.get("controls", {}).get(control)
        return None if found is None else (found["acc"], part["full_acc"])

    return formula


def _overlap_summary(records: Records, evidence: Evidence) -> dict | None:
    """The overlap analysis's summary, read only where the run's grafts are the claim's (its localize.json rows: the
    analysis compares whatever grafts of that sparsity the folder holds)."""
    (_, folder), *_ = records.values()
    summary = analysis_summary(records, evidence, "overlap")
    return summary if summary is not None and localize_rows(folder, evidence) else None


def _overlap_reader(read: Callable[[dict], float]) -> Callable[[Records, Evidence], float | None]:
    """A whole-seed statistic read from the overlap summary by `read` (None without the claim's analysis)."""

    def whole(records: Records, evidence: Evidence) -> float | None:
        summary = _overlap_summary(records, evidence)
        return None if summary is None else read(summary)

    return whole


def _cross_parts(
    formula: Callable[[dict], tuple[float, float] | None],
) -> Callable[[Records, Evidence], list[TaskPart]]:
    """Parts from the cross grafts of the overlap analysis (clgraft/analysis/cross_grafts.py), one per task j:
    `formula(entry)` = (num, den) from task j's summary entry, or None where it lacks what it reads (a task with no
    other task of its type has no same-type mean: that task is then absent)."""

    def parts(records: Records, evidence: Evidence) -> list[TaskPart]:
        summary = _overlap_summary(records, evidence)
        if summary is None or "cross_grafts" not in summary:
            return []
        learned = learned_in(records)
        found = ((task, formula(entry)) for task, entry in summary["cross_grafts"]["tasks"].items())
        return [_part(task, *numbers, learned[task]) for task, numbers in found if numbers is not None]

    return parts


def _difference(first: str, second: str) -> Callable[[dict], tuple[float, float] | None]:
    """Task j's accuracy under one graft less another's (keys of its cross-graft entry); None where either is
    missing (a mean over no task of that type)."""
    return lambda entry: None if None in (entry[first], entry[second]) else (entry[first] - entry[second], 1.0)


def _of_joint(key: str) -> Callable[[dict], tuple[float, float]]:
    """A whole-model graft's accuracy on task j (union, random_union, base) over the joint model's."""
    return lambda entry: (entry[key], entry["full"])


POOLED = "pooled over the learned tasks (Σ numerator / Σ denominator)"

UNION_CONTROLS = (
    ("random", "random_union", "a random region of the union's size", "a random region of the union's size"),
    ("base", "base", "θ₀ with the joint model's heads (no region)", "θ₀ with the heads (no region)"),
)
"""The union graft's controls: (control, its key in a task's cross-graft entry, what it grafts, the report's name)."""

CONTROL_TABLE = (
    ("closeness", "bottom", "only the k blocks that moved least", "the k least-moved blocks"),
    ("closeness", "random", "only k blocks drawn at random", "k random blocks"),
    ("closeness", "head_only", "only the head (no block)", "the head alone"),
    ("subspace", "random", "only in a random subspace of the largest d", "a random subspace of the same d"),
    ("subspace", "other_task", "only in the next task's subspace of the largest d", "the next task's subspace"),
    ("subspace", "head_only", "in no subspace (d = 0: the head alone)", "d = 0 (the head alone)"),
)
"""The analyses' controls (--controls): (analysis, control, what its fine-tune trains, the report's name)."""
_PREFIX = {"closeness": "critical_layers_control_", "subspace": "subspace_control_"}


def _control_statistic(analysis: str, control: str, what: str) -> Statistic:
    """A control's statistic: its fine-tune's test accuracy over full fine-tuning's, pooled like the claim's."""
    formula = _control("critical_layers" if analysis == "closeness" else "finetune_in_subspace", control)
    return Statistic(
        analysis,
        f"test accuracy of fine-tuning {what} over full fine-tuning's, {POOLED}",
        _analysis_parts(analysis, formula),
        ratio=True,
        control_of="critical_layers_of_full" if analysis == "closeness" else "subspace_recovery",
    )


MEAN = "mean over the learned tasks"


def _recovered(row: dict) -> tuple[float, float]:
    return row["acc_grafted"], row["acc_finetuned"]


def _body_gain(row: dict) -> tuple[float, float]:
    return row["acc_grafted"] - row["acc_base"], row["acc_finetuned"] - row["acc_base"]


def _share(key: str) -> Callable[[dict], tuple[float, float] | None]:
    """A share read from a localize row as (share, 1): `agreement` (the graft's with θ_t's predictions) or
    `agreement_base` (θ₀ with θ_t's head); None in a row from before localize recorded it."""
    return lambda row: (row[key], 1.0) if key in row else None


GRAFT_STATISTICS = {
    "recovered": (_recovered, f"acc(θ̄)/acc(θ_t), {POOLED}", True),
    "body_gain_recovered": (_body_gain, f"(acc θ̄ − acc θ₀+head)/(acc θ_t − acc θ₀+head), {POOLED}", True),
    "agreement": (_share("agreement"), f"share of the test examples on which θ̄ predicts θ_t's label, {MEAN}", False),
}
"""The graft statistics a region control reads too: name → (formula, description, ratio)."""


def _graft_statistic(name: str, note: str = "") -> Statistic:
    """A graft statistic of GRAFT_STATISTICS, read from the claim's own localize rows."""
    formula, describe, ratio = GRAFT_STATISTICS[name]
    return Statistic("localize", describe + note, _graft_parts(formula), ratio=ratio)


REGION_TABLE = (
    ("top-tau", "the top-⌊sN⌋ entries of |τ| (γ_base, the search's start)", "the top-|τ| region (no search)"),
    ("random", "⌊sN⌋ entries drawn uniformly", "a random region of the same size"),
    ("bias", "the bias entries of largest |τ|", "the bias entries (BitFit's region)"),
    ("scaled", "the searched region", "the searched region (the first)"),
)
"""The localization controls (`localize --method`; Evidence.localize_controls): (method, its region, the report's
name). Each is grafted at the claim's sparsity from the same θ_t: the first three searched for nothing, the last the
search's own region, beside a claim on another one (`disjoint`, the search with that region excluded)."""


def _region_statistic(claimed: str, region: str, what: str) -> Statistic:
    """A graft statistic read from the rows of a control region instead of the searched one."""
    formula, describe, ratio = GRAFT_STATISTICS[claimed]
    return Statistic(
        "localize",
        f"{describe}, θ̄ grafting {what}",
        _graft_parts(formula, method=region),
        ratio=ratio,
        localizer=region,
        control_of=claimed,
    )


STATISTICS: dict[str, Statistic] = {
    "recovered": _graft_statistic("recovered", ": the paper's ratio (a trained head inflates it)"),
    "body_gain_recovered": _graft_statistic("body_gain_recovered"),
    "agreement": _graft_statistic("agreement"),
    "agreement_control_head": Statistic(
        "localize",
        f"share of the test examples on which θ₀ with θ_t's head predicts θ_t's label, {MEAN}",
        _graft_parts(_share("agreement_base")),
        control_of="agreement",
    ),
    "ece_reduction": Statistic(
        "localize",
        f"1 − ECE(θ̄)/ECE(θ_t), {POOLED} where the graft keeps ≥ {CALIBRATION_KEEP:.0%} of θ_t's accuracy",
        _graft_parts(lambda r: (r["ece_finetuned"] - r["ece_grafted"], r["ece_finetuned"]), _keeps_accuracy),
        ratio=True,
    ),
    "ood_gain": Statistic(
        "localize",
        "acc(θ̄) − acc(θ_t) on the tasks' out-of-distribution test sets (task YAML `ood`), mean over the (task, shift) "
        "pairs of the learned tasks",
        _ood_parts,
    ),
    "forgetting_difference": Statistic(
        "pair",
        "forgetting of the first method − forgetting of the second (accuracy as a fraction), per task from each "
        "run's R, mean over the tasks both runs learned (the last task has no forgetting)",
        _forgetting_parts,
    ),
    "overlap_same_type_rho": Statistic(
        "overlap",
        "Spearman ρ of region Jaccard with same task type, over all task pairs (one number per seed: the learned-task "
        "rule does not apply)",
        whole=_overlap_reader(lambda summary: summary["correlations_with_jaccard"]["same_type"]["rho"]),
    ),
    "overlap_mean": Statistic(
        "overlap",
        "mean over task pairs i ≠ j of the share of task j's region inside task i's, O(i→j) = |γ_i ∧ γ_j| / |γ_j| "
        "(one number per seed: the learned-task rule does not apply)",
        whole=_overlap_reader(lambda summary: summary["mean_overlap"]),
    ),
    "overlap_mean_control_random": Statistic(
        "overlap",
        "the same for random regions of the same sizes: its expectation, O(i→j) = |γ_i| / N",
        whole=_overlap_reader(lambda summary: summary["mean_null_overlap"]),
        control_of="overlap_mean",
    ),
    "graft_specificity": Statistic(
        "cross_grafts",
        "acc on task j of θ₀ + γ_j⊙τ (its own region) − the mean acc there of θ₀ + γ_i⊙τ over the regions i of tasks "
        f"of another type, all read through task j's head of the one joint model, {MEAN} j",
        _cross_parts(_difference("own", "other_type")),
    ),
    "graft_specificity_control_random": Statistic(
        "cross_grafts",
        "the same with a random region of task j's size in place of its own (claim − control: own region − random "
        "region on task j)",
        _cross_parts(_difference("random_own", "other_type")),
        control_of="graft_specificity",
    ),
    "graft_similarity": Statistic(
        "cross_grafts",
        "mean acc on task j of the other regions of task j's type − mean acc there of the regions of another type, "
        f"read through task j's head of the one joint model, {MEAN} j that have a task of their type",
        _cross_parts(_difference("same_type", "other_type")),
    ),
    "union_recovered": Statistic(
        "cross_grafts",
        f"acc(θ₀ + (γ_1 ∨ … ∨ γ_T)⊙τ) / acc(θ_joint) on each task through its head, {POOLED}",
        _cross_parts(_of_joint("union")),
        ratio=True,
    ),
    **{
        f"union_recovered_control_{control}": Statistic(
            "cross_grafts",
            f"the same for {what}",
            _cross_parts(_of_joint(key)),
            ratio=True,
            control_of="union_recovered",
        )
        for control, key, what, _ in UNION_CONTROLS
    },
    "subspace_d90": Statistic(
        "subspace",
        "d90 of the centred trajectory (as DLDR's PCA, which Zhang et al. build on) at the largest t, mean over the "
        "learned tasks (at most t − 1, so only a threshold below t tests anything)",
        _analysis_parts("subspace", _d90),
    ),
    "subspace_recovery": Statistic(
        "subspace",
        "accuracy of fine-tuning only in the d-dimensional subspace (largest d; basis from the first half of the "
        f"trajectory) over full fine-tuning's, {POOLED}",
        _analysis_parts("subspace", _subspace_recovery),
        ratio=True,
    ),
    "subspace_outlier_drop": Statistic(
        "subspace",
        "accuracy lost by zeroing the outlier coordinates (≥ 3σ of their tensor) of the subspace-trained update beyond "
        f"what zeroing as many random ones loses, acc(−random) − acc(−outliers) at the largest d, {MEAN}",
        _analysis_parts("subspace", _outlier_drop),
    ),
    "closeness_rel_l2": Statistic(
        "closeness",
        f"‖θ_t − θ_start‖₂/‖θ_start‖₂, mean over blocks, then {MEAN}",
        _analysis_parts("closeness", _rel_l2),
    ),
    "critical_layers_of_full": Statistic(
        "closeness",
        "test accuracy of fine-tuning only the k blocks that moved most (relative L2) over full fine-tuning's, "
        f"{POOLED}",
        _analysis_parts("closeness", _critical_layers),
        ratio=True,
    ),
    **{_PREFIX[a] + control: _control_statistic(a, control, what) for a, control, what, _ in CONTROL_TABLE},
    "closeness_rel_l2_control_reference": Statistic(
        "closeness",
        "‖θ_t − θ_u‖₂/‖θ₀‖₂ between task t's fine-tune and each other task's (every task from θ₀), mean over the "
        f"other tasks and the blocks, then {MEAN}: the distance between two solutions, as a scale for closeness",
        _analysis_parts("closeness", _reference_rel_l2),
        control_of="closeness_rel_l2",
    ),
    **{
        f"{claimed}_control_{region}": _region_statistic(claimed, region, what)
        for claimed in GRAFT_STATISTICS
        for region, what, _ in REGION_TABLE
    },
}
CONTROL_NAMES = {
    **{_PREFIX[a] + control: name for a, control, _, name in CONTROL_TABLE},
    **{f"{claimed}_control_{region}": name for claimed in GRAFT_STATISTICS for region, _, name in REGION_TABLE},
    "agreement_control_head": "θ₀ with θ_t's head (no graft)",
    "closeness_rel_l2_control_reference": "two tasks' fine-tunes (the reference scale)",
    "overlap_mean_control_random": "random regions of the same sizes (expected)",
    "graft_specificity_control_random": "a random region of the task's size in place of its own",
    **{f"union_recovered_control_{control}": name for control, _, _, name in UNION_CONTROLS},
}
"""How the report names each control statistic (Claim.controls)."""
