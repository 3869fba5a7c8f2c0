"""What the runner hands a method, and what it asks back: train on the current task (or on all at once), and get
the model ready to evaluate a task. Methods do arithmetic on models; they never open files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # torch and the model code load when a method runs, not when `methods list` reads the registry
    import torch

    from clgraft.config import RunConfig
    from clgraft.data.batches import Encoded
    from clgraft.data.loading import TaskData
    from clgraft.data.registry import Task
    from clgraft.grafting.graft import Graft
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel
    from clgraft.training.loop import TrainOptions
    from clgraft.training.shared_work import SharedWork, StepObserver


class NoOptions(BaseModel):
    """A method without hyper-parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PreparedTask:
    """A task of the stream with its encoded splits and where its labels sit in the model's heads."""

    data: TaskData
    head: str
    label_offset: int
    train: Encoded
    test: Encoded
    dev: Encoded

    @property
    def task(self) -> Task:
        return self.data.task


@dataclass
class RunContext:
    """Everything about the run a method may need, fixed before the first task."""

    tasks: list[PreparedTask]
    head_mode: str
    device: torch.device
    opts: TrainOptions
    progress: bool
    shared: SharedWork | None = None
    """Where fine-tunes that start at θ₀ are shared with other runs (None: always computed)."""


@dataclass
class TaskStep:
    """One task of the stream as the runner hands it to a method: `on_step` is called at every step of its training
    (saving checkpoints: such a fine-tune is never shared), `observer` too, but only reads the weights (a shared
    fine-tune hands it what it measured)."""

    index: int
    seed: int
    on_step: Callable[[int], None] | None = None
    observer: StepObserver | None = None

    def callback(self) -> Callable[[int], None] | None:
        """The one per-step callback training calls: on_step and the observer, in that order (None: neither)."""
        from clgraft.training.loop import both

        return both(self.on_step, self.observer)


