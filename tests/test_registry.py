"""Task/stream discovery, validation messages, user folders, and the built-in streams of DESIGN §1."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clgraft.cli import app
from clgraft.data.registry import Registry, builtin_tasks_dir, load_yaml_file
from clgraft.errors import ClgraftError

REPO = Path(__file__).resolve().parent.parent
LMBFF = ["sst2", "sst5", "mr", "cr", "mpqa", "subj", "trec", "cola", "mrpc", "qnli", "rte"]


def test_builtin_streams_cover_design_section_1():
    reg = Registry.discover()
    for name in LMBFF:
        assert reg.task(name).data_seeds == [13, 21, 42, 87, 100]
    assert reg.stream("lmbff-sentiment").order(None)[1] == ["sst2", "mr", "cr", "sst5"]
    mixed = reg.stream("lmbff-mixed")
    assert mixed.orders["reversed"] == mixed.orders["forward"][::-1]
    mbpa = reg.stream("mbpa-fewshot").orders
    assert mbpa["i"] == ["yelp-fs", "agnews-fs", "dbpedia-fs", "amazon-fs", "yahoo-fs"]
    assert mbpa["iv"] == ["agnews-fs", "yelp-fs", "amazon-fs", "yahoo-fs", "dbpedia-fs"]
    assert set(mbpa) == {"i", "ii", "iii", "iv"}
    assert reg.stream("olora-fewshot").orders["3"] == ["yahoo-fs", "amazon-fs", "agnews-fs", "dbpedia-fs"]
    tiny = reg.stream("tiny").order(None)[1]
    assert 2 <= len(tiny) <= 3 and all(reg.task(t).source.kind == "bundled" for t in tiny)


def test_run_seeds_map_onto_the_shipped_data_seeds_and_others_are_refused():
    """The few-shot text-classification tasks ship the splits 0_42, 1_142 and 2_242: run seeds 42, 142 and 242 use
    their own, the standard seeds 13 and 21 the other two, so a sweep over 13, 21, 42 sees three data sets; a seed
    without a split is refused, never given seed 42's data."""
    reg = Registry.discover()
    for name in ("agnews-fs", "amazon-fs", "dbpedia-fs", "yahoo-fs", "yelp-fs"):
        task = reg.task(name)
        assert [task.data_seed_for(s) for s in (13, 21, 42, 142, 242)] == [142, 242, 42, 142, 242], name
        with pytest.raises(ClgraftError, match=f"--seed 7: task {name} ships no data split for it; .* 13, 21, 42,"):
            task.data_seed_for(7)
    assert reg.task("sst2").data_seed_for(21) == 21
    with pytest.raises(ClgraftError, match="--seed 7: task sst2"):
        reg.task("sst2").data_seed_for(7)


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


USER_STREAM = "stream: mine\nversion: 1\norders:\n  a: [tiny-sst2, tiny-trec]\n"


def test_user_folder_by_option_and_by_environment(tmp_path, monkeypatch):
    _write(tmp_path, "mine.yaml", USER_STREAM)
    assert Registry.discover([tmp_path]).stream("mine").orders["a"] == ["tiny-sst2", "tiny-trec"]
    monkeypatch.setenv("CLGRAFT_TASKS_PATH", str(tmp_path))
    assert Registry.discover().stream("mine").version == 1


