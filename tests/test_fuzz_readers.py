"""Property-based tests of the readers (hypothesis): task and stream YAML, the data files of every local format
(CSV, TSV, JSON, text), sweep files and run.json, each taken from a valid example and broken at random — keys
dropped, values replaced by any JSON-like value, keys added, the text or bytes replaced. Whatever the input, the
command that reads it (`clgraft tasks validate`, `clgraft leaderboard`, through `clgraft.cli.main` in this
process) ends with exit 0 or with exit 2 and one line `clgraft: error: …`: never a traceback, never exit 1."""

from __future__ import annotations

import io
import json
import sys
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clgraft.cli import main

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TASK = {
    "task": "fz",
    "version": 1,
    "type": "sentiment",
    "labels": ["0", "1"],
    "source": {"kind": "bundled", "format": "lmbff-csv", "files": {"train": "a.csv", "dev": "b.csv", "test": "c.csv"}},
}
STREAM = {"stream": "fzs", "version": 1, "orders": {"default": ["tiny-sst2", "tiny-trec"]}}
SWEEP = {
    "sweep": "fz",
    "version": 1,
    "streams": [{"stream": "tiny"}],
    "methods": ["naive", "ewc:ewc_lambda=10"],
    "grid": {"naive": {}},
    "seeds": [1],
    "run": {"steps": 2, "batch_size": 4},
    "vary": {"steps": [1, 2]},
}
GOOD_ROWS = {
    "lmbff-csv": "0,bad film\n1,good film\n",
    "glue-tsv": "sentence\tlabel\nbad film\t0\ngood film\t1\n",
    "cola-tsv": "src\t0\t*\tbad film\nsrc\t1\t\tgood film\n",
    "sentence-all": "0 bad film\n1 good film\n",
    "textcls-json": '{"0": {"ori": "bad film", "label": 0}, "1": {"ori": "good film", "label": 1}}',
    "lfll-txt": "bad film\t0\ngood film\t1\n",
}


def clgraft(*args: object) -> tuple[int, str]:
    """`clgraft ARGS` through the real entry point in this process; (exit code, stderr)."""
    err, argv = io.StringIO(), sys.argv
    sys.argv = ["clgraft", *map(str, args)]
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    return code, err.getvalue()


