"""`clgraft analyze`: the seed papers' three measurements on a finished run — overlap of localized regions as task
similarity (docs/protocols.md), subspace dimension of the fine-tuning trajectory and per-layer closeness
(docs/protocols.md)."""
