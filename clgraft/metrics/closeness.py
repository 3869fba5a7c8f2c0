"""How far fine-tuning moves each layer from the pre-trained weights (docs/protocols.md, Radiya-Dixit & Wang 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clgraft.metrics._arrays import as_numpy


def layer_closeness(theta0: dict[str, Any], theta: dict[str, Any]) -> pd.DataFrame:
    """Per parameter tensor (a row each, in theta0's order): L1/D = ‖θ − θ₀‖₁ / D, relative L2 = ‖θ − θ₀‖₂ / ‖θ₀‖₂,
    angular distance = 1 − cos(θ, θ₀). Undefined values (a zero θ₀, e.g. a bias initialised at 0) are NaN."""
    rows = {}
    for name, before in theta0.items():
        a = as_numpy(before).astype(np.float64).reshape(-1)
        b = as_numpy(theta[name]).astype(np.float64).reshape(-1)
        diff = b - a
        norm0, norm = np.linalg.norm(a), np.linalg.norm(b)
        cos = float(a @ b / (norm0 * norm)) if norm0 > 0 and norm > 0 else float("nan")
        rows[name] = {
            "params": a.size,
            "l1": float(np.abs(diff).sum() / a.size),
            "rel_l2": float(np.linalg.norm(diff) / norm0) if norm0 > 0 else float("nan"),
            "angular": 1.0 - cos,
        }
    return pd.DataFrame.from_dict(rows, orient="index")
