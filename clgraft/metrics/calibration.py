"""Expected calibration error (docs/protocols.md): 15 equal-width bins over max-probability confidence."""

from __future__ import annotations

import torch


def ece(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Σ_b (|b|/n) · |accuracy(b) − mean confidence(b)| with bins (i/bins, (i+1)/bins]."""
    probs = torch.softmax(logits.float(), dim=-1)
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs()
    return float(total)
