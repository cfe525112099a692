"""Comparing two embedding spaces: id matching, kNN overlap, linear CKA, Procrustes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.spatial

from embscope.core.cka import linear_cka_null, linear_cka_scores
from embscope.core.compare import (
    CKA_PERMUTATIONS,
    CKA_SAMPLE,
    compare_spaces,
    knn_overlap,
    linear_cka,
    match_items,
    procrustes_align,
    restrict_neighbours,
)
from embscope.core.compare_runs import compare_datasets
from embscope.core.errors import DatasetNotFoundError, InvalidInputError, OperationCancelled
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.graph import build_knn_graph, find_graph, get_or_build_graph
from embscope.core.index import exact_knn
from embscope.core.ingest import from_arrays
from embscope.core.store import Store
from embscope.core.validation import prepare_for_metric


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # A busy 2-core machine runs small BLAS calls much faster on one thread (core.geometry).
    with limit_blas_threads():
        yield


def _blobs(n: int = 600, d: int = 24, *, seed: int = 0, centres: int = 8) -> np.ndarray:
    """Clustered continuous data (no distance ties), float32."""
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((centres, d))
    return (means[rng.integers(centres, size=n)] + rng.standard_normal((n, d))).astype(np.float32)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _kernel_cka(A: np.ndarray, B: np.ndarray) -> float:
    """CKA the direct way: HSIC of the n x n linear kernels with the centring matrix H."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    n = A.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ (A @ A.T) @ H, H @ (B @ B.T) @ H
    return float(np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L)))


def _unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC, term by term, on the n x n kernels (O(n^2) memory)."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return float(
        (
            np.trace(K @ L)
            + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K @ L @ one)
        )
        / (n * (n - 3))
    )


def _naive_debiased_cka(A: np.ndarray, B: np.ndarray) -> float:
    """Debiased CKA of the raw (uncentred) linear kernels, the formula as written."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    K, L = A @ A.T, B @ B.T
    return _unbiased_hsic(K, L) / np.sqrt(_unbiased_hsic(K, K) * _unbiased_hsic(L, L))


def _quantised_8bit(X: np.ndarray) -> np.ndarray:
    """X rounded to 256 evenly spaced levels per dimension (its min to its max), float32."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    step = (hi - lo) / 255.0
    return (lo + np.round((X - lo) / step) * step).astype(np.float32)


# -- match_items ----------------------------------------------------------------------------


def test_match_items_counts_and_rows():
    ids_a = np.array(["a", "b", "c", "d", "e"], dtype=object)
    ids_b = np.array(["x", "d", "b", "y", "a", "z", "w"], dtype=object)
    m = match_items(ids_a, ids_b)
    assert m.rows_a.dtype == np.int64 and m.rows_b.dtype == np.int64
    assert m.rows_a.tolist() == [0, 1, 3]  # a, b, d in A's order
    assert m.rows_b.tolist() == [4, 2, 1]
    assert (m.matched, m.only_a, m.only_b) == (3, 2, 4)
    assert list(ids_b[m.rows_b]) == list(ids_a[m.rows_a])


def test_match_items_compares_ids_as_text():
    m = match_items(np.arange(5), np.array(["4", "3", "2", "1", "0"], dtype=object))
    assert m.rows_b.tolist() == [4, 3, 2, 1, 0]
    assert (m.only_a, m.only_b) == (0, 0)


def test_match_items_refuses_too_few_bad_or_duplicate_ids():
    with pytest.raises(InvalidInputError, match=r"only 0 of the 3 ids of A.*'a', 'b', 'c'"):
        match_items(["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(InvalidInputError, match="at least 3"):
        match_items(["a", "b", "c"], ["a", "b", "z"])
    with pytest.raises(InvalidInputError, match="'b' more than once"):
        match_items(["a", "b", "b"], ["a", "b"])
    with pytest.raises(InvalidInputError, match="missing id at row 1"):
        match_items(np.array(["a", None, "c"], dtype=object), ["a", "c"])
    with pytest.raises(InvalidInputError, match="1-D"):
        match_items(np.zeros((2, 2)), ["a"])
    with pytest.raises(InvalidInputError, match="no items"):
        match_items([], ["a"])


# -- linear CKA -----------------------------------------------------------------------------


def test_cka_of_identical_inputs_is_one():
    X = _blobs(300, 16)
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_rotation_scaling_and_shift():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 12))
    B = np.tanh(A @ rng.standard_normal((12, 20)))  # another space, another dimension
    base = linear_cka(A, B)
    assert 0.2 < base < 0.95
    moved = 7.5 * B @ _rotation(20, 2) + 3.0  # rotation, isotropic scaling, shift
    assert linear_cka(A, moved) == pytest.approx(base, abs=1e-12)
    assert linear_cka(A @ _rotation(12, 3) * 0.01, B) == pytest.approx(base, abs=1e-12)
    assert linear_cka(B, A) == pytest.approx(base, abs=1e-12)  # symmetric
    # Not invariant to anisotropic scaling: CKA is no CCA.
    stretched = B * np.linspace(0.1, 10, 20)
    assert abs(linear_cka(A, stretched) - base) > 0.01


