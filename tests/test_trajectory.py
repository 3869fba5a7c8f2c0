"""The trajectory's dimension a run records for the methods that keep a region per task: d90 restated with numpy's
SVD on a hand-made trajectory, the checkpoints taken at the steps they are named for, and a grafting run that records
one per task (a method without regions records none)."""

import json

import numpy as np
import pytest
import torch

from clgraft.model.headed import BlockView, HeadedModel
from clgraft.runs.trajectory import TrajectoryDims, marks
from clgraft.training.loop import both


def _d90(X: np.ndarray) -> int:
    s2 = np.linalg.svd(X, compute_uv=False) ** 2
    return int(np.argmax(np.cumsum(s2) / s2.sum() >= 0.9 - 1e-12) + 1)


@pytest.fixture
def model(tiny_model_dir) -> HeadedModel:
    from transformers import AutoModel

    return HeadedModel(AutoModel.from_pretrained(tiny_model_dir), {"t": 2}, seed=0)


def _move(model: HeadedModel, view: BlockView, start: torch.Tensor, delta: torch.Tensor) -> None:
    with torch.no_grad():
        params = dict(model.body.named_parameters())
        for name, part in view.split(start + delta).items():
            params[name].copy_(part)


def test_d90_of_the_differences_and_of_the_centred_checkpoints(model):
    """Eight checkpoints along two directions, one much longer: d90 of the differences from the start is 1 when the
    long direction carries ≥ 90% of the energy and 2 otherwise, and the centred d90 is numpy's on X − mean."""
    view = BlockView(model.body)
    start = view.flatten(dict(model.body.named_parameters())).clone()
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(view.numel, generator=gen), torch.randn(view.numel, generator=gen)
    found = []
    for weight in (0.05, 8.0):
        tracker = TrajectoryDims(model, steps=16)
        tracker(0)
        rows = []
        for step in range(1, 17):
            delta = step * u + weight * (step % 3) * v
            _move(model, view, start, delta)
            tracker(step)
            if step in marks(16, 8):
                rows.append(delta.double().numpy())
        X = np.stack(rows)
        got = tracker.dims()
        assert got["points"] == 8 and sorted(marks(16, 8)) == [2, 4, 6, 8, 10, 12, 14, 16]
        assert got["d90"] == _d90(X) and got["d90_centred"] == _d90(X - X.mean(0))
        found.append(got["d90"])
        _move(model, view, start, torch.zeros_like(start))
    assert found == [1, 2]  # one long direction, then two of like energy: the cases differ


def test_no_start_no_dimension_and_callbacks_combine(model):
    """A loop that never reports step 0 gives no dimension; `both` calls every callback given, in order."""
    tracker = TrajectoryDims(model, steps=4)
    for step in range(1, 5):
        tracker(step)
    assert tracker.dims() is None
    called = []
    both(None, lambda s: called.append(("a", s)), None, lambda s: called.append(("b", s)))(3)
    assert called == [("a", 3), ("b", 3)] and both(None, None) is None


@pytest.mark.parametrize("method", ["graft-freeze", "naive"])
def test_a_run_records_each_tasks_trajectory_dimension_when_it_keeps_regions(tiny_model_dir, tmp_path, invoke, method):
    args = ("run", "--stream", "tiny", "--model", tiny_model_dir, "--method", method, "--steps", "8")
    run = tmp_path / "run"
    invoke(*args, "--batch-size", "4", "--max-length", "32", "--out", run, "--no-progress")
    record = json.loads((run / "run.json").read_text())
    if method == "naive":
        assert "trajectory_dims" not in record
        return
    dims = record["trajectory_dims"]
    assert len(dims) == len(record["tasks"])
    assert all(d["points"] == 8 and 1 <= d["d90"] <= 8 and 1 <= d["d90_centred"] <= 8 for d in dims)
