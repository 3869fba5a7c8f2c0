"""Graft files: a sparse task vector γ⊙τ over the block parameters, stored with safetensors.

Layout. One index vector over the concatenated block parameters (model order) in the smallest unsigned dtype that
holds N, or a packed bitmask of N bits when that is smaller, plus the τ values at those positions and the task's
head. Per-tensor keys would cost ~200 bytes of safetensors header each (19 KB for MiniLM's 96 block tensors, more
than a whole graft at s = 1e-4), so the per-parameter layout (names and shapes) is kept once, zlib-compressed, in
the metadata. Applying a graft needs only θ₀: θ̄ = θ₀ + γ⊙τ.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

import clgraft
from clgraft.errors import ClgraftError
from clgraft.grafting.graft_meta import FORMAT
from clgraft.io.records import save_tensors
from clgraft.model.headed import BlockView


def index_dtype(n: int) -> torch.dtype:
    """The smallest unsigned integer dtype that can hold positions 0..n-1."""
    for dtype, limit in ((torch.uint8, 2**8), (torch.uint16, 2**16), (torch.uint32, 2**32)):
        if n <= limit:
            return dtype
    return torch.int64


def _pack_layout(names: list[str], shapes: dict[str, tuple[int, ...]]) -> str:
    doc = json.dumps([[n, list(shapes[n])] for n in names], separators=(",", ":"))
    return base64.b64encode(zlib.compress(doc.encode(), 9)).decode()


def _unpack_layout(text: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(s)) for n, s in json.loads(zlib.decompress(base64.b64decode(text)))]


@dataclass
class Graft:
    """A localized task vector: flat positions in the block-parameter vector, τ there, and the task's head."""

    layout: list[tuple[str, tuple[int, ...]]]
    positions: torch.Tensor
    tau: torch.Tensor
    head: dict[str, torch.Tensor]
    meta: dict[str, str]
    bytes: int | None = None
    _offsets: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        start = 0
        for name, shape in self.layout:
            size = int(np.prod(shape)) if shape else 1
            self._offsets[name] = (start, start + size)
            start += size
        self.positions = self.positions.long()

    @property
    def numel(self) -> int:
        """N, the number of block parameters the mask ranges over."""
        return sum(b - a for a, b in self._offsets.values())

    @property
    def k(self) -> int:
        """Number of selected entries."""
        return int(self.positions.numel())

    def names(self) -> list[str]:
        """The block parameter names the mask ranges over (model order)."""
        return [n for n, _ in self.layout]

    def _segment(self, name: str) -> tuple[torch.Tensor, slice]:
        if name not in self._offsets:
            raise KeyError(f"{name} is not a block parameter of this graft")
        a, b = self._offsets[name]
        lo, hi = torch.searchsorted(self.positions, torch.tensor([a, b])).tolist()
        return self.positions[lo:hi] - a, slice(lo, hi)

    def mask(self, name: str) -> torch.Tensor:
        """Boolean mask of one parameter, in its shape."""
        local, _ = self._segment(name)
        shape = dict(self.layout)[name]
        flat = torch.zeros(int(np.prod(shape)) if shape else 1, dtype=torch.bool)
        flat[local] = True
        return flat.view(shape)

    def values(self, name: str) -> torch.Tensor:
        """τ at the selected entries of one parameter (in the order of their flat positions)."""
        _, where = self._segment(name)
        return self.tau[where]

    def apply(self, model: nn.Module, scale: torch.Tensor | None = None) -> nn.Module:
        """θ₀ + γ⊙τ in place on a body at θ₀ (or a HeadedModel, whose body it changes); returns the model.
        `scale` (k values, one per selected entry) multiplies τ, as composition by stitching needs."""
        tau = self.tau if scale is None else self.tau * scale
        body = getattr(model, "body", model)
        params = dict(body.named_parameters())
        with torch.no_grad():
            for name, shape in self.layout:
                if name not in params or tuple(params[name].shape) != shape:
                    raise ClgraftError(f"graft for {self.meta.get('base_model')} does not fit this model ({name})")
                local, where = self._segment(name)
                if local.numel():
                    flat = params[name].data.view(-1)
                    flat.index_add_(0, local.to(flat.device), tau[where].to(flat.device, flat.dtype))
        return model

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, γ⊙τ) as flat vectors of N entries."""
        mask = torch.zeros(self.numel, dtype=torch.bool)
        mask[self.positions] = True
        delta = torch.zeros(self.numel)
        delta[self.positions] = self.tau
        return mask, delta

    @classmethod
    def from_mask(
        cls, view: BlockView, mask: torch.Tensor, tau: torch.Tensor, head: dict[str, torch.Tensor], meta: dict[str, str]
    ) -> Graft:
        """A graft from a flat boolean mask and the flat task vector over `view`'s block parameters; it lives on the
        CPU whatever device they are on (`apply` moves what it adds)."""
        positions = torch.nonzero(mask, as_tuple=False).flatten()
        layout = [(n, view.shapes[n]) for n in view.names]
        values = tau[positions].float().cpu().clone()
        head = {k: v.detach().cpu() for k, v in head.items()}
        return cls(layout, positions.cpu(), values, head, {**meta, "k": str(len(positions))})

    def save(self, path: Path) -> int:
        """Write the graft (indices or bitmask, whichever is smaller); returns the file size in bytes."""
        n = self.numel
        dtype = index_dtype(n)
        index_bytes = self.k * torch.empty((), dtype=dtype).element_size()
        tensors = {"tau": self.tau.contiguous(), **{f"head.{k}": v for k, v in self.head.items()}}
        if (n + 7) // 8 < index_bytes:
            mask, _ = self.dense()
            tensors["bitmask"] = torch.from_numpy(np.packbits(mask.numpy()))
        else:
            tensors["positions"] = self.positions.to(dtype)
        meta = {
            **self.meta,
            "k": str(self.k),
            "numel": str(n),
            "layout": _pack_layout(self.names(), dict(self.layout)),
            "clgraft_version": clgraft.__version__,
            "format": FORMAT,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, tensors, meta)
        self.bytes = path.stat().st_size
        return self.bytes


def load(path: str | Path) -> Graft:
    """Read a graft file written by `Graft.save` (safetensors only: no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise ClgraftError(f"graft file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ClgraftError(f"{path}: not a readable graft file ({e}); recreate it with clgraft localize") from e
    if meta.get("format") != FORMAT or "tau" not in tensors:
        raise ClgraftError(f"{path}: not a clgraft graft file (format {meta.get('format')!r})")
    try:
        layout = _unpack_layout(meta["layout"])
    except (KeyError, ValueError, zlib.error) as e:
        raise ClgraftError(f"{path}: graft layout metadata is damaged; recreate it with clgraft localize") from e
    if "bitmask" in tensors:
        n = int(meta["numel"])
        bits = np.unpackbits(tensors["bitmask"].numpy())[:n]
        positions = torch.from_numpy(np.nonzero(bits)[0])
    else:
        positions = tensors["positions"].long()
    if positions.numel() != tensors["tau"].numel():
        raise ClgraftError(f"{path}: {positions.numel()} positions but {tensors['tau'].numel()} values; file damaged")
    head = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    return Graft(layout, positions, tensors["tau"], head, meta, bytes=path.stat().st_size)
