"""`clgraft data`: the packaged manifest, fetching through an HTTP server on 127.0.0.1 that the test starts and
stops, checksums, and failed or partial downloads that leave nothing behind."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
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
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


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
    pack.pop("README.md")
    assert {p: e.sha256 for p, e in manifest().items()} == pack


def test_fetch_all_from_a_mirror_of_the_pack_verifies_clean(shared_data, tmp_path, invoke):
    from clgraft.data.datapack import files_for
    from clgraft.data.registry import Registry

    root = tmp_path / "data"
    n = len({p for paths in files_for(Registry.discover(), []).values() for p in paths})  # every shipped task's
    assert n >= 205  # lmbff-k16, lfll-fewshot, textcls-1k (yelp, amazon, imdb), sentence-full
    with serve(shared_data) as url:
        out = invoke("data", "fetch", "--all", "--mirror", url, "--data-dir", root)
    assert f"{n} fetched" in out
    assert f"{n} files ok, 0 changed, 0 missing" in invoke("data", "verify", "--data-dir", root)
    (root / "lmbff-k16/trec/16-13/dev.csv").write_text("3,changed\n")
    with pytest.raises(ClgraftError, match="checksum differs"):
        invoke("data", "verify", "--data-dir", root)
    listed = invoke("data", "list", "lmbff-mixed", "--data-dir", root)
    assert "trec" in listed and "sst2" in listed
