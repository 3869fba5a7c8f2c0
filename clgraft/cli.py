"""The `clgraft` command: thin typer commands over the registry, data loaders and runner."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from clgraft.config import RunConfig
from clgraft.errors import ClgraftError, Stopped

_D = {name: f.default for name, f in RunConfig.model_fields.items()}

app = typer.Typer(
    help="clgraft: continual-learning benchmarks for language models, built on skill localization by grafting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(
    help="List, show and validate tasks and streams (YAML in tasks/ and your own folders).", no_args_is_help=True
)
methods_app = typer.Typer(help="Continual-learning methods the runner knows.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(methods_app, name="methods")
graft_app = typer.Typer(
    help="Inspect graft files (sparse task vectors written by `clgraft localize`).", no_args_is_help=True
)
app.add_typer(graft_app, name="graft")
analyze_app = typer.Typer(
    help="Analyse a finished run: region overlap as task similarity, subspace dimension, per-layer closeness "
    "(docs/protocols.md). Results go to RUN_DIR/analysis/ (JSON, PNG) and into run.json under `analysis`.",
    no_args_is_help=True,
)
app.add_typer(analyze_app, name="analyze")
data_app = typer.Typer(
    help="The data files of the shipped tasks: list what is there, fetch what is missing, verify checksums.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
claims_app = typer.Typer(
    help="The seed papers' claims (tasks/claims/*.yaml): list them, make their runs, report measured values with "
    "95% intervals over seeds and verdicts (RESULTS/CLAIMS.md, docs/claims.md).",
    no_args_is_help=True,
)
app.add_typer(claims_app, name="claims")

TasksDir = Annotated[
    list[Path] | None,
    typer.Option("--tasks-dir", help="extra folder of task/stream YAML files (repeatable; also CLGRAFT_TASKS_PATH)"),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="root of local data (the data pack layout); also CLGRAFT_DATA_DIR"),
]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of errors")] = False) -> None:
    """Run `clgraft COMMAND --help` for each command's options."""


def _registry(tasks_dir: list[Path] | None):
    from clgraft.data.registry import Registry

    return Registry.discover(tasks_dir)


def _size(item) -> str:
    sizes = item.sizes
    return "/".join(str(sizes.get(s, "?")) for s in ("train", "dev", "test")) if sizes else "?"


@tasks_app.command("list")
def tasks_list(tasks_dir: TasksDir = None) -> None:
    """Print every stream and task with its version and size (train/dev/test examples)."""
    reg = _registry(tasks_dir)
    typer.echo("STREAMS")
    typer.echo(f"  {'name':<22} {'ver':>3}  {'orders':<24} tasks")
    for (name, ver), s in sorted(reg.streams.items()):
        first = next(iter(s.orders.values()))
        typer.echo(f"  {name:<22} {ver:>3}  {','.join(s.orders):<24} {len(first)}: {' → '.join(first)}")
    typer.echo("\nTASKS")
    typer.echo(f"  {'name':<22} {'ver':>3}  {'type':<13} {'labels':>6}  {'train/dev/test':<16} {'seeds':<18} source")
    for (name, ver), t in sorted(reg.tasks.items()):
        seeds = ",".join(map(str, t.data_seeds)) or "-"
        src = t.source.path if t.source.kind == "hub" else t.source.kind
        typer.echo(f"  {name:<22} {ver:>3}  {t.type:<13} {len(t.labels):>6}  {_size(t):<16} {seeds:<18} {src}")
    if reg.broken:
        typer.echo("\nFILES THAT COULD NOT BE READ (skipped)")
        for path, message in sorted(reg.broken.items()):
            typer.echo(f"  {message}" if str(path) in message else f"  {path}: {message}")


@tasks_app.command("show")
def tasks_show(
    name: Annotated[str, typer.Argument(help="stream or task name, optionally NAME@VERSION")],
    tasks_dir: TasksDir = None,
) -> None:
    """Print one stream (with its tasks' versions) or one task as YAML."""
    from clgraft.data.registry import Stream

    reg = _registry(tasks_dir)
    item = reg.lookup(name)
    doc = item.model_dump(exclude_defaults=False)
    typer.echo(f"# {item.origin}")
    typer.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip())
    if isinstance(item, Stream):
        for order, refs in item.orders.items():
            typer.echo(f"# order {order}: " + " → ".join(f"{reg.task(r).ref} ({_size(reg.task(r))})" for r in refs))


