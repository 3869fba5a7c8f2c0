"""avalanche-lib strategies on clgraft's runner, with clgraft's heads, optimiser, batches and evaluation.

Avalanche 0.6 pitfalls handled here rather than papered over:
- Strategies pass one tensor to the model. Examples are packed as [2, max_length] (token ids, attention mask) and
  the adapter cuts the padding back to the longest example of the batch, so the body sees exactly the tensors
  clgraft's own loop feeds it.
- `MultiTaskModule.forward` pads every batch's logits with zeros up to the widest head seen, even a single-task
  batch whose task labels arrive as a tensor; the zeros join the softmax and change the loss. The adapter returns a
  head's own logits for a single-task batch and pads mixed-task batches (replay, A-GEM memories, joint) with
  PAD_LOGIT, whose probability is exactly 0 in float32.
- Avalanche re-collects all parameters into one optimiser group at each experience; clgraft makes the same fresh
  optimiser as its own loop instead (AdamW or SGD, body at lr, the current task's head at head_lr), and adds the same
  ℓ1 pull towards where the training starts (--l1-to-init) to the strategy's loss.
- Its default evaluator computes and logs metrics on every iteration. Strategies here run with no metrics; clgraft
  evaluates R itself and never reports Avalanche's stream accuracy or forgetting (docs/metrics.md).
"""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from clgraft.methods.avalanche_schedule import EpochBatches
from clgraft.methods.base import Method, TaskStep
from clgraft.methods.memory import Examples

if TYPE_CHECKING:
    from torch import nn

    from clgraft.model.headed import HeadedModel

# avalanche-lib imports qpsolvers, which warns on every start that it found no QP solver (only GEM needs one)
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)


def memory_report(tasks: list, kept: list[int]) -> dict:
    """Examples a memory method keeps of each task, and their share of the task's training set."""
    return {"memory_per_task": kept, "memory_fraction": [k / len(t.train) for k, t in zip(kept, tasks, strict=True)]}


def kept_examples(report: dict) -> list[Examples]:
    """The examples a memory method reported keeping of each task (`memory_report`), as memory items."""
    return [Examples(t, count) for t, count in enumerate(report["memory_per_task"])]


class AvalancheMethod(Method):
    """A method whose training is an avalanche-lib strategy; one strategy object lives for the whole stream."""

    strategy_class: ClassVar[str] = ""

    @classmethod
    def runs_clgraft_loop(cls, options) -> bool:
        return False

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.strategy = None
        self.benchmark = None

    def strategy_kwargs(self) -> dict[str, Any]:
        """The strategy's own hyper-parameters, from the method's options."""
        return {}

    def plugins(self) -> list:
        """avalanche-lib plugins added to the strategy (Replay's buffer)."""
        return []

    def adjust_strategy(self, strategy) -> None:
        """Change a constructed strategy where avalanche-lib 0.6 does not fit (PackNet's optimiser reset)."""

    def epoch_steps(self, steps: int) -> list[int]:
        """How a task's steps split into strategy epochs (PackNet prunes between two)."""
        return [steps]

    def wrap_model(self, adapter: nn.Module) -> nn.Module:
        """The module handed to the strategy (PackNet wraps it further)."""
        return adapter

    def _datasets(self):
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels
        from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset

        from clgraft.methods.avalanche_parts import PackedDataset

        train = []
        width = max(len(ids) for task in self.ctx.tasks for ids in task.train.ids)
        for t, task in enumerate(self.ctx.tasks):
            packed = PackedDataset(task.train, task.label_offset, width)
            # without a task id (shared head) every experience has task label 0, as in class-incremental avalanche
            # benchmarks; LwF then distils all classes seen so far rather than those of "task 0" only
            label = t if self.ctx.head_mode == "task" else 0
            train.append(
                TaskAwareSupervisedClassificationDataset(
                    [packed],
                    data_attributes=[
                        DataAttribute(packed.y, "targets"),
                        DataAttribute([label] * len(packed), "targets_task_labels", use_in_getitem=True),
                    ],
                )
            )
        return with_task_labels(with_classes_timeline(benchmark_from_datasets(train=train)))

    def _ensure_strategy(self, model: HeadedModel):
        if self.strategy is not None:
            return self.strategy
        import avalanche.training.supervised as strategies
        from avalanche.training.plugins import EvaluationPlugin
        from torch import nn

        from clgraft.methods.avalanche_parts import (
            ClgraftHooks,
            SharedHeadAdapter,
            _multitask_adapter_class,
            clear_whole_model,
        )
        from clgraft.training.loop import make_optimizer

        heads = [t.head for t in self.ctx.tasks]
        shared = self.ctx.head_mode == "shared"
        adapter = SharedHeadAdapter(model) if shared else _multitask_adapter_class()(model, heads)
        base = getattr(strategies, self.strategy_class)
        cls = type(f"Clgraft{base.__name__}", (ClgraftHooks, base), {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = EvaluationPlugin(loggers=[])
            self.strategy = cls(
                model=self.wrap_model(adapter),
                optimizer=clear_whole_model(make_optimizer(model, [heads[0]], self.ctx.opts), model),
                criterion=nn.CrossEntropyLoss(),
                train_mb_size=self.ctx.opts.batch_size,
                train_epochs=1,
                eval_mb_size=self.ctx.opts.eval_batch_size,
                device=self.ctx.device,
                evaluator=evaluator,
                eval_every=-1,
                plugins=self.plugins() or None,
                **self.strategy_kwargs(),
            )
        self.adjust_strategy(self.strategy)
        self.strategy.clgraft_model = model
        self.strategy.clgraft_opts = self.ctx.opts
        self.benchmark = self._datasets()
        return self.strategy

    def _run(self, model: HeadedModel, indices: list[int], steps: int, seed: int, desc: str, on_step) -> list[float]:
        import torch

        from clgraft.data.batches import train_batches
        from clgraft.methods.avalanche_parts import _l1_plugin, _watch_plugin

        strategy = self._ensure_strategy(model)
        n = sum(len(self.ctx.tasks[i].train) for i in indices)
        strategy.clgraft_heads = sorted({self.ctx.tasks[i].head for i in indices}, key=self._head_order)
        batches = train_batches(n, self.ctx.opts.batch_size, steps, torch.Generator().manual_seed(seed))
        ends = list(itertools.accumulate(self.epoch_steps(steps)))
        parts = [batches[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        strategy.clgraft_schedule = EpochBatches(parts)
        strategy.clgraft_seed = seed
        strategy.train_epochs = len(parts)
        watch = _watch_plugin(desc, steps, self.ctx.progress, on_step, seed)
        pull = [_l1_plugin(model, self.ctx.opts.l1_to_init)] if self.ctx.opts.l1_to_init else []
        strategy.plugins.extend([watch, *pull])  # in this order: the watch records the loss without the pull
        experiences = [self.benchmark.train_stream[i] for i in indices]
        try:
            with warnings.catch_warnings(record=True):  # recorded and dropped: avalanche's own filters can't reprint
                warnings.simplefilter("ignore")
                strategy.train(experiences if len(experiences) > 1 else experiences[0], shuffle=True)
        finally:
            for plugin in [watch, *pull]:
                strategy.plugins.remove(plugin)
            watch.bar.close()
        return watch.losses

    def _head_order(self, head: str) -> int:
        return [t.head for t in self.ctx.tasks].index(head)

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        task = self.ctx.tasks[step.index]
        desc = f"task {step.index + 1} {task.task.task} ({self.name})"
        return self._run(model, [step.index], self.ctx.opts.steps, step.seed, desc, step.callback())