@pytest.mark.parametrize(("n", "da", "db"), [(60, 5, 9), (30, 50, 80)])
def test_cka_agrees_with_the_kernel_formula(n, da, db):
    # (60, 5, 9) runs the feature-space Grams, (30, 50, 80) the n x n kernels.
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, da)) + 2.0
    B = A @ rng.standard_normal((da, db)) + 0.5 * rng.standard_normal((n, db))
    assert linear_cka(A, B) == pytest.approx(_kernel_cka(A, B), rel=1e-10)
    C = rng.standard_normal((n, db))
    assert linear_cka(A, C) == pytest.approx(_kernel_cka(A, C), rel=1e-10)


def test_cka_of_independent_matrices_is_small_and_at_its_expected_floor():
    # For independent Gaussians E||A^T B||^2 = n da db and ||A^T A||^2 ~ da n^2 + da^2 n, so
    # CKA ~ sqrt(da db / ((n + da)(n + db))): 0.0310 here (measured 0.0311).
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((2000, 64)), rng.standard_normal((2000, 64))
    cka = linear_cka(A, B)
    assert cka < 0.05
    assert cka == pytest.approx(np.sqrt(64 * 64 / (2064 * 2064)), rel=0.15)


def test_cka_rejects_bad_input():
    rng = np.random.default_rng(0)
    X = rng.random((10, 3))
    with pytest.raises(InvalidInputError, match="same items"):
        linear_cka(X, X[:9])
    with pytest.raises(InvalidInputError, match=r"NaN or infinite values \(first in row 4\)"):
        linear_cka(X, np.where(np.arange(10)[:, None] == 4, np.nan, X))
    with pytest.raises(InvalidInputError, match="same point"):
        linear_cka(np.ones((10, 3)), X)
    with pytest.raises(InvalidInputError, match="2-D"):
        linear_cka(np.arange(5.0), np.arange(5.0))


def test_cka_leaves_its_inputs_as_they_were():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((30, 4)) + 2.0, rng.standard_normal((30, 6))
    A0, B0 = A.copy(), B.copy()
    linear_cka(A, B)
    linear_cka(A, B, debiased=True)
    linear_cka_scores(A, B, permutations=3)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(B, B0)


# (n, d_a, d_b): n x n kernels (n small), d x d Grams (n large), and the smallest n.
@pytest.mark.parametrize("n, da, db", [(12, 30, 5), (60, 6, 9), (4, 3, 2), (25, 25, 25)])
def test_debiased_cka_agrees_with_the_unbiased_hsic_formula(n, da, db):
    rng = np.random.default_rng(n + da)
    A = rng.standard_normal((n, da)) + 3.0  # shifted: the estimator ignores the centring
    B = 0.5 * A[:, :1] @ rng.standard_normal((1, db)) + rng.standard_normal((n, db)) - 1.0
    expected = _naive_debiased_cka(A, B)
    assert linear_cka(A, B, debiased=True) == pytest.approx(expected, abs=1e-9)
    assert linear_cka_scores(A, B, permutations=2).debiased == pytest.approx(expected, abs=1e-9)
    assert linear_cka(B, A, debiased=True) == pytest.approx(expected, abs=1e-9)  # symmetric
    assert linear_cka(A, A, debiased=True) == pytest.approx(1.0, abs=1e-9)
    # ... and biased CKA is what it was.
    assert linear_cka_scores(A, B, permutations=2).cka == pytest.approx(
        _kernel_cka(A, B), rel=1e-10
    )


