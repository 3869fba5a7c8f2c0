"""Read a task's examples from local files, bundled files or the hub; LM-BFF k-shot sampling.

Every failure names the file and the fix in one line (ClgraftError). Examples are kept as plain lists: a task is
at most a few thousand sentences, and tokenisation happens once per split in `clgraft.data.batches`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clgraft.data.registry import SPLITS, Source, Task
from clgraft.errors import ClgraftError

DATA_DIR_ENV = "CLGRAFT_DATA_DIR"
TEST_SUBSET_SEED = 0


@dataclass
class Split:
    """Texts (one string or a pair per example) and integer label ids."""

    texts: list[tuple[str, ...]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    """The three splits of a task plus the sha256 of every file read, for the run record."""

    task: Task
    data_seed: int | None
    splits: dict[str, Split]
    checksums: dict[str, str] = field(default_factory=dict)


def default_data_dir() -> Path:
    """Where `clgraft data fetch` puts data when neither --data-dir nor CLGRAFT_DATA_DIR is given."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "clgraft" / "data"


def data_dir_from(option: Path | None) -> Path | None:
    """--data-dir wins over CLGRAFT_DATA_DIR, which wins over the default folder of `clgraft data fetch` (when it
    exists); None when there is none."""
    value = option or (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if value is not None and not value.is_dir():
        raise ClgraftError(f"data directory '{value}' does not exist (from --data-dir or {DATA_DIR_ENV})")
    if value is None and default_data_dir().is_dir():
        return default_data_dir()
    return value


def kshot_split(labels: list[int], k: int, seed: int) -> tuple[list[int], list[int]]:
    """LM-BFF sampling (tools/generate_k_shot_data.py): np.random.seed(seed), shuffle the pool, group by label in
    the order labels first appear in the shuffled pool, first k of each label → train, next k → dev (indices, in
    that order: the order of LM-BFF's files, and so of the training batches)."""
    np.random.seed(seed)
    order = list(range(len(labels)))
    np.random.shuffle(order)  # a list, as LM-BFF shuffles its list of lines: the same permutation for the same length
    by_label: dict[int, list[int]] = {}
    for i in order:
        by_label.setdefault(labels[i], []).append(i)
    for label, idx in by_label.items():
        if len(idx) < 2 * k:
            raise ClgraftError(
                f"label {label} has {len(idx)} examples, fewer than 2k = {2 * k} needed for k-shot train+dev; lower k"
            )
    train = [i for idx in by_label.values() for i in idx[:k]]
    dev = [i for idx in by_label.values() for i in idx[k : 2 * k]]
    return train, dev


def capped_test(split: Split, cap: int | None) -> Split:
    """The test set a run evaluates under `--max-test cap` (config.TEST_SUBSET): a stratified subset drawn with a
    fixed seed (the same for every run seed and method), so that a capped run still sees every label in proportion
    to the cap rather than to chance; the whole split when it has no more than `cap` examples."""
    if cap is None or cap >= len(split):
        return split
    keep = stratified_indices(split.labels, cap, TEST_SUBSET_SEED)
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])


