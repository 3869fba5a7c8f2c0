"""The analysis API (DESIGN §5, §6) against numpy re-statements on hand-made inputs, torch and numpy alike."""

import itertools

import numpy as np
import pytest
import torch

from clgraft.metrics import effective_dim, jaccard, layer_closeness, overlap, subspace_spectrum
from clgraft.metrics.overlap import (
    empty_mask_matrix,
    intersection_counts,
    jaccard_matrix,
    mask_matrix,
    overlap_matrix,
    random_overlap,
    segment_intersection_counts,
)
from clgraft.metrics.subspace import energy, subspace_basis

A = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 1], dtype=bool)
B = np.array([0, 1, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)


@pytest.mark.parametrize("to", [np.asarray, torch.from_numpy])
def test_overlap_and_jaccard_by_hand(to):
    # A ∧ B = {1, 3}: 2 entries; |A| = 5, |B| = 3, |A ∨ B| = 6
    assert overlap(to(A), to(B)) == pytest.approx(2 / 3)
    assert overlap(to(B), to(A)) == pytest.approx(2 / 5)
    assert jaccard(to(A), to(B)) == pytest.approx(2 / 6)
    assert overlap(to(A), to(np.zeros(10, bool))) == 0.0 and jaccard(to(np.zeros(3, bool)), to(np.zeros(3, bool))) == 0


def test_overlap_refuses_non_bool_masks():
    with pytest.raises(TypeError, match="bool"):
        overlap(np.ones(3), np.ones(3))


def test_all_pairs_in_one_pass_match_pairwise_numpy():
    rng = np.random.default_rng(0)
    masks = [rng.random(1003) < p for p in (0.01, 0.1, 0.3, 0.0)]
    counts = intersection_counts([torch.from_numpy(m) for m in masks])
    expected = np.array([[np.sum(a & b) for b in masks] for a in masks])
    assert np.array_equal(counts, expected)
    over, jac = overlap_matrix(counts), jaccard_matrix(counts)
    for i, a in enumerate(masks):
        for j, b in enumerate(masks):
            assert over[i, j] == pytest.approx(overlap(a, b)) and jac[i, j] == pytest.approx(jaccard(a, b))
    null = random_overlap(counts, 1003)
    assert null[1, 2] == pytest.approx(masks[1].sum() / 1003)


@pytest.mark.parametrize("t", [1, 3, 4, 5, 8, 9])
def test_segment_counts_match_numpy_across_word_and_block_edges(t):
    # N spans several kernel blocks and ends off a word; the segments cut words and blocks at odd places
    rng = np.random.default_rng(t)
    n = 8 * 192 * 3 + 13
    masks = rng.random((t, n)) < rng.uniform(0.01, 0.9, size=(t, 1))
    bounds = [0, 3, 5, 8, 1540, 1541, 3000, 3000, n]
    counts = segment_intersection_counts(torch.from_numpy(masks), bounds)
    for s, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = masks[:, lo:hi].astype(np.int64)
        assert np.array_equal(counts[s], part @ part.T), (lo, hi)
    assert np.array_equal(intersection_counts(masks), counts.sum(0))


def test_mask_matrix_reads_a_ready_matrix_in_place_and_copies_the_rest():
    ready = np.zeros((3, 64), dtype=bool)
    assert mask_matrix(ready) is ready
    empty = empty_mask_matrix(3, 13)  # what the analysis fills from graft positions
    assert empty.shape == (3, 16) and mask_matrix(empty) is empty
    rng = np.random.default_rng(0)
    masks = rng.random((3, 65)) < 0.5
    for other in (masks, masks[:, 1:], np.asfortranarray(masks[:, :64]), list(masks)):
        m = mask_matrix(other)
        width = np.asarray(other[0]).shape[-1]
        assert m.shape[1] % 8 == 0 and not m[:, width:].any() and np.array_equal(m[:, :width], np.asarray(other))
        assert np.array_equal(intersection_counts(other), np.asarray(other).astype(int) @ np.asarray(other).T)


def test_counts_refuse_bad_masks_and_bounds():
    with pytest.raises(TypeError, match="bool"):
        intersection_counts(np.ones((2, 8)))
    with pytest.raises(ValueError, match="same length"):
        intersection_counts([np.ones(3, bool), np.ones(4, bool)])
    with pytest.raises(ValueError, match="increasing"):
        segment_intersection_counts(np.ones((2, 8), bool), [0, 5, 3])
    with pytest.raises(ValueError, match="past"):
        segment_intersection_counts(np.ones((2, 8), bool), [0, 9])


@pytest.mark.parametrize("to", [np.asarray, torch.from_numpy])
def test_spectrum_matches_numpy_svd(to):
    X = np.random.default_rng(1).normal(size=(6, 500)) * np.array([10, 5, 2, 1, 0.1, 0.01])[:, None]
    expected = np.linalg.svd(X, compute_uv=False)
    assert np.allclose(subspace_spectrum(to(X)), expected, rtol=1e-6, atol=1e-9)
    assert np.all(np.diff(subspace_spectrum(to(X))) <= 0)


def test_energy_and_effective_dim_by_hand():
    s = np.array([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1, 0 of 14
    assert np.allclose(energy(s), [9 / 14, 4 / 14, 1 / 14, 0])
    assert effective_dim(s, 0.5) == 1 and effective_dim(s, 0.9) == 2 and effective_dim(s, 0.99) == 3
    assert effective_dim(s, 13 / 14) == 2  # exactly reached at d = 2
    assert effective_dim(np.zeros(3)) == 0
    with pytest.raises(ValueError):
        effective_dim(s, 0)


def test_basis_is_the_top_right_singular_vectors():
    X = np.random.default_rng(2).normal(size=(5, 40))
    V = subspace_basis(torch.from_numpy(X), 3).numpy()
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    assert np.allclose(V @ V.T, np.eye(3), atol=1e-8)
    assert np.allclose(np.abs(V @ vt[:3].T), np.eye(3), atol=1e-8)  # same directions up to sign


def test_basis_keeps_directions_far_below_the_largest_in_a_float32_trajectory():
    # 16 directions with singular values from 1 down to 1e-5, as a fine-tuning's checkpoints have them (in float32, a
    # Gram matrix rounds the directions below ~3e-4 of the largest away: the basis had 10-14 rows where 16 were asked)
    rng = np.random.default_rng(3)
    right, _ = np.linalg.qr(rng.normal(size=(200_000, 16)))
    left, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    sigma = np.logspace(0, -5, 16)
    X = torch.from_numpy((left * sigma) @ right.T).float()
    V = subspace_basis(X, 16).double().numpy()
    assert V.shape == (16, 200_000)
    assert np.allclose(V @ V.T, np.eye(16), atol=1e-4)
    assert np.allclose(np.abs(V @ right), np.eye(16), atol=1e-3)  # each the same direction as X's, up to sign


def test_layer_closeness_by_hand():
    theta0 = {"a": torch.tensor([3.0, 4.0]), "b": np.array([1.0, 0.0, 0.0]), "zero": torch.zeros(2)}
    theta = {"a": torch.tensor([3.0, 5.0]), "b": np.array([0.0, 1.0, 0.0]), "zero": torch.ones(2)}
    table = layer_closeness(theta0, theta)
    assert list(table.index) == ["a", "b", "zero"]
    assert table.loc["a", "l1"] == pytest.approx(0.5)
    assert table.loc["a", "rel_l2"] == pytest.approx(1 / 5)
    assert table.loc["a", "angular"] == pytest.approx(1 - (9 + 20) / (5 * np.sqrt(34)))
    assert table.loc["b", "l1"] == pytest.approx(2 / 3) and table.loc["b", "angular"] == pytest.approx(1.0)
    assert np.isnan(table.loc["zero", "rel_l2"]) and np.isnan(table.loc["zero", "angular"])