@pytest.mark.parametrize("n", [200, 1000])
def test_unrelated_spaces_debiased_near_zero_and_cka_at_its_chance_level(n):
    rng = np.random.default_rng(n)
    A, B = rng.standard_normal((n, 768)), rng.standard_normal((n, 384))
    scores = linear_cka_scores(A, B, seed=0)
    # The biased floor sqrt(d_a d_b / ((n + d_a)(n + d_b))): 0.72 at n = 200, 0.35 at 1,000.
    assert scores.cka == pytest.approx(np.sqrt(768 * 384 / ((n + 768) * (n + 384))), rel=0.05)
    assert abs(scores.debiased) < 0.05 and scores.note == ""
    assert scores.permutations == CKA_PERMUTATIONS == 100
    # Unrelated: CKA is one draw of what shuffling gives, so at most a hair above the 95th
    # percentile of the shuffles (measured below it at both n).
    assert scores.cka < scores.null + 0.005 and scores.null - scores.cka < 0.02
    # Related (a noisy rotated copy of half of A): CKA far above the chance level, whose
    # shuffles spread over about +-0.002 here (0.87 vs 0.72 at n = 200, 0.71 vs 0.35 at 1,000).
    related = A[:, :384] @ _rotation(384, 1) + 0.5 * B
    both = linear_cka_scores(A, related, seed=0)
    assert both.cka > both.null + 0.1 and both.debiased > 0.5


def test_cka_null_is_the_95th_percentile_of_cka_over_the_seeded_shuffles():
    rng = np.random.default_rng(11)
    A = rng.standard_normal((150, 20))
    B = A[:, :8] + 2.0 * rng.standard_normal((150, 8))
    null = linear_cka_null(A, B, seed=3)
    perms = np.random.default_rng(3)  # the documented stream: rng.permutation(n) in turn
    values = [_kernel_cka(A, B[perms.permutation(150)]) for _ in range(100)]
    assert null == pytest.approx(np.quantile(values, 0.95), rel=1e-5)  # float32 products
    assert null == linear_cka_null(A, B, seed=3) == linear_cka_scores(A, B, seed=3).null
    assert null != linear_cka_null(A, B, seed=4)
    assert linear_cka_null(A, B, seed=3, permutations=10, quantile=0.5) == pytest.approx(
        np.median(values[:10]), rel=1e-5
    )
    assert linear_cka(A, B) > null  # related: above its chance level


def test_debiased_cka_where_it_is_undefined_is_nan_with_a_reason():
    rng = np.random.default_rng(2)
    X3, Y3 = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    with pytest.raises(InvalidInputError, match="at least 4 items, got 3"):
        linear_cka(X3, Y3, debiased=True)
    few = linear_cka_scores(X3, Y3, permutations=5)
    assert np.isnan(few.debiased) and "at least 4 items" in few.note
    assert 0.0 <= few.cka <= 1.0 and 0.0 <= few.null <= 1.0
    # All items but one at one point: the unbiased self-similarity is 0.
    outlier = np.zeros((8, 3))
    outlier[0] = 1.0
    Y = rng.standard_normal((8, 5))
    assert np.isnan(linear_cka(outlier, Y, debiased=True))
    lone = linear_cka_scores(Y, outlier, permutations=5)
    assert np.isnan(lone.debiased) and "self-similarity of B is not positive" in lone.note
    assert np.isfinite(lone.cka)
    with pytest.raises(InvalidInputError, match="permutations"):
        linear_cka_null(Y, Y, permutations=0)
    with pytest.raises(InvalidInputError, match="quantile"):
        linear_cka_null(Y, Y, quantile=1.5)


# -- kNN overlap ----------------------------------------------------------------------------


