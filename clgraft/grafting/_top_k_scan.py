"""Compiled scan behind `localize.top_k_mask` on the CPU: one parallel pass over the scores that writes the mask of
the entries certainly in the top k and ranks, coarsely, the few whose place is uncertain; then passes over those
marks alone.

Two thresholds from a sample bracket the k-th largest value: every entry at or above `hi` is in the top k, every
entry below `lo` is out, and only the band [lo, hi) — a fraction of a percent of the entries — is decided. The first
pass writes one byte per entry: 1 for ≥ hi, 0 below lo, and for a band entry its level 2–255, the band cut into 254
equal steps (the level never decreases as x grows, so an entry of a higher level is larger than every entry of a
lower one). It is a single loop over a slice from 0, which the compiler vectorises (a loop from a computed offset,
or one cut into small blocks, it does not, or not well). The second pass reads the marks eight at a time and lists
the band's positions and levels; the caller then needs the scores themselves only for the entries of the one level
the k-th value falls in — reading all band entries' scores back would cost a cache miss each. Both passes run on as
many threads as torch uses, as the copy they are measured against does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

ALIGN = 64  # chunk boundaries: whole 8-byte words of marks
LEVELS = 254  # band levels 2..255
_ANY_BAND = np.uint64(0xFEFEFEFEFEFEFEFE)  # a byte ≥ 2 somewhere in the word


@njit(cache=True, nogil=True, boundscheck=False)
def _mark(scores, marks, flip, lo, hi, scale):
    """marks = 1 where x ≥ hi, 2 + ⌊(x − lo)·scale⌋ where lo ≤ x < hi, else 0, with x = max(s, flip·s) (flip −1: |s|,
    flip 1: s); returns how many are ≥ hi and how many in the band. x is clamped to [lo, hi] before the conversion
    to an integer (out of range it would be undefined), and every step stays in the scores' own float type and in
    int32, so the loop vectorises."""
    sure = 0
    band = 0
    for i in range(scores.shape[0]):
        x = max(scores[i], flip * scores[i])
        above = np.int32(x >= hi)
        inside = np.int32((x >= lo) & (x < hi))
        level = np.int32((min(max(x, lo), hi) - lo) * scale)
        marks[i] = np.uint8(above + inside * (2 + level))
        sure += above
        band += inside
    return sure, band


def level_scale(lo: float, hi: float) -> float:
    """The factor that maps the band [lo, hi) onto levels 0..LEVELS − 1 (a hair under LEVELS/(hi − lo), so that
    rounding never lifts an entry just below hi to level LEVELS); 0 when the band is unbounded or empty."""
    return (LEVELS - 0.01) / (hi - lo) if math.isfinite(hi) and hi > lo else 0.0


def chunk_size(n: int, chunks: int) -> int:
    """Entries per chunk: n split into `chunks` runs whose boundaries fall on whole words of marks."""
    return -(-n // chunks // ALIGN) * ALIGN


@njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def split(scores, flip, lo, hi, scale, marks, size):
    """First pass, in parallel chunks of `size` entries: writes the marks; returns per chunk how many entries are
    certainly in (≥ hi) and how many are in the band."""
    n = scores.shape[0]
    chunks = -(-n // size)
    sure = np.zeros(chunks, np.int64)
    band = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        start = c * size
        end = min(start + size, n)
        sure[c], band[c] = _mark(scores[start:end], marks[start:end], flip, lo, hi, scale)
    return sure, band


@njit(cache=True, nogil=True, boundscheck=False)
def _listed(marks, words, offset, positions, levels, at):
    """Write the band entries of one chunk's slices (positions + offset, and levels) from `at` on, visiting only the
    words that hold a band mark."""
    for w in range(words.shape[0]):
        if words[w] & _ANY_BAND:
            for i in range(8 * w, 8 * w + 8):
                if marks[i] >= 2:
                    positions[at] = offset + i
                    levels[at] = marks[i]
                    at += 1


@njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def band_entries(marks, size, band, positions, levels):
    """Second pass, over the marks alone: the positions (ascending) and levels of the band's entries, each chunk
    writing from where the chunks before it end. `marks` holds whole words (its length a multiple of 8, zeros past
    the scores)."""
    words = marks.view(np.uint64)
    starts = np.cumsum(band) - band
    for c in prange(band.shape[0]):
        start = c * size
        end = min(start + size, marks.shape[0])
        _listed(marks[start:end], words[start // 8 : end // 8], start, positions, levels, starts[c])
