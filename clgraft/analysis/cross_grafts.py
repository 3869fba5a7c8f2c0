"""Each task's region of a multi-task model grafted alone and all together (docs/protocols.md, "Cross grafts").

In a joint run every task's region γ_i is searched in the one model (τ = θ_joint − θ₀), so any region can be grafted
and read through any task's head: the test accuracy on task j of θ₀ + γ_i⊙τ with task j's head, for every pair
(i, j), says whether a region carries its own task's skill and not another's (and more of a similar task's than of a
dissimilar one's); θ₀ + (γ_1 ∨ … ∨ γ_T)⊙τ on every task says whether the regions together keep the multi-task model.
Two references read beside them: θ₀ with the trained heads alone (what a region adds nothing to) and a random region
of the union's size (what any region that large gives).
"""

from __future__ import annotations

import hashlib
import time
from statistics import fmean
from typing import TYPE_CHECKING

import numpy as np
import torch

from clgraft.analysis.run_files import OpenRun
from clgraft.errors import ClgraftError
from clgraft.grafting.graft import Graft
from clgraft.grafting.localize import top_k_mask
from clgraft.io.figures import pyplot, save, wrap
from clgraft.io.records import read_json, write_json
from clgraft.model.headed import BodySnapshot
from clgraft.training.loop import split_accuracy

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from matplotlib.figure import Figure

NOT_TAU = {"sparsify"}
"""Graft methods whose stored change is not τ (sparsify's is −θ₀): their regions cannot be read as τ grafts."""
EVAL_BATCH = 64
"""The batch size `clgraft localize` scores its grafts at, so that a region grafted on its own task gives the
accuracy localize.json records for it, to the bit."""


class Scored:
    """The pieces of the cross grafts scored so far (a region's row, a reference's row), kept in a scratch file after
    each one, so that an analysis stopped midway (a signal, a crash) resumes where it stopped instead of from the
    first region. The file holds the regions' fingerprint: pieces scored for other regions (searched again since, and
    moved by float rounding) are not reused, and neither is a file that cannot be read."""

    def __init__(self, path: Path, regions: str, run: OpenRun):
        self.path, self.regions, self.run = path, regions, run
        try:
            kept = read_json(path) if path.is_file() else {}
        except ClgraftError:
            kept = {}
        self.pieces: dict[str, list[float]] = kept.get("pieces", {}) if kept.get("regions") == regions else {}
        self.earlier_cpu_s: float = kept.get("cpu_s", 0.0) if self.pieces else 0.0
        """The CPU seconds spent on the pieces kept (their process's, from opening the run): this call adds to them."""
        if self.pieces:
            run.echo(f"cross grafts: {len(self.pieces)} rows kept from an analysis stopped midway ({path.name})")

    def row(self, key: str, score: Callable[[], list[float]]) -> list[float]:
        """The piece `key`: kept, or scored now and written to the scratch file at once."""
        if key not in self.pieces:
            self.pieces[key] = score()
            spent = self.earlier_cpu_s + time.process_time() - self.run.cpu_start
            write_json(self.path, {"regions": self.regions, "pieces": self.pieces, "cpu_s": round(spent, 3)})
        return self.pieces[key]

    def done(self) -> None:
        """Remove the scratch file once the analysis is written."""
        self.path.unlink(missing_ok=True)