def test_knn_overlap_on_hand_made_lists():
    # 8 items, k = 3; rows 4..7 agree completely.
    tail = np.array([[5, 6, 7], [4, 6, 7], [4, 5, 7], [4, 5, 6]])
    a = np.vstack([[[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], tail])
    b = np.vstack([[[3, 2, 1], [2, 3, 4], [4, 5, 0], [4, 5, 6]], tail[:, ::-1]])
    ov = knn_overlap(a, b)
    assert ov.shared.tolist() == [3, 2, 1, 0, 3, 3, 3, 3]  # order within a row is irrelevant
    np.testing.assert_allclose(ov.jaccard[:4], [1.0, 2 / 4, 1 / 5, 0.0], rtol=1e-7)
    np.testing.assert_allclose(ov.overlap[:4], [1.0, 2 / 3, 1 / 3, 0.0], rtol=1e-7)
    assert ov.jaccard.dtype == np.float32 and ov.k == 3
    assert ov.mean_jaccard == pytest.approx((1 + 0.5 + 0.2 + 0 + 4) / 8)
    assert ov.mean_overlap == pytest.approx((3 + 2 + 1 + 0 + 12) / 24)
    # k takes the first columns of wider lists.
    assert knn_overlap(a, b, k=1).shared.tolist() == [0, 0, 0, 0, 0, 0, 0, 0]
    assert knn_overlap(a, b, k=2).shared.tolist() == [1, 1, 0, 0, 1, 1, 1, 1]


def test_knn_overlap_rejects_lists_that_do_not_fit():
    a = np.array([[1, 2], [0, 2], [0, 1]])
    with pytest.raises(InvalidInputError, match="same items"):
        knn_overlap(a, a[:2])
    with pytest.raises(InvalidInputError, match="row numbers 0..2"):
        knn_overlap(a, np.array([[1, 2], [0, 2], [0, 5]]))
    with pytest.raises(InvalidInputError, match="lists itself"):
        knn_overlap(a, np.array([[1, 2], [1, 2], [0, 1]]))
    with pytest.raises(InvalidInputError, match="same neighbour twice"):
        knn_overlap(np.array([[1, 1], [0, 2], [0, 1]]), a)
    with pytest.raises(InvalidInputError, match="whole row numbers"):
        knn_overlap(a.astype(float), a)


def test_restricted_graph_equals_search_within_the_subset():
    X = _blobs(500, 16, seed=3)
    graph = build_knn_graph(X, k=60, metric="cosine", method="exact")
    rows = np.random.default_rng(0).choice(500, size=100, replace=False)  # any order
    idx, dist, complete = restrict_neighbours(graph.indices, graph.distances, rows, k=10)
    P = prepare_for_metric(X[rows], "cosine")
    want_i, want_d = exact_knn(P, P, 10, metric="cosine", exclude=np.arange(100))
    # ~12 of each row's 60 stored neighbours are in the subset: most rows have 10.
    assert 0.5 < complete.mean() < 1.0
    np.testing.assert_array_equal(idx[complete], want_i[complete])
    np.testing.assert_allclose(dist[complete], want_d[complete], atol=1e-6)


# -- Procrustes -----------------------------------------------------------------------------


@pytest.mark.parametrize("p", [2, 3])
def test_procrustes_agrees_with_scipy(p):
    rng = np.random.default_rng(p)
    ref = rng.standard_normal((80, p)) * [3.0, 1.0, 0.5][:p]
    reflect = np.diag([1.0] * (p - 1) + [-1.0])
    Y = 0.2 * ref @ _rotation(p, 7) @ reflect - 4.0 + 0.01 * rng.standard_normal((80, p))
    result = procrustes_align(ref, Y)
    mtx1, mtx2, disparity = scipy.spatial.procrustes(ref, Y)
    assert result.disparity == pytest.approx(disparity, rel=1e-9)
    centre, size = ref.mean(axis=0), np.linalg.norm(ref - ref.mean(axis=0))
    np.testing.assert_allclose((result.aligned - centre) / size, mtx2, atol=1e-6)
    np.testing.assert_allclose(result.apply(Y), result.aligned, atol=1e-5)
    np.testing.assert_allclose(result.rotation @ result.rotation.T, np.eye(p), atol=1e-12)
    assert result.scale == pytest.approx(5.0, rel=0.05)
    assert 0 < result.disparity < 0.01


def test_procrustes_of_a_mirrored_layout_with_and_without_reflection():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 2)) * [2.0, 1.0]
    mirrored = ref * [-1.0, 1.0] * 3.0 + 1.0
    free = procrustes_align(ref, mirrored)
    assert free.disparity == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(free.aligned, ref, atol=1e-5)
    assert np.linalg.det(free.rotation) == pytest.approx(-1.0)
    proper = procrustes_align(ref, mirrored, allow_reflection=False)
    assert np.linalg.det(proper.rotation) == pytest.approx(1.0)
    assert proper.disparity > 0.1


