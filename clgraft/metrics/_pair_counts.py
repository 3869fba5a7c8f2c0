"""Compiled kernel behind `overlap.segment_intersection_counts`: every |γ_i ∧ γ_j| of T bool masks in one pass.

The masks are read as 64-bit words (8 bool bytes each, every byte 0 or 1), so a ∧ b is one AND per 8 entries and
the running sum of a ∧ b keeps eight byte-wide counters in one word — exact while a block has ≤ 255 words. Rows
are taken four at a time: a 4×4 tile of pairs loads 8 words and does 16 AND+ADDs, a diagonal tile 4 loads and 10,
so the arithmetic keeps pace with memory. All tiles run over one block of words while it sits in L1, so the masks
are read from memory once whatever T is (the arithmetic still grows as T²).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK_WORDS = 192  # ≤ 255 so no byte counter wraps; T rows × 1.5 KiB stay in L1 for T ≤ 16
LOW = np.uint64(0x00FF00FF00FF00FF)
ONES16 = np.uint64(0x0001000100010001)


@njit(cache=True, nogil=True, inline="always")
def _bytesum(s):
    """The sum of a word's eight byte counters."""
    s = (s & LOW) + ((s >> np.uint64(8)) & LOW)
    return np.int64((s * ONES16) >> np.uint64(48))


@njit(cache=True, nogil=True, boundscheck=False)
def _square(a0, a1, a2, a3, b0, b1, b2, b3, out):
    """out[p, q] += |a_p ∧ b_q| over one block of ≤ 255 words."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.uint64(0)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.uint64(0)
    for k in range(a0.shape[0]):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        s00 += x0 & y0
        s01 += x0 & y1
        s02 += x0 & y2
        s03 += x0 & y3
        s10 += x1 & y0
        s11 += x1 & y1
        s12 += x1 & y2
        s13 += x1 & y3
        s20 += x2 & y0
        s21 += x2 & y1
        s22 += x2 & y2
        s23 += x2 & y3
        s30 += x3 & y0
        s31 += x3 & y1
        s32 += x3 & y2
        s33 += x3 & y3
    sums = (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)
    for p in range(4):
        for q in range(4):
            out[p, q] += _bytesum(sums[4 * p + q])


@njit(cache=True, nogil=True, boundscheck=False)
def _triangle(a0, a1, a2, a3, out):
    """out[p, q] += |a_p ∧ a_q| for p ≤ q over one block of ≤ 255 words."""
    s00 = s01 = s02 = s03 = s11 = s12 = s13 = s22 = s23 = s33 = np.uint64(0)
    for k in range(a0.shape[0]):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        s00 += x0
        s01 += x0 & x1
        s02 += x0 & x2
        s03 += x0 & x3
        s11 += x1
        s12 += x1 & x2
        s13 += x1 & x3
        s22 += x2
        s23 += x2 & x3
        s33 += x3
    sums = (s00, s01, s02, s03, s11, s12, s13, s22, s23, s33)
    i = 0
    for p in range(4):
        for q in range(p, 4):
            out[p, q] += _bytesum(sums[i])
            i += 1


@njit(cache=True, nogil=True, boundscheck=False)
def _words(words, rows, lo, hi, out):
    """Add the counts of words [lo, hi) to out (4g × 4g, upper triangle); rows pads T up to 4g by repetition."""
    g = rows.shape[0] // 4
    for start in range(lo, hi, BLOCK_WORDS):
        stop = min(start + BLOCK_WORDS, hi)
        for i in range(g):
            r = rows[4 * i : 4 * i + 4]
            a0, a1 = words[r[0], start:stop], words[r[1], start:stop]
            a2, a3 = words[r[2], start:stop], words[r[3], start:stop]
            _triangle(a0, a1, a2, a3, out[4 * i : 4 * i + 4, 4 * i : 4 * i + 4])
            for j in range(i + 1, g):
                c = rows[4 * j : 4 * j + 4]
                _square(
                    a0,
                    a1,
                    a2,
                    a3,
                    words[c[0], start:stop],
                    words[c[1], start:stop],
                    words[c[2], start:stop],
                    words[c[3], start:stop],
                    out[4 * i : 4 * i + 4, 4 * j : 4 * j + 4],
                )


@njit(cache=True, nogil=True, boundscheck=False)
def _bytes(masks, lo, hi, out):
    """Add the counts of entries [lo, hi) to out one entry at a time (the < 8 entries beside a word boundary)."""
    t = masks.shape[0]
    for k in range(lo, hi):
        for i in range(t):
            if masks[i, k]:
                for j in range(i, t):
                    out[i, j] += masks[j, k]


@njit(cache=True, nogil=True)
def segment_counts(masks, words, bounds):
    """C[s, i, j] = |γ_i ∧ γ_j| over entries [bounds[s], bounds[s+1]) (upper triangle only).

    masks: T × N uint8 (0/1), C-contiguous, N a multiple of 8; words: the same memory viewed as T × N/8 uint64.
    """
    t = masks.shape[0]
    g = (t + 3) // 4
    rows = np.minimum(np.arange(4 * g), t - 1)
    counts = np.zeros((bounds.shape[0] - 1, 4 * g, 4 * g), np.int64)
    for s in range(bounds.shape[0] - 1):
        lo, hi = bounds[s], bounds[s + 1]
        first, last = (lo + 7) // 8, hi // 8
        if first >= last:
            _bytes(masks, lo, hi, counts[s])
            continue
        _bytes(masks, lo, 8 * first, counts[s])
        _words(words, rows, first, last, counts[s])
        _bytes(masks, 8 * last, hi, counts[s])
    return counts[:, :t, :t]
