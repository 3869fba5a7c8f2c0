"""The claims registry: the shipped claims are valid, and the report recomputes every number from the records."""

import json
import math

import pytest
from scipy import stats

import clgraft.training.loop
from clgraft.config import RunConfig
from clgraft.data.references import bib_entries
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.methods import parse_method_spec
from clgraft.metrics.seeds import confidence_interval
from clgraft.sweeps.claims import (
    STATISTICS,
    Claim,
    claim_runs_dir,
    load_claims,
    measure,
    report,
    run_claim,
    seed_records,
)


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


def _claim(statistic: str, methods: list[str], expect: tuple[str, float], **evidence) -> Claim:
    return Claim.model_validate(
        {
            "claim": "test-claim",
            "version": 1,
            "paper": "panigrahi2023grafting",
            "where": "Abstract",
            "statement": "a statement",
            "expect": {"op": expect[0], "value": expect[1], "text": "as the paper says"},
            "evidence": {"stream": "tiny", "methods": methods, "seeds": [1, 2, 3], "statistic": statistic, **evidence},
        }
    )


def _write_run(
    folder, method: str, seed: int, forgetting: float, steps: int = 5, options: dict | None = None, tag: str = "", **run
) -> None:
    config = RunConfig(stream="tiny", method=method, method_options=options or {}, seed=seed, steps=steps, **run)
    record = {
        "stream": {"name": "tiny"},
        "method": {"name": method, "options": options or {}},
        "seed": seed,
        "config": config.model_dump(),
        "tasks": [{"test_size": 10}],
        "metrics": {"forgetting": forgetting},
    }
    (folder / f"{method}-{seed}{tag}").mkdir(parents=True)
    (folder / f"{method}-{seed}{tag}" / "run.json").write_text(json.dumps(record))


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
    assert m.verdict == "reproduced"

    other_way = _claim("forgetting_difference", ["naive", "graft-freeze"], ("<=", 0.0), run={"steps": 5})
    assert measure(tmp_path, other_way).verdict == "not reproduced"
    straddles = _claim("forgetting_difference", ["naive", "graft-freeze"], (">=", 0.19), run={"steps": 5})
    assert measure(tmp_path, straddles).verdict == "inconclusive"

    (runs / "graft-freeze-3" / "run.json").unlink()
    assert measure(tmp_path, claim).verdict == "inconclusive"  # two seeds are not enough
    text = report(tmp_path, [claim])
    assert "| 2 | inconclusive |" in text and "2: 0.13" in text and "test 10 per task" in text

    (runs / "graft-freeze-2" / "run.json").unlink()
    text = report(tmp_path, [claim])
    assert "0.19 (n = 1, no interval) | 1 | inconclusive |" in text and "nan" not in text