def ends_well(code: int, err: str) -> None:
    """Exit 0, or exit 2 with one line naming the problem; nothing else."""
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("clgraft: error: "), err


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def broken(draw: st.DrawFn, base: dict) -> object:
    """`base` with one to three changes: a key (at any depth) dropped or given any value, or a key added."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        node, path = doc, []
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            path.append(key)
            if not isinstance(node[key], dict):
                break
            node = node[key]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            return draw(values)
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "add" or not path:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        elif action == "drop":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(values)
    return doc


def as_yaml(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


yaml_texts = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=":-[]{}!&*#|>'\"\n\t ,?%@`abc01", max_size=120),
)


def validate(files: dict[str, str | bytes], main_file: str) -> tuple[int, str]:
    """Write `files` into a fresh folder and `clgraft tasks validate` the main one; (exit code, stderr with the
    folder's path left out)."""
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            path = Path(folder) / name
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        code, err = clgraft("tasks", "validate", Path(folder) / main_file)
        return code, err.replace(f"{folder}/", "")


def leaderboard(record: object) -> tuple[int, str]:
    """`clgraft leaderboard` of a results folder holding this one record (any JSON value, or bytes as they are);
    (exit code, stderr with the folder's path left out)."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "runs" / "x").mkdir(parents=True)
        text = record if isinstance(record, bytes) else json.dumps(record).encode()
        (Path(folder) / "runs" / "x" / "run.json").write_bytes(text)
        code, err = clgraft("leaderboard", "--results", folder)
        return code, err.replace(f"{folder}/", "")


def good_files(fmt: str = "lmbff-csv") -> dict[str, str]:
    return {name: GOOD_ROWS[fmt] for name in ("a.csv", "b.csv", "c.csv")}


def test_the_valid_examples_are_valid():
    for fmt in GOOD_ROWS:
        task = {**TASK, "source": {**TASK["source"], "format": fmt}}
        if fmt == "glue-tsv":
            task["source"] |= {"text_fields": ["sentence"], "label_field": "label"}
        assert clgraft("tasks", "validate", *_written(task, good_files(fmt)))[0] == 0, fmt
    assert validate({"s.yaml": as_yaml(STREAM)}, "s.yaml")[0] == 0
    assert validate({"w.yaml": as_yaml(SWEEP)}, "w.yaml")[0] == 0


def _written(task: dict, files: dict[str, str]) -> list[Path]:
    folder = Path(tempfile.mkdtemp())
    for name, content in files.items():
        (folder / name).write_text(content)
    (folder / "t.yaml").write_text(as_yaml(task))
    return [folder / "t.yaml"]


@EXAMPLES
@given(doc=broken(TASK))
def test_a_broken_task_file(doc):
    ends_well(*validate({"t.yaml": as_yaml(doc), **good_files()}, "t.yaml"))


@EXAMPLES
@given(doc=broken(STREAM))
def test_a_broken_stream_file(doc):
    ends_well(*validate({"s.yaml": as_yaml(doc)}, "s.yaml"))


@EXAMPLES
@given(doc=broken(SWEEP))
def test_a_broken_sweep_file(doc):
    ends_well(*validate({"w.yaml": as_yaml(doc)}, "w.yaml"))


@EXAMPLES
@given(text=yaml_texts)
def test_any_text_as_a_yaml_file(text):
    ends_well(*validate({"t.yaml": text, **good_files()}, "t.yaml"))


data_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=',\t\n\r"{}[]:\\01ab é\x00', max_size=160).map(lambda t: t.encode("utf-8")),
)


@EXAMPLES
@pytest.mark.parametrize("fmt", sorted(GOOD_ROWS))
@given(content=data_bytes, which=st.sampled_from(["a.csv", "b.csv", "c.csv"]))
def test_a_broken_data_file(fmt, content, which):
    task = {**TASK, "source": {**TASK["source"], "format": fmt}}
    if fmt == "glue-tsv":
        task["source"] |= {"text_fields": ["sentence"], "label_field": "label"}
    files = {**good_files(fmt), which: content}
    ends_well(*validate({"t.yaml": as_yaml(task), **files}, "t.yaml"))


@pytest.fixture(scope="module")
def record(tiny_model_dir, tmp_path_factory) -> dict:
    """The run.json of a real run of the tiny stream (one step per task)."""
    out = tmp_path_factory.mktemp("record") / "run"
    args = ["run", "--stream", "tiny", "--model", tiny_model_dir, "--out", out, "--steps", "1", "--batch-size", "2"]
    assert clgraft(*args, "--max-length", "16", "--no-progress")[0] == 0
    return json.loads((out / "run.json").read_text())


@EXAMPLES
@given(data=st.data())
def test_a_broken_run_record(record, data):
    ends_well(*leaderboard(data.draw(broken(record))))


@EXAMPLES
@given(content=st.binary(max_size=300))
def test_any_bytes_as_a_run_record(content):
    ends_well(*leaderboard(content))


def _task(**source: object) -> dict:
    """TASK with these `source` keys."""
    return {**TASK, "source": {**TASK["source"], **source}}


def _top(**keys: object) -> dict:
    """TASK with these top-level keys (... drops one)."""
    return {k: v for k, v in {**TASK, **keys}.items() if v is not ...}


def _t(doc: object, **files: str | bytes) -> tuple[dict, str]:
    return {"t.yaml": doc if isinstance(doc, str) else as_yaml(doc), **good_files(), **files}, "t.yaml"


def _s(**keys: object) -> tuple[dict, str]:
    return {"s.yaml": as_yaml({"stream": "x", "version": 1, **keys})}, "s.yaml"


def _w(**keys: object) -> tuple[dict, str]:
    return {"w.yaml": as_yaml({k: v for k, v in {**SWEEP, **keys}.items() if v is not ...})}, "w.yaml"


def _d(fmt: str, content: str | bytes) -> tuple[dict, str]:
    task = _task(format=fmt) | ({"source": {**_task(format=fmt)["source"], **TSV}} if fmt == "glue-tsv" else {})
    return {"t.yaml": as_yaml(task), **good_files(fmt), "a.csv": content}, "t.yaml"


TSV = {"text_fields": ["sentence"], "label_field": "label"}

FILES = {
    "YAML: unclosed bracket": _t("task: x\nlabels: [a\n"),
    "YAML: tab indentation": _t("task: x\n\tversion: 1\n"),
    "YAML: python object tag": _t("task: !!python/object:os.system ls\n"),
    "YAML: control character": _t("\x1f"),
    "YAML: a list, not a mapping": _t("- a\n- b\n"),
    "YAML: empty file": _t(""),
    "YAML: neither task nor stream nor sweep": _t({"name": "x"}),
    "task: missing key": _t(_top(labels=...)),
    "task: unknown key": _t(_top(colour="red")),
    "task: key with a line break": _t(_top(**{"a\nb": 1})),
    "task: version not a number": _t(_top(version="one")),
    "task: version 0": _t(_top(version=0)),
    "task: name with a space": _t(_top(task="Has Space")),
    "task: one label": _t(_top(labels=["0"])),
    "task: repeated label": _t(_top(labels=["0", "0"])),
    "task: unknown source kind": _t(_task(kind="ftp")),
    "task: unknown data format": _t(_task(format="xml")),
    "task: no split files": _t(_task(files={})),
    "task: test split missing": _t(_task(files={"train": "a.csv", "dev": "b.csv"})),
    "task: path escaping the folder": _t(_task(files={"train": "../a.csv", "dev": "b.csv", "test": "c.csv"})),
    "task: absolute path": _t(_task(files={"train": "/etc/passwd", "dev": "b.csv", "test": "c.csv"})),
    "task: declared sizes differ from the data": _t(_top(sizes={"train": 99})),
    "task: unknown encoding": _t(_task(encoding="utf-16")),
    "task: unknown citation key": _t(_top(citation="nobody2099")),
    "stream: missing orders": _s(),
    "stream: unknown task": _s(orders={"a": ["nope"]}),
    "stream: task listed twice": _s(orders={"a": ["tiny-sst2", "tiny-sst2"]}),
    "stream: missing task version": _s(orders={"a": ["tiny-sst2@9"]}),
    "stream: empty order": _s(orders={"a": []}),
    "stream: orders not a mapping": _s(orders=["tiny-sst2"]),
    "stream: unknown default order": _s(orders={"a": ["tiny-sst2"]}, default_order="b"),
    "sweep: unknown stream": _w(streams=[{"stream": "nope"}]),
    "sweep: unknown order": _w(streams=[{"stream": "tiny", "orders": ["sideways"]}]),
    "sweep: unknown method": _w(methods=["magic"]),
    "sweep: unknown method option": _w(methods=["ewc:nope=1"]),
    "sweep: grid value of the wrong type": _w(grid={"ewc:ewc_lambda=10": {"ewc_lambda": ["big"]}}),
    "sweep: no seeds": _w(seeds=[]),
    "sweep: steps 0": _w(run={"steps": 0}),
    "sweep: vary an unknown setting": _w(vary={"colour": ["red"]}),
    "sweep: name with a space": _w(sweep="Bad Name"),
    "CSV: wrong number of columns": _d("lmbff-csv", "0,a,b\n"),
    "CSV: unknown label": _d("lmbff-csv", "7,a\n"),
    "CSV: empty file": _d("lmbff-csv", ""),
    "CSV: not UTF-8": _d("lmbff-csv", b"0,caf\xe9\n"),
    "CSV: a carriage return inside a field": _d("lmbff-csv", "0,a\rb\n"),
    "TSV: missing column": _d("glue-tsv", "text\tlabel\na\t0\n"),
    "TSV: wrong number of columns (CoLA)": _d("cola-tsv", "a\tb\n"),
    "JSON: not JSON": _d("textcls-json", "{"),
    "JSON: entries without 'ori'": _d("textcls-json", '{"0": {"text": "a", "label": 0}}'),
    "JSON: a list, not an object": _d("textcls-json", "[1, 2]"),
    "text: a line without a tab": _d("lfll-txt", "a line without a tab\n"),
    "sentence file: only blank lines": _d("sentence-all", "\n\n"),
}
"""Bad task, stream, sweep and data files, each read by `clgraft tasks validate`."""


def _edited(change: Callable[[dict], object]) -> Callable[[dict], dict]:
    def edit(record: dict) -> dict:
        copy = json.loads(json.dumps(record))
        change(copy)
        return copy

    return edit


RECORDS: dict[str, Callable[[dict], object]] = {
    "run.json: truncated": lambda r: json.dumps(r)[:80].encode(),
    "run.json: not UTF-8": lambda r: b'{"format": "\xff"}',
    "run.json: a list, not an object": lambda r: [r],
    "run.json: a newer format": _edited(lambda r: r.update(format=2)),
    "run.json: metric missing": _edited(lambda r: r["metrics"].pop("acc")),
    "run.json: metric not a number": _edited(lambda r: r["metrics"].update(acc="high")),
    "run.json: R of the wrong shape": _edited(lambda r: r.update(R=[[0.5]])),
    "run.json: seed not a number": _edited(lambda r: r.update(seed="one")),
    "run.json: no tasks": _edited(lambda r: r.update(tasks=[])),
    "run.json: unknown method": _edited(lambda r: r["method"].update(name="magic")),
    "run.json: unknown method option": _edited(lambda r: r["method"]["options"].update(nope=1)),
    "run.json: heads not an object (what the memory column is sized by)": _edited(lambda r: r.update(heads=None)),
    "run.json: unknown config key (a newer clgraft's)": _edited(lambda r: r["config"].update(schedule="cosine")),
}
"""Bad run records, each alone in a results folder read by `clgraft leaderboard`."""


def message(kind: str, record: dict) -> tuple[int, str]:
    """The exit code and stderr of the reader of one catalogued bad input."""
    if kind in FILES:
        return validate(*FILES[kind])
    return leaderboard(RECORDS[kind](record))


SKIPPED_ALONE = "no readable run record under runs: 1 record(s) skipped, not counted: runs/x/run.json: "
"""How the leaderboard of a folder whose one record is unreadable begins its line."""
CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md"


def test_at_least_40_kinds_of_bad_input_are_catalogued():
    assert len(FILES) + len(RECORDS) >= 40


@pytest.mark.parametrize("kind", [*FILES, *RECORDS])
def test_each_catalogued_bad_input_gets_the_line_docs_show(kind, record):
    """Each kind: exit 2, one line naming the file and what is wrong — the line docs/bad-inputs.md shows."""
    code, err = message(kind, record)
    ends_well(code, err)
    assert code == 2, (kind, err)
    row = next((line for line in CATALOGUE.read_text().splitlines() if line.startswith(f"| {kind} |")), None)
    assert row is not None, f"docs/bad-inputs.md has no row for {kind!r}"
    said = err.strip().removeprefix("clgraft: error: ").removeprefix(SKIPPED_ALONE)
    assert said[:90].replace("|", "\\|") in row, (kind, said, row)  # the start: lists of known names may grow
