"""Memory, counted one way for every method (docs/metrics.md, "Memory"): each method says what it keeps between
tasks as a few typed items (`Method.kept`), and `memory_bytes` alone turns items into bytes, so that the points on
one axis are comparable. Methods never count their own bytes.

What is counted: the state a method holds from one task to the next, beyond θ₀ and the one model it trains and
answers with — what it needs to give its answers on every task learned so far and to learn the next — after the last
task of the stream, where it is largest. The heads are counted apart (`head_bytes`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clgraft.model.sizes import BodySizes

Scope = Literal["task", "shared"]
"""'task': kept for one task, so it grows with the stream; 'shared': one for all tasks, counted once."""

FLOAT = 4
"""Bytes of a float32 value, and of an int32 index into the body's parameters."""
TOKEN = 2
"""Bytes of a token id or a label id (vocabularies and label sets under 65,536: BERT's 30,522 tokens)."""


@dataclass(frozen=True)
class Dense:
    """n float32 values: a task vector, a Fisher diagonal, a copy of weights, an adapter, a chosen λ (n = 1)."""

    n: int
    scope: Scope


@dataclass(frozen=True)
class Mask:
    """A set of k entries among n: ⌈n/8⌉ bytes as a bit mask, or k int32 indices when that is smaller."""

    n: int
    k: int
    scope: Scope


@dataclass(frozen=True)
class Owners:
    """A label per entry among `values` (PackNet's owning task, or free): ⌈log2 values⌉ bits per entry."""

    n: int
    values: int
    scope: Scope


@dataclass(frozen=True)
class Examples:
    """`count` training examples of task `task`, as their token ids and label ids (TOKEN bytes each); their tokens are
    `count` × the mean token count of the task's training examples."""

    task: int
    count: int
    scope: Scope = "task"


Kept = Dense | Mask | Owners | Examples


@dataclass(frozen=True)
class RunSizes:
    """What a finished run's memory is sized by: its stream, its body, its heads and its method's report (run.json),
    so that memory is counted from a record without rerunning it."""

    tasks: int
    blocks: int
    """N: the block parameters (the flat vector grafting and merging work on)."""
    trained: int
    """P: the body parameters fine-tuning moves (the blocks, and the embeddings unless the run froze them)."""
    body: BodySizes
    head_mode: str
    head_parameters: int
    """Parameters of all the run's heads together."""
    train_examples: tuple[int, ...]
    report: dict


@dataclass(frozen=True)
class Memory:
    """A run's memory in bytes after its T tasks: what grows with tasks, what is shared, and the heads apart."""

    tasks: int
    per_task_items: int
    """Bytes of the items kept for one task each, summed over the tasks."""
    shared: int
    """Bytes of the items shared by all tasks (counted once)."""
    heads: int
    """Bytes of the heads (float32 weights and biases)."""

    @property
    def total(self) -> int:
        """Everything kept beyond θ₀, the model and the heads after T tasks."""
        return self.per_task_items + self.shared

    @property
    def per_task(self) -> float:
        """total / T: the leaderboard's and the frontier's memory per task (shared state included as its share)."""
        return self.total / self.tasks

    @property
    def heads_per_task(self) -> float:
        """The heads' bytes / T: the leaderboard's head column."""
        return self.heads / self.tasks


def item_bytes(item: Kept, tokens_per_example: Sequence[float]) -> int:
    """The bytes of one item by the rule of docs/metrics.md; tokens_per_example[t] is the mean token count of task t's
    training examples (read only for Examples)."""
    if isinstance(item, Dense):
        return item.n * FLOAT
    if isinstance(item, Mask):
        return min(math.ceil(item.n / 8), item.k * FLOAT)
    if isinstance(item, Owners):
        return math.ceil(item.n * math.ceil(math.log2(item.values)) / 8)
    return math.ceil(item.count * (tokens_per_example[item.task] + 1) * TOKEN)


def memory_bytes(items: Sequence[Kept], run: RunSizes, tokens_per_example: Sequence[float] = ()) -> Memory:
    """A run's memory from what its method keeps (`Method.kept`), its number of tasks and its heads (float32)."""
    per_task = sum(item_bytes(i, tokens_per_example) for i in items if i.scope == "task")
    shared = sum(item_bytes(i, tokens_per_example) for i in items if i.scope == "shared")
    return Memory(run.tasks, per_task, shared, run.head_parameters * FLOAT)
