"""Invariants of the metrics on random inputs (hypothesis): ranges, symmetry, and the identities DESIGN §2 and §5
imply."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clgraft.metrics import cl_metrics, jaccard, overlap
from clgraft.metrics.overlap import intersection_counts, jaccard_matrix, overlap_matrix, segment_intersection_counts

accuracy = st.floats(0, 1, allow_nan=False)


@st.composite
def r_matrices(draw, falling: bool = False):
    t = draw(st.integers(1, 6))
    R = draw(arrays(np.float64, (t + 1, t), elements=accuracy))
    if falling:  # after a task is learned its accuracy only falls: rows j+1.. of column j non-increasing
        for j in range(t):
            R[j + 1 :, j] = np.minimum.accumulate(R[j + 1 :, j])
    return R


@given(r_matrices())
def test_cl_metrics_ranges(R):
    m = cl_metrics(R.tolist())
    t = R.shape[1]
    for key in ("acc", "la", "avg_incremental_acc"):
        assert 0 <= m[key] <= 1
    assert np.isclose(m["acc"], R[t].mean()) and np.isclose(m["la"], np.diag(R[1:]).mean())
    if t == 1:
        assert m["bwt"] is None and m["fwt"] is None and m["forgetting"] is None
    else:
        assert -1 <= m["bwt"] <= 1 and -1 <= m["fwt"] <= 1 and -1 <= m["forgetting"] <= 1
        assert m["forgetting"] >= -m["bwt"] - 1e-12  # the max over rows is at least the row right after learning


@given(r_matrices(falling=True))
def test_bwt_is_minus_forgetting_when_accuracies_only_fall(R):
    m = cl_metrics(R.tolist())
    if R.shape[1] > 1:
        assert np.isclose(m["bwt"], -m["forgetting"]) and m["forgetting"] >= 0


masks = st.integers(1, 200).flatmap(lambda n: st.lists(arrays(np.bool_, (n,)), min_size=1, max_size=5))


@settings(max_examples=60, deadline=None)  # the first call loads (in CI: compiles) the pair-count kernel
@given(masks)
def test_overlap_and_jaccard_invariants(ms):
    counts = intersection_counts(ms)
    assert np.array_equal(counts, counts.T) and np.array_equal(np.diag(counts), [m.sum() for m in ms])
    over, jac = overlap_matrix(counts), jaccard_matrix(counts)
    assert np.allclose(jac, jac.T) and ((0 <= jac) & (jac <= 1)).all() and ((0 <= over) & (over <= 1)).all()
    for i, a in enumerate(ms):
        for j, b in enumerate(ms):
            assert np.isclose(over[i, j], overlap(a, b)) and np.isclose(jac[i, j], jaccard(a, b))
            assert jaccard(a, b) <= min(overlap(a, b), overlap(b, a)) + 1e-12
        if a.any():
            assert overlap(a, a) == 1 and jaccard(a, a) == 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_segment_counts_add_up_to_the_whole_and_match_numpy(data):
    t, n = data.draw(st.integers(1, 9)), data.draw(st.integers(0, 3000))
    ms = data.draw(arrays(np.bool_, (t, n)))
    cuts = data.draw(st.lists(st.integers(0, n), max_size=6))
    bounds = sorted({0, n, *cuts})
    counts = segment_intersection_counts(ms, bounds) if len(bounds) > 1 else np.zeros((0, t, t), int)
    for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        part = ms[:, lo:hi].astype(np.int64)
        assert np.array_equal(counts[s], part @ part.T)
    assert np.array_equal(counts.sum(0), intersection_counts(ms))