@tasks_app.command("validate")
def tasks_validate(
    paths: Annotated[list[Path], typer.Argument(help="YAML file(s) to check")],
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Check task, stream and sweep YAML files: schema, task references, and (where data is reachable) the data."""
    from clgraft.data.loading import data_dir_from, load_task
    from clgraft.data.registry import Registry, Task, load_yaml_file, task_dirs

    root = data_dir_from(data_dir)
    for path in paths:
        if not path.is_file():
            raise ClgraftError(f"{path}: no such file")
        item = load_yaml_file(path)
        if item is None:  # a sweep file
            from clgraft.sweeps.sweep import expand, load_sweep

            plan, _ = load_sweep(str(path), tasks_dir)
            cells = expand(plan, _registry(tasks_dir), path)
            typer.echo(f"{path}: sweep {plan.sweep}@{plan.version} OK ({len(cells)} cells, methods and options valid)")
            continue
        reg = Registry([*task_dirs(tasks_dir), path.parent])
        if isinstance(item, Task):
            if item.source.kind == "bundled" or (item.source.kind == "local" and root is not None):
                for seed in item.data_seeds or [None]:
                    data = load_task(item, root, seed)
                    got = {s: len(v) for s, v in data.splits.items()}
                    if item.sizes and {k: got[k] for k in item.sizes} != item.sizes:
                        raise ClgraftError(f"{path}: key 'sizes': declared {item.sizes} but data seed {seed} has {got}")
                typer.echo(f"{path}: task {item.ref} OK (schema and data)")
            else:
                typer.echo(f"{path}: task {item.ref} OK (schema; pass --data-dir to check the data too)")
        else:
            reg.stream(item.stream)
            typer.echo(f"{path}: stream {item.stream}@{item.version} OK ({len(item.orders)} orders, tasks resolved)")


def _target_dir(data_dir: Path | None) -> Path:
    """Where data commands read and write: --data-dir, CLGRAFT_DATA_DIR, else the default folder."""
    import os

    from clgraft.data.loading import DATA_DIR_ENV, default_data_dir

    return data_dir or (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else default_data_dir())


Names = Annotated[list[str] | None, typer.Argument(help="streams or tasks (default: every task)")]


@data_app.command("list")
def data_list(names: Names = None, tasks_dir: TasksDir = None, data_dir: DataDir = None) -> None:
    """Every task's data files under the data directory: ok, missing, changed (wrong checksum) or unlisted."""
    from clgraft.data.datapack import files_for, manifest, status

    root, known = _target_dir(data_dir), manifest()
    typer.echo(f"data directory: {root}")
    typer.echo(f"  {'task':<22} {'files':>5} {'ok':>4} {'missing':>7} {'changed':>7}  source")
    for task, paths in files_for(_registry(tasks_dir), names or []).items():
        states = [status(root, p, known) for p in paths]
        where = ", ".join(sorted({known[p].source.repo for p in paths if p in known})) or "bundled or hub"
        counts = [states.count(s) for s in ("ok", "missing", "changed")]
        typer.echo(f"  {task:<22} {len(paths):>5} {counts[0]:>4} {counts[1]:>7} {counts[2]:>7}  {where}")


@data_app.command("verify")
def data_verify(names: Names = None, tasks_dir: TasksDir = None, data_dir: DataDir = None) -> None:
    """Check the sha256 of the data files of the streams or tasks named (default: the whole data pack); exit 2 if
    one differs from the manifest or is missing."""
    from clgraft.data.datapack import files_for, manifest, status

    root, known = _target_dir(data_dir), manifest()
    wanted = files_for(_registry(tasks_dir), names).values() if names else [known]
    paths = sorted({p for ps in wanted for p in ps if p in known})
    states = {p: status(root, p, known) for p in paths}
    changed = [p for p, s in states.items() if s == "changed"]
    missing = [p for p, s in states.items() if s == "missing"]
    typer.echo(
        f"{root}: {len(paths) - len(changed) - len(missing)} files ok, {len(changed)} changed, {len(missing)} missing"
    )
    if changed:
        raise ClgraftError(f"{root / changed[0]}: checksum differs from the manifest; `clgraft data fetch` restores it")
    if missing:
        which = " ".join(names) if names else "--all"
        raise ClgraftError(
            f"{root / missing[0]}: missing ({len(missing)} file(s) in all); `clgraft data fetch {which} --data-dir "
            f"{root}` gets them"
        )


@data_app.command("fetch")
def data_fetch(
    names: Names = None,
    all_: Annotated[bool, _opt("the whole data pack: every shipped task's files and sentence-full/", "--all")] = False,
    mirror: Annotated[
        str | None, _opt("a URL or folder laid out like the data directory, instead of the public sources")
    ] = None,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Download the data files of streams or tasks (or the whole pack, --all) from their public sources, each checked
    against its sha256 before it is moved into place; files already there and intact are kept (a rerun resumes, and
    removes what a killed fetch left), and DIR/MANIFEST.sha256 lists the pack files present."""
    from clgraft.data.datapack import fetch, files_for, manifest

    if not names and not all_:
        raise ClgraftError("name streams or tasks to fetch (clgraft tasks list), or pass --all")
    root, known = _target_dir(data_dir), manifest()
    paths = list(known) if all_ else [p for ps in files_for(_registry(tasks_dir), names or []).values() for p in ps]
    if unknown := sorted({p for p in paths if p not in known}):
        raise ClgraftError(f"{unknown[0]}: no public source is known for this file; put it under {root} yourself")
    from tqdm.auto import tqdm

    with tqdm(total=len(set(paths)), unit="file", desc="fetch") as bar:
        counts = fetch(root, paths, mirror, known, progress=lambda path, state: bar.update(1))
    typer.echo(f"{root}: {counts['fetched']} fetched, {counts['present']} already present and intact")


@methods_app.command("list")
def methods_list() -> None:
    """Print every method with a one-line description, its paper, options, heads and what it keeps (data of finished
    tasks, state per task), then the aliases."""
    from clgraft.methods import ALIASES, METHODS

    for name, m in METHODS.items():
        opts = ", ".join(f"{k}={v}" for k, v in m.option_defaults().items()) or "none"
        mode = "task-incremental only" if m.needs_task_id else "task-incremental and shared head"
        keeps = f"data kept: {m.data_kept}; per task: {m.per_task_state}"
        typer.echo(
            f"{name:<9} {m.description}\n{'':<9} paper: {m.paper}\n{'':<9} options: {opts}; {mode}\n{'':<9} {keeps}"
        )
    typer.echo("\naliases (a method with preset options):")
    for name, (method, preset) in ALIASES.items():
        typer.echo(f"{name:<16} = {method} " + " ".join(f"--opt {k}={v}" for k, v in preset.items()))


def _opt(help_text: str, *names: str):
    return typer.Option(*names, help=help_text)


Stream = Annotated[str, _opt("stream name (clgraft tasks list)")]
Order = Annotated[str | None, _opt("order of the stream; default: its first")]
Model = Annotated[str, _opt("local HF folder, hub id, or the default pip-packaged MiniLM")]
Steps = Annotated[int, _opt("optimisation steps per task")]
BatchSize = Annotated[int, _opt("training batch size")]
Lr = Annotated[float, _opt("AdamW learning rate of the body")]
HeadLr = Annotated[float, _opt("AdamW learning rate of the task head")]
MaxLength = Annotated[int, _opt("tokens per example (truncation)")]
MaxTest = Annotated[int | None, _opt("cap on test examples per task (a fixed subset, stratified by label)")]
Head = Annotated[
    str,
    _opt(
        "'task': a fresh linear head per task (task id known); 'shared': one label space; 'prompt': LM-BFF "
        "prompt-based fine-tuning, the masked-LM head scores each task's label words (needs a masked-LM model and "
        "tasks with a `prompt:`)"
    ),
]
Device = Annotated[str, _opt("cpu or cuda")]
Evaluate = Annotated[
    str,
    _opt(
        "entries of R to evaluate: all ((T+1)·T task evaluations), seen (every metric but Chaudhry forgetting: "
        "T(T−1)/2 + 3T − 2) "
        "or final (ACC, LA, BWT and FWT only: 4T − 3)"
    ),
]
Progress = Annotated[bool, _opt("show progress bars")]
ProbeSteps = Annotated[
    int,
    _opt(
        "LP-FT: before each task's fine-tuning, fit its head on the frozen body's features with this many "
        "full-batch steps (0: plain fine-tuning; clgraft-loop methods only)"
    ),
]
Optimizer = Annotated[
    str,
    _opt(
        "adamw (torch's multi-tensor AdamW), adamw-fused (its fused kernel: faster optimiser steps, numbers differ "
        "by float rounding, so a configuration of its own) or sgd (the official grafting code's SGD: no momentum, "
        "weight decay 1e-4 except on biases and LayerNorm weights, constant learning rate; the official recipe is "
        "also --lr 1e-3 --batch-size 2 --steps 1000 --freeze-embeddings)"
    ),
]
L1ToInit = Annotated[
    float,
    _opt(
        "ℓ1 pull towards where each fine-tuning starts (θ₀ for a fine-tune from θ₀): X·Σ|θ − θ_init| over the "
        "body's trained parameters is added to the loss (the official grafting code's l1_reg; 0: off)"
    ),
]
FreezeEmbeddings = Annotated[
    bool | None,
    _opt(
        "keep the embeddings (every body parameter outside the transformer blocks) at θ₀ while training "
        "[default: on for graft-freeze and graft-compose, off for the other methods]",
        "--freeze-embeddings/--train-embeddings",
    ),
]
PlanCosts = Annotated[
    list[Path] | None, _opt("with --plan: more results folders whose finished runs give seconds per run")
]


ConfigFile = Annotated[
    Path | None,
    _opt(
        "YAML file of run settings (the keys of a sweep's `run:` block or a run.json `config`: stream, method, "
        "method_options, seed, steps, ...); options given on the command line win over it",
        "--config",
    ),
]
TensorBoard = Annotated[
    Path | None, _opt("also log losses, R entries and metrics to this TensorBoard folder", "--tensorboard")
]


def _from_file(path: Path) -> dict:
    """Run settings from a YAML file: a mapping of RunConfig keys (unknown keys are named with the legal ones)."""
    if not path.is_file():
        raise ClgraftError(f"--config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ClgraftError(f"--config {path}: not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(doc, dict):
        raise ClgraftError(f"--config {path}: expected a mapping of run settings")
    if unknown := sorted(set(doc) - set(RunConfig.model_fields)):
        raise ClgraftError(
            f"--config {path}: key '{unknown[0]}' is not a run setting; legal keys: {', '.join(RunConfig.model_fields)}"
        )
    return doc


def _config(ctx: typer.Context | None = None, file: Path | None = None, **fields) -> RunConfig:
    """A RunConfig from command-line values over a --config file's; a bad value names its option."""
    from pydantic import ValidationError

    def typed(name: str) -> bool:  # typer ≥ 0.2x carries its own click: compare the source by name
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "COMMANDLINE"

    if file is not None:
        given = {k for k in fields if typed(k)} | ({"method_options"} if typed("opt") else set())
        saved = _from_file(file)
        if "method" in given and saved.get("method", fields["method"]) != fields["method"]:
            saved.pop("method_options", None)  # the file's options are its own method's
        options = {**saved.get("method_options", {}), **fields.get("method_options", {})}
        fields = {**fields, **{k: v for k, v in saved.items() if k not in given}}
        if "method_options" in fields:
            fields["method_options"] = options
    try:
        return RunConfig(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise ClgraftError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from e


@app.command()
def run(
    ctx: typer.Context,
    stream: Stream = "tiny",
    order: Order = None,
    method: Annotated[str, _opt("continual-learning method (clgraft methods list)")] = _D["method"],
    opt: Annotated[
        list[str] | None, _opt("method option KEY=VALUE, repeatable (clgraft methods list)", "--opt")
    ] = None,
    model: Model = _D["model"],
    seed: Annotated[int, _opt("seed for heads, batches and dropout; also picks the k-shot split")] = _D["seed"],
    steps: Steps = _D["steps"],
    batch_size: BatchSize = _D["batch_size"],
    lr: Lr = _D["lr"],
    head_lr: HeadLr = _D["head_lr"],
    max_length: MaxLength = _D["max_length"],
    max_test: MaxTest = _D["max_test"],
    head: Head = _D["head"],
    device: Device = _D["device"],
    evaluate: Evaluate = _D["evaluate"],
    freeze_embeddings: FreezeEmbeddings = None,
    optimizer: Optimizer = _D["optimizer"],
    l1_to_init: L1ToInit = _D["l1_to_init"],
    probe_steps: ProbeSteps = _D["probe_steps"],
    trajectory: Annotated[int, _opt("save N evenly spaced checkpoints per task (subspace analysis)")] = _D[
        "trajectory"
    ],
    out: Annotated[Path | None, _opt("run directory [default: runs/STREAM-ORDER-METHOD-sSEED-HASH]")] = None,
    config_file: ConfigFile = None,
    tensorboard: TensorBoard = None,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
    progress: Progress = True,
) -> None:
    """Fine-tune on each task of a stream in turn, evaluate the tasks after each (--evaluate), write run.json with R.

    Rerunning the same command reuses a finished run and resumes an unfinished one after its last finished task.
    """
    from clgraft.data.loading import data_dir_from
    from clgraft.methods import get_method, parse_options, resolve
    from clgraft.runs.runner import Runner

    config = _config(
        ctx,
        config_file,
        stream=stream,
        order=order,
        model=model,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        max_length=max_length,
        max_test=max_test,
        head=head,
        device=device,
        evaluate=evaluate,
        freeze_embeddings=freeze_embeddings,
        optimizer=optimizer,
        l1_to_init=l1_to_init,
        probe_steps=probe_steps,
        trajectory=trajectory,
        method=method,
        method_options=_parse_opts(opt or []),
    )
    name, options = resolve(config.method, config.method_options)  # an alias becomes its method and options
    parse_options(get_method(name), options)
    config = config.model_copy(update={"method": name, "method_options": options})
    registry, root = _registry(tasks_dir), data_dir_from(data_dir)
    Runner(config, registry, root, out, progress=progress, echo=typer.echo, tensorboard=tensorboard).run()


@app.command()
def compare(
    ctx: typer.Context,
    stream: Stream = "tiny",
    methods: Annotated[
        str,
        _opt(
            "comma-separated methods or aliases, each optionally with options NAME:KEY=VALUE[:KEY=VALUE], "
            "e.g. naive,ewc,ties,graft-compose:compose=union"
        ),
    ] = "naive",
    seeds: Annotated[str, _opt("comma-separated seeds; mean ± std over them")] = str(_D["seed"]),
    order: Order = None,
    model: Model = _D["model"],
    steps: Steps = _D["steps"],
    batch_size: BatchSize = _D["batch_size"],
    lr: Lr = _D["lr"],
    head_lr: HeadLr = _D["head_lr"],
    max_length: MaxLength = _D["max_length"],
    max_test: MaxTest = _D["max_test"],
    head: Head = _D["head"],
    device: Device = _D["device"],
    evaluate: Evaluate = _D["evaluate"],
    freeze_embeddings: FreezeEmbeddings = None,
    optimizer: Optimizer = _D["optimizer"],
    l1_to_init: L1ToInit = _D["l1_to_init"],
    probe_steps: ProbeSteps = _D["probe_steps"],
    out: Annotated[Path, _opt("folder of the runs and of compare.csv / compare.md")] = Path("runs"),
    config_file: ConfigFile = None,
    tensorboard: TensorBoard = None,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
    progress: Progress = True,
) -> None:
    """Run (or reuse) every method × seed on one stream and print ACC, BWT, forgetting, FWT and wall time.

    Each run is an ordinary run directory under --out; finished ones are reused, so rerunning is cheap. With
    --config, the file gives the shared settings (its method and seed are replaced by --methods and --seeds);
    with --tensorboard DIR each run logs to DIR/RUN-NAME.
    """
    from clgraft.data.loading import data_dir_from
    from clgraft.sweeps.compare import compare_runs

    base = _config(
        ctx,
        config_file,
        stream=stream,
        order=order,
        model=model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        max_length=max_length,
        max_test=max_test,
        head=head,
        device=device,
        evaluate=evaluate,
        freeze_embeddings=freeze_embeddings,
        optimizer=optimizer,
        l1_to_init=l1_to_init,
        probe_steps=probe_steps,
    )
    configs = [
        base.model_copy(update={"method": name, "method_options": options, "seed": seed})
        for name, options in _parse_methods(methods)
        for seed in _parse_list(seeds, int, "--seeds", "13,21,42")
    ]
    registry, root = _registry(tasks_dir), data_dir_from(data_dir)
    compare_runs(configs, registry, root, out, progress=progress, echo=typer.echo, tensorboard=tensorboard)


@app.command()
def localize(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (clgraft run --out DIR)")],
    sparsity: Annotated[str, _opt("fraction(s) of block parameters, comma-separated, each in (0, 1)")] = "1e-4",
    task: Annotated[list[str] | None, _opt("task of the run to localize (repeatable); default: all", "--task")] = None,
    method: Annotated[
        str,
        _opt(
            "official (grafting's rule and lr), scaled (the official rule, lr scaled to τ so short fine-tunings "
            "move; the grafting methods' default), stitch (Localize-and-Stitch), sparsify (zero θ₀ instead of "
            "adding τ) or disjoint (scaled with the task's scaled region at the same sparsity excluded: a second "
            "region that shares none of its entries; localize with scaled first); or a control region of the "
            "same size, searched for nothing: top-tau (γ_base, the largest |τ|), random (uniform, --seed), bias (the "
            "largest |τ| among biases)"
        ),
    ] = "scaled",
    steps: Annotated[int, _opt("mask-learning steps (the official code uses 10–100)")] = 10,
    lr: Annotated[float, _opt("mask learning rate of official, stitch and sparsify (official: 1e7)")] = 1e7,
    scale: Annotated[
        float, _opt("scaled: first-step move of S at the k-th largest |∂L/∂θ⊙τ|, in units of b = 10")
    ] = 0.1,
    seed: Annotated[int, _opt("seed of S's initialisation and of the batches")] = 0,
    seed_per_task: Annotated[
        bool,
        _opt(
            "seed task t's search (0-based, stream order) with SEED + t, so that the regions of several tasks "
            "searched in one model (a joint run) start from different S",
            "--seed-per-task",
        ),
    ] = False,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
    progress: Progress = True,
) -> None:
    """Learn a sparse mask γ per task (docs/protocols.md), write grafts/TASK-METHOD-sS.safetensors and localize.json.

    Reports accuracy of θ_t (fine-tuned), θ̄(γ) = θ₀ + γ⊙τ (grafted) and θ₀ with the task's head, recovered =
    acc(θ̄)/acc(θ_t), and ECE (15 bins); with several sparsities also localize-recovered.png.
    """
    from typing import get_args

    from clgraft.data.loading import data_dir_from
    from clgraft.grafting.localize import LocalizeOptions, Method
    from clgraft.runs.localize_run import localize_run, plot_recovered, table

    if method not in get_args(Method):
        raise ClgraftError(f"--method {method!r}: choose {', '.join(get_args(Method))}")
    values = _parse_list(sparsity, float, "--sparsity", "1e-4,1e-3")
    for v in values:
        LocalizeOptions(sparsity=v)
    opts = LocalizeOptions(sparsity=values[0], method=method, steps=steps, lr=lr, scale=scale, seed=seed)
    registry, folder = _registry(tasks_dir), data_dir_from(data_dir)
    rows = localize_run(run_dir, registry, folder, values, opts, task, typer.echo, progress, seed_per_task)
    typer.echo(table(rows))
    if len(values) > 1:
        plot_recovered(rows, run_dir / "localize-recovered.png")
        typer.echo(f"plot: {run_dir / 'localize-recovered.png'}")
    typer.echo(f"results: {run_dir / 'localize.json'}")


@graft_app.command("info")
def graft_info(
    path: Annotated[Path, typer.Argument(help="graft file (.safetensors)")],
    as_json: Annotated[bool, _opt("print JSON", "--json")] = False,
) -> None:
    """Print k, sparsity, file size, base model and task of a graft file (read from its header only)."""
    import json

    from clgraft.grafting.graft_meta import graft_metadata

    meta = graft_metadata(path)
    info = {
        "k": int(meta["k"]),
        "sparsity": float(meta.get("sparsity", "nan")),
        "bytes": path.stat().st_size,
        **{key: meta.get(key) for key in ("base_model", "base_sha256", "task", "task_version", "method")},
        "steps": meta.get("steps", meta.get("localize_steps")),
        "numel": int(meta["numel"]),
        "clgraft_version": meta.get("clgraft_version"),
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo("\n".join(f"{k:<16} {v}" for k, v in info.items()))


@app.command()
def sweep(
    spec: Annotated[str, typer.Argument(help="sweep YAML file, or the name of one in tasks/sweeps/ (e.g. standard)")],
    backend: Annotated[
        str, _opt("local (this machine) or ray (a Ray cluster; pip install 'clgraft\\[ray]')")
    ] = "local",
    workers: Annotated[int, _opt("cells run at once; torch threads per cell = cores / workers")] = 1,
    address: Annotated[
        str | None, _opt("Ray cluster address (ray://HEAD:10001 or auto); default: a local Ray instance")
    ] = None,
    results: Annotated[Path, _opt("results folder: runs/ holds one run directory per cell")] = Path("results"),
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
    progress: Progress = True,
    plan_only: Annotated[
        bool,
        _opt(
            "run nothing: print per stream, method and varied run setting the cells finished and left, seconds "
            "per cell (the CPU seconds of finished runs of the same configuration, else of the method's runs at "
            "other values of the options the sweep varies, else naive's × the method's cost over naive's measured "
            "on other streams at the same settings, else × its rough relative cost) and the total in core-hours",
            "--plan",
        ),
    ] = False,
    costs: PlanCosts = None,
    only: Annotated[
        list[str] | None,
        _opt(
            "run (or --plan) only the cells of this stream (repeatable); the manifest still lists them all", "--stream"
        ),
    ] = None,
    keep_weights: Annotated[
        bool,
        _opt(
            "keep each finished cell's weights/ (the model after every task, about 0.5 GB a MiniLM cell; what "
            "`clgraft localize` and `analyze` read); --drop-weights removes them once the cell's record is written",
            "--keep-weights/--drop-weights",
        ),
    ] = True,
    only_methods: Annotated[
        list[str] | None,
        _opt(
            "run (or --plan) only the cells of this method (repeatable): a name or alias, optionally with options "
            "(graft-compose:sparsity=0.2) that the cells' options must include",
            "--method",
        ),
    ] = None,
) -> None:
    """Run every cell of a sweep (streams × orders × methods × option values × run settings × seeds) that is not
    finished yet.

    Each cell is a run directory under RESULTS/runs/ named by its config hash; killing the sweep at any point and
    rerunning the same command finishes it with the same results. RESULTS/sweeps/NAME.json lists the sweep's cells, so
    that the leaderboard says "k of n cells" while it runs. Then: clgraft leaderboard --results RESULTS.
    """
    from clgraft.data.loading import data_dir_from
    from clgraft.sweeps.sweep import expand, load_sweep, run_sweep, select_cells, write_manifest

    if backend not in ("local", "ray"):
        raise ClgraftError(f"--backend {backend!r}: choose local or ray")
    if workers < 1:
        raise ClgraftError("--workers must be ≥ 1")
    plan, path = load_sweep(spec, tasks_dir)
    cells = expand(plan, _registry(tasks_dir), path)
    chosen = select_cells(cells, only, only_methods)
    if plan_only:
        from clgraft.sweeps.cost import plan as cost_plan
        from clgraft.sweeps.cost import render, summary
        from clgraft.sweeps.sweep import cores

        table = cost_plan(chosen, results, costs or [])
        typer.echo(f"{render(table)}\n\n{summary(table, cores())}")
        return
    write_manifest(results, plan, cells)
    run_sweep(
        chosen,
        results,
        tasks_dir,
        data_dir_from(data_dir),
        backend=backend,
        workers=workers,
        address=address,
        progress=progress,
        echo=typer.echo,
        keep_weights=keep_weights,
    )


Results = Annotated[Path, _opt("results folder (clgraft sweep --results)")]


def _claims(names: list[str] | None):
    from clgraft.sweeps.claims import load_claims

    claims = load_claims()
    if not names:
        return claims
    known = {c.claim: c for c in claims}
    if missing := [n for n in names if n not in known]:
        raise ClgraftError(f"unknown claim '{missing[0]}'; known claims: {', '.join(known)} (clgraft claims list)")
    return [known[n] for n in names]


ClaimNames = Annotated[list[str] | None, typer.Argument(help="claims by name (default: all)", show_default=False)]


@claims_app.command("list")
def claims_list() -> None:
    """Each claim: name, paper and place in it, what is expected, and what tests it (or what clgraft still lacks)."""
    for c in _claims(None):
        tested = (
            f"{c.evidence.stream}, {' vs '.join(c.evidence.methods)}, {len(c.evidence.seeds)} seeds"
            if c.evidence
            else "not testable yet"
        )
        needs = f"; needs {c.needs}" if c.needs else ""
        requires = f"\n    requires: {c.requires}" if c.requires else ""
        typer.echo(
            f"{c.claim}  [{c.paper}, {c.where}]\n    expected: {c.expect.text}\n"
            f"    tested on: {tested}{needs}{requires}"
        )


@claims_app.command("run")
def claims_run(
    names: ClaimNames = None,
    results: Annotated[Path, _opt("results folder; runs go to RESULTS/claims/CLAIM/runs")] = Path("results"),
    data_dir: DataDir = None,
    progress: Progress = True,
    plan_only: Annotated[
        bool,
        _opt(
            "run nothing: print per claim its runs finished and left with seconds per run (priced as `sweep --plan` "
            "prices cells), the runs to make again for their weights, the analysis fine-tunes (one task each), "
            "localizations and cross grafts still to do, and the total in core-hours",
            "--plan",
        ),
    ] = False,
    costs: PlanCosts = None,
) -> None:
    """Make (or reuse, or resume) the runs, localizations and analyses that test the claims; claims that cannot be
    tested yet are listed and skipped, and so are claims that require more than the default machine (a hub model,
    a GPU) unless named."""
    from clgraft.data.loading import data_dir_from
    from clgraft.sweeps.claims import run_claim

    chosen = []
    for claim in _claims(names):
        if claim.evidence is None:
            typer.echo(f"{claim.claim}: skipped, needs {claim.needs}")
        elif claim.requires is not None and not names:
            typer.echo(f"{claim.claim}: skipped, requires {claim.requires} (name it to run it)")
        else:
            chosen.append(claim)
    if plan_only:
        from clgraft.sweeps.claim_plan import claim_plan, render, summary
        from clgraft.sweeps.sweep import cores

        table = claim_plan(results, chosen, costs or [])
        typer.echo(f"{render(table)}\n\n{summary(table, cores())}")
        return
    for claim in chosen:
        run_claim(results, claim, data_dir_from(data_dir), typer.echo, progress)


@claims_app.command("report")
def claims_report(
    names: ClaimNames = None,
    results: Annotated[Path, _opt("results folder holding the claims' records")] = Path("results"),
    out: Annotated[Path | None, _opt("where to write the report [default: RESULTS/CLAIMS.md]")] = None,
) -> None:
    """Recompute every claim's number from its records: mean and 95% interval over seeds, expected, verdict
    (reproduced / not reproduced / inconclusive / not run / needs …)."""
    from clgraft.io.records import write_text
    from clgraft.sweeps.claim_report import report

    text = report(results, _claims(names))
    write_text(out or results / "CLAIMS.md", text)
    typer.echo(text)
    typer.echo(f"written: {out or results / 'CLAIMS.md'}")


@app.command()
def leaderboard(
    results: Results = Path("results"),
    fmt: Annotated[str, _opt("md, csv, html or json", "--format")] = "md",
    sort: Annotated[
        str | None,
        _opt(
            "sort rows by the mean of a metric (acc, bwt, forgetting, fwt, la, wall_s, extra_kb_per_task, "
            "head_kb_per_task)"
        ),
    ] = None,
    ascending: Annotated[bool, _opt("sort ascending (default: descending)")] = False,
    out: Annotated[Path | None, _opt("also write the table to this file")] = None,
    data_dir: DataDir = None,
) -> None:
    """One row per configuration (everything that changes a number but the seed) over every finished run in RESULTS:
    mean ± sample std [95% t interval] and n over its distinct seeds, the paired difference from naive in the same
    setting (acc, forgetting: mean [95% interval], paired t-test p), the method's assumptions (task id at test time,
    data kept, state per task, steps and examples per task), memory per task by the one rule of docs/metrics.md and
    the heads' per task (the task data is read for methods that keep examples: --data-dir), wall time and the BibTeX
    keys to cite; the id column names the row for `clgraft cite ID` (a hash of its configuration, the same whatever
    the sort). Rows that share stream, order, method and options say in `setting` what tells them apart (e.g.
    head=shared, steps=50); a second record of a seed is counted once, with a warning on stderr. R is recomputed from
    each run's predictions.npz and checked against its record first (a record whose R differs stops the
    leaderboard). The header says how many cells of each sweep run into RESULTS are finished ("k of n cells") until
    the sweep is complete, and names any record skipped as unreadable (truncated, from a newer clgraft, edited out of
    shape) with what is wrong."""
    from clgraft.data.loading import data_dir_from
    from clgraft.io.records import write_text
    from clgraft.results.leaderboard import load, render, summarize, title, verify_predictions
    from clgraft.sweeps.sweep import sweep_progress

    found, skipped = load(results)
    heading = title(found, verify_predictions(found), skipped, sweep_progress(results))
    table = summarize(list(found.values()), sort_by=sort, ascending=ascending, data_dir=data_dir_from(data_dir))
    text = render(table, fmt, heading)
    if out is not None:
        write_text(out, text)
    typer.echo(text)


@app.command()
def paired(
    a: Annotated[str, typer.Argument(help="a leaderboard row's id (its `id` column): A in A − B")],
    b: Annotated[str, typer.Argument(help="another row's id on the same stream and order: B")],
    results: Results = Path("results"),
    fmt: Annotated[str, _opt("md, csv, html or json", "--format")] = "md",
    data_dir: DataDir = None,
) -> None:
    """Two leaderboard rows seed by seed: per metric, each row's mean ± std [95% interval] as the leaderboard prints
    it, and A − B over the seeds both have with its 95% Student-t interval and the paired t-test's p (accuracy
    points). The comparison to quote when setting one row against another; the rows must share stream and order."""
    from clgraft.data.loading import data_dir_from
    from clgraft.results.leaderboard import load_records, render, seed_rows
    from clgraft.results.paired import heading, paired_table, row_groups

    first, second = row_groups(seed_rows(load_records(results), data_dir=data_dir_from(data_dir)), [a, b])
    typer.echo(render(paired_table(first, second), fmt, heading(first, second)))


@app.command()
def frontier(
    results: Results = Path("results"),
    out: Annotated[Path | None, _opt("folder to write to (default: RESULTS/frontier)")] = None,
    data_dir: DataDir = None,
) -> None:
    """The memory–accuracy frontier of every stream in RESULTS, written to OUT: STREAM-ORDER.png plots each
    leaderboard row's ACC and forgetting (mean, 95% t interval over seeds) against the memory it keeps per task (one
    rule for every method, heads apart: docs/metrics.md; log axis, rows keeping nothing at the tick marked 0) with the
    Pareto-optimal rows joined; budgets.csv, budgets.json and README.md (which shows the plots) name the best row
    within ≤ 1 KB, 10 KB, 100 KB, 1 MB, 10 MB per task and unlimited, with its paired difference from the runner-up
    over shared seeds [95% t interval]. The task data is read for the methods that keep examples (--data-dir). R is
    recomputed from each run's predictions.npz and checked first."""
    from clgraft.data.loading import data_dir_from
    from clgraft.results.frontier import write_frontier
    from clgraft.results.leaderboard import load, verify_predictions

    verify_predictions(load(results)[0])
    paths = write_frontier(results, out or results / "frontier", data_dir_from(data_dir))
    typer.echo("\n".join(f"written: {p}" for p in paths))


@app.command()
def report(
    run_dir: Annotated[Path | None, typer.Argument(help="a finished run directory")] = None,
    results: Annotated[Path | None, _opt("a results folder instead: bars per method for each stream")] = None,
) -> None:
    """Write PNG plots: for a run, the R heatmap and accuracy over the stream (plus its analysis plots); for a results
    folder, ACC and forgetting per method and stream."""
    from clgraft.results.leaderboard import load_records
    from clgraft.results.report import report_results, report_run
    from clgraft.results.run_records import check_record

    if (run_dir is None) == (results is None):
        raise ClgraftError("give a RUN_DIR or --results DIR (one of the two)")
    if run_dir is not None:
        if not (run_dir / "run.json").is_file():
            raise ClgraftError(f"{run_dir} holds no finished run (no run.json)")
        check_record(run_dir / "run.json")
        paths = report_run(run_dir)
    else:
        paths = report_results(results, load_records(results))
    typer.echo("\n".join(f"written: {p}" for p in paths))


@app.command()
def cite(
    row: Annotated[str | None, typer.Argument(help="a leaderboard row's id (its `id` column) or a method name")] = None,
    all_rows: Annotated[bool, _opt("every row of the leaderboard", "--all")] = False,
    results: Results = Path("results"),
) -> None:
    """Print BibTeX for a leaderboard row, named by the id the leaderboard prints in its `id` column (its method's
    papers, its stream's benchmark paper, each data set's paper, and clgraft from CITATION.cff), for every row with
    --all, or for a method by name."""
    from clgraft.data.references import bibtex
    from clgraft.results.leaderboard import is_row_id, load_records, row_citations

    if (row is None) == (not all_rows):
        raise ClgraftError("give a ROW (a row id from `clgraft leaderboard` or a method name) or --all")
    if row is not None and not is_row_id(row):
        from clgraft.methods import ALIASES, METHODS, get_method, resolve

        if row not in METHODS and row not in ALIASES:
            raise ClgraftError(
                f"'{row}' is neither a leaderboard row id (the hex digits of the id column of `clgraft leaderboard "
                f"--results {results}`) nor a method; methods: {', '.join([*METHODS, *ALIASES])}"
            )
        method, options = resolve(row, {})
        typer.echo(bibtex([*get_method(method).citations(options), "clgraft"]))
        return
    cited = row_citations(load_records(results))
    if not all_rows and row not in cited:
        raise ClgraftError(
            f"no leaderboard row has the id '{row}'; the ids are in the id column of `clgraft leaderboard --results "
            f"{results}`"
        )
    keys = [k for keys in cited.values() for k in keys] if all_rows else cited[row]
    typer.echo(bibtex(keys))


@app.command()
def site(
    results: Results = Path("results"),
    out: Annotated[Path, _opt("folder for the site: new, empty, or an earlier build")] = Path("site"),
    serve: Annotated[bool, _opt("then serve the folder on 127.0.0.1 for a quick look (Ctrl-C stops)")] = False,
    port: Annotated[int, _opt("with --serve: the port (0: any free one)")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Write the leaderboard as a static site into OUT: an index with a sortable, filterable table per stream and
    order (every metric with its 95% interval, the paired difference from naive, the header's provenance), a page
    per row (configuration, per-seed values, R heatmaps, accuracy over time, the method's paper and departures, its
    BibTeX, its run records), the accuracy-memory frontier, the claims and the docs. Every script and style is in
    OUT (nothing is fetched when it is viewed) and the same records give the same bytes: publish OUT on any static
    host."""
    from clgraft.data.loading import data_dir_from
    from clgraft.site.build import build_site
    from clgraft.site.build import serve as serve_site

    written = build_site(results, out, data_dir_from(data_dir))
    size = sum(p.stat().st_size for p in written)
    typer.echo(f"written: {out / 'index.html'} ({len(written)} files, {size / 1e6:.1f} MB)")
    if serve:
        serve_site(out, port, typer.echo)


RunDir = Annotated[Path, typer.Argument(help="a finished run directory (clgraft run --out DIR)")]
AnalyzeTasks = Annotated[list[str] | None, _opt("task of the run (repeatable); default: all", "--task")]


def _open(run_dir: Path, tasks_dir: list[Path] | None, data_dir: Path | None):
    from clgraft.analysis.run_files import open_run
    from clgraft.data.loading import data_dir_from

    return open_run(run_dir, _registry(tasks_dir), data_dir_from(data_dir), typer.echo)


@analyze_app.command("overlap")
def analyze_overlap(
    run_dir: RunDir,
    sparsity: Annotated[float, _opt("sparsity of the grafts to compare (clgraft localize --sparsity)")] = 1e-3,
    method: Annotated[
        str | None, _opt("graft method when a task has several (official, stitch, graft-freeze, tall-masks, …)")
    ] = None,
    own_size: Annotated[
        bool,
        _opt(
            "compare each task's graft of --method at its own size, not at --sparsity (TALL masks choose it per task)"
        ),
    ] = False,
    cross_grafts: Annotated[
        bool,
        _opt(
            "a joint run: also graft each task's region on θ₀ and read it on every task (its head), and on each "
            "task a random region of its size, the union of the regions, a random region of the union's size and θ₀ "
            "with the heads"
        ),
    ] = False,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Overlap O(i→j) = |γ_i ∧ γ_j| / |γ_j| and Jaccard of the tasks' regions, overall and per layer, against the
    random-mask null; Spearman ρ (Mantel permutation p) against transfer, τ cosine, θ₀ embedding cosine and task
    type. Needs one graft per task at --sparsity (run `clgraft localize RUN_DIR --sparsity S` first), or with
    --own-size one graft per task of --method (a tall-masks run writes its final TALL masks as grafts). With
    --cross-grafts (a joint run, whose weights it reads) the cross-graft table too: T² + 4T test evaluations."""
    from clgraft.analysis.overlap import analyze_overlap as run_analysis
    from clgraft.analysis.overlap import overlap_name, table

    if own_size and method is None:
        raise ClgraftError("--own-size compares one method's grafts: give --method (e.g. tall-masks)")
    if not own_size and not 0 < sparsity < 1:
        raise ClgraftError(f"--sparsity {sparsity}: must be in (0, 1), e.g. 1e-3")
    chosen = None if own_size else sparsity
    payload = run_analysis(_open(run_dir, tasks_dir, data_dir), chosen, method, cross_grafts)
    typer.echo(table(payload))
    name = overlap_name(chosen, method)
    cross = ", -cross.png" if cross_grafts else ""
    typer.echo(f"written: {run_dir / 'analysis'}/{name}.json, .png, -layers.png{cross}; run.json analysis")


@analyze_app.command("agreement")
def analyze_agreement(
    run_dir: RunDir,
    other_dir: Annotated[Path, typer.Argument(help="a run of the same stream and base model (same seed, usually)")],
    method: Annotated[str, _opt("graft method of RUN_DIR's grafts (tall-masks: each at its own size)")],
    other_method: Annotated[str | None, _opt("graft method of OTHER_DIR's grafts")] = None,
    other_sparsity: Annotated[float, _opt("sparsity of OTHER_DIR's grafts")] = 1e-3,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Task by task, how far RUN_DIR's regions of --method (TALL masks, at their own size) agree with OTHER_DIR's
    grafts at --other-sparsity (e.g. `clgraft localize` of an independent run with the same seed, whose fine-tunes
    are the same): sizes, intersection, the share of the other region inside this one against a random region's
    share (this one's size over N), and Jaccard. Writes analysis/agreement-METHOD.json in RUN_DIR."""
    import pandas as pd

    from clgraft.analysis.overlap import find_grafts, region_agreement
    from clgraft.io.records import write_json

    run, other = _open(run_dir, tasks_dir, data_dir), _open(other_dir, tasks_dir, data_dir)
    ours = find_grafts(run, None, method)
    theirs = find_grafts(other, other_sparsity, other_method)
    rows = region_agreement(run, ours, other, theirs)
    typer.echo(pd.DataFrame(rows).set_index("task").to_string(float_format=lambda v: f"{v:.4g}"))
    out = run_dir / "analysis" / f"agreement-{method}.json"
    write_json(out, {"method": method, "other": str(other_dir), "other_sparsity": other_sparsity, "tasks": rows})
    typer.echo(f"written: {out}")


@analyze_app.command("subspace")
def analyze_subspace(
    run_dir: RunDir,
    t: Annotated[str, _opt("numbers of trajectory checkpoints to use, comma-separated", "--t")] = "8,16,32",
    finetune_in_subspace: Annotated[
        str | None,
        _opt("subspace dimensions d, comma-separated: train only z in θ_start + Vᵀz and compare with full fine-tuning"),
    ] = None,
    subspace_lr: Annotated[float, _opt("AdamW learning rate of z")] = 0.05,
    basis_part: Annotated[
        float,
        _opt(
            "build the basis from the first part of the largest t's checkpoints (1: all of them, the end of the "
            "fine-tuning included, so the subspace contains the answer)"
        ),
    ] = 0.5,
    controls: Annotated[
        bool,
        _opt(
            "with --finetune-in-subspace: at the largest d also fine-tune in a random d-dimensional subspace, in the "
            "next task's subspace, and in none (the head alone)",
            "--controls",
        ),
    ] = False,
    task: AnalyzeTasks = None,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Energy spectrum, d90 and d99 of each task's fine-tuning trajectory (whole model and per layer), from the t×t
    Gram matrix of the saved checkpoints (the run needs `clgraft run --trajectory N`, N ≥ max t); with
    --finetune-in-subspace, intrinsic-subspace accuracy and the outlier-dimension ablation (and with --controls, the
    same fine-tuning in control subspaces)."""
    from clgraft.analysis.subspace import analyze_subspace as run_analysis
    from clgraft.analysis.subspace import table

    counts = _parse_list(t, int, "--t", "8,16,32")
    dims = _parse_list(finetune_in_subspace, int, "--finetune-in-subspace", "8,16,32") if finetune_in_subspace else []
    if not 0 < basis_part <= 1:
        raise ClgraftError(f"--basis-part {basis_part}: must be in (0, 1], e.g. 0.5")
    if any(c < 2 for c in counts) or any(d < 1 for d in dims) or not counts:
        raise ClgraftError("--t values must be ≥ 2 and --finetune-in-subspace values ≥ 1")
    if dims and max(dims) > max(counts):
        raise ClgraftError(f"--finetune-in-subspace {max(dims)}: at most max --t = {max(counts)} directions exist")
    if controls and not dims:
        raise ClgraftError("--controls compares with fine-tuning in the subspace: give --finetune-in-subspace D too")
    run = _open(run_dir, tasks_dir, data_dir)
    results = run_analysis(run, counts, dims, run.select(task), subspace_lr, basis_part, controls)
    typer.echo(table(results))
    typer.echo(f"written: {run_dir / 'analysis'}/subspace.json, subspace.png; run.json analysis")


@analyze_app.command("closeness")
def analyze_closeness(
    run_dir: RunDir,
    critical_layers: Annotated[
        int | None, _opt("fine-tune only the k blocks that moved most and compare with full fine-tuning")
    ] = None,
    controls: Annotated[
        bool,
        _opt(
            "a reference scale for the distances: the same measures between each task's fine-tune and the other "
            "tasks' (where every task starts at θ₀); with --critical-layers also fine-tune the k blocks that moved "
            "least, k random blocks and the head alone (three more fine-tunes per task)",
            "--controls",
        ),
    ] = False,
    task: AnalyzeTasks = None,
    tasks_dir: TasksDir = None,
    data_dir: DataDir = None,
) -> None:
    """Per-layer closeness of each task's fine-tuned weights to where its fine-tuning started: ‖Δ‖₁/D,
    ‖Δ‖₂/‖θ_start‖₂ and 1 − cos (table, closeness.csv per tensor, closeness.png)."""
    from clgraft.analysis.closeness import analyze_closeness as run_analysis
    from clgraft.analysis.closeness import table

    if critical_layers is not None and critical_layers < 1:
        raise ClgraftError("--critical-layers must be ≥ 1")
    run = _open(run_dir, tasks_dir, data_dir)
    results = run_analysis(run, run.select(task), critical_layers, controls)
    typer.echo(table(results))
    typer.echo(f"written: {run_dir / 'analysis'}/closeness.json, closeness.csv, closeness.png; run.json analysis")


def _parse_list(text: str, kind: type, option: str, example: str) -> list:
    """A comma-separated option value as a list of numbers."""
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ClgraftError(f"{option} {text!r}: write {kind.__name__}s separated by commas, e.g. {example}") from e


def _parse_methods(text: str) -> list[tuple[str, dict]]:
    """--methods: comma-separated NAME[:KEY=VALUE...] items, aliases resolved, options validated."""
    from clgraft.methods import parse_method_spec

    out = [parse_method_spec(m.strip()) for m in text.split(",") if m.strip()]
    if not out:
        raise ClgraftError("--methods: name at least one method (clgraft methods list)")
    return out


def _parse_opts(pairs: list[str]) -> dict:
    """--opt KEY=VALUE pairs with typed values (1e3 → float, true → bool, [1, 2] → list)."""
    from clgraft.methods import parse_option_pairs

    return parse_option_pairs(pairs, "--opt")


def one_line(text: str) -> str:
    """A message on one line whatever it quotes: line breaks (and the indentation after them, as in YAML's errors)
    become one space, other control characters their escapes (a key or a value may hold any character)."""
    joined = re.sub(r"\s*[\r\n]+\s*", " ", text.strip())
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in joined)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler, `kill`): unwind like Ctrl-C, so that temp files are removed and locks released on the
    way out; a sweep handles it itself (clgraft/sweeps/stopping.py), ending its workers first."""
    raise Stopped(signum)


def main() -> None:
    """Entry point: one line on stderr instead of a traceback (shown with --debug).

    Exit codes: 2 for bad input (ClgraftError), usage errors and unusable paths, 130 for Ctrl-C (finished tasks and
    cells are kept; the same command resumes), 128 + the signal for a sweep stopped by SIGTERM or SIGINT (it says
    what finished and what is left), 1 for anything unexpected.
    """
    from typer.exceptions import Abort, TyperException

    debug = "--debug" in sys.argv
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = app(standalone_mode=False)  # usage errors come here rather than as typer's framed box
    except TyperException as e:  # typer's own click's usage errors (a missing argument, an unknown command)
        if type(e).__name__ == "NoArgsIsHelpError":  # `clgraft` or `clgraft tasks` alone: the help
            e.show()
            sys.exit(2)
        where = getattr(getattr(e, "ctx", None), "command_path", None) or "clgraft"
        typer.echo(f"clgraft: error: {one_line(e.format_message())} (see `{where} --help`)", err=True)
        sys.exit(2)
    except Abort:
        typer.echo("clgraft: aborted", err=True)
        sys.exit(1)
    except Stopped as e:
        detail = e.detail or "everything finished so far is saved — rerun the same command to resume"
        typer.echo(f"clgraft: stopped by {e.name}; {detail}", err=True)
        sys.exit(128 + e.signum)
    except ClgraftError as e:
        if debug:
            raise
        typer.echo(f"clgraft: error: {one_line(str(e))}", err=True)
        sys.exit(2)
    except OSError as e:  # a folder that cannot be created or written, a file that cannot be read
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(
            f"clgraft: error: {one_line(where + str(e.strerror or e))}; check the path and its permissions or free "
            "disk space (results finished before are kept)",
            err=True,
        )
        sys.exit(2)
    except Exception as e:
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        typer.echo(
            f"clgraft: internal error: {type(e).__name__}: {one_line(first)} (rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)
    if code == 130:  # typer turns Ctrl-C into exit code 130 without a word
        typer.echo(
            "clgraft: interrupted; everything finished so far is saved — rerun the same command to resume", err=True
        )
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
