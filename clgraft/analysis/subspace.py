"""Subspace dimension of each task's fine-tuning trajectory (docs/protocols.md, Zhang et al. 2023): energy spectra of
the t×D checkpoint-difference matrix overall and per layer, d90/d99; intrinsic-subspace fine-tuning (train only z in
θ_start + Vᵀz); outlier dimensions of the subspace-trained update and their ablation; and, as controls at the
largest d, the same fine-tuning in a random subspace of that d, in another task's subspace, and with no subspace at
all (the head alone)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.func import functional_call

from clgraft.analysis.run_files import OpenRun, kept_analysis, refuse_joint
from clgraft.errors import ClgraftError
from clgraft.io.figures import finish_lines, pyplot, run_line, save
from clgraft.metrics.subspace import effective_dim, energy, subspace_basis, subspace_spectrum
from clgraft.model.headed import BlockView, HeadedModel
from clgraft.training.loop import TrainOptions, train_task

if TYPE_CHECKING:
    from matplotlib.figure import Figure


BASIS_GRAM = "float64"
"""How the bases' Gram matrices are computed (clgraft/metrics/subspace.py: `subspace_basis`); recorded with each
subspace fine-tuning section, so that a section whose bases a float32 Gram matrix cut short is computed again."""


def current_section(entry: dict) -> dict:
    """A task entry's subspace fine-tuning section, empty where there is none or its bases are older than
    BASIS_GRAM's (a float32 Gram matrix cut them short): what claims read, price and call complete."""
    section = entry.get("finetune_in_subspace", {})
    return section if section.get("basis_gram") == BASIS_GRAM else {}


def trajectory(run: OpenRun, t: int, count: int) -> torch.Tensor:
    """X (count × D): `count` evenly spaced saved checkpoints of task t minus the task's starting point."""
    folder = run.dir / "trajectory" / f"task-{t + 1:02d}"
    files = sorted(folder.glob("step-*.safetensors"))
    if not files:
        raise ClgraftError(
            f"{run.dir}: no trajectory checkpoints for task {run.names[t]}; rerun with `clgraft run --trajectory 32`"
        )
    if count > len(files):
        raise ClgraftError(f"--t {count}: the run saved {len(files)} checkpoints per task (clgraft run --trajectory)")
    picks = [files[round((i + 1) * len(files) / count) - 1] for i in range(count)]
    start = run.start(t)
    X = torch.empty((count, run.view.numel))
    for row, path in zip(X, picks, strict=True):
        torch.sub(run.view.flatten(load_file(path)), start, out=row)
    return X


def spectra(run: OpenRun, X: torch.Tensor) -> dict:
    """Whole-model and per-layer energy spectra of the differences from the start, with d90 and d99; and the
    whole-model spectrum of the centred trajectory (the mean checkpoint subtracted, as PCA and DLDR do)."""

    def one(x: torch.Tensor) -> dict:
        s = subspace_spectrum(x)
        return {"energy": energy(s).tolist(), "d90": effective_dim(s, 0.9), "d99": effective_dim(s, 0.99)}

    return {
        "all": one(X),
        "centred": one(X - X.mean(0, keepdim=True)),
        "layers": {name: one(X[:, lo:hi]) for name, (lo, hi) in run.layers().items()},
    }


