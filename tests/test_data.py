"""Readers for every format of the data pack, LM-BFF k-shot sampling, the hub path, and one-line data errors."""

from collections import Counter
from pathlib import Path

import pytest

from clgraft.data.loading import Split, capped_test, kshot_split, load_task
from clgraft.data.registry import Registry, Task
from clgraft.errors import ClgraftError

REPO = Path(__file__).resolve().parent.parent


def test_every_builtin_task_loads_with_its_declared_sizes_for_every_seed(shared_data):
    reg = Registry.discover()
    for (name, _), task in sorted(reg.tasks.items()):
        if task.source.kind == "hub":
            continue
        for seed in task.data_seeds or [None]:
            data = load_task(task, shared_data, seed)
            got = {s: len(data.splits[s]) for s in ("train", "dev", "test")}
            assert got == task.sizes, (name, seed)
            assert set(data.splits["train"].labels) == set(range(len(task.labels))), name
            assert all(isinstance(t, tuple) and all(t) for t in data.splits["train"].texts), name


def test_pair_tasks_read_both_columns(shared_data):
    reg = Registry.discover()
    qnli = load_task(reg.task("qnli"), shared_data, 13).splits["train"]
    mrpc = load_task(reg.task("mrpc"), shared_data, 13).splits["test"]  # header starts with a BOM
    assert len(qnli.texts[0]) == 2 and qnli.texts[0][0].endswith("?")
    assert len(mrpc.texts[0]) == 2 and len(mrpc) == 408


def test_data_seed_picks_the_split_and_a_seed_without_one_is_refused(shared_data):
    sst2 = Registry.discover().task("sst2")
    a, b = (load_task(sst2, shared_data, s).splits["train"].texts for s in (13, 21))
    assert a != b
    with pytest.raises(ClgraftError, match="--seed 7: task sst2 ships no data split for it"):
        load_task(sst2, shared_data, 7)


def test_the_standard_seeds_read_the_three_shipped_fewshot_splits(shared_data, tiny_model_dir, tmp_path):
    """MbPA++ with seeds 13, 21, 42: three different data sets, and run.json says which split each task read."""
    from clgraft.config import RunConfig
    from clgraft.runs.runner import Runner

    agnews = Registry.discover().task("agnews-fs")
    loaded = {s: load_task(agnews, shared_data, s) for s in (13, 21, 42)}
    assert {s: d.data_seed for s, d in loaded.items()} == {13: 142, 21: 242, 42: 42}
    assert len({tuple(d.splits["train"].texts) for d in loaded.values()}) == 3
    assert "lfll-fewshot/ag_news/1_142/train.txt" in loaded[13].checksums
    config = RunConfig(stream="mbpa-fewshot", model=str(tiny_model_dir), seed=21, max_test=10)
    runner = Runner(config, Registry.discover(), shared_data, tmp_path, progress=False, echo=lambda s: None)
    assert [t["data_seed"] for t in runner._tasks_record()] == [242] * 5


def test_kshot_sampler_reproduces_lmbff_shapes_from_the_full_data(shared_data):
    """sentence-full/ → K per label in train and in dev, disjoint, same shape as lmbff-k16/ for that task."""
    full = Task.model_validate(
        {
            "task": "sst2-regen",
            "version": 1,
            "type": "sentiment",
            "labels": ["0", "1"],
            "origin": "x",
            "source": {
                "kind": "local",
                "format": "sentence-all",
                "files": {"pool": "sentence-full/stsa.binary.train", "test": "sentence-full/stsa.binary.test"},
                "kshot": {"pool": "pool", "k": 16},
            },
            "data_seeds": [13, 42],
            "default_data_seed": 42,
        }
    )
    reference = load_task(Registry.discover().task("sst2"), shared_data, 42).splits
    for seed in (13, 42):
        data = load_task(full, shared_data, seed).splits
        for split in ("train", "dev"):
            assert Counter(data[split].labels) == Counter(reference[split].labels) == {0: 16, 1: 16}
        assert not set(data["train"].texts) & set(data["dev"].texts)
    assert (
        load_task(full, shared_data, 13).splits["train"].texts != load_task(full, shared_data, 42).splits["train"].texts
    )