class Method:
    """Sequential fine-tuning with clgraft's own loop; subclasses change `train` and say which paper they follow."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    needs_task_id: ClassVar[bool] = False
    """True for methods that only exist task-incrementally (they refuse --head shared)."""
    joint: ClassVar[bool] = False
    """True for the multitask upper bound: one training phase on all tasks, evaluated once (last row of R)."""
    keeps_state: ClassVar[bool] = False
    """True when state beyond the weights (Fisher, buffers, teacher) carries across tasks; a resume then restarts."""
    keeps_regions: ClassVar[bool] = False
    """Keeps one region per task (its grafts): the runner follows each task's fine-tuning trajectory in memory and
    records its dimension (clgraft/runs/trajectory.py), so such a fine-tune is computed in the run, never shared."""
    disjoint_regions: ClassVar[bool] = False
    """True when the tasks' regions cannot overlap (each task's search runs outside the regions before it): their
    Jaccard is 0 by construction, and the leaderboard says so instead of showing it as a measured disjointness."""
    cite: ClassVar[tuple[str, ...]] = ()
    """BibTeX keys (clgraft/data/references.bib) of the papers a result of this method should cite."""
    relative_cost: ClassVar[float] = 1.0
    """Rough time of a run relative to naive's at the same settings (measured on the standard sweep; 1 where not
    measured): a sweep starts its costly cells first, so that no worker idles while the last long cell runs."""
    r_rows_are_transfer: ClassVar[bool] = False
    """True when R's row t is a model of task t alone (trained from θ₀), so that R[t, j < t] measures transfer to task
    j rather than what is left of it: BWT and forgetting computed from such rows are not forgetting, and the plots
    and the site say so instead of drawing them."""
    from_theta0: ClassVar[bool] = False
    """True when each task is fine-tuned from θ₀, not from the weights after the previous task (the analysis measures
    a task's movement from where its fine-tuning started)."""

    data_kept: ClassVar[str] = "none"
    """Training examples of finished tasks the method keeps (`methods list`, the leaderboard's assumption columns)."""
    per_task_state: ClassVar[str] = "none"
    """What the method keeps or adds for each task beyond the task's head, in words (its bytes: `kept`)."""

    freezes_embeddings: ClassVar[bool] = False
    """Default of the run's freeze_embeddings: True for the grafting methods, whose models must be θ₀ + Σ γ⊙τ on every
    body parameter (the official grafting code fixes the embeddings too)."""

    grad_hook: Callable[[], None] | None = None
    """Called between backward and the optimiser step of clgraft's loop (None: nothing)."""

    def __init__(self, options: BaseModel, ctx: RunContext):
        self.options = options
        self.ctx = ctx

    @classmethod
    def citations(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The BibTeX keys for a run of this method with these options (as recorded in run.json)."""
        return cls.cite

    @classmethod
    def revision(cls, options: BaseModel) -> int:
        """The version of this configuration's code: bumped when a fix changes what the method computes (records of
        an older revision are another configuration, so a sweep reruns them and no row mixes the two). 1 for every
        configuration no fix has changed; it enters the config hash only above 1, so those keep their identity."""
        return 1

    @classmethod
    def by_construction(cls, options: dict[str, Any]) -> dict[str, str]:
        """Metrics whose value this configuration fixes by construction, not by measurement, with the reason (they
        are recorded and shown as such, never as a measured 0.00 ± 0.00)."""
        return {}

    @classmethod
    def kept(cls, options: BaseModel, run: RunSizes) -> list[Kept]:
        """What this configuration holds from one task to the next beyond θ₀ and the one model it trains and answers
        with, as memory items sized by a finished run (clgraft/methods/memory.py counts their bytes, the heads apart;
        docs/metrics.md). Sequential fine-tuning holds nothing more."""
        return []

    @classmethod
    def runs_clgraft_loop(cls, options: BaseModel) -> bool:
        """Whether this configuration trains with clgraft's own loop (clgraft/training/loop.py), which LP-FT's
        probing needs."""
        return True

    @classmethod
    def refusal(cls, config: RunConfig) -> str | None:
        """Why this method cannot honour one of the run's options, in one line (None: it can)."""
        return None

    @classmethod
    def requires_task_id(cls, options: BaseModel) -> bool:
        """Whether this configuration needs the task id at test time (no shared-head mode)."""
        return cls.needs_task_id

    def setup(self, model: HeadedModel) -> None:
        """Called once with the model at θ₀ (fresh heads), before any training or resume."""

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        """Fine-tune `model` in place on task `step.index`; returns the loss of every optimisation step. A fine-tune
        from θ₀ (the first task, or every task of a method starting each from θ₀) with nothing but an observer run
        inside the loop is shared with other runs (clgraft/training/shared_work.py)."""
        task, opts = self.ctx.tasks[step.index], self.ctx.opts
        from_theta0 = step.index == 0 or self.from_theta0
        if self.ctx.shared is None or not from_theta0 or self.grad_hook is not None or step.on_step is not None:
            return self.fit(model, step, opts)
        settings = {**asdict(opts), "seed": step.seed, "label_offset": task.label_offset}  # every training option
        return self.ctx.shared.finetune(
            model, task.head, task.train, settings, lambda: self.fit(model, step, opts), step.observer
        )

    def fit(self, model: HeadedModel, step: TaskStep, opts: TrainOptions, label: str = "") -> list[float]:
        """clgraft's loop on task `step.index` with these options (and the method's grad_hook); `label` names the
        method in the progress bar."""
        from clgraft.training.loop import train_task

        task = self.ctx.tasks[step.index]
        return train_task(
            model,
            task.head,
            task.train,
            opts,
            seed=step.seed,
            device=self.ctx.device,
            label_offset=task.label_offset,
            desc=self.step_label(step, label),
            on_step=step.callback(),
            progress=self.ctx.progress,
            grad_hook=self.grad_hook,
        )

    def step_label(self, step: TaskStep, label: str = "") -> str:
        """How a progress bar names task `step.index`'s work: the task's position and name, and what runs
        (`label`: the method in a fit, "mask search")."""
        task = self.ctx.tasks[step.index]
        return f"task {step.index + 1} {task.task.task}{f' ({label})' if label else ''}"

    def dev_accuracy(self, model: HeadedModel, upto: int) -> float:
        """Mean dev accuracy of tasks 0..upto: the only data a method's own choices (λ grids) may look at."""
        scores = [self.task_dev_accuracy(model, t) for t in range(upto + 1)]
        return sum(scores) / len(scores)

    def task_dev_accuracy(self, model: HeadedModel, t: int) -> float:
        """Dev accuracy of task t alone (a choice made per task, as TALL-masks' λ_t)."""
        from clgraft.io.phases import phase
        from clgraft.training.loop import split_accuracy

        task, opts = self.ctx.tasks[t], self.ctx.opts
        with phase("select"):
            return split_accuracy(model, task.head, task.dev, task.label_offset, opts.eval_batch_size, self.ctx.device)

    def before_eval(self, model: HeadedModel, task_index: int) -> None:
        """Put the model in the state used to evaluate one task (PackNet selects that task's mask)."""

    def grafts(self) -> dict[str, Graft]:
        """Grafts the method keeps, by file stem; the runner stores them under grafts/."""
        return {}

    def report(self) -> dict[str, Any]:
        """Facts about the run the method wants in run.json (region sizes, examples kept per task...)."""
        return {}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return {name: f.default for name, f in cls.Options.model_fields.items()}


class FromTheta0(Method):
    """Fine-tunes every task from θ₀ (body and embeddings), not from the weights after the previous task: the task
    vectors τ_t = θ_t − θ₀ of independent fine-tuning, which grafting, composition and merging start from."""

    from_theta0 = True

    def setup(self, model: HeadedModel) -> None:
        from clgraft.model.headed import BlockView, BodySnapshot

        self.view = BlockView(model.body)
        self.theta0 = BodySnapshot(model, self.view)

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        self.theta0.restore(model)
        return super().train(model, step)
