"""How far each layer moves in fine-tuning (docs/protocols.md, Radiya-Dixit & Wang 2020): per-tensor L1/D, relative L2
and angular distance for every task, aggregated per transformer block; "critical layers" fine-tunes only the k blocks
that moved most and compares its accuracy with full fine-tuning, and, with controls, the k blocks that moved least,
k blocks drawn at random and the head alone: whether it is the critical blocks that suffice, or any k. With controls,
each block's distances also get a reference scale where every task starts from θ₀: the same three measures between
task t's fine-tune and each other task's, averaged over the other tasks — "close to θ₀" read against how far apart
two solutions of this model's fine-tuning lie."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd
import torch

from clgraft.analysis.run_files import OpenRun, kept_analysis, layer_of, refuse_joint
from clgraft.io.figures import finish_lines, pyplot, run_line, save
from clgraft.io.records import write_json
from clgraft.methods import get_method
from clgraft.metrics.closeness import layer_closeness
from clgraft.training.loop import train_task

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def closeness_table(run: OpenRun, start: torch.Tensor, after: torch.Tensor) -> pd.DataFrame:
    """Per block-parameter tensor, from flat block vectors where a task's fine-tuning started and ended: its block,
    size, L1/D, relative L2, angular distance."""
    table = layer_closeness(run.view.split(start), run.view.split(after))
    table.insert(0, "layer", [layer_of(n) for n in table.index])
    return table


def by_layer(run: OpenRun, start: torch.Tensor, after: torch.Tensor) -> pd.DataFrame:
    """Per transformer block: ‖Δ‖₁/D, ‖Δ‖₂/‖θ_start‖₂ and 1 − cos over the block's parameters taken together."""
    return distances(run, start, after, start)