def test_capped_test_set_is_stratified_by_label():
    """60 examples of 14 classes, one of which has only 2: each class gets 60 // 14 = 4 where it has them, the small
    class all it has, and the 6 left over go one each to classes drawn with the fixed seed — the same subset every
    time, in the split's order."""
    sizes = [100] * 13 + [2]
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    split = Split([(f"text {i}",) for i in range(len(labels))], labels)
    capped = capped_test(split, 60)
    counts = Counter(capped.labels)
    assert len(capped) == 60 and counts[13] == 2
    assert sorted(counts[c] for c in range(13)) == [4] * 7 + [5] * 6
    assert capped == capped_test(split, 60) and capped.texts == sorted(capped.texts, key=lambda t: int(t[0][5:]))
    assert capped_test(split, None) is split and capped_test(split, len(split)) is split


def test_kshot_split_is_the_lmbff_protocol():
    import numpy as np

    labels = [0, 1, 2] * 10
    train, dev = kshot_split(labels, 3, seed=5)
    np.random.seed(5)
    order = list(range(30))
    np.random.shuffle(order)
    first_seen = list(dict.fromkeys(labels[j] for j in order))  # LM-BFF groups labels in first-appearance order
    assert first_seen != sorted(first_seen)  # so that this test tells that order from a sorted one
    expect_train = [i for c in first_seen for i in [j for j in order if labels[j] == c][:3]]
    expect_dev = [i for c in first_seen for i in [j for j in order if labels[j] == c][3:6]]
    assert train == expect_train and dev == expect_dev
    with pytest.raises(ClgraftError, match="fewer than 2k"):
        kshot_split(labels, 6, seed=5)


@pytest.mark.parametrize("seed", [13, 42, 100])
def test_kshot_regeneration_gives_lmbffs_published_trec_split(shared_data, seed):
    """TREC's full train file (latin-1) through the k-shot protocol gives LM-BFF's published 16-shot train and dev
    files example for example, in their order."""
    full = Task.model_validate(
        {
            "task": "trec-full",
            "version": 1,
            "type": "question",
            "labels": ["0", "1", "2", "3", "4", "5"],
            "source": {
                "kind": "local",
                "format": "sentence-all",
                "encoding": "latin-1",
                "files": {"pool": "sentence-full/TREC.train.all", "test": "sentence-full/TREC.test.all"},
                "kshot": {"pool": "pool", "k": 16},
            },
        }
    )
    kshot = full.source.kshot.model_copy(update={"seed": seed})
    task = full.model_copy(update={"source": full.source.model_copy(update={"kshot": kshot})})
    regenerated = load_task(task, shared_data, None).splits
    reference = load_task(Registry.discover().task("trec"), shared_data, seed).splits
    for split in ("train", "dev"):
        assert regenerated[split].texts == reference[split].texts
        assert regenerated[split].labels == reference[split].labels