def test_procrustes_rejects_bad_input():
    ref = np.random.default_rng(0).random((10, 2))
    with pytest.raises(InvalidInputError, match="same items and dimension"):
        procrustes_align(ref, ref[:, :1])
    with pytest.raises(InvalidInputError, match="NaN"):
        procrustes_align(ref, np.where(ref > 0.9, np.nan, ref))
    with pytest.raises(InvalidInputError, match="same place"):
        procrustes_align(ref, np.ones((10, 2)))


# -- compare_spaces -------------------------------------------------------------------------


def test_a_space_compared_with_itself():
    X = _blobs()
    result = compare_spaces(X, X, k=10)
    assert result.mean_overlap == 1.0 and result.mean_jaccard == 1.0
    assert (result.jaccard == 1.0).all() and result.jaccard.dtype == np.float32
    assert result.cka == pytest.approx(1.0, abs=1e-9)
    assert result.matched == 600 and (result.only_a, result.only_b) == (0, 0)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_a_rotated_scaled_copy_has_the_same_neighbours(metric):
    X = _blobs(seed=1)
    Y = (2.5 * X @ _rotation(X.shape[1], 4)).astype(np.float32)
    result = compare_spaces(X, Y, k=10, metric=metric)
    assert result.mean_overlap == 1.0
    assert result.cka == pytest.approx(1.0, abs=1e-6)


def test_a_different_dimension_with_the_same_geometry():
    X = _blobs(seed=2)
    # Padding with zero columns and rotating in 40-D keeps every distance.
    Y = (np.hstack([X, np.zeros((600, 16), np.float32)]) @ _rotation(40, 5)).astype(np.float32)
    result = compare_spaces(X, Y, k=15, metric="l2")
    assert (result.dim_a, result.dim_b) == (24, 40)
    assert result.mean_overlap == 1.0 and result.cka == pytest.approx(1.0, abs=1e-6)


def test_overlap_and_cka_fall_as_noise_grows():
    X = _blobs(seed=3)
    rng = np.random.default_rng(9)
    noise = rng.standard_normal(X.shape).astype(np.float32)
    results = [compare_spaces(X, X + s * noise, k=10) for s in (0.1, 0.3, 1.0)]
    overlaps = [r.mean_overlap for r in results]
    jaccards = [r.mean_jaccard for r in results]
    ckas = [r.cka for r in results]
    assert 1.0 > overlaps[0] > overlaps[1] > overlaps[2] > results[0].chance_overlap
    assert 1.0 > jaccards[0] > jaccards[1] > jaccards[2] > 0.0
    assert 1.0 > ckas[0] > ckas[1] > ckas[2]
    for r in results:  # Jaccard = s / (2k - s) <= s / k
        assert r.mean_jaccard < r.mean_overlap
        np.testing.assert_allclose(r.jaccard, r.shared / (20.0 - r.shared), rtol=1e-6)


def test_independent_spaces_share_about_chance_neighbours():
    A = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((1000, 48)).astype(np.float32)
    result = compare_spaces(A, B, k=10, metric="l2")
    # Two unrelated 10-NN lists share k / (n - 1) = 1 % on average.
    assert result.chance_overlap == pytest.approx(10 / 999)
    assert result.mean_overlap == pytest.approx(result.chance_overlap, abs=0.005)
    assert result.cka < 0.08  # the floor sqrt(32 * 48 / (1032 * 1048)) = 0.038


def test_moved_most_finds_the_items_that_changed():
    X = _blobs(seed=4)
    Y = X.copy()
    moved = np.array([5, 77, 300, 301, 599])
    rng = np.random.default_rng(2)
    Y[moved] = X[rng.integers(600, size=moved.size)] + 0.01  # jump to another item's place
    result = compare_spaces(X, Y, k=10, metric="l2")
    assert set(result.moved_most(5).tolist()) == set(moved.tolist())
    assert result.moved_most(0).size == 0
    assert result.jaccard[result.moved_most(600)].tolist() == sorted(result.jaccard.tolist())
    with pytest.raises(InvalidInputError, match="n_top"):
        result.moved_most(-1)


