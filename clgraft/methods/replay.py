"""Experience replay through avalanche-lib's `ReplayPlugin` (what its `Replay` strategy is), with a class-balanced
memory per task.

The memory keeps `per_class` examples of every class of every task seen (default 16), chosen at random by
avalanche-lib's class-balanced buffer, one buffer per task so that task 1's class 0 and task 2's class 0 never share
a budget. Training batches mix current data and memory through avalanche's ReplayDataLoader, run for as many epochs
as make about --steps batches (the exact count is in run.json).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clgraft.methods.avalanche_engine import AvalancheMethod


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_class: int = Field(default=16, gt=0, description="memory examples per class seen")


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


class Replay(AvalancheMethod):
    name = "replay"
    relative_cost = 1.7
    description = "replays a class-balanced memory of earlier tasks' examples, avalanche-lib ReplayPlugin"
    paper = "Chaudhry et al. 2019, On Tiny Episodic Memories in Continual Learning (arXiv:1902.10486)"
    cite = ("chaudhry2019tiny", "lomonaco2021avalanche")
    Options = ReplayOptions
    keeps_state = True
    strategy_class = "Naive"
    scheduled = False

    def kept_bytes(self) -> int:
        """per_class examples of every class of every task."""
        classes = sum(len(t.task.labels) for t in self.ctx.tasks)
        return self.options.per_class * classes * self._example_bytes()

    def plugins(self):
        from avalanche.training.plugins import ReplayPlugin

        classes = [len(t.task.labels) for t in self.ctx.tasks]
        buffer = _per_task_buffer(self.options.per_class, classes)
        return [ReplayPlugin(mem_size=buffer.max_size, storage_policy=buffer)]