def fingerprint(grafts: list[Graft], seed: int) -> str:
    """What the cross grafts are a function of, besides the run: every region's positions and the random regions'
    seed (a SHA-256)."""
    digest = hashlib.sha256(str(seed).encode())
    for graft in grafts:
        digest.update(graft.positions.numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def cross_grafts(run: OpenRun, grafts: list[Graft], scored: Scored) -> tuple[dict, dict]:
    """(payload, summary) of the cross grafts of a joint run's regions (one graft per task, in stream order); each
    row of accuracies is kept in `scored` as soon as it is made (and read from it where it was made before).

    payload: `accuracy[i][j]` (region i on task j); per task j `random_own` (a random region of task j's size, on
    task j), `union`, `random_union` (a random region of the union's size), `base` (θ₀ with the heads) and `full`
    (the joint model, R's last row); the union's size. The random regions are the first k entries of one seeded
    uniformly random order of the block parameters. Summary: per task j the own region's accuracy, the mean over
    the other tasks' regions of another type and of the same type (None where there is none), and the rest."""
    require_joint(run)
    if methods := sorted({g.meta.get("method") for g in grafts} & NOT_TAU):
        raise ClgraftError(f"cross grafts graft τ on each region; {methods[0]} grafts change θ₀ otherwise")
    names, types = run.names, [task.task.type for task in run.tasks]
    model = run.fresh_model()
    theta0 = BodySnapshot(model, run.view)  # θ₀ everywhere in the body, embeddings included, as a graft file builds
    device = theta0.blocks.device
    state = run.state_after(len(names) - 1)
    model.load_state_dict(state)  # the joint model's heads (its body is put back to θ₀ + γ⊙τ before each score)
    grafted = theta0.blocks + (run.blocks(state).to(device) - theta0.blocks)  # θ₀ + τ, as localize builds it
    masks = [_mask(graft, run.view.numel).to(device) for graft in grafts]
    union = torch.stack(masks).any(0)
    seed = int(run.record["config"]["seed"])
    order = torch.rand(run.view.numel, generator=torch.Generator().manual_seed(seed))  # drawn on the CPU

    def random_region(k: int) -> torch.Tensor:
        return top_k_mask(order, k).to(device)

    def accuracy(mask: torch.Tensor | None, j: int) -> float:
        theta0.restore(model, None if mask is None else torch.where(mask, grafted, theta0.blocks))
        task = run.tasks[j]
        return split_accuracy(model, task.head, task.test, task.label_offset, EVAL_BATCH, run.runner.device)

    t = len(names)
    matrix = []
    for i, name in enumerate(names):
        run.echo(f"cross grafts: {name}'s region on every task")
        matrix.append(scored.row(f"region {i}", lambda i=i: [accuracy(masks[i], j) for j in range(t)]))
    run.echo("cross grafts: random regions, the union of the regions, and θ₀ with the heads")
    random_union = random_region(int(union.sum()))
    per_task = {
        "random_own": scored.row("random_own", lambda: [accuracy(random_region(grafts[j].k), j) for j in range(t)]),
        "union": scored.row("union", lambda: [accuracy(union, j) for j in range(t)]),
        "random_union": scored.row("random_union", lambda: [accuracy(random_union, j) for j in range(t)]),
        "base": scored.row("base", lambda: [accuracy(None, j) for j in range(t)]),
        "full": [float(a) for a in run.record["R"][-1]],
    }
    payload = {
        "tasks": names,
        "types": types,
        "k": [g.k for g in grafts],
        "accuracy": matrix,
        **per_task,
        "union_k": int(union.sum()),
        "union_share": float(union.sum()) / run.view.numel,
        "random_seed": seed,
    }
    summary = {
        "union_k": payload["union_k"],
        "union_share": payload["union_share"],
        "tasks": {name: task_summary(matrix, types, j, per_task) for j, name in enumerate(names)},
    }
    return payload, summary


def require_joint(run: OpenRun) -> None:
    """A one-line error unless the run is joint: only there do all the regions come from one model and one τ."""
    if not run.joint:
        raise ClgraftError(
            f"{run.dir}: cross grafts read every task's region from one multi-task model; this run fine-tuned each "
            "task on its own (analyse a joint run: clgraft run --method joint)"
        )


def _mask(graft: Graft, numel: int) -> torch.Tensor:
    """A graft's region as a flat bool vector of N entries."""
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[graft.positions] = True
    return mask


def task_summary(matrix: list[list[float]], types: list[str], j: int, per_task: dict[str, list[float]]) -> dict:
    """Task j's column: its own region, the other regions by type (their mean; None where no task is of that kind),
    and each per-task graft on task j (a random region of its size, the union, a random region of the union's size,
    θ₀ with the heads, the joint model)."""
    others = [i for i in range(len(types)) if i != j]
    other_type = [matrix[i][j] for i in others if types[i] != types[j]]
    same_type = [matrix[i][j] for i in others if types[i] == types[j]]
    return {
        "own": matrix[j][j],
        "other_type": fmean(other_type) if other_type else None,
        "same_type": fmean(same_type) if same_type else None,
        **{key: values[j] for key, values in per_task.items()},
    }


def cross_table(payload: dict) -> str:
    """The cross-graft accuracies (%) as text: a row per region and reference, a column per task."""
    import pandas as pd

    names = payload["tasks"]
    rows = {f"γ of {n}": payload["accuracy"][i] for i, n in enumerate(names)}
    rows |= {
        "random, the task's size": payload["random_own"],
        "union of all γ": payload["union"],
        "random, union's size": payload["random_union"],
        "none (θ₀ + heads)": payload["base"],
        "joint model": payload["full"],
    }
    frame = pd.DataFrame(rows, index=names).T.map(lambda v: f"{100 * v:.1f}")
    return (
        f"test accuracy (%) of each region grafted on θ₀, read on each task (column) with its head; the union holds "
        f"{payload['union_k']} entries ({payload['union_share']:.3%} of the blocks)\n{frame.to_string()}"
    )


def plot_cross_grafts(payload: dict, run: str, regions: str, path: Path) -> Path:
    """Write cross_figure to path."""
    return save(cross_figure(payload, run, regions), path)


def cross_figure(payload: dict, run: str, regions: str) -> Figure:
    """Test accuracy (%) of every graft on every task as an annotated heatmap: a row per task's region, then a
    random region of each task's own size, the union, a random region of the union's size and no region (θ₀ with
    the heads); a column per task, labelled with its type; the joint model's own accuracy under the task names."""
    plt = pyplot()
    names, types = payload["tasks"], payload["types"]
    rows = [*payload["accuracy"], payload["random_own"], payload["union"], payload["random_union"], payload["base"]]
    labels = [f"γ of {n}" for n in names]
    labels += ["random, the task's size", "union of all γ", "random, union's size", "none (θ₀ + heads)"]
    values = 100 * np.array(rows, dtype=float)
    fig, ax = plt.subplots(figsize=(0.8 * len(names) + 3.2, 0.42 * len(rows) + 2.6), layout="constrained")
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        colour = "black" if image.norm(value) > 0.5 else "white"
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color=colour)
    for index in range(len(names)):
        ax.add_patch(plt.Rectangle((index - 0.5, index - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))
    ax.axhline(len(names) - 0.5, color="white", linewidth=2)
    full = payload["full"]
    ax.set_xticks(
        range(len(names)),
        [f"{n}\n({t})\nθ_joint {100 * f:.1f}" for n, t, f in zip(names, types, full, strict=True)],
        fontsize=7,
    )
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("evaluated on task j (its head), its type, and the joint model's accuracy")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("test accuracy (%)", fontsize=8)
    title = f"Each region grafted on θ₀, read on every task (red: a region on its own task) at {regions}\n{run}"
    ax.set_title(wrap(title, width=int(9 * fig.get_figwidth())), fontsize=9)
    return fig