def test_summary_json_and_histogram():
    X = _blobs(seed=5)
    Y = X + np.random.default_rng(3).standard_normal(X.shape).astype(np.float32) * 0.5
    result = compare_spaces(X, Y, k=12)
    doc = json.loads(json.dumps(result.to_json()))
    for key in ("matched", "knn_overlap@12", "cka", "jaccard@12", "only_a", "only_b"):
        assert key in doc
    assert doc["cka_debiased"] == result.cka_debiased and doc["cka_null"] == result.cka_null
    assert doc["cka"] > doc["cka_null"] and doc["cka_note"] == ""
    assert 0.0 < doc["cka_debiased"] <= 1.0
    assert doc["matched"] == 600 and doc["knn_overlap@12"] == pytest.approx(result.mean_overlap)
    assert doc["jaccard@12"] == pytest.approx(result.mean_jaccard)
    hist = result.shared_histogram()
    assert hist.shape == (13,) and hist.sum() == 600
    assert (hist * np.arange(13)).sum() / (600 * 12) == pytest.approx(result.mean_overlap)
    q = doc["overlap_quantiles"]
    assert q["min"] <= q["p25"] <= q["median"] <= q["p75"] <= q["max"]
    assert q["median"] == pytest.approx(np.median(result.shared) / 12)
    assert doc["graph_a"]["method"] == "exact" and doc["graph_a"]["recall"] == 1.0


def test_cka_runs_on_a_seeded_sample_of_rows():
    X = _blobs(seed=6)
    Y = X + np.random.default_rng(4).standard_normal(X.shape).astype(np.float32)
    full = compare_spaces(X, Y, k=5, cka_sample=None)
    sampled = compare_spaces(X, Y, k=5, cka_sample=200, seed=1)
    assert full.cka_rows == 600 and sampled.cka_rows == 200
    assert sampled.cka == compare_spaces(X, Y, k=5, cka_sample=200, seed=1).cka
    assert sampled.cka != full.cka and sampled.cka == pytest.approx(full.cka, abs=0.05)
    assert CKA_SAMPLE == 10_000
    # The debiased value and the chance level are of the same rows, seeded by the same seed.
    rows = np.sort(np.random.default_rng(1).choice(600, size=200, replace=False))
    P, Q = prepare_for_metric(X[rows], "cosine"), prepare_for_metric(Y[rows], "cosine")
    assert sampled.cka_debiased == pytest.approx(linear_cka(P, Q, debiased=True), abs=1e-12)
    assert sampled.cka_null == linear_cka_null(P, Q, seed=1)


def test_a_comparison_of_three_items_has_no_debiased_cka():
    X = _blobs(3, 4, seed=1)
    result = compare_spaces(X, X[::-1].copy(), k=1, metric="l2")
    assert np.isnan(result.cka_debiased) and "at least 4" in result.cka_note
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert doc["cka_debiased"] is None and "at least 4" in doc["cka_note"]
    assert 0.0 <= doc["cka_null"] <= 1.0


def test_given_graphs_are_used_and_checked():
    X = _blobs(seed=7)
    Y = X + 0.3 * np.random.default_rng(5).standard_normal(X.shape).astype(np.float32)
    ga = build_knn_graph(X, k=20, metric="l2", method="exact")
    gb = build_knn_graph(Y, k=20, metric="l2", method="exact")
    given = compare_spaces(X, Y, k=10, metric="l2", graph_a=ga, graph_b=gb.indices)
    searched = compare_spaces(X, Y, k=10, metric="l2")
    np.testing.assert_array_equal(given.jaccard, searched.jaccard)
    assert given.graph_b["method"] == "given"
    with pytest.raises(InvalidInputError, match="metric 'l2'"):
        compare_spaces(X, Y, k=10, metric="cosine", graph_a=ga)
    with pytest.raises(InvalidInputError, match=r"\(600, >= 30\)"):
        compare_spaces(X, Y, k=30, metric="l2", graph_a=ga)


def test_compare_spaces_rejects_bad_input():
    X = _blobs(50)
    with pytest.raises(InvalidInputError, match="A has 50 rows and B has 49"):
        compare_spaces(X, X[:49])
    with pytest.raises(InvalidInputError, match="NaN"):
        bad = X.copy()
        bad[3, 2] = np.nan
        compare_spaces(X, bad)
    with pytest.raises(InvalidInputError, match="k = 50"):
        compare_spaces(X, X, k=50)
    with pytest.raises(InvalidInputError, match="metric"):
        compare_spaces(X, X, metric="hamming")
    with pytest.raises(InvalidInputError, match="cka_sample"):
        compare_spaces(X, X, cka_sample=1)
    with pytest.raises(InvalidInputError, match="at least 3"):
        compare_spaces(X[:2], X[:2], k=1)


