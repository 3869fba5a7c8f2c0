"""Many runs: sweep grids and their cost plans, comparisons, the seed papers' claims."""
