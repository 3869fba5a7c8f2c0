"""Overlap of the tasks' localized regions as task similarity (docs/protocols.md): asymmetric overlap and Jaccard
matrices, overall and per layer, the random-mask null, and Spearman ρ with a permutation p-value against four
similarity references — transfer, cosine of task vectors, cosine of the mean-pooled θ₀ representations of the two
tasks' inputs, same task type."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open

from clgraft.analysis.cross_grafts import (
    Scored,
    cross_grafts,
    cross_table,
    fingerprint,
    plot_cross_grafts,
    require_joint,
)
from clgraft.analysis.run_files import OpenRun
from clgraft.errors import ClgraftError
from clgraft.grafting.graft import Graft, load
from clgraft.io.figures import NOT_EVALUATED, pyplot, run_line, save, wrap
from clgraft.metrics.mantel import correlate
from clgraft.metrics.overlap import (
    jaccard_matrix,
    overlap_matrix,
    random_overlap,
    segment_intersection_counts,
)
from clgraft.runs.regions import region_matrix
from clgraft.training.loop import pooled_features

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CELL_IN = 0.5  # inches per overlap cell: room for a 4-digit value; three panels of an 8-task stream stay on a page
JACCARD = "Jaccard |γ_i ∧ γ_j| / |γ_i ∨ γ_j|"


def scope(sparsity: float | None, method: str | None) -> str:
    """What the compared regions are, for titles and names: one sparsity, or each task's own size (TALL masks)."""
    return f"sparsity s = {sparsity:g}" if sparsity is not None else f"{method}'s own region sizes"