def test_progress_is_reported_and_can_cancel():
    X = _blobs(200)
    seen: list[float] = []
    compare_spaces(X, X, k=5, progress=lambda f, m: seen.append(f) and False)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)
    with pytest.raises(OperationCancelled):
        compare_spaces(X, X, k=5, progress=lambda f, m: f >= 0.8)


# -- compare_datasets -----------------------------------------------------------------------


def _add(store: Store, X: np.ndarray, ids: list[str], name: str) -> int:
    parsed = from_arrays(X, metadata=pd.DataFrame({"item": ids}), id_column="item")
    return store.add_dataset(parsed, name=name).id


@pytest.fixture
def mem_store():
    store = Store(":memory:")
    yield store
    store.close()


def test_datasets_matched_by_id_and_row_order_does_not_matter(mem_store):
    rng = np.random.default_rng(0)
    base = _blobs(500, 16, seed=8)
    other = base + 0.3 * rng.standard_normal(base.shape).astype(np.float32)
    # A holds items 0..399, B items 100..499 (300 shared); B is stored twice, once shuffled.
    a = _add(mem_store, base[:400], [f"item{i}" for i in range(400)], "A")
    b = _add(mem_store, other[100:], [f"item{i}" for i in range(100, 500)], "B")
    perm = rng.permutation(400)
    b_shuffled = _add(mem_store, other[100:][perm], [f"item{100 + i}" for i in perm], "B shuffled")

    result = compare_datasets(mem_store, a, b, k=10)
    shuffled = compare_datasets(mem_store, "A", "B shuffled", k=10)
    assert (result.matched, result.only_a, result.only_b) == (300, 100, 100)
    np.testing.assert_array_equal(result.rows_a, np.arange(100, 400))
    np.testing.assert_array_equal(result.rows_b, np.arange(300))
    assert mem_store.load_ids(b_shuffled)[shuffled.rows_b].tolist() == [
        f"item{i}" for i in range(100, 400)
    ]
    np.testing.assert_array_equal(shuffled.rows_a, result.rows_a)
    np.testing.assert_array_equal(shuffled.jaccard, result.jaccard)
    assert shuffled.cka == pytest.approx(result.cka, abs=1e-12)

    # The same numbers as comparing the aligned matrices directly, neighbours among the 300.
    direct = compare_spaces(base[100:400], other[100:400], k=10)
    np.testing.assert_array_equal(result.jaccard, direct.jaccard)
    assert result.cka == pytest.approx(direct.cka, abs=1e-12)
    assert 0.0 < result.mean_overlap < 1.0
    assert result.graph_a["source"] == "computed"  # nothing stored, subset searched


def test_a_stored_dataset_compared_with_itself_reuses_its_graph(mem_store):
    X = _blobs(300, 16, seed=9)
    a = _add(mem_store, X, [str(i) for i in range(300)], "A")
    assert find_graph(mem_store, a, metric="cosine") is None
    result = compare_datasets(mem_store, a, a, k=10)
    assert result.mean_overlap == 1.0 and result.cka == pytest.approx(1.0, abs=1e-9)
    assert result.graph_a["source"] == "stored graph"
    assert find_graph(mem_store, a, metric="cosine", k=150) is not None  # stored for all
    doc = result.to_json()
    assert (doc["matched"], doc["only_a"], doc["only_b"]) == (300, 0, 0)


