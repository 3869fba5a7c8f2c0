"""The claims registry: the shipped claims are valid, and the report recomputes every number from the records."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import clgraft.training.loop
from clgraft.config import RunConfig
from clgraft.data.references import bib_entries
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.io.records import read_json
from clgraft.methods import parse_method_spec
from clgraft.metrics.chance import beats_chance
from clgraft.metrics.seeds import confidence_interval
from clgraft.sweeps.claim_report import report
from clgraft.sweeps.claim_statistics import STATISTICS, learned_tasks, localize_rows, pool
from clgraft.sweeps.claims import Claim, claim_runs_dir, load_claims, measure, run_claim, seed_records


def test_shipped_claims_are_valid_cite_known_papers_and_name_real_streams():
    claims = load_claims()
    assert len(claims) >= 7
    registry, papers = Registry.discover(), bib_entries()
    for c in claims:
        assert c.paper in papers, c.claim
        if c.evidence is not None:
            registry.stream(c.evidence.stream)
            for spec in c.evidence.methods:
                parse_method_spec(spec)
            assert len(c.evidence.seeds) >= 3
        if c.expect.op in (">", "<") and c.expect.value == 0:  # an effect claim states its smallest effect of interest
            assert c.expect.sesoi is not None and c.expect.sesoi.why, c.claim


def test_shipped_claims_in_one_setting_share_one_runs_folder(tmp_path):
    """Claims whose runs would be the same configurations read and make them in one folder, so that `claims run`
    trains each setting once (four claims read the grafting setting, three the full fine-tuning one)."""
    folders: dict[str, set] = {}
    for c in load_claims():
        if c.evidence is not None and c.evidence.test_subset is not None:
            e = c.evidence
            setting = json.dumps([e.stream, e.methods, e.seeds, e.run], sort_keys=True)
            folders.setdefault(setting, set()).add(claim_runs_dir(tmp_path, c))
    assert folders and all(len(f) == 1 for f in folders.values()), folders


def _claim(
    statistic: str, methods: list[str], expect: tuple[str, float], claim: dict | None = None, **evidence
) -> Claim:
    """A claim in the paper's setting, testing `statistic` on the tiny stream; `claim` adds or replaces top-level keys
    (departures, quantity, expect with a sesoi)."""
    return Claim.model_validate(
        {
            "claim": "test-claim",
            "version": 1,
            "paper": "panigrahi2023grafting",
            "where": "Abstract",
            "statement": "a statement",
            "expect": {"op": expect[0], "value": expect[1], "text": "as the paper says"},
            "evidence": {"stream": "tiny", "methods": methods, "seeds": [1, 2, 3], "statistic": statistic, **evidence},
            **(claim or {}),
        }
    )


GRAFT = {"run": {"steps": 5}, "localize": {"sparsity": 0.01, "method": "scaled"}}
"""Evidence of a claim read from localize.json at s = 0.01."""


def _write_localize(run_dir: Path, rows: list[dict]) -> None:
    """localize.json with rows at the claim's sparsity and method: each row's task, accuracies and ECEs."""
    full = [
        {"method": "scaled", "sparsity": 0.01, "ece_finetuned": 0.2, "ece_grafted": 0.1, "ood": {}, **r} for r in rows
    ]
    (run_dir / "localize.json").write_text(json.dumps({"run_config_hash": "x", "results": full}))


def _graft_seeds(tmp_path, claim: Claim, rows: dict[int, list[dict]], trained: tuple[float, ...]) -> None:
    """For each seed, an independent run whose tasks were learned to `trained` and its localize.json rows."""
    for seed, seed_rows in rows.items():
        _write_localize(
            _write_run(claim_runs_dir(tmp_path, claim), "independent", seed, 0.0, trained=trained), seed_rows
        )


def _write_run(
    folder,
    method: str,
    seed: int,
    forgetting: float,
    steps: int = 5,
    options: dict | None = None,
    tag: str = "",
    trained: tuple[float, ...] = (0.9, 0.9),
    **run,
) -> Path:
    """A run.json of this configuration: one two-class task of 100 test examples per entry of `trained` (its accuracy
    right after training), the first task forgetting `forgetting` by the end, the others nothing."""
    config = RunConfig(stream="tiny", method=method, method_options=options or {}, seed=seed, steps=steps, **run)
    T = len(trained)
    R = [[None, *[0.5] * (T - 1)]]
    R += [[*trained[:i], *[None] * (T - i)] for i in range(1, T)]
    R.append([trained[0] - forgetting, *trained[1:]])
    record = {
        "stream": {"name": "tiny"},
        "method": {"name": method, "options": options or {}},
        "seed": seed,
        "config": config.model_dump(),
        "tasks": [{"name": name, "test_size": 100, "labels": ["0", "1"]} for name in "abcdefgh"[:T]],
        "R": R,
    }
    (folder / f"{method}-{seed}{tag}").mkdir(parents=True)
    (folder / f"{method}-{seed}{tag}" / "run.json").write_text(json.dumps(record))
    return folder / f"{method}-{seed}{tag}"


def test_report_recomputes_mean_interval_and_verdict_from_records(tmp_path):
    claim = _claim("forgetting_difference", ["naive", "graft-freeze"], (">=", 0.0), run={"steps": 5})
    runs = claim_runs_dir(tmp_path, claim)
    naive, frozen = {1: 0.20, 2: 0.15, 3: 0.25}, {1: 0.01, 2: 0.02, 3: 0.00}
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, naive[seed])
        _write_run(runs, "graft-freeze", seed, frozen[seed])
    _write_run(runs, "naive", 9, 0.9)  # a seed the claim does not list
    _write_run(runs / "other", "naive", 1, 0.9, steps=7)  # another setting: not read
    diffs = [naive[s] - frozen[s] for s in (1, 2, 3)]
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({1: 0.19, 2: 0.13, 3: 0.25})
    low, high = stats.t.interval(0.95, 2, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    assert (m.mean, m.low, m.high) == pytest.approx((sum(diffs) / 3, low, high))
    assert m.verdict == f"reproduced (95% CI [{low:.3g}, {high:.3g}] ≥ 0)"  # the paper's setting: no departures

    other_way = _claim("forgetting_difference", ["naive", "graft-freeze"], ("<=", 0.0), run={"steps": 5})
    assert measure(tmp_path, other_way).verdict.startswith("not reproduced (95% CI")
    straddles = _claim("forgetting_difference", ["naive", "graft-freeze"], (">=", 0.19), run={"steps": 5})
    assert measure(tmp_path, straddles).verdict.startswith("inconclusive (95% CI")

    (runs / "graft-freeze-3" / "run.json").unlink()
    verdict = "inconclusive (2 of the 3 seeds needed have records)"
    assert measure(tmp_path, claim).verdict == verdict  # two seeds are not enough
    text = report(tmp_path, [claim])
    assert f"| 2 | {verdict} |" in text and "2: 0.13" in text and "test 100 per task" in text

    (runs / "graft-freeze-2" / "run.json").unlink()
    text = report(tmp_path, [claim])
    assert "0.19 (n = 1, no interval) | 1 | inconclusive" in text and "nan" not in text


def test_outlier_claim_reads_the_ablation_at_the_largest_d_against_random_coordinates(tmp_path):
    """subspace_outlier_drop = mean over tasks of acc(−random) − acc(−outliers) at the largest d of the subspace
    analysis; tasks without the ablation do not count."""
    claim = _claim(
        "subspace_outlier_drop", ["independent"], (">", 0.0), run={"steps": 5, "trajectory": 4}, analyze="subspace"
    )
    runs = claim_runs_dir(tmp_path, claim)
    ablations = {1: [(0.50, 0.80), (0.70, 0.75)], 2: [(0.60, 0.80), (0.65, 0.70)], 3: [(0.40, 0.70), (0.80, 0.79)]}
    for seed, pairs in ablations.items():
        _write_run(runs, "independent", seed, 0.0, steps=5, trajectory=4, trained=(0.9, 0.9, 0.9))
        path = runs / f"independent-{seed}" / "run.json"
        record = json.loads(path.read_text())
        tasks = {
            "abc"[i]: {
                "finetune_in_subspace": {
                    "basis_gram": "float64",
                    "by_d": {
                        "2": {"acc": 0.1, "outliers": {"acc_zero_outliers": 0.0, "acc_zero_random": 1.0}},
                        "10": {"acc": 0.5, "outliers": {"acc_zero_outliers": out, "acc_zero_random": rnd}},
                    },
                }
            }
            for i, (out, rnd) in enumerate(pairs)
        }
        tasks["c"] = {"finetune_in_subspace": {"basis_gram": "float64", "by_d": {"10": {"acc": 0.5}}}}  # no ablation
        record["analysis"] = {"subspace": {**tasks, "details": {"t": 4}}}
        path.write_text(json.dumps(record))
    m = measure(tmp_path, claim)
    expected = {s: sum(r - o for o, r in pairs) / len(pairs) for s, pairs in ablations.items()}
    assert m.values == pytest.approx(expected)
    assert (m.mean, m.low, m.high) == pytest.approx(confidence_interval(list(expected.values())))
    assert m.verdict.startswith("reproduced")  # 0.175, 0.125, 0.145: the interval is above 0

    # zeroing the outliers costs exactly what zeroing as many random coordinates costs
    no_effect = {1: [(0.5, 0.5)] * 2, 2: [(0.6, 0.6)] * 2, 3: [(0.4, 0.4)] * 2}
    for seed, pairs in no_effect.items():
        path = runs / f"independent-{seed}" / "run.json"
        record = json.loads(path.read_text())
        for task, (out, rnd) in zip(list(record["analysis"]["subspace"].values())[:2], pairs, strict=True):
            task["finetune_in_subspace"]["by_d"]["10"]["outliers"] = {"acc_zero_outliers": out, "acc_zero_random": rnd}
        path.write_text(json.dumps(record))
    m = measure(tmp_path, claim)
    assert m.values == {1: 0.0, 2: 0.0, 3: 0.0} and m.verdict.startswith("not reproduced")  # 0 is not > 0
    touching = _claim(
        "subspace_outlier_drop", ["independent"], (">=", 0.0), run={"steps": 5, "trajectory": 4}, analyze="subspace"
    )
    assert measure(tmp_path, touching).verdict.startswith("reproduced")  # while 0 is ≥ 0

    # a seed whose sections predate the float64 bases (no basis_gram) gives no value: its d meant fewer directions
    path = runs / "independent-3" / "run.json"
    record = json.loads(path.read_text())
    for task in record["analysis"]["subspace"].values():
        if isinstance(task, dict):
            task.get("finetune_in_subspace", {}).pop("basis_gram", None)
    path.write_text(json.dumps(record))
    assert measure(tmp_path, touching).values == {1: 0.0, 2: 0.0}

    # a seed whose analysis stopped before its last task (it writes after each one) gives no value either: its
    # number would read the first tasks only
    path = runs / "independent-2" / "run.json"
    record = json.loads(path.read_text())
    del record["analysis"]["subspace"]["c"]
    path.write_text(json.dumps(record))
    assert measure(tmp_path, touching).values == {1: 0.0}


DEPARTURES = [
    {"what": "model", "paper": "RoBERTa-base", "here": "MiniLM"},
    {"what": "optimizer", "paper": "SGD", "here": "AdamW"},
]


def test_departures_give_the_setting_column_and_say_the_paper_setting_was_not_tested(tmp_path):
    """A claim with departures is "not tested in the paper's setting (… in this one: …)" whatever its interval; in the
    paper's setting the same numbers are reproduced / not reproduced; clgraft's own quantity is a clgraft finding."""
    rows = {
        s: [{"task": "a", "acc_grafted": g, "acc_finetuned": 0.9, "acc_base": 0.5}]
        for s, g in [(1, 0.88), (2, 0.89), (3, 0.9)]
    }
    paper = _claim("recovered", ["independent"], (">", 0.95), **GRAFT)
    _graft_seeds(tmp_path, paper, rows, trained=(0.9, 0.9))
    m = measure(tmp_path, paper)
    interval = f"95% CI [{m.low:.3g}, {m.high:.3g}]"
    assert m.low > 0.95 and m.verdict == f"reproduced ({interval} > 0.95)"

    departs = _claim("recovered", ["independent"], (">", 0.95), {"departures": DEPARTURES}, **GRAFT)
    assert (
        measure(tmp_path, departs).verdict
        == f"not tested in the paper's setting (holds in this one: {interval} > 0.95)"
    )
    failing = _claim("recovered", ["independent"], (">", 1.1), {"departures": DEPARTURES}, **GRAFT)
    assert measure(tmp_path, failing).verdict.startswith("not tested in the paper's setting (fails in this one: 95% CI")
    own = _claim("recovered", ["independent"], (">", 0.95), {"departures": DEPARTURES, "quantity": "clgraft"}, **GRAFT)
    assert measure(tmp_path, own).verdict == f"clgraft finding: holds in this setting ({interval} > 0.95)"

    text = report(tmp_path, [paper, departs])
    table = [line for line in text.splitlines() if line.startswith("| [test-claim]")]
    assert "| paper's setting |" in table[0] and "| departs: model, optimizer |" in table[1]
    assert "  - optimizer: paper — SGD; here — AdamW" in text

    with pytest.raises(ValueError, match="departure 'model' is listed twice"):
        _claim("recovered", ["independent"], (">", 0.95), {"departures": DEPARTURES[:1] * 2}, **GRAFT)
    with pytest.raises(ValueError, match="what"):
        _claim(
            "recovered",
            ["independent"],
            (">", 0.95),
            {"departures": [{"what": "mood", "paper": "a", "here": "b"}]},
            **GRAFT,
        )


def test_a_task_is_learned_when_its_accuracy_beats_chance_by_a_one_sided_binomial_test():
    assert not beats_chance(0.58, 100, 2) and beats_chance(0.59, 100, 2)  # p = 0.067 and 0.044 against 1/2
    assert not beats_chance(0.23, 100, 6) and beats_chance(0.24, 100, 6)  # against 1/6
    assert not beats_chance(0.40, 100, 2)  # one-sided: below chance is not learned either


def test_tasks_the_fine_tune_did_not_learn_are_left_out_and_listed_per_seed(tmp_path):
    """Task b stays at chance after training (0.5 of 100 examples): its ratio does not count, and the report says so
    seed by seed, with the task's number struck out in its row."""
    claim = _claim("recovered", ["independent"], (">", 0.95), **GRAFT)
    rows = {
        s: [
            {"task": "a", "acc_grafted": 0.8, "acc_finetuned": 0.9, "acc_base": 0.5},
            {"task": "b", "acc_grafted": 0.5, "acc_finetuned": 0.5, "acc_base": 0.5},
        ]
        for s in (1, 2, 3)
    }
    _graft_seeds(tmp_path, claim, rows, trained=(0.9, 0.5))
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({1: 0.8 / 0.9, 2: 0.8 / 0.9, 3: 0.8 / 0.9})  # b's ratio of 1 would lift it
    assert [(p.task, p.learned, p.left_out) for p in m.parts[1]] == [("a", True, None), ("b", False, "not learned")]
    text = report(tmp_path, [claim])
    assert "- left out: 1: b (not learned); 2: b (not learned); 3: b (not learned)" in text
    assert "| b | ~~1 (0.5/0.5)~~ not learned |" in text and "| a | 0.889 (0.8/0.9) |" in text


