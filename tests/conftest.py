"""Shared fixtures: the offline data pack, a tiny random BERT saved as a local HF folder, a registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pack_problem(folder: Path) -> str | None:
    """Why `folder` is not a whole data pack (no MANIFEST.sha256, or pack files missing), or None when it is one."""
    from clgraft.data.datapack import CHECKSUMS, manifest

    if not (folder / CHECKSUMS).is_file():
        return f"no {CHECKSUMS} in {folder}"
    missing = [rel for rel in manifest() if not (folder / rel).is_file()]
    return f"{len(missing)} pack files missing from {folder}, e.g. {missing[0]}" if missing else None


def _pack_candidates() -> list[Path]:
    """Where a data pack may be, in order: CLGRAFT_SHARED_DATA, ../shared/data next to the checkout, then where
    `clgraft data fetch --all` puts one (CLGRAFT_DATA_DIR, else ~/.cache/clgraft/data)."""
    from clgraft.data.loading import DATA_DIR_ENV, default_data_dir

    if os.environ.get("CLGRAFT_SHARED_DATA"):
        return [Path(os.environ["CLGRAFT_SHARED_DATA"])]
    fetched = Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else default_data_dir()
    return [REPO.parent / "shared" / "data", fetched]


CANDIDATES = _pack_candidates()
"""Found before the tests change the environment (the autouse fixture below points the cache elsewhere)."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data pack (the first whole one of _pack_candidates): its tests are skipped where there is none, with what
    is missing and how to get it, unless CLGRAFT_REQUIRE_DATA=1 (CI sets it where the pack is present, so they cannot
    skip there)."""
    problems = []
    for folder in CANDIDATES:
        if (problem := pack_problem(folder)) is None:
            return folder
        problems.append(problem)
    message = (
        f"no whole data pack: {'; '.join(problems)} — run `clgraft data fetch --all` (add --data-dir DIR and set "
        "CLGRAFT_SHARED_DATA=DIR for another folder) to run these tests"
    )
    if os.environ.get("CLGRAFT_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with the default model's tokenizer, saved like any local HF model."""
    from clgraft.model.headed import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """Tests never reach a hub; user task paths from the environment do not leak in."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("CLGRAFT_TASKS_PATH", raising=False)
    monkeypatch.delenv("CLGRAFT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))  # no default data dir


@pytest.fixture()
def interrupt_task(monkeypatch):
    """interrupt_task(MethodClass, index): Ctrl-C when that task starts; returns a function that undoes it."""

    def install(method_class, index: int):
        original = method_class.train

        def stop(self, model, step):
            if step.index == index:
                raise KeyboardInterrupt
            return original(self, model, step)

        monkeypatch.setattr(method_class, "train", stop)
        return lambda: monkeypatch.setattr(method_class, "train", original)

    return install


@pytest.fixture()
def invoke():
    """invoke(*args): the CLI in-process; returns its output. A ClgraftError comes out as itself (the one-line
    message a user sees), any other failure fails the test."""
    from typer.testing import CliRunner

    from clgraft.cli import app

    def run(*args) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output

    return run


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """A naive run of the tiny stream (6 steps a task, its weights kept), made once per test module: the modules
    that localize in it write grafts into it, so no two modules share one."""
    from clgraft.data.registry import Registry
    from clgraft.runs.runner import RunConfig, Runner

    out = tmp_path_factory.mktemp("run")
    config = RunConfig(stream="tiny", model=str(tiny_model_dir), steps=6, batch_size=4, max_length=32, lr=1e-3)
    Runner(config, Registry.discover(), None, out, progress=False, echo=lambda s: None).run()
    return out
