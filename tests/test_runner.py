"""The sequential runner on the tiny stream with a tiny random BERT: record, determinism, resume, reuse, NaN."""

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.methods.naive import Naive
from clgraft.metrics import cl_metrics
from clgraft.results.report import report_run
from clgraft.runs.runner import RunConfig, Runner, head_layout

FAST = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}


def _run(model_dir: Path, out: Path, **over) -> dict:
    config = RunConfig(stream="tiny", model=str(model_dir), **{**FAST, **over})
    return Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()


def test_run_record_has_everything_later_steps_need(tiny_model_dir, tmp_path):
    rec = _run(tiny_model_dir, tmp_path / "r")
    on_disk = json.loads((tmp_path / "r" / "run.json").read_text())
    assert on_disk == rec
    T = 3
    assert len(rec["R"]) == T + 1 and all(len(row) == T for row in rec["R"])
    assert rec["metrics"] == cl_metrics(rec["R"], fresh_task_heads=True) and rec["metrics"]["fwt"] is None
    assert "untrained random head" in rec["metrics_undefined"]["fwt"]
    assert [t["name"] for t in rec["tasks"]] == ["tiny-sst2", "tiny-agnews", "tiny-trec"]
    assert rec["stream"]["citation"] == "clgraft" and rec["tasks"][0]["citation"] == "socher2013sst"
    assert [t["test_size"] for t in rec["tasks"]] == [48, 48, 48] and rec["tasks"][0]["version"] == 1
    for key in ("config", "config_hash", "seed", "model", "versions", "hardware", "wall_s"):
        assert rec[key] is not None, key
    assert 0 < rec["cpu_s"] <= rec["wall_s"] * (os.cpu_count() or 1) + 1  # core-seconds of the same span
    assert rec["model"]["sha256"] and rec["versions"]["torch"] and rec["config"]["steps"] == 4
    weights = sorted((tmp_path / "r" / "weights").glob("*.safetensors"))
    assert [w.name for w in weights] == ["task-01.safetensors", "task-02.safetensors", "task-03.safetensors"]
    state = load_file(weights[0])
    assert "heads.tiny-sst2.weight" in state and any(k.startswith("body.encoder.layer.0.") for k in state)
    assert not (tmp_path / "r" / "progress.json").exists()


def test_same_seed_same_R_and_weights_different_seed_differs(tiny_model_dir, tmp_path):
    a, b = _run(tiny_model_dir, tmp_path / "a"), _run(tiny_model_dir, tmp_path / "b")
    assert a["R"] == b["R"] and a["config_hash"] == b["config_hash"]
    wa, wb = (load_file(tmp_path / d / "weights" / "task-03.safetensors") for d in ("a", "b"))
    assert all((wa[k] == wb[k]).all() for k in wa)
    c = _run(tiny_model_dir, tmp_path / "c", seed=7)
    assert c["R"] != a["R"] and c["config_hash"] != a["config_hash"]


def test_interrupted_run_resumes_to_the_same_R(tiny_model_dir, tmp_path, interrupt_task):
    full = _run(tiny_model_dir, tmp_path / "full")
    undo = interrupt_task(Naive, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model_dir, tmp_path / "cut")
    progress = json.loads((tmp_path / "cut" / "progress.json").read_text())
    assert len(progress["R"]) == 3 and not (tmp_path / "cut" / "run.json").exists()
    undo()
    messages = []
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), **FAST)
    resumed = Runner(config, Registry.discover(), None, tmp_path / "cut", progress=False, echo=messages.append).run()
    assert any("resuming after task 2" in m for m in messages)
    assert resumed["R"] == full["R"]


def test_finished_run_is_not_recomputed(tiny_model_dir, tmp_path, monkeypatch):
    first = _run(tiny_model_dir, tmp_path / "r")
    monkeypatch.setattr(Naive, "train", lambda *a: pytest.fail("a finished run was recomputed"))
    messages = []
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), **FAST)
    again = Runner(config, Registry.discover(), None, tmp_path / "r", progress=False, echo=messages.append).run()
    assert again == first and "not recomputed" in messages[0]
    with pytest.raises(ClgraftError, match="belongs to another configuration"):
        _run(tiny_model_dir, tmp_path / "r", seed=1)


