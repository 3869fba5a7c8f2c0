"""Messages that send a user the right way, each from `clgraft` in its own process: one line, exit 2, naming what
is wrong and what to do, and none of the misleading advice they used to give (a hub "repo id" for a missing folder,
"unknown method" for a row id, "rerun to resume" for a file that is not there, `data fetch` for a bundled file,
typer's framed box for a mistyped command, half a minute of retries without a network)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from functools import partial

import pytest


def clgraft(*args: object, unset: tuple[str, ...] = (), **env: str) -> tuple[int, str]:
    """`clgraft ARGS` in its own process; (exit code, stderr), stdout required empty of errors."""
    environment = {k: v for k, v in {**os.environ, "HF_HUB_OFFLINE": "1", **env}.items() if k not in unset}
    command = [sys.executable, "-c", "from clgraft.cli import main; main()", *map(str, args)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    return done.returncode, done.stderr


def one_line(code: int, err: str) -> str:
    """The one error line of a command that failed on bad input (exit 2); a progress bar may precede it."""
    lines = [line for line in err.splitlines() if line and not line.startswith("fetch:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("clgraft: error: "), (code, err)
    assert "Traceback" not in err and "╭" not in err
    return lines[0]


def test_a_model_path_that_is_not_there_is_called_a_missing_folder(tmp_path):
    err = one_line(*clgraft("run", "--model", "/nonexistent", "--out", tmp_path / "o"))
    assert "--model /nonexistent: no such folder" in err and "repo id" not in err.lower()


def test_cite_of_an_unknown_name_says_it_is_neither_a_row_id_nor_a_method():
    err = one_line(*clgraft("cite", "nosuchid"))
    assert "'nosuchid' is neither a leaderboard row id" in err and "methods: naive" in err
    assert "unknown method" not in err


def test_fetch_of_an_unknown_name_lists_the_streams_and_the_tasks(tmp_path):
    err = one_line(*clgraft("data", "fetch", "nosuchstream", "--data-dir", tmp_path))
    assert "unknown stream or task 'nosuchstream'; streams: " in err and "tiny" in err and "tasks: " in err


@pytest.mark.parametrize("where", ["a missing mirror folder", "an HTTP 404"])
def test_a_file_the_mirror_lacks_is_not_worth_a_rerun(tmp_path, where):
    empty = tmp_path / "mirror"
    empty.mkdir()
    if where == "a missing mirror folder":
        err = one_line(*clgraft("data", "fetch", "sst2", "--mirror", tmp_path / "nope", "--data-dir", tmp_path / "d"))
    else:

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

        handler = partial(Quiet, directory=str(empty))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            err = one_line(*clgraft("data", "fetch", "sst2", "--mirror", url, "--data-dir", tmp_path / "d"))
        finally:
            server.shutdown()
            server.server_close()
        assert "(404)" in err
    assert "not found at" in err and "rerunning will not help: check --mirror" in err and "to resume" not in err


def test_a_bundled_tasks_missing_file_is_to_be_restored_beside_its_yaml(tmp_path, tiny_model_dir):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "task: mine\nversion: 1\ntype: sentiment\nlabels: ['0', '1']\nsource: {kind: bundled, format: lmbff-csv, "
        "files: {train: train.csv, dev: dev.csv, test: test.csv}}\n"
    )
    (folder / "mystream.yaml").write_text("stream: mystream\nversion: 1\norders: {default: [mine]}\n")
    for split in ("dev", "test"):
        (folder / f"{split}.csv").write_text("0,bad film\n1,good film\n")
    run = ["run", "--stream", "mystream", "--tasks-dir", folder, "--model", tiny_model_dir, "--out", tmp_path / "o"]
    err = one_line(*clgraft(*run))
    assert f"{folder / 'train.csv'} not found" in err and "is bundled" in err and "restore the file there" in err
    assert "`clgraft data fetch`" not in err


@pytest.mark.parametrize("args", [["nosuch"], ["sweep"], ["run", "--no-such-option"]], ids=" ".join)
def test_a_usage_mistake_is_one_line_not_a_framed_box(args):
    err = one_line(*clgraft(*args))
    assert "--help`)" in err


def test_a_hub_task_without_a_network_fails_at_once_with_what_to_do(tmp_path, tiny_model_dir):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "hub.yaml").write_text("stream: hubbed\nversion: 1\norders: {default: [sst2-hub]}\n")
    run = ["run", "--stream", "hubbed", "--tasks-dir", tmp_path / "tasks", "--model", tiny_model_dir]
    started = time.perf_counter()
    code, err = clgraft(
        *run, "--out", tmp_path / "o", unset=("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"), HF_ENDPOINT="http://127.0.0.1:9"
    )
    assert time.perf_counter() - started < 20
    err = one_line(code, err)
    assert "cannot be reached" in err and "set HF_HUB_OFFLINE=1 to read it from the cache" in err