def test_stored_graphs_restricted_to_the_matched_items(mem_store):
    rng = np.random.default_rng(1)
    base = _blobs(400, 16, seed=10)
    other = (base @ _rotation(16, 1) + 0.4 * rng.standard_normal(base.shape)).astype(np.float32)
    keep_b = np.sort(rng.choice(400, size=40, replace=False))  # B holds 40 of A's items
    a = _add(mem_store, base, [str(i) for i in range(400)], "A")
    b = _add(mem_store, other[keep_b], [str(i) for i in keep_b], "B")
    get_or_build_graph(mem_store, a, k=10, metric="cosine")  # A's stored graph: 150 wide
    result = compare_datasets(mem_store, a, b, k=10)
    assert result.graph_a["source"] == "stored graph restricted to the matched items"
    # 40 of 400 matched: ~15 matched items among 150 stored neighbours, a few rows fall short.
    assert 0 < result.graph_a["recomputed_rows"] < 20
    assert result.graph_b["source"] == "stored graph"  # all of B is matched
    direct = compare_spaces(base[keep_b], other[keep_b], k=10)
    np.testing.assert_array_equal(result.jaccard, direct.jaccard)
    assert (result.only_a, result.only_b) == (360, 0)


def test_compare_datasets_refuses_what_it_cannot_compare(mem_store):
    X = _blobs(40, 8, seed=11)
    a = _add(mem_store, X, [f"a{i}" for i in range(40)], "A")
    b = _add(mem_store, X, [f"b{i}" for i in range(40)], "B")
    c = _add(mem_store, X[:8], [f"a{i}" for i in range(8)], "C")
    with pytest.raises(InvalidInputError, match="only 0 of the 40 ids"):
        compare_datasets(mem_store, a, b)
    with pytest.raises(InvalidInputError, match="only 8 ids are shared"):
        compare_datasets(mem_store, a, c, k=10)
    with pytest.raises(DatasetNotFoundError):
        compare_datasets(mem_store, a, "nope")
    assert compare_datasets(mem_store, a, c, k=3).matched == 8


def test_stored_comparison_round_trips_and_is_reused(monkeypatch):
    import embscope.core.compare_runs as compare_module
    from embscope.core.ingest import from_arrays
    from embscope.core.store import Store

    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 16)).astype(np.float32)
    ids = [f"i{i}" for i in range(200)]
    with Store(":memory:") as store:
        a = store.add_dataset(
            from_arrays(X, metadata=pd.DataFrame({"id": ids}), id_column="id"), name="a"
        )
        noisy = X + 0.3 * rng.standard_normal(X.shape).astype(np.float32)
        b = store.add_dataset(
            from_arrays(
                noisy[::-1].copy(), metadata=pd.DataFrame({"id": ids[::-1]}), id_column="id"
            ),
            name="b",
        )
        calls = []
        real = compare_module.compare_datasets
        monkeypatch.setattr(
            compare_module, "compare_datasets", lambda *a, **k: calls.append(1) or real(*a, **k)
        )
        first = compare_module.get_or_compare_datasets(store, a.id, b.id, k=10)
        again = compare_module.get_or_compare_datasets(store, a.id, b.id, k=10)
        assert calls == [1]
        direct = real(store, a.id, b.id, k=10)
        assert again.to_json() == {**direct.to_json(), "seconds": again.seconds}
        np.testing.assert_array_equal(again.jaccard, direct.jaccard)
        np.testing.assert_array_equal(again.rows_b, direct.rows_b)
        assert first.to_json() == again.to_json()
        assert 0 < again.mean_overlap < 1


def test_cka_against_random_vectors_and_an_8_bit_copy_over_the_same_ids(mem_store):
    # Issue 17's "done": a 384-d dataset of 1,000 items against 768-d random vectors over the
    # same ids reads debiased CKA 0 +- 0.05 (biased CKA reads about 0.35 there), and against
    # an 8-bit copy of itself >= 0.98.
    rng = np.random.default_rng(17)
    X = rng.standard_normal((1000, 384)).astype(np.float32)
    ids = [f"doc{i}" for i in range(1000)]
    a = _add(mem_store, X, ids, "model")
    noise = _add(mem_store, rng.standard_normal((1000, 768)).astype(np.float32), ids, "random")
    copy = _add(mem_store, _quantised_8bit(X), ids, "8-bit")
    unrelated = compare_datasets(mem_store, a, noise, k=10).to_json()
    assert abs(unrelated["cka_debiased"]) <= 0.05
    assert unrelated["cka"] > 0.2 and unrelated["cka"] < unrelated["cka_null"] + 0.005
    same = compare_datasets(mem_store, a, copy, k=10).to_json()
    assert same["cka_debiased"] >= 0.98 and same["cka"] >= 0.98
    assert same["cka"] > same["cka_null"] + 0.5
