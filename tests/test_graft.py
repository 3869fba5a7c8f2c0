"""Skill localization: the official update rule by hand, top-k, graft files, apply, ECE, the localize command."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clgraft.cli import app
from clgraft.errors import ClgraftError
from clgraft.grafting.graft import Graft, index_dtype, load
from clgraft.grafting.localize import (
    LocalizeOptions,
    ScoredTask,
    official_step,
    rounded_official,
    top_k_magnitude,
    top_k_mask,
)
from clgraft.metrics.calibration import ece
from clgraft.model.headed import BlockView, tiny_bert


def test_one_official_step_by_hand():
    """S ← S − (1 − 2γ_base)·(lr·g⊙τ)·σ'(S − b), written out for four parameters (b = 10, lr = 1e7)."""
    S = torch.tensor([0.2, 0.9, 0.5, 0.1], dtype=torch.float64)
    base = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    grad_tau = torch.tensor([2e-7, -3e-7, 0.0, 1e-6], dtype=torch.float64)  # ∂L/∂θ ⊙ τ
    # σ'(S − 10) = 5.544545e-05, 1.116409e-04, -, 5.016965e-05 for S = 0.2, 0.9, -, 0.1
    expected = [
        0.2 + 1e7 * 2e-7 * 5.544545018e-05,  # γ_base = 1 flips the sign: 0.200110891
        0.9 + 1e7 * 3e-7 * 1.116408742e-04,  # γ_base = 0, g⊙τ < 0: S rises: 0.900334923
        0.5,  # no gradient, no change
        0.1 - 1e7 * 1e-6 * 5.016964744e-05,  # 0.099498304
    ]
    official_step(S, base, grad_tau, lr=1e7, bias=10.0)
    assert S.tolist() == pytest.approx(expected, rel=1e-9)
    assert S.tolist() == pytest.approx([0.200110891, 0.900334923, 0.5, 0.099498304], abs=1e-9)
    # rounding: γ_base flips only where σ(S − b) > 1/2
    S2 = torch.tensor([10.5, 9.0, 11.0, 0.0])
    assert rounded_official(S2, torch.tensor([True, True, False, False]), 10.0).tolist() == [False, True, True, False]


def test_top_k_is_global_and_selects_floor_sN():
    scores = torch.tensor([0.1, 5.0, -9.0, 3.0, 2.0, 0.0])
    assert top_k_mask(scores, 2).tolist() == [False, True, False, True, False, False]
    assert int(top_k_mask(torch.rand(1000), math.floor(0.013 * 1000)).sum()) == 13


@pytest.fixture()
def body():
    return tiny_bert(100, seed=0)


def _random_graft(body, s: float, seed: int = 0):
    view = BlockView(body)
    theta0 = view.flatten(dict(body.named_parameters()))
    gen = torch.Generator().manual_seed(seed)
    tau = torch.randn(view.numel, generator=gen) * 1e-3
    mask = top_k_mask(tau.abs(), math.floor(s * view.numel))
    head = {"weight": torch.randn(3, 32, generator=gen), "bias": torch.zeros(3)}
    return view, theta0, tau, Graft.from_mask(view, mask, tau, head, {"base_model": "tiny", "sparsity": repr(s)})


def test_graft_file_roundtrip_and_object_api(body, tmp_path):
    view, theta0, tau, graft = _random_graft(body, 0.01)
    size = graft.save(tmp_path / "g.safetensors")
    g = load(tmp_path / "g.safetensors")
    assert g.k == graft.k == math.floor(0.01 * view.numel) and g.bytes == size
    assert g.names() == view.names
    name = view.names[3]
    mask = g.mask(name)
    assert mask.shape == view.shapes[name] and mask.dtype == torch.bool
    expected = view.split(tau)[name][mask]
    assert torch.equal(g.values(name), expected)
    assert g.head["weight"].shape == (3, 32)
    assert size <= 1.2 * g.k * (4 + 4) + 4096


