"""Every prediction behind R, kept beside run.json (`predictions.npz`), so that R, every metric and every interval
can be recomputed from the examples (`clgraft leaderboard` does) and compared across runs example by example.

One compressed NumPy archive: `labels.TT` (task TT's test labels, as ids of its head) and `offset.TT` (where its labels
sit in that head), written with row 0; `row.II.task.TT` (int16 argmax over the head's outputs) for every entry of R
that was evaluated. A row is added as soon as it is evaluated, so a resumed run keeps the rows it had.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from clgraft.io.records import save_bytes

FILE = "predictions.npz"


def _key(row: int, task: int) -> str:
    return f"row.{row:02d}.task.{task:02d}"


def load(path: Path) -> dict[str, np.ndarray]:
    """The archive's arrays by key (empty when there is none yet)."""
    if not path.is_file():
        return {}
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


def add_row(
    path: Path, row: int, predicted: dict[int, torch.Tensor], tests: dict[int, tuple[torch.Tensor, int]]
) -> None:
    """Write row `row`'s predictions (task index → argmax ids), and each task's labels and offset where missing."""
    arrays = load(path)
    for j, (labels, offset) in tests.items():
        arrays.setdefault(f"labels.{j:02d}", labels.numpy().astype(np.int16))
        arrays.setdefault(f"offset.{j:02d}", np.array(offset, dtype=np.int16))
    for j, ids in predicted.items():
        arrays[_key(row, j)] = ids.numpy().astype(np.int16)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **dict(sorted(arrays.items())))
    save_bytes(path, buffer.getvalue())


def entry_accuracy(predicted: np.ndarray, labels: np.ndarray, offset: int) -> float:
    """Accuracy of one entry of R from its predictions, computed as the runner computes it (float32 mean)."""
    hits = torch.from_numpy(predicted.astype(np.int64)) == torch.from_numpy(labels.astype(np.int64)) + offset
    return float(hits.float().mean())


def recompute_R(path: Path, recorded: list[list[float | None] | None]) -> list[list[float | None] | None]:
    """R recomputed from the predictions, in the recorded R's layout (a row or entry the run did not evaluate stays
    None); an entry the record has but the archive lacks comes back as None, so that a comparison shows it."""
    arrays = load(path)
    R: list[list[float | None] | None] = []
    for i, row in enumerate(recorded):
        if row is None:
            R.append(None)
            continue
        out: list[float | None] = [None] * len(row)
        for j, value in enumerate(row):
            if value is not None and _key(i, j) in arrays:
                labels, offset = arrays[f"labels.{j:02d}"], int(arrays[f"offset.{j:02d}"])
                out[j] = entry_accuracy(arrays[_key(i, j)], labels, offset)
        R.append(out)
    return R
