"""Work shared between runs (row 0 of R, fine-tunes from θ₀): computed once, and the records are the ones the runs
compute alone, bit for bit."""

import json

import pytest
from safetensors.torch import load_file

import clgraft.training.loop
from clgraft.data.registry import Registry
from clgraft.methods import METHODS
from clgraft.runs.runner import RunConfig, Runner
from clgraft.training.shared_work import SHARED_DIR

FAST = {"steps": 3, "batch_size": 4, "max_length": 32, "lr": 1e-3}
OPTIONS = {
    "graft-freeze": {"sparsity": 0.05, "localize_steps": 1},
    "graft-compose": {"sparsity": 0.05, "localize_steps": 1},
    "ewc": {"ewc_lambda": 1e4},
    "agem": {"patterns_per_exp": 4, "sample_size": 4},
    "replay": {"per_class": 1},
}
SHARING = ["naive", "independent", "merge", "graft-freeze", "graft-compose"]


def _run(model_dir, out, method, share, **over):
    config = RunConfig(
        stream="tiny", model=str(model_dir), method=method, method_options=OPTIONS.get(method, {}), **{**FAST, **over}
    )
    runner = Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None, share=share)
    return runner.run()


def _same_numbers(a: dict, b: dict) -> None:
    assert a["R"] == b["R"]
    assert a["train_loss"] == b["train_loss"]
    assert json.dumps(a["method"]["report"], sort_keys=True) == json.dumps(b["method"]["report"], sort_keys=True)


def test_shared_fine_tunes_and_row0_give_the_records_of_runs_alone(tiny_model_dir, tmp_path, monkeypatch):
    alone = {m: _run(tiny_model_dir, tmp_path / "alone" / m, m, share=False) for m in SHARING}
    assert not (tmp_path / "alone" / SHARED_DIR).exists()

    calls = []
    original = clgraft.training.loop.train_task
    monkeypatch.setattr(
        clgraft.training.loop, "train_task", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k)
    )
    shared = {m: _run(tiny_model_dir, tmp_path / "shared" / m, m, share=True) for m in SHARING}
    for m in SHARING:
        _same_numbers(alone[m], shared[m])
    for stem in ("tiny-sst2", "tiny-agnews", "tiny-trec"):
        name = f"{stem}-graft-compose.safetensors"
        a, b = (load_file(tmp_path / k / "graft-compose" / "grafts" / name) for k in ("alone", "shared"))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)

    # naive trains 3 tasks (the first from θ₀, stored); independent reuses it and trains 2; merge reuses all 3;
    # graft-freeze trains its 3 (its first from θ₀ with the embeddings frozen: stored, with the trajectory
    # dimension the runner measured in it); graft-compose fine-tunes every task from θ₀ the same way, so it reuses
    # graft-freeze's first fine-tune and its dimension, and trains 2
    assert len(calls) == 3 + 2 + 0 + 3 + 2
    assert alone["graft-compose"]["trajectory_dims"] == shared["graft-compose"]["trajectory_dims"]
    assert shared["graft-compose"]["trajectory_dims"][0] == shared["graft-freeze"]["trajectory_dims"][0]
    folder = tmp_path / "shared" / SHARED_DIR
    assert len(list((folder / "finetunes").glob("*.safetensors"))) == 3 + 1 + 2
    assert len(list((folder / "row0").glob("*.json"))) == 1  # one seed, one model: one row 0 for all five


def test_row0_is_the_same_for_every_method(tiny_model_dir, tmp_path):
    """The shared row 0 assumes no method changes the model before training; every method is checked."""
    rows = {m: _run(tiny_model_dir, tmp_path / m, m, share=False, steps=2)["R"][0] for m in METHODS}
    assert len({json.dumps(r) for r in rows.values()}) == 1, rows


