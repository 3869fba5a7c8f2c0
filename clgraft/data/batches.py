"""Tokenise a split once and cut it into padded batches (random for training, length-sorted with little padding for
evaluation and for the mask search's gradients)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clgraft.data.loading import Split
from clgraft.data.prompts import Prompt, prompt_ids


@dataclass
class Encoded:
    """Token ids per example (unpadded) and label ids."""

    ids: list[list[int]]
    labels: torch.Tensor
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask and labels for the examples in `index`, padded to the longest of them."""
        rows = [self.ids[i] for i in index]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        return input_ids, mask, self.labels[index]


def encode(tokenizer, split: Split, max_length: int, prompt: Prompt | None = None) -> Encoded:
    """Tokenise single sentences or sentence pairs, truncated to max_length; or, given a prompt, each example put
    into its template (clgraft/data/prompts.py)."""
    if prompt is not None:
        ids = [prompt_ids(tokenizer, prompt, texts, max_length) for texts in split.texts]
        return Encoded(ids, torch.tensor(split.labels, dtype=torch.long), tokenizer.pad_token_id or 0)
    firsts = [t[0] for t in split.texts]
    seconds = [t[1] for t in split.texts] if split.texts and len(split.texts[0]) > 1 else None
    out = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    return Encoded(out["input_ids"], torch.tensor(split.labels, dtype=torch.long), tokenizer.pad_token_id or 0)


def train_batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[list[int]]:
    """`steps` batches of indices: epochs of seeded permutations, concatenated and cut."""
    need = steps * batch_size
    perms = [torch.randperm(n, generator=generator) for _ in range(-(-need // n))]
    flat = torch.cat(perms)[:need].tolist()
    return [flat[i : i + batch_size] for i in range(0, need, batch_size)]


EVAL_BATCH_COST = 256
"""What one more evaluation batch costs, in padded tokens (a forward call's fixed work and the lower GEMM rate of
smaller batches; measured on the mixed stream's test sets, benchmarks/README.md)."""


def eval_batches(
    data: Encoded, batch_size: int, batch_cost: int = EVAL_BATCH_COST, max_tokens: int | None = None
) -> list[list[int]]:
    """Batches of at most batch_size examples, taken in length order and cut where the padded tokens plus
    `batch_cost` per batch are fewest (dynamic programming over the sorted lengths): an outlier in length gets a
    batch of its own instead of padding a whole batch to its length. With `max_tokens`, no batch of several
    examples holds more padded tokens than that (a bound on a batch's activations where they are kept for a
    backward pass)."""
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    lengths = np.array([len(data.ids[i]) for i in order], dtype=np.float64)
    cost = np.zeros(len(order) + 1)
    start_of = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):
        starts = np.arange(max(0, end - batch_size), end)
        if max_tokens is not None:
            starts = starts[((end - starts) * lengths[end - 1] <= max_tokens) | (starts == end - 1)]
        total = cost[starts] + (end - starts) * lengths[end - 1] + batch_cost
        best = int(np.argmin(total))
        cost[end], start_of[end] = total[best], starts[best]
    batches, end = [], len(order)
    while end > 0:
        batches.append(order[start_of[end] : end])
        end = int(start_of[end])
    return batches[::-1]
