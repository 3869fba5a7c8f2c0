"""Run a stream: for each task, let the method train, save the weights, evaluate every task → the R matrix.

A run directory holds `progress.json` while running (rows of R finished so far) and `run.json` once done, plus
`weights/task-XX.safetensors` (the whole model after task XX) and, with `trajectory`, evenly spaced block-parameter
checkpoints. Rerunning the same config resumes after the last finished task; a finished run is not recomputed.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from pydantic import ValidationError
from safetensors.torch import load_file
from tqdm.auto import tqdm

from clgraft.config import TEST_SUBSET, RunConfig
from clgraft.data.batches import encode
from clgraft.data.loading import capped_test, load_task
from clgraft.data.prompts import label_word_ids
from clgraft.data.registry import Registry, Task
from clgraft.errors import ClgraftError, NonFiniteLoss, validation_message
from clgraft.io.phases import phase, spent_since, totals
from clgraft.io.records import (
    RECORD_FORMAT,
    config_hash,
    hardware,
    read_json,
    remove_stale_temps,
    save_bytes,
    save_tensors,
    versions,
    write_json,
)
from clgraft.methods import get_method, parse_options
from clgraft.methods.base import Method, PreparedTask, RunContext, TaskStep
from clgraft.metrics import cl_metrics
from clgraft.metrics.cl import CHAUDHRY_UNDEFINED, FWT_UNDEFINED, evaluated_columns
from clgraft.model.headed import (
    Backbone,
    HeadedModel,
    PromptModel,
    block_parameter_names,
    freeze_outside_blocks,
    load_backbone,
)
from clgraft.runs import predictions
from clgraft.runs.identity import identity
from clgraft.runs.regions import regions_record, task_regions
from clgraft.runs.trajectory import TrajectoryDims, checkpoint_saver
from clgraft.training.loop import SGD_WEIGHT_DECAY, TrainOptions, accuracy, predict
from clgraft.training.shared_work import SHARED_DIR, SharedWork
from clgraft.training.tensorboard_log import TensorBoardLog


def weights_path(run_dir: Path, method: str, t: int, tasks: int) -> Path:
    """The weight file that holds task t's fine-tuned model: the weights after it, or a joint run's only file."""
    after = tasks if get_method(method).joint else t + 1
    return run_dir / "weights" / f"task-{after:02d}.safetensors"


def head_layout(tasks: list[Task], mode: str) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
    """Head sizes, and for each task its (head, label offset): one head per task (a linear one, or its label words
    with the prompt head), or one shared label space in which tasks with the same `label_space` share outputs."""
    if mode in ("task", "prompt"):
        return {t.task: len(t.labels) for t in tasks}, {t.task: (t.task, 0) for t in tasks}
    offsets: dict[str, int] = {}
    total = 0
    for t in tasks:
        if t.space not in offsets:
            offsets[t.space] = total
            total += len(t.labels)
        elif any(o.space == t.space and len(o.labels) != len(t.labels) for o in tasks):
            raise ClgraftError(f"tasks in label space '{t.space}' have different numbers of labels")
    return {"shared": total}, {t.task: ("shared", offsets[t.space]) for t in tasks}


def resolve_device(name: str) -> torch.device:
    """The torch device, refusing CUDA where none is present. On CUDA, deterministic algorithms are switched on
    (cuBLAS with a fixed workspace, no cuDNN autotuning; an operation without a deterministic kernel warns rather
    than fails), so that a seed gives the same numbers on the same GPU every time; R then stays within
    CUDA_R_TOLERANCE of the CPU's."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ClgraftError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    if name == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.device(name)


Evaluation = tuple[list[float | None], dict[int, torch.Tensor]]
"""A row of R and the predictions behind it (task index → argmax over the task's head, in test-set order)."""


