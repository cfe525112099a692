"""The UMAP kernels against umap-learn's own functions: fuzzy graph, a/b fit, spectral start,
and the optimiser's schedule on a tiny graph.

umap-learn's functions are imported from the package itself (the reference, not a copy).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from embscope.core.graph import build_knn_graph
from embscope.core.projections import umap_kernel as K
from embscope.core.projections.umap_layout import spectral_start
from embscope.core.threads import ranges, run_ranges


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 12)) * 3
    X = (np.repeat(centres, 150, axis=0) + rng.standard_normal((900, 12))).astype(np.float32)
    return X, build_knn_graph(X, k=30, metric="cosine", method="exact")


@pytest.mark.parametrize("threads", [1, 3])
def test_fuzzy_graph_equals_umap_learns(data, threads):
    from umap.umap_ import fuzzy_simplicial_set

    X, graph = data
    idx, dist = graph.with_self(15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, sigmas, rhos = fuzzy_simplicial_set(
            X, 15, np.random.RandomState(0), "cosine", knn_indices=idx,
            knn_dists=dist.astype(np.float32), return_dists=False,
        )[:3]  # fmt: skip
    ref = ref.tocoo()
    ref.sum_duplicates()
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    head, tail, weight = K.fuzzy_graph(idx, dist, n_neighbors=15, pool=pool, threads=threads)
    np.testing.assert_array_equal(head, ref.row)
    np.testing.assert_array_equal(tail, ref.col)
    np.testing.assert_allclose(weight, ref.data, atol=1e-5)
    ours_sigmas, ours_rhos = K.smooth_knn_dist(dist, 15.0, pool=pool, threads=threads)
    np.testing.assert_allclose(ours_sigmas, sigmas, rtol=1e-5)
    np.testing.assert_allclose(ours_rhos, rhos, rtol=1e-6)
    # every edge joins a point to one of its 14 nearest others, or is the reverse of one
    ours = {(int(a), int(b)) for a, b in zip(head, tail, strict=True)}
    given = {(i, int(j)) for i in range(graph.n) for j in idx[i, 1:]}
    assert ours <= given | {(b, a) for a, b in given}


@pytest.mark.parametrize("min_dist", [0.0, 0.1, 0.5, 1.0])
def test_ab_params_equal_umap_learns(min_dist):
    from umap.umap_ import find_ab_params

    a, b = K.find_ab_params(1.0, min_dist)
    ref_a, ref_b = find_ab_params(1.0, min_dist)
    assert a == pytest.approx(ref_a, rel=1e-6) and b == pytest.approx(ref_b, rel=1e-6)


def test_spectral_start_equals_umap_learns(data):
    from umap.spectral import spectral_layout

    X, graph = data
    # a connected graph: the same eigenvectors as umap-learn's spectral_layout, up to sign
    rng = np.random.default_rng(1)
    Xc = rng.standard_normal((600, 8)).astype(np.float32)
    g = build_knn_graph(Xc, k=15, metric="l2", method="exact")
    idx, dist = g.with_self(15)
    head, tail, weight = K.fuzzy_graph(idx, dist, n_neighbors=15)
    matrix = sp.csr_matrix((weight.astype(np.float64), (head, tail)), shape=(600, 600))
    ref = spectral_layout(Xc, matrix, 2, np.random.RandomState(0))
    ours = spectral_start(600, head, tail, weight, dims=2, data=Xc, rng=np.random.RandomState(0))
    for axis in range(2):
        sign = np.sign(ours[:, axis] @ ref[:, axis])
        np.testing.assert_allclose(ours[:, axis] * sign, ref[:, axis], atol=1e-6)
    # six clusters far apart: umap-learn's component layout, placed by the data
    idx, dist = graph.with_self(15)
    head, tail, weight = K.fuzzy_graph(idx, dist, n_neighbors=15)
    start = spectral_start(graph.n, head, tail, weight, dims=2, data=X,
                           rng=np.random.RandomState(0))  # fmt: skip
    assert start.shape == (graph.n, 2) and np.isfinite(start).all()


def test_prune_edges_as_umap_learn():
    weight = np.array([1.0, 0.5, 0.01, 0.004, 0.0049], np.float32)
    ends = np.arange(5, dtype=np.int32)
    _, _, kept = K.prune_edges(ends, ends, weight, 200)  # below 1 / 200 goes
    np.testing.assert_array_equal(kept, weight[:3])
    _, _, kept = K.prune_edges(ends, ends, weight, 5)  # few epochs: umap-learn's 1 / 200 too
    np.testing.assert_array_equal(kept, weight[:3])
    _, _, kept = K.prune_edges(ends, ends, weight, 1000)
    np.testing.assert_array_equal(kept, weight)


def test_optimiser_samples_edges_by_weight():
    """Two points joined by an edge of weight 1 come together; the schedule samples an edge of
    weight w every 1 / w epochs (umap-learn's epochs_per_sample), so a weak edge pulls less."""
    a, b = K.find_ab_params(1.0, 0.1)
    start = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 9.0], [8.0, 9.0]], np.float32)
    head = np.array([0, 1, 2, 3], np.int32)
    tail = np.array([1, 0, 3, 2], np.int32)
    weight = np.array([1.0, 1.0, 0.05, 0.05], np.float32)
    Y = start.copy()
    K.optimise(Y, head, tail, weight, n_epochs=50, a=a, b=b, negative_sample_rate=0.0001)
    strong = np.linalg.norm(Y[0] - Y[1])
    weak = np.linalg.norm(Y[2] - Y[3])
    assert strong < 2.0 < weak < 8.0
    # the same seed on one thread: the same layout; another seed: another
    runs = []
    for seed in (0, 0, 1):
        Y = start.copy()
        K.optimise(Y, head, tail, weight, n_epochs=50, a=a, b=b, seed=seed)
        runs.append(Y)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    seen = []
    K.optimise(start.copy(), head, tail, weight, n_epochs=7, a=a, b=b, after_epoch=seen.append)
    assert seen == list(range(1, 8))


def test_thread_ranges():
    assert ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert ranges(2, 4) == [(0, 1), (1, 2)] and ranges(0, 2) == [] and ranges(5, 0) == [(0, 5)]
    seen: list[tuple[int, int]] = []
    run_ranges(None, lambda lo, hi: seen.append((lo, hi)), 9, 3)
    assert seen == [(0, 9)]
    with ThreadPoolExecutor(3) as pool:
        run_ranges(pool, lambda lo, hi: seen.append((lo, hi)), 9, 3)
        assert sorted(seen[1:]) == [(0, 3), (3, 6), (6, 9)]

        def fail(lo: int, hi: int) -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            run_ranges(pool, fail, 9, 3)