def test_ratios_are_pooled_over_tasks_not_averaged(tmp_path):
    """The body's gain: task a gains 1 point and keeps it all (ratio 1), task b gains 20 and keeps none (ratio 0).
    The mean of the ratios says 0.5; pooled, 1 point of 21 is kept."""
    claim = _claim("body_gain_recovered", ["independent"], (">", 0.95), **GRAFT)
    rows = {
        s: [
            {"task": "a", "acc_grafted": 0.71, "acc_finetuned": 0.71, "acc_base": 0.70},
            {"task": "b", "acc_grafted": 0.70, "acc_finetuned": 0.90, "acc_base": 0.70},
        ]
        for s in (1, 2, 3)
    }
    _graft_seeds(tmp_path, claim, rows, trained=(0.71, 0.9))
    m = measure(tmp_path, claim)
    assert [p.value for p in m.parts[1]] == pytest.approx([1.0, 0.0])
    assert m.values == pytest.approx({s: 0.01 / 0.21 for s in (1, 2, 3)})


def test_calibration_is_compared_only_where_the_graft_keeps_95_percent_of_the_accuracy(tmp_path):
    claim = _claim("ece_reduction", ["independent"], (">=", 0.4), **GRAFT)
    rows = {
        s: [
            {"task": "a", "acc_grafted": 0.87, "acc_finetuned": 0.9, "acc_base": 0.5, "ece_grafted": 0.05},
            {"task": "b", "acc_grafted": 0.6, "acc_finetuned": 0.9, "acc_base": 0.5, "ece_grafted": 0.01},
        ]
        for s in (1, 2, 3)
    }
    _graft_seeds(tmp_path, claim, rows, trained=(0.9, 0.9))
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({s: 1 - 0.05 / 0.2 for s in (1, 2, 3)})  # b's graft lost a third of the skill
    assert m.parts[1][1].left_out == "graft keeps 67%"


def test_forgetting_is_compared_on_the_tasks_both_runs_learned(tmp_path):
    """Per task from each run's R: task a is learned by both and forgotten 0.3 by naive, 0.1 by graft-freeze; task b
    (not the last, so it has a forgetting) graft-freeze never learned, so its nothing-to-forget does not count."""
    claim = _claim("forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), run={"steps": 5})
    runs = claim_runs_dir(tmp_path, claim)
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, 0.3, trained=(0.9, 0.9, 0.9))
        _write_run(runs, "graft-freeze", seed, 0.1, trained=(0.9, 0.5, 0.9))
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({1: 0.2, 2: 0.2, 3: 0.2})
    assert [(p.task, p.left_out) for p in m.parts[1]] == [("a", None), ("b", "not learned")]


