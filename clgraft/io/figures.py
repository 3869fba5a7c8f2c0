"""Matplotlib without a display, and one way to write a figure: every PNG clgraft makes goes through here."""

from __future__ import annotations

import textwrap
from pathlib import Path

NOT_EVALUATED = "#d9d9d9"  # light grey: R entries skipped by --evaluate seen|final


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 130) -> Path:
    """Lay out, write and close a figure; returns the path. A figure made with a layout engine (constrained) keeps
    it; others get tight_layout. The saved area grows to hold every title and label, so none is cut off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    pyplot().close(fig)
    return path


def finish_lines(ax, legend_title: str, title: str, legend_x: float = 1.01) -> None:
    """The common end of a line plot: a light grid, the legend beside the axes (never over the lines) and a title
    wrapped to the figure's width."""
    ax.grid(alpha=0.3)
    ax.legend(title=legend_title, fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(legend_x, 1))
    ax.set_title(wrap(title, width=70), fontsize=10)


def wrap(text: str, width: int) -> str:
    """Wrap each line of text to at most width characters, so a long run name stays inside the figure."""
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def stream_label(stream: dict) -> str:
    """'name, order o' (or just the name): which stream and task order a plot is about."""
    return f"{stream['name']}, order {stream['order']}" if stream.get("order") else stream["name"]


def run_line(record: dict) -> str:
    """The run a plot belongs to, in one line: method, stream and order, seed."""
    return f"{record['method']['name']} on {stream_label(record['stream'])}, seed {record['seed']}"