def test_bitmask_is_used_when_smaller(body, tmp_path):
    _, _, _, graft = _random_graft(body, 0.5)
    graft.save(tmp_path / "dense.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "dense.safetensors"), "pt") as f:
        assert "bitmask" in f.keys() and "positions" not in f.keys()
    again = load(tmp_path / "dense.safetensors")
    assert torch.equal(again.positions, graft.positions)


def test_mask_zero_gives_theta0_and_mask_one_gives_theta_t(body):
    view = BlockView(body)
    params = dict(body.named_parameters())
    theta0 = view.flatten(params)
    theta_t = theta0 + torch.randn_like(theta0) * 1e-2
    tau = theta_t - theta0
    head = {"weight": torch.zeros(1), "bias": torch.zeros(1)}
    none = Graft.from_mask(view, torch.zeros(view.numel, dtype=torch.bool), tau, head, {})
    none.apply(body)
    assert torch.equal(view.flatten(params), theta0)
    every = Graft.from_mask(view, torch.ones(view.numel, dtype=torch.bool), tau, head, {})
    every.apply(body)
    assert torch.equal(view.flatten(params), theta0 + tau)
    assert (view.flatten(params) - theta_t).abs().max() <= 1e-8  # θ₀ + (θ_t − θ₀) is θ_t up to rounding


def test_index_dtype_is_the_smallest_that_fits():
    assert [index_dtype(n) for n in (256, 257, 65536, 65537, 2**32 + 1)] == [
        torch.uint8,
        torch.uint16,
        torch.uint16,
        torch.uint32,
        torch.int64,
    ]


def test_damaged_graft_files_are_clear_errors(body, tmp_path):
    _, _, _, graft = _random_graft(body, 0.01)
    path = tmp_path / "g.safetensors"
    graft.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ClgraftError, match="not a readable graft file"):
        load(path)
    with pytest.raises(ClgraftError, match="not found"):
        load(tmp_path / "nope.safetensors")


def test_block_view_binds_gradients(body):
    view = BlockView(body)
    grads = view.bind_grads(body)
    params = dict(body.named_parameters())
    out = body(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.sum()
    out.backward()
    assert torch.equal(grads, view.flatten({n: params[n].grad for n in view.names}))


def test_ece_by_hand():
    # confidences 0.9 (correct), 0.8 (wrong), 0.6 (correct): three different bins
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    logits = probs.log()
    labels = torch.tensor([0, 0, 0])
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.6)) / 3
    assert ece(logits, labels) == pytest.approx(expected, abs=1e-6)


def test_sparsity_outside_0_1_is_refused():
    for s in (0.0, 1.0, -1e-4, 2.0):
        with pytest.raises(ClgraftError, match="must be in \\(0, 1\\)"):
            LocalizeOptions(sparsity=s)


