"""Composing grafts into one set of block weights (DESIGN §4): task-aware (one graft), union (sum), stitch (mean
over the grafts covering each entry). Pure tensor arithmetic over flat block-parameter vectors."""

from __future__ import annotations

from typing import Literal

import torch

from clgraft.graft import Graft


def compose(theta0: torch.Tensor, grafts: list[Graft], mode: Literal["union", "stitch"]) -> torch.Tensor:
    """θ₀ + Σ_j γ_j⊙τ_j (union), or with each entry's sum divided by the number of masks covering it (stitch)."""
    out = theta0.clone()
    if not grafts:
        return out
    positions = torch.cat([g.positions for g in grafts])
    values = torch.cat([g.tau for g in grafts]).to(out.dtype)
    if mode == "union":
        out.index_add_(0, positions, values)
        return out
    total = torch.zeros_like(out).index_add_(0, positions, values)
    count = torch.zeros_like(out).index_add_(0, positions, torch.ones_like(values))
    covered = count > 0
    out[covered] += total[covered] / count[covered]
    return out


def overlap_counts(grafts: list[Graft], numel: int) -> torch.Tensor:
    """How many grafts cover each entry (0 where none)."""
    count = torch.zeros(numel, dtype=torch.int32)
    for g in grafts:
        count[g.positions] += 1
    return count
