"""The memory–accuracy frontier: the Pareto front and the budget table on constructed points (paired differences
restated with scipy), names that do not overlap, rows keeping nothing at a tick marked 0, and `clgraft frontier` end
to end on committed records, whose rows are the leaderboard's."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clgraft.results.frontier import BUDGETS_KB, Point, budget_table, display_name, pareto_front

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"


def test_the_front_keeps_the_points_nothing_cheaper_beats():
    kb = [0.0, 1.0, 1.0, 10.0, 100.0, 100.0, 5.0]
    acc = [50.0, 60.0, 55.0, 58.0, 70.0, 70.0, math.nan]
    assert pareto_front(kb, acc) == [0, 1, 4, 5]  # (1, 55) and (10, 58) are beaten by (1, 60); a tie stays on it
    forgetting = [5.0, 3.0, 4.0, 1.0]
    assert pareto_front([0.0, 1.0, 2.0, 3.0], forgetting, higher_is_better=False) == [0, 1, 3]


def _point(name: str, kb: float, acc: dict[int, float], reference: bool = False) -> Point:
    from clgraft.metrics.seeds import confidence_interval

    return Point(
        id=name,
        label=name,
        kb=kb,
        head_kb=0.0,
        stats={"acc": confidence_interval(list(acc.values())), "forgetting": (0.0, 0.0, 0.0)},
        by_seed={"acc": acc, "forgetting": {}},
        reference=reference,
    )


def test_the_best_row_within_each_budget_and_its_paired_difference_from_the_runner_up():
    from scipy import stats

    points = [
        _point("zero", 0.0, {1: 50.0, 2: 52.0, 3: 51.0}),
        _point("tiny", 1.0, {1: 55.0, 2: 54.0, 3: 58.0}),  # exactly at the 1 KB budget: within it
        _point("mid", 600.0, {1: 60.0, 2: 61.0, 3: 59.0}),
        _point("big", 50_000.0, {1: 66.0, 2: 64.0}),  # seed 3 missing: paired over seeds 1 and 2
        _point("joint", 2.0, {1: 90.0, 2: 90.0, 3: 90.0}, reference=True),  # never a budget's best
    ]
    table = budget_table(points).set_index("budget")
    assert list(table.index) == ["≤ 1 KB", "≤ 10 KB", "≤ 100 KB", "≤ 1 MB", "≤ 10 MB", "unlimited"]
    assert table["best"].tolist() == ["tiny", "tiny", "tiny", "mid", "mid", "big"]
    assert table["runner_up"].tolist() == ["zero", "zero", "zero", "tiny", "tiny", "mid"]
    assert table["rows_within"].tolist() == [2, 2, 2, 3, 3, 4]
    diffs = [55 - 50, 54 - 52, 58 - 51]
    low, high = stats.t.interval(0.95, 2, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    first = table.loc["≤ 1 KB"]
    assert (first["diff"], first["n_pairs"]) == (pytest.approx(sum(diffs) / 3), 3)
    assert (first["diff_low"], first["diff_high"]) == (pytest.approx(low), pytest.approx(high))
    assert first["p"] == pytest.approx(stats.ttest_rel([55, 54, 58], [50, 52, 51]).pvalue)
    assert table.loc["unlimited", "n_pairs"] == 2 and table.loc["unlimited", "diff"] == pytest.approx(4.5)


def test_a_budget_with_one_row_has_no_runner_up_and_one_with_none_is_empty():
    table = budget_table([_point("big", 50_000.0, {1: 60.0, 2: 62.0})]).set_index("budget")
    assert table.loc["≤ 1 KB", "rows_within"] == 0 and table.loc["≤ 1 KB", "best"] == ""
    assert table.loc["unlimited", "best"] == "big" and table.loc["unlimited", "runner_up"] == ""
    assert table.loc["unlimited", "n_pairs"] == 0 and math.isnan(table.loc["unlimited", "diff"])
    assert len(BUDGETS_KB) == len(table)


def test_rows_are_named_as_the_literature_names_their_configuration():
    assert display_name("merge", {"merge": "task-arithmetic", "lambdas": [0.5]}) == "task-arithmetic"
    assert display_name("merge", {"merge": "ties"}) == "ties"
    assert display_name("tall-masks", {"mode": "consensus"}) == "consensus"
    assert display_name("tall-masks", {"mode": "task-aware"}) == "tall-masks"
    assert display_name("graft-compose", {"compose": "stitch", "localizer": "stitch"}) == "stitch"
    assert display_name("graft-compose", {"compose": "task-aware", "localizer": "scaled"}) == "graft-compose"


def test_names_of_close_points_are_pushed_apart_and_far_ones_stay():
    from clgraft.results.frontier import LABEL_GAP, _label_heights

    xs, ys = [100.0, 110.0, 120.0, 1e6], [60.0, 60.1, 60.2, 70.0]
    heights = _label_heights(xs, ys)
    gap = LABEL_GAP * (max(ys) - min(ys))
    assert all(b - a >= gap - 1e-9 for a, b in zip(heights[:2], heights[1:3], strict=True))
    assert heights[3] == 70.0 and sum(heights[:3]) == pytest.approx(sum(ys[:3]))  # spread around the group


def test_rows_keeping_nothing_sit_at_a_tick_marked_0_left_of_the_others():
    from clgraft.results.frontier import frontier_figure

    points = [_point("naive", 0.0, {1: 50.0, 2: 52.0}), _point("replay", 0.3, {1: 55.0, 2: 56.0})]
    fig = frontier_figure("tiny", [*points, _point("not counted", math.nan, {1: 60.0, 2: 61.0})])
    ax = fig.axes[1]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == "0" and ax.get_xticks()[0] < 0.3 and "0.1" in ticks
    xs = [line.get_xdata()[0] for line in ax.lines if len(line.get_xdata()) == 1]
    assert min(xs) == ax.get_xticks()[0] and not any(math.isnan(x) for x in xs)
    assert "not counted" not in [t.get_text() for t in ax.texts]


def test_frontier_command_on_committed_records(tmp_path, invoke, shared_data):
    """Two seeds of six mixed-stream rows: a PNG and the budget tables are written, ids and memory are the
    leaderboard's, each budget's best is the row of highest mean ACC within it, and joint is never one."""
    from clgraft.results.leaderboard import kb_cell, load_records, summarize

    picks = ["naive", "osf", "replay", "graft-compose", "tall-masks", "joint"]
    for method in picks:
        for seed in (13, 21):
            for path in RUNS.glob(f"lmbff-mixed-forward-{method}-s{seed}-*"):
                shutil.copytree(path, tmp_path / "runs" / path.name)
    written = invoke("frontier", "--results", tmp_path, "--data-dir", shared_data)
    out = tmp_path / "frontier"
    for name in ("lmbff-mixed-forward.png", "budgets.csv", "budgets.json", "README.md"):
        assert f"written: {out / name}" in written and (out / name).stat().st_size > 0
    assert "![lmbff-mixed, order forward](lmbff-mixed-forward.png)" in (out / "README.md").read_text()
    budgets = pd.read_csv(out / "budgets.csv", dtype={"best_id": str, "runner_up_id": str})
    board = summarize(load_records(tmp_path), data_dir=shared_data).set_index("id")
    means = board["acc"].map(lambda cell: float(cell.split(" ± ")[0]))
    kb = board["extra_kb_per_task"].astype(float)  # as the board shows it: no row here is near a budget's edge
    sequential = board["method"] != "joint"
    assert len(budgets) == len(BUDGETS_KB) and set(budgets["best_id"]) <= set(board.index[sequential])
    for row, limit in zip(budgets.itertuples(), BUDGETS_KB, strict=True):
        assert means[row.best_id] == pytest.approx(means[sequential & (kb <= limit)].max(), abs=0.005)
        assert kb_cell(row.best_kb) == board.loc[row.best_id, "extra_kb_per_task"]


def test_points_name_the_options_that_tell_rows_of_one_method_apart():
    from clgraft.results.frontier import stream_points

    def line(key: str, method: str, options: dict, seed: int) -> dict:
        setting = {"method": method, "method_options": options, "steps": 25}
        return {"key": key, "method": method, "option_values": options, "setting": setting, "seed": seed}

    frame = pd.DataFrame(
        [
            line("a" * 64, "graft-compose", {"compose": "task-aware", "sparsity": 0.01}, 1),
            line("a" * 64, "graft-compose", {"compose": "task-aware", "sparsity": 0.01}, 2),
            line("b" * 64, "graft-compose", {"compose": "task-aware", "sparsity": 0.001}, 1),
            line("c" * 64, "merge", {"merge": "ties"}, 1),
        ]
    ).assign(acc=0.6, forgetting=0.01, extra_kb_per_task=1.0, head_kb_per_task=0.5)
    points = stream_points(frame)
    assert [p.label for p in points] == ["graft-compose (sparsity=0.01)", "graft-compose (sparsity=0.001)", "ties"]
    assert [p.id for p in points] == ["aaaaaaaa", "bbbbbbbb", "cccccccc"]
    assert points[0].by_seed["acc"] == {1: 60.0, 2: 60.0} and points[0].stats["forgetting"][0] == pytest.approx(1.0)


def test_independent_is_drawn_for_accuracy_but_not_as_forgetting():
    """independent's R rows after task j are other tasks' separate fine-tunes — transfer, not forgetting — so its
    frontier point has an ACC and no forgetting to draw; a sequential method's has both."""
    from clgraft.results.frontier import stream_points

    def line(key: str, method: str, seed: int) -> dict:
        setting = {"method": method, "method_options": {}, "steps": 25}
        return {"key": key, "method": method, "option_values": {}, "setting": setting, "seed": seed}

    frame = pd.DataFrame(
        [line("a" * 64, "independent", 1), line("a" * 64, "independent", 2), line("b" * 64, "naive", 1)]
    ).assign(acc=0.6, forgetting=0.16, extra_kb_per_task=1.0, head_kb_per_task=0.5)
    independent, naive = stream_points(frame)
    assert independent.by_seed["forgetting"] == {} and math.isnan(independent.stats["forgetting"][0])
    assert independent.by_seed["acc"] == {1: 60.0, 2: 60.0}
    assert naive.by_seed["forgetting"] == {1: 16.0}


def test_points_are_numbered_by_memory_and_the_key_gives_each_number_its_full_name():
    """Beside each point only its number; the figure's key lists every row as 'N  full name', numbered from the
    least memory kept, so that long names never cover each other on the panels."""
    from clgraft.results.frontier import frontier_figure

    points = [
        _point("graft-compose (sparsity=0.01, optimizer=sgd)", 800.0, {1: 66.0, 2: 67.0}),
        _point("naive", 0.0, {1: 50.0, 2: 52.0}),
        _point("replay (per_class=4)", 0.6, {1: 64.0, 2: 65.0}),
    ]
    fig = frontier_figure("tiny", points)
    (key,) = fig.legends
    assert [t.get_text() for t in key.get_texts()] == [
        "1  naive",
        "2  replay (per_class=4)",
        "3  graft-compose (sparsity=0.01, optimizer=sgd)",
    ]
    assert sorted(t.get_text() for t in fig.axes[0].texts if t.get_text() != "//") == ["1", "2", "3"]
