"""The mask search's passes: gradients over length-sorted batches equal the official loader's batch means, the
whole search finds the same masks as with the official batches, scores are reused only for an unchanged mask, and
`localize` shows a progress bar."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from clgraft.data.batches import Encoded, eval_batches
from clgraft.grafting.localize import (
    GRAD_TOKENS_CPU,
    LocalizeOptions,
    MaskLearner,
    ScoredTask,
    example_weights,
    gradient_batches,
)
from clgraft.model.headed import BlockView, HeadedModel

CPU = torch.device("cpu")


class OfficialBatches(MaskLearner):
    """The gradient as the search computed it before 2026-12-05, restated: each of the official loader's batches
    collated and padded in its random order, its mean loss divided by the number of batches (activation
    checkpointing, which it also had, changes no bit of the gradient)."""

    def _grad(self, batches: list[list[int]]) -> torch.Tensor:
        self.model.eval()
        self.grads.zero_()
        for index in batches:
            input_ids, mask, labels = self.task.train.collate(index)
            loss = F.cross_entropy(self.model(input_ids, mask, self.task.head), labels + self.task.label_offset)
            (loss / len(batches)).backward()
        return self.grads


def _tiny_case(tiny_run_dir, task_index: int = 2):
    """The tiny run's model after task `task_index` (tiny-trec: 24 train examples), its θ₀ and τ over the blocks."""
    from clgraft.data.registry import Registry
    from clgraft.runs.runner import Runner

    runner, _ = Runner.from_run_dir(tiny_run_dir, Registry.discover(), None)
    task = runner._context().tasks[task_index]
    body = runner.backbone.model
    view = BlockView(body)
    theta0 = view.flatten(dict(body.named_parameters()))
    model = HeadedModel(body, runner.head_sizes, 0)
    model.load_state_dict(load_file(tiny_run_dir / "weights" / f"task-{task_index + 1:02d}.safetensors"))
    tau = view.flatten(dict(body.named_parameters())) - theta0
    return model, view, theta0, tau, ScoredTask(task.head, task.label_offset, task.train, task.dev)


def test_gradient_batches_cover_the_train_set_within_the_token_bound():
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 300, 7, 120, 64, 64, 9, 200, 33, 128] * 3
    ids = [torch.randint(1000, 2000, (n,), generator=gen).tolist() for n in lengths]
    data = Encoded(ids, torch.arange(len(ids)) % 3, 0)
    batches = gradient_batches(ScoredTask("t", 2, data, data), CPU)
    assert sorted(i for index, *_ in batches for i in index.tolist()) == list(range(len(data)))
    for index, input_ids, mask, labels in batches:
        assert input_ids.numel() <= GRAD_TOKENS_CPU or len(index) == 1  # a long example goes alone
        assert torch.equal(mask.sum(1), torch.tensor([lengths[i] for i in index.tolist()]))
        assert torch.equal(labels, data.labels[index] + 2)  # the task's label offset applied once


def test_eval_batches_respect_a_token_bound():
    data = Encoded([[1] * n for n in [3, 3, 3, 3, 50, 50, 200]], torch.zeros(7, dtype=torch.long), 0)
    batches = eval_batches(data, 7, max_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) * max(len(data.ids[i]) for i in b) <= 100 for b in batches if len(b) > 1)
    assert [6] in batches


def test_example_weights_are_the_official_batch_means():
    weights = example_weights([[4, 0, 2], [1, 3]], 6)
    torch.testing.assert_close(weights, torch.tensor([1 / 6, 1 / 4, 1 / 6, 1 / 4, 1 / 6, 0.0]))
    assert float(example_weights([[0, 1], [2, 3]], 4).sum()) == 1.0