def test_one_learner_step_matches_a_direct_restatement(tiny_run):
    """MaskLearner's step on the tiny model against the rule written out with autograd on a plain copy."""
    import copy

    from safetensors.torch import load_file

    from clgraft.data.registry import Registry
    from clgraft.grafting.localize import MaskLearner
    from clgraft.model.headed import HeadedModel
    from clgraft.runs.runner import Runner

    runner, _ = Runner.from_run_dir(tiny_run, Registry.discover(), None)
    task = runner._context().tasks[2]
    body = runner.backbone.model
    view = BlockView(body)
    theta0 = view.flatten(dict(body.named_parameters()))
    model = HeadedModel(body, runner.head_sizes, 0)
    model.load_state_dict(load_file(tiny_run / "weights" / "task-03.safetensors"))
    reference = copy.deepcopy(model)
    scored = ScoredTask(task.head, 0, task.train, task.dev)
    learner = MaskLearner(model, view, theta0, scored, torch.device("cpu"))
    tau = learner.weights() - theta0
    base = top_k_mask(tau.abs(), 50)
    S = torch.zeros(view.numel)  # S = 0 so that float32 holds the small change exactly enough to compare
    S_before = S.clone()
    batch = [[0, 1, 2, 3]]
    learner.official_update(S, base, tau, batch, LocalizeOptions(sparsity=0.01))  # allocates its own scratch
    # direct: θ̄ = θ₀ + γ(S)τ on the copy, ∂L/∂θ by autograd, then the update for a handful of entries
    gamma = base.float() + (1 - 2 * base.float()) * torch.sigmoid(S_before - 10)
    params = dict(reference.body.named_parameters())
    with torch.no_grad():
        for name, value in view.split(theta0 + gamma * tau).items():
            params[name].copy_(value)
    reference.eval()
    ids, mask, labels = task.train.collate(batch[0])
    torch.nn.functional.cross_entropy(reference(ids, mask, task.head), labels).backward()
    grad = view.flatten({n: params[n].grad for n in view.names})
    picks = torch.cat([torch.nonzero(base).flatten()[:3], torch.topk((grad * tau).abs() * ~base, 3).indices])
    for i in picks.tolist():
        sig = torch.sigmoid(S_before[i] - 10)
        sign = 1 - 2 * float(base[i])
        want_change = -sign * 1e7 * grad[i] * tau[i] * sig * (1 - sig)
        assert float(S[i] - S_before[i]) == pytest.approx(float(want_change), rel=1e-4, abs=1e-15)
    assert not torch.equal(S, S_before)


