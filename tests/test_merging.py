"""Task arithmetic, TIES and DARE on hand-made task vectors, and the merge method's dev-only selection."""

import json

import pytest
import torch

from clgraft.data.registry import Registry
from clgraft.grafting.merging import combine_vectors, dare_drop, trim_top_k
from clgraft.runs.runner import RunConfig, Runner

A = torch.tensor([0.5, -2.0, 0.1, 3.0])
B = torch.tensor([-1.0, -1.0, 0.2, -0.5])


def _run(model_dir, out, **settings) -> dict:
    config = RunConfig(stream="tiny", model=str(model_dir), **settings)
    return Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()


def test_task_arithmetic_is_lambda_times_the_sum():
    assert (0.5 * combine_vectors([A, B], "task-arithmetic")).tolist() == [-0.25, -1.5, 0.15000000596046448, 1.25]


def test_ties_trims_elects_and_takes_the_disjoint_mean():
    assert trim_top_k(A, 0.5).tolist() == [0.5, -2.0, 0.0, 3.0]  # ⌊0.5·4⌋ + 1 = 3 entries
    # trimmed at density 0.5: A → [0.5, −2, 0, 3], B → [−1, −1, 0, −0.5]
    # elected signs of the sums [−0.5, −3, 0, 2.5]: [−, −, majority (−), +]; agreeing entries averaged
    assert combine_vectors([A, B], "ties", density=0.5).tolist() == [-1.0, -1.5, 0.0, 3.0]


def test_ties_trim_keeps_floor_dn_plus_one_entries_as_the_official_kthvalue():
    """The official `topk_values_mask` keeps |τ| ≥ the (n − ⌊K·n⌋)-th smallest |τ|: ⌊K·n⌋ + 1 distinct entries, with
    ⌊K·n⌋ taken on the float product (0.29 · 100 = 28.999…, so 29 entries, not 30)."""
    tau = torch.tensor([3.0, -10.0, 8.0, 1.0, -6.0, 9.0, 2.0, -4.0, 7.0, 5.0])
    assert trim_top_k(tau, 0.2).tolist() == [0.0, -10.0, 8.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0]
    assert int((trim_top_k(tau, 0.25) != 0).sum()) == 3  # ⌊2.5⌋ + 1
    assert trim_top_k(tau, 0.0).tolist() == [0.0, -10.0] + [0.0] * 8  # ⌊0⌋ + 1: the largest only
    assert torch.equal(trim_top_k(tau, 1.0), tau)  # tall_masks' K = 100: no trim
    ramp = torch.arange(1.0, 101.0)
    assert int((trim_top_k(ramp, 0.29) != 0).sum()) == 29 and int((trim_top_k(ramp, 0.3) != 0).sum()) == 31


def test_ties_trim_keeps_every_entry_tied_at_the_threshold():
    tau = torch.tensor([4.0, 2.0, -2.0, 1.0, 0.5, 0.25, 0.125, 0.0, 0.0, 0.0])
    # ⌊0.1·10⌋ + 1 = 2: the threshold is the second largest |τ| = 2, and both entries of magnitude 2 stay
    assert trim_top_k(tau, 0.1).tolist() == [4.0, 2.0, -2.0] + [0.0] * 7


def test_ties_gives_an_entry_whose_trimmed_values_cancel_the_majority_sign():
    """Official `resolve_zero_signs(sign, "majority")`: an entry summing to exactly 0 takes the sign of the elected
    signs' sum over the whole vector, so [0.5, −0.5, 0] merges to 0.5 (not 0); an entry with no value is 0 still.
    The trims here keep every non-zero value (two per vector), so only the election is tested."""
    taus = [torch.tensor([0.5, 1.0, 0.0, 0.0]), torch.tensor([-0.5, 2.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0, 0.0])]
    # sums [0, 3, 3, 0]: signs [0, +, +, 0], majority + → entry 0 keeps 0.5; entry 3 has nothing to keep
    assert combine_vectors(taus, "ties", density=0.5).tolist() == [0.5, 1.5, 3.0, 0.0]
    assert combine_vectors([-t for t in taus], "ties", density=0.5).tolist() == [-0.5, -1.5, -3.0, 0.0]


def test_ties_takes_the_negative_values_where_the_majority_sign_is_zero_too():
    """Official `disjoint_merge` keeps τ > 0 where the sign is + and τ < 0 otherwise: an entry left at sign 0 (the
    majority is 0 as well) takes the mean of its negative values."""
    taus = [torch.tensor([0.5, 1.0, 0.0, 0.0]), torch.tensor([-0.5, 0.0, -1.0, 0.0])]
    # sums [0, 1, −1, 0]: signs [0, +, −, 0], majority sign(0) = 0
    assert combine_vectors(taus, "ties", density=0.5).tolist() == [-0.5, 1.0, -1.0, 0.0]