def stratified_indices(labels: list[int], cap: int, seed: int) -> list[int]:
    """`cap` indices (cap < len(labels)), in the labels' order, whose per-class counts are as equal as the cap allows:
    every class gets an equal share, a class with fewer examples gives all it has and the rest is shared again among
    the others, and what cannot be shared equally goes one each to classes drawn with the seed; within a class the
    examples are a seeded random sample. The same labels, cap and seed give the same indices."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    quota = dict.fromkeys(by_class, 0)
    left, open_classes = cap, sorted(by_class)
    while left:
        share = left // len(open_classes)
        if share == 0:  # fewer left than classes with room: one more each for `left` of them, drawn
            for c in rng.choice(open_classes, size=left, replace=False):
                quota[int(c)] += 1
            break
        for c in open_classes:
            take = min(share, len(by_class[c]) - quota[c])
            quota[c] += take
            left -= take
        open_classes = [c for c in open_classes if quota[c] < len(by_class[c])]
    return sorted(i for c in sorted(by_class) for i in rng.permutation(by_class[c])[: quota[c]].tolist())


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    if not path.is_file():
        raise ClgraftError(
            f"data file {path} not found; run `clgraft data fetch` for the task, or check --data-dir / {DATA_DIR_ENV}"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        raise ClgraftError(
            f"{path}: not {encoding} (byte {e.start}); set the task's source.encoding to the file's encoding "
            "(e.g. latin-1) or re-encode the file"
        ) from e
    if not text.strip():
        raise ClgraftError(f"{path}: the file is empty; restore it from the data pack")
    return text


def _rows(path: Path, fmt: str, src: Source) -> list[tuple[tuple[str, ...], str]]:
    """(texts, raw label) pairs for one file of a local format; a file the csv module cannot parse (a NUL byte, a
    stray carriage return inside a field) is a one-line error naming it."""
    try:
        return _parse(path, fmt, src)
    except csv.Error as e:
        raise ClgraftError(f"{path}: not a valid {fmt} file ({e})") from e


def _parse(path: Path, fmt: str, src: Source) -> list[tuple[tuple[str, ...], str]]:
    text = _read_text(path, src.encoding)
    if fmt == "glue-tsv":
        reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
        cols = [*src.text_fields, src.label_field]
        if missing := [c for c in cols if c not in (reader.fieldnames or [])]:
            raise ClgraftError(
                f"{path}: missing column(s) {missing}; header has {reader.fieldnames}; fix text_fields/label_field"
            )
        return [(tuple(r[c] for c in src.text_fields), r[src.label_field]) for r in reader]
    if fmt == "cola-tsv":
        rows = [line.split("\t") for line in text.splitlines() if line]
        if any(len(r) != 4 for r in rows):
            raise ClgraftError(f"{path}: expected 4 tab-separated columns (source, label, mark, sentence)")
        return [((r[3],), r[1]) for r in rows]
    if fmt == "lmbff-csv":
        rows = list(csv.reader(io.StringIO(text)))
        if any(len(r) != 2 for r in rows if r):
            raise ClgraftError(f"{path}: expected 2 comma-separated columns (label, sentence) on every line")
        return [((r[1],), r[0]) for r in rows if r]
    if fmt == "sentence-all":
        out = []
        for line in text.splitlines():
            label, _, sentence = line.strip().partition(" ")
            if line.strip():
                out.append(((sentence,), label))
        return out
    if fmt == "textcls-json":
        try:
            doc = json.loads(text)
            return [((v["ori"],), str(v["label"])) for v in doc.values()]
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
            raise ClgraftError(f"{path}: expected a JSON object of {{'ori': text, 'label': id}} entries ({e})") from e
    if fmt == "lfll-txt":
        rows = [line.rsplit("\t", 1) for line in text.splitlines() if line.strip()]
        if any(len(r) != 2 for r in rows):
            raise ClgraftError(f"{path}: expected `text<TAB>label` on every line")
        return [((r[0],), r[1]) for r in rows]
    raise ClgraftError(f"unknown data format '{fmt}'")


def _to_split(rows: list[tuple[tuple[str, ...], str]], task: Task, where: str) -> Split:
    ids = {lab: i for i, lab in enumerate(task.labels)}
    if unknown := sorted({lab for _, lab in rows if lab not in ids}):
        raise ClgraftError(
            f"{where}: unknown label(s) {unknown[:5]} for task {task.task}; its labels are {task.labels} "
            "(fix the file or the task's `labels`)"
        )
    if not rows:
        raise ClgraftError(f"{where}: no examples; restore the file from the data pack")
    return Split([t for t, _ in rows], [ids[lab] for _, lab in rows])


def _resolve(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ClgraftError(f"{rel}: path escapes the data directory {root}")
    return path


def _local_splits(task: Task, root: Path, seed: int | None) -> tuple[dict[str, Split], dict[str, str]]:
    src = task.source
    splits, sums = {}, {}
    for split, template in src.files.items():
        rel = template.format(seed=task.seed_token(seed))
        path = _resolve(root, rel)
        if src.kind == "bundled" and not path.is_file():
            raise ClgraftError(
                f"data file {path} not found: task {task.task} is bundled, its files live next to its YAML "
                f"({task.origin}); restore the file there (it is not a data-pack file)"
            )
        splits[split] = _to_split(_rows(path, src.format, src), task, str(path))
        sums[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return splits, sums


_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_PROBE_S = 5.0
"""How long to wait for the hub to answer a connection before saying it cannot be reached."""


def _check_hub_reachable(task: Task) -> None:
    """Fail at once, with what to do, when the hub cannot be reached: `datasets` would retry for half a minute and
    then say only that it couldn't reach the repository. Offline mode (HF_HUB_OFFLINE=1) reads the cache instead, and
    is left to `datasets`."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in _OFFLINE):
        return
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=_PROBE_S).close()
    except OSError as e:
        raise ClgraftError(
            f"task {task.task} reads {task.source.path} from the Hugging Face hub, and {endpoint.hostname}:{port} "
            f"cannot be reached ({e.strerror or e}); connect to the network, or, if the data set was downloaded "
            "before, set HF_HUB_OFFLINE=1 to read it from the cache"
        ) from e


