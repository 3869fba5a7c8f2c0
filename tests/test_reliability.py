"""Failure behaviour as a tested feature. Bad input through the real entry point (`clgraft.cli.main`, in-process):
each case gives exactly one line on stderr naming what is wrong, exit code 2, no traceback, and leaves a finished
run's files untouched. Faults: disk full mid-run; SIGKILL at successive atomic writes of `clgraft run` and `clgraft
sweep` (tests/kill_at_write.py, in subprocesses), after which the rerun gives the results of an uninterrupted run and no
visible file is ever partial. Determinism of graft files."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from clgraft.cli import main

FAST = ["--steps", "2", "--batch-size", "4", "--max-length", "32", "--no-progress"]
GOOD_TASK = """task: mine
version: 1
type: sentiment
labels: ['0', '1']
source: {kind: bundled, format: lmbff-csv, files: {train: train.csv, dev: dev.csv, test: test.csv}}
"""
GOOD_STREAM = "stream: mystream\nversion: 1\norders: {default: [mine]}\n"
ROWS = "0,bad film\n1,good film\n0,dull\n1,lovely\n"


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run `clgraft ARGS` in this process; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["clgraft", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished independent run of the tiny stream with grafts: the result no bad input may touch."""
    out = tmp_path_factory.mktemp("finished") / "run"
    argv = sys.argv
    try:
        for args in (
            ["run", "--stream", "tiny", "--method", "independent", "--model", str(tiny_model_dir), "--out", str(out)],
            ["localize", str(out), "--sparsity", "0.05", "--steps", "1", "--task", "tiny-sst2"],
        ):
            sys.argv = ["clgraft", *args, *(FAST if args[0] == "run" else [])]
            try:
                main()
            except SystemExit as e:
                assert e.code == 0
    finally:
        sys.argv = argv
    return out


def user_task(d: Path, task: str = GOOD_TASK, rows: dict[str, bytes] | None = None) -> Path:
    """A user task folder (task `mine`, stream `mystream`) with small data files, some of them replaced."""
    folder = d / "user"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.yaml").write_text(task)
    (folder / "mystream.yaml").write_text(GOOD_STREAM)
    for split in ("train", "dev", "test"):
        (folder / f"{split}.csv").write_bytes((rows or {}).get(split, ROWS.encode()))
    return folder


def run_user(d: Path, model: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--stream",
        "mystream",
        "--tasks-dir",
        str(d / "user"),
        "--model",
        str(model),
        "--out",
        str(d / "o"),
        *FAST,
        *extra,
    ]


def graft_of(run: Path) -> Path:
    return next((run / "grafts").glob("*.safetensors"))


def _edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


