"""The `regions` of a run record: the tasks' regions' Jaccard matrix restated on hand-made masks, its random-region
null, the Mantel test against same-type, and a grafting run that records them (graft-compose's regions overlap,
graft-freeze's are disjoint by construction)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from clgraft.grafting.graft import Graft
from clgraft.runs.regions import random_jaccard, regions_record, task_regions


def _graft(task: str, positions: list[int], n: int = 20) -> Graft:
    layout = [("w", (n,))]
    return Graft(layout, torch.tensor(positions), torch.ones(len(positions)), {}, {"task": task})


def test_jaccard_null_and_types_restated_on_four_masks():
    grafts = [_graft("a", [0, 1, 2, 3]), _graft("b", [2, 3, 4, 5]), _graft("c", [10, 11]), _graft("d", [0, 11])]
    out = regions_record(grafts, ["a", "b", "c", "d"], ["x", "x", "y", "y"])
    J = np.array(out["jaccard"])
    assert J[0, 1] == pytest.approx(2 / 6) and J[2, 3] == pytest.approx(1 / 3) and J[0, 2] == 0.0
    assert J[0, 3] == pytest.approx(1 / 5) and np.allclose(J, J.T) and np.all(np.diag(J) == 1)
    assert out["sizes"] == [4, 4, 2, 2]
    assert out["mean_jaccard"] == pytest.approx((2 / 6 + 0 + 1 / 5 + 0 + 0 + 1 / 3) / 6)
    # random regions of 4 and 4 of 20 entries share 16/20 = 0.8 in expectation: 0.8 / (8 − 0.8)
    assert random_jaccard(np.array([4.0, 4.0]), 20)[0, 1] == pytest.approx(0.8 / 7.2)
    rho = out["jaccard_vs_same_type"]
    assert rho["pairs"] == 6 and rho["rho"] > 0 and 0 < rho["p"] <= 1  # same-type pairs overlap more here


def test_task_regions_need_exactly_one_graft_per_task():
    a, b = _graft("a", [0]), _graft("b", [1])
    assert task_regions({"b-m": b, "a-m": a}, ["a", "b"]) == [a, b]  # stream order, whatever the file stems
    assert task_regions({"a-m": a}, ["a", "b"]) is None
    assert task_regions({"a-m": a, "a-n": _graft("a", [2]), "b-m": b}, ["a", "b"]) is None


@pytest.mark.parametrize("method", ["graft-compose", "graft-freeze"])
def test_a_grafting_run_records_its_regions(tiny_model_dir, tmp_path, invoke, method):
    """The record's Jaccard equals the one computed from the graft files the run wrote; graft-freeze's regions
    never overlap (each task's search runs outside the entries frozen before it), and its leaderboard cell says
    that this 0 is by construction."""
    from clgraft.grafting.graft import load

    args = ("run", "--stream", "tiny", "--model", tiny_model_dir, "--method", method, "--steps", "2")
    run = tmp_path / "runs" / "a"
    invoke(*args, "--batch-size", "4", "--max-length", "32", "--out", run, "--no-progress")
    record = json.loads((run / "run.json").read_text())
    regions = record["regions"]
    assert regions["tasks"] == [t["name"] for t in record["tasks"]] and regions["types"] == [
        "sentiment",
        "topic",
        "question",
    ]
    files = [load(next((run / "grafts").glob(f"{name}-*.safetensors"))) for name in regions["tasks"]]
    sets = [set(g.positions.tolist()) for g in files]
    want = [[len(a & b) / len(a | b) for b in sets] for a in sets]
    assert np.allclose(regions["jaccard"], want, atol=1e-6) and regions["sizes"] == [len(s) for s in sets]
    assert regions["jaccard_vs_same_type"]["rho"] is None  # the tiny stream's three tasks are of three types
    if method == "graft-freeze":
        assert regions["mean_jaccard"] == 0.0
    invoke("leaderboard", "--results", tmp_path, "--format", "csv", "--out", tmp_path / "lb.csv")
    row = pd.read_csv(tmp_path / "lb.csv", dtype=str).iloc[0]
    said = "by construction; " if method == "graft-freeze" else ""  # a 0 the method guarantees is not a finding
    want = f"{regions['mean_jaccard']:.3g} ({said}random {regions['mean_random_jaccard']:.2g}; n=1)"
    assert row["region_jaccard"] == want
    assert row["region_type_rho"] == "-"  # no ρ where every pair of tasks differs in type
    d90 = [d["d90"] for d in record["trajectory_dims"]]  # 2 steps: both checkpoints of each task
    assert [d["points"] for d in record["trajectory_dims"]] == [2, 2, 2]
    assert row["trajectory_d90"] == f"{sum(d90) / len(d90):.2g} (n=1)"