def test_ties_entry_whose_values_are_all_trimmed_is_zero_and_a_cancelling_one_keeps_the_majority():
    taus = [torch.tensor([3.0, 2.0, 1.0, 0.1]), torch.tensor([-3.0, 2.0, 1.0, -0.2])]
    # trims at 0.5 keep 3 of 4: [3, 2, 1, 0], [−3, 2, 1, 0]; sums [0, 4, 2, 0]; majority +
    assert combine_vectors(taus, "ties", density=0.5).tolist() == [3.0, 2.0, 1.0, 0.0]


def _official_ties(stacked: torch.Tensor, k: float) -> torch.Tensor:
    """TIES as prateeky2806/ties-merging `src/utils/merge_utils.py` runs it with `topk{K}_mass_dis-mean`, restated:
    `topk_values_mask` row-wise on the (tasks, d) matrix, `resolve_sign` by mass, `resolve_zero_signs` "majority",
    `disjoint_merge` "mean" (K a fraction here; the official takes K > 1 as a percentage)."""
    d = stacked.shape[1]
    kth = stacked.abs().kthvalue(d - int(d * k), dim=1, keepdim=True).values
    trimmed = stacked * (stacked.abs() >= kth)
    signs = torch.sign(trimmed.sum(dim=0))
    majority = torch.sign(signs.sum())
    signs[signs == 0] = majority
    selected = trimmed * torch.where(signs.unsqueeze(0) > 0, trimmed > 0, trimmed < 0)
    return selected.sum(dim=0) / torch.clamp((selected != 0).sum(dim=0).float(), min=1)


@pytest.mark.parametrize("seed", range(6))
def test_ties_equals_the_official_functions_on_random_vectors(seed):
    """Random task vectors, half of them on a coarse grid (ties at the threshold, cancelling sums, zeros)."""
    gen = torch.Generator().manual_seed(seed)
    tasks, d = 2 + seed % 3, 37 + 11 * seed
    stacked = torch.randn(tasks, d, generator=gen)
    if seed % 2:
        stacked = torch.randint(-3, 4, (tasks, d), generator=gen).float() / 2
    for density in (0.0, 0.1, 0.2, 0.29, 0.5, 0.9):
        merged = combine_vectors(list(stacked), "ties", density=density)
        assert torch.equal(merged, _official_ties(stacked, density)), density


def test_dare_drops_and_rescales():
    gen = torch.Generator().manual_seed(0)
    out = dare_drop(torch.ones(10_000), 0.9, gen)
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 10.0))
    assert 0.08 < kept.float().mean() < 0.12
    assert combine_vectors([A], "dare", drop=0.0).tolist() == A.tolist()


def test_merge_method_records_its_dev_grid(tiny_model_dir, tmp_path):
    config = RunConfig(
        stream="tiny",
        model=str(tiny_model_dir),
        method="merge",
        steps=3,
        batch_size=4,
        max_length=32,
        method_options={"merge": "ties", "lambdas": [0.5, 1.0], "densities": [0.2]},
    )
    rec = Runner(config, Registry.discover(), None, tmp_path, progress=False, echo=lambda s: None).run()
    report = rec["method"]["report"]
    assert report["grid"] == [{"lam": 0.5, "density": 0.2}, {"lam": 1.0, "density": 0.2}]
    assert [c["after_task"] for c in report["chosen_on_dev"]] == [1, 2, 3]
    assert all(c["lam"] in (0.5, 1.0) and 0 <= c["dev_acc"] <= 1 for c in report["chosen_on_dev"])


def test_max_magnitude_by_hand_later_task_wins_ties():
    from clgraft.grafting.merging import max_magnitude

    taus = [
        torch.tensor([1.0, -3.0, 2.0, 0.0]),
        torch.tensor([-2.0, 3.0, 0.5, 0.0]),
        torch.tensor([0.5, 0.0, -2.0, 1.0]),
    ]
    assert max_magnitude(taus).tolist() == [-2.0, 3.0, -2.0, 1.0]  # |3| ties |−3|: the later 3; |−2| ties |2|: −2
    folded = max_magnitude([max_magnitude(taus[:2]), taus[2]])
    assert torch.equal(folded, max_magnitude(taus))  # folding task by task is the same merge