def distances(run: OpenRun, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> pd.DataFrame:
    """Per transformer block, between flat block vectors a and b: ‖b − a‖₁/D, ‖b − a‖₂/‖scale‖₂ and 1 − cos(a, b)."""
    rows = {}
    for layer, (lo, hi) in run.layers().items():
        x, y = a[lo:hi].double(), b[lo:hi].double()
        diff = y - x
        rows[layer] = {
            "l1": float(diff.abs().mean()),
            "rel_l2": float(diff.norm() / scale[lo:hi].double().norm()),
            "angular": float(1 - torch.nn.functional.cosine_similarity(x, y, dim=0)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def reference_by_layer(run: OpenRun, t: int, finetuned: dict[int, torch.Tensor]) -> pd.DataFrame:
    """The reference scale of task t's closeness: per block, the distances of `by_layer` between θ_t and each other
    task's fine-tune θ_u (relative L2 still over ‖θ₀‖), averaged over u. For independent fine-tunes θ_t − θ_u =
    τ_t − τ_u, so where the tasks' updates are nearly orthogonal the reference is about √2 × each one's own distance:
    it says how far apart two solutions lie, which a distance from θ₀ is read against, not how close either is."""
    others = [distances(run, finetuned[t], theta_u, run.theta0) for u, theta_u in finetuned.items() if u != t]
    return sum(others[1:], others[0]) / len(others)


def critical_layers(run: OpenRun, t: int, layers: list[str]) -> float:
    """Test accuracy of task t fine-tuned from its starting point with only these blocks (and the head) trained."""
    model = run.fresh_model()  # at θ₀
    if t > 0 and not run.from_theta0:
        model.body.load_state_dict(run.body(run.state_after(t - 1)))
    chosen = set(layers)
    for name, p in model.body.named_parameters():
        p.requires_grad_(layer_of(name) in chosen)
    task, opts = run.tasks[t], run.ctx.opts
    seed = run.runner.config.seed * 1000 + t
    torch.manual_seed(seed)  # dropout draws as in the run's own fine-tuning of this task
    train_task(
        model,
        task.head,
        task.train,
        opts,
        seed,
        run.runner.device,
        task.label_offset,
        desc=f"critical layers {task.task.task}",
        progress=run.ctx.progress,
    )
    return run.test_accuracy(model, t)


def control_layers(ranked: list[str], k: int, seed: int, order: list[str]) -> dict[str, list[str]]:
    """The critical-layers controls for blocks `ranked` from most to least moved: the k that moved least (`bottom`),
    k drawn uniformly with `seed` (`random`, listed in the model's `order`), and none (`head_only`: the head alone
    is trained)."""
    drawn = torch.randperm(len(ranked), generator=torch.Generator().manual_seed(seed))[:k].tolist()
    picked = {ranked[i] for i in drawn}
    return {"bottom": ranked[-k:], "random": [b for b in order if b in picked], "head_only": []}


def _critical(run: OpenRun, t: int, ranked: list[str], order: list[str], k: int, controls: bool, before: dict) -> dict:
    """Task t's critical-layers entry: fine-tuning only the k most moved of the `ranked` blocks (`order`: the same
    blocks in model order), and with `controls` the control blocks (`control_layers`). What `before` (an earlier entry
    with the same k, blocks and full fine-tuning accuracy) holds is kept, not trained again: adding the controls costs
    the controls alone."""
    name, full = run.names[t], run.finetuned_accuracy(t)
    if before.get("k") == k and before.get("layers") == ranked[:k] and before.get("full_acc") == full:
        critical = dict(before)
    else:
        acc = critical_layers(run, t, ranked[:k])
        critical = {"k": k, "layers": ranked[:k], "acc": acc, "full_acc": full, "of_full": acc / full}
        run.echo(f"{name}: only {', '.join(ranked[:k])} trained: acc {100 * acc:.1f} vs full {100 * full:.1f}")
    if controls and "controls" not in critical:
        critical["controls"] = {}
        for control, layers in control_layers(ranked, k, run.runner.config.seed * 1000 + t, order).items():
            acc = critical_layers(run, t, layers)
            critical["controls"][control] = {"layers": layers, "acc": acc, "of_full": acc / full}
            run.echo(f"{name}: control {control} ({', '.join(layers) or 'no block'}): acc {100 * acc:.1f}")
    return critical


def analyze_closeness(run: OpenRun, tasks: list[int], k: int | None, controls: bool = False) -> dict:
    """Closeness for each task (per tensor and per block); with `controls` its reference scale (`reference_by_layer`);
    with k, the critical-layers comparison, and with `controls` the same fine-tuning of the control blocks
    (`control_layers`) beside it. What an earlier analysis made is kept: its critical-layers fine-tunes (those of the
    same blocks with k, all of them without) and its reference where `controls` does not make it again. Writes
    analysis/closeness.json, closeness.csv (per tensor) and closeness.png, and the summary into run.json.

    analysis/closeness.json is also written after each task, its earlier entries kept for the tasks not reached yet
    (run.json's summary only at the end), so an analysis stopped midway keeps the fine-tunes it made and, made
    again, trains only the rest; its `cpu_s` adds the earlier file's, as the results it kept cost that."""
    refuse_joint(run, "closeness")
    earlier, spent = kept_analysis(run.dir, "closeness")
    finetuned = _all_finetuned(run) if controls else {}
    results, frames = {}, []
    for t in tasks:
        name = run.names[t]
        start = run.start(t)
        after = finetuned[t] if finetuned else run.blocks(run.state_after(t))  # each weight file read once
        per_tensor, per_layer = closeness_table(run, start, after), by_layer(run, start, after)
        frames.append(per_tensor.assign(task=name))
        entry = {"per_layer": per_layer.to_dict(orient="index"), "per_tensor": per_tensor.to_dict(orient="index")}
        before = earlier.get(name, {})
        if finetuned:
            entry["reference"] = reference_by_layer(run, t, finetuned).to_dict(orient="index")
        elif "reference" in before:  # an analysis without --controls keeps the reference an earlier one made
            entry["reference"] = before["reference"]
        if k:
            ranked = list(per_layer.sort_values("rel_l2", ascending=False).index)
            order = list(per_layer.index)
            entry["critical_layers"] = _critical(run, t, ranked, order, k, controls, before.get("critical_layers", {}))
        elif "critical_layers" in before:  # closeness alone keeps what an earlier critical-layers analysis trained
            entry["critical_layers"] = before["critical_layers"]
        results[name] = entry
        _keep(run, {**earlier, **results}, spent)
    out = run.dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).rename_axis("parameter").to_csv(out / "closeness.csv")
    save(plot_closeness(results, run_line(run.record)), out / "closeness.png")
    summary = {
        name: {
            **_by_measure(e["per_layer"]),
            **({"reference": _by_measure(e["reference"])} if "reference" in e else {}),
            **({"critical_layers": e["critical_layers"]} if "critical_layers" in e else {}),
        }
        for name, e in results.items()
    }
    run.write("closeness", {"tasks": results}, summary, spent)
    return results


def _keep(run: OpenRun, entries: dict[str, dict], spent: float) -> None:
    """analysis/closeness.json with these task entries (in the run's order) and the CPU seconds so far: what a
    stopped analysis leaves for the next one to read back (`kept_analysis`)."""
    cpu = round(spent + time.process_time() - run.cpu_start, 3)
    write_json(run.dir / "analysis" / "closeness.json", {"tasks": _in_order(run, entries), "cpu_s": cpu})


def _in_order(run: OpenRun, entries: dict[str, dict]) -> dict[str, dict]:
    """The entries by task, in the run's task order."""
    return {name: entries[name] for name in run.names if name in entries}


def _all_finetuned(run: OpenRun) -> dict[int, torch.Tensor]:
    """Every task's fine-tuned block vector, for the reference scale: empty (no reference) unless the weights after
    each task are that task's own fine-tune from θ₀ (Method.r_rows_are_transfer: independent fine-tuning, not a
    method that merges, composes or restores θ₀ after training) and there are two tasks to compare."""
    if not get_method(run.runner.config.method).r_rows_are_transfer or len(run.names) < 2:
        run.echo(
            "closeness: no reference scale (it compares each task's own fine-tune from θ₀, saved after the task, "
            "as independent fine-tuning saves them; two tasks or more)"
        )
        return {}
    return {u: run.blocks(run.state_after(u)) for u in range(len(run.names))}


def _by_measure(per_layer: dict) -> dict:
    """{measure}_by_layer for the run.json summary: relative L2, L1/D and 1 − cos of each block."""
    return {f"{m}_by_layer": {layer: v[m] for layer, v in per_layer.items()} for m in ("rel_l2", "l1", "angular")}


def plot_closeness(results: dict, run: str) -> Figure:
    """Relative L2 change per transformer block, one line per task, under a title naming the run; the legend sits
    outside the axes so it hides no line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for name, entry in results.items():
        layers = list(entry["per_layer"])
        (line,) = ax.plot(
            range(len(layers)), [entry["per_layer"][la]["rel_l2"] for la in layers], marker="o", label=name
        )
        if "reference" in entry:
            ax.plot(
                range(len(layers)),
                [entry["reference"][la]["rel_l2"] for la in layers],
                linestyle="--",
                color=line.get_color(),
                label=f"{name}: to the other tasks' fine-tunes",
            )
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlabel("transformer block")
    ax.set_ylabel("relative L2 change ‖θ_t − θ_start‖₂ / ‖θ_start‖₂")
    finish_lines(ax, "task", "How far each transformer block moved while fine-tuning each task\n" + run)
    return fig


def table(results: dict) -> str:
    """Per-block relative L2 (×10⁻³) for each task; with the reference scale, each measure from θ_start beside the
    same measure to the other tasks' fine-tunes; and the critical-layers comparison where run."""
    rel = pd.DataFrame(
        {name: {la: 1e3 * v["rel_l2"] for la, v in e["per_layer"].items()} for name, e in results.items()}
    )
    text = "relative L2 change ‖Δ‖₂/‖θ_start‖₂ per block, ×10⁻³\n" + rel.round(3).to_string()
    reference = {name: e["reference"] for name, e in results.items() if "reference" in e}
    if reference:
        text += "\n\nper block: from θ_start / to the other tasks' fine-tunes (the reference scale)"
        for measure, what in (("rel_l2", "relative L2"), ("l1", "L1/D"), ("angular", "1 − cos")):
            pairs = {
                name: {la: f"{v[measure]:.3g} / {ref[la][measure]:.3g}" for la, v in results[name]["per_layer"].items()}
                for name, ref in reference.items()
            }
            text += f"\n{what}\n" + pd.DataFrame(pairs).to_string()
    crit = {
        name: {
            "layers": ", ".join(e["critical_layers"]["layers"]),
            "acc": round(100 * e["critical_layers"]["acc"], 1),
            "full": round(100 * e["critical_layers"]["full_acc"], 1),
            **{control: round(100 * c["acc"], 1) for control, c in e["critical_layers"].get("controls", {}).items()},
        }
        for name, e in results.items()
        if "critical_layers" in e
    }
    if crit:
        text += (
            "\n\ncritical layers only vs full fine-tuning (test accuracy %; controls: the k blocks that moved least, "
            "k random blocks, the head alone)\n" + pd.DataFrame(crit).T.to_string()
        )
    return text
