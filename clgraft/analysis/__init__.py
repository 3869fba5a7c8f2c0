"""`clgraft analyze`: the seed papers' three measurements on a finished run — overlap of localized regions as task
similarity (DESIGN §5), subspace dimension of the fine-tuning trajectory and per-layer closeness (DESIGN §6)."""
