"""Localize the tasks of a finished run: one graft file per task and sparsity, accuracy and ECE of θ_t, θ̄(γ) and
θ₀, written to localize.json (merged with earlier results) and, for several sparsities, a recovered-vs-sparsity plot.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from clgraft.data.batches import Encoded
from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.grafting.graft import Graft
from clgraft.grafting.graft import load as load_graft
from clgraft.grafting.localize import CONTROLS, LocalizeOptions, MaskLearner, Method, split_score
from clgraft.io.figures import pyplot, run_line, save, wrap
from clgraft.io.records import read_json, write_json
from clgraft.methods.base import PreparedTask
from clgraft.methods.grafting import scored_task
from clgraft.metrics.calibration import ece
from clgraft.model.headed import BlockView, BodySnapshot, HeadedModel
from clgraft.runs.runner import Runner, weights_path
from clgraft.training.loop import accuracy, predict, split_accuracy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLITS = ("train", "dev")
"""The few-shot splits θ_t is also scored on (the search's metric), beside its test accuracy: how well the fine-tune
fits what it was trained and searched on, read without the test set (`train_finetuned`, `dev_finetuned`)."""
DEFAULT_STEPS = 10
"""Mask-search steps of a localization that names none (`localize_finished_run`: the Python API and the claims)."""
MARKERS = "osD^v<>p"  # open markers of different shapes: lines at the same value (often 1.0) all stay visible


def _test_metrics(model: HeadedModel, task: PreparedTask, device: torch.device) -> tuple[float, float, torch.Tensor]:
    """Test accuracy, ECE and each example's predicted label."""
    logits = predict(model, task.head, task.test, 64, device)
    labels = task.test.labels + task.label_offset
    return accuracy(logits, labels), ece(logits, labels), logits.argmax(-1)


def agreement(predicted: torch.Tensor, reference: torch.Tensor) -> float:
    """The share of examples on which two models predict the same label."""
    return float((predicted == reference).float().mean())


def ood_tests(runner: Runner, registry: Registry, data_dir: Path | None, task: PreparedTask) -> dict[str, Encoded]:
    """The test sets of a task's out-of-distribution tasks (its YAML's `ood`), capped and encoded as the run's own
    test sets; each must share the task's label space, so that the task's head reads it label for label."""
    from clgraft.data.batches import encode
    from clgraft.data.loading import capped_test, load_task

    out = {}
    for ref in task.task.ood:
        shifted = registry.task(ref)
        if shifted.space != task.task.space or len(shifted.labels) != len(task.task.labels):
            raise ClgraftError(
                f"task {task.task.task}: ood task {shifted.task} is in label space '{shifted.space}' with "
                f"{len(shifted.labels)} labels, not '{task.task.space}' with {len(task.task.labels)}; set the same "
                "`label_space` (label ids are matched by position)"
            )
        test = capped_test(load_task(shifted, data_dir, runner.config.seed).splits["test"], runner.config.max_test)
        prompt = task.task.prompt if runner.config.head == "prompt" else None  # the template the model learnt
        out[shifted.task] = encode(runner.backbone.tokenizer, test, runner.config.max_length, prompt)
    return out


def _ood_accuracy(model: HeadedModel, task: PreparedTask, sets: dict[str, Encoded], device) -> dict[str, float]:
    return {name: split_accuracy(model, task.head, data, task.label_offset, 64, device) for name, data in sets.items()}


def localize_run(
    run_dir: Path,
    registry: Registry,
    data_dir: Path | None,
    sparsities: list[float],
    opts: LocalizeOptions,
    task_names: list[str] | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = False,
    seed_per_task: bool = False,
) -> list[dict]:
    """Learn and store a graft per (task, sparsity); returns the result rows (also merged into localize.json). With
    `progress`, a bar counts each mask search's steps; with `seed_per_task`, the search of the run's task t (0-based,
    stream order) is seeded with opts.seed + t instead of every task with opts.seed, so that tasks' regions found in
    one model (a joint run) do not share the search's initial S and batch order.

    Masks are searched, scored and reported on exactly the model a graft file builds: θ₀ everywhere (embeddings
    included) plus γ⊙δ on the block parameters. Only acc_finetuned is θ_t as the run left it; `agreement` is the
    share of test examples on which the graft predicts θ_t's label, `agreement_base` the same for θ₀ with θ_t's
    head (what agreement the head alone gives). Each row's `cpu_s` is
    the CPU time since the previous row (or since the call began), so that the rows of one call add up to its cost."""
    clock = time.process_time()
    runner, record = Runner.from_run_dir(run_dir, registry, data_dir)
    ctx = runner._context()
    body = runner.backbone.model
    view = BlockView(body)
    model = runner.new_model(body)
    theta0 = BodySnapshot(model, view)
    rows = []
    for t in runner.task_indices(task_names):
        task = ctx.tasks[t]
        weights = weights_path(run_dir, runner.config.method, t, len(ctx.tasks))
        if not weights.is_file():
            raise ClgraftError(f"{weights} is missing: the run lacks the weights after task {task.task.task}")
        model.load_state_dict(load_file(weights, device=str(runner.device)))
        ood = ood_tests(runner, registry, data_dir, task)
        acc_ft, ece_ft, pred_ft = _test_metrics(model, task, runner.device)
        ood_ft = _ood_accuracy(model, task, ood, runner.device)
        fit = {f"{split}_finetuned": split_score(model, scored_task(task), split, runner.device) for split in SPLITS}
        tau = view.flatten(dict(body.named_parameters())) - theta0.blocks
        theta0.restore(model)
        acc_base, _, pred_base = _test_metrics(model, task, runner.device)
        ood_base = _ood_accuracy(model, task, ood, runner.device)
        head = {k: v.detach().clone() for k, v in model.heads[task.head].state_dict().items()}
        for s in sparsities:
            seed = opts.seed + t if seed_per_task else opts.seed
            run_opts = LocalizeOptions(**{**opts.__dict__, "sparsity": s, "seed": seed})
            candidate = _candidate(run_dir, task.task.task, run_opts, tau, theta0.blocks)
            delta = candidate.delta
            with MaskLearner(model, view, theta0.blocks, scored_task(task), runner.device) as learner:
                desc = f"{task.task.task} s={s:g} (mask search)"
                found = learner.learn(delta, candidate.init, candidate.opts, progress, desc)
                _disjoint(found.mask, candidate.excluded, task.task.task)
                learner.set_mask(found.mask, delta)
            acc_g, ece_g, pred_g = _test_metrics(model, task, runner.device)
            ood_g = _ood_accuracy(model, task, ood, runner.device)
            graft = Graft.from_mask(view, found.mask, delta, head, _graft_meta(record, task, run_opts))
            path = run_dir / "grafts" / f"{task.task.task}-{run_opts.method}-s{s:g}.safetensors"
            size = graft.save(path)
            rows.append(
                {
                    "task": task.task.task,
                    "task_version": task.task.version,
                    "method": run_opts.method,
                    "sparsity": s,
                    "k": graft.k,
                    "steps": 0 if run_opts.method in CONTROLS else run_opts.steps,
                    "seed": run_opts.seed,
                    "seed_per_task": seed_per_task,
                    "lr": found.lr,
                    "best_step": found.best_step,
                    "acc_finetuned": acc_ft,
                    "acc_grafted": acc_g,
                    "acc_base": acc_base,
                    **fit,
                    "recovered": acc_g / acc_ft if acc_ft > 0 else None,
                    "ece_finetuned": ece_ft,
                    "ece_grafted": ece_g,
                    "agreement": agreement(pred_g, pred_ft),
                    "agreement_base": agreement(pred_base, pred_ft),
                    "graft": str(path.relative_to(run_dir)),
                    "bytes": size,
                    "search": found.search,
                    **candidate.record,
                    "ood": {
                        name: {"acc_finetuned": ood_ft[name], "acc_grafted": ood_g[name], "acc_base": ood_base[name]}
                        for name in ood
                    },
                    "cpu_s": round(time.process_time() - clock, 3),
                }
            )
            clock = time.process_time()
            echo(f"{task.task.task} s={s:g}: recovered {rows[-1]['recovered']:.3f} (k={graft.k}, {size} bytes)")
            theta0.restore(model)
    _merge(run_dir / "localize.json", record["config_hash"], rows)
    return rows


@dataclass
class _Candidate:
    """What one search grafts (δ) and starts from (`init`), the options the learner runs, and for `disjoint` the
    region it excludes with what its row records of that region."""

    delta: torch.Tensor
    init: torch.Tensor
    opts: LocalizeOptions
    excluded: torch.Tensor | None = None
    record: dict = field(default_factory=dict)


def _candidate(run_dir: Path, task: str, opts: LocalizeOptions, tau: torch.Tensor, theta0: torch.Tensor) -> _Candidate:
    """τ for the searches and controls, −θ₀ for sparsify; for disjoint, τ with the first region zeroed
    (`first_region`) under the scaled rule."""
    if opts.method == "sparsify":
        return _Candidate(-theta0, tau, opts)
    if opts.method == "disjoint":
        first, record = first_region(run_dir, task, opts.sparsity, tau.numel())
        outside = tau.masked_fill(first.to(tau.device), 0.0)
        return _Candidate(outside, outside, replace(opts, method="scaled"), first, record)
    return _Candidate(tau, tau, opts)


FIRST_REGION_KEYS = ("graft", "k", "best_step", "acc_grafted")
"""What a disjoint row records of the scaled row whose region it excluded (`excluded`): a later scaled search that
ends otherwise makes the disjoint row stale (claim_statistics.localize_rows leaves it out)."""


def first_region(run_dir: Path, task: str, sparsity: float, numel: int) -> tuple[torch.Tensor, dict]:
    """The region `disjoint` excludes: the flat boolean mask of the task's `scaled` graft at this sparsity, read from
    its graft file (named by its localize.json row), and what the disjoint row records of it (`excluded`)."""
    path = run_dir / "localize.json"
    rows = read_json(path)["results"] if path.is_file() else []
    row = next((r for r in rows if (r["task"], r["method"], r["sparsity"]) == (task, "scaled", sparsity)), None)
    again = f"run `clgraft localize {run_dir} --sparsity {sparsity:g} --task {task}` first"
    if row is None or not (run_dir / row["graft"]).is_file():
        missing = "has no scaled region" if row is None else f"lacks the graft file {row['graft']}"
        raise ClgraftError(
            f"--method disjoint excludes the scaled region of {task} at s={sparsity:g}: the run {missing}; {again}"
        )
    graft = load_graft(run_dir / row["graft"])
    if graft.numel != numel:
        raise ClgraftError(f"{run_dir / row['graft']} ranges over {graft.numel} parameters, the model's blocks {numel}")
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[graft.positions] = True
    return mask, {"excluded": {key: row[key] for key in FIRST_REGION_KEYS}}


def _disjoint(found: torch.Tensor, excluded: torch.Tensor | None, task: str) -> None:
    """Raise if a disjoint search kept an entry of the region it excluded: possible only where τ has fewer than ⌊sN⌋
    non-zero entries outside it (γ_base then takes zeros, the lowest positions first)."""
    if excluded is not None and bool((found & excluded.to(found.device)).any()):
        raise ClgraftError(
            f"{task}: τ has fewer non-zero entries outside the first region than the sparsity asks; a disjoint "
            "region of that size does not exist (choose a smaller --sparsity)"
        )


def localize_finished_run(
    run_dir: Path,
    registry: Registry,
    data_dir: Path | None,
    sparsity: float = 0.01,
    method: Method = "scaled",
    steps: int = DEFAULT_STEPS,
    tasks: Sequence[str] = (),
    seed: int = 0,
    seed_per_task: bool = False,
) -> list[dict]:
    """`localize_run` at one sparsity with the Python API's defaults (`clgraft.api.localize`, the claims), silently."""
    opts = LocalizeOptions(sparsity=sparsity, method=method, steps=steps, seed=seed)
    return localize_run(
        run_dir, registry, data_dir, [sparsity], opts, list(tasks), lambda s: None, seed_per_task=seed_per_task
    )


def _graft_meta(record: dict, task: PreparedTask, opts: LocalizeOptions) -> dict[str, str]:
    """What a graft file says of where it came from."""
    return {
        "base_model": record["model"]["id"],
        "base_sha256": record["model"]["sha256"],
        "task": task.task.task,
        "task_version": str(task.task.version),
        "sparsity": repr(opts.sparsity),
        "method": opts.method,
        "steps": str(opts.steps),
        "run_config_hash": record["config_hash"],
    }


def _merge(path: Path, run_hash: str, rows: list[dict]) -> None:
    """Add rows to localize.json, replacing earlier rows of the same (task, method, sparsity)."""
    old = read_json(path)["results"] if path.exists() else []
    key = lambda r: (r["task"], r["method"], r["sparsity"])  # noqa: E731
    fresh = {key(r) for r in rows}
    merged = [r for r in old if key(r) not in fresh] + rows
    write_json(path, {"run_config_hash": run_hash, "results": merged})


def table(rows: list[dict]) -> str:
    """The results as a fixed-width table (accuracy, θ_t's train and dev scores and ECE in %)."""
    import pandas as pd

    percent = ["acc_finetuned", "acc_grafted", "acc_base", "train_finetuned", "dev_finetuned"]
    frame = pd.DataFrame(rows)[
        ["task", "method", "sparsity", "k", *percent, "recovered", "ece_finetuned", "ece_grafted", "bytes"]
    ]
    for col in (*percent, "ece_finetuned", "ece_grafted"):
        frame[col] = (100 * frame[col]).round(1)
    frame["recovered"] = frame["recovered"].round(3)
    return frame.rename(columns={"train_finetuned": "train_ft", "dev_finetuned": "dev_ft"}).to_string(index=False)


def plot_recovered(rows: list[dict], path: Path) -> Path:
    """Write recovered_figure to path, a PNG in the run directory; the run's run.json beside it names the run."""
    return save(recovered_figure(rows, run_line(read_json(path.parent / "run.json"))), path)


def recovered_figure(rows: list[dict], run: str) -> Figure:
    """Recovered accuracy against sparsity (log scale, ticks at the sparsities tried), one line per task and method
    (open markers of different shapes, so that equal lines show), with the 95% level and, dotted in the task's
    colour, what θ₀ with the task's trained head recovers (acc_base / acc_finetuned: a graft at or below it has
    localized nothing), under a title naming the run; the legend sits outside the axes so it hides no line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    lines = sorted({(r["task"], r["method"]) for r in rows})
    based: set[str] = set()
    for (task, method), marker in zip(lines, itertools.cycle(MARKERS), strict=False):
        pts = sorted((r["sparsity"], r["recovered"]) for r in rows if (r["task"], r["method"]) == (task, method))
        (line,) = ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker=marker, fillstyle="none", label=f"{task} ({method})"
        )
        base = next((r["acc_base"] / r["acc_finetuned"] for r in rows if r["task"] == task and r.get("acc_base")), None)
        if base is not None and task not in based:  # θ₀ with the task's trained head: a graft of nothing scores it
            ax.axhline(base, color=line.get_color(), linestyle=":", linewidth=1.2, label=f"{task}: θ₀ + trained head")
            based.add(task)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    ax.text(1.01, 0.95, "95%", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.35")
    ax.set_xscale("log")
    sparsities = sorted({r["sparsity"] for r in rows})
    ax.set_xticks(sparsities, [f"{s:g}" for s in sparsities])
    ax.minorticks_off()
    ax.set_xlabel("sparsity s (fraction of block parameters in the graft)")
    ax.set_ylabel("recovered = acc(θ̄) / acc(θ_t)")
    ax.grid(alpha=0.3)
    ax.legend(title="task (method)", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.06, 1))
    ax.set_title(wrap("Accuracy the grafts recover, against their sparsity\n" + run, width=70), fontsize=10)
    return fig
