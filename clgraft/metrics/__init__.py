"""Metrics as pure functions of R, masks and checkpoints (DESIGN §2, §5, §6); no model needed to test them."""

from clgraft.metrics.cl import cl_metrics

__all__ = ["cl_metrics"]