def test_gradient_equals_the_official_batch_means(tiny_run):
    """Batches of 5 over 24 examples (the last of 4 weighs its examples more): the length-sorted weighted sum gives
    the official loss's gradient up to float rounding."""
    model, view, theta0, _, scored = _tiny_case(tiny_run)
    with OfficialBatches(model, view, theta0, scored, CPU) as learner:
        batches = learner._epoch(torch.Generator().manual_seed(3), 5)
        want = learner._grad(batches).clone()
    with MaskLearner(model, view, theta0, scored, CPU) as learner:
        got = learner._grad(batches).clone()
    assert len(batches[-1]) == 4 and want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_search_finds_the_masks_of_the_official_batches(tiny_run):
    """Whole searches (every method, uneven batches of 5) against the same searches with the official batches: the
    same masks (Jaccard ≥ 0.999), kept step and scores at every step."""
    model, view, theta0, tau, scored = _tiny_case(tiny_run)
    for method in ("official", "scaled", "stitch"):
        opts = LocalizeOptions(sparsity=0.05, method=method, steps=4, batch_size=5, seed=1)
        found = {}
        for learner_class in (OfficialBatches, MaskLearner):
            with learner_class(model, view, theta0, scored, CPU) as learner:
                found[learner_class] = learner.learn(tau, tau, opts)
        want, got = found[OfficialBatches], found[MaskLearner]
        both, either = int((want.mask & got.mask).sum()), int((want.mask | got.mask).sum())
        assert both / either >= 0.999, method
        assert got.best_step == want.best_step and got.search == want.search
        assert got.lr == pytest.approx(want.lr, rel=1e-5)  # the scaled lr comes from the gradient: float rounding


def test_an_unchanged_mask_is_not_scored_again(tiny_run, monkeypatch):
    """The official lr leaves the rounded mask at γ_base after a short fine-tuning: every step's scores are step 0's,
    computed once."""
    model, view, theta0, tau, scored = _tiny_case(tiny_run)
    scored_masks = []
    real = MaskLearner.score

    def score(self, mask, delta):
        scored_masks.append(mask.clone())
        return real(self, mask, delta)

    monkeypatch.setattr(MaskLearner, "score", score)
    with MaskLearner(model, view, theta0, scored, CPU) as learner:
        found = learner.learn(tau, tau, LocalizeOptions(sparsity=0.05, method="official", steps=3))
    assert [s["changed"] for s in found.search] == [0, 0, 0, 0] and len(scored_masks) == 1
    assert all((s["train"], s["dev"]) == (found.search[0]["train"], found.search[0]["dev"]) for s in found.search)


def test_localize_shows_the_search_steps(tiny_run, invoke):
    args = ("localize", tiny_run, "--sparsity", "0.05", "--task", "tiny-trec", "--steps", "2")
    assert "tiny-trec s=0.05 (mask search)" in invoke(*args)
    assert "mask search" not in invoke(*args, "--no-progress")


def test_a_grafting_run_shows_each_mask_search(tiny_model_dir, tmp_path, invoke):
    """`run --method graft-freeze` names each task's mask search on its progress bar, as `run` names training."""
    args = ("run", "--stream", "tiny", "--model", tiny_model_dir, "--method", "graft-freeze", "--steps", "2")
    shown = invoke(*args, "--batch-size", "4", "--max-length", "32", "--out", tmp_path / "a")
    assert "task 1 tiny-sst2 (mask search)" in shown and "task 3 tiny-trec (mask search)" in shown
    quiet = invoke(*args, "--batch-size", "4", "--max-length", "32", "--out", tmp_path / "b", "--no-progress")
    assert "mask search" not in quiet


def _control(learner: MaskLearner, tau: torch.Tensor, method: str, sparsity: float, seed: int = 0):
    return learner.learn(tau, tau, LocalizeOptions(sparsity=sparsity, method=method, steps=5, seed=seed))