def find_grafts(run: OpenRun, sparsity: float | None, method: str | None) -> list[Graft]:
    """One graft per task of the run at this sparsity (from `clgraft localize` or a grafting method's run); with no
    sparsity, the method's graft of each task whatever its size (a TALL mask's size is chosen per task)."""
    if sparsity is None and method is None:
        raise ClgraftError("give --sparsity, or --method for grafts whose size differs per task (tall-masks)")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted((run.dir / "grafts").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sized = sparsity is None or np.isclose(float(meta.get("sparsity") or "nan"), sparsity, rtol=1e-6)
        if not meta.get("sparsity") or not sized:
            continue
        if method is None or meta.get("method") == method:
            found.setdefault(meta.get("task", ""), {})[meta.get("method", "?")] = path
    grafts = []
    for name in run.names:
        options = found.get(name, {})
        if not options:
            where = f"at sparsity {sparsity:g}" if sparsity is not None else f"of method {method}"
            raise ClgraftError(f"{run.dir}: no graft of task {name} {where}; run `clgraft localize` (or the method)")
        if len(options) > 1:
            raise ClgraftError(f"task {name} has grafts of several methods ({', '.join(options)}); pass --method")
        grafts.append(load(next(iter(options.values()))))
    return grafts


def _layer_counts(masks: np.ndarray, layers: dict[str, tuple[int, int]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Whole-model and per-layer intersection counts from one pass over the masks (layer spans cut it in segments)."""
    bounds = np.unique([0, masks.shape[1], *(edge for span in layers.values() for edge in span)])
    counts = segment_intersection_counts(masks, bounds)
    starts = bounds[:-1]
    per_layer = {name: counts[(starts >= lo) & (starts < hi)].sum(0) for name, (lo, hi) in layers.items()}
    return counts.sum(0), per_layer


def _probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of a linear head trained (L-BFGS, L2 1e-3) on frozen features: "task j's head trained briefly"."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    head = torch.nn.Linear(a.shape[1], classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(a), train_y) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((head(b).argmax(-1) == test_y).float().mean())


def references(run: OpenRun) -> dict[str, np.ndarray]:
    """T×T task-similarity references of docs/protocols.md (transfer is a gain over θ₀'s own features, row i = body
    θ_i). A joint run has one body for every task, so transfer and τ cosine, which compare the tasks' own
    fine-tunings, are left out there."""
    model = run.fresh_model()
    device, bs = run.runner.device, run.ctx.opts.eval_batch_size
    tasks = run.tasks
    t = len(tasks)

    def probe_all() -> list[float]:
        accs = []
        for task in tasks:
            tr = pooled_features(model, task.train, bs, device)
            te = pooled_features(model, task.test, bs, device)
            accs.append(_probe(tr, task.train.labels, te, task.test.labels))
        return accs

    base_train = [pooled_features(model, task.train, bs, device) for task in tasks]
    means = torch.stack([f.mean(0) for f in base_train])
    emb_cos = torch.nn.functional.cosine_similarity(means[:, None], means[None, :], dim=-1).numpy()
    types = [task.task.type for task in tasks]
    same_type = np.array([[float(a == b) for b in types] for a in types])
    if run.joint:
        return {"embedding_cosine": emb_cos, "same_type": same_type}
    base = probe_all()
    transfer = np.zeros((t, t))
    taus = []
    for i in range(t):
        run.echo(f"transfer: probing every task on the body after {run.names[i]}")
        state = run.state_after(i)
        model.body.load_state_dict(run.body(state))
        transfer[i] = np.array(probe_all()) - np.array(base)
        taus.append(run.blocks(state) - run.start(i))
    tau_cos = np.array([[float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for b in taus] for a in taus])
    return {"transfer": transfer, "tau_cosine": tau_cos, "embedding_cosine": emb_cos, "same_type": same_type}


def analyze_overlap(run: OpenRun, sparsity: float | None, method: str | None, cross: bool = False) -> dict:
    """Overlap, Jaccard and null matrices (overall and per layer), references and correlations; writes
    analysis/overlap-sS.json, overlap-sS.png and overlap-sS-layers.png. With `cross` (a joint run), also each region
    grafted on every task and the regions' union (clgraft/analysis/cross_grafts.py), and overlap-sS-cross.png; the
    rows scored so far are kept in overlap-sS-cross.scratch.json until then, so a stopped analysis resumes."""
    if cross:
        require_joint(run)
    grafts = find_grafts(run, sparsity, method)
    masks = region_matrix(grafts)
    counts, layer_counts = _layer_counts(masks, run.layers())
    overlap, jac = overlap_matrix(counts), jaccard_matrix(counts)
    null = random_overlap(counts, grafts[0].numel)
    per_layer = {
        layer: {"overlap": overlap_matrix(c).tolist(), "jaccard": jaccard_matrix(c).tolist()}
        for layer, c in layer_counts.items()
    }
    refs = references(run)
    correlations = {name: correlate(jac, ref) for name, ref in refs.items()}
    off = ~np.eye(len(masks), dtype=bool)
    name = overlap_name(sparsity, method)
    payload = {
        "tasks": run.names,
        "sparsity": sparsity,
        "regions": scope(sparsity, method),
        "k": [g.k for g in grafts],
        "overlap": overlap.tolist(),
        "jaccard": jac.tolist(),
        "null_overlap": null.tolist(),
        "per_layer": per_layer,
        "references": {k: v.tolist() for k, v in refs.items()},
        "correlations_with_jaccard": correlations,
    }
    summary = {
        "sparsity": sparsity,
        "mean_overlap": float(overlap[off].mean()),
        "mean_null_overlap": float(null[off].mean()),
        "mean_jaccard": float(jac[off].mean()),
        "correlations_with_jaccard": correlations,
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(null > 0, overlap / null, np.nan)
    panels = {
        "overlap O(i→j) = |γ_i ∧ γ_j| / |γ_j|": (overlap, "share of task j's region also in task i's"),
        "Jaccard": (jac, JACCARD),
        "overlap ÷ random-mask null": (ratio, "× the overlap of random masks (1 = chance)"),
    }
    plots, title = run.dir / "analysis", run_line(run.record)
    regions = scope(sparsity, method)
    save(plot_matrices(run.names, panels, title, regions), plots / f"{name}.png")
    save(plot_layers(run.names, per_layer, title, regions), plots / f"{name}-layers.png")
    scored = None
    if cross:
        regions_seed = fingerprint(grafts, int(run.record["config"]["seed"]))
        scored = Scored(plots / f"{name}-cross.scratch.json", regions_seed, run)
        payload["cross_grafts"], summary["cross_grafts"] = cross_grafts(run, grafts, scored)
        plot_cross_grafts(payload["cross_grafts"], title, regions, plots / f"{name}-cross.png")
    run.write(name, payload, summary, scored.earlier_cpu_s if scored else 0.0)
    if scored:
        scored.done()
    return payload


def region_agreement(run: OpenRun, ours: list[Graft], other: OpenRun, theirs: list[Graft]) -> list[dict]:
    """Task by task, how far two methods' regions of the same task agree (e.g. TALL masks against grafting's), on
    two runs of one stream and base model: the regions' sizes, their intersection, the share of each region inside
    the other, and the share a random region of the same size would have (its size over N)."""
    if run.names != other.names or run.record["model"]["sha256"] != other.record["model"]["sha256"]:
        raise ClgraftError(f"{run.dir} and {other.dir}: not the same tasks on the same base model; nothing to compare")
    rows = []
    for name, a, b in zip(run.names, ours, theirs, strict=True):
        inter = len(np.intersect1d(a.positions.numpy(), b.positions.numpy(), assume_unique=True))
        rows.append(
            {
                "task": name,
                "k": a.k,
                "k_other": b.k,
                "intersection": inter,
                "share_of_other_inside": inter / b.k if b.k else float("nan"),
                "chance_share": a.k / a.numel,
                "share_inside_other": inter / a.k if a.k else float("nan"),
                "jaccard": inter / (a.k + b.k - inter) if a.k + b.k > inter else float("nan"),
            }
        )
    return rows


def overlap_name(sparsity: float | None, method: str | None) -> str:
    """The analysis's name (file stem, run.json key): by sparsity, or by method for regions of their own size."""
    return f"overlap-s{sparsity:g}" if sparsity is not None else f"overlap-{method}"


def _titles(fig, what: str, run: str, regions: str) -> None:
    """A two-line title, what is plotted at which sparsity and then the run, wrapped to the figure's width; and a
    footnote saying why the diagonal is grey."""
    title = f"{what} at {regions}\n{run}"
    fig.suptitle(wrap(title, width=int(9 * fig.get_figwidth())), fontsize=10)
    fig.supxlabel("grey diagonal: a task with itself, left out", fontsize=8, color="0.35")


def _colorbar(fig, image, ax, label: str) -> None:
    """A colorbar beside ax (a list of axes: beside them all) with its label, its ticks in the panels' font size."""
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=8)


def _blank_diagonal(matrix) -> np.ndarray:
    """A float copy with NaN on the diagonal, so that the pairs of different tasks set the colour scale."""
    m = np.array(matrix, dtype=float)
    np.fill_diagonal(m, np.nan)
    return m


def _text_colour(image, value: float) -> str:
    """Black on the bright end of the image's colormap, white on the dark end: the cell's own colour decides, so a
    value reads on any scale."""
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def _task_axes(ax, names: list[str], row_labels: bool) -> None:
    """Task names on both axes (rows i, columns j, as in O(i→j)); row names only where asked, as panels share them."""
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(names)), names if row_labels else [], fontsize=8)
    ax.set_xlabel("task j")
    if row_labels:
        ax.set_ylabel("task i")


