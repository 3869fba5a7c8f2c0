"""Bad or stale records in a results folder, read by the real commands in their own processes (docs/guarantees.md):
a truncated run.json, a record of a newer format, a record edited out of shape and a run without predictions are
named with what is wrong and skipped, said so in the header (leaderboard, claims report) or on stderr (report,
cite); a record whose R its predictions do not reproduce, or whose predictions cannot be read, stops the leaderboard
with one line and exit 2. Never a traceback, never a silently different number."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def clgraft(*args: object) -> tuple[int, str, str]:
    """`clgraft ARGS` as a separate process (this interpreter, this PYTHONPATH); (exit code, stdout, stderr)."""
    command = [sys.executable, "-c", "from clgraft.cli import main; main()", *map(str, args)]
    done = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def swept(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished two-cell sweep of the tiny stream (naive, seeds 1 and 2)."""
    folder = tmp_path_factory.mktemp("swept")
    sweep = folder / "sweep.yaml"
    sweep.write_text(
        f"sweep: records\nversion: 1\nmodel: {tiny_model_dir}\nstreams: [{{stream: tiny}}]\nmethods: [naive]\n"
        "seeds: [1, 2]\nrun: {steps: 2, batch_size: 4, max_length: 32}\n"
    )
    code, out, err = clgraft("sweep", sweep, "--results", folder / "results", "--no-progress")
    assert code == 0, out + err
    return folder / "results"


def runs_of(results: Path) -> list[Path]:
    """The sweep's run folders, by name."""
    return sorted(results.glob("runs/tiny-*"))


def damaged(swept: Path, into: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the results with three unreadable records beside the good ones and one good run's predictions
    gone; returns it and each bad record's folder → what its message must say."""
    results = into / "results"
    shutil.copytree(swept, results)
    good = runs_of(results)
    (good[1] / "predictions.npz").unlink()
    bad = {
        "truncated": (lambda text: text[: len(text) // 2], "not a valid clgraft record"),
        "newer": (lambda text: json.dumps({**json.loads(text), "format": 2}), "record format 2 is newer"),
        "shapeless": (lambda text: json.dumps({**json.loads(text), "R": [[0.5]]}), "key 'R'"),
    }
    for name, (damage, _) in bad.items():
        shutil.copytree(good[0], results / "runs" / name)
        path = results / "runs" / name / "run.json"
        path.write_text(damage(path.read_text()))
    return results, {name: said for name, (_, said) in bad.items()}


def test_the_leaderboard_skips_unreadable_records_and_names_them_in_its_header(swept, tmp_path):
    results, bad = damaged(swept, tmp_path)
    code, out, err = clgraft("leaderboard", "--results", results, "--format", "json")
    assert code == 0, err
    board = json.loads(out)
    assert [row["n"] for row in board["rows"]] == [2]  # the two good runs, each once
    assert "3 record(s) skipped, not counted" in board["header"]
    for name, said in bad.items():
        assert f"{results / 'runs' / name / 'run.json'}: {said}" in board["header"], board["header"]
    header = board["header"]
    assert "R of 1 of 2 runs recomputed" in header and f"not {runs_of(results)[1].name}: no predictions" in header
    assert "Traceback" not in err


def test_report_and_cite_skip_unreadable_records_and_say_so_on_stderr(swept, tmp_path):
    results, bad = damaged(swept, tmp_path)
    for command in (("report", "--results", results), ("cite", "--all", "--results", results)):
        code, out, err = clgraft(*command)
        assert code == 0, err
        assert all(f"skipped, not counted: {results / 'runs' / name / 'run.json'}" in err for name in bad), err
        assert "Traceback" not in err
    code, _, err = clgraft("report", results / "runs" / "newer")
    assert code == 2 and err.startswith("clgraft: error: ") and err.count("\n") == 1, err
    assert "record format 2 is newer than this clgraft reads (1); upgrade clgraft" in err


def test_the_claims_report_names_unreadable_records_in_its_header(swept, tmp_path):
    runs = tmp_path / "results" / "claims" / "closeness" / "runs"
    shutil.copytree(runs_of(swept)[0], runs / "truncated")
    (runs / "truncated" / "run.json").write_text("{")
    code, out, err = clgraft("claims", "report", "closeness", "--results", tmp_path / "results")
    assert code == 0, err
    assert f"1 record(s) skipped, not counted: {runs / 'truncated' / 'run.json'}: not a valid clgraft record" in out
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda run: _edit_R(run / "run.json"), "differs from the R of its predictions.npz; the record was edited"),
        (lambda run: (run / "predictions.npz").write_bytes(b"PK\x03\x04 torn"), "predictions.npz: unreadable"),
    ],
    ids=["R edited", "predictions torn"],
)
def test_a_record_its_predictions_do_not_reproduce_stops_the_leaderboard(swept, tmp_path, damage, said):
    results = tmp_path / "results"
    shutil.copytree(swept, results)
    damage(runs_of(results)[0])
    code, out, err = clgraft("leaderboard", "--results", results)
    assert code == 2 and err.startswith("clgraft: error: ") and err.count("\n") == 1, err
    assert said in err and out == ""


def _edit_R(path: Path) -> None:
    record = json.loads(path.read_text())
    record["R"][-1][0] += 0.01
    path.write_text(json.dumps(record))
