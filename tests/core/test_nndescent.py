"""NN-descent (core/nndescent.py): recall against exact search on real text embeddings and on
hard synthetic data, against pynndescent on the same data, determinism across thread counts,
tiny sets, duplicates, l2, cancelling, and where ``build_knn_graph`` chooses it."""

from __future__ import annotations

import numpy as np
import pytest

import embscope.core.graph as graph_mod
import embscope.core.nndescent as nnd
from embscope.core.demo import stdlib_docstrings
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import build_knn_graph, recall_at_k
from embscope.core.nndescent import nn_descent


@pytest.fixture(scope="module")
def texts() -> np.ndarray:
    return np.asarray(stdlib_docstrings().vectors, dtype=np.float32)


def _exact(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    return build_knn_graph(X, k=k, metric=metric, method="exact").indices


def _cube(n: int = 6000, d: int = 24, seed: int = 0) -> np.ndarray:
    # Uniform in a 24-d cube: no clusters to lean on, intrinsic dimension 24 (harder than text).
    return np.random.default_rng(seed).random((n, d)).astype(np.float32)


def test_real_text_recall_from_a_poor_start(texts):
    # 100-point cells: the in-cell start alone finds few of the true neighbours, so the
    # descent has to do the work (the default 1,000-point cells would be nearly exact here).
    # Two probes: a point starts from its own cell and the next nearest.
    k = 15
    exact = _exact(texts, k, "cosine")
    start_only, _, _ = nn_descent(texts, k, "cosine", cell_size=100, probes=2, max_rounds=0)
    idx, sim, info = nn_descent(texts, k, "cosine", cell_size=100, probes=2)
    assert recall_at_k(start_only, exact) < 0.75
    assert recall_at_k(idx, exact) >= 0.98, info
    assert info["rounds"] >= 2 and info["cells"] == len(texts) // 100


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_hard_data_recall_and_true_distances(metric):
    X = _cube()
    g = build_knn_graph(X, k=10, metric=metric, method="nndescent")
    exact = build_knn_graph(X, k=10, metric=metric, method="exact")
    recall = recall_at_k(g.indices, exact.indices)
    assert recall >= 0.97, recall
    # The recall it reports is measured on a sample against exact search.
    assert abs(g.recall - recall) < 0.02 and g.params["recall_sample"] == 500
    # Distances are the true ones of the neighbours it lists, ascending, self excluded.
    rows = np.arange(len(X))[:, None]
    assert (g.indices != rows).all()
    if metric == "l2":
        true = np.linalg.norm(X[g.indices] - X[:, None, :], axis=2)
    else:
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        true = 1.0 - np.einsum("nkd,nd->nk", U[g.indices], U)
    np.testing.assert_allclose(g.distances, true, atol=2e-5)
    assert (np.diff(g.distances, axis=1) >= 0).all()


def test_same_graph_whatever_the_thread_count(monkeypatch):
    X = _cube(3000, 16)
    monkeypatch.setattr(nnd, "available_threads", lambda: 1)
    one = nn_descent(X, 10, "l2", cell_size=200, seed=4)
    monkeypatch.setattr(nnd, "available_threads", lambda: 3)
    three = nn_descent(X, 10, "l2", cell_size=200, seed=4)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])
    other_seed = nn_descent(X, 10, "l2", cell_size=200, seed=5)
    assert one[2]["taken"] != other_seed[2]["taken"]


@pytest.mark.parametrize("n", [2, 3, 12, 25])
def test_tiny_sets_get_every_other_point(n):
    X = _cube(n, 4, seed=n)
    g = build_knn_graph(X, k=n - 1, metric="l2", method="nndescent")
    assert g.recall == 1.0
    np.testing.assert_array_equal(g.indices, _exact(X, n - 1, "l2"))


def test_duplicates_are_neighbours_at_distance_zero():
    X = _cube(2000, 8)
    X[1000:1010] = X[5]  # ten copies of row 5
    idx, sim, info = nn_descent(X, 12, "cosine", cell_size=100)
    assert info["rounds"] >= 1 and info["cells"] == 20
    copies = set(range(1000, 1010)) | {5}
    for r in copies:
        assert set(idx[r, :10]) == copies - {r}
        assert np.allclose(sim[r, :10], 1.0, atol=1e-6)


