"""Hubness (k-occurrence skewness) against docs/science.md §6.5."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.hubness import hubness, k_occurrence, skewness
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.graph import build_knn_graph


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Test data are made with BLAS too; on a busy 2-core machine two OpenBLAS threads can be
    # 10x slower than one (core.geometry.intrinsic.BLAS_THREADS).
    with limit_blas_threads():
        yield


@pytest.fixture(scope="module")
def gaussian_hubness():
    """Hubness of iid N(0, I_d), N = 5,000, k = 10, exact graph, for d = 3 and d = 100."""
    out = {}
    for d in (3, 100):
        X = np.random.default_rng(d).standard_normal((5000, d)).astype(np.float32)
        out[d] = hubness(build_knn_graph(X, k=10, metric="l2", method="exact"))
    return out


def test_mean_k_occurrence_is_exactly_k(gaussian_hubness):
    for result in gaussian_hubness.values():
        assert result.k == 10
        assert result.k_occurrence.dtype == np.int64 and result.k_occurrence.shape == (5000,)
        assert result.k_occurrence.sum() == 5000 * 10  # so the mean is exactly k
        assert result.k_occurrence.mean() == 10.0


def test_skewness_grows_with_the_dimension(gaussian_hubness):
    # §6.5 [C]: d = 3 -> -0.278, d = 100 -> 5.502. Measured here -0.20 and 7.43. The sample
    # skewness of this heavy tail varies a lot between draws (d = 100, seeds 1-4: 5.6, 7.6,
    # 12.5, 7.3, identical to sklearn's kneighbors), so only the sign and the gap are tested.
    low, high = gaussian_hubness[3].skewness, gaussian_hubness[100].skewness
    assert low == pytest.approx(-0.28, abs=0.3)
    assert high > 4.0
    assert gaussian_hubness[100].n_antihubs > gaussian_hubness[3].n_antihubs


def test_skewness_is_scipys_biased_estimator(gaussian_hubness):
    for result in gaussian_hubness.values():
        counts = result.k_occurrence
        assert result.skewness == pytest.approx(scipy.stats.skew(counts, bias=True), rel=1e-10)
    assert np.isnan(skewness(np.full(10, 3)))


def test_hubs_and_antihubs_on_a_hand_made_graph():
    # 6 points, k = 2: point 0 is everybody's neighbour; 2, 3 and 5 are nobody's.
    indices = np.array([[1, 4], [0, 4], [0, 1], [0, 1], [0, 1], [0, 4]])
    result = hubness(indices, top=3)
    np.testing.assert_array_equal(result.k_occurrence, [5, 4, 0, 0, 3, 0])
    np.testing.assert_array_equal(result.hubs, [0, 1, 4])
    assert result.n_antihubs == 3
    np.testing.assert_array_equal(result.antihubs, [2, 3, 5])
    np.testing.assert_array_equal(hubness(indices, top=2).antihubs, [2, 3])
    np.testing.assert_array_equal(k_occurrence(indices), result.k_occurrence)


def test_hubs_ties_are_broken_by_row():
    indices = np.array([[1], [2], [3], [0]])  # every N_k is 1
    result = hubness(indices)
    np.testing.assert_array_equal(result.hubs, [0, 1, 2, 3])
    assert np.isnan(result.skewness) and result.n_antihubs == 0


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (np.array([[1.0], [0.0]]), "whole numbers"),
        (np.array([1, 0]), "2-D"),
        (np.array([[1], [5]]), "row numbers"),
        (np.array([[0], [0]]), "itself"),
    ],
)
def test_bad_indices_are_refused(indices, match):
    with pytest.raises(InvalidInputError, match=match):
        hubness(indices)


def test_top_must_be_a_count():
    with pytest.raises(InvalidInputError, match="top"):
        hubness(np.array([[1], [0]]), top=-1)