# each case: (setup(d, run, model) -> argv, expected fragment of the one line)
CASES = {
    "malformed YAML": (
        lambda d, r, m: validate(d / "bad.yaml", "stream: x\nversion: 1\norders:\n  a: [tiny-sst2\n"),
        "not valid YAML",
    ),
    "YAML with a python object tag (safe loader)": (
        lambda d, r, m: validate(d / "evil.yaml", "stream: x\norders: !!python/object:os.system ls\n"),
        "not valid YAML",
    ),
    "top level not a mapping": (
        lambda d, r, m: validate(d / "l.yaml", "- a\n- b\n"),
        "expected a mapping",
    ),
    "unknown task": (lambda d, r, m: ["tasks", "show", "nothing"], "unknown stream or task 'nothing'"),
    "unknown stream": (lambda d, r, m: ["run", "--stream", "nope", "--out", str(d / "o")], "unknown stream 'nope'"),
    "unknown order": (lambda d, r, m: ["run", "--order", "sideways", "--out", str(d / "o")], "has no order 'sideways'"),
    "unknown method": (lambda d, r, m: ["run", "--method", "magic", "--out", str(d / "o")], "unknown method 'magic'"),
    "unknown method option": (
        lambda d, r, m: ["run", "--method", "ewc", "--opt", "lambda_=1", "--out", str(d / "o")],
        "lambda_",
    ),
    "unknown model": (
        lambda d, r, m: ["run", "--model", str(d / "no-model"), "--out", str(d / "o")],
        "no such folder",
    ),
    "missing key": (
        lambda d, r, m: validate(d / "s.yaml", "stream: x\nversion: 1\n"),
        "key 'orders'",
    ),
    "wrong type": (
        lambda d, r, m: validate(d / "s.yaml", "stream: x\nversion: one\norders: {a: [tiny-sst2]}\n"),
        "key 'version'",
    ),
    "duplicate task in a stream": (
        lambda d, r, m: validate(d / "s.yaml", "stream: x\nversion: 1\norders: {a: [tiny-sst2, tiny-sst2]}\n"),
        "task listed twice: tiny-sst2",
    ),
    "stream referencing a missing task version": (
        lambda d, r, m: validate(d / "s.yaml", "stream: x\nversion: 1\norders: {a: [tiny-sst2@3]}\n"),
        "has no version 3",
    ),
    "path escaping the data directory": (
        lambda d, r, m: validate(d / "t.yaml", GOOD_TASK.replace("train.csv", "../../etc/passwd")),
        "relative path inside the data directory",
    ),
    "data file missing": (
        lambda d, r, m: (user_task(d), (d / "user" / "train.csv").unlink(), run_user(d, m))[-1],
        "train.csv not found",
    ),
    "data file empty": (lambda d, r, m: (user_task(d, rows={"train": b""}), run_user(d, m))[-1], "the file is empty"),
    "wrong columns": (
        lambda d, r, m: (user_task(d, rows={"dev": b"0\n1\n"}), run_user(d, m))[-1],
        "expected 2 comma-separated",
    ),
    "unknown label": (
        lambda d, r, m: (user_task(d, rows={"test": b"0,a\n7,b\n"}), run_user(d, m))[-1],
        "unknown label(s) ['7']",
    ),
    "non-UTF-8 bytes": (
        lambda d, r, m: (user_task(d, rows={"train": b"0,caf\xe9\n"}), run_user(d, m))[-1],
        "not utf-8",
    ),
    "K larger than a class has": (
        lambda d, r, m: (
            user_task(
                d,
                GOOD_TASK.replace(
                    "files: {train: train.csv, dev: dev.csv, test: test.csv}",
                    "files: {pool: train.csv, test: test.csv}, kshot: {pool: pool, k: 16}",
                ),
            ),
            run_user(d, m),
        )[-1],
        "fewer than 2k = 32",
    ),
    "sparsity 0": (lambda d, r, m: ["localize", str(r), "--sparsity", "0"], "sparsity"),
    "sparsity 1": (lambda d, r, m: ["localize", str(r), "--sparsity", "1"], "sparsity"),
    "graft for another base model": (
        lambda d, r, m: _other_base(d, r),
        "base model",
    ),
    "corrupted graft file": (
        lambda d, r, m: ["graft", "info", str(_w(d / "g.safetensors", graft_of(r).read_bytes()[:100], binary=True))],
        "g.safetensors",
    ),
    "truncated run.json": (
        lambda d, r, m: ["analyze", "closeness", str(_copy_run(d, r, lambda p: p.write_text(p.read_text()[:50])))],
        "not a valid clgraft record",
    ),
    "hand-edited run.json (config changed)": (
        lambda d, r, m: [
            "analyze",
            "closeness",
            str(_copy_run(d, r, lambda p: _edit_json(p, lambda rec: rec["config"].update(steps=3)))),
        ],
        "config hash",
    ),
    "hand-edited run.json (wrong type)": (
        lambda d, r, m: [
            "analyze",
            "closeness",
            str(_copy_run(d, r, lambda p: _edit_json(p, lambda rec: rec["config"].update(steps="many")))),
        ],
        "steps",
    ),
    "results folder not writable": (
        lambda d, r, m: ["run", "--model", str(m), "--out", "/sys/clgraft-not-writable/run", *FAST],
        "/sys/clgraft-not-writable",
    ),
    "CUDA without a GPU": (
        lambda d, r, m: ["run", "--model", str(m), "--device", "cuda", "--out", str(d / "o")],
        "--device cuda",
    ),
    "bad evaluation plan": (lambda d, r, m: ["run", "--evaluate", "some", "--out", str(d / "o")], "--evaluate"),
    "bad seed list": (lambda d, r, m: ["compare", "--seeds", "1,two", "--out", str(d / "o")], "--seeds"),
    "not a run directory": (lambda d, r, m: ["analyze", "overlap", str(d)], "no finished run"),
    "unknown sweep file": (lambda d, r, m: ["sweep", str(d / "none.yaml"), "--results", str(d / "res")], "none.yaml"),
}