def test_nan_loss_stops_with_a_message_and_keeps_finished_tasks(tiny_model_dir, tmp_path, monkeypatch):
    import clgraft.training.loop as train

    real = train.nn.CrossEntropyLoss

    class NanOnTrec(real):
        def forward(self, logits, labels):
            loss = super().forward(logits, labels)
            return loss * float("nan") if logits.shape[-1] == 6 else loss

    monkeypatch.setattr(train.nn, "CrossEntropyLoss", NanOnTrec)
    with pytest.raises(ClgraftError, match=r"loss became nan at step 1 of task 3 tiny-trec.*tasks 1..2 are kept"):
        _run(tiny_model_dir, tmp_path / "r")
    assert len(json.loads((tmp_path / "r" / "progress.json").read_text())["R"]) == 3
    assert (tmp_path / "r" / "weights" / "task-02.safetensors").exists()


def test_shared_head_uses_one_label_space(tiny_model_dir, tmp_path):
    rec = _run(tiny_model_dir, tmp_path / "r", head="shared")
    assert rec["heads"] == {"mode": "shared", "sizes": {"shared": 2 + 4 + 6}}
    reg = Registry.discover()
    tasks = [reg.task(n) for n in ("sst2", "mr", "trec")]
    sizes, placement = head_layout(tasks, "shared")
    assert sizes == {"shared": 8} and placement["mr"] == ("shared", 0) and placement["trec"] == ("shared", 2)


def test_trajectory_saves_evenly_spaced_block_checkpoints(tiny_model_dir, tmp_path):
    _run(tiny_model_dir, tmp_path / "r", trajectory=2)
    for t in (1, 2, 3):
        files = sorted((tmp_path / "r" / "trajectory" / f"task-{t:02d}").glob("*.safetensors"))
        assert [f.name for f in files] == ["step-000002.safetensors", "step-000004.safetensors"]
    state = load_file(files[0])
    assert state and all(".layer." in k for k in state)


def test_max_test_takes_a_fixed_subset(tiny_model_dir, tmp_path):
    a = _run(tiny_model_dir, tmp_path / "a", max_test=10)
    assert [t["test_size"] for t in a["tasks"]] == [10, 10, 10]


def test_cuda_without_gpu_is_a_clear_error(tiny_model_dir, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ClgraftError, match="no CUDA GPU; use --device cpu"):
        _run(tiny_model_dir, tmp_path / "r", device="cuda")


@pytest.mark.parametrize("plan", ["seen", "final"])
def test_evaluation_plan_skips_entries_but_not_the_metrics_it_promises(tiny_model_dir, tmp_path, plan):
    full = _run(tiny_model_dir, tmp_path / "all")
    part = _run(tiny_model_dir, tmp_path / plan, evaluate=plan)
    assert part["config_hash"] != full["config_hash"]
    evaluated = [(i, j) for i, row in enumerate(part["R"]) for j, v in enumerate(row) if v is not None]
    assert len(evaluated) < 12 and all(part["R"][i][j] == full["R"][i][j] for i, j in evaluated)
    promised = (
        ("acc", "la", "bwt", "fwt", "forgetting", "avg_incremental_acc")
        if plan == "seen"
        else ("acc", "la", "bwt", "fwt")
    )
    assert {k: part["metrics"][k] for k in promised} == {k: full["metrics"][k] for k in promised}
    plots = report_run(tmp_path / plan)  # entries never evaluated are drawn as gaps, not errors
    assert all(p.stat().st_size > 0 for p in plots[:2])


def test_default_evaluation_plan_leaves_the_config_hash_as_before(tiny_model_dir, tmp_path):
    """Records written before --evaluate existed must stay reusable: the default is not hashed."""
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), **FAST)
    runner = Runner(config, Registry.discover(), None, tmp_path / "r", progress=False, echo=lambda s: None)
    assert "evaluate" not in runner._hash_payload()["config"]


def test_the_test_subset_method_is_part_of_a_capped_runs_identity(tiny_model_dir, tmp_path):
    """A capped run's identity names how its test examples were chosen, so that records made on the earlier
    (unstratified) subset are another configuration; an uncapped run's identity, and so its hash, is as before."""
    from clgraft.runs.identity import identity, record_identity

    capped, whole = RunConfig(stream="tiny", max_test=10), RunConfig(stream="tiny")
    assert record_identity({"config": capped.model_dump()}) != identity(capped)  # a record from before
    assert record_identity({"config": whole.model_dump()}) == identity(whole)
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), max_test=10, **FAST)
    runner = Runner(config, Registry.discover(), None, tmp_path / "r", progress=False, echo=lambda s: None)
    assert runner._hash_payload()["test_subset"] == "stratified"