def test_an_interval_inside_the_smallest_effect_of_interest_is_a_verdict_of_no_effect(tmp_path):
    """An effect claim with a smallest effect of interest X: both ends of the interval inside ±X is "no effect larger
    than X"; a wider interval stays inconclusive; a margin belongs to effect claims (> or <) only."""
    runs = claim_runs_dir(
        tmp_path, _claim("forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), run={"steps": 5})
    )
    for seed, f in zip((1, 2, 3), (0.002, -0.003, 0.001), strict=True):
        _write_run(runs, "naive", seed, 0.2 + f)
        _write_run(runs, "graft-freeze", seed, 0.2)

    def with_margin(margin: float) -> Claim:
        sesoi = {"margin": margin, "why": "a point"}
        expect = {"op": ">", "value": 0.0, "text": "less forgetting", "sesoi": sesoi}
        return _claim(
            "forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), {"expect": expect}, run={"steps": 5}
        )

    m = measure(tmp_path, with_margin(0.01))
    assert m.verdict == f"no effect larger than 0.01 (95% CI [{m.low:.3g}, {m.high:.3g}] inside 0 ± 0.01)"
    assert measure(tmp_path, with_margin(0.001)).verdict.startswith("inconclusive (95% CI")
    with pytest.raises(ValueError, match="effect claim"):
        _claim(
            "forgetting_difference",
            ["naive", "graft-freeze"],
            (">=", 0.0),
            {"expect": {"op": ">=", "value": 0, "text": "t", "sesoi": {"margin": 0.01, "why": "w"}}},
            run={"steps": 5},
        )
    assert "- smallest effect of interest: ±0.01 — a point" in report(tmp_path, [with_margin(0.01)])


def test_the_report_says_how_many_verdicts_were_read_at_95_percent_and_that_none_is_corrected(tmp_path):
    claim = _claim("forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), run={"steps": 5})
    runs = claim_runs_dir(tmp_path, claim)
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, 0.2 + seed / 100)
        _write_run(runs, "graft-freeze", seed, 0.0)
    text = report(tmp_path, [claim, _claim("forgetting_difference", ["naive", "ewc"], (">", 0.0), run={"steps": 5})])
    assert "Verdicts read from a 95% interval: 1, with no multiplicity correction." in text
    assert "about 0.1 of them would still come out decided by chance" in text


def test_a_record_with_other_options_or_settings_is_not_the_claims_run(tmp_path):
    """Only a record of the claim's exact configuration counts: not one whose options or settings merely contain
    the claim's."""
    claim = _claim("forgetting_difference", ["ewc", "naive"], (">=", 0.0), run={"steps": 5})
    runs = claim_runs_dir(tmp_path, claim)
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, 0.2)
    _write_run(runs, "ewc", 1, 0.1, options={"ewc_lambda": 10})
    _write_run(runs, "ewc", 2, 0.1, head="shared")
    _write_run(runs, "ewc", 3, 0.1)
    assert measure(tmp_path, claim).values == pytest.approx({3: -0.1})  # ewc − naive


def test_a_claim_can_read_records_of_the_earlier_random_test_subset(tmp_path):
    """`test_subset: null` reads capped records made before subsets were stratified (they carry no test_subset) and
    not stratified ones; `claims run` cannot make such records, and says so instead of running."""
    claim = _claim(
        "forgetting_difference",
        ["naive", "graft-freeze"],
        (">=", 0.0),
        run={"steps": 5, "max_test": 50},
        test_subset=None,
    )
    runs = claim_runs_dir(tmp_path, claim)
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, 0.2, max_test=50)
        _write_run(runs, "graft-freeze", seed, 0.05, max_test=50)
    stratified = runs / "graft-freeze-3" / "run.json"
    record = json.loads(stratified.read_text())
    stratified.write_text(json.dumps({**record, "test_subset": "stratified"}))
    assert measure(tmp_path, claim).values == pytest.approx({1: 0.15, 2: 0.15})
    said = []
    run_claim(tmp_path, claim, None, said.append)
    assert said == ["test-claim: read from its records (made with the earlier random test subset); nothing to run"]


def test_claims_that_need_a_missing_feature_say_so(tmp_path):
    needs = Claim.model_validate(
        {
            "claim": "later",
            "version": 1,
            "paper": "panigrahi2023grafting",
            "where": "Abstract",
            "statement": "s",
            "expect": {"op": ">=", "value": 0, "text": "t"},
            "needs": "a feature",
        }
    )
    assert measure(tmp_path, needs).verdict == "needs a feature"
    with pytest.raises(ClgraftError, match="needs a feature"):
        run_claim(tmp_path, needs, None, print)
    with pytest.raises(ValueError, match="give `localize`"):
        _claim("recovered", ["independent"], (">=", 0.95))


def test_interval_of_identical_values_is_a_point_and_one_seed_has_none():
    assert confidence_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, low, high = confidence_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)


def test_claims_run_makes_runs_and_localizations_then_reuses_them(tiny_model_dir, tmp_path, monkeypatch):
    claim = _claim(
        "recovered",
        ["independent"],
        (">=", 0.5),
        run={"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"},
        localize={"sparsity": 0.05, "method": "scaled", "steps": 1},
    )
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    first = measure(tmp_path, claim)
    for seed, records in seed_records(tmp_path, claim)[0].items():
        ((record, run_dir),) = records.values()
        rows = read_json(run_dir / "localize.json")["results"]
        assert [(p.task, p.num, p.den) for p in first.parts[seed]] == [
            (r["task"], r["acc_grafted"], r["acc_finetuned"]) for r in rows
        ]
        assert first.values.get(seed) == pool(first.parts[seed])  # a tiny model may learn nothing: then no value
        assert all(r["cpu_s"] > 0 for r in rows)  # localize records its CPU time, row by row

    calls = []
    monkeypatch.setattr(clgraft.training.loop, "train_task", lambda *a, **k: calls.append(1))
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)  # everything is there: nothing trains
    again = measure(tmp_path, claim)
    assert not calls and (again.values, again.parts) == (first.values, first.parts)


def test_cli_lists_and_reports(invoke, tmp_path):
    assert "grafting-recovery" in invoke("claims", "list")
    out = invoke("claims", "report", "grafting-ood", "grafting-multitask-regions", "--results", tmp_path)
    assert "| 0 | not run |" in out and (tmp_path / "CLAIMS.md").is_file()
    with pytest.raises(ClgraftError, match="unknown claim 'nope'"):
        invoke("claims", "report", "nope", "--results", tmp_path)


def test_critical_layers_claim_reruns_closeness_with_k_and_reads_its_share_of_full(tiny_model_dir, tmp_path):
    run = {"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"}
    plain = _claim("closeness_rel_l2", ["independent"], ("<=", 0.1), run=run, analyze="closeness")
    run_claim(tmp_path, plain, None, lambda s: None, progress=False)
    critical = _claim(
        "critical_layers_of_full",
        ["independent"],
        (">=", 0.95),
        run=run,
        analyze="closeness",
        critical_layers=1,
        records=str(claim_runs_dir(tmp_path, plain).relative_to(tmp_path)),
    )
    assert all(
        STATISTICS["critical_layers_of_full"].read(r, critical.evidence).value is None
        for r in seed_records(tmp_path, critical)[0].values()
    )
    run_claim(tmp_path, critical, None, lambda s: None, progress=False)  # closeness again, now with k = 1
    measured = measure(tmp_path, critical)
    for seed, records in seed_records(tmp_path, critical)[0].items():
        ((record, run_dir),) = records.values()
        summary = record["analysis"]["closeness"]
        tasks = [t for t in summary.values() if isinstance(t, dict)]
        parts = [(p.num, p.den) for p in measured.parts[seed]]
        assert parts == [(t["critical_layers"]["acc"], t["critical_layers"]["full_acc"]) for t in tasks]
        assert measured.values.get(seed) == pool(measured.parts[seed])  # pooled over the learned tasks
        assert all(t["critical_layers"]["k"] == 1 for t in tasks)
        details = read_json(run_dir / summary["details"])
        assert summary["cpu_s"] > 0 and details["cpu_s"] == summary["cpu_s"]  # analyze records its CPU time
    assert all(measure(tmp_path, plain).parts.values())  # the plain closeness claim still reads the same runs
    with pytest.raises(ValueError, match="needs `critical_layers: k`"):
        _claim("critical_layers_of_full", ["independent"], (">=", 0.95), analyze="closeness")


def test_critical_layer_controls_are_run_and_reported_beside_the_claim(tiny_model_dir, tmp_path):
    """A claim with `analysis_controls` reruns closeness where the controls are missing; each control's number is
    read from the same records, pooled as the claim's statistic, and the report puts it beside the claim's with the
    paired difference claim − control over the seeds."""
    from clgraft.metrics.seeds import confidence_interval
    from clgraft.sweeps.claim_report import report
    from clgraft.sweeps.claims import measure_controls

    run = {"model": str(tiny_model_dir), "steps": 60, "lr": 3e-3, "batch_size": 4, "max_length": 32}
    evidence = dict(run={**run, "evaluate": "final"}, analyze="closeness", critical_layers=1)
    names = ["critical_layers_control_bottom", "critical_layers_control_random", "critical_layers_control_head_only"]
    without = _claim("critical_layers_of_full", ["independent"], (">=", 0.95), **evidence)
    run_claim(tmp_path, without, None, lambda s: None, progress=False)
    claim = _claim(
        "critical_layers_of_full",
        ["independent"],
        (">=", 0.95),
        claim={"controls": names},
        **evidence,
        analysis_controls=True,
    )
    assert "the k least-moved blocks: not run" in report(tmp_path, [claim])
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)  # closeness again, with the controls
    measured = measure(tmp_path, claim)
    controls = measure_controls(tmp_path, claim, measured)
    assert [c.name for c in controls] == ["the k least-moved blocks", "k random blocks", "the head alone"]
    for name, control in zip(names, controls, strict=True):
        for seed, records in seed_records(tmp_path, claim)[0].items():
            ((record, _),) = records.values()
            tasks = [t for t in record["analysis"]["closeness"].values() if isinstance(t, dict)]
            learned = [p.left_out is None for p in measured.parts[seed]]
            num = sum(
                t["critical_layers"]["controls"][name.rsplit("_control_")[1]]["acc"]
                for t, k in zip(tasks, learned, strict=True)
                if k
            )
            den = sum(t["critical_layers"]["full_acc"] for t, k in zip(tasks, learned, strict=True) if k)
            assert control.values.get(seed) == pytest.approx(num / den) if den else seed not in control.values
        both = [s for s in control.values if s in measured.values]
        paired = [measured.values[s] - control.values[s] for s in both]
        assert control.difference == (pytest.approx(confidence_interval(paired)) if len(both) >= 2 else None)
    text = report(tmp_path, [claim])
    assert "- controls (the same statistic" in text and "the head alone: " in text and "claim − control " in text
    with pytest.raises(ValueError, match="control 'nope'"):
        _claim("critical_layers_of_full", ["independent"], (">=", 0.95), claim={"controls": ["nope"]}, **evidence)
    with pytest.raises(ValueError, match="set `analysis_controls: true`"):
        _claim("critical_layers_of_full", ["independent"], (">=", 0.95), claim={"controls": names[:1]}, **evidence)