def test_control_regions_are_the_size_asked_and_searched_for_nothing(tiny_run):
    """top-tau is γ_base (the official rule's mask at 0 steps); random is k uniform entries, fixed by the seed; bias
    is the k largest |τ| among the bias entries, restated on the flat vector, or all of them where they are fewer.
    None of them takes a gradient: the record holds step 0 only."""
    model, view, theta0, tau, task = _tiny_case(tiny_run)
    k = math.floor(0.01 * view.numel)
    biases = torch.zeros(view.numel, dtype=torch.bool)
    for name in view.names:
        if name.endswith("bias"):
            biases[view.offsets[name] : view.offsets[name] + view.sizes[name]] = True
    with MaskLearner(model, view, theta0, task, CPU) as learner:
        zero_steps = learner.learn(tau, tau, LocalizeOptions(sparsity=0.01, method="official", steps=0)).mask
        learner._grad = None  # a control that took a gradient would fail here
        top = _control(learner, tau, "top-tau", 0.01)
        assert torch.equal(top.mask, zero_steps) and top.best_step == 0 and [e["step"] for e in top.search] == [0]
        one, again, other = (_control(learner, tau, "random", 0.01, seed).mask for seed in (0, 0, 1))
        assert int(one.sum()) == k and torch.equal(one, again) and not torch.equal(one, other)
        assert int((one & top.mask).sum()) < k // 4  # about k²/N in common with where τ is largest, not k
        bias = _control(learner, tau, "bias", 0.01).mask
        assert int(bias.sum()) == k < int(biases.sum()) and not (bias & ~biases).any()
        kth = tau.abs()[bias].min()
        assert (tau.abs()[biases & ~bias] <= kth).all()  # nothing left out among the biases is larger
        every = _control(learner, tau, "bias", 0.5).mask
        assert torch.equal(every, biases)  # fewer bias entries than ⌊sN⌋: BitFit's whole region


def test_a_grafting_method_with_a_random_region_runs_and_records_it(tiny_model_dir, tmp_path):
    """graft-compose's localizer=random grafts a region chosen blind: no search steps (the scaled search records
    its 10), and tasks' regions that overlap as much as independent random regions of their sizes."""
    from clgraft.data.registry import Registry
    from clgraft.runs.runner import RunConfig, Runner

    settings = dict(stream="tiny", model=str(tiny_model_dir), steps=6, batch_size=4, max_length=32, seed=1)
    records = {}
    for localizer in ("scaled", "random"):
        options = {"sparsity": 0.01, "localizer": localizer}
        config = RunConfig(**settings, method="graft-compose", method_options=options)
        records[localizer] = Runner(config, Registry.discover(), None, tmp_path / localizer, progress=False).run()
    searches = records["random"]["method"]["report"]["mask_search"]
    assert [len(s["steps"]) for s in searches] == [1, 1, 1] and all(s["best_step"] == 0 for s in searches)
    assert [len(s["steps"]) for s in records["scaled"]["method"]["report"]["mask_search"]] == [11, 11, 11]
    blind = records["random"]["regions"]
    assert blind["mean_jaccard"] == pytest.approx(blind["mean_random_jaccard"], rel=0.5)


def test_seed_per_task_seeds_each_tasks_search_apart(tiny_run, invoke):
    """--seed-per-task: task t's search is seeded SEED + t (its S and batches differ from the other tasks'), recorded
    in each row; without it every task uses SEED."""
    import json

    invoke("localize", tiny_run, "--sparsity", "0.01", "--steps", "2", "--seed", "5", "--seed-per-task")
    rows = [r for r in json.loads((tiny_run / "localize.json").read_text())["results"] if r["sparsity"] == 0.01]
    assert [(r["task"], r["seed"], r["seed_per_task"]) for r in rows] == [
        ("tiny-sst2", 5, True),
        ("tiny-agnews", 6, True),
        ("tiny-trec", 7, True),
    ]
    invoke("localize", tiny_run, "--sparsity", "0.01", "--steps", "2", "--seed", "5", "--task", "tiny-trec")
    rows = [r for r in json.loads((tiny_run / "localize.json").read_text())["results"] if r["sparsity"] == 0.01]
    assert [(r["seed"], r["seed_per_task"]) for r in rows if r["task"] == "tiny-trec"] == [(5, False)]
