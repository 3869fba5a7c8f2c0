"""Model merging of task vectors as one configured composer (docs/methods.md), after mergekit's
GeneralizedTaskArithmeticMerge: sparsify each τ (none / TIES trim / DARE drop), elect signs (TIES) or not, combine
(sum or disjoint mean), scale by λ. Localize-and-Stitch is `compose_into(..., "stitch")` of localized grafts instead.
Pure tensor functions over flat block-parameter vectors.
"""

from __future__ import annotations

from typing import Literal

import torch

Merge = Literal["task-arithmetic", "ties", "dare"]


def trim_top_k(tau: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: keep the top `density` fraction of |τ| (by magnitude), zero the rest."""
    k = max(1, int(density * tau.numel()))
    threshold = torch.topk(tau.abs(), k, sorted=False).values.min()
    return torch.where(tau.abs() >= threshold, tau, torch.zeros_like(tau))


def dare_drop(tau: torch.Tensor, drop: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: drop each entry with probability p and rescale the survivors by 1/(1 − p)."""
    keep = torch.rand(tau.shape, generator=generator) >= drop
    return torch.where(keep, tau / (1 - drop), torch.zeros_like(tau))


def combine_vectors(
    taus: list[torch.Tensor], method: Merge, density: float = 0.2, drop: float = 0.9, seed: int = 0
) -> torch.Tensor:
    """combine(sparsify(τ_1..τ_T)): the merged task vector before the λ scaling (θ₀ + λ·it is the merged model), kept
    apart so that a λ grid sparsifies and elects signs only once."""
    if method == "task-arithmetic":
        return torch.stack(taus).sum(0)
    if method == "dare":
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([dare_drop(t, drop, gen) for t in taus]).sum(0)
    trimmed = torch.stack([trim_top_k(t, density) for t in taus])
    sign = torch.sign(trimmed.sum(0))  # elect: the sign of the summed mass
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    total = torch.where(agree, trimmed, torch.zeros_like(trimmed)).sum(0)
    count = agree.sum(0).clamp(min=1)
    return total / count  # disjoint mean over the agreeing task vectors


def max_magnitude(taus: list[torch.Tensor]) -> torch.Tensor:
    """MagMax (Marczak et al. 2024): per entry the task-vector value of largest magnitude, later task vectors winning
    ties (`>=`, as the official code's `merge_max_abs` and fusion-bench's port fold them)."""
    merged = taus[0].clone()
    for tau in taus[1:]:
        merged = torch.where(tau.abs() >= merged.abs(), tau, merged)
    return merged