def test_closeness_reference_is_read_beside_closeness_and_keeps_the_critical_layers(
    tiny_model_dir, tmp_path, monkeypatch
):
    """Closeness's control is the distance between two tasks' fine-tunes: asked by a closeness claim with
    `analysis_controls`, it is added to runs whose analysis lacks it without dropping the critical-layers
    fine-tunes an earlier analysis made, and read per seed as the mean over the learned tasks of the mean over
    blocks of the reference's relative L2."""
    from statistics import fmean

    from clgraft.sweeps.claims import measure_controls

    run = {"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"}
    critical = _claim(
        "critical_layers_of_full", ["independent"], (">=", 0.95), run=run, analyze="closeness", critical_layers=1
    )
    run_claim(tmp_path, critical, None, lambda s: None, progress=False)
    name = "closeness_rel_l2_control_reference"
    plain = dict(run=run, analyze="closeness", records=str(claim_runs_dir(tmp_path, critical).relative_to(tmp_path)))
    claim = _claim(
        "closeness_rel_l2", ["independent"], ("<=", 0.1), claim={"controls": [name]}, analysis_controls=True, **plain
    )
    said = []
    run_claim(tmp_path, claim, None, said.append, progress=False)
    assert not any("trained: acc" in s for s in said)  # the critical fine-tunes are kept, not trained again
    # 3 steps learn no tiny task; count every task, so that each seed's value is the formula's over all of them
    monkeypatch.setattr(
        "clgraft.sweeps.claim_statistics.learned_in", lambda records: dict.fromkeys(learned_tasks(_one(records)), True)
    )
    measured = measure(tmp_path, claim)
    (control,) = measure_controls(tmp_path, claim, measured)
    assert control.name == "two tasks' fine-tunes (the reference scale)"
    for seed, records in seed_records(tmp_path, claim)[0].items():
        ((record, _),) = records.values()
        tasks = [t for t in record["analysis"]["closeness"].values() if isinstance(t, dict)]
        assert all(t["critical_layers"]["k"] == 1 for t in tasks)
        learned = [p.left_out is None for p in measured.parts[seed]]
        values = [fmean(t["reference"]["rel_l2_by_layer"].values()) for t, k in zip(tasks, learned, strict=True) if k]
        assert len(values) == 3 and control.values[seed] == pytest.approx(fmean(values))
    with pytest.raises(ValueError, match="set `analysis_controls: true`"):
        _claim("closeness_rel_l2", ["independent"], ("<=", 0.1), claim={"controls": [name]}, **plain)


def test_region_overlap_claim_reads_the_mean_overlap_beside_random_regions(tiny_model_dir, tmp_path):
    """overlap_mean is the mean over task pairs i ≠ j of O(i→j) of the seed's overlap analysis, and its control the
    same mean of the random-mask null (each task's region size over N), restated from the analysis's matrices."""
    from clgraft.sweeps.claims import measure_controls

    run = {"model": str(tiny_model_dir), "steps": 5, "batch_size": 4, "max_length": 32}
    claim = _claim(
        "overlap_mean",
        ["independent"],
        ("<=", 0.1),
        claim={"controls": ["overlap_mean_control_random"]},
        run=run,
        localize={"sparsity": 0.05, "method": "scaled", "steps": 1},
        analyze="overlap",
    )
    claim = claim.model_copy(update={"evidence": claim.evidence.model_copy(update={"seeds": [1]})})
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    (folder,) = [p.parent for p in claim_runs_dir(tmp_path, claim).glob("*/run.json")]
    payload = json.loads((folder / "analysis" / "overlap-s0.05.json").read_text())
    overlap, null = np.array(payload["overlap"]), np.array(payload["null_overlap"])
    off = ~np.eye(len(overlap), dtype=bool)
    measured = measure(tmp_path, claim)
    assert measured.values[1] == pytest.approx(overlap[off].mean())
    (control,) = measure_controls(tmp_path, claim, measured)
    assert control.values[1] == pytest.approx(null[off].mean()) and control.difference is None  # one seed
    assert null[off].mean() == pytest.approx(0.05, rel=0.01)  # regions of ⌊sN⌋ entries: s of each other, by chance
    with pytest.raises(ValueError, match="read beside 'overlap_mean', not 'overlap_same_type_rho'"):
        _claim(
            "overlap_same_type_rho",
            ["independent"],
            (">", 0.0),
            claim={"controls": ["overlap_mean_control_random"]},
            localize={"sparsity": 0.05},
            analyze="overlap",
        )


def test_a_claim_that_requires_a_hub_model_or_gpu_says_so_with_its_command_and_is_run_only_by_name(
    invoke, tmp_path, monkeypatch
):
    claim = next(c for c in load_claims() if c.claim == "grafting-recovery-prompt")
    m = measure(tmp_path, claim)
    assert m.verdict == "needs GPU/network" and "`clgraft claims run grafting-recovery-prompt`" in m.why
    assert "model roberta-base, head prompt, 1000 steps" in m.setting and "test ≤ 500 per task" in m.setting

    ran = []
    monkeypatch.setattr("clgraft.sweeps.claims.run_claim", lambda results, claim, *a, **k: ran.append(claim.claim))
    out = invoke("claims", "run", "--results", tmp_path)
    assert "grafting-recovery-prompt: skipped, requires GPU/network" in out
    assert "grafting-recovery-prompt" not in ran and "grafting-recovery" in ran
    invoke("claims", "run", "grafting-recovery-prompt", "--results", tmp_path)
    assert ran[-1] == "grafting-recovery-prompt"


def test_subspace_claims_take_their_own_analysis_controls_only():
    """The subspace controls need `analysis_controls` and a subspace claim; a closeness claim cannot list them."""
    names = ["subspace_control_random", "subspace_control_other_task", "subspace_control_head_only"]
    subspace = dict(run={"trajectory": 8}, analyze="subspace", subspace_dims=[4], analysis_controls=True)
    claim = _claim("subspace_recovery", ["independent"], (">=", 0.95), claim={"controls": names}, **subspace)
    assert claim.controls == names
    with pytest.raises(ValueError, match="read beside 'subspace_recovery', not 'critical_layers_of_full'"):
        _claim(
            "critical_layers_of_full",
            ["independent"],
            (">=", 0.95),
            claim={"controls": names[:1]},
            analyze="closeness",
            critical_layers=1,
            analysis_controls=True,
        )
    with pytest.raises(ValueError, match="`analysis_controls` needs what they are compared with"):
        _claim("subspace_recovery", ["independent"], (">=", 0.95), **{**subspace, "subspace_dims": []})


def test_a_claim_run_whose_weights_are_gone_makes_them_again_only_if_r_is_the_records(tiny_model_dir, tmp_path):
    """Committed records have no weights: a claim whose analysis is still to do runs the same configuration again in
    a scratch folder and takes its weights only where its R equals the record's; otherwise one line, nothing moved."""
    import shutil

    from clgraft.io.records import write_json

    run = {"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"}
    plain = _claim("closeness_rel_l2", ["independent"], ("<=", 0.1), run=run, analyze="closeness")
    run_claim(tmp_path, plain, None, lambda s: None, progress=False)
    folders = sorted(p.parent for p in claim_runs_dir(tmp_path, plain).glob("*/run.json"))
    before = {f: (f / "weights" / "task-01.safetensors").read_bytes() for f in folders}
    for folder in folders:
        shutil.rmtree(folder / "weights")
    critical = _claim(
        "critical_layers_of_full", ["independent"], (">=", 0.95), run=run, analyze="closeness", critical_layers=1
    )
    said = []
    run_claim(tmp_path, critical, None, said.append, progress=False)
    assert sum("running it again to make them" in s for s in said) == len(folders)
    assert all((f / "weights" / "task-01.safetensors").read_bytes() == before[f] for f in folders)  # the same bits
    for folder in folders:
        summary = json.loads((folder / "run.json").read_text())["analysis"]["closeness"]
        assert all(t["critical_layers"]["k"] == 1 for t in summary.values() if isinstance(t, dict))
    assert not list(claim_runs_dir(tmp_path, plain).glob(".weights-*"))
    record = json.loads((folders[0] / "run.json").read_text())
    record["R"][1][0] = 0.0 if record["R"][1][0] else 1.0
    del record["analysis"]
    write_json(folders[0] / "run.json", record)
    shutil.rmtree(folders[0] / "weights")
    with pytest.raises(ClgraftError, match="gives another R than its record"):
        run_claim(tmp_path, critical, None, lambda s: None, progress=False)
    assert not (folders[0] / "weights").exists() and not list(claim_runs_dir(tmp_path, plain).glob(".weights-*"))


def test_claims_plan_remakes_weights_for_an_analysis_that_trains_nothing(tiny_model_dir, tmp_path):
    """Closeness's reference scale trains nothing but reads every task's weights: where a record's analysis lacks it
    and the weights are gone, the plan prices the run again (and no fine-tune), at the CPU time that run's own record
    took rather than the mean of the claim's runs; once it is made, nothing."""
    import shutil

    from clgraft.sweeps.claim_plan import claim_plan

    run = {"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"}
    plain = _claim("closeness_rel_l2", ["independent"], ("<=", 0.1), run=run, analyze="closeness")
    plain = plain.model_copy(update={"evidence": plain.evidence.model_copy(update={"seeds": [1, 2]})})
    run_claim(tmp_path, plain, None, lambda s: None, progress=False)
    folders = [next(claim_runs_dir(tmp_path, plain).glob(f"*-s{seed}-*")) for seed in (1, 2)]
    for folder, cpu_s in zip(folders, (100.0, 300.0), strict=True):
        (folder / "run.json").write_text(json.dumps({**read_json(folder / "run.json"), "cpu_s": cpu_s}))
    shutil.rmtree(folders[0] / "weights")
    reference = plain.model_copy(
        update={
            "evidence": plain.evidence.model_copy(update={"analysis_controls": True}),
            "controls": ["closeness_rel_l2_control_reference"],
        }
    )
    row = claim_plan(tmp_path, [reference], []).iloc[0]
    assert (row["left"], row["remake_weights"], row["analysis_finetunes"]) == (0, 1, 0)
    assert (row["s_per_run"], row["s_left"]) == (200.0, 100.0)  # seed 1's own 100 s, not the runs' mean
    assert claim_plan(tmp_path, [plain], []).iloc[0]["remake_weights"] == 0  # its analysis is complete
    run_claim(tmp_path, reference, None, lambda s: None, progress=False)
    assert claim_plan(tmp_path, [reference], []).iloc[0]["remake_weights"] == 0


