"""The shared kNN graph: agreement with sklearn, self and duplicates, recall, and build-once reuse."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

import embscope.core.graph as graph_mod
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import (
    GRAPH_K,
    KnnGraph,
    build_knn_graph,
    find_graph,
    get_or_build_graph,
    measure_recall,
    recall_at_k,
)
from tests.helpers import make_parsed


def _blobs(n=1500, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, d)) * 4
    return (centres[rng.integers(0, 8, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize(("metric", "sk"), [("l2", "euclidean"), ("cosine", "cosine")])
def test_exact_graph_equals_sklearn_without_self(metric, sk):
    X = _blobs()
    g = build_knn_graph(X, k=12, metric=metric, method="exact")
    # kneighbors() with no argument is sklearn's self-excluded graph (docs/science.md 0.2).
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=12, metric=sk, algorithm="brute").fit(X).kneighbors()
    )
    # Same neighbours in the same order, except where two distances tie to float precision.
    differ = g.indices != ref_i
    assert differ.mean() < 1e-3
    np.testing.assert_allclose(g.distances, ref_d, atol=2e-5, rtol=1e-4)
    assert g.recall == 1.0 and g.method == "exact" and g.metric == metric
    assert g.distances.dtype == np.float32 and g.indices.shape == (len(X), 12)
    assert np.all(np.diff(g.distances, axis=1) >= 0)


def test_l2_distances_are_not_squared():
    X = np.array([[0, 0], [3, 4], [6, 8]], np.float32)
    g = build_knn_graph(X, k=1, metric="l2", method="exact")
    np.testing.assert_allclose(g.distances[:, 0], [5, 5, 5])


def test_hnsw_graph_reaches_recall_and_reports_it_honestly():
    X = _blobs(n=4000, d=32, seed=1)
    g = build_knn_graph(X, k=20, metric="cosine", method="hnsw", seed=3)
    exact = build_knn_graph(X, k=20, metric="cosine", method="exact")
    true_recall = recall_at_k(g.indices, exact.indices)
    assert true_recall >= 0.98
    assert abs(g.recall - true_recall) < 0.02, (g.recall, true_recall)
    assert g.params["recall_sample"] == 500 and g.method == "hnsw"
    assert not (g.indices == np.arange(len(X))[:, None]).any()


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_self_is_excluded_by_row_and_duplicates_stay_neighbours(method):
    X = _blobs(n=600)
    X[100] = X[7]
    X[101] = X[7]
    g = build_knn_graph(X, k=5, metric="l2", method=method)
    assert not (g.indices == np.arange(len(X))[:, None]).any(), "no point is its own neighbour"
    for row, twins in ((7, {100, 101}), (100, {7, 101}), (101, {7, 100})):
        assert set(g.indices[row, :2]) == twins
        np.testing.assert_allclose(g.distances[row, :2], 0.0, atol=1e-4)


def test_head_and_with_self_follow_umap_convention():
    X = _blobs(n=300)
    g = build_knn_graph(X, k=30, metric="l2")
    h = g.head(10)
    np.testing.assert_array_equal(h.indices, g.indices[:, :10])
    assert h.k == 10 and h.metric == "l2"
    idx, dist = g.with_self(15)
    assert idx.shape == dist.shape == (300, 15)
    np.testing.assert_array_equal(idx[:, 0], np.arange(300))
    assert (dist[:, 0] == 0).all()
    np.testing.assert_array_equal(idx[:, 1:], g.indices[:, :14])
    with pytest.raises(InvalidInputError):
        g.with_self(32)
    with pytest.raises(InvalidInputError):
        g.head(31)


def test_recall_measures_what_it_claims():
    X = _blobs(n=500)
    exact = build_knn_graph(X, k=10, metric="l2")
    damaged = exact.indices.copy()
    damaged[:, 5:] = (damaged[:, 5:] + 1) % 500  # half of each row wrong (mostly)
    r_full, m = measure_recall(X, exact.indices, metric="l2", sample=500)
    assert r_full == 1.0 and m == 500
    r_bad = recall_at_k(damaged, exact.indices)
    assert 0.5 <= r_bad < 0.6
    assert measure_recall(X, damaged, metric="l2", sample=500)[0] == pytest.approx(r_bad)


def test_bad_input_is_refused():
    X = _blobs(n=50)
    with pytest.raises(InvalidInputError, match="more neighbours"):
        build_knn_graph(X, k=50)
    with pytest.raises(InvalidInputError, match="metric"):
        build_knn_graph(X, k=5, metric="hamming")
    with pytest.raises(InvalidInputError, match="method"):
        build_knn_graph(X, k=5, method="annoy")
    with pytest.raises(InvalidInputError, match="at least 2"):
        build_knn_graph(X[:1], k=1)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        build_knn_graph(bad, k=5)
    with pytest.raises(InvalidInputError):
        KnnGraph(np.zeros((3, 2), int), np.zeros((3, 3), np.float32), "l2", "exact", 1.0)


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_progress_can_cancel(method):
    X = _blobs(n=3000)
    with pytest.raises(OperationCancelled):
        build_knn_graph(X, k=5, method=method, progress=lambda f, m: f > 0.3)


# -- one graph, many consumers ----------------------------------------------------------------


@pytest.fixture
def counted_builds(monkeypatch):
    calls: list[dict] = []
    real = graph_mod.build_knn_graph

    def counting(X, **kwargs):
        calls.append(kwargs)
        return real(X, **kwargs)

    monkeypatch.setattr(graph_mod, "build_knn_graph", counting)
    return calls


def test_graph_is_built_once_for_every_consumer(store, counted_builds):
    X = _blobs(n=800)
    info = store.add_dataset(make_parsed(X), name="blobs")
    # What each consumer asks for: neighbours/LID (k=20), UMAP (15), hubness (10),
    # TwoNN (2), LargeVis (150).
    for k in (20, 15, 10, 2, GRAPH_K):
        g = get_or_build_graph(store, info.id, k=k, metric="cosine")
        assert g.k == k and g.metric == "cosine"
    assert len(counted_builds) == 1
    assert counted_builds[0]["k"] == GRAPH_K
    # Another metric is another graph; asking again for it does not rebuild either.
    get_or_build_graph(store, info.id, k=10, metric="l2")
    get_or_build_graph(store, info.id, k=30, metric="l2")
    assert len(counted_builds) == 2


def test_stored_graph_survives_reopen_and_is_identical(db_path, counted_builds):
    from embscope.core.store import Store

    X = _blobs(n=400)
    with Store(db_path) as s:
        info = s.add_dataset(make_parsed(X), name="blobs")
        first = get_or_build_graph(s, info.id, k=10, metric="l2")
    with Store(db_path) as s:
        again = get_or_build_graph(s, info.id, k=10, metric="l2")
        stored = find_graph(s, info.id, metric="l2")
    assert len(counted_builds) == 1
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.distances, again.distances)
    assert stored is not None and stored.k == GRAPH_K


def test_a_changed_dataset_gets_a_new_graph(store, counted_builds):
    a = store.add_dataset(make_parsed(_blobs(n=300, seed=1)), name="a")
    b = store.add_dataset(make_parsed(_blobs(n=300, seed=2)), name="b")
    ga = get_or_build_graph(store, a.id, k=5, metric="l2")
    gb = get_or_build_graph(store, b.id, k=5, metric="l2")
    assert len(counted_builds) == 2
    assert not np.array_equal(ga.indices, gb.indices)
    store.delete_dataset(a.id)
    assert find_graph(store, b.id, metric="l2") is not None


# -- the cell-pruned search -----------------------------------------------------------------


def _clustered(n=8000, d=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cells_prune_on_clustered_data_and_reach_recall(metric):
    X = _clustered()
    g = build_knn_graph(X, k=15, metric=metric)  # auto -> cells
    exact = build_knn_graph(X, k=15, metric=metric, method="exact")
    assert g.method == "cells" and g.params["searched"] < 0.5, g.params
    true_recall = recall_at_k(g.indices, exact.indices)
    assert true_recall >= 0.98
    assert abs(g.recall - true_recall) < 0.02
    assert not (g.indices == np.arange(len(X))[:, None]).any()
    # Distances are the true ones for the neighbours returned.
    rows = np.arange(0, len(X), 97)
    if metric == "l2":
        true = np.linalg.norm(X[g.indices[rows]] - X[rows, None, :], axis=2)
    else:
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        true = 1 - np.einsum("rkd,rd->rk", U[g.indices[rows]], U[rows])
    np.testing.assert_allclose(g.distances[rows], true, atol=2e-5)
    assert np.all(np.diff(g.distances, axis=1) >= 0)


def test_cells_fall_back_to_exact_when_pruning_cannot_pay():
    X = np.random.default_rng(3).standard_normal((4000, 64)).astype(np.float32)
    g = build_knn_graph(X, k=10, metric="cosine")
    assert g.method == "exact" and g.recall == 1.0 and g.params["searched"] == 1.0
    ref = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(X).kneighbors()
    assert (g.indices != ref[1]).mean() < 1e-3


def test_inner_product_graph_is_exact_with_one_minus_dot():
    X = _blobs(n=400)
    g = build_knn_graph(X, k=5, metric="ip")
    assert g.method == "exact"
    dots = X @ X.T
    np.fill_diagonal(dots, -np.inf)
    np.testing.assert_array_equal(np.sort(g.indices, axis=1), np.sort(np.argsort(-dots)[:, :5], 1))
    with pytest.raises(InvalidInputError, match="inner product"):
        build_knn_graph(X, k=5, metric="ip", method="cells")


def test_above_the_exact_limit_a_graph_is_as_wide_as_asked_and_widens_on_demand(
    store, counted_builds, monkeypatch
):
    import embscope.core.nndescent as nnd

    X = _blobs(n=1200)
    monkeypatch.setattr(graph_mod, "NNDESCENT_MIN_N", 1000)
    monkeypatch.setattr(nnd, "CELL_SIZE", 100)  # 12 cells: the descent does part of the work
    info = store.add_dataset(make_parsed(X), name="big")
    assert graph_mod.stored_width(15, 1200, "cosine") == graph_mod.GRAPH_MIN_K
    g = get_or_build_graph(store, info.id, k=15, metric="cosine")
    assert g.method == "nndescent" and g.k == 15 and g.recall >= 0.98
    assert counted_builds[-1]["k"] == graph_mod.GRAPH_MIN_K  # not GRAPH_K = 150
    get_or_build_graph(store, info.id, k=20, metric="cosine")  # fits in the 30: reused
    assert len(counted_builds) == 1
    wide = get_or_build_graph(store, info.id, k=60, metric="cosine")  # wider: built again
    assert len(counted_builds) == 2 and counted_builds[-1]["k"] == 60 and wide.k == 60
    stored = find_graph(store, info.id, metric="cosine")
    assert stored is not None and stored.k == 60  # the widest answers from now on
    get_or_build_graph(store, info.id, k=30, metric="cosine")
    assert len(counted_builds) == 2
    # Below the limit, where search is exact, the first build is GRAPH_K wide at once.
    assert graph_mod.stored_width(15, 900, "cosine") == GRAPH_K
    assert graph_mod.stored_width(15, 100, "cosine") == 99
