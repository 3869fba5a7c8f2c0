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
    """TIES trim as the official `topk_values_mask`: keep every entry whose |τ| is at least the (n − ⌊density·n⌋)-th
    smallest |τ| of the whole flat vector — ⌊density·n⌋ + 1 entries where magnitudes differ, and every entry tied at
    that threshold. Where ⌊density·n⌋ = n (density 1) τ is kept whole, as tall_masks' copy does for `K = 100` (the
    original would ask `kthvalue` for rank 0 and fail)."""
    n = tau.numel()
    rank = n - int(density * n)  # float product then int, as the official `int(d * K)`
    if rank < 1:
        return tau
    threshold = tau.abs().flatten().kthvalue(rank).values
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
    return disjoint_mean(trimmed, elect_signs(trimmed))


def elect_signs(trimmed: torch.Tensor) -> torch.Tensor:
    """TIES elect, as the official `resolve_sign` ("mass") and `resolve_zero_signs(.., "majority")`: per entry the
    sign of the summed trimmed values; where that sum is exactly 0 (cancelling values, or every value trimmed) the
    majority sign, the sign of the elected signs' sum over the whole vector, so that such an entry is not dropped."""
    sign = torch.sign(trimmed.sum(0))
    return torch.where(sign == 0, torch.sign(sign.sum()), sign)


def disjoint_mean(trimmed: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """TIES disjoint merge, as the official `disjoint_merge(.., "dis-mean", sign)`: per entry the mean of the trimmed
    values on the elected side — the positive ones where the sign is +, the negative ones otherwise (so also where
    the majority sign itself was 0) — and 0 where there are none."""
    agree = torch.where(sign > 0, trimmed > 0, trimmed < 0)
    return (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)


def max_magnitude(taus: list[torch.Tensor]) -> torch.Tensor:
    """MagMax (Marczak et al. 2024): per entry the task-vector value of largest magnitude, later task vectors winning
    ties (`>=`, as the official code's `merge_max_abs` and fusion-bench's port fold them)."""
    merged = taus[0].clone()
    for tau in taus[1:]:
        merged = torch.where(tau.abs() >= merged.abs(), tau, merged)
    return merged