def test_versions_pin_and_latest(tmp_path):
    shutil.copytree(REPO / "tasks/tiny/data", tmp_path / "data")
    _write(tmp_path, "v2.yaml", (REPO / "tasks/tiny/tiny-sst2.yaml").read_text().replace("version: 1", "version: 2"))
    reg = Registry.discover([tmp_path])
    assert reg.task("tiny-sst2").version == 2 and reg.task("tiny-sst2@1").version == 1
    with pytest.raises(ClgraftError, match="has no version 7"):
        reg.task("tiny-sst2@7")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stream: x\nversion: 1\norders:\n  a: [tiny-sst2, tiny-sst2]\n", "orders.a.*task listed twice: tiny-sst2"),
        ("stream: x\nversion: 1\n", "key 'orders'.*Field required"),
        ("stream: x\nversion: one\norders: {a: [tiny-sst2]}\n", "key 'version'.*integer"),
        (
            "stream: x\nversion: 1\norders: {a: [tiny-sst2]}\ncolour: red\n",
            "key 'colour': not a key of a stream; legal keys: stream, version, description, citation, orders, "
            "default_order$",
        ),
        (
            "task: t\nversion: 1\ntype: x\nlabels: [a, b]\nsource: {kind: local, format: lmbff-csv, files: "
            "{train: a, test: t}, kshot: {pool: train, k: 4, seeds: 1}}\n",
            "key 'source.kshot.seeds': not a key of source.kshot; legal keys: pool, k, seed$",
        ),
        ("task: t\nversion: 1\ntype: x\nlabels: [a, b]\nsource: {kind: local, format: csv}\n", "key 'source.format'"),
        (
            "task: t\nversion: 1\ntype: x\nlabels: [a, b]\nsource: {kind: local, format: lmbff-csv, files: "
            "{train: ../x.csv, dev: d, test: t}}\n",
            "source.files.*relative path inside the data directory",
        ),
        (
            "task: t\nversion: 1\ntype: x\nlabels: [a, b]\nsource: {kind: local, format: lmbff-csv, files: "
            "{test: t}}\n",
            "lacks dev, train",
        ),
        (
            "task: t\nversion: 1\ntype: x\ncitation: none\nlabels: [a, b]\nsource: {kind: local, format: lmbff-csv, "
            "files: {train: a, dev: d, test: t}}\n",
            "key 'citation': .*'none' is not a key of clgraft/data/references.bib",
        ),
        ("stream: x\nversion: 1\ncitation: none\norders: {a: [tiny-sst2]}\n", "key 'citation': .*'none' is not a key"),
        ("stream: x\nversion: 1\norders:\n  a: [tiny-sst2\n", "line .* not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("stream: x\nversion: 1\norders: {a: [!!python/object:os.system ls]}\n", "not valid YAML"),
    ],
)
def test_validate_names_file_key_and_reason(tmp_path, text, expected):
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ClgraftError, match=expected) as err:
        load_yaml_file(path)
    assert str(path) in str(err.value)


def test_stream_referencing_missing_task_version(tmp_path):
    _write(tmp_path, "s.yaml", "stream: x\nversion: 1\norders: {a: [tiny-sst2@3, tiny-trec]}\n")
    with pytest.raises(ClgraftError, match=r"s.yaml: orders.a: task 'tiny-sst2' has no version 3"):
        Registry.discover([tmp_path]).stream("x")


def test_extra_key_lists_the_legal_keys_of_sweeps_and_run_records(tmp_path):
    """Every caller of validation_message gets the list, also those that pass only the file (sweeps, run.json)."""
    from pydantic import ValidationError

    from clgraft.config import RunConfig
    from clgraft.errors import validation_message
    from clgraft.sweeps.sweep import load_sweep

    sweep = _write(
        tmp_path, "sw.yaml", "sweep: s\nversion: 1\nstreams: [{stream: tiny, order: [a]}]\nmethods: [naive]\n"
    )
    legal = "stream, orders, methods, seeds"
    with pytest.raises(ClgraftError, match=rf"key 'streams.0.order': not a key of streams.0; legal keys: {legal}$"):
        load_sweep(str(sweep))
    with pytest.raises(ValidationError) as err:
        RunConfig.model_validate({"stream": "tiny", "stepz": 3})
    message = validation_message("run.json", err.value, within="config")
    assert message.startswith("run.json: key 'config.stepz': not a key of config; legal keys: stream, order, method,")


BAD_TASK = (REPO / "tasks/tiny/tiny-sst2.yaml").read_text().replace(
    "task: tiny-sst2", "task: mine-sst2"
) + "sizez: {}\n"


