"""Every method on the tiny stream (tiny BERT, a few steps), in both head modes where it has them; the Avalanche
path of naive against clgraft's own loop; method options; PackNet's masks; joint's R."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from clgraft.cli import app
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.methods import METHODS
from clgraft.metrics import cl_metrics
from clgraft.runs.runner import RunConfig, Runner

FAST = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}


def _run(model_dir: Path, out: Path, **over) -> dict:
    config = RunConfig(stream="tiny", model=str(model_dir), **{**FAST, **over})
    return Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()


CASES = [
    (m, h)
    for m in METHODS
    for h in ("task", "shared")
    if not (METHODS[m].requires_task_id(METHODS[m].Options()) and h == "shared")
]


@pytest.mark.parametrize("method, head", CASES)
def test_every_method_runs_on_tiny_and_writes_a_valid_record(tiny_model_dir, tmp_path, method, head):
    rec = _run(tiny_model_dir, tmp_path / "r", method=method, head=head)
    assert json.loads((tmp_path / "r" / "run.json").read_text()) == rec
    assert rec["method"]["name"] == method and rec["method"]["options"] == METHODS[method].option_defaults()
    assert len(rec["R"]) == 4 and rec["metrics"] == cl_metrics(rec["R"], fresh_task_heads=head == "task")
    assert all(0.0 <= v <= 1.0 for row in rec["R"] if row is not None for v in row)
    assert rec["metrics"]["acc"] is not None
    if METHODS[method].joint:
        assert rec["R"][1] is None and rec["R"][2] is None and "joint_note" in rec
        assert [t["steps"] for t in rec["train_loss"]] == [3 * FAST["steps"]]
    else:
        assert all(row is not None for row in rec["R"]) and rec["metrics"]["bwt"] is not None
        assert len(rec["train_loss"]) == 3


@pytest.mark.parametrize("method", ["replay", "agem"])
def test_memory_methods_mix_tasks_of_different_lengths(tiny_model_dir, tmp_path, method):
    """Replay and A-GEM batch examples of several tasks together, whose longest examples differ in length."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        rec = _run(tiny_model_dir, tmp_path / "r", method=method, max_length=128)
    assert all(row is not None for row in rec["R"])
    assert not [w for w in shown if "avalanche" in w.filename]  # avalanche's deprecation notices stay out of logs


@pytest.mark.parametrize("head", ["task", "shared"])
def test_naive_through_avalanche_gives_clgraft_s_R(tiny_model_dir, tmp_path, head):
    ours = _run(tiny_model_dir, tmp_path / "ours", head=head)
    theirs = _run(tiny_model_dir, tmp_path / "avalanche", head=head, method_options={"engine": "avalanche"})
    assert np.abs(np.array(ours["R"]) - np.array(theirs["R"])).max() <= 1e-6
    assert [t["first"] for t in ours["train_loss"]] == pytest.approx(
        [t["first"] for t in theirs["train_loss"]], abs=1e-6
    )
    assert ours["config_hash"] != theirs["config_hash"]


def test_avalanche_engine_takes_sgd_and_the_l1_pull_as_clgraft_s_loop_does(tiny_model_dir, tmp_path, invoke):
    """naive through avalanche-lib with --optimizer sgd and --l1-to-init gives the weights of clgraft's own loop
    (whose SGD step and ℓ1 gradient are checked by hand in test_runner.py), which differ from those without the
    pull; both options are recorded. PackNet refuses SGD, whose weight decay would shrink its frozen weights, and
    the adapter methods the ℓ1 pull, which their adapters' parameters would turn into another penalty."""
    import torch

    recipe = {"optimizer": "sgd", "l1_to_init": 1e-2, "lr": 1e-2}
    invoke(
        "run", "--stream", "tiny", "--model", tiny_model_dir, "--steps", FAST["steps"], "--batch-size",
        FAST["batch_size"], "--max-length", FAST["max_length"], "--lr", 1e-2, "--optimizer", "sgd", "--l1-to-init",
        1e-2, "--out", tmp_path / "ours", "--no-progress",
    )  # fmt: skip
    ours = json.loads((tmp_path / "ours" / "run.json").read_text())
    assert ours["config"] == RunConfig(stream="tiny", model=str(tiny_model_dir), **{**FAST, **recipe}).model_dump()
    theirs = _run(tiny_model_dir, tmp_path / "theirs", method_options={"engine": "avalanche"}, **recipe)
    _run(tiny_model_dir, tmp_path / "unpulled", method_options={"engine": "avalanche"}, **{**recipe, "l1_to_init": 0.0})
    assert theirs["config"]["optimizer"] == "sgd" and theirs["config"]["l1_to_init"] == 1e-2
    assert [t["first"] for t in ours["train_loss"]] == pytest.approx([t["first"] for t in theirs["train_loss"]])
    w = {k: load_file(tmp_path / k / "weights" / "task-03.safetensors") for k in ("ours", "theirs", "unpulled")}
    body = [k for k in w["ours"] if k.startswith("body.encoder.")]
    assert all(torch.allclose(w["ours"][k], w["theirs"][k], rtol=0, atol=1e-6) for k in body)
    assert max(float((w["theirs"][k] - w["unpulled"][k]).abs().max()) for k in body) > 1e-4
    with pytest.raises(ClgraftError, match="packnet freezes weights .* SGD's weight decay"):
        _run(tiny_model_dir, tmp_path / "packnet", method="packnet", optimizer="sgd")
    with pytest.raises(ClgraftError, match="--l1-to-init .* seqlora trains adapters"):
        _run(tiny_model_dir, tmp_path / "seqlora", method="seqlora", l1_to_init=1e-2)