def plot_matrices(names: list[str], panels: dict[str, tuple[np.ndarray, str]], run: str, regions: str) -> Figure:
    """Annotated heatmaps side by side, panels {title: (T×T matrix, colorbar label)}, under a title naming the run
    and the sparsity. The diagonal (a task with itself) is left out so the pairs set the scale, and each value is
    written dark on bright cells and light on dark ones."""
    plt = pyplot()
    width = len(panels) * (CELL_IN * len(names) + 1.6) + 1.2  # + colorbars and the row labels
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, CELL_IN * len(names) + 2.4), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad=NOT_EVALUATED)
    for column, (ax, (title, (matrix, label))) in enumerate(zip(axes[0], panels.items(), strict=True)):
        m = _blank_diagonal(matrix)
        image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, aspect="equal")
        for (i, j), value in np.ndenumerate(m):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color=_text_colour(image, value))
        _task_axes(ax, names, row_labels=column == 0)
        ax.set_title(title, fontsize=9)
        _colorbar(fig, image, ax, label)
    _titles(fig, "Overlap of the tasks' localized regions γ", run, regions)
    return fig


def plot_layers(names: list[str], per_layer: dict[str, dict], run: str, regions: str) -> Figure:
    """Jaccard per transformer block, one small heatmap each on one colour scale, read on a shared colorbar, under a
    title naming the run and the sparsity."""
    plt = pyplot()
    layers = list(per_layer)
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    panel = 0.3 * len(names) + 1.3  # inches per panel: square cells, plus the task names
    width = max(panel * cols + 1.4, 7.0)  # + the colorbar; at least wide enough for the title in two or three lines
    fig, axes = plt.subplots(rows, cols, figsize=(width, panel * rows + 1.4), squeeze=False, layout="constrained")
    matrices = {layer: _blank_diagonal(per_layer[layer]["jaccard"]) for layer in layers}
    top = max(float(np.nanmax(m, initial=0)) for m in matrices.values()) or 1.0
    cmap = plt.get_cmap("viridis").with_extremes(bad=NOT_EVALUATED)
    for index, (ax, layer) in enumerate(zip(axes.flat, layers, strict=False)):
        image = ax.imshow(np.ma.masked_invalid(matrices[layer]), cmap=cmap, vmin=0, vmax=top, aspect="equal")
        ax.set_title(layer, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names if index % cols == 0 else [], fontsize=6)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    _colorbar(fig, image, list(axes.flat), "Jaccard, one scale for every block")
    _titles(fig, f"{JACCARD} of the tasks' localized regions per transformer block", run, regions)
    return fig


def table(payload: dict) -> str:
    """Overlap matrix and the correlations as text."""
    import pandas as pd

    names = payload["tasks"]
    frame = pd.DataFrame(payload["overlap"], index=names, columns=names).map(lambda v: f"{v:.3f}")
    corr = pd.DataFrame(payload["correlations_with_jaccard"]).T[["rho", "p", "pairs"]]
    text = (
        f"overlap O(i→j) = |γ_i ∧ γ_j| / |γ_j| at {payload['regions']} (random-mask null: O = s_i)\n"
        f"{frame.to_string()}\n\nSpearman ρ of Jaccard against each similarity reference (Mantel permutation p)\n"
        f"{corr.to_string()}"
    )
    return text + (f"\n\n{cross_table(payload['cross_grafts'])}" if "cross_grafts" in payload else "")
