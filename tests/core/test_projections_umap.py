"""UMAP on the shared graph: umap-learn's own result, the graph really used, progress, cancel.

Every umap-learn fit pays numba compilation once per process (5-10 s, docs/science.md §2), so the
tests that fit are marked slow; a module fixture compiles first.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.manifold import trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, build_knn_graph
from embscope.core.projections.quality import projection_quality
from embscope.core.projections.umap_layout import (
    GraphNotUsedError,
    _fit,
    default_epochs,
    umap_layout,
    warm_up,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X, y, build_knn_graph(X, k=150, metric="l2", method="exact")


@pytest.fixture(scope="module")
def compiled():
    warm_up()


def _plain_umap(X, graph, **kwargs):
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(
            n_neighbors=kwargs.pop("n_neighbors", 15),
            precomputed_knn=graph.with_self(kwargs.pop("width", 15)),
            **kwargs,
        )
        return reducer.fit_transform(X), reducer


@pytest.mark.slow
def test_digits_quality_meets_the_reference(digits, compiled):
    X, y, graph = digits
    Y = umap_layout(graph, seed=42)
    assert Y.dtype == np.float32 and Y.shape == (len(X), 2)
    q = projection_quality(Y, graph, X=X, k=10, sample=None)
    assert q.trustworthiness >= 0.97  # docs/science.md §2: 0.988
    # Integer data: many exact distance ties, which scikit-learn's unstable argsort and our
    # (distance, row) order rank differently (~30 rank swaps of 3e-8 each).
    assert q.trustworthiness == pytest.approx(trustworthiness(X, Y, n_neighbors=10), abs=1e-5)
    acc = projection_quality(Y, graph, k=5, labels=y, sample=None).knn_accuracy
    assert acc >= 0.95  # docs/science.md §2: 0.977 (10-fold CV)
    cv = StratifiedKFold(10, shuffle=True, random_state=0)
    assert abs(acc - cross_val_score(KNeighborsClassifier(5), Y, y, cv=cv).mean()) < 0.01


@pytest.mark.slow
def test_same_as_plain_umap_learn_on_the_same_graph(digits, compiled):
    X, _, graph = digits
    ours = umap_layout(graph, seed=3, n_epochs=60, deterministic=True)
    ref, _ = _plain_umap(X, graph, random_state=3, n_epochs=60)
    np.testing.assert_array_equal(ours, ref)  # a stand-in X changes nothing when connected
    np.testing.assert_array_equal(
        umap_layout(graph, seed=3, n_epochs=60, X=X, deterministic=True), ours
    )
    assert not np.array_equal(umap_layout(graph, seed=4, n_epochs=60, deterministic=True), ours)
    # On every core: the same start and random streams, updates in another order.
    parallel = umap_layout(graph, seed=3, n_epochs=60)
    assert not np.array_equal(parallel, ours)
    q_ref = projection_quality(ref, graph, X=X, k=10, sample=None).trustworthiness
    q_par = projection_quality(parallel, graph, X=X, k=10, sample=None).trustworthiness
    assert abs(q_par - q_ref) < 0.005
    three = umap_layout(graph, dims=3, seed=3, n_epochs=30)
    assert three.shape == (len(X), 3) and np.isfinite(three).all()


@pytest.mark.slow
def test_cosine_graph_matches_plain_umap_learn(compiled):
    X = np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32)
    graph = build_knn_graph(X, k=20, metric="cosine", method="exact")
    ref, _ = _plain_umap(X, graph, metric="cosine", random_state=1, n_epochs=40)
    np.testing.assert_array_equal(
        umap_layout(graph, seed=1, n_epochs=40, X=X, deterministic=True), ref
    )


@pytest.mark.slow
def test_precomputed_graph_equals_umaps_own_exact_graph():
    # docs/science.md §9 #17: self first and exactly n_neighbors columns is umap-learn's convention.
    import umap

    X = np.random.default_rng(0).standard_normal((2000, 10)).astype(np.float32)
    graph = build_knn_graph(X, k=30, metric="l2", method="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = umap.UMAP(n_neighbors=15, random_state=0, transform_mode="graph").fit(X).graph_
        ours = (
            umap.UMAP(
                n_neighbors=15,
                random_state=0,
                transform_mode="graph",
                precomputed_knn=graph.with_self(15),
            )
            .fit(X)
            .graph_
        )
    assert own.nnz == ours.nnz
    assert abs(own - ours).max() <= 1e-4


@pytest.mark.slow
def test_a_graph_umap_learn_ignores_is_caught(digits, compiled):
    X, _, graph = digits
    # Narrower than n_neighbors: umap-learn warns, drops it and computes its own neighbours.
    idx, dist = graph.with_self(10)
    with pytest.raises(GraphNotUsedError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(idx, dist, X, n_neighbors=15, dims=2, min_dist=0.1, n_epochs=20, seed=0,
             metric="euclidean", progress=None)  # fmt: skip
    # Wider than n_neighbors below 4,096 points: umap-learn silently uses every column.
    idx, dist = graph.with_self(40)
    with pytest.raises(GraphNotUsedError):
        _fit(idx, dist, X, n_neighbors=15, dims=2, min_dist=0.1, n_epochs=20, seed=0,
             metric="euclidean", progress=None)  # fmt: skip
    # The public function refuses a narrow graph before starting.
    with pytest.raises(InvalidInputError, match="at least 15 neighbours"):
        umap_layout(graph.head(10), n_neighbors=16)


@pytest.mark.slow
def test_progress_per_epoch_and_cancel(digits, compiled):
    _, _, graph = digits
    seen: list[tuple[float, str]] = []
    umap_layout(graph, seed=0, n_epochs=40, progress=lambda f, m: seen.append((f, m)) and False)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert sum("epoch" in m for _, m in seen) == 41  # 0/40 .. 40/40
    asked: list[float] = []

    def cancel(fraction, message):
        if "epoch 10/" in message:
            asked.append(time.perf_counter())
            return True
        assert not asked, "progress called again after cancelling"
        return False

    with pytest.raises(OperationCancelled):
        umap_layout(graph, seed=0, n_epochs=400, progress=cancel)
    assert time.perf_counter() - asked[0] < 1.0
    with pytest.raises(OperationCancelled):  # before umap-learn starts
        umap_layout(graph, seed=0, progress=lambda f, m: True)
    # between the fuzzy graph and the spectral initialisation: no epoch runs
    messages: list[str] = []

    def cancel_at_spectral(fraction, message):
        messages.append(message)
        return message == "UMAP: spectral initialisation"

    with pytest.raises(OperationCancelled):
        umap_layout(graph, seed=0, n_epochs=40, progress=cancel_at_spectral)
    assert messages[-1] == "UMAP: spectral initialisation"
    assert not any("epoch" in m for m in messages)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_disconnected_and_inner_product_graphs(compiled):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 6)) * 100
    X = (np.repeat(centres, 40, axis=0) + rng.standard_normal((320, 6))).astype(np.float32)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")  # 8 pieces > 2 * dims
    for data in (None, X):
        Y = umap_layout(graph, n_neighbors=8, seed=0, n_epochs=30, X=data)
        assert np.isfinite(Y).all()
    ip = build_knn_graph(X, k=10, metric="ip", method="exact")
    assert (ip.distances < 0).any()  # 1 - <a, b> below zero
    assert np.isfinite(umap_layout(ip, n_neighbors=8, seed=0, n_epochs=30)).all()


def test_default_epochs_follow_umap_learn_then_cap_the_work():
    assert [default_epochs(n) for n in (100, 1797, 10_000, 10_001)] == [500, 500, 500, 200]
    assert [default_epochs(n) for n in (25_000, 50_000, 100_000, 10**6)] == [200, 100, 50, 50]


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    bad = [
        {"dims": 1},
        {"dims": 4},
        {"n_neighbors": 1},
        {"n_neighbors": 12},  # needs 11 graph columns
        {"n_neighbors": 2.5},
        {"min_dist": -0.1},
        {"min_dist": 1.5},
        {"min_dist": "0.1"},
        {"n_epochs": 0},
        {"seed": -1},
        {"deterministic": "yes"},
        {"X": X[:40]},
        {"X": np.full_like(X, np.nan)},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidInputError):
            umap_layout(graph, **kwargs)
    with pytest.raises(InvalidInputError):
        umap_layout((graph.indices, graph.distances))
    tiny = build_knn_graph(X[:4], k=3, metric="l2", method="exact")
    with pytest.raises(InvalidInputError):
        umap_layout(tiny, n_neighbors=4)
    broken = KnnGraph(graph.indices, np.full_like(graph.distances, np.nan), "l2", "exact", 1.0)
    with pytest.raises(InvalidInputError):
        umap_layout(broken)