def test_claims_plan_prices_runs_left_weights_to_remake_and_analysis_fine_tunes(tiny_model_dir, tmp_path, invoke):
    """`claims run --plan` runs nothing; a claim's runs left are priced from measured runs, and its records whose
    analysis lacks what is asked (here the controls: 3 fine-tunes a task) add those fine-tunes and, where the
    weights are gone, the run again — all of it once, though two claims read the same runs. A fine-tune (one task)
    is priced at what the claim's complete analyses spent per fine-tune, else at the run's seconds per task; one
    that a stopped analysis made (in its file, not yet in run.json) is not priced again."""
    import shutil

    from clgraft.sweeps.claim_plan import claim_plan, finetunes_per_task

    run = {"model": str(tiny_model_dir), "steps": 3, "batch_size": 4, "max_length": 32, "evaluate": "final"}
    evidence = dict(run=run, analyze="closeness", critical_layers=1)
    made = _claim("critical_layers_of_full", ["independent"], (">=", 0.95), **evidence)
    one_seed = made.model_copy(update={"evidence": made.evidence.model_copy(update={"seeds": [1]})})
    run_claim(tmp_path, one_seed, None, lambda s: None, progress=False)
    table = claim_plan(tmp_path, [made], [])
    row = table.iloc[0]
    cost = json.loads(next(claim_runs_dir(tmp_path, made).glob("*/run.json")).read_text())["cpu_s"]
    assert (row["runs"], row["finished"], row["left"]) == (3, 1, 2) and row["s_per_run"] == pytest.approx(cost)
    record = read_json(next(claim_runs_dir(tmp_path, made).glob("*/run.json")))
    tasks = len(record["tasks"])
    assert row["analysis_finetunes"] == 2 * tasks and row["remake_weights"] == 0  # the runs left: one critical a task
    per_finetune = record["analysis"]["closeness"]["cpu_s"] / tasks  # the made run's: one fine-tune a task
    assert row["s_left"] == pytest.approx(cost * 2 + 2 * tasks * per_finetune)
    controls = _claim("critical_layers_of_full", ["independent"], (">=", 0.95), **evidence, analysis_controls=True)
    for folder in claim_runs_dir(tmp_path, made).glob("*/weights"):
        shutil.rmtree(folder)
    shared = str(claim_runs_dir(tmp_path, made).relative_to(tmp_path))
    reader = _claim(
        "critical_layers_of_full", ["independent"], (">=", 0.95), **evidence, analysis_controls=True, records=shared
    )
    table = claim_plan(tmp_path, [controls, reader.model_copy(update={"claim": "same-runs"})], [])
    assert table["remake_weights"].tolist() == [1, 0]
    assert table["analysis_finetunes"].tolist() == [3 * tasks + 2 * 4 * tasks, 0]
    assert table["left"].tolist() == [2, 0]  # the second claim reads the first's runs: priced once
    assert table["s_left"][0] == pytest.approx(cost * (2 + 1) + (3 + 2 * 4) * tasks * cost / tasks)  # none complete
    assert finetunes_per_task(controls.evidence, None) == 4
    (folder,) = [p.parent for p in claim_runs_dir(tmp_path, made).glob("*/run.json")]
    stopped = read_json(folder / "analysis" / "closeness.json")
    first = record["tasks"][0]["name"]
    stopped["tasks"][first]["critical_layers"]["controls"] = {"bottom": {}, "random": {}, "head_only": {}}
    (folder / "analysis" / "closeness.json").write_text(json.dumps(stopped))  # stopped after one task
    assert claim_plan(tmp_path, [controls], [])["analysis_finetunes"][0] == 3 * (tasks - 1) + 2 * 4 * tasks
    output = invoke("claims", "run", "--plan", "--results", tmp_path, "closeness")
    assert "| closeness " in output and "claims' work left: ≈" in output


def test_a_subspace_analysis_with_bases_older_than_float64_is_neither_complete_nor_priced_as_done():
    """Subspace sections written before the float64 bases (no `basis_gram`) trained rows in fewer dimensions than
    asked: `claims run` makes them again and its plan prices all of them; so it does an analysis that stopped
    before the run's last task."""
    from clgraft.sweeps.claim_plan import finetunes_per_task
    from clgraft.sweeps.claims import analysis_complete

    run = {"trajectory": 32}
    made = _claim("subspace_recovery", ["independent"], (">=", 0.95), run=run, analyze="subspace", subspace_dims=[16])
    evidence = made.evidence.model_copy(update={"analysis_controls": True})
    section = {"by_d": {"16": {"acc": 0.8}}, "controls": {}, "basis_gram": "float64"}
    today = {"sst2": {"finetune_in_subspace": section}, "cpu_s": 1.0}
    older = {"sst2": {"finetune_in_subspace": {k: v for k, v in section.items() if k != "basis_gram"}}}
    record = {"tasks": [{"name": "sst2"}]}
    assert analysis_complete(today, evidence, record) and finetunes_per_task(evidence, today["sst2"]) == 0
    assert not analysis_complete(older, evidence, record) and finetunes_per_task(evidence, older["sst2"]) == 1 + 3
    stopped = {"tasks": [{"name": "sst2"}, {"name": "mr"}]}  # the analysis stopped before mr: made again
    assert not analysis_complete(today, evidence, stopped)


def test_a_run_that_saved_a_trajectory_needs_its_checkpoints_back_too(tmp_path):
    """has_weights: the weights after every task, and for a run with `trajectory`, each task's checkpoints."""
    from clgraft.sweeps.claims import has_weights

    record = {"tasks": [{}, {}], "method": {"name": "independent"}, "config": {"trajectory": 4}}
    for t in (1, 2):
        (tmp_path / "weights").mkdir(exist_ok=True)
        (tmp_path / "weights" / f"task-{t:02d}.safetensors").write_bytes(b"")
    assert not has_weights(tmp_path, record)
    for t in (1, 2):
        (tmp_path / "trajectory" / f"task-{t:02d}").mkdir(parents=True)
        (tmp_path / "trajectory" / f"task-{t:02d}" / "step-000004.safetensors").write_bytes(b"")
    assert has_weights(tmp_path, record)
    assert has_weights(tmp_path, {**record, "config": {"trajectory": 0}})
    (tmp_path / "weights" / "task-02.safetensors").unlink()
    assert not has_weights(tmp_path, record)


def test_region_controls_are_grafted_beside_the_search_and_read_like_the_claim(tiny_model_dir, tmp_path):
    """`localize_controls` makes, beside the searched graft, a graft of each control region at the same sparsity from
    the same θ_t (and `localize_curve` a search at each of its sparsities); a region control statistic reads those
    rows with the claim's own formula, and agreement is the share of test examples on which a graft predicts θ_t's
    label."""
    from clgraft.sweeps.claims import measure_controls

    regions = ["top-tau", "random", "bias"]
    names = [f"body_gain_recovered_control_{r}" for r in regions]
    claim = _claim(
        "body_gain_recovered",
        ["independent"],
        (">", 0.95),
        claim={"controls": names},
        run={
            "model": str(tiny_model_dir),
            "steps": 30,
            "lr": 3e-3,
            "batch_size": 4,
            "max_length": 32,
            "evaluate": "final",
        },
        localize={"sparsity": 0.05, "method": "scaled", "steps": 2},
        localize_controls=regions,
        localize_curve=[0.2],
    )
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    measured = measure(tmp_path, claim)
    controls = measure_controls(tmp_path, claim, measured)
    assert [c.name for c in controls] == [
        "the top-|τ| region (no search)",
        "a random region of the same size",
        "the bias entries (BitFit's region)",
    ]
    for seed, records in seed_records(tmp_path, claim)[0].items():
        ((_, run_dir),) = records.values()
        rows = read_json(run_dir / "localize.json")["results"]
        assert sorted({(r["method"], r["sparsity"]) for r in rows}) == sorted(
            [("scaled", 0.05), ("scaled", 0.2), *((r, 0.05) for r in regions)]
        )  # and the curve's point, searched
        searched = [r for r in rows if r["method"] == "scaled" and r["sparsity"] == 0.05]
        for region, control in zip(regions, controls, strict=True):
            mine = [r for r in rows if r["method"] == region]
            # ⌊sN⌋, the search's start, task by task (bias: all bias entries where fewer, as in the tiny model)
            sizes = [(r["k"], s["search"][0]["size"]) for r, s in zip(mine, searched, strict=True)]
            assert all(k == ks if region != "bias" else k <= ks for k, ks in sizes)
            counted = [p.left_out is None for p in measured.parts[seed]]
            num = sum(r["acc_grafted"] - r["acc_base"] for r, c in zip(mine, counted, strict=True) if c)
            den = sum(r["acc_finetuned"] - r["acc_base"] for r, c in zip(mine, counted, strict=True) if c)
            expected = num / den if any(counted) and den > 0 else None
            assert control.values.get(seed) == (pytest.approx(expected) if expected is not None else None)
        for r in rows:
            assert 0 <= r["agreement"] <= 1 and 0 <= r["agreement_base"] <= 1
            # agreeing on a share a of examples, the two accuracies differ by at most 1 − a
            assert abs(r["acc_grafted"] - r["acc_finetuned"]) <= 1 - r["agreement"] + 1e-6
    with pytest.raises(ValueError, match="list it in `localize_controls`"):
        _claim("recovered", ["independent"], (">", 0.95), claim={"controls": ["recovered_control_random"]}, **GRAFT)
    with pytest.raises(ValueError, match="add to the localization: give `localize`"):
        _claim(
            "forgetting_difference", ["naive", "graft-freeze"], (">", 0), run={"steps": 5}, localize_controls=["random"]
        )
    with pytest.raises(ValueError, match="is a control of 'recovered'"):
        _claim("recovered_control_random", ["independent"], (">", 0.95), **GRAFT, localize_controls=["random"])
    with pytest.raises(ValueError, match="read beside 'agreement', not 'recovered'"):
        _claim(
            "recovered", ["independent"], (">", 0.95), **GRAFT, claim={"controls": ["agreement_control_random"]}
        ).model_copy()
    own = {"run": {"steps": 5}, "localize": {"sparsity": 0.01, "method": "random"}}
    with pytest.raises(ValueError, match="the localization's own method"):
        _claim("recovered", ["independent"], (">", 0.95), **own, localize_controls=["random"])


