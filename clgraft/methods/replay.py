"""Experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning"): a small
class-balanced memory of earlier tasks, each training batch of the current task concatenated with a batch drawn
from the memory — on the same optimisation-step budget as every other method.

The memory keeps `per_class` examples of every class of every finished task (default 2, fewer than the k = 16
examples per class of the few-shot tasks: an eighth of their training set), chosen at random by avalanche-lib's
class-balanced buffer, one buffer per task so that task 1's class 0 and task 2's class 0 never share a budget.
Training runs exactly --steps batches of the current task (clgraft's schedule, as for naive); each is joined by
`mem_batch_size` memory examples (default: the batch size, as ER does; all of the memory when it is smaller),
drawn without replacement from a seeded generator. run.json records the memory per task, its share of the task's
training set, the steps and the examples seen per task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.avalanche_engine import AvalancheMethod, kept_examples, memory_report
from clgraft.methods.avalanche_schedule import EpochBatches
from clgraft.methods.base import TaskStep

if TYPE_CHECKING:
    from clgraft.methods.memory import Kept, RunSizes
    from clgraft.model.headed import HeadedModel


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_class: int = Field(default=2, gt=0, description="memory examples per class of every finished task")
    mem_batch_size: int | None = Field(
        default=None, gt=0, description="memory examples added to each batch (default: the training batch size)"
    )


def _per_task_buffer(per_class: int, classes: list[int]):
    from avalanche.benchmarks.utils.utils import concat_datasets
    from avalanche.training.storage_policy import ClassBalancedBuffer, ExemplarsBuffer

    class PerTaskClassBalanced(ExemplarsBuffer):
        """One fixed class-balanced buffer (per_class × classes) for each task, the union replayed."""

        def __init__(self):
            super().__init__(max_size=per_class * sum(classes))
            self.by_task: dict[int, ClassBalancedBuffer] = {}

        def post_adapt(self, agent_state, exp):
            task = exp.current_experience
            size = per_class * classes[task]
            self.by_task[task] = ClassBalancedBuffer(size, adaptive_size=False, total_num_classes=classes[task])
            self.by_task[task].post_adapt(agent_state, exp)
            self.buffer = concat_datasets([b.buffer for b in self.by_task.values()])

        def resize(self, strategy, new_size):
            """Budgets are fixed per class; nothing to resize."""

    return PerTaskClassBalanced()


def mixed_batches(current: list[list[int]], n: int, memory: int, size: int, seed: int) -> list[list[int]]:
    """Each scheduled batch of the current task (indices < n) joined by `size` distinct memory indices (n..n+memory−1,
    all of them when the memory is smaller), drawn from a generator seeded with `seed`."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    take = min(size, memory)
    return [batch + (n + torch.randperm(memory, generator=gen)[:take]).tolist() for batch in current]


def _scheduled_replay_plugin(storage, mem_batch_size: int):
    from avalanche.core import SupervisedPlugin
    from torch.utils.data import ConcatDataset, DataLoader

    class ScheduledReplay(SupervisedPlugin):
        """Replaces the strategy's loader by the mixed schedule (from the second task on) and fills the memory
        after each task, through the storage policy as avalanche's ReplayPlugin does."""

        def __init__(self):
            super().__init__()
            self.memory_sizes: list[int] = []

        def before_training_exp(self, strategy, **kwargs):
            memory = len(storage.buffer)
            self.memory_sizes.append(memory)
            if memory == 0:
                return
            data = ConcatDataset([strategy.adapted_dataset, storage.buffer])
            n = len(strategy.adapted_dataset)
            current = strategy.clgraft_schedule.parts[0]
            batches = mixed_batches(current, n, memory, mem_batch_size, strategy.clgraft_seed)
            strategy.dataloader = DataLoader(
                data, batch_sampler=EpochBatches([batches]), collate_fn=strategy.adapted_dataset.collate_fn
            )

        def after_training_exp(self, strategy, **kwargs):
            storage.update(strategy, **kwargs)

    return ScheduledReplay()


class Replay(AvalancheMethod):
    name = "replay"
    data_kept = "`per_class` examples per class"
    per_task_state = "its memory examples"
    relative_cost = 1.7
    description = "replays a small class-balanced memory of earlier tasks in every batch (ER), avalanche-lib buffers"
    paper = "Chaudhry et al. 2019, On Tiny Episodic Memories in Continual Learning (arXiv:1902.10486)"
    cite = ("chaudhry2019tiny", "lomonaco2021avalanche")
    Options = ReplayOptions
    keeps_state = True
    strategy_class = "Naive"

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        classes = [len(t.task.labels) for t in ctx.tasks]
        self.storage = _per_task_buffer(options.per_class, classes)
        self.mem_batch_size = options.mem_batch_size or ctx.opts.batch_size
        self.replay = _scheduled_replay_plugin(self.storage, self.mem_batch_size)
        self.seen: list[int] = []

    def plugins(self):
        return [self.replay]

    def train(self, model: HeadedModel, step: TaskStep) -> list[float]:
        losses = super().train(model, step)
        memory = self.replay.memory_sizes[-1]
        self.seen.append(len(losses) * (self.ctx.opts.batch_size + min(self.mem_batch_size, memory)))
        return losses

    @classmethod
    def kept(cls, options: ReplayOptions, run: RunSizes) -> list[Kept]:
        """The memory: `per_class` examples of every class of each task (at most its training set)."""
        return kept_examples(run.report)

    def report(self) -> dict:
        kept = [min(self.options.per_class * len(t.task.labels), len(t.train)) for t in self.ctx.tasks]
        return {
            **memory_report(self.ctx.tasks, kept),
            "memory_before_task": self.replay.memory_sizes,
            "mem_batch_size": self.mem_batch_size,
            "examples_seen_per_task": self.seen,
        }