def test_a_record_is_identified_by_the_options_it_ran_with_not_todays_defaults():
    """An EWC record of the days when λ = 1e6 was the default (config.method_options empty, the run's resolved
    options in method.options) is not today's default EWC (a λ grid chosen on dev): sweeps would skip the cell, and
    the leaderboard would pool the two, if it were."""
    from clgraft.runs.identity import identity, record_identity

    today = RunConfig(stream="tiny", method="ewc")
    old = {"config": today.model_dump(), "method": {"name": "ewc", "options": {"ewc_lambda": 1e6}}}
    assert record_identity(old) != identity(today)
    assert record_identity(old) == identity(today.model_copy(update={"method_options": {"ewc_lambda": [1e6]}}))
    new = {"config": today.model_dump(), "method": {"name": "ewc", "options": {"ewc_lambda": [1e4, 1e6, 1e8]}}}
    assert record_identity(new) == identity(today)


def test_a_record_of_a_methods_older_revision_is_another_configuration():
    """A-GEM's projection was fixed (revision 2): its records made before carry no revision and are not today's
    A-GEM (a sweep reruns them, the leaderboard keeps them apart); a method no fix has changed keeps its identity."""
    from clgraft.runs.identity import identity, record_identity

    agem = RunConfig(stream="tiny", method="agem")
    options = {"patterns_per_exp": 8, "sample_size": 8}
    old = {"config": agem.model_dump(), "method": {"name": "agem", "options": options}}
    assert identity(agem)["method_revision"] == 2
    assert record_identity(old) != identity(agem)
    assert record_identity({**old, "method": {**old["method"], "revision": 2}}) == identity(agem)
    naive = RunConfig(stream="tiny")
    assert "method_revision" not in identity(naive)
    assert record_identity({"config": naive.model_dump(), "method": {"name": "naive", "options": {}}}) == identity(
        naive
    )


def test_a_run_directory_finds_its_own_user_tasks(tiny_model_dir, tmp_path, invoke):
    """A run of a stream from --tasks-dir keeps copies of its task files (and bundled data): localize and analyze
    work on it without --tasks-dir, even after the user's folder is gone."""
    import shutil

    from clgraft.data.registry import builtin_tasks_dir

    user = tmp_path / "mine"
    shutil.copytree(builtin_tasks_dir() / "tiny", user)
    for path in user.glob("*.yaml"):
        path.write_text(path.read_text().replace("tiny-", "my-").replace("stream: tiny", "stream: mytiny"))
    out = tmp_path / "run"
    invoke(
        "run", "--stream", "mytiny", "--model", tiny_model_dir, "--steps", "2", "--batch-size", "4",
        "--max-length", "32", "--tasks-dir", user, "--out", out, "--no-progress",
    )  # fmt: skip
    shutil.rmtree(user)
    record = json.loads((out / "run.json").read_text())
    assert len(record["task_files"]) == 4 and all((out / f).is_file() for f in record["task_files"])
    invoke("localize", out, "--sparsity", "0.05", "--steps", "1", "--task", "my-trec")
    assert json.loads((out / "localize.json").read_text())["results"][0]["task"] == "my-trec"


