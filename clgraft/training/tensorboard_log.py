"""A run's training losses, R entries and final metrics as TensorBoard scalars (`--tensorboard DIR`).

Logging only: nothing here enters run.json or the config hash. TensorBoard's writer comes with torch
(`torch.utils.tensorboard`) and the `tensorboard` package, which avalanche-lib already installs.
"""

from __future__ import annotations

from pathlib import Path


class TensorBoardLog:
    """Scalars of one run: loss per step (per task and along the whole stream), each R entry by row, the metrics."""

    def __init__(self, folder: Path, task_names: list[str]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))
        self.names = task_names
        self.step = 0

    def losses(self, phase: str, losses: list[float]) -> None:
        """One training phase's losses (a task: `NN-task`, or `joint`): `loss/PHASE` by step within the phase,
        `loss/stream` by step overall."""
        tag = f"loss/{phase}"
        for i, value in enumerate(losses, start=1):
            self.writer.add_scalar(tag, value, i)
            self.writer.add_scalar("loss/stream", value, self.step + i)
        self.step += len(losses)

    def row(self, index: int, row: list[float | None] | None) -> None:
        """Row `index` of R as `accuracy/TASK` at step `index` (tasks not evaluated are skipped)."""
        for name, value in zip(self.names, row or [], strict=False):
            if value is not None:
                self.writer.add_scalar(f"accuracy/{name}", value, index)

    def metrics(self, metrics: dict[str, float | None]) -> None:
        """The run's metrics as `metrics/KEY` (undefined ones are skipped)."""
        for key, value in metrics.items():
            if value is not None:
                self.writer.add_scalar(f"metrics/{key}", value, 0)

    def close(self) -> None:
        """Flush and close the log (also when a run stops early)."""
        self.writer.close()