def test_a_disjoint_region_is_searched_outside_the_scaled_one_which_is_made_first_and_read_beside_it(
    tiny_model_dir, tmp_path
):
    """A claim on the `disjoint` region lists the scaled region among its controls: `claims run` makes the scaled
    region first, then searches again with it excluded. The second region, like the first, starts from k = ⌊sN⌋
    entries and keeps at most k, and shares none of the first's; its rows are the claim's and the scaled rows the
    control's. Without a scaled region the disjoint search says what to run; a disjoint claim must list the scaled
    region."""
    from clgraft.grafting.graft import load
    from clgraft.runs.localize_run import localize_finished_run
    from clgraft.sweeps.claims import measure_controls

    claim = _claim(
        "body_gain_recovered",
        ["independent"],
        (">", 0.95),
        claim={"controls": ["body_gain_recovered_control_scaled"]},
        run={"model": str(tiny_model_dir), "steps": 30, "lr": 3e-3, "batch_size": 4, "max_length": 32},
        localize={"sparsity": 0.05, "method": "disjoint", "steps": 2},
        localize_controls=["scaled"],
    )
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    measured = measure(tmp_path, claim)
    (control,) = measure_controls(tmp_path, claim, measured)
    assert control.name == "the searched region (the first)"
    for seed, records in seed_records(tmp_path, claim)[0].items():
        ((_, run_dir),) = records.values()
        rows = read_json(run_dir / "localize.json")["results"]
        first = {r["task"]: r for r in rows if r["method"] == "scaled"}
        second = {r["task"]: r for r in rows if r["method"] == "disjoint"}
        assert first and first.keys() == second.keys()
        for task, row in second.items():
            a, b = load(run_dir / first[task]["graft"]), load(run_dir / row["graft"])
            k = math.floor(0.05 * a.numel)  # the search starts at k entries and keeps at most k
            assert 0 < a.k <= k and 0 < b.k <= k and not set(a.positions.tolist()) & set(b.positions.tolist())
            assert row["excluded"] == {key: first[task][key] for key in ("graft", "k", "best_step", "acc_grafted")}
            assert row["search"][0]["size"] == k
        counted = [p.left_out is None for p in measured.parts[seed]]
        for region, value in ((second, measured.values.get(seed)), (first, control.values.get(seed))):
            kept = [r for r, c in zip(region.values(), counted, strict=True) if c]
            den = sum(r["acc_finetuned"] - r["acc_base"] for r in kept)
            expected = sum(r["acc_grafted"] - r["acc_base"] for r in kept) / den if kept and den > 0 else None
            assert value == (pytest.approx(expected) if expected is not None else None)
        with pytest.raises(ClgraftError, match="has no scaled region; run `clgraft localize .* --sparsity 0.2"):
            localize_finished_run(run_dir, Registry.discover(), None, sparsity=0.2, method="disjoint", steps=1)
    # a fresh clone: the rows are there, the graft files not; the disjoint rows still to make
    ((_, run_dir),) = seed_records(tmp_path, claim)[0][1].values()
    doc = read_json(run_dir / "localize.json")
    scaled = [r for r in doc["results"] if r["method"] == "scaled"]
    doc["results"] = [r for r in doc["results"] if r["method"] != "disjoint"]
    (run_dir / "localize.json").write_text(json.dumps(doc))
    for row in scaled:
        (run_dir / row["graft"]).unlink()
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)  # the scaled grafts searched again, then disjoint
    again = read_json(run_dir / "localize.json")["results"]
    assert [(r["task"], r["best_step"], r["k"]) for r in again if r["method"] == "scaled"] == [
        (r["task"], r["best_step"], r["k"]) for r in scaled
    ]
    assert len(localize_rows(run_dir, claim.evidence)) == len(scaled)
    # a later scaled search that ends otherwise leaves the disjoint rows stale: no longer the claim's
    for row in again:
        if row["method"] == "scaled" and row["task"] == scaled[0]["task"]:
            row["best_step"] += 1
    (run_dir / "localize.json").write_text(json.dumps({**doc, "results": again}))
    assert len(localize_rows(run_dir, claim.evidence)) == len(scaled) - 1
    disjoint = {"run": {"steps": 5}, "localize": {"sparsity": 0.01, "method": "disjoint"}}
    with pytest.raises(ValueError, match="has no curve"):
        _claim(
            "recovered", ["independent"], (">", 0.95), **disjoint, localize_controls=["scaled"], localize_curve=[0.1]
        )
    with pytest.raises(ValueError, match="list scaled in `localize_controls`"):
        _claim(
            "recovered",
            ["independent"],
            (">", 0.95),
            run={"steps": 5},
            localize={"sparsity": 0.01, "method": "disjoint"},
        )


def test_agreement_is_read_as_a_mean_over_the_learned_tasks_and_rows_without_it_are_absent(tmp_path):
    """The agreement statistic is a plain mean of each learned task's agreement; a localize row from before
    localize recorded agreement gives that task no part (not a zero)."""
    claim = _claim("agreement", ["independent"], (">=", 0.95), claim={"controls": ["agreement_control_head"]}, **GRAFT)
    rows = [
        {
            "task": "a",
            "acc_finetuned": 0.9,
            "acc_grafted": 0.8,
            "acc_base": 0.6,
            "agreement": 0.9,
            "agreement_base": 0.7,
        },
        {"task": "b", "acc_finetuned": 0.9, "acc_grafted": 0.9, "acc_base": 0.6},
    ]
    _graft_seeds(tmp_path, claim, {1: rows, 2: rows, 3: rows}, trained=(0.9, 0.9))
    measured = measure(tmp_path, claim)
    assert measured.values == {1: pytest.approx(0.9), 2: pytest.approx(0.9), 3: pytest.approx(0.9)}
    assert [p.task for p in measured.parts[1]] == ["a"]
    from clgraft.sweeps.claims import measure_controls

    (head,) = measure_controls(tmp_path, claim, measured)
    assert head.mean == pytest.approx(0.7) and head.difference[0] == pytest.approx(0.2)


def test_a_curve_reads_the_statistic_at_each_sparsity_and_names_the_smallest_that_clears_the_threshold(tmp_path):
    """`localize_curve` reads the claim's statistic from the rows at each sparsity (the claim's own included), pooled
    as the claim's; the report names the smallest sparsity whose interval lies on the expected side."""
    from clgraft.sweeps.claim_report import report
    from clgraft.sweeps.claims import measure_curve

    claim = _claim("recovered", ["independent"], (">", 0.95), **GRAFT, localize_curve=[0.001, 0.1])
    by_sparsity = {0.001: (0.5, 0.52), 0.01: (0.8, 0.82), 0.1: (0.97, 0.98)}  # recovered of task a, of task b
    rows = {
        seed: [
            {"task": t, "sparsity": s, "acc_finetuned": 0.9, "acc_grafted": 0.9 * r[i] + 0.001 * seed, "acc_base": 0.5}
            for s, r in by_sparsity.items()
            for i, t in enumerate("ab")
        ]
        for seed in (1, 2, 3)
    }
    _graft_seeds(tmp_path, claim, rows, trained=(0.9, 0.9))
    curve = measure_curve(claim, measure(tmp_path, claim))
    assert [p.sparsity for p in curve] == [0.001, 0.01, 0.1]
    for point in curve:
        a, b = by_sparsity[point.sparsity]
        for seed, value in point.values.items():
            assert value == pytest.approx((0.9 * a + 0.9 * b + 0.002 * seed) / 1.8)
    text = report(tmp_path, [claim])
    assert "- curve (the same runs and statistic; the verdict reads s = 0.01):" in text
    assert "the smallest sparsity whose interval lies > 0.95: s = 0.1" in text
    with pytest.raises(ValueError, match="every sparsity must be in"):
        _claim("recovered", ["independent"], (">", 0.95), **GRAFT, localize_curve=[2.0])
    with pytest.raises(ValueError, match="the localization's own sparsity"):
        _claim("recovered", ["independent"], (">", 0.95), **GRAFT, localize_curve=[0.01])