def test_other_settings_other_keys(tiny_model_dir, tmp_path):
    """A changed seed, learning rate, optimiser kernel or test cap is another piece of work, never a reused one."""
    base = _run(tiny_model_dir, tmp_path / "a", "independent", share=True)
    lr = _run(tiny_model_dir, tmp_path / "b", "independent", share=True, lr=2e-3)
    seed = _run(tiny_model_dir, tmp_path / "c", "independent", share=True, seed=7)
    cap = _run(tiny_model_dir, tmp_path / "d", "independent", share=True, max_test=10)
    _run(tiny_model_dir, tmp_path / "e", "independent", share=True, optimizer="adamw-fused")  # its own fine-tunes
    folder = tmp_path / SHARED_DIR
    assert len(list((folder / "finetunes").glob("*.safetensors"))) == 4 * 3  # the cap changes no fine-tune
    assert len(list((folder / "row0").glob("*.json"))) == 3  # the learning rate changes no row 0
    assert base["R"][1:] != lr["R"][1:] or base["train_loss"] != lr["train_loss"]
    assert seed["R"][0] != base["R"][0] or seed["train_loss"] != base["train_loss"]
    assert cap["R"][0] != base["R"][0]


@pytest.mark.parametrize("method", ["independent"])
def test_trajectory_runs_are_not_shared(tiny_model_dir, tmp_path, method):
    """A run that saves checkpoints inside the loop trains for itself (a stored fine-tune has no trajectory)."""
    _run(tiny_model_dir, tmp_path / "a", method, share=True)
    _run(tiny_model_dir, tmp_path / "b", method, share=True, trajectory=2)
    assert len(list((tmp_path / "b" / "trajectory").rglob("*.safetensors"))) == 3 * 2


class _Observer:
    """A step observer whose summary is the steps it saw (as the runner's trajectory dimension, it reads only)."""

    def __init__(self, at: list[int]):
        self.at, self.seen, self.restored = at, [], None

    def __call__(self, step: int) -> None:
        self.seen.append(step)

    def settings(self) -> dict:
        return {"at": self.at}

    def summary(self) -> dict:
        return {"seen": self.seen}

    def restore(self, summary: dict) -> None:
        self.restored = summary


def test_an_observed_fine_tune_is_stored_with_what_its_observer_measured(tiny_model_dir, tmp_path):
    """A fine-tune stored without an observer's summary is computed again for a run with one (and stored with the
    summary); a later run with an equal observer reuses both, a run without one reuses the entry, and an observer
    with other settings computes again."""
    import torch
    from transformers import AutoModel

    from clgraft.data.batches import Encoded
    from clgraft.model.headed import HeadedModel
    from clgraft.training.shared_work import SharedWork

    model = HeadedModel(AutoModel.from_pretrained(tiny_model_dir), {"t": 2}, seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    work = SharedWork(tmp_path, torch.device("cpu"))
    data = Encoded(ids=[[1, 2, 3]], labels=torch.tensor([0]), pad_id=0)
    computed = []

    def fine_tune(observer=None) -> list[float]:
        model.load_state_dict(start)

        def compute() -> list[float]:
            computed.append(observer)
            for step in range(3):
                if observer is not None:
                    observer(step)
            with torch.no_grad():
                next(model.body.parameters()).add_(1.0)
            return [0.5]

        return work.finetune(model, "t", data, {"steps": 3}, compute, observer)

    first, second, other = _Observer([1]), _Observer([1]), _Observer([2])
    trained = []
    for observer in (None, first, second, None, other):
        assert fine_tune(observer) == [0.5]
        trained.append(next(model.body.parameters()).detach().clone())
    assert all(torch.equal(t, trained[0]) for t in trained)  # the same weights, computed or loaded
    assert computed == [None, first, other]
    assert first.restored is None and first.seen == [0, 1, 2]
    assert second.restored == {"seen": [0, 1, 2]} and second.seen == []
    assert other.restored is None and other.seen == [0, 1, 2]
