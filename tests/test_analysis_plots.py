"""The analysis plots read well: each title names the run and what is plotted, the per-layer heatmaps have a
labelled colorbar, values are written dark on bright cells and light on dark ones, axes are labelled. Hand-made
inputs, no model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clgraft.analysis.closeness import plot_closeness
from clgraft.analysis.overlap import JACCARD, plot_layers, plot_matrices
from clgraft.analysis.subspace import plot_spectra
from clgraft.io.figures import pyplot
from clgraft.runs import localize_run
from clgraft.runs.localize_run import plot_recovered, recovered_figure

RUN = "graft-compose on a-stream, order reversed, seed 7"
NAMES = ["first", "second", "third"]
SIMILARITY = np.array([[1.0, 0.02, 0.0], [0.02, 1.0, 0.01], [0.0, 0.01, 1.0]])


@pytest.fixture(autouse=True)
def _close_figures():
    """Close what each test drew, so figures do not pile up across the file."""
    yield
    pyplot().close("all")


def _title(fig) -> str:
    """The figure's title text (suptitle, else the first axes' title) on one line, however it was wrapped."""
    title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
    return " ".join(title.split())


def _text_colours(ax) -> dict[str, str]:
    """Each written value in the axes and its text colour."""
    return {text.get_text(): text.get_color() for text in ax.texts}


def test_overlap_matrices_name_the_run_and_write_values_readable_on_their_cells():
    panels = {"overlap": (SIMILARITY, "share of j's region"), "Jaccard": (SIMILARITY / 2, JACCARD)}
    fig = plot_matrices(NAMES, panels, RUN, "sparsity s = 0.01")
    title = _title(fig)
    assert RUN in title and "Overlap" in title and "s = 0.01" in title
    overlap_ax, _, _, colorbar_ax = fig.axes  # each panel with its colorbar
    colours = _text_colours(overlap_ax)
    assert colours["0.02"] == "black"  # the top of viridis: yellow
    assert colours["0"] == "white"  # the bottom: dark purple
    assert len(overlap_ax.texts) == 6  # the diagonal is left out
    assert colorbar_ax.get_ylabel() == JACCARD
    assert overlap_ax.get_xlabel() == "task j" and overlap_ax.get_ylabel() == "task i"


def test_overlap_layers_share_one_labelled_colorbar():
    per_layer = {f"layer {k}": {"jaccard": (SIMILARITY * (k + 1)).tolist()} for k in range(5)}
    fig = plot_layers(NAMES, per_layer, RUN, "sparsity s = 0.05")
    assert RUN in _title(fig) and "per transformer block" in _title(fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    (colorbar,) = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(panels) == 5 and len(fig.axes) == 4 * 2 + 1  # 5 blocks on a 4×2 grid (3 left empty), and the bar
    assert "Jaccard" in colorbar.get_ylabel()
    assert colorbar.get_ylim()[1] == pytest.approx(0.02 * 5)  # one scale: the largest pair of any block


def test_closeness_names_the_run_and_labels_both_axes():
    results = {
        name: {"per_layer": {"layer 0": {"rel_l2": 1e-3 * i}, "layer 1": {"rel_l2": 2e-3}}}
        for i, name in enumerate(NAMES)
    }
    (ax,) = plot_closeness(results, RUN).axes
    assert RUN in _title(ax.figure) and "block moved" in _title(ax.figure)
    assert ax.get_xlabel() == "transformer block" and "relative L2" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == NAMES
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the lines, not on them


def test_subspace_spectra_name_the_run_and_label_the_levels():
    results = {name: {"spectra": {"4": {"all": {"energy": [0.7, 0.25, 0.04, 0.01]}}}} for name in NAMES}
    (ax,) = plot_spectra(results, RUN).axes
    assert RUN in _title(ax.figure) and "top d directions" in _title(ax.figure)
    assert ax.get_xlabel().startswith("directions d") and ax.get_ylabel().startswith("cumulative energy")
    assert [t.get_text() for t in ax.texts] == ["90%", "99%"]
    assert all(float(tick).is_integer() for tick in ax.get_xticks())  # d counts directions


def _rows() -> list[dict]:
    """Two tasks localized at two sparsities, both fully recovered: their lines coincide."""
    return [{"task": t, "method": "official", "sparsity": s, "recovered": 1.0} for t in NAMES[:2] for s in (0.01, 0.05)]


def test_recovered_names_the_run_ticks_the_sparsities_and_keeps_equal_lines_apart():
    (ax,) = recovered_figure(_rows(), RUN).axes
    assert RUN in _title(ax.figure) and "recover" in _title(ax.figure)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.05"]
    first, second = ax.get_lines()[:2]
    assert first.get_marker() != second.get_marker() and first.get_fillstyle() == "none"


def test_recovered_draws_what_theta0_with_the_trained_head_recovers_once_per_task():
    """A graft that recovers 0.75 while θ₀ with the task's head alone recovers 0.8 has localized nothing: the plot
    shows that level, dotted in the task's colour, once per task whatever the number of methods."""
    rows = [
        {"task": NAMES[0], "method": m, "sparsity": s, "recovered": 0.75, "acc_base": 0.72, "acc_finetuned": 0.9}
        for m in ("official", "scaled")
        for s in (0.01, 0.05)
    ]
    (ax,) = recovered_figure(rows, RUN).axes
    base = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(base) == 1 and base[0].get_ydata()[0] == pytest.approx(0.8)
    assert base[0].get_color() == ax.get_lines()[0].get_color()
    assert f"{NAMES[0]}: θ₀ + trained head" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_recovered_reads_the_run_from_the_run_json_beside_it(tmp_path, monkeypatch):
    record = {"method": {"name": "independent"}, "stream": {"name": "tiny", "order": "default"}, "seed": 42}
    (tmp_path / "run.json").write_text(json.dumps(record))
    saved = []
    monkeypatch.setattr(localize_run, "save", lambda fig, path: saved.append(fig) or path)
    plot_recovered(_rows(), tmp_path / "localize-recovered.png")
    assert "independent on tiny, order default, seed 42" in _title(saved[0])
