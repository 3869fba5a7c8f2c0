"""A task's fine-tuning trajectory as the runner follows it: block-parameter checkpoints saved for the subspace
analysis (`--trajectory N`, clgraft/analysis/subspace.py), and, for the methods that keep a region per task, the
trajectory's dimension measured in memory and recorded in run.json — what the premise predicts beside ACC: a skill
learned in a few directions (Zhang et al. 2023) as well as in a small region."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from clgraft.io.records import save_tensors
from clgraft.metrics.subspace import effective_dim, subspace_spectrum
from clgraft.model.headed import BlockView, HeadedModel, block_parameter_names

TRACKED_POINTS = 8
"""Checkpoints of a task's trajectory held in memory for its dimension (as many as `clgraft run --trajectory 8`):
8 × the block parameters (≈ 340 MB for MiniLM), freed when the task ends."""


def marks(steps: int, n: int) -> set[int]:
    """n evenly spaced steps of 1..steps, the last one the final step."""
    return {round(steps * (i + 1) / n) for i in range(n)}


def checkpoint_saver(model: HeadedModel, folder: Path, steps: int, n: int) -> Callable[[int], None] | None:
    """A per-step callback saving the block parameters at n evenly spaced steps (`marks`) under folder; None for
    n = 0."""
    if n <= 0:
        return None
    at = marks(steps, n)
    names = block_parameter_names(model.body)
    params = dict(model.body.named_parameters())
    folder.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        if step in at:
            save_tensors(folder / f"step-{step:06d}.safetensors", {name: params[name] for name in names})

    return save


class TrajectoryDims:
    """A per-step callback (`train_task`'s on_step) that keeps the block parameters where training starts (step 0)
    and at TRACKED_POINTS evenly spaced steps, as differences from the start; `dims()` then gives the trajectory's
    dimension as clgraft analyze subspace defines it: d90 of the differences (the fewest directions holding 90% of
    their energy) and of the centred checkpoints (PCA's, as DLDR)."""

    def __init__(self, model: HeadedModel, steps: int, points: int = TRACKED_POINTS):
        self.view = BlockView(model.body)
        self.body = model.body
        self.at = sorted(marks(steps, min(points, steps)))
        self.start: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self.filled = 0
        self.result: dict | None = None

    def __call__(self, step: int) -> None:
        if step == 0:
            self.start, self.result = self._blocks(), None
            self.rows = torch.empty((len(self.at), self.start.numel()), dtype=self.start.dtype)
            self.filled = 0
        elif self.rows is not None and step in self.at:
            torch.sub(self._blocks(), self.start, out=self.rows[self.filled])
            self.filled += 1
            if self.filled == len(self.at):  # the last step: measure now and free the checkpoints
                self.result = self._measure()

    def _blocks(self) -> torch.Tensor:
        params = dict(self.body.named_parameters())
        return self.view.flatten({name: params[name].detach() for name in self.view.names}).cpu()

    def _measure(self) -> dict | None:
        """{points, d90, d90_centred} of the checkpoints kept so far (None under two), which it frees."""
        rows, self.start, self.rows = self.rows, None, None
        if rows is None or self.filled < 2:
            return None
        X = rows[: self.filled]
        spectrum, centred = subspace_spectrum(X), subspace_spectrum(X - X.mean(0, keepdim=True))
        return {"points": self.filled, "d90": effective_dim(spectrum, 0.9), "d90_centred": effective_dim(centred, 0.9)}

    def dims(self) -> dict | None:
        """The trajectory's dimension once training has ended: measured at its last step, else from what was kept;
        None where training reported no start (a loop that does not call on_step(0)) or fewer than two checkpoints."""
        return self.result if self.rows is None else self._measure()

    def settings(self) -> dict:
        """The steps it keeps (a stored dimension is reused only for the same ones)."""
        return {"trajectory_dims_at": self.at}

    def summary(self) -> dict | None:
        """What a shared fine-tune stores for it: `dims()`."""
        return self.dims()

    def restore(self, summary: dict | None) -> None:
        """Take a shared fine-tune's stored dimension as this one's (its training was not run again)."""
        self.start, self.rows, self.result = None, None, summary