def test_a_clump_of_copies_and_zero_rows_keep_the_start_linear(monkeypatch):
    # A third of the rows are one point, a tenth are zero (cosine: similar to nothing):
    # k-means puts each in one huge cell, searched through a sample of CELL_CAP x cell_size.
    X = _cube(6000, 8)
    X[:2000] = X[2000]
    X[2001:2600] = 0.0
    shapes = []
    real_take = nnd._take_block

    def spy(S, *args):
        shapes.append(S.shape)
        return real_take(S, *args)

    monkeypatch.setattr(nnd, "_take_block", spy)
    idx, sim, _ = nn_descent(X, 10, "cosine", cell_size=100)
    assert max(c for _, c in shapes) <= nnd.CELL_CAP * 100
    exact = _exact(X, 10, "cosine")
    ordinary = np.arange(2600, 6000)
    assert recall_at_k(idx[ordinary], exact[ordinary]) >= 0.97
    # Every copy's neighbours are other copies, at similarity 1.
    assert np.isin(idx[:2001], np.arange(2001)).all() and np.allclose(sim[:2001], 1.0, atol=1e-6)


def test_steps_with_fewer_rows_than_threads_and_a_full_offer_buffer(monkeypatch):
    # n = STEP + 1: the last step has one row for two threads (a crash once); one offer per
    # row fills the buffers mid-step, so offers are applied in several batches.
    monkeypatch.setattr(nnd, "STEP", 1000)
    monkeypatch.setattr(nnd, "OFFERS_PER_ROW", 1)
    monkeypatch.setattr(nnd, "available_threads", lambda: 2)
    X = _cube(1001, 6)
    idx, _, info = nn_descent(X, 8, "l2", cell_size=50)
    assert recall_at_k(idx, _exact(X, 8, "l2")) >= 0.98, info


def test_blas_keeps_its_threads():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    nn_descent(_cube(3000, 8), 10, "cosine", cell_size=200)
    after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert after == before


def test_cancel_stops_the_build():
    with pytest.raises(OperationCancelled):
        build_knn_graph(
            _cube(3000, 8), k=10, metric="l2", method="nndescent", progress=lambda f, m: f > 0.2
        )


def test_l2_far_from_the_origin_keeps_its_precision():
    # x.y - |x|^2/2 - |y|^2/2 in float32 loses every digit at an offset of 100 unless the
    # rows are centred first.
    X = (np.random.default_rng(3).standard_normal((3000, 8)) * 0.1 + 100.0).astype(np.float32)
    idx, _, _ = nn_descent(X, 10, "l2", cell_size=200)
    assert recall_at_k(idx, _exact(X - X.mean(0), 10, "l2")) >= 0.97


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="narrower"):
        nn_descent(_cube(300, 4), 10, "l2", build_k=5)
    with pytest.raises(ValueError, match="probes"):
        nn_descent(_cube(300, 4), 10, "l2", probes=1)


def test_auto_uses_it_above_the_exact_limit_and_never_for_inner_product(monkeypatch):
    X = _cube(1500, 8)
    monkeypatch.setattr(graph_mod, "NNDESCENT_MIN_N", 1000)
    assert build_knn_graph(X, k=5, metric="cosine").method == "nndescent"
    assert build_knn_graph(X[:900], k=5, metric="cosine").method in ("cells", "exact")
    assert build_knn_graph(X, k=5, metric="ip").method == "exact"
    with pytest.raises(InvalidInputError, match="inner product"):
        build_knn_graph(X, k=5, metric="ip", method="nndescent")


@pytest.mark.slow
def test_at_least_as_good_as_pynndescent_on_real_text(texts):
    # pynndescent as umap-learn calls it, k = 15, on the same real embeddings and the same
    # poor start for us (100-point cells).
    from pynndescent import NNDescent

    k = 15
    exact = _exact(texts, k, "cosine")
    ref = NNDescent(texts, n_neighbors=k + 1, metric="cosine", random_state=0, n_jobs=1)
    ref_idx = ref.neighbor_graph[0]
    own = np.arange(len(texts))[:, None]
    ref_idx = np.array([r[r != o[0]][:k] for r, o in zip(ref_idx, own, strict=True)])
    ours, _, _ = nn_descent(texts, k, "cosine", cell_size=100, probes=2)
    assert recall_at_k(ours, exact) >= recall_at_k(ref_idx, exact) - 0.005


def test_l2_vectors_too_long_for_float32_are_refused():
    # A squared length past float32's range would make every l2 similarity inf or NaN.
    X = _cube(300, 8) * 1e19
    with pytest.raises(InvalidInputError, match="too long"):
        nn_descent(X, 10, "l2", cell_size=50)
    idx, sim, _ = nn_descent(X, 10, "cosine", cell_size=50)  # unit rows: no such limit
    assert np.isfinite(sim).all()