def _evaluate_row(model: HeadedModel, method: Method, ctx: RunContext, columns: list[int]) -> Evaluation:
    """Row of R: accuracy on the test sets of the given tasks with the model as it is now (None for the others),
    scored as `split_accuracy` scores, with the predictions."""
    row: list[float | None] = [None] * len(ctx.tasks)
    predicted = {}
    with phase("evaluate"):
        for j in columns:
            p = ctx.tasks[j]
            method.before_eval(model, j)
            logits = predict(model, p.head, p.test, ctx.opts.eval_batch_size, ctx.device)
            row[j] = accuracy(logits, p.test.labels + p.label_offset)
            predicted[j] = logits.argmax(-1)
    return row, predicted


def _table(R: list[list[float]], names: list[str], metrics: dict, by_construction: dict | None = None) -> str:
    import pandas as pd

    rows = ["before"] + [f"after {i + 1}: {n}" for i, n in enumerate(names)]
    filled = [row if row is not None else [None] * len(names) for row in R]
    frame = pd.DataFrame(filled, index=rows, columns=names).map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}")
    fixed = by_construction or {}
    shown = {
        k: ("n/a" if v is None else f"{100 * v:.2f}" + (" (by construction)" if k in fixed else ""))
        for k, v in metrics.items()
    }
    return f"R (accuracy %, row = after training on, column = evaluated task)\n{frame.to_string()}\n" + "  ".join(
        f"{k}={v}" for k, v in shown.items()
    )


RUN_TASKS = "tasks"
"""Folder of a run directory holding copies of the run's stream and task files that are not built in."""


def _with_run_tasks(registry: Registry, run_dir: Path, stream: str) -> Registry:
    """The registry, or — when it does not know the run's stream (a user folder not given again) — the built-in
    tasks plus the copies the run kept of its own task files."""
    from clgraft.data.registry import builtin_tasks_dir

    try:
        registry.stream(stream)
        return registry
    except ClgraftError:
        if not (run_dir / RUN_TASKS).is_dir():
            raise
        return Registry([builtin_tasks_dir(), run_dir / RUN_TASKS])


def _keep_task_files(stream, tasks: list[Task], folder: Path) -> list[str]:
    """Copy the stream and task YAML files that are not built in (with a bundled task's data files) into the run
    directory, each in a folder of its own, so that `localize` and `analyze` find them without --tasks-dir; returns
    the copies' paths relative to `folder`."""
    from clgraft.data.datapack import task_files
    from clgraft.data.registry import builtin_tasks_dir

    builtin = builtin_tasks_dir().resolve()
    kept = []
    for item in [stream, *tasks]:
        origin = Path(item.origin).resolve()
        if origin.is_relative_to(builtin):
            continue
        home = f"{getattr(item, 'task', None) or item.stream}@{item.version}"
        save_bytes(folder / home / origin.name, origin.read_bytes())
        kept.append(f"{home}/{origin.name}")
        if isinstance(item, Task) and item.source.kind == "bundled":
            for rel in task_files(item):
                save_bytes(folder / home / rel, (origin.parent / rel).read_bytes())
    return kept


