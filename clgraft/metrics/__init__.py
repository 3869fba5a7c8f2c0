"""Metrics as pure functions of R, masks and checkpoints (docs/metrics.md, docs/protocols.md); no model needed to test
them."""

from clgraft.metrics.cl import cl_metrics
from clgraft.metrics.closeness import layer_closeness
from clgraft.metrics.overlap import jaccard, overlap
from clgraft.metrics.subspace import effective_dim, subspace_spectrum

__all__ = ["cl_metrics", "effective_dim", "jaccard", "layer_closeness", "overlap", "subspace_spectrum"]
