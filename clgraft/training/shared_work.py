"""Work that several runs would repeat, done once and kept beside their run directories (`.clgraft-shared/`).

Two pieces of a run are the same across methods and cells:
- row 0 of R (θ₀ with the seed's fresh heads, before any training) is the same for every method at the same seed
  and data;
- a fine-tune that starts at θ₀ (every task of `independent`, `graft-compose`, `merge` and `stitch`; the first task
  of the methods training with clgraft's own loop) is the same for every method that starts it from the same
  weights with the same data, settings and random state.

Each is keyed by a hash of everything it depends on — the weights it starts from (hashed, not named), the encoded
examples, the settings, the random-number state, device, thread count and package versions — so a reused result is
the one the run would have computed, bit for bit (tested). A fine-tune is stored as the weights it trained, its
losses and the random-number state after it, so that whatever the run does next draws the same numbers. A fine-tune
followed by a `StepObserver` (the runner's trajectory dimension) is still shared: the observer only reads weights,
so what it measured is stored with the fine-tune and handed back to it on reuse. Writes are
atomic and each key has a file lock, so parallel workers (local or Ray, on a shared folder) compute each piece once.
Deleting the folder only costs time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import load_file

from clgraft.data.batches import Encoded
from clgraft.io.records import read_json, save_tensors, versions, write_json
from clgraft.model.headed import HeadedModel, weights_sha256

SHARED_DIR = ".clgraft-shared"
"""Folder, next to the run directories, that holds the shared work."""

_LOSSES, _RNG, _CUDA_RNG = "__losses__", "__rng_state__", "__cuda_rng_state__"
_OBSERVED = "observed"
"""The stored file's metadata key for what an observer measured ({"settings": …, "summary": …}, JSON)."""


class StepObserver(Protocol):
    """A per-step callback of the training loop that only reads the weights — it changes no weight and draws no
    random number — so a stored fine-tune stands for a run followed by it, once what it measured is stored too."""

    def __call__(self, step: int) -> None: ...

    def settings(self) -> dict:
        """What it measures and where (its steps): a stored summary is reused only under equal settings."""
        ...

    def summary(self) -> dict | None:
        """What it measured over the fine-tune, JSON-serialisable."""
        ...

    def restore(self, summary: dict | None) -> None:
        """Take a stored summary as what it measured (the fine-tune was reused, not run)."""
        ...