class Runner:
    """Loads a stream, a model and a method, and runs them into one run directory."""

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        data_dir: Path | None,
        out: Path | None = None,
        progress: bool = True,
        echo: Callable[[str], None] = print,
        root: Path = Path("runs"),
        tensorboard: Path | None = None,
        share: bool = True,
        waiting: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.waiting = waiting or echo  # says that another process holds this run's lock (a sweep's workers: stderr)
        self.reused = False  # set by run(): the finished record was there already
        self.share = share  # reuse row 0 and fine-tunes from θ₀ across runs (clgraft/training/shared_work.py)
        self.tensorboard = tensorboard
        self.echo = echo
        self.progress = progress
        self.method_class = get_method(config.method)
        self.method_options = parse_options(self.method_class, config.method_options)
        if self.method_class.requires_task_id(self.method_options) and config.head == "shared":
            hint = " or --opt compose=union|stitch" if "compose" in type(self.method_options).model_fields else ""
            raise ClgraftError(
                f"method {config.method} needs the task id at test time, so it has no shared-head mode; "
                f"use --head task{hint}"
            )
        if config.probe_steps and not self.method_class.runs_clgraft_loop(self.method_options):
            raise ClgraftError(
                f"--probe-steps (LP-FT) works with the methods that train with clgraft's own loop; {config.method} "
                "trains through avalanche-lib (use naive, independent, graft-freeze, graft-compose or merge)"
            )
        if (reason := self.method_class.refusal(config)) is not None:
            raise ClgraftError(reason)
        if config.probe_steps and config.head == "prompt":
            raise ClgraftError("--probe-steps (LP-FT) fits a linear head; the prompt head has none to fit")
        self.device = resolve_device(config.device)
        stream = registry.stream(config.stream)
        self.stream = stream
        self.order, refs = stream.order(config.order)
        tasks = [registry.task(r) for r in refs]
        unprompted = [t.task for t in tasks if t.prompt is None]
        if config.head == "prompt" and unprompted:
            raise ClgraftError(f"--head prompt: task {unprompted[0]} declares no `prompt:` (template, label words)")
        self.tasks = tasks
        started = time.perf_counter()
        self.data = [load_task(t, data_dir, config.seed) for t in tasks]
        for d in self.data:
            d.splits["test"] = capped_test(d.splits["test"], config.max_test)
        self.backbone: Backbone = load_backbone(config.model, masked_lm=config.head == "prompt")
        self.load_s = time.perf_counter() - started  # data read, model loaded and hashed: before the run's wall time
        self.head_sizes, self.placement = head_layout(tasks, config.head)
        self.hash = config_hash(self._hash_payload())
        default = root / f"{stream.stream}-{self.order}-{config.method}-s{config.seed}-{self.hash[:8]}"
        self.dir = out or default
        self.opts = TrainOptions(
            config.steps,
            config.batch_size,
            config.lr,
            config.head_lr,
            weight_decay=SGD_WEIGHT_DECAY if config.optimizer == "sgd" else 0.0,
            optimizer=config.optimizer,
            probe_steps=config.probe_steps,
            l1_to_init=config.l1_to_init,
        )

    def new_model(self, body: torch.nn.Module) -> HeadedModel:
        """The run's model on a body: fresh linear heads seeded by the run seed, or the prompt head's label words."""
        if self.config.head != "prompt":
            return HeadedModel(body, self.head_sizes, self.config.seed).to(self.device)
        return PromptModel(body, self.label_words(), self.backbone.tokenizer.mask_token_id).to(self.device)

    def label_words(self) -> dict[str, list[int]]:
        """Each task's label-word token ids (prompt head)."""
        return {t.task: label_word_ids(self.backbone.tokenizer, t.prompt) for t in self.tasks}

    @property
    def freeze_embeddings(self) -> bool:
        """Whether the body outside the blocks stays at θ₀: the run's choice, else the method's default."""
        chosen = self.config.freeze_embeddings
        return self.method_class.freezes_embeddings if chosen is None else chosen

    @classmethod
    def from_run_dir(cls, run_dir: Path, registry: Registry, data_dir: Path | None) -> tuple[Runner, dict]:
        """The runner of a finished run and its record, refusing one whose data, tasks or model changed since."""
        path = run_dir / "run.json"
        if not path.is_file():
            raise ClgraftError(f"{run_dir} holds no finished run (no run.json); run `clgraft run --out {run_dir}`")
        record = read_json(path)
        try:
            config = RunConfig(**record["config"])
        except ValidationError as e:
            raise ClgraftError(validation_message(path, e, within="config") + " (the record was edited)") from e
        except (KeyError, TypeError) as e:
            raise ClgraftError(f"{path}: key 'config' is missing or not a mapping; the record was edited") from e
        runner = cls(
            config,
            _with_run_tasks(registry, run_dir, config.stream),
            data_dir,
            run_dir,
            progress=False,
            echo=lambda s: None,
        )
        recorded = record.get("model", {}).get("sha256")
        if runner.backbone.sha256 != recorded:
            raise ClgraftError(
                f"{run_dir}: base model {config.model} has weights sha256 {runner.backbone.sha256[:12]}…, the run "
                f"used {str(recorded)[:12]}…; load the same base model"
            )
        if runner.hash != record.get("config_hash"):
            raise ClgraftError(
                f"{run_dir}: the data, task versions or base model weights differ from the run's (config hash "
                f"{runner.hash} vs {record.get('config_hash')}); rerun it or restore them"
            )
        return runner, record

    def task_indices(self, names: list[str] | None) -> list[int]:
        """Stream positions of the named tasks (all when none are named); an unknown name is a one-line error."""
        order = [d.task.task for d in self.data]
        if not names:
            return list(range(len(order)))
        missing = [n for n in names if n not in order]
        if missing:
            raise ClgraftError(f"--task {missing[0]}: not a task of this run; its tasks are {', '.join(order)}")
        return [order.index(n) for n in names]

    def _hash_payload(self) -> dict:
        return {
            **identity(self.config),
            "stream": f"{self.stream.stream}@{self.stream.version}",
            "order": self.order,
            "tasks": [
                {"ref": d.task.ref, "data_seed": d.data_seed, "checksums": d.checksums, **self._prompt(d.task)}
                for d in self.data
            ],
            "model_sha256": self.backbone.sha256,
        }

    def _prompt(self, task: Task) -> dict:
        """A task's template and label words where the run uses them (they change every number)."""
        return {"prompt": task.prompt.model_dump()} if self.config.head == "prompt" else {}

    def _tasks_record(self) -> list[dict]:
        return [
            {
                "name": d.task.task,
                "version": d.task.version,
                "citation": d.task.citation,
                "data_seed": d.data_seed,
                "sizes": {s: len(d.splits[s]) for s in d.splits},
                "test_size": len(d.splits["test"]),
                "labels": d.task.labels,
                "checksums": d.checksums,
                **self._prompt(d.task),
            }
            for d in self.data
        ]

    def _context(self) -> RunContext:
        tok, n = self.backbone.tokenizer, self.config.max_length
        tasks = []
        for d in self.data:
            head, offset = self.placement[d.task.task]
            prompt = d.task.prompt if self.config.head == "prompt" else None
            train, test, dev = (encode(tok, d.splits[s], n, prompt) for s in ("train", "test", "dev"))
            tasks.append(PreparedTask(d, head, offset, train, test, dev))
        shared = SharedWork(self.dir.parent / SHARED_DIR, self.device) if self.share else None
        return RunContext(tasks, self.config.head, self.device, self.opts, self.progress, shared)

    def _existing(self) -> tuple[dict | None, dict | None]:
        """A finished record or a progress record of this config in the run dir; refuses other configs."""
        for name in ("run.json", "progress.json"):
            path = self.dir / name
            if path.exists():
                rec = read_json(path)
                if rec.get("config_hash") != self.hash:
                    raise ClgraftError(
                        f"{path} belongs to another configuration (hash {rec.get('config_hash')}, this run "
                        f"{self.hash}); pass a different --out"
                    )
                return (rec, None) if name == "run.json" else (None, rec)
        return None, None

    def _save_weights(self, model: HeadedModel, after: int) -> None:
        weights = self.dir / "weights"
        weights.mkdir(exist_ok=True)
        meta = {
            "model": self.backbone.model_id,
            "model_sha256": self.backbone.sha256,
            "task": self.data[after - 1].task.ref,
        }
        save_tensors(weights / f"task-{after:02d}.safetensors", model.state_dict(), meta)

    def _save_grafts(self, method: Method) -> None:
        """Write the method's grafts not written yet, with where they came from (as `clgraft localize`'s say)."""
        origin = {
            "base_model": self.backbone.model_id,
            "base_sha256": self.backbone.sha256,
            "run_config_hash": self.hash,
            **{k: str(v) for k, v in self.method_options.model_dump().items() if k.startswith("localize")},
        }
        for stem, graft in method.grafts().items():
            path = self.dir / "grafts" / f"{stem}.safetensors"
            if not path.exists():
                graft.meta.update(origin)
                graft.save(path)

    def run(self) -> dict:
        """Run (or resume, or reuse) the stream; returns the run record. One process at a time per run directory (a
        file lock): a second `clgraft run` or sweep on the same cell waits, then reuses the finished run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.dir / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.waiting(
                f"{self.dir}: another clgraft process is running this configuration; waiting for it, then reusing or "
                "resuming its work"
            )
            lock.acquire()
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> dict:
        remove_stale_temps(self.dir)
        finished, partial = self._existing()
        if finished is not None:
            self.reused = True
            self.echo(f"{self.dir}: finished run with the same config hash {self.hash}; not recomputed")
            names = [t["name"] for t in finished["tasks"]]
            self.echo(_table(finished["R"], names, finished["metrics"], finished.get("metrics_by_construction")))
            return finished
        if partial and len(partial["R"]) > 1 and self.method_class.keeps_state:
            self.echo(
                f"{self.dir}: method {self.config.method} keeps state across tasks that is not saved; "
                "restarting the stream from task 1"
            )
            partial = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.task_files = _keep_task_files(self.stream, self.tasks, self.dir / RUN_TASKS)
        torch.manual_seed(self.config.seed)
        model = self.new_model(self.backbone.model)
        if self.freeze_embeddings:
            freeze_outside_blocks(model.body)
        ctx = self._context()
        method = self.method_class(self.method_options, ctx)
        method.setup(model)
        R: list[list[float] | None] = partial["R"] if partial else []
        wall = partial["wall_s"] if partial else 0.0
        losses: list[list[float]] = partial["losses"] if partial else []
        dims: list[dict | None] = partial.get("trajectory_dims", []) if partial else []
        if partial and len(R) > 1:
            saved = self.dir / "weights" / f"task-{len(R) - 1:02d}.safetensors"
            model.load_state_dict(load_file(saved, device=str(self.device)))
            self.echo(f"{self.dir}: resuming after task {len(R) - 1} of {len(ctx.tasks)}")
        start, phases_before = time.perf_counter(), totals()
        cpu = (partial.get("cpu_s") or 0.0) if partial else 0.0
        cpu_start = time.process_time()
        earlier_phases = partial.get("time_s") if partial else None
        self.log = TensorBoardLog(self.tensorboard, [d.task.task for d in self.data]) if self.tensorboard else None
        if self.log is not None:
            self.log.step = sum(map(len, losses))  # a resumed run continues the stream's step count

        def checkpoint() -> None:
            write_json(
                self.dir / "progress.json",
                {
                    "config_hash": self.hash,
                    "config": self.config.model_dump(),
                    "R": R,
                    "losses": losses,
                    "trajectory_dims": dims,
                    "wall_s": wall + time.perf_counter() - start,
                    "cpu_s": cpu + time.process_time() - cpu_start,
                    "time_s": spent_since(phases_before, wall + time.perf_counter() - start, earlier_phases),
                },
            )

        if not R:
            R.append(self._row0(model, method, ctx))
            checkpoint()
        for i, row in enumerate(R):
            self._log_row(i, row)
        try:
            if method.joint:
                self._train_joint(model, method, ctx, R, losses)
            else:
                self._train_sequentially(model, method, ctx, R, losses, dims, checkpoint)
            elapsed = wall + time.perf_counter() - start
            record = self._record(R, losses, elapsed, method.report())
            names = [task.task.task for task in ctx.tasks]
            regions = task_regions(method.grafts(), names)
            if regions is not None:
                record["regions"] = regions_record(regions, names, [task.task.type for task in ctx.tasks])
            if method.keeps_regions and not method.joint:
                record["trajectory_dims"] = dims
            record["time_s"] = spent_since(phases_before, elapsed, earlier_phases)
            record["cpu_s"] = round(cpu + time.process_time() - cpu_start, 3)
            write_json(self.dir / "run.json", record)
            if self.log is not None:
                self.log.metrics(record["metrics"])
        except NonFiniteLoss as e:
            raise ClgraftError(f"{e}; tasks 1..{len(R) - 1} are kept in {self.dir} and a rerun resumes there") from e
        finally:
            if self.log is not None:  # what was logged stays readable when a run stops early
                self.log.close()
        (self.dir / "progress.json").unlink(missing_ok=True)
        names = [d.task.task for d in self.data]
        self.echo(_table(R, names, record["metrics"], record["metrics_by_construction"]))
        self.echo(f"run record: {self.dir / 'run.json'}")
        return record

    def _train_sequentially(self, model, method, ctx, R, losses, dims, checkpoint) -> None:
        bar = tqdm(
            total=len(ctx.tasks),
            initial=len(R) - 1,
            desc=f"{self.stream.stream}/{self.order}",
            disable=not self.progress,
            unit="task",
        )
        for t in range(len(R) - 1, len(ctx.tasks)):
            task_seed = self.config.seed * 1000 + t
            torch.manual_seed(task_seed)
            random.seed(task_seed)  # avalanche-lib draws A-GEM's memory with Python's random
            folder = self.dir / "trajectory" / f"task-{t + 1:02d}"
            saver = checkpoint_saver(model, folder, self.config.steps, self.config.trajectory)
            tracker = TrajectoryDims(model, self.config.steps) if method.keeps_regions else None
            with phase("train"):
                losses.append(method.train(model, TaskStep(t, task_seed, saver, tracker)))
            if tracker is not None:
                dims.append(tracker.dims())
            self._save_weights(model, t + 1)
            self._save_grafts(method)
            R.append(self._evaluate_row(model, method, ctx, t + 1))
            self._log_losses(f"{t + 1:02d}-{ctx.tasks[t].task.task}", losses[-1])
            self._log_row(t + 1, R[-1])
            checkpoint()
            bar.update(1)
        bar.close()

    def _train_joint(self, model, method, ctx, R, losses) -> None:
        """One phase on all tasks; rows 1..T−1 stay empty and row T holds the evaluation after it."""
        torch.manual_seed(self.config.seed * 1000)
        random.seed(self.config.seed * 1000)
        with phase("train"):
            losses[:] = [method.train_all(model, self.config.seed * 1000)]
        self._save_weights(model, len(ctx.tasks))
        R[1:] = [None] * (len(ctx.tasks) - 1) + [self._evaluate_row(model, method, ctx, len(ctx.tasks))]
        self._log_losses("joint", losses[0])
        self._log_row(len(ctx.tasks), R[-1])

    def _log_losses(self, phase: str, phase_losses: list[float]) -> None:
        if self.log is not None:
            self.log.losses(phase, phase_losses)

    def _log_row(self, index: int, row: list[float | None] | None) -> None:
        if self.log is not None:
            self.log.row(index, row)

    def _row0(self, model: HeadedModel, method: Method, ctx: RunContext) -> list[float | None]:
        """Row 0 of R (θ₀ with the seed's fresh heads), shared with every run of the same model, heads and test
        sets."""
        columns = evaluated_columns(self.config.evaluate, 0, len(ctx.tasks))
        if ctx.shared is None:
            return self._keep(0, _evaluate_row(model, method, ctx, columns), ctx)
        tests = [(p.head, p.label_offset, p.test) if j in columns else None for j, p in enumerate(ctx.tasks)]
        shared = ctx.shared.row0(
            model, tests, ctx.opts.eval_batch_size, lambda: _evaluate_row(model, method, ctx, columns)
        )
        return self._keep(0, shared, ctx)

    def _evaluate_row(self, model: HeadedModel, method: Method, ctx: RunContext, row: int) -> list[float | None]:
        """Row `row` of R, evaluating the tasks that the run's --evaluate plan asks for; its predictions are kept."""
        columns = evaluated_columns(self.config.evaluate, row, len(ctx.tasks))
        return self._keep(row, _evaluate_row(model, method, ctx, columns), ctx)

    def _keep(self, row: int, evaluation: Evaluation, ctx: RunContext) -> list[float | None]:
        """Add a row's predictions to the run's predictions.npz (clgraft/runs/predictions.py); returns the row of R."""
        values, predicted = evaluation
        tests = {j: (p.test.labels, p.label_offset) for j, p in enumerate(ctx.tasks)}
        predictions.add_row(self.dir / predictions.FILE, row, predicted, tests)
        return values

    def _label_words_record(self) -> dict:
        if self.config.head != "prompt":
            return {}
        tok = self.backbone.tokenizer
        return {"label_words": {k: tok.convert_ids_to_tokens(ids) for k, ids in self.label_words().items()}}

    def _record(self, R: list, losses: list[list[float]], wall: float, method_report: dict) -> dict:
        blocks = set(block_parameter_names(self.backbone.model))
        record = {
            "format": RECORD_FORMAT,
            "stream": {
                "name": self.stream.stream,
                "version": self.stream.version,
                "order": self.order,
                "citation": self.stream.citation,
            },
            "method": {
                "name": self.method_class.name,
                "paper": self.method_class.paper,
                "options": self.method_options.model_dump(),
                "revision": self.method_class.revision(self.method_options),
                "report": method_report,
            },
            "tasks": self._tasks_record(),
            "R": R,
            "metrics": cl_metrics(R, fresh_task_heads=self.config.head == "task"),
            "metrics_note": "computed by clgraft from R (docs/metrics.md), unweighted over tasks; R row 0 = before "
            "training; no metric is taken from avalanche-lib",
            "metrics_undefined": (
                {"fwt": FWT_UNDEFINED, "forgetting_chaudhry": CHAUDHRY_UNDEFINED} if self.config.head == "task" else {}
            ),
            "metrics_by_construction": self.method_class.by_construction(self.method_options.model_dump()),
            "config": self.config.model_dump(),
            "config_hash": self.hash,
            "test_subset": TEST_SUBSET if self.config.max_test is not None else None,
            "seed": self.config.seed,
            "model": {
                "id": self.backbone.model_id,
                "sha256": self.backbone.sha256,
                "block_parameters": sum(p.numel() for n, p in self.backbone.model.named_parameters() if n in blocks),
            },
            "heads": {"mode": self.config.head, "sizes": self.head_sizes, **self._label_words_record()},
            "freeze_embeddings": self.freeze_embeddings,
            "task_files": [f"{RUN_TASKS}/{name}" for name in self.task_files],
            "weights": sorted(str(p.relative_to(self.dir)) for p in (self.dir / "weights").glob("*.safetensors")),
            "train_loss": [
                {"steps": len(ls), "first": ls[0], "last": ls[-1], "mean": sum(ls) / len(ls)} for ls in losses
            ],
            "versions": versions(),
            "hardware": hardware(self.device),
            "wall_s": round(wall, 3),
            "load_s": round(self.load_s, 3),
        }
        if self.method_class.joint:
            record["joint_note"] = (
                "joint training: one phase on all tasks (T x steps batches); R row T is the "
                "evaluation after it, rows 1..T-1 are null, so only ACC is defined"
            )
        return record