def test_claims_plan_prices_a_shared_folders_localizations_once(tmp_path):
    """Two claims reading one folder of runs, each with the same curve: the sparsities the runs lack are priced by
    the first claim only, and a run without its weights is made again once."""
    from clgraft.sweeps.claim_plan import claim_plan

    first = _claim("recovered", ["independent"], (">", 0.95), **GRAFT, localize_curve=[0.001, 0.1])
    rows = [{"task": t, "acc_finetuned": 0.9, "acc_grafted": 0.8, "acc_base": 0.5, "cpu_s": 10.0} for t in "ab"]
    _graft_seeds(tmp_path, first, {1: rows, 2: rows, 3: rows}, trained=(0.9, 0.9))
    second = _claim(
        "body_gain_recovered",
        ["independent"],
        (">", 0.95),
        **GRAFT,
        localize_curve=[0.001, 0.1],
        records=str(claim_runs_dir(tmp_path, first).relative_to(tmp_path)),
    ).model_copy(update={"claim": "second"})
    table = claim_plan(tmp_path, [first, second], []).set_index("claim")
    assert table.loc["test-claim", "localize"] == 6 and table.loc["second", "localize"] == 0  # 3 runs × 2 sparsities
    assert table.loc["test-claim", "remake_weights"] == 3 and table.loc["second", "remake_weights"] == 0


def test_claims_plan_prices_the_scaled_region_beside_a_disjoint_claim_as_a_search(tmp_path):
    """The scaled region that a disjoint claim excludes is a search, priced as a localization where a run lacks its
    rows, or its graft files while the disjoint search is still to make (unlike the control regions, which search
    nothing); before any disjoint search, each is priced as the scaled searches made so far."""
    from clgraft.sweeps.claim_plan import _localize_seconds, claim_plan

    localize = {"localize": {"sparsity": 0.01, "method": "disjoint"}, "localize_controls": ["scaled"]}
    claim = _claim("body_gain_recovered", ["independent"], (">", 0.95), run={"steps": 5}, **localize)
    rows = [
        {"task": t, "acc_finetuned": 0.9, "acc_grafted": 0.8, "acc_base": 0.5, "cpu_s": 10.0, "graft": f"grafts/{t}"}
        for t in "ab"
    ]
    _graft_seeds(tmp_path, claim, {1: rows, 2: rows, 3: [{**r, "method": "random"} for r in rows]}, trained=(0.9, 0.9))
    folders = sorted(p for p in claim_runs_dir(tmp_path, claim).iterdir() if p.is_dir())
    (folders[0] / "grafts").mkdir()
    for row in rows:  # seed 1 has its scaled grafts, seed 2 only their rows, seed 3 neither
        (folders[0] / row["graft"]).write_bytes(b"")
    row = claim_plan(tmp_path, [claim], []).iloc[0]
    assert row["localize"] == 3 + 2  # every run's disjoint search, and the scaled one of seeds 2 and 3
    assert _localize_seconds(folders, claim.evidence, []) == 20.0  # priced as the scaled searches made: 2 tasks × 10 s


def test_claims_plan_prices_a_search_whose_rows_predate_cpu_time_by_other_searches_with_as_many_steps(tmp_path):
    """Rows from before localize recorded CPU time give no price of their own: a run's search is then priced as its
    tasks × the mean per-task time of searches at another sparsity or candidate change with as many steps — in the
    claim's folders first, else in any folder the plan reads — never from control regions (they search nothing) or
    from searches of another length."""
    from clgraft.sweeps.claim_plan import _localize_seconds

    claim = _claim(
        "body_gain_recovered", ["independent"], (">", 0.95), **GRAFT | {"localize": GRAFT["localize"] | {"steps": 10}}
    )
    old = [{"task": t, "acc_finetuned": 0.9, "acc_grafted": 0.8, "acc_base": 0.5, "steps": 10} for t in "ab"]
    _graft_seeds(tmp_path, claim, {1: old}, trained=(0.9, 0.9))
    folders = sorted(p for p in claim_runs_dir(tmp_path, claim).iterdir() if p.is_dir())
    other = tmp_path / "elsewhere"
    _write_localize(
        _write_run(other, "independent", 5, 0.0, trained=(0.9, 0.9, 0.9)),
        [{"task": "a", "sparsity": 0.1, "steps": 10, "cpu_s": 6.0}, {"task": "a", "steps": 20, "cpu_s": 99.0}],
    )
    assert _localize_seconds(folders, claim.evidence, []) is None  # nothing of the claim's records its time
    assert _localize_seconds(folders, claim.evidence, [other]) == 2 * 6.0  # the claim's runs have 2 tasks

    own = [
        {**old[0], "method": "sparsify", "sparsity": 0.1, "cpu_s": 3.0},
        {**old[1], "method": "scaled", "sparsity": 0.001, "cpu_s": 5.0},
        {**old[1], "method": "random", "steps": 10, "cpu_s": 50.0},  # a control region: searched nothing
    ]
    _write_localize(folders[0], old + own)
    assert _localize_seconds(folders, claim.evidence, [other]) == 2 * 4.0  # its own folders first

    _write_localize(folders[0], [{**r, "cpu_s": 7.0} for r in old] + own)
    assert _localize_seconds(folders, claim.evidence, [other]) == 14.0  # its own search's time wins over both


def _random_region_claim() -> Claim:
    """grafting-helps-cl's shape: naive − graft-freeze forgetting, with graft-freeze on a random region as control."""
    return _claim(
        "forgetting_difference",
        ["naive", "graft-freeze"],
        (">", 0.0),
        claim={"controls": ["random-region"]},
        run={"steps": 5},
        control_methods={"random-region": "graft-freeze:localizer=random"},
    )


