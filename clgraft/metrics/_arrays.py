"""Torch tensors or numpy arrays in, numpy arrays out, without a copy where the memory can be shared."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a CPU torch tensor (a copy only for other devices), or the array itself."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