def _hub_splits(task: Task, seed: int | None) -> tuple[dict[str, Split], dict[str, str]]:
    """Load through `datasets.load_dataset`; path may be a hub id, a builder name or a local folder."""
    import datasets

    src = task.source
    if not Path(src.path).exists():
        _check_hub_reachable(task)
    splits, fingerprints = {}, {}
    for split, hub_split in src.splits.items():
        try:
            ds = datasets.load_dataset(src.path, src.name, split=hub_split.format(seed=seed))
        except Exception as e:  # datasets raises many types for missing data / no network
            raise ClgraftError(
                f"task {task.task}: datasets.load_dataset('{src.path}', '{src.name}', split='{hub_split}') failed: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        cols = [*src.text_fields, src.label_field]
        if missing := [c for c in cols if c not in ds.column_names]:
            raise ClgraftError(
                f"hub dataset {src.path} split {hub_split}: missing column(s) {missing}; has {ds.column_names}"
            )
        feature = ds.features[src.label_field]
        as_label = feature.int2str if hasattr(feature, "int2str") else str
        rows = [(tuple(str(ex[c]) for c in src.text_fields), as_label(ex[src.label_field])) for ex in ds]
        splits[split] = _to_split(rows, task, f"{src.path}:{hub_split}")
        fingerprints[f"{src.path}:{hub_split}"] = ds._fingerprint
    return splits, fingerprints


ALLOW_CHANGED_DATA_ENV = "CLGRAFT_ALLOW_CHANGED_DATA"
"""Set to 1 to train on data-pack files whose sha256 differs from the pack's (the run records their checksums)."""


def _check_against_pack(task: Task, root: Path, checksums: dict[str, str]) -> None:
    """Refuse a data-pack file whose bytes are not the pack's (edited by hand, another version): its numbers would
    not be the benchmark's, and only run.json's sha256 would show it. With CLGRAFT_ALLOW_CHANGED_DATA=1 the run goes
    on, with a warning on stderr naming each such file."""
    from clgraft.data.datapack import changed_from_pack

    changed = changed_from_pack(checksums)
    if not changed:
        return
    what = f"{root / changed[0]}" + (f" and {len(changed) - 1} more file(s)" if len(changed) > 1 else "")
    if os.environ.get(ALLOW_CHANGED_DATA_ENV) != "1":
        raise ClgraftError(
            f"task {task.task}: {what} differ(s) from the data pack (sha256 {checksums[changed[0]][:12]}…, the pack's "
            f"{_pack_sha(changed[0])}…): edited or another version, so the numbers would not be the benchmark's; "
            f"`clgraft data fetch {task.task}` restores it, or set {ALLOW_CHANGED_DATA_ENV}=1 to train on it anyway"
        )
    for rel in changed:
        print(
            f"clgraft: WARNING: {root / rel} differs from the data pack (sha256 {checksums[rel][:12]}…, the pack's "
            f"{_pack_sha(rel)}…); training on it because {ALLOW_CHANGED_DATA_ENV}=1 — its numbers are not the "
            "benchmark's",
            file=sys.stderr,
        )


def _pack_sha(rel: str) -> str:
    from clgraft.data.datapack import manifest

    return manifest()[rel].sha256[:12]


def load_task(task: Task, data_dir: Path | None, seed: int | None = None) -> TaskData:
    """All three splits of a task; the data seed picks the k-shot split where the task ships several."""
    data_seed = task.data_seed_for(seed)
    src = task.source
    if src.kind == "hub":
        splits, sums = _hub_splits(task, data_seed)
    else:
        if src.kind == "bundled":
            root = Path(task.origin).parent
        elif data_dir is None:
            raise ClgraftError(
                f"task {task.task} reads local files; fetch them with `clgraft data fetch {task.task}` (or a stream "
                f"name), or pass --data-dir DIR / set {DATA_DIR_ENV} to a folder that holds them"
            )
        else:
            root = data_dir
        splits, sums = _local_splits(task, root, data_seed)
        if src.kind == "local":
            _check_against_pack(task, root, sums)
    if src.kshot:
        pool = splits.pop(src.kshot.pool)
        k_seed = src.kshot.seed if src.kshot.seed is not None else (data_seed if data_seed is not None else 42)
        try:
            train, dev = kshot_split(pool.labels, src.kshot.k, k_seed)
        except ClgraftError as e:
            raise ClgraftError(f"task {task.task}: {e}") from None
        splits["train"] = Split([pool.texts[i] for i in train], [pool.labels[i] for i in train])
        splits["dev"] = Split([pool.texts[i] for i in dev], [pool.labels[i] for i in dev])
    return TaskData(task, data_seed, {s: splits[s] for s in SPLITS}, sums)