def test_outlier_claim_reads_the_ablation_at_the_largest_d_against_random_coordinates(tmp_path):
    """subspace_outlier_drop = mean over tasks of acc(−random) − acc(−outliers) at the largest d of the subspace
    analysis; tasks without the ablation do not count."""
    claim = _claim(
        "subspace_outlier_drop", ["independent"], (">", 0.0), run={"steps": 5, "trajectory": 4}, analyze="subspace"
    )
    runs = claim_runs_dir(tmp_path, claim)
    ablations = {1: [(0.50, 0.80), (0.70, 0.75)], 2: [(0.60, 0.80), (0.65, 0.70)], 3: [(0.40, 0.70), (0.80, 0.79)]}
    for seed, pairs in ablations.items():
        _write_run(runs, "independent", seed, 0.0, steps=5, trajectory=4)
        path = runs / f"independent-{seed}" / "run.json"
        record = json.loads(path.read_text())
        tasks = {
            f"task{i}": {
                "finetune_in_subspace": {
                    "by_d": {
                        "2": {"acc": 0.1, "outliers": {"acc_zero_outliers": 0.0, "acc_zero_random": 1.0}},
                        "10": {"acc": 0.5, "outliers": {"acc_zero_outliers": out, "acc_zero_random": rnd}},
                    }
                }
            }
            for i, (out, rnd) in enumerate(pairs)
        }
        tasks["no-ablation"] = {"finetune_in_subspace": {"by_d": {"10": {"acc": 0.5}}}}
        record["analysis"] = {"subspace": {**tasks, "details": {"t": 4}}}
        path.write_text(json.dumps(record))
    m = measure(tmp_path, claim)
    expected = {s: sum(r - o for o, r in pairs) / len(pairs) for s, pairs in ablations.items()}
    assert m.values == pytest.approx(expected)
    assert (m.mean, m.low, m.high) == pytest.approx(confidence_interval(list(expected.values())))
    assert m.verdict == "reproduced"  # 0.175, 0.125, 0.145: the interval is above 0

    # zeroing the outliers costs exactly what zeroing as many random coordinates costs
    no_effect = {1: [(0.5, 0.5)] * 2, 2: [(0.6, 0.6)] * 2, 3: [(0.4, 0.4)] * 2}
    for seed, pairs in no_effect.items():
        path = runs / f"independent-{seed}" / "run.json"
        record = json.loads(path.read_text())
        for task, (out, rnd) in zip(list(record["analysis"]["subspace"].values())[:2], pairs, strict=True):
            task["finetune_in_subspace"]["by_d"]["10"]["outliers"] = {"acc_zero_outliers": out, "acc_zero_random": rnd}
        path.write_text(json.dumps(record))
    m = measure(tmp_path, claim)
    assert m.values == {1: 0.0, 2: 0.0, 3: 0.0} and m.verdict == "not reproduced"  # a strict effect: 0 is not > 0
    touching = _claim(
        "subspace_outlier_drop", ["independent"], (">=", 0.0), run={"steps": 5, "trajectory": 4}, analyze="subspace"
    )
    assert measure(tmp_path, touching).verdict == "reproduced"  # while 0 is ≥ 0


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
    assert sorted(first.values) == [1, 2, 3] and first.mean is not None

    calls = []
    monkeypatch.setattr(clgraft.training.loop, "train_task", lambda *a, **k: calls.append(1))
    run_claim(tmp_path, claim, None, lambda s: None, progress=False)  # everything is there: nothing trains
    assert not calls and measure(tmp_path, claim).values == first.values


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
        v is None
        for v in [
            STATISTICS["critical_layers_of_full"].read(r, critical.evidence)
            for r in seed_records(tmp_path, critical)[0].values()
        ]
    )
    run_claim(tmp_path, critical, None, lambda s: None, progress=False)  # closeness again, now with k = 1
    measured = measure(tmp_path, critical)
    for seed, records in seed_records(tmp_path, critical)[0].items():
        ((record, _),) = records.values()
        tasks = [t for k, t in record["analysis"]["closeness"].items() if k != "details"]
        shares = [t["critical_layers"]["of_full"] for t in tasks]
        assert measured.values[seed] == pytest.approx(sum(shares) / len(shares))
        assert all(t["critical_layers"]["k"] == 1 for t in tasks)
    assert measure(tmp_path, plain).values  # the plain closeness claim still reads the same runs
    with pytest.raises(ValueError, match="needs `critical_layers: k`"):
        _claim("critical_layers_of_full", ["independent"], (">=", 0.95), analyze="closeness")


def test_a_claim_that_requires_a_hub_model_or_gpu_says_so_with_its_command_and_is_run_only_by_name(
    invoke, tmp_path, monkeypatch
):
    claim = next(c for c in load_claims() if c.claim == "grafting-recovery-prompt")
    m = measure(tmp_path, claim)
    assert m.verdict == "needs GPU/network" and "`clgraft claims run grafting-recovery-prompt`" in m.why
    assert "model roberta-base, head prompt, 200 steps" in m.setting and "test ≤ 500 per task" in m.setting

    ran = []
    monkeypatch.setattr("clgraft.sweeps.claims.run_claim", lambda results, claim, *a, **k: ran.append(claim.claim))
    out = invoke("claims", "run", "--results", tmp_path)
    assert "grafting-recovery-prompt: skipped, requires GPU/network" in out
    assert "grafting-recovery-prompt" not in ran and "grafting-recovery" in ran
    invoke("claims", "run", "grafting-recovery-prompt", "--results", tmp_path)
    assert ran[-1] == "grafting-recovery-prompt"