@contextmanager
def _only_writer(path: Path) -> Iterator[None]:
    """Hold the key's lock; the temp files of a writer killed before (never a live one's) are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        yield


def _update_tensor(h: hashlib._Hash, tensor: torch.Tensor) -> None:
    h.update(str((tensor.dtype, tuple(tensor.shape))).encode())
    h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


def encoded_digest(h: hashlib._Hash, data: Encoded) -> None:
    """Feed the examples exactly as the model sees them (token ids, labels, pad id) into a hash."""
    h.update(json.dumps([data.ids, data.pad_id]).encode())
    _update_tensor(h, data.labels)


class SharedWork:
    """Row 0 of R and fine-tunes from θ₀, computed once per key under `folder`."""

    def __init__(self, folder: Path, device: torch.device):
        self.folder = folder
        self.device = device
        picked = versions()
        self.environment = {
            "clgraft": picked["clgraft"],
            "torch": picked["torch"],
            "transformers": picked["transformers"],
            "device": str(device),
            "threads": torch.get_num_threads(),
        }

    def _hasher(self, kind: str, settings: dict) -> hashlib._Hash:
        h = hashlib.sha256()
        h.update(json.dumps({"kind": kind, **self.environment, **settings}, sort_keys=True, default=str).encode())
        return h

    def row0(
        self,
        model: HeadedModel,
        tests: list[tuple[str, int, Encoded] | None],
        batch_size: int,
        compute: Callable[[], tuple[list[float | None], dict[int, torch.Tensor]]],
    ) -> tuple[list[float | None], dict[int, torch.Tensor]]:
        """Row 0 of R and its predictions (task index → argmax ids): the stored ones for this model state (body and
        every head) and these test sets (head, label offset, examples; None where the row has no entry), else
        `compute()`, stored. A stored row without predictions (written before they were kept) is computed again."""
        h = self._hasher("row0", {"eval_batch_size": batch_size, "columns": [t is not None for t in tests]})
        h.update(weights_sha256(model).encode())
        for test in tests:
            if test is not None:
                h.update(f"{test[0]}+{test[1]}".encode())
                encoded_digest(h, test[2])
        path = self.folder / "row0" / f"{h.hexdigest()}.json"
        with _only_writer(path):
            stored = read_json(path) if path.is_file() else {}
            if "predictions" in stored:
                kept = {int(j): torch.tensor(ids) for j, ids in stored["predictions"].items()}
                return stored["row"], kept
            row, predicted = compute()
            write_json(path, {"row": row, "predictions": {j: ids.tolist() for j, ids in predicted.items()}})
            return row, predicted

    def finetune(
        self,
        model: HeadedModel,
        head: str,
        data: Encoded,
        settings: dict,
        compute: Callable[[], list[float]],
        observer: StepObserver | None = None,
    ) -> list[float]:
        """Fine-tune `model` in place on `data` through `head`: load the stored result for this start (every body
        weight, the head, which weights train), data, settings and random state, else `compute()` and store what
        it trained. Returns the losses per step.

        `observer` is the step callback `compute()` trains with (None: none). The observer changes nothing the key
        hashes, so runs with and without it share one entry; a stored entry without its summary under the same
        settings (stored by a run without it) is computed again — the same weights, bit for bit — and stored with
        the summary."""
        trained = {f"body.{n}": p for n, p in model.body.named_parameters() if p.requires_grad}
        trained.update({f"heads.{head}.{n}": p for n, p in model.heads[head].named_parameters()})
        h = self._hasher("finetune", {**settings, "head": head, "trained": sorted(trained)})
        h.update(f"{weights_sha256(model.body)} {weights_sha256(model.heads[head])}".encode())
        encoded_digest(h, data)
        for state in self._rng_states().values():
            _update_tensor(h, state)
        path = self.folder / "finetunes" / f"{h.hexdigest()}.safetensors"
        with _only_writer(path):
            observed = _observed(path) if path.is_file() else None
            if path.is_file() and (observer is None or _matches(observed, observer)):
                if observer is not None:
                    observer.restore(observed["summary"])
                return self._load(path, model, trained)
            losses = compute()
            stored = {n: p.detach() for n, p in trained.items()}
            stored[_LOSSES] = torch.tensor(losses, dtype=torch.float64)
            stored.update(self._rng_states())
            meta = None
            if observer is not None:
                meta = {_OBSERVED: json.dumps({"settings": observer.settings(), "summary": observer.summary()})}
            save_tensors(path, stored, meta)
            return losses

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """The random-number states training draws from (dropout): the CPU generator's, and the GPU's on CUDA."""
        states = {_RNG: torch.get_rng_state()}
        if self.device.type == "cuda":
            states[_CUDA_RNG] = torch.cuda.get_rng_state(self.device)
        return states

    def _load(self, path: Path, model: HeadedModel, trained: dict[str, torch.nn.Parameter]) -> list[float]:
        stored = load_file(path, device="cpu")
        with torch.no_grad():
            for name, p in trained.items():
                p.copy_(stored[name])
        torch.set_rng_state(stored[_RNG])
        if _CUDA_RNG in stored:
            torch.cuda.set_rng_state(stored[_CUDA_RNG], self.device)
        model.eval()
        return stored[_LOSSES].tolist()


def _observed(path: Path) -> dict | None:
    """What an observer measured over the stored fine-tune at `path` (None: stored without one)."""
    with safe_open(path, framework="pt") as f:
        text = (f.metadata() or {}).get(_OBSERVED)
    return None if text is None else json.loads(text)


def _matches(observed: dict | None, observer: StepObserver) -> bool:
    """Whether a stored summary was measured as `observer` measures (its settings, compared as JSON)."""
    if observed is None:
        return False
    return json.dumps(observed["settings"], sort_keys=True) == json.dumps(observer.settings(), sort_keys=True)