def test_multi_tensor_adamw_gives_the_bits_of_the_per_parameter_loop(tiny_model_dir):
    """The default optimiser is faster than torch's CPU default but must not change a number."""
    import torch

    from clgraft.model.headed import HeadedModel, load_backbone
    from clgraft.training.loop import TrainOptions, make_optimizer

    gen = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(1000, 20000, (4, 12), generator=gen), torch.tensor([0, 1, 1, 0])
    opts = TrainOptions(steps=3, batch_size=4, lr=1e-3, head_lr=1e-2)
    finals = []
    for loop in (True, False):
        model = HeadedModel(load_backbone(str(tiny_model_dir)).model, {"t": 2}, seed=0)
        optimizer = make_optimizer(model, ["t"], opts)
        if loop:
            groups = [{"params": g["params"], "lr": g["lr"]} for g in optimizer.param_groups]
            optimizer = torch.optim.AdamW(groups, weight_decay=0.0, foreach=False)
            assert not optimizer.param_groups[0]["foreach"]
        for _ in range(3):
            torch.nn.functional.cross_entropy(model(ids, torch.ones_like(ids), "t"), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(finals[0], finals[1])


def test_fused_optimizer_is_a_configuration_of_its_own(tiny_model_dir, tmp_path):
    plain = Runner(RunConfig(stream="tiny", model=str(tiny_model_dir), **FAST), Registry.discover(), None, tmp_path)
    fused_config = RunConfig(stream="tiny", model=str(tiny_model_dir), optimizer="adamw-fused", **FAST)
    fused = Runner(fused_config, Registry.discover(), None, tmp_path / "f", progress=False, echo=lambda s: None)
    assert "optimizer" not in plain._hash_payload()["config"]  # records from before the option stay reusable
    assert "l1_to_init" not in plain._hash_payload()["config"]
    assert fused.hash != plain.hash and fused.opts.optimizer == "adamw-fused"
    record = fused.run()
    assert record["config"]["optimizer"] == "adamw-fused" and len(record["train_loss"]) == 3


@pytest.mark.parametrize("option, value", [("optimizer", "sgd"), ("l1_to_init", 1e-4)])
def test_sgd_and_the_l1_pull_are_hashed_only_when_set(option, value):
    """Set, each is part of a run's identity (another config hash); at its default it is left out (HASHED_WHEN_SET),
    so that a record written before the option existed keeps its identity and config hash."""
    from clgraft.config import HASHED_WHEN_SET
    from clgraft.io.records import config_hash
    from clgraft.runs.identity import identity, record_identity

    default = RunConfig(stream="tiny", method="graft-compose")
    chosen = default.model_copy(update={option: value})
    assert option in HASHED_WHEN_SET and option not in identity(default)["config"]
    assert identity(chosen)["config"][option] == value
    assert config_hash(identity(chosen)) != config_hash(identity(default))
    before = {k: v for k, v in default.model_dump().items() if k != "l1_to_init"}  # as records were written
    assert config_hash(record_identity({"config": before})) == config_hash(identity(default))
    assert record_identity({"config": chosen.model_dump()}) == identity(chosen)


def _tiny_task():
    """Six random examples of different lengths of a 2-way task."""
    import torch

    from clgraft.data.batches import Encoded

    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(1000, 20000, (n,), generator=gen).tolist() for n in (5, 9, 7, 12, 6, 8)]
    return Encoded(ids, torch.tensor([0, 1, 0, 1, 0, 1]), 0)


def _steps(model, opts, names: list[str]) -> tuple[list[dict], list[float]]:
    """Train on the tiny task with torch seeded: (θ, gradient) of the named parameters before each optimiser step,
    then the final θ (gradient None); and the recorded losses."""
    import torch

    from clgraft.training.loop import train_task

    params = dict(model.named_parameters())
    seen = []

    def record():
        seen.append({n: (params[n].detach().clone(), params[n].grad.clone()) for n in names})

    torch.manual_seed(0)  # the same dropout draws in every call
    losses = train_task(
        model, "t", _tiny_task(), opts, seed=0, device=torch.device("cpu"), progress=False, grad_hook=record
    )
    return [*seen, {n: (params[n].detach().clone(), None) for n in names}], losses


def test_sgd_is_the_official_update_without_momentum(tiny_model_dir, tmp_path):
    """--optimizer sgd: each step is θ' = θ − lr·(g + wd·θ), with wd = 0 on biases and LayerNorm weights (the
    official code's no_decay) and head_lr on the head. Two steps: momentum would add to the second. A run with
    --optimizer sgd trains so, with the official weight decay 1e-4."""
    from clgraft.model.headed import HeadedModel, load_backbone
    from clgraft.training.loop import TrainOptions

    model = HeadedModel(load_backbone(str(tiny_model_dir)).model, {"t": 2}, seed=0)
    opts = TrainOptions(steps=2, batch_size=2, lr=1e-2, head_lr=1e-1, weight_decay=0.1, optimizer="sgd")
    names = [
        "body.encoder.layer.0.attention.self.query.weight",
        "body.encoder.layer.1.output.dense.bias",
        "body.encoder.layer.0.output.LayerNorm.weight",
        "heads.t.weight",
        "heads.t.bias",
    ]
    states, _ = _steps(model, opts, names)
    assert len(states) == 3
    for before, after in zip(states, states[1:], strict=False):  # each state and the next
        for n in names:
            theta, g = before[n]
            lr = opts.head_lr if n.startswith("heads.") else opts.lr
            wd = 0.0 if "bias" in n or "LayerNorm.weight" in n else opts.weight_decay
            # θ − lr·(g + wd·θ), in torch's add(x, alpha=a) = self + a·x, as torch's kernels round it
            assert after[n][0].equal(theta.add(g.add(theta, alpha=wd), alpha=-lr)), n
            assert wd == 0 or not after[n][0].equal(theta.add(g, alpha=-lr))  # the decay shows
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), optimizer="sgd", l1_to_init=1e-3, **FAST)
    runner = Runner(config, Registry.discover(), None, tmp_path, progress=False, echo=lambda s: None)
    assert (runner.opts.optimizer, runner.opts.weight_decay, runner.opts.l1_to_init) == ("sgd", 1e-4, 1e-3)