@pytest.mark.parametrize("method", ["official", "scaled", "stitch", "sparsify"])
def test_localize_writes_grafts_and_results(tiny_run, method):
    result = CliRunner().invoke(
        app,
        [
            "localize",
            str(tiny_run),
            "--sparsity",
            "0.01,0.1",
            "--task",
            "tiny-trec",
            "--steps",
            "3",
            "--method",
            method,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads((tiny_run / "localize.json").read_text())["results"] if r["method"] == method]
    assert [(r["task"], r["sparsity"]) for r in rows] == [("tiny-trec", 0.01), ("tiny-trec", 0.1)]
    for r in rows:
        graft = load(tiny_run / r["graft"])
        assert graft.k == r["k"] and graft.meta["method"] == method and graft.meta["task"] == "tiny-trec"
        assert r["recovered"] == pytest.approx(r["acc_grafted"] / r["acc_finetuned"])
        assert 0 <= r["ece_grafted"] <= 1 and r["search"][0]["step"] == 0 and r["search"][-1]["step"] == 3
    assert (tiny_run / "localize-recovered.png").stat().st_size > 1000
    info = CliRunner().invoke(app, ["graft", "info", str(tiny_run / rows[0]["graft"]), "--json"])
    assert json.loads(info.output)["k"] == rows[0]["k"] and json.loads(info.output)["task"] == "tiny-trec"


def test_graft_applied_to_theta0_reproduces_the_grafted_accuracy(tiny_run, tiny_model_dir):
    """apply() needs only θ₀ and the graft file: the accuracy equals the one localize measured."""
    from clgraft.data.registry import Registry
    from clgraft.runs.runner import Runner
    from clgraft.training.loop import accuracy, predict

    CliRunner().invoke(app, ["localize", str(tiny_run), "--sparsity", "0.05", "--task", "tiny-agnews", "--steps", "2"])
    row = next(
        r
        for r in json.loads((tiny_run / "localize.json").read_text())["results"]
        if r["task"] == "tiny-agnews" and r["sparsity"] == 0.05
    )
    runner, _ = Runner.from_run_dir(tiny_run, Registry.discover(), None)
    task = runner._context().tasks[1]
    from clgraft.model.headed import HeadedModel

    model = HeadedModel(runner.backbone.model, runner.head_sizes, 0)
    graft = load(tiny_run / row["graft"])
    graft.apply(model)
    model.heads[task.head].load_state_dict(graft.head)
    acc = accuracy(predict(model, task.head, task.test, 64, torch.device("cpu")), task.test.labels)
    assert acc == pytest.approx(row["acc_grafted"])
    assert np.isfinite(acc)


def test_localize_errors(tiny_run, tmp_path):
    bad = CliRunner().invoke(app, ["localize", str(tiny_run), "--sparsity", "1.5"])
    assert isinstance(bad.exception, ClgraftError) and "must be in (0, 1)" in str(bad.exception)
    missing = CliRunner().invoke(app, ["localize", str(tmp_path), "--sparsity", "0.1"])
    assert "holds no finished run" in str(missing.exception)
    unknown = CliRunner().invoke(app, ["localize", str(tiny_run), "--task", "sst2"])
    assert "not a task of this run" in str(unknown.exception)


@pytest.mark.parametrize("k", [1, 37, 1064, 20_000, 300_000])
def test_sampled_top_k_equals_full_top_k(k):
    values = torch.randn(1_000_000, generator=torch.Generator().manual_seed(k))
    expected = torch.zeros(values.numel(), dtype=torch.bool)
    expected[torch.topk(values.abs(), k).indices] = True
    assert torch.equal(top_k_mask(values.abs(), k), expected)
    assert torch.equal(top_k_magnitude(values, k), expected)


def test_localize_refuses_missing_weights_and_another_base_model(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    (copy / "weights" / "task-02.safetensors").unlink()
    lacking = CliRunner().invoke(app, ["localize", str(copy), "--task", "tiny-agnews", "--steps", "1"])
    assert isinstance(lacking.exception, ClgraftError)
    assert "task-02.safetensors is missing" in str(lacking.exception)
    record = json.loads((copy / "run.json").read_text())
    record["model"]["sha256"] = "0" * 64
    (copy / "run.json").write_text(json.dumps(record))
    other = CliRunner().invoke(app, ["localize", str(copy), "--steps", "1"])
    assert isinstance(other.exception, ClgraftError) and "load the same base model" in str(other.exception)


@pytest.mark.parametrize("magnitude", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_bracket_scan_matches_torch(magnitude, threads):
    """The compiled pass marks exactly the entries ≥ hi (1) and those in [lo, hi) (2–255, a level that never falls
    as the value grows), and lists the latter in position order with their levels."""
    import numpy as np

    from clgraft.grafting._top_k_scan import band_entries, chunk_size, level_scale, split

    # not a multiple of the 8-entry word, and long enough for several chunks
    scores = torch.randn(300_007, generator=torch.Generator().manual_seed(1))
    x = scores.abs() if magnitude else scores
    flat, flip = scores.numpy(), np.float32(-1 if magnitude else 1)
    marks, size = np.zeros(-(-len(flat) // 8) * 8, dtype=np.uint8), chunk_size(len(flat), 4 * threads)
    sure, band = split(flat, flip, np.float32(2.0), np.float32(2.5), np.float32(level_scale(2.0, 2.5)), marks, size)
    positions, levels = np.empty(int(band.sum()), np.int64), np.empty(int(band.sum()), np.uint8)
    band_entries(marks, size, band, positions, levels)
    in_band = (x >= 2.0) & (x < 2.5)
    marked = torch.from_numpy(marks[: len(flat)])
    assert torch.equal(marked == 1, x >= 2.5) and torch.equal(marked >= 2, in_band)
    assert int(sure.sum()) == int((x >= 2.5).sum()) and int(band.sum()) == int(in_band.sum())
    assert torch.equal(torch.from_numpy(positions), torch.nonzero(in_band).flatten())
    by_value = torch.from_numpy(levels)[torch.argsort(x[in_band])]
    assert torch.all(by_value[1:] >= by_value[:-1]) and by_value[0] == 2 and by_value[-1] == 255


@pytest.mark.parametrize("n", [1000, 1_000_000])
def test_top_k_ties_go_to_the_lowest_positions(n):
    """Equal values at the k-th place: the lowest positions win, on the sampled path (n ≥ 4·2^16) and the exact one
    alike — and where every value is equal the bracket cannot split them, so the exact selection decides."""
    values = torch.randn(n, generator=torch.Generator().manual_seed(0))
    top = torch.topk(values, 10).indices
    tie = float(values[top[4]])
    values[top[5:]] = tie  # the 5th to 10th largest tie
    values[:2] = tie  # and two more at the lowest positions
    assert not {0, 1} & set(top.tolist())
    mask = top_k_mask(values, 7)
    kept = torch.nonzero(mask).flatten().tolist()
    assert len(kept) == 7 and set(top[:4].tolist()) <= set(kept) and {0, 1} <= set(kept)
    tied = sorted([0, 1, *top[4:].tolist()])
    assert sorted(set(kept) - set(top[:4].tolist())) == tied[:3]
    same = top_k_mask(torch.ones(n), 300)
    assert torch.nonzero(same).flatten().tolist() == list(range(300))


def test_top_k_of_bfloat16_scores():
    scores = torch.randn(400_000, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    mask = top_k_mask(scores, 300, magnitude=True)
    kept, dropped = scores[mask].float().abs(), scores[~mask].float().abs()
    assert int(mask.sum()) == 300 and kept.min() >= dropped.max()


def _ood_tasks(folder, shift_space: str = "sent2") -> None:
    """A source task whose `ood` task reads the same test file (so OOD numbers must equal in-distribution ones)."""
    import shutil

    from clgraft.data.registry import builtin_tasks_dir

    shutil.copytree(builtin_tasks_dir() / "tiny" / "data" / "sst2", folder / "data" / "sst2")
    body = (builtin_tasks_dir() / "tiny" / "tiny-sst2.yaml").read_text()
    (folder / "src.yaml").write_text(
        body.replace("task: tiny-sst2", "task: ood-src") + "label_space: sent2\nood: [ood-shift]\n"
    )
    (folder / "shift.yaml").write_text(
        body.replace("task: tiny-sst2", "task: ood-shift") + f"label_space: {shift_space}\n"
    )
    (folder / "stream.yaml").write_text("stream: ood-stream\nversion: 1\norders:\n  default: [ood-src]\n")


def _ood_run(model_dir, tmp_path, invoke, shift_space: str = "sent2"):
    """A run of independent on the OOD test stream; returns (its tasks folder, the run directory)."""
    tasks, run_dir = tmp_path / "tasks", tmp_path / "run"
    _ood_tasks(tasks, shift_space)
    stream = ["--stream", "ood-stream", "--method", "independent", "--model", model_dir, "--tasks-dir", tasks]
    invoke("run", *stream, "--steps", "4", "--out", run_dir, "--no-progress")
    return tasks, run_dir


def test_localize_evaluates_the_ood_tasks_through_the_task_s_head(tiny_model_dir, tmp_path, invoke):
    tasks, run_dir = _ood_run(tiny_model_dir, tmp_path, invoke)
    invoke("localize", run_dir, "--sparsity", "0.05", "--steps", "1", "--tasks-dir", tasks)
    row = json.loads((run_dir / "localize.json").read_text())["results"][0]
    shifted = row["ood"]["ood-shift"]
    assert shifted == {k: row[k] for k in ("acc_finetuned", "acc_grafted", "acc_base")}  # same examples, same numbers


def test_an_ood_task_in_another_label_space_is_refused(tiny_model_dir, tmp_path, invoke):
    tasks, run_dir = _ood_run(tiny_model_dir, tmp_path, invoke, shift_space="other")
    with pytest.raises(ClgraftError, match="ood task ood-shift is in label space 'other'"):
        invoke("localize", run_dir, "--sparsity", "0.05", "--steps", "1", "--tasks-dir", tasks)
