"""Compiled scan behind `localize.top_k_mask` on the CPU: the positions and values of every entry at or above a
threshold, in parallel chunks.

It replaces top-k's comparison into an N-byte bool vector and that vector's compaction (`torch.nonzero`): a
vectorised count of each chunk's hits gives every chunk its place in the output, then each chunk walks only its
64-entry blocks that hold a hit and writes their positions and values there. Both passes run on as many threads as
torch uses, as the copy they are measured against does.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 64
MIN_CHUNK = 1 << 16  # entries per chunk at least: fewer would cost more in start-up than they save


@njit(cache=True, nogil=True, boundscheck=False)
def _hits(scores, flip, threshold):
    """How many x in scores have max(x, flip·x) ≥ threshold (flip −1: |x|, flip 1: x). Callers pass slices: an index
    counted from 0 is one the compiler knows is not negative, so the loop vectorises."""
    hits = 0
    for i in range(scores.shape[0]):
        hits += np.int32(max(scores[i], flip * scores[i]) >= threshold)
    return hits


@njit(cache=True, nogil=True, boundscheck=False)
def _write(scores, offset, flip, threshold, positions, values, at):
    """Write the hits of a slice (positions + offset) from `at` on, 64-entry block by block, skipping blocks
    without one."""
    for block in range(0, scores.shape[0], BLOCK):
        part = scores[block : block + BLOCK]
        if _hits(part, flip, threshold) == 0:
            continue
        for i in range(part.shape[0]):
            x = part[i]
            if max(x, flip * x) >= threshold:
                positions[at] = offset + block + i
                values[at] = x
                at += 1


@njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def chunk_hits(scores, flip, threshold, chunks):
    """Hits per chunk of the scores (chunk c is [c·size, (c+1)·size), size a multiple of 64)."""
    n = scores.shape[0]
    size = -(-n // chunks // BLOCK) * BLOCK
    out = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        out[c] = _hits(scores[min(c * size, n) : min((c + 1) * size, n)], flip, threshold)
    return out


@njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def write_hits(scores, flip, threshold, hits, positions, values):
    """Positions (ascending) and values of every hit, each chunk from where the chunks before it end."""
    n, chunks = scores.shape[0], hits.shape[0]
    size = -(-n // chunks // BLOCK) * BLOCK
    starts = np.cumsum(hits) - hits
    for c in prange(chunks):
        lo = min(c * size, n)
        _write(scores[lo : min(lo + size, n)], lo, flip, threshold, positions, values, starts[c])