def test_packnet_prunes_and_freezes_a_share_per_task(tiny_model_dir, tmp_path):
    import torch

    _run(tiny_model_dir, tmp_path / "r", method="packnet", method_options={"prune_proportion": 0.5})
    key = "body.encoder.layer.0.attention.self.query.task_index"
    owners = [
        torch.bincount(load_file(tmp_path / "r" / "weights" / f"task-0{t}.safetensors")[key].long().flatten())
        for t in (1, 2, 3)
    ]
    n = owners[0].sum().item()
    assert owners[0].tolist() == [n // 2, n // 2]  # task 1 keeps half, half stays free
    assert owners[2].tolist() == [n // 2, n // 4, n // 8, n // 8]


def test_packnet_has_no_shared_head_mode(tiny_model_dir, tmp_path):
    with pytest.raises(ClgraftError, match="needs the task id at test time.*use --head task"):
        _run(tiny_model_dir, tmp_path / "r", method="packnet", head="shared")


def test_options_are_validated_recorded_and_hashed(tiny_model_dir, tmp_path):
    with pytest.raises(ClgraftError, match=r"--opt ewc_lambd: Extra inputs.*takes: ewc_lambda=\[10000.0"):
        _run(tiny_model_dir, tmp_path / "bad", method="ewc", method_options={"ewc_lambd": 5})
    with pytest.raises(ClgraftError, match=r"--opt ewc_lambda: .*numbers"):
        _run(tiny_model_dir, tmp_path / "bad", method="ewc", method_options={"ewc_lambda": "lots"})
    a = _run(tiny_model_dir, tmp_path / "a", method="ewc", method_options={"ewc_lambda": 5})
    b = _run(tiny_model_dir, tmp_path / "b", method="replay")
    c = _run(tiny_model_dir, tmp_path / "c", method="replay", method_options={"per_class": 2})
    assert a["method"]["options"] == {"ewc_lambda": [5.0]} and a["config_hash"] != b["config_hash"]
    assert b["config_hash"] == c["config_hash"]  # the default spelled out is the same configuration


def test_stateful_method_restarts_instead_of_resuming(tiny_model_dir, tmp_path, interrupt_task):
    from clgraft.methods.lwf import Lwf

    undo = interrupt_task(Lwf, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model_dir, tmp_path / "r", method="lwf")
    undo()
    messages = []
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), method="lwf", **FAST)
    resumed = Runner(config, Registry.discover(), None, tmp_path / "r", progress=False, echo=messages.append).run()
    assert "restarting the stream from task 1" in messages[0]
    assert resumed["R"] == _run(tiny_model_dir, tmp_path / "clean", method="lwf")["R"]


def test_methods_list_and_opt_flag(tiny_model_dir, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["methods", "list"])
    assert listed.exit_code == 0
    for name, m in METHODS.items():
        assert name in listed.output and m.paper in listed.output
        assert f"data kept: {m.data_kept}; per task: {m.per_task_state}" in listed.output
    keeping = {name for name, m in METHODS.items() if m.data_kept != "none"}
    assert keeping == {"replay", "agem", "joint"}  # the methods that train on stored examples of finished tasks
    out = tmp_path / "r"
    ran = runner.invoke(
        app,
        [
            "run",
            "--model",
            str(tiny_model_dir),
            "--method",
            "lwf",
            "--opt",
            "alpha=0.5",
            "--opt",
            "temperature=3",
            "--steps",
            "2",
            "--max-length",
            "32",
            "--no-progress",
            "--out",
            str(out),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads((out / "run.json").read_text())["method"]["options"] == {"alpha": 0.5, "temperature": 3.0}


@pytest.mark.parametrize("head, labels", [("task", [0, 1, 2]), ("shared", [0, 0, 0])])
def test_avalanche_experiences_carry_task_ids_only_with_task_heads(tiny_model_dir, head, labels):
    from clgraft.methods.ewc import Ewc

    config = RunConfig(stream="tiny", model=str(tiny_model_dir), head=head, **FAST)
    runner = Runner(config, Registry.discover(), None, Path("/nonexistent"), progress=False)
    method = Ewc(Ewc.Options(), runner._context())
    assert [exp.task_label for exp in method._datasets().train_stream] == labels


def test_independent_trains_every_task_from_theta0(tiny_model_dir, tmp_path):
    """Task 2's weights in an independent run equal training task 2 alone from θ₀ with the same seed."""
    import torch

    from clgraft.methods.base import TaskStep
    from clgraft.methods.naive import Naive
    from clgraft.model.headed import HeadedModel

    _run(tiny_model_dir, tmp_path / "r", method="independent")
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), **FAST)
    runner = Runner(config, Registry.discover(), None, tmp_path / "other", progress=False)
    torch.manual_seed(config.seed)
    model = HeadedModel(runner.backbone.model, runner.head_sizes, config.seed)
    torch.manual_seed(config.seed * 1000 + 1)
    Naive(Naive.Options(), runner._context()).train(model, TaskStep(1, config.seed * 1000 + 1))
    saved = load_file(tmp_path / "r" / "weights" / "task-02.safetensors")
    body = {k: v for k, v in model.state_dict().items() if k.startswith("body.")}
    assert all(torch.equal(saved[k], v) for k, v in body.items())