def validate(path: Path, text: str) -> list[str]:
    """`clgraft tasks validate` of a YAML file with this text."""
    return ["tasks", "validate", str(_w(path, text))]


def _w(path: Path, text, binary: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if binary else path.write_text(text)
    return path


def _copy_run(d: Path, run: Path, damage) -> Path:
    copy = d / "run-copy"
    shutil.copytree(run, copy)
    damage(copy / "run.json")
    return copy


def _other_base(d: Path, run: Path) -> list[str]:
    """The finished run's weights under another base model hash: localize must refuse them, not mix them."""
    copy = _copy_run(d, run, lambda p: _edit_json(p, lambda rec: rec["model"].update(sha256="0" * 64)))
    return ["localize", str(copy), "--sparsity", "0.05", "--steps", "1"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_finished_touched(
    case, finished, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    before = snapshot(finished)
    setup, expected = CASES[case]
    args = setup(tmp_path, finished, tiny_model_dir)
    code, err = cli(monkeypatch, capsys, *args)
    assert code == 2, (case, code, err)
    assert err.startswith("clgraft: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err
    assert snapshot(finished) == before
    assert not (tmp_path / "o" / "run.json").exists()


def test_at_least_25_distinct_bad_inputs():
    assert len(CASES) >= 25


def test_disk_full_while_writing_keeps_what_was_finished_and_resumes(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """ENOSPC from the fsync of the third task's files: one line, finished tasks kept, no temp file left behind, and
    the same command afterwards gives the R of a run that never failed."""
    import clgraft.io.records as results

    out = tmp_path / "run"
    args = ["run", "--stream", "tiny", "--model", str(tiny_model_dir), "--out", str(out), *FAST]
    real_fsync, calls = results.os.fsync, []

    def full_after_nine(fd: int) -> None:
        calls.append(fd)
        # row 0 (shared row, predictions, progress), then per task a shared fine-tune or not, its weights, its
        # predictions and progress.json: task 1 is on disk by the ninth, and the disk fills during task 2 or 3
        if len(calls) > 9:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(results.os, "fsync", full_after_nine)
    code, err = cli(monkeypatch, capsys, *args)
    assert code == 2 and "No space left on device" in err and "free disk space" in err and err.count("\n") == 1
    assert not list(out.rglob("*.tmp")) and not (out / "run.json").exists()
    kept = json.loads((out / "progress.json").read_text())
    assert len(kept["R"]) >= 2  # row 0 and at least the first task
    monkeypatch.setattr(results.os, "fsync", real_fsync)
    assert cli(monkeypatch, capsys, *args)[0] == 0
    reference = tmp_path / "reference"
    assert cli(monkeypatch, capsys, *[a if a != str(out) else str(reference) for a in args])[0] == 0
    assert json.loads((out / "run.json").read_text())["R"] == json.loads((reference / "run.json").read_text())["R"]


def _launch(args: list[str], kill_at: str | None) -> int:
    """`clgraft ARGS` in a fresh process, optionally SIGKILLing itself at an atomic write (tests/kill_at_write.py)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(Path(__file__).with_name("kill_at_write.py")), kill_at or "", *args]
    return subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode


def _nothing_partial(folder: Path) -> None:
    """Every file a reader can see is whole: JSON parses, safetensors load; only hidden temp files may be torn."""
    for path in folder.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            load_file(path)


def _kill_points(args: list[str], folder: Path, points: list[str]) -> int:
    """Run ARGS once per kill point (each run resumes what the killed ones left); returns how many were killed."""
    killed = 0
    for point in points:
        code = _launch(args, point)
        assert code in (0, -signal.SIGKILL), code
        killed += code == -signal.SIGKILL
        _nothing_partial(folder)
    return killed


POINTS = [f"{n}:{phase}" for n in (1, 2, 3, 4) for phase in ("tmp", "done")]


def test_run_killed_at_eight_points_finishes_with_the_results_of_an_unkilled_run(tiny_model_dir, tmp_path):
    def args(out: Path) -> list[str]:
        return ["run", "--stream", "tiny", "--method", "graft-freeze", "--opt", "localize_steps=1"] + [
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            *FAST,
        ]

    assert _launch(args(tmp_path / "whole"), None) == 0
    cut = tmp_path / "cut"
    assert _kill_points(args(cut), cut, POINTS) == len(POINTS)
    assert _launch(args(cut), None) == 0
    assert not list(cut.rglob(".*.tmp"))  # the temp files of killed writes are cleaned up on resume
    whole, again = (json.loads((d / "run.json").read_text()) for d in (tmp_path / "whole", cut))
    assert again["R"] == whole["R"]
    for name in ("weights/task-03.safetensors", *(str(p.relative_to(cut)) for p in (cut / "grafts").glob("*"))):
        assert (cut / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_sweep_killed_at_four_points_finishes_with_the_results_of_an_unkilled_one(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"sweep: kill\nversion: 1\nmodel: {tiny_model_dir}\nstreams: [{{stream: tiny}}]\nmethods: [naive]\n"
        "seeds: [1, 2]\nrun: {steps: 2, batch_size: 4, max_length: 32}\n"
    )
    assert _launch(["sweep", str(sweep), "--results", str(tmp_path / "whole"), "--no-progress"], None) == 0
    cut = tmp_path / "cut"
    args = ["sweep", str(sweep), "--results", str(cut), "--no-progress"]
    assert _kill_points(args, cut, ["3:tmp", "4:done", "6:tmp", "7:done"]) == 4
    assert _launch(args, None) == 0
    runs = {d: sorted((d / "runs").glob("*/run.json")) for d in (tmp_path / "whole", cut)}
    assert [p.parent.name for p in runs[cut]] == [p.parent.name for p in runs[tmp_path / "whole"]]
    assert [json.loads(p.read_text())["R"] for p in runs[cut]] == [
        json.loads(p.read_text())["R"] for p in runs[tmp_path / "whole"]
    ]


def test_graft_files_are_bit_identical_for_one_seed(finished, tmp_path, monkeypatch, capsys):
    """Localizing the same run twice gives the same bytes (runs with other seeds differ: test_runner)."""
    copies = []
    for name in ("a", "b"):
        copies.append(tmp_path / name)
        shutil.copytree(finished, copies[-1])
        for g in (copies[-1] / "grafts").glob("*"):
            g.unlink()
        args = ["localize", str(copies[-1]), "--sparsity", "0.05", "--steps", "2", "--task", "tiny-sst2"]
        assert cli(monkeypatch, capsys, *args)[0] == 0
    assert graft_of(copies[0]).read_bytes() == graft_of(copies[1]).read_bytes()


def test_source_never_unpickles_runs_shells_or_loads_yaml_unsafely():
    """Static guard: weights and grafts go through safetensors, YAML through safe_load, and no shell is spawned."""
    import re

    import clgraft

    forbidden = re.compile(r"torch\.load\(|import pickle|pickle\.load|shell=True|os\.system\(|os\.popen\(|yaml\.load\(")
    hits = [
        f"{path.name}:{n}"
        for path in Path(clgraft.__file__).parent.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert hits == []