def _user_task(tmp_path: Path, fmt: str, files: dict, kind: str = "bundled") -> Task:
    return Task.model_validate(
        {
            "task": "u",
            "version": 1,
            "type": "x",
            "labels": ["0", "1"],
            "origin": str(tmp_path / "u.yaml"),
            "source": {"kind": kind, "format": fmt, "files": files},
        }
    )


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: None, r"train.csv not found: task u is bundled, its files live next to its YAML.*restore the file"),
        (lambda d: (d / "train.csv").write_text(""), r"train.csv: the file is empty"),
        (lambda d: (d / "train.csv").write_bytes(b"0,caf\xe9\n"), r"train.csv: not utf-8 \(byte 5\).*encoding"),
        (lambda d: (d / "train.csv").write_text("0,good\n7,bad\n"), r"train.csv: unknown label\(s\) \['7'\]"),
        (lambda d: (d / "train.csv").write_text("0\n"), r"train.csv: expected 2 comma-separated columns"),
    ],
)
def test_data_errors_name_the_file_and_the_fix(tmp_path, setup, expected):
    for split in ("dev", "test"):
        (tmp_path / f"{split}.csv").write_text("0,fine\n1,good\n")
    setup(tmp_path)
    task = _user_task(tmp_path, "lmbff-csv", {s: f"{s}.csv" for s in ("train", "dev", "test")})
    with pytest.raises(ClgraftError, match=expected):
        load_task(task, None)


def test_wrong_columns_in_tsv(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.tsv").write_text("text\tlabel\nhello\t0\n")
    task = _user_task(tmp_path, "glue-tsv", {s: f"{s}.tsv" for s in ("train", "dev", "test")})
    with pytest.raises(ClgraftError, match=r"train.tsv: missing column\(s\) \['sentence'\].*fix text_fields"):
        load_task(task, None)


def test_paths_cannot_escape_the_data_dir(tmp_path):
    (tmp_path / "inner").mkdir()
    link = tmp_path / "inner" / "evil"
    link.symlink_to("/etc")
    task = _user_task(tmp_path, "lmbff-csv", {s: "evil/passwd" for s in ("train", "dev", "test")}, kind="local")
    with pytest.raises(ClgraftError, match="escapes the data directory"):
        load_task(task, tmp_path / "inner")


def test_local_task_without_data_dir_says_how_to_fix():
    with pytest.raises(ClgraftError, match="clgraft data fetch .*pass --data-dir DIR / set CLGRAFT_DATA_DIR"):
        load_task(Registry.discover().task("rte"), None)


def test_hub_source_goes_through_datasets_load_dataset(tmp_path):
    """The hub path with a local folder (what load_dataset does for a downloaded dataset), never the network."""
    folder = tmp_path / "mini_glue"
    folder.mkdir()
    rows = "sentence,label\n" + "".join(f"sentence number {i},{i % 2}\n" for i in range(40))
    (folder / "train.csv").write_text(rows)
    (folder / "validation.csv").write_text("".join(rows.splitlines(keepends=True)[:11]))
    task = Task.model_validate(
        {
            "task": "h",
            "version": 1,
            "type": "sentiment",
            "labels": ["0", "1"],
            "origin": "x",
            "source": {
                "kind": "hub",
                "path": str(folder),
                "splits": {"pool": "train", "test": "validation"},
                "kshot": {"pool": "pool", "k": 4},
            },
        }
    )
    data = load_task(task, None)
    assert Counter(data.splits["train"].labels) == {0: 4, 1: 4} and len(data.splits["dev"]) == 8
    assert len(data.splits["test"]) > 0 and data.checksums
    missing = task.model_copy(update={"source": task.source.model_copy(update={"path": str(tmp_path / "nope")})})
    with pytest.raises(ClgraftError, match="datasets.load_dataset"):
        load_task(missing, None)


def test_bundled_tiny_data_matches_the_pack(shared_data):
    """The vendored files are byte-for-byte lines of the pack's files (as their README says)."""
    tiny = REPO / "tasks/tiny/data"
    pairs = [
        ("sst2/train.tsv", "lmbff-k16/SST-2/16-42/train.tsv"),
        ("ag_news/test.txt", "lfll-fewshot/ag_news/0_42/test.txt"),
        ("trec/dev.csv", "lmbff-k16/trec/16-42/dev.csv"),
    ]
    for mine, theirs in pairs:
        source_lines = set((shared_data / theirs).read_text(encoding="utf-8").splitlines())
        assert set((tiny / mine).read_text(encoding="utf-8").splitlines()) <= source_lines