def test_l1_pull_adds_c_times_the_sign_of_the_distance_to_the_start_to_the_body_gradient(tiny_model_dir):
    """l1_to_init = c adds c·sign(θ − θ_start) to every trained body parameter's gradient, θ_start the weights
    where train_task began; nothing to the head's, and nothing to the recorded loss. The first step starts at
    θ_start (sign 0), so both runs reach the same θ₁ and the second step's gradients differ by the pull alone."""
    import copy

    import torch

    from clgraft.model.headed import HeadedModel, load_backbone
    from clgraft.training.loop import TrainOptions

    model = HeadedModel(load_backbone(str(tiny_model_dir)).model, {"t": 2}, seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = list(start)
    c = 0.25
    (plain, plain_losses), (pulled, pulled_losses) = (
        _steps(copy.deepcopy(model), TrainOptions(steps=2, batch_size=2, lr=1e-2, head_lr=1e-1, l1_to_init=k), names)
        for k in (0.0, c)
    )
    assert pulled_losses == plain_losses  # the task's loss, at the same θ₀ and θ₁
    assert all(plain[0][n][1].equal(pulled[0][n][1]) for n in names)  # at θ_start the pull's gradient is 0
    for n in names:
        theta, g = pulled[1][n]
        assert theta.equal(plain[1][n][0])
        pull = torch.zeros_like(g) if n.startswith("heads.") else c * torch.sign(theta - start[n])
        assert g.equal(plain[1][n][1] + pull), n
        assert ".encoder." not in n or pull.any(), n  # every block tensor has moved, so the check has teeth


def test_linear_probe_fits_the_head_on_a_frozen_body(tiny_model_dir):
    """LP of LP-FT: the loss falls, the head moves, not one body weight changes."""
    import torch

    from clgraft.data.batches import Encoded
    from clgraft.model.headed import HeadedModel, load_backbone
    from clgraft.training.loop import TrainOptions, probe_head

    model = HeadedModel(load_backbone(str(tiny_model_dir)).model, {"t": 2}, seed=0)
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(1000, 20000, (n,), generator=gen).tolist() for n in (5, 9, 7, 12, 6, 8)]
    data = Encoded(ids, torch.tensor([0, 1, 0, 1, 0, 1]), 0)
    body = {k: v.clone() for k, v in model.body.state_dict().items()}
    head = model.heads["t"].weight.detach().clone()
    opts = TrainOptions(steps=1, batch_size=2, lr=1e-3, head_lr=1e-1, probe_steps=30)
    losses = probe_head(model, "t", data, opts, torch.device("cpu"))
    assert len(losses) == 30 and losses[-1] < losses[0]
    assert all(torch.equal(body[k], v) for k, v in model.body.state_dict().items())
    assert not torch.equal(head, model.heads["t"].weight)


def test_lp_ft_is_a_configuration_of_its_own_and_needs_clgraft_s_loop(tiny_model_dir, tmp_path):
    plain = _run(tiny_model_dir, tmp_path / "plain", method="independent")
    lp = _run(tiny_model_dir, tmp_path / "lp", method="independent", probe_steps=20)
    assert lp["config_hash"] != plain["config_hash"] and lp["train_loss"] != plain["train_loss"]
    with pytest.raises(ClgraftError, match="--probe-steps .* ewc trains through avalanche-lib"):
        _run(tiny_model_dir, tmp_path / "ewc", method="ewc", probe_steps=5)


def test_every_entry_of_R_is_recomputed_from_the_kept_predictions(tiny_model_dir, tmp_path):
    from clgraft.runs.predictions import FILE, load, recompute_R

    for method, plan in [("naive", "all"), ("ewc", "seen"), ("joint", "all")]:
        rec = _run(tiny_model_dir, tmp_path / method, method=method, evaluate=plan)  # row 0 shared after the first
        assert recompute_R(tmp_path / method / FILE, rec["R"]) == rec["R"]
    arrays = load(tmp_path / "naive" / FILE)
    assert arrays["row.00.task.00"].shape == (48,) and arrays["labels.02"].shape == (48,)
    seen = load(tmp_path / "ewc" / FILE)
    assert "row.01.task.00" in seen and "row.01.task.02" not in seen  # seen: no entry for a task not learned yet
