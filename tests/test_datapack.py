"""`clgraft data`: the packaged manifest, fetching through an HTTP server on 127.0.0.1 that the test starts and
stops, checksums, and failed or partial downloads that leave nothing behind."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clgraft.data.datapack import SOURCES, Entry, fetch, manifest
from clgraft.errors import ClgraftError


@contextlib.contextmanager
def serve(folder: Path, truncate: bool = False) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 over `folder` for the duration of the block; `truncate` cuts every body short
    of its announced length (a dropped connection)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def copyfile(self, source, outputfile) -> None:
            data = source.read()
            outputfile.write(data[: len(data) // 2] if truncate else data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _mirror(tmp_path: Path) -> tuple[Path, dict[str, Entry]]:
    files = {"lmbff-k16/SST-2/16-13/train.tsv": b"sentence\tlabel\na\t1\n", "textcls-1k/ag_news/dev.json": b"{}"}
    mirror = tmp_path / "mirror"
    known = {}
    for rel, data in files.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(data)
        known[rel] = Entry(rel, hashlib.sha256(data).hexdigest(), len(data))
    return mirror, known


def _left(folder: Path) -> list[Path]:
    """The files in `folder` but fetch's (empty) lock file."""
    return [p for p in folder.rglob("*") if p.is_file() and p.name != ".fetch.lock"] if folder.exists() else []


def test_fetch_from_a_mirror_checks_every_file_and_resumes(tmp_path):
    mirror, known = _mirror(tmp_path)
    root = tmp_path / "data"
    with serve(mirror) as url:
        assert fetch(root, known, url, known) == {"fetched": 2, "present": 0}
        assert fetch(root, known, url, known) == {"fetched": 0, "present": 2}  # a rerun downloads nothing
    for rel in known:
        assert (root / rel).read_bytes() == (mirror / rel).read_bytes()
    assert fetch(tmp_path / "from-folder", known, str(mirror), known)["fetched"] == 2  # a folder mirror works too


@pytest.mark.parametrize("fault", ["corrupt", "truncated", "missing"])
def test_a_bad_download_leaves_nothing_and_says_so_in_one_line(tmp_path, fault):
    mirror, known = _mirror(tmp_path)
    rel = "lmbff-k16/SST-2/16-13/train.tsv"
    if fault == "corrupt":
        (mirror / rel).write_bytes(b"sentence\tlabel\nb\t0\n")
    if fault == "missing":
        (mirror / rel).unlink()
    root = tmp_path / "data"
    with serve(mirror, truncate=fault == "truncated") as url, pytest.raises(ClgraftError) as e:
        fetch(root, [rel], url, known)
    assert "nothing was written" in str(e.value) and "\n" not in str(e.value)
    assert _left(root) == []  # no partial file, no temp file


def test_unknown_files_are_refused(tmp_path):
    with pytest.raises(ClgraftError, match="not a file clgraft knows a source for"):
        fetch(tmp_path, ["mine/train.tsv"], None, {})


def test_sources_name_the_upstream_paths():
    known = manifest()
    assert len(known) == 224 and set(SOURCES) == {p.split("/")[0] for p in known}
    assert (
        known["lmbff-k16/SST-2/16-13/train.tsv"]
        .source.url("lmbff-k16/SST-2/16-13/train.tsv")
        .endswith(
            "ZhengxiangShi/PowerfulPromptFT/b4ecdea060847115e9909b442ab4eb15bcb2a2c4/data/k-shot/SST-2/16-13/train.tsv"
        )
    )
    assert (
        SOURCES["lfll-fewshot"]
        .url("lfll-fewshot/dbpedia/0_42/test.txt")
        .endswith("/Classification/textclassificationdata/dbpedia_csv/0_42/test.txt")
    )


def test_the_packaged_manifest_is_the_pack(shared_data):
    pack = {}
    for line in (shared_data / "MANIFEST.sha256").read_text().splitlines():
        sha, path = line.split()
        pack[path.removeprefix("./")] = sha
    pack.pop("README.md", None)  # the shared pack's own README; a fetched pack has none
    assert {p: e.sha256 for p, e in manifest().items()} == pack


