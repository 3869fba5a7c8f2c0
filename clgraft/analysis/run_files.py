"""A finished run opened for analysis: its tasks, θ₀, the weights after each task, where each task's fine-tuning
started, block layers, and writing results (analysis/NAME.json, PNGs, and a summary merged into run.json)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file

from clgraft.data.registry import Registry
from clgraft.errors import ClgraftError
from clgraft.io.records import read_json, write_json
from clgraft.methods import get_method
from clgraft.methods.base import PreparedTask, RunContext
from clgraft.model.headed import BlockView, HeadedModel
from clgraft.runs.runner import Runner, weights_path
from clgraft.training.loop import split_accuracy

LAYER = re.compile(r"layers?\.(\d+)\.")


def refuse_joint(run: OpenRun, what: str) -> None:
    """A one-line error for analyses that compare each task's own fine-tuning, which a joint run does not have."""
    if run.joint:
        raise ClgraftError(
            f"{run.dir}: a joint run has one model for all tasks, so {what} has no per-task fine-tuning to compare; "
            "analyse an independent or sequential run (overlap works on joint runs)"
        )


def kept_analysis(run_dir: Path, name: str) -> tuple[dict[str, dict], float]:
    """What an earlier analysis/NAME.json of a run holds: its per-task entries and the CPU seconds it records (none
    and 0 where absent, or written before it recorded them). The analyses made task by task (closeness, subspace)
    write it after every task, so it holds what one stopped midway made: they keep those entries, and their cost
    adds to the seconds recorded."""
    path = run_dir / "analysis" / f"{name}.json"
    if not path.exists():
        return {}, 0.0
    kept = read_json(path)
    return kept.get("tasks", {}), kept.get("cpu_s", 0.0)


def layer_of(name: str) -> str:
    """The transformer block a parameter belongs to ("layer 3"), or the name itself outside the blocks."""
    found = LAYER.search(name)
    return f"layer {found.group(1)}" if found else name


@dataclass
class OpenRun:
    """A finished run, its prepared tasks and θ₀, ready for analysis."""

    dir: Path
    runner: Runner
    record: dict
    ctx: RunContext
    view: BlockView
    theta0: torch.Tensor
    echo: Callable[[str], None]
    cpu_start: float
    """time.process_time() when the run was opened: an analysis records its CPU time from there."""

    @property
    def tasks(self) -> list[PreparedTask]:
        return self.ctx.tasks

    @property
    def names(self) -> list[str]:
        return [t.task.task for t in self.ctx.tasks]

    @property
    def joint(self) -> bool:
        """Whether the run trained one model on all tasks at once (one weight file, every task's θ_t)."""
        return get_method(self.runner.config.method).joint

    def state_after(self, t: int) -> dict[str, torch.Tensor]:
        """The whole model's state dict after task t (0-based); for a joint run, the one multi-task model."""
        path = weights_path(self.dir, self.runner.config.method, t, len(self.names))
        if not path.is_file():
            raise ClgraftError(f"{path} is missing: the run lacks the weights after task {self.names[t]}")
        return load_file(path)

    @staticmethod
    def body(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The body's part of a HeadedModel state dict, under the body's own names."""
        return {k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")}

    def blocks(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Flat block parameters of a HeadedModel state dict."""
        return self.view.flatten(self.body(state))

    @property
    def from_theta0(self) -> bool:
        """Whether the run's method fine-tunes every task from θ₀ (else from the weights after the previous task)."""
        return get_method(self.runner.config.method).from_theta0

    def start(self, t: int) -> torch.Tensor:
        """Flat block parameters where task t's fine-tuning started: θ₀, or the weights after task t − 1."""
        if t == 0 or self.from_theta0 or self.joint:
            return self.theta0
        return self.blocks(self.state_after(t - 1))

    def layers(self) -> dict[str, tuple[int, int]]:
        """Flat [start, end) ranges of each transformer block's parameters (block parameters are in model order)."""
        spans: dict[str, tuple[int, int]] = {}
        for name in self.view.names:
            lo, hi = self.view.offsets[name], self.view.offsets[name] + self.view.sizes[name]
            key = layer_of(name)
            spans[key] = (spans[key][0], hi) if key in spans else (lo, hi)
        return spans

    def fresh_model(self) -> HeadedModel:
        """A HeadedModel on a copy of the θ₀ body, with the run's freshly initialised heads."""
        import copy

        body = copy.deepcopy(self.runner.backbone.model)
        return self.runner.new_model(body)

    def test_accuracy(self, model: HeadedModel, t: int) -> float:
        task = self.tasks[t]
        opts = self.ctx.opts
        return split_accuracy(model, task.head, task.test, task.label_offset, opts.eval_batch_size, self.runner.device)

    def finetuned_accuracy(self, t: int) -> float:
        """Test accuracy right after task t's fine-tuning (R[t + 1][t]), the reference for reduced fine-tuning."""
        return self.record["R"][t + 1][t]

    def select(self, names: list[str] | None) -> list[int]:
        """Indices of the named tasks (all when none are named)."""
        return self.runner.task_indices(names)

    def write(self, name: str, payload: dict, summary: dict, earlier_cpu_s: float = 0.0) -> Path:
        """analysis/NAME.json with the full results; the summary goes into run.json under analysis.NAME. Both carry
        `cpu_s`, the CPU seconds since the run was opened (all threads, as a run's own `cpu_s`) plus `earlier_cpu_s`,
        what earlier calls spent on results this one kept."""
        cpu = {"cpu_s": round(earlier_cpu_s + time.process_time() - self.cpu_start, 3)}
        path = self.dir / "analysis" / f"{name}.json"
        write_json(path, _finite({**payload, **cpu}))
        run_json = self.dir / "run.json"
        with FileLock(str(run_json) + ".lock"):
            record = read_json(run_json)
            details = {"details": str(path.relative_to(self.dir))}
            record.setdefault("analysis", {})[name] = _finite({**summary, **cpu, **details})
            write_json(run_json, record)
        return path


def _finite(value: Any) -> Any:
    """NaN/inf → None, so that the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def open_run(run_dir: Path, registry: Registry, data_dir: Path | None, echo: Callable[[str], None]) -> OpenRun:
    """Open a finished run (refusing one whose data or base model changed since) for analysis; its CPU clock starts
    here, so an analysis's `cpu_s` includes loading the run."""
    cpu_start = time.process_time()
    runner, record = Runner.from_run_dir(run_dir, registry, data_dir)
    body = runner.backbone.model
    view = BlockView(body)
    theta0 = view.flatten(dict(body.named_parameters()))
    return OpenRun(run_dir, runner, record, runner._context(), view, theta0, echo, cpu_start)