class SubspaceBody(nn.Module):
    """A body whose block parameters are θ_start + Vᵀz: only z (d numbers) is trained; everything else is fixed."""

    def __init__(self, body: nn.Module, view: BlockView, start: torch.Tensor, basis: torch.Tensor):
        super().__init__()
        self.inner, self.view, self.config = body, view, body.config
        for p in body.parameters():
            p.requires_grad_(False)
        self.register_buffer("start", start, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.z = nn.Parameter(torch.zeros(basis.shape[0]))

    def update(self) -> torch.Tensor:
        """Vᵀz, the block-parameter change (flat)."""
        return self.z @ self.basis

    def forward(self, **inputs):
        flat = self.start + self.update()
        return functional_call(self.inner, self.view.split(flat), args=(), kwargs=inputs, strict=False)


def _fit_subspace(run: OpenRun, t: int, basis: torch.Tensor, lr: float, seed: int) -> HeadedModel:
    body = run.fresh_model().body
    start = run.start(t)
    sub = SubspaceBody(body, run.view, start, basis)
    model = HeadedModel(sub, run.runner.head_sizes, run.runner.config.seed).to(run.runner.device)
    task = run.tasks[t]
    torch.manual_seed(seed)  # dropout draws as in the run's own fine-tuning of this task
    train_task(
        model,
        task.head,
        task.train,
        z_options(run.ctx.opts, lr),
        seed,
        run.runner.device,
        task.label_offset,
        desc=f"subspace {task.task.task}",
        progress=run.ctx.progress,
    )
    return model


def z_options(opts: TrainOptions, lr: float) -> TrainOptions:
    """How z is fitted: with AdamW (the run's kernel where the run used AdamW) at the subspace's learning rate, and
    neither SGD's weight decay nor the ℓ1 pull, which act on the weights θ, not on the coordinates z."""
    kernel = "adamw" if opts.optimizer == "sgd" else opts.optimizer
    return replace(opts, lr=lr, optimizer=kernel, weight_decay=0.0, l1_to_init=0.0)


def _ablate(run: OpenRun, model: HeadedModel, t: int, seed: int) -> dict:
    """Zero the update's outlier coordinates (|Δ| ≥ 3σ of their parameter tensor) vs as many random ones."""
    sub: SubspaceBody = model.body
    with torch.no_grad():
        delta = sub.update()
    outliers = torch.zeros_like(delta, dtype=torch.bool)
    for name, part in run.view.split(delta).items():
        lo = run.view.offsets[name]
        flat = part.reshape(-1)
        outliers[lo : lo + flat.numel()] = flat.abs() >= 3 * flat.std()
    gen = torch.Generator().manual_seed(seed)
    random = torch.zeros_like(outliers)
    for name in run.view.names:  # as many random coordinates as outliers, tensor by tensor
        lo, size = run.view.offsets[name], run.view.sizes[name]
        n = int(outliers[lo : lo + size].sum())
        random[lo + torch.randperm(size, generator=gen)[:n]] = True

    def accuracy_with(zeroed: torch.Tensor) -> float:
        fixed = SubspaceBody(sub.inner, run.view, sub.start + delta.masked_fill(zeroed, 0), sub.basis[:0])
        probe = HeadedModel(fixed, {}, 0).to(delta.device)  # its empty z is made on the CPU
        probe.heads = model.heads
        return run.test_accuracy(probe, t)

    return {
        "outlier_fraction": float(outliers.float().mean()),
        "acc_zero_outliers": accuracy_with(outliers),
        "acc_zero_random": accuracy_with(random),
    }


def analyze_subspace(
    run: OpenRun,
    counts: list[int],
    dims: list[int],
    tasks: list[int],
    lr: float,
    basis_part: float = 0.5,
    controls: bool = False,
) -> dict:
    """Spectra for each t in counts; with dims, intrinsic fine-tuning at each d (basis from the first `basis_part` of
    the largest t's checkpoints, so that it does not contain the end of the fine-tuning) and the outlier ablation at
    the largest d, and with `controls` the control subspaces at the largest d (`_controls`). Writes
    analysis/subspace.json and subspace.png.

    Earlier results are merged, part by part: other tasks, spectra at other t, and subspace fine-tuning at other d
    (same basis and learning rate) are kept, and whatever was already computed is not computed again — an interrupted
    analysis resumes, and tasks, t or d can be added one command at a time without losing earlier ones."""
    refuse_joint(run, "the subspace analysis")
    if dims and run.runner.config.head == "prompt":
        raise ClgraftError(
            f"{run.dir}: fine-tuning in the subspace (--dims) is not implemented for the prompt head; the spectra "
            "are (leave out --dims)"
        )
    earlier, spent = kept_analysis(run.dir, "subspace")
    for t in tasks:
        name = run.names[t]
        before = earlier.get(name, {})
        entry = _task(run, t, counts, dims, lr, basis_part, before, controls)
        if entry == before:
            run.echo(f"{name}: analysed before with these settings; kept")
            continue
        earlier[name] = entry
        _write(run, {n: earlier[n] for n in run.names if n in earlier}, spent)  # after every task: nothing is lost
    return {n: earlier[n] for n in run.names if n in earlier}


def _task(
    run: OpenRun, t: int, counts: list[int], dims: list[int], lr: float, basis_part: float, before: dict, controls: bool
) -> dict:
    """Task t's entry: `before` with the spectra and subspace fine-tuning it lacks added."""
    name = run.names[t]
    entry = {**before, "spectra": dict(before.get("spectra", {}))}
    for count in counts:
        if "centred" not in entry["spectra"].get(str(count), {}):  # absent, or from before the centred spectrum
            spec = entry["spectra"][str(count)] = spectra(run, trajectory(run, t, count))
            run.echo(
                f"{name} t={count}: d90 {spec['all']['d90']}, d99 {spec['all']['d99']}; centred "
                f"{spec['centred']['d90']}, {spec['centred']['d99']}"
            )
    entry["spectra"] = {c: entry["spectra"][c] for c in sorted(entry["spectra"], key=int)}
    if dims:
        entry["finetune_in_subspace"] = _finetune(
            run, t, max(counts), basis_part, dims, lr, before.get("finetune_in_subspace"), controls
        )
    return entry


def basis_checkpoints(basis_t: int, basis_part: float) -> int:
    """How many of the first checkpoints the basis is built from."""
    return max(1, math.ceil(basis_part * basis_t))


def endpoint_share(basis: torch.Tensor, update: torch.Tensor) -> float:
    """‖V u‖² / ‖u‖²: how much of the fine-tuning's final update u lies in the span of the basis (1: all of it)."""
    total = float(update.square().sum())
    return float((basis @ update).square().sum()) / total if total > 0 else 0.0


def _finetune(
    run: OpenRun,
    t: int,
    basis_t: int,
    basis_part: float,
    dims: list[int],
    lr: float,
    before: dict | None,
    controls: bool = False,
) -> dict:
    """Intrinsic fine-tuning at each d in dims, the outlier ablation at the largest, and (controls) the control
    subspaces at the largest; rows and controls of `before` with the same basis (t and part) and learning rate are
    reused, and a different basis or lr starts the section afresh (a section from before `basis_part` existed was
    built from every checkpoint: part 1; one from before `basis_gram` had bases cut short by a float32 Gram matrix)."""
    setting = {"lr": lr, "basis_t": basis_t, "basis_part": basis_part, "basis_gram": BASIS_GRAM}
    same = before is not None and {k: before.get(k, 1.0 if k == "basis_part" else None) for k in setting} == setting
    if before is not None and not same:
        run.echo(f"{run.names[t]}: subspace fine-tuning with a new basis or lr replaces the earlier one")
    k = basis_checkpoints(basis_t, basis_part)
    if max(dims) > k:
        raise ClgraftError(
            f"--finetune-in-subspace {max(dims)}: the basis has {k} checkpoints ({basis_part:g} of t = {basis_t}); "
            "ask for fewer dimensions or a larger --basis-part"
        )
    out = before if same else {"full_acc": run.finetuned_accuracy(t), **setting, "by_d": {}}
    out = {**out, "by_d": dict(out["by_d"])}
    X = None
    for d in dims:
        row = out["by_d"].get(str(d))
        if row is not None and (d != max(dims) or "outliers" in row):
            continue
        if X is None:
            X = trajectory(run, t, basis_t)
            out["basis_checkpoints"], out["endpoint_in_basis"] = k, endpoint_share(subspace_basis(X[:k], k), X[-1])
            X = X[:k]
        out["by_d"][str(d)] = _fit_row(run, t, X, d, lr, out["full_acc"], ablate=d == max(dims))
    out["by_d"] = {d: out["by_d"][d] for d in sorted(out["by_d"], key=int)}
    if controls and out.get("controls", {}).get("random", {}).get("d") != max(dims):
        X = None  # the task's own trajectory is no longer needed: one d × D basis at a time from here
        out["controls"] = _controls(run, t, max(dims), basis_t, k, lr, out["full_acc"])
    return out


def random_basis(d: int, numel: int, seed: int) -> torch.Tensor:
    """d orthonormal rows spanning a uniformly random d-dimensional subspace of R^numel (QR of a Gaussian matrix,
    drawn on the CPU from `seed`)."""
    q, r = torch.linalg.qr(torch.randn(numel, d, generator=torch.Generator().manual_seed(seed)))
    return q.mul_(torch.sign(torch.diagonal(r))).T.contiguous()  # signs fixed: the same basis for the same draw


def other_task(run: OpenRun, t: int) -> int:
    """The task whose subspace is task t's `other_task` control: the next in the stream (the first for the last)."""
    if len(run.names) < 2:
        raise ClgraftError(f"{run.dir}: --controls fine-tunes in another task's subspace; the run has one task")
    return (t + 1) % len(run.names)


CONTROLS = ("random", "other_task", "head_only")


def control_basis(run: OpenRun, t: int, control: str, d: int, basis_t: int, k: int) -> torch.Tensor:
    """A control's basis for task t: d random orthonormal directions (seed run seed × 1000 + t), the next task's
    top-d directions from the first k of its basis_t checkpoints (as task t's own), or none (`head_only`)."""
    if control == "random":
        return random_basis(d, run.view.numel, run.runner.config.seed * 1000 + t)
    if control == "other_task":
        return subspace_basis(trajectory(run, other_task(run, t), basis_t)[:k].clone(), d)
    return torch.zeros(0, run.view.numel)


def _controls(run: OpenRun, t: int, d: int, basis_t: int, k: int, lr: float, full: float) -> dict:
    """Intrinsic fine-tuning of task t in each control subspace (CONTROLS) at dimension d, one basis in memory at a
    time (each is d × D floats)."""
    seed = run.runner.config.seed * 1000 + t
    out = {}
    for name in CONTROLS:
        basis = control_basis(run, t, name, d, basis_t, k)
        acc = run.test_accuracy(_fit_subspace(run, t, basis, lr, seed), t)
        out[name] = {"d": basis.shape[0], "acc": acc, "of_full": acc / full if full else None}
        if name == "other_task":
            out[name]["task"] = run.names[other_task(run, t)]
        run.echo(f"{run.names[t]} control {name} (d={basis.shape[0]}): acc {100 * acc:.1f} vs full {100 * full:.1f}")
        del basis
    return out


def _fit_row(run: OpenRun, t: int, X: torch.Tensor, d: int, lr: float, full: float, ablate: bool) -> dict:
    """Train only z in the d-dimensional subspace of X; test accuracy, its share of full fine-tuning, and (ablate)
    the outlier ablation."""
    name = run.names[t]
    seed = run.runner.config.seed * 1000 + t
    basis = subspace_basis(X, d)
    model = _fit_subspace(run, t, basis, lr, seed)
    acc = run.test_accuracy(model, t)
    row = {
        "d": basis.shape[0],  # d itself unless the trajectory has fewer directions (`subspace_basis`)
        "acc": acc,
        "of_full": acc / full if full else None,
        "z_norm": float(model.body.z.detach().norm()),
    }
    run.echo(f"{name} subspace d={basis.shape[0]}: acc {100 * acc:.1f} vs full {100 * full:.1f}")
    if ablate:
        row["outliers"] = o = _ablate(run, model, t, seed)
        run.echo(
            f"{name} d={d} outliers {100 * o['outlier_fraction']:.2f}% of coordinates: acc without them "
            f"{100 * o['acc_zero_outliers']:.1f}, without as many random ones {100 * o['acc_zero_random']:.1f}"
        )
    return row


def _write(run: OpenRun, results: dict, earlier_cpu_s: float) -> None:
    save(plot_spectra(results, run_line(run.record)), run.dir / "analysis" / "subspace.png")
    summary = {
        name: {
            "d90": {c: e["spectra"][c]["all"]["d90"] for c in e["spectra"]},
            "d99": {c: e["spectra"][c]["all"]["d99"] for c in e["spectra"]},
            "d90_centred": {c: e["spectra"][c]["centred"]["d90"] for c in e["spectra"]},
            "d99_centred": {c: e["spectra"][c]["centred"]["d99"] for c in e["spectra"]},
            **({"finetune_in_subspace": e["finetune_in_subspace"]} if "finetune_in_subspace" in e else {}),
        }
        for name, e in results.items()
    }
    run.write("subspace", {"tasks": results}, summary, earlier_cpu_s)


def plot_spectra(results: dict, run: str) -> Figure:
    """Cumulative energy against the number of directions, one line per task (the largest t), with the 90% and 99%
    levels that d90 and d99 read off, under a title naming the run; the legend sits outside the axes."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for name, entry in results.items():
        count = max(entry["spectra"], key=int)
        cumulative = np.cumsum(entry["spectra"][count]["all"]["energy"])
        ax.plot(range(1, len(cumulative) + 1), cumulative, marker=".", label=f"{name} (t={count})")
    for level in (0.9, 0.99):
        ax.axhline(level, color="grey", linestyle="--", linewidth=1)
        ax.text(1.01, level, f"{level:.0%}", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.35")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("directions d (top singular vectors of the t checkpoint differences)")
    ax.set_ylabel("cumulative energy (Σσ² of the top d / Σσ²)")
    title = "Energy of each task's fine-tuning trajectory in its top d directions\n" + run
    finish_lines(ax, "task (checkpoints t)", title, legend_x=1.06)
    return fig


def table(results: dict) -> str:
    """d90/d99 per task and t, and subspace fine-tuning accuracy as % of full."""
    import pandas as pd

    rows = []
    for name, entry in results.items():
        row = {"task": name}
        for count, spec in entry["spectra"].items():
            row[f"d90@t={count}"], row[f"d99@t={count}"] = spec["all"]["d90"], spec["all"]["d99"]
        for d, r in entry.get("finetune_in_subspace", {}).get("by_d", {}).items():
            row[f"d={d} % of full"] = round(100 * r["of_full"], 1) if r["of_full"] is not None else None
            if "outliers" in r:
                o = r["outliers"]
                row["outliers %"] = round(100 * o["outlier_fraction"], 2)
                row["acc −outliers"] = round(100 * o["acc_zero_outliers"], 1)
                row["acc −random"] = round(100 * o["acc_zero_random"], 1)
        for control, c in entry.get("finetune_in_subspace", {}).get("controls", {}).items():
            row[f"{control} % of full"] = round(100 * c["of_full"], 1) if c["of_full"] is not None else None
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)
