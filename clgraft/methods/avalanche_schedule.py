"""What `avalanche_engine` and its torch side (`avalanche_parts`) share: clgraft's batch schedule as a sampler and
the logit that pads mixed-task batches. Light to import, like the engine."""

from __future__ import annotations

PAD_LOGIT = -1.0e4
"""Pads a mixed-task batch's logits up to the widest head: its probability is exactly 0 in float32."""


class EpochBatches:
    """A batch sampler that yields the next part of a schedule each time a DataLoader starts an epoch."""

    def __init__(self, parts: list[list[list[int]]]):
        self.parts = parts
        self.epoch = 0

    def __iter__(self):
        part = self.parts[min(self.epoch, len(self.parts) - 1)]
        self.epoch += 1
        return iter(part)

    def __len__(self) -> int:
        return len(self.parts[min(self.epoch, len(self.parts) - 1)])
