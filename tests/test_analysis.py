"""`clgraft analyze overlap|subspace|closeness` on an independent run of the tiny stream with a saved trajectory."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clgraft.analysis.overlap import _layer_counts
from clgraft.cli import app
from clgraft.errors import ClgraftError


@pytest.fixture(scope="module")
def analysis_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis-run")
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--stream",
            "tiny",
            "--method",
            "independent",
            "--model",
            str(tiny_model_dir),
            "--steps",
            "8",
            "--batch-size",
            "4",
            "--max-length",
            "32",
            "--lr",
            "1e-3",
            "--trajectory",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_overlap_needs_grafts_then_reports_matrices_and_correlations(analysis_run, invoke):
    with pytest.raises(ClgraftError, match="clgraft localize"):
        invoke("analyze", "overlap", analysis_run, "--sparsity", "0.05")
    invoke("localize", analysis_run, "--sparsity", "0.05", "--steps", "1")
    output = invoke("analyze", "overlap", analysis_run, "--sparsity", "0.05")
    assert "Spearman" in output
    payload = json.loads((analysis_run / "analysis" / "overlap-s0.05.json").read_text())
    overlap, jaccard = np.array(payload["overlap"]), np.array(payload["jaccard"])
    assert payload["tasks"] == ["tiny-sst2", "tiny-agnews", "tiny-trec"]
    assert np.allclose(np.diag(overlap), 1) and np.allclose(jaccard, jaccard.T)
    assert np.allclose(np.array(payload["null_overlap"])[:, 0], 0.05, rtol=0.05)
    assert len(payload["per_layer"]) == 2  # the tiny BERT's two blocks
    refs = payload["references"]
    assert set(refs) == {"transfer", "tau_cosine", "embedding_cosine", "same_type"}
    assert np.allclose(np.diag(np.array(refs["tau_cosine"])), 1)
    assert (analysis_run / "analysis" / "overlap-s0.05.png").stat().st_size > 0
    record = json.loads((analysis_run / "run.json").read_text())
    assert set(record["analysis"]["overlap-s0.05"]["correlations_with_jaccard"]) == set(refs)


def test_layer_counts_come_from_one_pass_and_match_numpy():
    rng = np.random.default_rng(3)
    masks = rng.random((3, 1000)) < 0.2
    layers = {"embeddings": (0, 13), "layer 0": (13, 501), "layer 1": (501, 997)}  # 997..1000 in no layer
    whole, per_layer = _layer_counts(masks, layers)
    assert np.array_equal(whole, masks.astype(int) @ masks.T)
    for name, (lo, hi) in layers.items():
        part = masks[:, lo:hi].astype(int)
        assert np.array_equal(per_layer[name], part @ part.T), name


def test_subspace_spectra_finetuning_and_outliers(analysis_run, invoke):
    output = invoke(
        "analyze", "subspace", analysis_run, "--t", "4,8", "--finetune-in-subspace", "2,4", "--task", "tiny-sst2"
    )
    assert "d90@t=8" in output
    entry = json.loads((analysis_run / "analysis" / "subspace.json").read_text())["tasks"]["tiny-sst2"]
    spec = entry["spectra"]["8"]
    assert np.isclose(sum(spec["all"]["energy"]), 1) and 1 <= spec["all"]["d90"] <= spec["all"]["d99"] <= 8
    assert len(spec["layers"]) == 2
    by_d = entry["finetune_in_subspace"]["by_d"]
    assert set(by_d) == {"2", "4"} and 0 <= by_d["4"]["acc"] <= 1 and by_d["4"]["z_norm"] > 0  # z was trained
    assert by_d["2"]["d"] == 2 and by_d["4"]["d"] == 4  # the bases had the dimensions asked
    outliers = by_d["4"]["outliers"]
    # Adam's near-sign updates make bounded distributions; a tiny model may have no 3σ coordinate at all
    assert 0 <= outliers["outlier_fraction"] < 0.1
    assert 0 <= outliers["acc_zero_outliers"] <= 1 and 0 <= outliers["acc_zero_random"] <= 1
    assert (analysis_run / "analysis" / "subspace.png").is_file()
    centred = spec["centred"]
    assert np.isclose(sum(centred["energy"]), 1) and 1 <= centred["d90"] <= centred["d99"] <= 7  # rank ≤ t − 1
    section = entry["finetune_in_subspace"]
    assert section["basis_part"] == 0.5 and section["basis_checkpoints"] == 4
    assert 0 <= section["endpoint_in_basis"] < 1  # the first half of the trajectory does not contain its end
    summary = json.loads((analysis_run / "run.json").read_text())["analysis"]["subspace"]["tiny-sst2"]
    assert summary["d90_centred"]["8"] == centred["d90"]


def test_random_basis_is_orthonormal_and_seeded():
    from clgraft.analysis.subspace import random_basis

    V = random_basis(3, 500, seed=4)
    assert V.shape == (3, 500) and torch.allclose(V @ V.T, torch.eye(3), atol=1e-5)
    assert torch.equal(V, random_basis(3, 500, seed=4)) and not torch.equal(V, random_basis(3, 500, seed=5))


def test_subspace_controls_fine_tune_in_a_random_another_tasks_and_no_subspace(analysis_run, invoke):
    """--controls adds, at the largest d, intrinsic fine-tuning in a random subspace of that d, in the next task's
    subspace and with d = 0 (the head alone), each with its share of full fine-tuning; a second call reuses them."""
    with pytest.raises(ClgraftError, match="give --finetune-in-subspace"):
        invoke("analyze", "subspace", analysis_run, "--t", "4", "--controls")
    args = ["analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "2", "--task", "tiny-trec"]
    output = invoke(*args, "--controls")
    assert "control random (d=2)" in output and "control head_only (d=0)" in output
    section = json.loads((analysis_run / "analysis" / "subspace.json").read_text())["tasks"]["tiny-trec"]
    controls = section["finetune_in_subspace"]["controls"]
    assert set(controls) == {"random", "other_task", "head_only"}
    assert controls["random"]["d"] == 2 and controls["head_only"]["d"] == 0
    assert controls["other_task"]["task"] == "tiny-sst2"  # the last task's other is the first
    full = section["finetune_in_subspace"]["full_acc"]
    assert all(c["of_full"] == pytest.approx(c["acc"] / full) for c in controls.values())
    assert "control" not in invoke(*args, "--controls")  # computed before: kept, not trained again


def test_a_basis_from_the_whole_trajectory_contains_its_end(analysis_run, invoke):
    """Why the default basis leaves out the end: with every checkpoint the final update is in the span exactly."""
    invoke(
        "analyze",
        "subspace",
        analysis_run,
        "--t",
        "4",
        "--finetune-in-subspace",
        "4",
        "--basis-part",
        "1",
        "--task",
        "tiny-agnews",
    )
    entry = json.loads((analysis_run / "analysis" / "subspace.json").read_text())["tasks"]["tiny-agnews"]
    assert np.isclose(entry["finetune_in_subspace"]["endpoint_in_basis"], 1, atol=1e-4)
    with pytest.raises(ClgraftError, match="the basis has 2 checkpoints"):
        invoke("analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "3", "--task", "tiny-agnews")


def test_subspace_merges_earlier_results_part_by_part(analysis_run, invoke):
    path = analysis_run / "analysis" / "subspace.json"
    invoke("analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "2", "--task", "tiny-trec")
    before = json.loads(path.read_text())["tasks"]["tiny-trec"]
    output = invoke("analyze", "subspace", analysis_run, "--t", "4", "--task", "tiny-trec", "--task", "tiny-agnews")
    assert "tiny-trec: analysed before with these settings; kept" in output
    after = json.loads(path.read_text())["tasks"]
    assert after["tiny-trec"] == before and list(after["tiny-agnews"]["spectra"]) == ["4"]
    assert list(after) == [n for n in ("tiny-sst2", "tiny-agnews", "tiny-trec") if n in after]  # stream order
    invoke("analyze", "subspace", analysis_run, "--t", "8", "--task", "tiny-trec")  # another t, no fine-tuning asked
    trec = json.loads(path.read_text())["tasks"]["tiny-trec"]
    assert list(trec["spectra"]) == ["4", "8"] and trec["spectra"]["4"] == before["spectra"]["4"]
    assert trec["finetune_in_subspace"] == before["finetune_in_subspace"]  # kept, not dropped
    output = invoke(
        "analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "1,2", "--task", "tiny-trec"
    )
    assert "subspace d=1:" in output and "subspace d=2:" not in output  # only the new d is trained
    by_d = json.loads(path.read_text())["tasks"]["tiny-trec"]["finetune_in_subspace"]["by_d"]
    assert list(by_d) == ["1", "2"] and by_d["2"] == before["finetune_in_subspace"]["by_d"]["2"]


def test_a_subspace_section_from_before_the_float64_bases_is_computed_again(analysis_run, invoke):
    """Sections written before `basis_gram` was recorded had bases a float32 Gram matrix could cut short; they are
    not reused."""
    path = analysis_run / "analysis" / "subspace.json"
    args = ["analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "1", "--task", "tiny-sst2"]
    invoke(*args)
    record = json.loads(path.read_text())
    assert record["tasks"]["tiny-sst2"]["finetune_in_subspace"]["basis_gram"] == "float64"
    del record["tasks"]["tiny-sst2"]["finetune_in_subspace"]["basis_gram"]
    path.write_text(json.dumps(record))
    assert "replaces the earlier one" in invoke(*args)
    assert "analysed before with these settings; kept" in invoke(*args)


def test_closeness_and_critical_layers(analysis_run, invoke):
    output = invoke("analyze", "closeness", analysis_run, "--critical-layers", "1", "--task", "tiny-trec")
    assert "critical layers" in output
    entry = json.loads((analysis_run / "analysis" / "closeness.json").read_text())["tasks"]["tiny-trec"]
    assert set(entry["per_layer"]) == {"layer 0", "layer 1"}
    assert all(v["rel_l2"] > 0 for v in entry["per_layer"].values())
    crit = entry["critical_layers"]
    assert crit["k"] == 1 and len(crit["layers"]) == 1 and 0 <= crit["acc"] <= 1
    assert (analysis_run / "analysis" / "closeness.csv").read_text().startswith("parameter,")


def test_critical_layer_controls_are_the_least_moved_random_and_no_blocks():
    """bottom is the k least moved, random k drawn by the seed (the same for the same seed, in model order), and
    head_only trains no block."""
    from clgraft.analysis.closeness import control_layers

    order = [f"h.{i}" for i in range(6)]  # any block names: GPT-2's, say
    ranked = ["h.4", "h.5", "h.0", "h.2", "h.1", "h.3"]  # most moved first
    chosen = control_layers(ranked, 2, 7, order)
    assert chosen["bottom"] == ["h.1", "h.3"] and chosen["head_only"] == []
    assert chosen["random"] == control_layers(ranked, 2, 7, order)["random"] and len(set(chosen["random"])) == 2
    assert chosen["random"] == [b for b in order if b in chosen["random"]]  # model order
    draws = {tuple(control_layers(ranked, 2, seed, order)["random"]) for seed in range(20)}
    assert len(draws) > 5  # the seed draws, not a fixed pick


def test_a_closeness_analysis_stopped_midway_keeps_its_fine_tunes_and_trains_only_the_rest(
    tiny_model_dir, tmp_path, invoke, monkeypatch
):
    """analysis/closeness.json is written after each task (run.json's summary only at the end): stopped in its second
    task's critical-layers fine-tune, the analysis keeps the first task's; made again, it trains only the other two
    and writes what an uninterrupted analysis writes."""
    import shutil

    import clgraft.analysis.closeness as module

    run_dir = tmp_path / "run"
    settings = ["--model", tiny_model_dir, "--steps", "4", "--batch-size", "4", "--max-length", "32", "--lr", "1e-3"]
    invoke("run", "--stream", "tiny", "--method", "independent", *settings, "--out", run_dir, "--no-progress")
    analyse, details = (
        ("analyze", "closeness", run_dir, "--critical-layers", "1"),
        run_dir / "analysis" / "closeness.json",
    )

    def summary() -> dict | None:
        found = json.loads((run_dir / "run.json").read_text()).get("analysis", {}).get("closeness")
        return found and {k: v for k, v in found.items() if k != "cpu_s"}

    invoke(*analyse)
    whole, whole_summary = json.loads(details.read_text())["tasks"], summary()
    shutil.rmtree(run_dir / "analysis")
    record = json.loads((run_dir / "run.json").read_text())
    del record["analysis"]
    (run_dir / "run.json").write_text(json.dumps(record))
    trains, calls = module.train_task, []

    def training(*args, stop_at: int | None = None, **kwargs):
        calls.append(args)
        if len(calls) == stop_at:
            raise RuntimeError("stopped")
        return trains(*args, **kwargs)

    monkeypatch.setattr(module, "train_task", lambda *a, **k: training(*a, stop_at=2, **k))
    with pytest.raises(RuntimeError, match="stopped"):
        invoke(*analyse)
    kept = json.loads(details.read_text())["tasks"]
    assert list(kept) == ["tiny-sst2"] and kept["tiny-sst2"]["critical_layers"] == whole["tiny-sst2"]["critical_layers"]
    assert summary() is None  # run.json says nothing of an analysis that did not finish
    calls.clear()
    monkeypatch.setattr(module, "train_task", lambda *a, **k: training(*a, **k))
    invoke(*analyse)
    assert len(calls) == 2  # tiny-agnews's and tiny-trec's critical-layers fine-tunes
    assert json.loads(details.read_text())["tasks"] == whole and summary() == whole_summary


def test_critical_layers_with_controls_trains_each_control_beside_them(analysis_run, invoke):
    """--controls adds the least-moved, random and head-only fine-tunes to the critical-layers entry, each with its
    share of full fine-tuning's accuracy, keeping the earlier critical fine-tune."""
    invoke("analyze", "closeness", analysis_run, "--critical-layers", "1", "--task", "tiny-trec")
    output = invoke("analyze", "closeness", analysis_run, "--critical-layers", "1", "--controls", "--task", "tiny-trec")
    assert "control head_only (no block)" in output and "bottom" in output
    assert "trained: acc" not in output  # the critical blocks' fine-tune of the earlier call is kept, not redone
    entry = json.loads((analysis_run / "analysis" / "closeness.json").read_text())["tasks"]["tiny-trec"]
    crit, least = entry["critical_layers"], min(entry["per_layer"], key=lambda la: entry["per_layer"][la]["rel_l2"])
    assert set(crit["controls"]) == {"bottom", "random", "head_only"}
    assert crit["controls"]["bottom"]["layers"] == [least] != crit["layers"]
    assert crit["controls"]["head_only"]["layers"] == [] and len(crit["controls"]["random"]["layers"]) == 1
    for c in crit["controls"].values():
        assert c["of_full"] == pytest.approx(c["acc"] / crit["full_acc"])


def test_bad_analysis_input_fails_in_one_line(analysis_run, tmp_path, invoke):
    with pytest.raises(ClgraftError, match="no finished run"):
        invoke("analyze", "closeness", tmp_path)
    with pytest.raises(ClgraftError, match="saved 8 checkpoints"):
        invoke("analyze", "subspace", analysis_run, "--t", "16")
    with pytest.raises(ClgraftError, match="at most max --t"):
        invoke("analyze", "subspace", analysis_run, "--t", "4", "--finetune-in-subspace", "8")
    with pytest.raises(ClgraftError, match="not a task of this run"):
        invoke("analyze", "closeness", analysis_run, "--task", "nope")


def test_a_joint_run_is_localized_task_by_task_and_its_regions_compared(tiny_model_dir, tmp_path, invoke):
    """Multi-task localization: every task's region is searched in the one joint model (τ = θ_joint − θ₀, that
    task's data and head), and the overlap analysis compares them; analyses of per-task fine-tuning refuse."""
    run_dir = tmp_path / "joint"
    invoke(
        "run",
        "--stream",
        "tiny",
        "--method",
        "joint",
        "--model",
        tiny_model_dir,
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--max-length",
        "32",
        "--lr",
        "1e-3",
        "--out",
        run_dir,
        "--no-progress",
    )
    output = invoke("localize", run_dir, "--sparsity", "0.05", "--steps", "1")
    assert "train_ft" in output and "dev_ft" in output  # θ_t's fit of its few-shot splits, in the printed table
    rows = json.loads((run_dir / "localize.json").read_text())["results"]
    record = json.loads((run_dir / "run.json").read_text())
    assert [r["task"] for r in rows] == ["tiny-sst2", "tiny-agnews", "tiny-trec"]
    assert [r["acc_finetuned"] for r in rows] == record["R"][-1]  # each task read off the one joint model
    invoke("analyze", "overlap", run_dir, "--sparsity", "0.05")
    summary = json.loads((run_dir / "run.json").read_text())["analysis"]["overlap-s0.05"]
    assert set(summary["correlations_with_jaccard"]) == {"embedding_cosine", "same_type"}
    with pytest.raises(ClgraftError, match="a joint run has one model for all tasks"):
        invoke("analyze", "closeness", run_dir)
    output = invoke("analyze", "overlap", run_dir, "--sparsity", "0.05", "--cross-grafts")
    assert "union of all γ" in output and (run_dir / "analysis" / "overlap-s0.05-cross.png").stat().st_size > 0
    _cross_grafts_restated(run_dir, rows, record)


def _cross_grafts_restated(run_dir, rows, record):
    """Every cross graft scored again from the graft files alone: θ₀ (a fresh body) + region i's τ entries, read
    through task j's head of the joint model; the union as θ₀ + τ on every entry some region holds."""
    from safetensors.torch import load_file

    from clgraft.analysis.run_files import open_run
    from clgraft.data.loading import data_dir_from
    from clgraft.data.registry import Registry
    from clgraft.grafting.graft import load
    from clgraft.training.loop import split_accuracy

    payload = json.loads((run_dir / "analysis" / "overlap-s0.05.json").read_text())["cross_grafts"]
    summary = json.loads((run_dir / "run.json").read_text())["analysis"]["overlap-s0.05"]["cross_grafts"]
    run = open_run(run_dir, Registry.discover(), data_dir_from(None), lambda s: None)
    grafts = [load(run_dir / row["graft"]) for row in rows]
    heads = {k: v for k, v in load_file(next((run_dir / "weights").glob("*.safetensors"))).items() if "heads." in k}

    def score(apply, j):
        model = run.fresh_model()
        model.load_state_dict(heads, strict=False)
        apply(model)
        task = run.tasks[j]
        return split_accuracy(model, task.head, task.test, task.label_offset, 64, torch.device("cpu"))

    t = len(grafts)
    joint = run.fresh_model()
    joint.load_state_dict(load_file(next((run_dir / "weights").glob("*.safetensors"))))
    for task, row in zip(run.tasks, rows, strict=True):  # θ_t's fit of its few-shot splits, as the search scores
        for split in ("train", "dev"):
            data = getattr(task, split)
            fit = split_accuracy(joint, task.head, data, task.label_offset, 16, torch.device("cpu"))
            assert row[f"{split}_finetuned"] == fit
    assert payload["accuracy"] == [[score(g.apply, j) for j in range(t)] for g in grafts]
    assert [payload["accuracy"][j][j] for j in range(t)] == [r["acc_grafted"] for r in rows]  # localize's own score
    assert payload["base"] == [r["acc_base"] for r in rows] and payload["full"] == record["R"][-1]
    delta = torch.zeros(grafts[0].numel)
    for g in grafts:
        delta[g.positions] = g.tau  # one τ: a shared entry holds the same value in every graft
    assert payload["union_k"] == len(set().union(*(g.positions.tolist() for g in grafts)))

    def add_union(model):
        body = dict(model.body.named_parameters())
        with torch.no_grad():
            for name, part in run.view.split(delta).items():
                body[name].add_(part)

    assert payload["union"] == [score(add_union, j) for j in range(t)]
    state = load_file(next((run_dir / "weights").glob("*.safetensors")))
    tau = run.blocks(state) - run.theta0
    order = torch.rand(grafts[0].numel, generator=torch.Generator().manual_seed(record["config"]["seed"]))

    def add_random(k):  # θ₀ + τ on the first k entries of the seeded random order
        def add(model):
            body = dict(model.body.named_parameters())
            with torch.no_grad():
                region = torch.zeros(grafts[0].numel, dtype=torch.bool)
                region[order.argsort(descending=True)[:k]] = True
                for name, part in run.view.split(torch.where(region, run.theta0 + tau, run.theta0)).items():
                    body[name].copy_(part)

        return add

    assert payload["random_own"] == [score(add_random(g.k), j) for j, g in enumerate(grafts)]
    assert payload["random_union"] == [score(add_random(payload["union_k"]), j) for j in range(t)]
    types = payload["types"]
    for j, name in enumerate(payload["tasks"]):
        column = [payload["accuracy"][i][j] for i in range(t) if i != j]
        other = [a for a, i in zip(column, [i for i in range(t) if i != j], strict=True) if types[i] != types[j]]
        entry = summary["tasks"][name]
        assert entry["own"] == payload["accuracy"][j][j] and entry["union"] == payload["union"][j]
        assert entry["other_type"] == pytest.approx(sum(other) / len(other)) if other else entry["other_type"] is None


def test_cross_grafts_stopped_midway_resume_from_the_rows_they_scored(tiny_model_dir, tmp_path, invoke, monkeypatch):
    """Cross grafts stopped after their first row keep it in a scratch file; run again, they score only the rest,
    write what an uninterrupted analysis writes and remove the file. Rows kept for other regions are not reused."""
    import clgraft.analysis.cross_grafts as module

    run_dir = tmp_path / "joint"
    common = ["--model", tiny_model_dir, "--steps", "6", "--batch-size", "4", "--max-length", "32", "--lr", "1e-3"]
    invoke("run", "--stream", "tiny", "--method", "joint", *common, "--out", run_dir, "--no-progress")
    invoke("localize", run_dir, "--sparsity", "0.05", "--steps", "1")
    analyse = ("analyze", "overlap", run_dir, "--sparsity", "0.05", "--cross-grafts")
    details, scratch = (
        run_dir / "analysis" / "overlap-s0.05.json",
        run_dir / "analysis" / "overlap-s0.05-cross.scratch.json",
    )
    invoke(*analyse)
    whole = json.loads(details.read_text())["cross_grafts"]
    scores, calls = module.split_accuracy, []

    def scoring(*args, stop_at: int | None = None):
        calls.append(args)
        if len(calls) == stop_at:
            raise RuntimeError("stopped")
        return scores(*args)

    monkeypatch.setattr(module, "split_accuracy", lambda *a: scoring(*a, stop_at=5))  # in region 1's row
    with pytest.raises(RuntimeError, match="stopped"):
        invoke(*analyse)
    kept = json.loads(scratch.read_text())
    assert list(kept["pieces"]) == ["region 0"] and kept["pieces"]["region 0"] == whole["accuracy"][0]
    calls.clear()
    monkeypatch.setattr(module, "split_accuracy", lambda *a: scoring(*a))
    output = invoke(*analyse)
    assert "1 rows kept from an analysis stopped midway" in output
    assert len(calls) == 3 * 3 + 4 * 3 - 3  # T² + 4T evaluations less region 0's row
    assert json.loads(details.read_text())["cross_grafts"] == whole and not scratch.exists()

    scratch.write_text(json.dumps({**kept, "regions": "other", "pieces": {"region 0": [0.0, 0.0, 0.0]}}))
    calls.clear()
    invoke(*analyse)
    assert len(calls) == 3 * 3 + 4 * 3 and json.loads(details.read_text())["cross_grafts"] == whole


def test_a_tasks_cross_graft_entry_averages_the_other_regions_by_type():
    """own = the diagonal; other_type (same_type) = the mean of column j over the other tasks of another (the same)
    type, None where there is none; the per-task grafts are read at j."""
    from clgraft.analysis.cross_grafts import task_summary

    matrix = [[0.9, 0.5, 0.4], [0.7, 0.8, 0.6], [0.3, 0.2, 0.7]]
    types = ["sentiment", "sentiment", "topic"]
    per_task = {"union": [0.1, 0.2, 0.3]}
    assert task_summary(matrix, types, 0, per_task) == {
        "own": 0.9,
        "other_type": 0.3,
        "same_type": 0.7,
        "union": 0.1,
    }
    assert task_summary(matrix, types, 2, per_task) == {
        "own": 0.7,
        "other_type": pytest.approx(0.5),
        "same_type": None,
        "union": 0.3,
    }


def test_cross_grafts_refuse_a_run_that_fine_tuned_each_task_on_its_own(analysis_run, invoke):
    invoke("localize", analysis_run, "--sparsity", "0.05", "--steps", "1")
    with pytest.raises(ClgraftError, match="cross grafts read every task's region from one multi-task model"):
        invoke("analyze", "overlap", analysis_run, "--sparsity", "0.05", "--cross-grafts")


def test_closeness_controls_give_the_distance_to_the_other_tasks_fine_tunes(analysis_run, tiny_model_dir, invoke):
    """--controls alone (no fine-tune) adds the reference scale: per block, the mean over the other tasks u of
    ‖θ_t − θ_u‖₁/D, ‖θ_t − θ_u‖₂/‖θ₀‖₂ and 1 − cos(θ_t, θ_u), restated here from the weight files; run.json's
    summary carries every measure of both."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    output = invoke("analyze", "closeness", analysis_run, "--controls")
    assert "to the other tasks' fine-tunes" in output
    assert "trained: acc" not in output and ": control " not in output  # the reference trains nothing
    names = ["tiny-sst2", "tiny-agnews", "tiny-trec"]
    weights = sorted((analysis_run / "weights").glob("*.safetensors"))
    assert len(weights) == len(names)
    after = [load_file(w) for w in weights]
    theta0 = {k: v.detach() for k, v in AutoModel.from_pretrained(tiny_model_dir).named_parameters()}
    block = [k for k in after[0] if k.startswith("body.") and ".layer.1." in k]
    entry = json.loads((analysis_run / "analysis" / "closeness.json").read_text())["tasks"]["tiny-trec"]
    got = entry["reference"]["layer 1"]
    flat = [torch.cat([a[k].double().flatten() for k in block]) for a in after]
    start = torch.cat([theta0[k.removeprefix("body.")].double().flatten() for k in block])
    l1 = np.mean([float((flat[2] - flat[u]).abs().mean()) for u in (0, 1)])
    rel = np.mean([float((flat[2] - flat[u]).norm() / start.norm()) for u in (0, 1)])
    cos = np.mean([1 - float(torch.nn.functional.cosine_similarity(flat[2], flat[u], dim=0)) for u in (0, 1)])
    assert (got["l1"], got["rel_l2"], got["angular"]) == pytest.approx((l1, rel, cos), rel=1e-6)
    assert got["rel_l2"] > 0 and got["rel_l2"] != entry["per_layer"]["layer 1"]["rel_l2"]
    summary = json.loads((analysis_run / "run.json").read_text())["analysis"]["closeness"]["tiny-trec"]
    assert set(summary) >= {"rel_l2_by_layer", "l1_by_layer", "angular_by_layer", "reference"}
    assert summary["reference"]["angular_by_layer"]["layer 1"] == got["angular"]
