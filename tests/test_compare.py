"""`clgraft compare`: runs every method × seed once, reuses them after, and aggregates mean ± std from run.json."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from clgraft.cli import app
from clgraft.results.leaderboard import summarize


def test_compare_runs_reuses_and_aggregates(tiny_model_dir, tmp_path):
    args = [
        "compare",
        "--methods",
        "naive,ewc",
        "--seeds",
        "1,2",
        "--model",
        str(tiny_model_dir),
        "--steps",
        "2",
        "--max-length",
        "32",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    table = pd.read_csv(tmp_path / "compare.csv")
    assert table["method"].tolist() == ["naive", "ewc"] and table["n"].tolist() == [2, 2]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("tiny-default-naive-*/run.json"))]
    accs = [100 * r["metrics"]["acc"] for r in records]
    mean, std = pd.Series(accs).mean(), pd.Series(accs).std(ddof=1)
    assert table.loc[0, "acc"].startswith(f"{mean:.2f} ± {std:.2f} [")
    assert "| method" in (tmp_path / "compare.md").read_text()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output.count("not recomputed") == 4


def test_summarize_marks_undefined_metrics():
    rec = {
        "stream": {"name": "tiny", "version": 1, "order": "default"},
        "method": {"name": "joint", "options": {}},
        "tasks": [{"name": "tiny-sst2", "version": 1, "citation": "socher2013sst"}],
        "config": {"stream": "tiny", "method": "joint", "seed": 1},
        "model": {"id": "m", "sha256": "ab" * 32},
        "seed": 1,
        "wall_s": 3.0,
        "metrics": {"acc": 0.5, "bwt": None, "forgetting": None, "fwt": None, "la": None},
    }
    row = summarize([rec], keys=("method", "options")).iloc[0]
    assert row["acc"] == "50.00" and row["bwt"] == "n/a" and row["n"] == 1


def test_bad_seeds_name_the_option():
    from clgraft.errors import ClgraftError

    result = CliRunner().invoke(app, ["compare", "--seeds", "1,x"])
    assert isinstance(result.exception, ClgraftError) and "--seeds '1,x'" in str(result.exception)


def test_methods_take_aliases_and_per_method_options():
    from clgraft.cli import _parse_methods

    assert _parse_methods("naive, ties,graft-compose:compose=union:sparsity=1e-3,stitch") == [
        ("naive", {}),
        ("merge", {"merge": "ties"}),
        ("graft-compose", {"compose": "union", "sparsity": 1e-3}),
        ("graft-compose", {"compose": "stitch", "localizer": "stitch"}),
    ]


@pytest.mark.parametrize(
    ("methods", "message"),
    [("naive,nope", "unknown method 'nope'"), ("ewc:lambda=1", "--opt lambda"), (",", "name at least one")],
)
def test_bad_methods_fail_in_one_line(methods, message):
    from clgraft.errors import ClgraftError

    result = CliRunner().invoke(app, ["compare", "--methods", methods])
    assert isinstance(result.exception, ClgraftError) and message in str(result.exception)
