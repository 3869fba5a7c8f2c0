"""Subspace dimension of a fine-tuning trajectory (docs/protocols.md, Zhang et al. 2023): singular values of the t×D
matrix of checkpoint differences from the t×t Gram matrix, energy spectrum, effective dimension, and the top right
singular vectors as a basis for intrinsic-subspace fine-tuning."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

COLUMNS = 1 << 16
"""Columns of X per float64 block in the precise Gram matrix and basis (t × 65,536 doubles: 8 MiB at t = 16)."""


def _gram(X: Any, precise: bool = False) -> torch.Tensor:
    """X Xᵀ (t×t, float64): in X's own precision (fast; enough for the spectrum, whose energies the largest
    singular values set), or with `precise` accumulated in float64 over column blocks, so that directions whose
    singular value lies below √(float32's epsilon) ≈ 3·10⁻⁴ of the largest are resolved rather than rounded away."""
    x = torch.as_tensor(X)
    if x.ndim != 2:
        raise ValueError(f"X must be t×D, got shape {tuple(x.shape)}")
    if not precise or x.dtype == torch.float64:
        return (x @ x.T).double()  # t×t: nothing D×D, and no copy of X
    gram = torch.zeros((x.shape[0], x.shape[0]), dtype=torch.float64)
    for block in x.split(COLUMNS, dim=1):
        wide = block.double()
        gram.addmm_(wide, wide.T)
    return gram


def _eig(X: Any, precise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = torch.linalg.eigh(_gram(X, precise))
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    return values.sqrt().numpy(), vectors.numpy()


def subspace_spectrum(X: Any) -> np.ndarray:
    """Singular values of X (t×D, torch or numpy), descending, from the eigenvalues of X Xᵀ."""
    return _eig(X)[0]


def energy(singular_values: Any) -> np.ndarray:
    """σ_k² / Σσ², the share of the trajectory's energy along each direction."""
    s2 = np.square(np.asarray(singular_values, dtype=float))
    total = s2.sum()
    return s2 / total if total > 0 else s2


def effective_dim(singular_values: Any, energy_share: float = 0.9) -> int:
    """The smallest d whose top-d directions hold at least `energy_share` of the energy (d90, d99)."""
    if not 0 < energy_share <= 1:
        raise ValueError(f"energy share {energy_share} must be in (0, 1]")
    cumulative = np.cumsum(energy(singular_values))
    if cumulative.size == 0 or cumulative[-1] == 0:
        return 0
    return int(np.searchsorted(cumulative, energy_share * cumulative[-1] - 1e-12) + 1)


def subspace_basis(X: Any, d: int) -> torch.Tensor:
    """V (d×D, X's dtype), the top-d right singular vectors of X, orthonormal rows: V = Σ⁻¹ Uᵀ X from the
    eigenvectors of the Gram matrix, both in float64 (`_gram`'s `precise`). Fewer than d rows only where X has fewer
    directions than d above 10⁻⁶ of its largest singular value. (A float32 Gram matrix leaves every direction below
    about 3·10⁻⁴ of the largest to rounding: the 16 checkpoints of a MiniLM fine-tuning, 16 directions in float64,
    gave 10–14.)"""
    x = torch.as_tensor(X)
    sigma, U = _eig(x, precise=True)
    d = min(d, int(np.count_nonzero(sigma > sigma[0] * 1e-6)) if sigma.size and sigma[0] > 0 else 0)
    if d == 0:
        raise ValueError("the trajectory does not move: X is zero")
    left = torch.from_numpy(U[:, :d] / sigma[:d])  # t×d, float64
    basis = torch.empty((d, x.shape[1]), dtype=x.dtype)
    for block, out in zip(x.split(COLUMNS, dim=1), basis.split(COLUMNS, dim=1), strict=True):
        out.copy_(left.T @ block.double())
    return basis
