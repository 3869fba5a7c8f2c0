"""Composing grafts into one model (docs/methods.md): task-aware (one graft), union (sum), stitch (mean over the grafts
covering each entry). Written in place into a body at θ₀, so that composing T grafts costs T graft applications and
the composed model is a plain model: evaluating it costs what evaluating any model costs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from clgraft.grafting.graft import Graft


def overlap_counts(grafts: list[Graft], numel: int) -> torch.Tensor:
    """How many grafts cover each of the numel block-parameter entries (0 where none)."""
    count = torch.zeros(numel, dtype=torch.uint8 if len(grafts) < 256 else torch.int32)
    for g in grafts:
        count[g.positions] += 1  # a graft's positions are distinct
    return count


def stitch_scales(grafts: list[Graft]) -> list[torch.Tensor]:
    """For each graft, 1 / (number of grafts covering the entry) at its positions: the weights of the stitch mean."""
    if not grafts:
        return []
    count = overlap_counts(grafts, grafts[0].numel)
    return [1.0 / count[g.positions].float() for g in grafts]


def compose_into(model: nn.Module, grafts: list[Graft], mode: Literal["union", "stitch"]) -> nn.Module:
    """θ₀ + Σ_j γ_j⊙τ_j (union), or each entry's sum divided by the number of grafts covering it (stitch), in place
    on a body (or HeadedModel) whose block parameters are at θ₀; returns the model."""
    scales = stitch_scales(grafts) if mode == "stitch" else [None] * len(grafts)
    for graft, scale in zip(grafts, scales, strict=True):
        graft.apply(model, scale)
    return model
