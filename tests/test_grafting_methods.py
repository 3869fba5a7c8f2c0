"""graft-freeze and graft-compose on the tiny stream, and the composition arithmetic on hand-made masks."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.grafting.compose import compose_into, overlap_counts
from clgraft.grafting.graft import Graft, load
from clgraft.runs.runner import RunConfig, Runner

FAST = {"steps": 4, "batch_size": 4, "max_length": 32, "lr": 1e-3}
GRAFT = {"sparsity": 0.05, "localize_steps": 2}


def _run(model_dir, out, **over):
    config = RunConfig(stream="tiny", model=str(model_dir), **{**FAST, **over})
    return Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()


def _graft(positions, values, n=6):
    layout = [("w", (n,))]
    return Graft(layout, torch.tensor(positions), torch.tensor(values), {}, {})


def _composed(grafts, mode):
    body = nn.Module()
    body.w = nn.Parameter(torch.ones(6))  # θ₀ = 1 everywhere
    return compose_into(body, grafts, mode).w.detach().tolist()


def test_union_and_stitch_arithmetic_by_hand():
    a = _graft([0, 2, 3], [0.5, 1.0, -2.0])
    b = _graft([3, 4], [4.0, 0.25])
    assert _composed([a, b], "union") == [1.5, 1.0, 2.0, 3.0, 1.25, 1.0]
    # entry 3 is covered twice: (−2 + 4) / 2 = 1
    assert _composed([a, b], "stitch") == [1.5, 1.0, 2.0, 2.0, 1.25, 1.0]
    assert _composed([a], "stitch") == _composed([a], "union")
    assert _composed([], "union") == [1.0] * 6
    assert overlap_counts([a, b], 6).tolist() == [1, 0, 1, 2, 1, 0]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_graft_freeze_regions_are_disjoint_and_stay_frozen(tiny_model_dir, tmp_path, optimizer):
    """Also with SGD, whose weight decay moves the frozen entries while a later task trains: they are put back."""
    rec = _run(tiny_model_dir, tmp_path / "r", method="graft-freeze", method_options=GRAFT, optimizer=optimizer)
    report = rec["method"]["report"]
    assert report["disjoint"] is True and len(report["region_sizes"]) == 3
    grafts = [
        load(tmp_path / "r" / "grafts" / f"{t}-graft-freeze.safetensors")
        for t in ("tiny-sst2", "tiny-agnews", "tiny-trec")
    ]
    n = grafts[0].numel
    assert all(0 < g.k <= int(0.05 * n) + 1 for g in grafts)  # the learned mask can drop or add a few entries
    positions = [set(g.positions.tolist()) for g in grafts]
    assert not (positions[0] & positions[1]) and not (positions[0] & positions[2]) and not (positions[1] & positions[2])
    assert report["free_fraction"] == pytest.approx(1 - sum(g.k for g in grafts) / n)
    # task 1's region holds the same values after tasks 2 and 3
    from clgraft.model.headed import BlockView, tiny_bert

    view = BlockView(tiny_bert(30522, seed=0))
    after = [
        view.flatten(
            {
                k.removeprefix("body."): v
                for k, v in load_file(tmp_path / "r" / "weights" / f"task-0{t}.safetensors").items()
                if k.startswith("body.")
            }
        )
        for t in (1, 3)
    ]
    region = grafts[0].positions
    assert torch.equal(after[0][region], after[1][region])


def test_graft_compose_task_aware_never_forgets(tiny_model_dir, tmp_path):
    rec = _run(tiny_model_dir, tmp_path / "r", method="graft-compose", method_options=GRAFT)
    R = rec["R"]
    for j in range(3):
        assert all(R[i][j] == R[j + 1][j] for i in range(j + 1, 4))
    assert rec["metrics"]["forgetting"] == 0.0
    assert len(list((tmp_path / "r" / "grafts").glob("*.safetensors"))) == 3


@pytest.mark.parametrize(("mode", "localizer"), [("union", "official"), ("stitch", "stitch")])
def test_graft_compose_union_and_stitch_in_both_head_modes(tiny_model_dir, tmp_path, mode, localizer):
    for head in ("task", "shared"):
        rec = _run(
            tiny_model_dir,
            tmp_path / head,
            method="graft-compose",
            head=head,
            method_options={**GRAFT, "compose": mode, "localizer": localizer},
        )
        assert rec["method"]["report"]["compose"] == mode and rec["metrics"]["acc"] is not None
        assert rec["method"]["options"]["localizer"] == localizer


def test_task_aware_compose_needs_task_heads(tiny_model_dir, tmp_path):
    with pytest.raises(ClgraftError, match="use --head task or --opt compose=union"):
        _run(tiny_model_dir, tmp_path / "r", method="graft-compose", head="shared")