def test_magmax_evaluates_the_merge_and_trains_on_from_the_sequential_weights(tiny_model_dir, tmp_path):
    """Weights after task i are θ₀ + λ_i·maxmag(τ_1..τ_i) on the blocks (θ₀ elsewhere), with τ_t from the
    sequential fine-tuning — which is naive's, since each task trains on from θ_{t−1}, not from the merged model."""
    from safetensors.torch import load_file

    from clgraft.grafting.merging import max_magnitude
    from clgraft.model.headed import BlockView, load_backbone

    fast = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}
    magmax = _run(tiny_model_dir, tmp_path / "m", method="magmax", **fast)
    _run(tiny_model_dir, tmp_path / "n", method="naive", **fast)
    body = load_backbone(str(tiny_model_dir)).model
    view = BlockView(body)
    theta0 = view.flatten(dict(body.named_parameters()))

    def blocks(run: str, after: int) -> torch.Tensor:
        state = load_file(tmp_path / run / "weights" / f"task-{after:02d}.safetensors")
        return view.flatten({k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")})

    taus = [blocks("n", t) - theta0 for t in (1, 2, 3)]
    lams = [c["lam"] for c in magmax["method"]["report"]["chosen_on_dev"]]
    for i in (1, 2, 3):
        expected = theta0 + lams[i - 1] * max_magnitude(taus[:i])
        torch.testing.assert_close(blocks("m", i), expected, rtol=0, atol=1e-6)


def test_tall_masks_and_consensus_by_hand():
    from clgraft.methods.tall_masks import consensus_mask, tall_mask

    t1, t2 = torch.tensor([1.0, 0.1, -2.0]), torch.tensor([0.5, 1.0, 2.0])
    total = t1 + t2  # [1.5, 1.1, 0]
    m1, m2 = tall_mask(t1, total, 0.5), tall_mask(t2, total, 0.5)
    assert m1.tolist() == [True, False, True]  # 1 > .25, .1 > .5 no, 2 > 1
    assert m2.tolist() == [False, True, True]  # .5 > .5 is not strict, 1 > .05, 2 > 1
    assert consensus_mask([m1, m2], 2).tolist() == [False, False, True]
    assert consensus_mask([m1, m2], 1).tolist() == [True, True, True]


def _blocks_of(path, view):
    from safetensors.torch import load_file

    state = load_file(path)
    return view.flatten({k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")})


def _independent_taus(model_dir, run_dir, view):
    """θ₀'s blocks and the task vectors τ_t of a finished independent run on the tiny stream (flat, in view's order)."""
    from clgraft.model.headed import load_backbone

    theta0 = view.flatten(dict(load_backbone(str(model_dir)).model.named_parameters()))
    taus = [_blocks_of(run_dir / "weights" / f"task-{t:02d}.safetensors", view) - theta0 for t in (1, 2, 3)]
    return theta0, taus


def test_tall_masks_evaluate_each_task_with_its_own_mask(tiny_model_dir, tmp_path, invoke):
    """R's last row restated: task j through θ₀ + m_j ⊙ Σ τ with the λ_j recorded, τ from independent fine-tunes
    (the same fine-tunes, shared bit for bit); consensus leaves θ₀ + α·(consensus ⊙ Σ τ) in its weights."""
    from safetensors.torch import load_file

    from clgraft.grafting.graft import load
    from clgraft.methods.tall_masks import consensus_mask, tall_mask
    from clgraft.model.headed import BlockView, HeadedModel, load_backbone, set_blocks
    from clgraft.training.loop import split_accuracy

    fast = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}
    tall = _run(tiny_model_dir, tmp_path / "tall", method="tall-masks", **fast)
    cons = _run(tiny_model_dir, tmp_path / "cons", method="tall-masks", method_options={"mode": "consensus"}, **fast)
    _run(tiny_model_dir, tmp_path / "ind", method="independent", **fast)
    runner = Runner(RunConfig(stream="tiny", model=str(tiny_model_dir), **fast), Registry.discover(), None, tmp_path)
    body = load_backbone(str(tiny_model_dir)).model
    view = BlockView(body)
    theta0, taus = _independent_taus(tiny_model_dir, tmp_path / "ind", view)
    total = taus[0] + taus[1] + taus[2]
    lams = tall["method"]["report"]["chosen_on_dev"][-1]["mask_lambdas"]
    model = HeadedModel(body, runner.head_sizes, 42)
    model.load_state_dict(load_file(tmp_path / "tall" / "weights" / "task-03.safetensors"))  # the heads
    for j, task in enumerate(runner._context().tasks):
        set_blocks(model, view, theta0 + tall_mask(taus[j], total, lams[j]) * total)
        acc = split_accuracy(model, task.head, task.test, task.label_offset, 64, torch.device("cpu"))
        assert acc == tall["R"][3][j]
        mask, delta = load(tmp_path / "tall" / "grafts" / f"{task.task.task}-tall-masks.safetensors").dense()
        assert torch.equal(mask, tall_mask(taus[j], total, lams[j]))  # the final TALL mask as a graft, m_j ⊙ Σ τ
        torch.testing.assert_close(delta, (mask * total).float())
    overlap = invoke("analyze", "overlap", tmp_path / "tall", "--method", "tall-masks", "--own-size")
    assert (
        "tall-masks's own region sizes" in overlap
        and (tmp_path / "tall" / "analysis" / "overlap-tall-masks.json").is_file()
    )
    invoke("localize", tmp_path / "ind", "--sparsity", "0.05", "--steps", "1")  # grafting's regions, same τ_t
    invoke(
        "analyze", "agreement", tmp_path / "tall", tmp_path / "ind", "--method", "tall-masks", "--other-sparsity", 0.05
    )
    rows = json.loads((tmp_path / "tall" / "analysis" / "agreement-tall-masks.json").read_text())["tasks"]
    for j, row in enumerate(rows):
        mask = tall_mask(taus[j], total, lams[j])
        (graft,) = (tmp_path / "ind" / "grafts").glob(f"{row['task']}-*.safetensors")
        region = load(graft).dense()[0]
        assert row["intersection"] == int((mask & region).sum()) and row["k_other"] == int(region.sum())
        assert row["chance_share"] == pytest.approx(float(mask.float().mean()))
    last = cons["method"]["report"]["chosen_on_dev"][-1]
    masks = [tall_mask(taus[j], total, lam) for j, lam in enumerate(last["mask_lambdas"])]
    expected = theta0 + last["alpha"] * (consensus_mask(masks, 2) * total)
    torch.testing.assert_close(_blocks_of(tmp_path / "cons" / "weights" / "task-03.safetensors", view), expected)


def test_emr_elects_masks_and_rescales_by_hand():
    """Two tensors of two entries: sign of the sum (0 → −1), max agreeing magnitude, per-task masks, and rescalers
    as sums of per-tensor means of |τ_t| over those of |M_t ⊙ τ_uni| (the official emr_merge)."""
    from torch import nn

    from clgraft.methods.emr import emr_merge
    from clgraft.model.headed import BlockView

    body = nn.Module()
    body.layer = nn.ModuleList([nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)])
    view = BlockView(body)  # layer.0.weight, layer.1.weight: 2 entries each
    t1, t2 = torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([3.0, 1.0, -1.0, 0.0])
    unified, masks, rescalers = emr_merge([t1, t2], view)
    # sums [4, −1, −0.5, 0] → signs [+, −, −, −]; agreeing magnitudes: [max(1,3), 2, 1, 0]
    assert unified.tolist() == [3.0, -2.0, -1.0, -0.0]
    assert masks[0].tolist() == [True, True, False, False] and masks[1].tolist() == [True, False, True, False]
    # task 1: (mean|1,−2| + mean|0.5,0|) / (mean|3,−2| + mean|0,0|) = (1.5 + 0.25) / 2.5
    # task 2: (mean|3,1| + mean|−1,0|) / (mean|3,0| + mean|−1,0|) = (2 + 0.5) / (1.5 + 0.5)
    assert rescalers == pytest.approx([1.75 / 2.5, 2.5 / 2.0])


def test_emr_evaluates_each_task_through_its_mask_and_rescaler(tiny_model_dir, tmp_path):
    """R's last row restated: task j through θ₀ + λ_j · M_j ⊙ τ_uni, from the independent fine-tunes (shared bit for
    bit); a shared head is refused."""
    from safetensors.torch import load_file

    from clgraft.errors import ClgraftError
    from clgraft.methods.emr import emr_merge
    from clgraft.model.headed import BlockView, HeadedModel, load_backbone, set_blocks
    from clgraft.training.loop import split_accuracy

    fast = {"steps": 3, "batch_size": 4, "max_length": 32, "lr": 1e-3}
    rec = _run(tiny_model_dir, tmp_path / "emr", method="emr", **fast)
    _run(tiny_model_dir, tmp_path / "ind", method="independent", **fast)
    runner = Runner(RunConfig(stream="tiny", model=str(tiny_model_dir), **fast), Registry.discover(), None, tmp_path)
    body = load_backbone(str(tiny_model_dir)).model
    view = BlockView(body)
    theta0, taus = _independent_taus(tiny_model_dir, tmp_path / "ind", view)
    unified, masks, rescalers = emr_merge(taus, view)
    assert rec["method"]["report"]["rescalers"] == rescalers
    model = HeadedModel(body, runner.head_sizes, 42)
    model.load_state_dict(load_file(tmp_path / "emr" / "weights" / "task-03.safetensors"))  # the heads
    for j, task in enumerate(runner._context().tasks):
        set_blocks(model, view, theta0 + rescalers[j] * (masks[j] * unified))
        assert split_accuracy(model, task.head, task.test, task.label_offset, 64, torch.device("cpu")) == rec["R"][3][j]
    with pytest.raises(ClgraftError, match="needs the task id"):
        _run(tiny_model_dir, tmp_path / "shared", method="emr", head="shared", **fast)