def test_fetch_all_from_a_mirror_of_the_pack_verifies_clean(shared_data, tmp_path, invoke):
    """`data fetch --all` brings the whole pack (sentence-full/ too) and writes MANIFEST.sha256, so the data tests
    run on it (tests/conftest.py)."""
    from conftest import pack_problem

    root = tmp_path / "data"
    n = len(manifest())
    with serve(shared_data) as url:
        out = invoke("data", "fetch", "--all", "--mirror", url, "--data-dir", root)
    assert f"{n} fetched" in out and pack_problem(root) is None
    assert f"{n} files ok, 0 changed, 0 missing" in invoke("data", "verify", "--data-dir", root)
    pack = {line for line in (shared_data / "MANIFEST.sha256").read_text().splitlines() if "  ./README.md" not in line}
    assert set((root / "MANIFEST.sha256").read_text().splitlines()) == pack
    (root / "lmbff-k16/trec/16-13/dev.csv").write_text("3,changed\n")
    with pytest.raises(ClgraftError, match="checksum differs"):
        invoke("data", "verify", "--data-dir", root)
    listed = invoke("data", "list", "lmbff-mixed", "--data-dir", root)
    assert "trec" in listed and "sst2" in listed


@contextlib.contextmanager
def stalling(folder: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that sends the first bytes of each file, then stalls: a download in progress."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def copyfile(self, source, outputfile) -> None:
            outputfile.write(source.read(4))
            outputfile.flush()
            time.sleep(60)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_fetch_killed_mid_download_leaves_no_temp_file_once_rerun(tmp_path, signum):
    """A fetch in its own process, killed while a file streams in, can leave its hidden temp file; the next fetch
    of the same data directory removes it and brings the file whole."""
    mirror, known = _mirror(tmp_path)
    root = tmp_path / "data"
    entries = ", ".join(f"{rel!r}: Entry({rel!r}, {e.sha256!r}, {e.size})" for rel, e in known.items())
    with stalling(mirror) as url:
        script = f"from pathlib import Path; from clgraft.data.datapack import Entry, fetch; k = {{{entries}}}; "
        script += f"fetch(Path({str(root)!r}), k, {url!r}, k)"
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.time() + 60
        while not list(root.rglob(".*.tmp")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(root.rglob(".*.tmp")), "the download never started"
        proc.send_signal(signum)
        proc.wait()
    with serve(mirror) as url:
        assert fetch(root, known, url, known)["fetched"] == 2
    assert not list(root.rglob(".*.tmp"))
    assert all((root / rel).read_bytes() == (mirror / rel).read_bytes() for rel in known)


def clgraft(*args: object, **env: str) -> tuple[int, str]:
    """`clgraft ARGS` in its own process; (exit code, stdout + stderr)."""
    command = [sys.executable, "-c", "from clgraft.cli import main; main()", *map(str, args)]
    done = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def test_verify_exits_2_when_pack_files_are_missing(tmp_path):
    code, output = clgraft("data", "verify", "sst2", "--data-dir", tmp_path)
    assert code == 2 and "0 files ok, 0 changed, 15 missing" in output, output
    assert "clgraft: error: " in output and "missing (15 file(s) in all); `clgraft data fetch sst2" in output, output


def test_a_pack_file_edited_by_hand_is_refused_unless_allowed(tmp_path, tiny_model_dir):
    """A run on a data-pack file whose bytes are not the pack's stops with one line naming it; with
    CLGRAFT_ALLOW_CHANGED_DATA=1 it trains, warning on stderr about every such file."""
    folder = tmp_path / "data" / "lmbff-k16" / "SST-2" / "16-42"
    folder.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\nbad film\t0\ngood film\t1\ndull\t0\nlovely\t1\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text("stream: mine\nversion: 1\norders: {default: [sst2]}\n")
    run = ["run", "--stream", "mine", "--tasks-dir", tmp_path / "tasks", "--data-dir", tmp_path / "data"]
    run += ["--model", tiny_model_dir, "--out", tmp_path / "run", "--steps", "1", "--batch-size", "2", "--no-progress"]
    code, output = clgraft(*run)
    assert code == 2 and output.count("clgraft: error: ") == 1 and "Traceback" not in output, output
    assert f"{folder / 'train.tsv'} and 2 more file(s) differ(s) from the data pack" in output, output
    assert "CLGRAFT_ALLOW_CHANGED_DATA=1" in output and not (tmp_path / "run" / "run.json").exists()
    code, output = clgraft(*run, CLGRAFT_ALLOW_CHANGED_DATA="1")
    assert code == 0, output
    assert output.count("clgraft: WARNING: ") == 3 and f"{folder / 'test.tsv'} differs from the data pack" in output