def test_a_broken_file_does_not_hide_the_others(tmp_path):
    """A valid stream is found next to a broken file; an unknown name lists the broken files, as it may be there."""
    good = _write(tmp_path, "mine.yaml", USER_STREAM)
    bad = _write(tmp_path, "bad.yaml", BAD_TASK)
    reg = Registry.discover([tmp_path])
    assert reg.stream("mine").orders["a"] == ["tiny-sst2", "tiny-trec"]
    assert list(reg.broken) == [bad] and reg.broken[bad].startswith(f"{bad}: key 'sizez': not a key of a task;")
    with pytest.raises(ClgraftError) as err:
        reg.stream("mien")
    assert str(err.value) == (
        f"unknown stream 'mien'; known streams (clgraft tasks list): {', '.join(sorted({n for n, _ in reg.streams}))}"
        f"; 1 file could not be read: {reg.broken[bad]}"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["tasks", "validate", str(good)]).exit_code == 0
    shown = runner.invoke(app, ["tasks", "show", "mine", "--tasks-dir", str(tmp_path)])
    assert shown.exit_code == 0 and "tiny-trec@1" in shown.output
    failed = runner.invoke(app, ["tasks", "validate", str(bad)])
    assert failed.exit_code != 0 and str(failed.exception) == reg.broken[bad]


def test_a_stream_naming_a_broken_task_reports_that_file(tmp_path):
    bad = _write(tmp_path, "bad.yaml", BAD_TASK)
    _write(tmp_path, "s.yaml", "stream: x\nversion: 1\norders: {a: [mine-sst2, tiny-trec]}\n")
    reg = Registry.discover([tmp_path])
    with pytest.raises(ClgraftError, match=r"s.yaml: orders.a: unknown task 'mine-sst2'; known tasks: .*") as err:
        reg.stream("x")
    assert str(err.value).endswith(f"; 1 file could not be read: {reg.broken[bad]}")
    assert "\n" not in str(err.value)


def test_no_builtin_file_is_broken():
    """The shipped folder stays strict: every file reads and every stream's tasks resolve."""
    reg = Registry([builtin_tasks_dir()])
    assert reg.broken == {}
    for name, version in reg.streams:
        reg.stream(f"{name}@{version}")


def test_duplicate_definition_fails_loudly(tmp_path):
    _write(tmp_path, "dup.yaml", (REPO / "tasks/tiny/tiny.yaml").read_text())
    with pytest.raises(ClgraftError, match="tiny version 1 is also defined in"):
        Registry.discover([tmp_path])


def test_cli_list_show_validate(tmp_path, shared_data):
    runner = CliRunner()
    listed = runner.invoke(app, ["tasks", "list"])
    assert listed.exit_code == 0
    assert "mbpa-fewshot" in listed.output and "32/32/872" in listed.output  # sst2 sizes
    shown = runner.invoke(app, ["tasks", "show", "lmbff-mixed"])
    assert shown.exit_code == 0 and "sst2@1 (32/32/872)" in shown.output
    good = _write(tmp_path / "u", "mine.yaml", USER_STREAM)
    ok = runner.invoke(app, ["tasks", "validate", str(good)])
    assert ok.exit_code == 0 and "stream mine@1 OK" in ok.output
    checked = runner.invoke(
        app, ["tasks", "validate", str(REPO / "tasks/lmbff/rte.yaml"), "--data-dir", str(shared_data)]
    )
    assert checked.exit_code == 0 and "OK (schema and data)" in checked.output


def test_validate_reports_declared_size_mismatch(tmp_path, shared_data):
    text = (REPO / "tasks/lmbff/rte.yaml").read_text().replace("test: 277", "test: 300")
    path = _write(tmp_path, "rte.yaml", text.replace("task: rte", "task: rte-copy"))
    from clgraft.cli import main

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from clgraft.cli import main; main()",
            "tasks",
            "validate",
            str(path),
            "--data-dir",
            str(shared_data),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and main
    assert proc.stderr.count("\n") == 1 and "key 'sizes'" in proc.stderr and "Traceback" not in proc.stderr


def test_builtin_tasks_ship_inside_the_wheel(tmp_path):
    """A non-editable install finds the built-in tasks: build the wheel, import clgraft from it, list streams."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("clgraft-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "clgraft/_builtin_tasks/tiny/data/sst2/train.tsv").is_file()
    code = "from clgraft.data.registry import Registry; r = Registry.discover(); print(sorted(n for n, _ in r.streams))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'lmbff-mixed'" in out.stdout and "'tiny'" in out.stdout
