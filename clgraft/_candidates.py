"""Compiled scan behind `localize.top_k_mask` on the CPU: the positions and values of every entry at or above a
threshold, in one pass over the scores.

The scores are taken 64 at a time: a vectorised count of the block's hits, and only a block with hits is walked
again, writing every position and advancing the output by the hit bit (no branch to mispredict). Top-k's other
passes — a comparison into an N-byte bool vector and its compaction (`torch.nonzero`) — are what this replaces.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 64


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _hits(scores, start, stop, flip, threshold):
    """How many of max(x, flip·x) ≥ threshold over scores[start:stop] (flip −1: |x|, flip 1: x)."""
    hits = 0
    for i in range(start, stop):
        hits += np.int32(max(scores[i], flip * scores[i]) >= threshold)
    return hits


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _write(scores, start, stop, flip, threshold, positions, values, count):
    """Every position of [start, stop) written at `count`, which advances by its hit bit: no branch."""
    for i in range(start, stop):
        x = scores[i]
        if max(x, flip * x) >= threshold:
            positions[count] = i
            values[count] = x
            count += 1
    return count


@njit(cache=True, nogil=True, boundscheck=False)
def scan(scores, flip, threshold, positions, values):
    """Write the positions i (ascending) with max(x, flip·x) ≥ threshold (flip −1 compares |x|, 1 compares x), and
    those x, into positions/values; returns how many there are. Only the first len(positions) − 64 are written: a
    larger count means rescan with room for it."""
    n = scores.shape[0]
    full = n - n % BLOCK
    room = positions.shape[0] - BLOCK
    count = 0
    for start in range(0, full, BLOCK):
        hits = _hits(scores, start, start + BLOCK, flip, threshold)
        if hits == 0:
            continue
        if count > room:
            count += hits
            continue
        count = _write(scores, start, start + BLOCK, flip, threshold, positions, values, count)
    if full < n and count <= room:
        return _write(scores, full, n, flip, threshold, positions, values, count)
    return count + _hits(scores, full, n, flip, threshold)