def test_a_pair_claims_control_method_replaces_its_second_method_and_is_read_with_the_claims_statistic(tmp_path):
    """`control_methods` of a pair claim: the control's records (graft-freeze with a random region) are read with
    the claim's statistic in place of the second method's, and the paired difference claim − control is over seeds.
    Here naive forgets 0.3, the searched region 0.1 and the random one 0.25: the claim 0.2, the control 0.05."""
    from clgraft.sweeps.claim_report import report
    from clgraft.sweeps.claims import measure_controls

    random = "graft-freeze:localizer=random"
    claim = _random_region_claim()
    runs = claim_runs_dir(tmp_path, claim)
    for seed, jitter in ((1, 0.0), (2, 0.01), (3, 0.02)):
        _write_run(runs, "naive", seed, 0.3)
        _write_run(runs, "graft-freeze", seed, 0.1)
        _write_run(runs, "graft-freeze", seed, 0.25 + jitter, options={"localizer": "random"}, tag="-random")
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({1: 0.2, 2: 0.2, 3: 0.2})  # the control's records are not the claim's
    (control,) = measure_controls(tmp_path, claim, m)
    assert control.name == f"{random} in place of graft-freeze"
    assert control.values == pytest.approx({1: 0.05, 2: 0.04, 3: 0.03})
    assert control.difference[0] == pytest.approx(0.16)
    assert f"compared with):\n  - {random} in place of graft-freeze: " in report(tmp_path, [claim])
    with pytest.raises(ValueError, match="replace a pair claim's second method"):
        _claim("recovered", ["independent"], (">", 0.95), **GRAFT, control_methods={"x": "graft-freeze"})
    pair = {"run": {"steps": 5}, "claim": {"controls": ["x"]}}
    for methods, message in (
        ({"x": "graft-freeze"}, "one of the claim's own methods"),
        ({"x": "nope"}, "control method 'x': unknown method 'nope'"),
        ({"recovered": random}, "a statistic has that name"),
    ):
        with pytest.raises(ValueError, match=message):
            _claim("forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), **pair, control_methods=methods)
    with pytest.raises(ValueError, match="is not read: list it under `controls`"):
        _claim("forgetting_difference", ["naive", "graft-freeze"], (">", 0.0), control_methods={"x": random})


def test_a_control_method_and_the_claim_it_is_paired_with_read_the_tasks_all_three_runs_learned(tmp_path):
    """Where the control run did not learn task a (the one naive forgets 0.3 and graft-freeze 0.1), the control and
    the claim's number it is paired with both read task b alone: claim − control is 0, not the claim's 0.1 on a and
    b."""
    from clgraft.sweeps.claims import measure_controls

    claim = _random_region_claim()
    runs = claim_runs_dir(tmp_path, claim)
    for seed in (1, 2, 3):
        _write_run(runs, "naive", seed, 0.3, trained=(0.9, 0.9, 0.9))
        _write_run(runs, "graft-freeze", seed, 0.1, trained=(0.9, 0.9, 0.9))
        _write_run(runs, "graft-freeze", seed, 0.0, options={"localizer": "random"}, tag="-r", trained=(0.5, 0.9, 0.9))
    m = measure(tmp_path, claim)
    assert m.values == pytest.approx({1: 0.1, 2: 0.1, 3: 0.1})  # (0.2 on a + 0 on b) / 2
    (control,) = measure_controls(tmp_path, claim, m)
    assert control.values == pytest.approx({1: 0.0, 2: 0.0, 3: 0.0})
    assert control.difference == pytest.approx((0.0, 0.0, 0.0))


def _one(records: dict) -> dict:
    """The one record of a seed's records (a claim of one method)."""
    ((record, _),) = records.values()
    return record


CROSS = {
    "run": {"steps": 5},
    "localize": {"sparsity": 0.01, "method": "scaled"},
    "analyze": "overlap",
    "cross_grafts": True,
}
"""Evidence of a claim read from the cross grafts of the overlap analysis at s = 0.01."""


def _cross_seeds(tmp_path, claim: Claim, entries: dict[str, dict]) -> None:
    """Three seeds of a joint run of four tasks (d not learned) whose overlap analysis holds these cross grafts."""
    for seed in (1, 2, 3):
        folder = _write_run(claim_runs_dir(tmp_path, claim), "joint", seed, 0.0, trained=(0.9, 0.9, 0.9, 0.5))
        _write_localize(folder, [{"task": t, "acc_finetuned": 0.9, "acc_grafted": 0.8} for t in "abcd"])
        record = read_json(folder / "run.json")
        record["analysis"] = {"overlap-s0.01": {"cross_grafts": {"union_k": 4, "tasks": entries}}}
        (folder / "run.json").write_text(json.dumps(record))


def test_cross_graft_claims_restate_specificity_similarity_and_the_unions_pooled_recovery(tmp_path):
    """graft_specificity is the mean over the learned tasks j of own − (mean over the other-type regions), its
    control the same with a random region of j's size in place of its own (so claim − control = own − random);
    graft_similarity the mean of same-type − other-type over the tasks that have both; union_recovered pools
    Σ acc(union) / Σ acc(θ_joint), its controls the random region's and θ₀ + heads' the same way."""
    from clgraft.sweeps.claims import measure_controls

    def entry(own, other, same, random_own, union, random, base, full=0.9):
        keys = ("own", "other_type", "same_type", "random_own", "union", "random_union", "base", "full")
        return dict(zip(keys, (own, other, same, random_own, union, random, base, full), strict=True))

    entries = {
        "a": entry(0.80, 0.60, 0.70, 0.75, 0.85, 0.70, 0.65),
        "b": entry(0.75, 0.60, 0.72, 0.70, 0.80, 0.66, 0.62, full=0.8),
        "c": entry(0.70, 0.65, None, 0.66, 0.60, 0.60, 0.60),
        "d": entry(0.50, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10),  # not learned: left out
    }
    controls = {"controls": ["graft_specificity_control_random"]}
    specific = _claim("graft_specificity", ["joint"], (">", 0.0), controls, **CROSS)
    _cross_seeds(tmp_path, specific, entries)
    measured = measure(tmp_path, specific)
    assert measured.values[1] == pytest.approx((0.20 + 0.15 + 0.05) / 3)
    assert [p.task for p in measured.parts[1] if p.left_out is None] == ["a", "b", "c"]
    (random_own,) = measure_controls(tmp_path, specific, measured)
    assert random_own.values[1] == pytest.approx((0.15 + 0.10 + 0.01) / 3)
    assert random_own.difference[0] == pytest.approx((0.05 + 0.05 + 0.04) / 3)  # own − random, task by task
    similar = measure(tmp_path, _claim("graft_similarity", ["joint"], (">", 0.0), **CROSS))
    assert measured.parts[1] and similar.values[2] == pytest.approx((0.10 + 0.12) / 2)  # c has no same-type task
    union = _claim(
        "union_recovered",
        ["joint"],
        (">", 0.95),
        {"controls": ["union_recovered_control_random", "union_recovered_control_base"]},
        **CROSS,
    )
    measured = measure(tmp_path, union)
    assert measured.values[2] == pytest.approx((0.85 + 0.80 + 0.60) / (0.9 + 0.8 + 0.9))
    random, base = measure_controls(tmp_path, union, measured)
    assert random.values[3] == pytest.approx((0.70 + 0.66 + 0.60) / 2.6)
    assert base.values[3] == pytest.approx((0.65 + 0.62 + 0.60) / 2.6)
    assert base.difference[0] == pytest.approx((0.85 + 0.80 + 0.60 - 0.65 - 0.62 - 0.60) / 2.6)
    with pytest.raises(ValueError, match="reads the cross grafts: set `cross_grafts: true`"):
        _claim("union_recovered", ["joint"], (">", 0.95), **{**CROSS, "cross_grafts": False})
    with pytest.raises(ValueError, match="part of the overlap analysis"):
        _claim("recovered", ["joint"], (">=", 0.95), **GRAFT, cross_grafts=True)
    with pytest.raises(ValueError, match="the methods must be joint"):
        _claim("union_recovered", ["independent"], (">", 0.95), **CROSS)


def test_claims_plan_prices_cross_grafts_at_their_recorded_time_else_at_the_runs_test_evaluations(tmp_path):
    """An overlap analysis with cross grafts still to do is counted once per run however many claims read it, and
    priced at the CPU time of the claim's complete ones, else at T² + 4T test evaluations at the runs' own seconds
    per evaluation (their evaluation time over R's entries); an overlap without cross grafts is not counted."""
    from clgraft.sweeps.claim_plan import _analysis_seconds, claim_plan

    union = _claim("union_recovered", ["joint"], (">", 0.95), **CROSS)
    folders = []
    for seed in (1, 2, 3):
        folder = _write_run(claim_runs_dir(tmp_path, union), "joint", seed, 0.0, trained=(0.9, 0.9, 0.9, 0.9))
        rows = [{"task": t, "acc_finetuned": 0.9, "acc_grafted": 0.8, "graft": f"grafts/{t}"} for t in "abcd"]
        _write_localize(folder, rows)
        record = read_json(folder / "run.json")
        (folder / "run.json").write_text(json.dumps({**record, "time_s": {"evaluate": 13.0 * seed}}))
        folders.append(folder)
    records = [read_json(f / "run.json") for f in folders]
    assert claim_plan(tmp_path, [union], []).iloc[0]["analyses"] == 3
    assert _analysis_seconds(records, union.evidence) == pytest.approx((16 + 4 * 4) * 2.0)  # R: 13 entries, 1–3 s

    analyses = [{"cross_grafts": {}, "cpu_s": 40.0}, {"cross_grafts": {}, "cpu_s": 60.0}, {"cpu_s": 5.0}]
    for folder, record, analysis in zip(folders, records, analyses, strict=True):
        (folder / "run.json").write_text(json.dumps({**record, "analysis": {"overlap-s0.01": analysis}}))
    records = [read_json(f / "run.json") for f in folders]
    assert _analysis_seconds(records, union.evidence) == 50.0  # the complete ones only: seed 3 lacks cross grafts
    shared = {"records": str(claim_runs_dir(tmp_path, union).relative_to(tmp_path))}
    similar = _claim("graft_similarity", ["joint"], (">", 0.0), **CROSS, **shared).model_copy(update={"claim": "b"})
    table = claim_plan(tmp_path, [union, similar], []).set_index("claim")
    assert table.loc["test-claim", "analyses"] == 1 and table.loc["b", "analyses"] == 0  # seed 3's, priced once
    overlap = {**CROSS, "cross_grafts": False, **shared}
    assert claim_plan(tmp_path, [_claim("overlap_mean", ["joint"], (">", 0.0), **overlap)], []).iloc[0]["analyses"] == 0


def test_a_cross_graft_claim_runs_the_analysis_it_reads_on_a_joint_run(tiny_model_dir, tmp_path):
    """`claims run` of a cross-graft claim localizes every task of the joint run and makes the overlap analysis with
    its cross grafts; the claim's number is read back from them (tiny's tasks are all of different types)."""
    run = {"model": str(tiny_model_dir), "steps": 30, "batch_size": 8, "max_length": 32, "lr": 3e-3}
    claim = _claim(
        "graft_specificity",
        ["joint"],
        (">", 0.0),
        run=run,
        localize={"sparsity": 0.05, "method": "scaled", "steps": 1},
        analyze="overlap",
        cross_grafts=True,
    )
    claim = claim.model_copy(update={"evidence": claim.evidence.model_copy(update={"seeds": [1]})})
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    (folder,) = [p.parent for p in claim_runs_dir(tmp_path, claim).glob("*/run.json")]
    payload = json.loads((folder / "analysis" / "overlap-s0.05.json").read_text())["cross_grafts"]
    accuracy, learned = np.array(payload["accuracy"]), learned_tasks(read_json(folder / "run.json"))
    kept = [j for j, name in enumerate(payload["tasks"]) if learned[name]]
    assert kept, "no tiny task was learned: the test would compare nothing"
    expected = [accuracy[j, j] - np.delete(accuracy[:, j], j).mean() for j in kept]
    measured = measure(tmp_path, claim)
    assert measured.values[1] == pytest.approx(np.mean(expected))
    _grafts_gone_are_searched_again(tmp_path, claim, folder)


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "cpu_s"} for row in rows]


def _forget_cross_grafts(folder: Path) -> None:
    """The run as a fresh clone has it after an earlier analysis: localize rows, no graft files, a summary without
    the cross grafts."""
    import shutil

    shutil.rmtree(folder / "grafts")
    record = read_json(folder / "run.json")
    del record["analysis"]["overlap-s0.05"]["cross_grafts"]
    (folder / "run.json").write_text(json.dumps(record))


def _grafts_gone_are_searched_again(tmp_path, claim: Claim, folder: Path) -> None:
    """Graft files are not committed: an analysis that needs them searches them again on the run's weights and goes
    on only if every search ends as localize.json's rows say; otherwise localize.json stays as it was."""
    from clgraft.sweeps.claim_plan import claim_plan

    rows = read_json(folder / "localize.json")["results"]
    assert claim_plan(tmp_path, [claim], []).iloc[0]["localize"] == 0
    _forget_cross_grafts(folder)
    assert claim_plan(tmp_path, [claim], []).iloc[0]["localize"] == 1  # priced: searched again for the analysis
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    assert _strip(read_json(folder / "localize.json")["results"]) == _strip(rows)
    assert "cross_grafts" in read_json(folder / "run.json")["analysis"]["overlap-s0.05"]
    tampered = [{**row, "best_step": row["best_step"] + 1} for row in rows]
    (folder / "localize.json").write_text(json.dumps({"run_config_hash": "x", "results": tampered}))
    before = (folder / "localize.json").read_bytes()
    _forget_cross_grafts(folder)
    with pytest.raises(ClgraftError, match="do not end as localize.json's rows"):
        run_claim(tmp_path, claim, None, lambda s: None, progress=False)
    assert (folder / "localize.json").read_bytes() == before
