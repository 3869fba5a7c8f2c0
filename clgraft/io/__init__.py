"""Writing what a run keeps: atomic files, hashes, provenance, figures, phase timing."""
