"""Subspace dimension of a fine-tuning trajectory (docs/protocols.md, Zhang et al. 2023): singular values of the t×D
matrix of checkpoint differences from the t×t Gram matrix, energy spectrum, effective dimension, and the top right
singular vectors as a basis for intrinsic-subspace fine-tuning."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _gram(X: Any) -> torch.Tensor:
    x = torch.as_tensor(X)
    if x.ndim != 2:
        raise ValueError(f"X must be t×D, got shape {tuple(x.shape)}")
    return (x @ x.T).double()  # t×t: nothing D×D, and no copy of X


def _eig(X: Any) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = torch.linalg.eigh(_gram(X))
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
    """V (d×D), the top-d right singular vectors of X, orthonormal rows: V = Σ⁻¹ Uᵀ X from the Gram eigenvectors."""
    x = torch.as_tensor(X)
    sigma, U = _eig(x)
    d = min(d, int(np.count_nonzero(sigma > sigma[0] * 1e-6)) if sigma.size and sigma[0] > 0 else 0)
    if d == 0:
        raise ValueError("the trajectory does not move: X is zero")
    left = torch.from_numpy(U[:, :d] / sigma[:d]).to(x.dtype)
    return left.T @ x
