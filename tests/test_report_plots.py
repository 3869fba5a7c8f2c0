"""The report's plots read well: titles name the run and sit inside the figure, heatmap cells are square with a
labelled colorbar, and bar labels carry only the options that tell bars apart. Hand-made records, no training."""

from __future__ import annotations

import json

import pytest
from matplotlib.container import ErrorbarContainer

from clgraft.config import RunConfig
from clgraft.results.report import accuracy_over_time, bar_labels, method_bars, r_heatmap, report_results, report_run

LONG_OPTIONS = {
    "sparsity": 0.01,
    "localize_steps": 3,
    "localize_lr": 1e7,
    "localizer": "official",
    "compose": "task-aware",
}


def _record(
    method: str = "graft-compose", options: dict | None = None, seed: int = 1, acc: float = 0.8, steps: int = 12
) -> dict:
    """A finished two-task run as run.json holds it; one R entry was not evaluated (None)."""
    options = LONG_OPTIONS if options is None else options
    config = RunConfig(stream="a-rather-long-stream-name", method=method, seed=seed, steps=steps)
    return {
        "stream": {"name": "a-rather-long-stream-name", "version": 1, "order": "reversed"},
        "method": {"name": method, "options": options},
        "tasks": [{"name": "first-task", "version": 1}, {"name": "second-task", "version": 1}],
        "config": {**config.model_dump(), "method_options": options},
        "model": {"sha256": "ab" * 32},
        "seed": seed,
        "R": [[0.5, 0.5], [0.9, None], [0.8, 0.95]],
        "metrics": {"acc": acc, "forgetting": None if method == "joint" else 0.1},
    }


