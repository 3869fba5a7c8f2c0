"""`clgraft paired A B`: two leaderboard rows seed by seed, restated by hand from the committed run records."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from clgraft.errors import ClgraftError
from clgraft.results.leaderboard import load_records, seed_rows, summarize
from clgraft.results.paired import paired_table, row_groups

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"
PICKED = ("lmbff-mixed-forward-emr-s13-*", "lmbff-mixed-forward-emr-s21-*", "lmbff-mixed-forward-naive-s13-*")
PICKED += ("lmbff-mixed-forward-naive-s21-*", "mbpa-fewshot-i-naive-s13-*")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Copies of a few committed records: emr and naive (AdamW and the SGD recipe's) at seeds 13 and 21 on the mixed
    stream, naive at seed 13 on MbPA."""
    root = tmp_path_factory.mktemp("results")
    for pattern in PICKED:
        for run in sorted(RUNS.glob(pattern)):
            shutil.copytree(run, root / "runs" / run.name, ignore=shutil.ignore_patterns("*.npz"))
    return root


def _ids(results: Path) -> dict[str, str]:
    table = summarize(load_records(results), warn=lambda m: None)
    adamw = table["setting"].str.contains("optimizer=adamw")
    pick = {
        "emr": table[table["method"] == "emr"],
        "naive": table[(table["method"] == "naive") & adamw],
        "mbpa": table[table["stream"] == "mbpa-fewshot"],
    }
    return {name: rows["id"].iloc[0] for name, rows in pick.items()}


def _acc_by_seed(results: Path, method: str, optimizer: str | None = None) -> dict[int, float]:
    out = {}
    for path in sorted((results / "runs").glob(f"lmbff-mixed-forward-{method}-s*/run.json")):
        record = json.loads(path.read_text())
        if optimizer is None or record["config"].get("optimizer", "adamw") == optimizer:
            out[record["seed"]] = 100 * record["metrics"]["acc"]
    return out


def test_a_minus_b_is_the_mean_paired_difference_with_its_t_interval_and_p(results, invoke):
    ids = _ids(results)
    emr, naive = _acc_by_seed(results, "emr"), _acc_by_seed(results, "naive", "adamw")
    seeds = sorted(emr)
    assert seeds == sorted(naive) == [13, 21]
    diffs = np.array([emr[s] - naive[s] for s in seeds])
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    p = stats.ttest_rel([emr[s] for s in seeds], [naive[s] for s in seeds]).pvalue
    expected = f"{diffs.mean():+.2f} [{diffs.mean() - half:+.2f}, {diffs.mean() + half:+.2f}] p={p:.3f} (n=2)"

    frame = seed_rows(load_records(results), warn=lambda m: None)
    table = paired_table(*row_groups(frame, [ids["emr"], ids["naive"]]))
    acc = table.set_index("metric").loc["acc"]
    assert acc["A − B"] == expected and acc["seeds paired"] == "13, 21"
    assert acc["A"].startswith(f"{np.mean(list(emr.values())):.2f} ± ")
    assert list(table["metric"]) == ["acc", "bwt", "forgetting", "la"]  # fwt: neither run measures it

    output = invoke("paired", ids["emr"], ids["naive"], "--results", results)
    assert f"A = {ids['emr']}: emr" in output and f"B = {ids['naive']}: naive" in output
    assert expected in output


def test_unknown_ids_and_rows_of_other_streams_are_refused(results, invoke):
    ids = _ids(results)
    with pytest.raises(ClgraftError, match="no leaderboard row has the id 0badc0de"):
        invoke("paired", ids["emr"], "0badc0de", "--results", results)
    with pytest.raises(ClgraftError, match="different streams or orders"):
        invoke("paired", ids["emr"], ids["mbpa"], "--results", results)


def test_the_heading_names_what_tells_two_rows_of_one_method_apart(results, invoke):
    table = summarize(load_records(results), warn=lambda m: None)
    naive = table[(table["method"] == "naive") & (table["stream"] == "lmbff-mixed")]
    adamw, sgd = (naive[naive["setting"].str.contains(f"optimizer={o}")]["id"].iloc[0] for o in ("adamw", "sgd"))
    output = invoke("paired", sgd, adamw, "--results", results)
    a_line, b_line = (line for line in output.splitlines() if line.startswith(("- A = ", "- B = ")))
    assert "optimizer=sgd" in a_line and "steps=1000" in a_line and "optimizer=adamw" in b_line and "steps=25" in b_line


def test_a_p_below_a_thousandth_prints_as_a_bound_never_as_zero():
    """p is printed to three decimals, so a p below 0.001 would read 'p=0.000'; it reads 'p<0.001'."""
    from clgraft.results.leaderboard import paired_text

    ours = {s: 0.60 + 0.001 * i for i, s in enumerate([13, 21, 42, 87, 100])}
    base = {s: v - 0.05 - 0.0001 * (i % 2) for i, (s, v) in enumerate(ours.items())}
    p = stats.ttest_rel([100 * ours[s] for s in ours], [100 * base[s] for s in ours]).pvalue
    assert p < 0.001
    assert paired_text(ours, base).endswith(" p<0.001 (n=5)")
    assert paired_text(ours, {s: v - 0.05 + 0.03 * (i % 2) for i, (s, v) in enumerate(ours.items())}).count("p=0.") == 1
