"""PNG plots a person can read: for one run the R heatmap and accuracy over the stream per task; for a results
folder ACC and forgetting bars per method and stream (mean ± std over seeds). Analysis plots already in a run's
analysis/ folder are listed with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clgraft.plots import pyplot, save
from clgraft.results import read_json


def report_run(run_dir: Path) -> list[Path]:
    """report/R.png and report/accuracy-over-time.png for a finished run, plus its analysis PNGs."""
    record = read_json(run_dir / "run.json")
    names = [t["name"] for t in record["tasks"]]
    rows = [(i, r) for i, r in enumerate(record["R"]) if r is not None]
    R = np.array([r for _, r in rows], dtype=float) * 100
    labels = ["before" if i == 0 else f"after {names[i - 1]}" for i, _ in rows]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 3, 0.5 * len(rows) + 2))
    image = ax.imshow(R, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            shown = "-" if np.isnan(R[i, j]) else f"{R[i, j]:.0f}"  # not evaluated (--evaluate seen|final)
            ax.text(j, i, shown, ha="center", va="center", color="white", fontsize=8)
    ax.set_title(f"R: test accuracy % ({record['method']['name']}, {record['stream']['name']}, seed {record['seed']})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    out = [save(fig, run_dir / "report" / "R.png")]
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [i for i, _ in rows]
    for j, name in enumerate(names):
        ax.plot(steps, R[:, j], marker="o", label=name)
    ax.set_xticks(steps, ["θ₀" if i == 0 else str(i) for i in steps])
    ax.set_xlabel("after task")
    ax.set_ylabel("test accuracy %")
    ax.legend(fontsize=7)
    out.append(save(fig, run_dir / "report" / "accuracy-over-time.png"))
    return out + sorted((run_dir / "analysis").glob("*.png"))


def report_results(results: Path, records: list[dict]) -> list[Path]:
    """plots/STREAM-ORDER.png per stream: ACC and forgetting bars per method (mean ± std over seeds)."""
    frame = pd.DataFrame(
        {
            "stream": f"{r['stream']['name']}-{r['stream'].get('order', '')}",
            "method": r["method"]["name"]
            + (
                " (" + ", ".join(f"{k}={v}" for k, v in r["method"]["options"].items()) + ")"
                if r["method"]["options"]
                else ""
            ),
            "acc": r["metrics"]["acc"],
            "forgetting": r["metrics"]["forgetting"],
        }
        for r in records
    )
    plt = pyplot()
    out = []
    for stream, part in frame.groupby("stream", sort=False):
        stats = part.groupby("method", sort=False)[["acc", "forgetting"]].agg(["mean", "std"]).fillna(0) * 100
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(stats) + 2.5))
        for ax, metric in zip(axes, ("acc", "forgetting"), strict=True):
            ax.barh(stats.index, stats[(metric, "mean")], xerr=stats[(metric, "std")], color="tab:blue")
            ax.set_xlabel(f"{'ACC' if metric == 'acc' else 'forgetting'} (points)")
            ax.invert_yaxis()
        axes[1].set_yticks([])
        fig.suptitle(stream)
        out.append(save(fig, results / "plots" / f"{stream}.png"))
    return out