def _inside(fig, *artists) -> bool:
    """Whether each artist, once the figure is laid out and drawn, lies within the figure (nothing cut off)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for artist in artists:
        extent = artist.get_window_extent(renderer)
        if extent.x0 < box.x0 - 1 or extent.y0 < box.y0 - 1 or extent.x1 > box.x1 + 1 or extent.y1 > box.y1 + 1:
            return False
    return True


def test_r_heatmap_title_names_the_run_inside_the_figure_with_square_cells():
    fig = r_heatmap(_record())
    ax, colorbar = fig.axes
    title = ax.title.get_text().replace("\n", " ")  # wrapped to the figure's width
    assert "graft-compose" in title and "a-rather-long-stream-name, order reversed" in title and "seed 1" in title
    assert _inside(fig, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels())
    width, height = ax.get_window_extent().size
    assert width / height == pytest.approx(2 / 3, rel=0.05)  # 2 tasks × 3 rows (before, after each)
    assert colorbar.get_ylabel() == "test accuracy (%)"
    assert [t.get_text() for t in ax.texts] == ["50", "50", "90", "–", "80", "95"]


def test_accuracy_over_time_has_a_title_axis_labels_and_a_visible_legend():
    fig = accuracy_over_time(_record())
    (ax,) = fig.axes
    assert "Test accuracy per task" in ax.get_title() and "seed 1" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel() == "test accuracy (%)"
    assert _inside(fig, ax.title, ax.get_legend(), *ax.get_xticklabels())


def test_bar_labels_keep_only_the_options_that_differ_within_a_method():
    methods = [
        {"name": "ewc", "options": {"ewc_lambda": 1e4, "online": False}},
        {"name": "ewc", "options": {"ewc_lambda": 1e6, "online": False}},
        {"name": "graft-compose", "options": LONG_OPTIONS},
        {"name": "joint", "options": {}},
    ]
    assert bar_labels(methods) == ["ewc (ewc_lambda=10000)", "ewc (ewc_lambda=1e+06)", "graft-compose", "joint"]
    long = [{"name": "m", "options": {"k": "a-value-far-too-long-for-any-label"}}, {"name": "m", "options": {"k": 1}}]
    assert bar_labels(long)[0] == "m (k=a-value-far-too…)"  # 16 characters at most


def test_bar_labels_name_a_choice_only_off_its_default_and_a_knob_everywhere():
    """graft-compose at three sparsities, one with a random region: `sparsity` (a number) is on every label,
    `localizer` (a choice) only where it is not the default `scaled`."""
    rows = [{"sparsity": s, "localizer": "scaled"} for s in (1e-4, 0.01, 0.2)] + [
        {"sparsity": 1e-4, "localizer": "random"}
    ]
    labels = [" ".join(label.split()) for label in bar_labels([{"name": "graft-compose", "options": o} for o in rows])]
    assert labels == [
        "graft-compose (sparsity=0.0001)",
        "graft-compose (sparsity=0.01)",
        "graft-compose (sparsity=0.2)",
        "graft-compose (sparsity=0.0001, localizer=random)",
    ]


def test_bar_labels_name_a_run_setting_only_where_it_is_not_the_usual_one():
    """Three rows of one method at the usual settings and one under another recipe: only that one says how (two
    rows with a setting each, as many of one as of the other, both say theirs)."""
    usual = {"optimizer": "adamw", "steps": 25}
    methods = [{"name": "g", "options": {"s": s}, "setting": usual} for s in (0.1, 0.2, 0.3)]
    methods.append({"name": "g", "options": {"s": 0.1}, "setting": {"optimizer": "sgd", "steps": 25}})
    assert bar_labels(methods) == ["g (s=0.1)", "g (s=0.2)", "g (s=0.3)", "g (s=0.1, optimizer=sgd)"]
    # the usual recipe is the one most rows share, whatever their method: naive at each recipe names only the other
    naive = [{"name": "naive", "options": {}, "setting": s} for s in (usual, {"optimizer": "sgd", "steps": 25})]
    assert bar_labels(methods + naive)[-2:] == ["naive", "naive (optimizer=sgd)"]


def test_method_bars_have_short_labels_and_nothing_cut_off():
    other = {**LONG_OPTIONS, "sparsity": 0.05, "compose": "union"}
    records = [
        _record(options=LONG_OPTIONS, seed=1),
        _record(options=LONG_OPTIONS, seed=2, acc=0.7),
        _record(options=other),
        _record("joint", {}),
    ]
    fig = method_bars("a-rather-long-stream-name, order reversed", records)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 3 and labels[-1] == "joint"
    assert all(len(line) <= 32 for label in labels for line in label.splitlines())
    assert "localize_lr" not in " ".join(labels)  # same in both graft-compose entries: not shown
    assert "1–2 seeds" in fig._suptitle.get_text()
    assert "n/a" in [t.get_text() for t in fig.axes[1].texts]  # joint has no forgetting
    assert _inside(fig, fig._suptitle, *fig.axes[0].get_yticklabels())


def test_runs_with_other_settings_are_bars_of_their_own():
    """A 50-step naive run is not a third seed of the 12-step naive bar: its own bar, labelled with what differs."""
    records = [_record("naive", {}, seed=1), _record("naive", {}, seed=2, acc=0.6), _record("naive", {}, steps=50)]
    fig = method_bars("a-rather-long-stream-name, order reversed", records)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["naive (steps=12)", "naive (steps=50)"]
    assert [t.get_text() for t in fig.axes[0].texts] == ["70.0", "80.0 (1 seed)"]  # one seed: no error bar


def test_bars_say_what_a_number_is_when_it_is_not_a_measured_mean_with_a_spread():
    """One seed is no spread; a forgetting fixed by construction is not a measured 0; independent's R rows are
    transfer, not forgetting; merge with merge=ties is TIES; every value label stays inside its axes."""
    fixed = {**_record(seed=1), "metrics_by_construction": {"forgetting": "always θ₀ + its own graft"}}
    fixed["metrics"] = {"acc": 0.8, "forgetting": 0.0}
    records = [fixed, _record("independent", {}), _record("merge", {"merge": "ties", "lambdas": [0.5]}, acc=0.95)]
    fig = method_bars("stream", records)
    assert "one seed each: no error bars" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["graft-compose", "independent", "ties"]
    assert [t.get_text() for t in fig.axes[1].texts] == [
        "0 (by construction)",
        "transfer, not forgetting",
        "10.0 (1 seed)",
    ]
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert all(len(lines.get_segments()) == 0 for c in bars for lines in c.lines[2])  # no zero-width error bars
    fig.canvas.draw()
    for ax in fig.axes:
        frame = ax.get_window_extent()
        assert all(t.get_window_extent().x1 <= frame.x1 for t in ax.texts), [t.get_text() for t in ax.texts]


def test_report_writes_every_png(tmp_path):
    run_dir = tmp_path / "results" / "runs" / "one"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(_record()))
    written = report_run(run_dir) + report_results(tmp_path / "results", [_record(), _record("joint", {})])
    assert [p.name for p in written] == ["R.png", "accuracy-over-time.png", "a-rather-long-stream-name-reversed.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
