"""UMAP on the shared graph: as faithful as umap-learn on the same data, the graph really used,
determinism, progress, cancel, bad input.

The kernels themselves (fuzzy graph, a/b fit, spectral start) are compared with umap-learn's in
tests/core/test_umap_kernel.py. Tests that run umap-learn pay its numba compilation (5-10 s)
and are marked slow; ours load from the numba cache.
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
from embscope.core.projections.umap_layout import chosen, default_epochs, umap_layout


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X, y, build_knn_graph(X, k=150, metric="l2", method="exact")


def test_digits_quality_meets_the_reference(digits):
    X, y, graph = digits
    Y = umap_layout(graph, seed=42)
    assert Y.dtype == np.float32 and Y.shape == (len(X), 2)
    q = projection_quality(Y, graph, X=X, k=10, sample=None)
    # umap-learn 0.5 on digits, random_state 0/1/2 and unseeded: trustworthiness@10
    # 0.9879-0.9892, 10-NN preservation 0.493-0.500 (docs/science.md §2: 0.988).
    assert q.trustworthiness >= 0.9879 - 0.005
    assert q.knn_preservation >= 0.493 - 0.01
    # Integer data: many exact distance ties, which scikit-learn's unstable argsort and our
    # (distance, row) order rank differently (~30 rank swaps of 3e-8 each).
    assert q.trustworthiness == pytest.approx(trustworthiness(X, Y, n_neighbors=10), abs=1e-5)
    acc = projection_quality(Y, graph, k=5, labels=y, sample=None).knn_accuracy
    assert acc >= 0.95  # docs/science.md §2: 0.977 (10-fold CV)
    cv = StratifiedKFold(10, shuffle=True, random_state=0)
    assert abs(acc - cross_val_score(KNeighborsClassifier(5), Y, y, cv=cv).mean()) < 0.01


@pytest.mark.slow
def test_as_faithful_as_umap_learn_on_the_same_data(digits):
    import umap

    X, _, graph = digits
    ours, theirs = [], []
    for seed in (0, 1):
        ours.append(projection_quality(umap_layout(graph, seed=seed), graph, X=X, k=10,
                                       sample=None))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Y = umap.UMAP(random_state=seed).fit_transform(X)
        theirs.append(projection_quality(Y, graph, X=X, k=10, sample=None))
    trust = [np.mean([q.trustworthiness for q in qs]) for qs in (ours, theirs)]
    pres = [np.mean([q.knn_preservation for q in qs]) for qs in (ours, theirs)]
    assert trust[0] >= trust[1] - 0.005 and pres[0] >= pres[1] - 0.01


def test_deterministic_repeats_and_parallel_is_as_good(digits):
    X, _, graph = digits
    one = umap_layout(graph, seed=3, n_epochs=60, deterministic=True)
    np.testing.assert_array_equal(umap_layout(graph, seed=3, n_epochs=60, deterministic=True), one)
    # X only places the pieces of a disconnected graph: a connected one is unchanged
    np.testing.assert_array_equal(
        umap_layout(graph, seed=3, n_epochs=60, X=X, deterministic=True), one
    )
    assert not np.array_equal(umap_layout(graph, seed=4, n_epochs=60, deterministic=True), one)
    parallel = umap_layout(graph, seed=3, n_epochs=60)
    q_one = projection_quality(one, graph, X=X, k=10, sample=None).trustworthiness
    q_par = projection_quality(parallel, graph, X=X, k=10, sample=None).trustworthiness
    assert abs(q_par - q_one) < 0.005
    three = umap_layout(graph, dims=3, seed=3, n_epochs=30)
    assert three.shape == (len(X), 3) and np.isfinite(three).all()


def test_the_graph_given_is_the_graph_used(digits):
    X, _, graph = digits
    # Neighbours beyond n_neighbors change nothing; a different graph changes the layout.
    base = umap_layout(graph, seed=0, n_epochs=30, deterministic=True)
    np.testing.assert_array_equal(
        umap_layout(graph.head(20), seed=0, n_epochs=30, deterministic=True), base
    )
    shuffled = graph.indices.copy()
    shuffled[:, 5:10] = shuffled[:, 20:25]
    other = KnnGraph(shuffled, graph.distances, graph.metric, graph.method, graph.recall)
    assert not np.array_equal(umap_layout(other, seed=0, n_epochs=30, deterministic=True), base)
    with pytest.raises(InvalidInputError, match="at least 15 neighbours"):
        umap_layout(graph.head(10), n_neighbors=16)


def test_progress_per_epoch_and_cancel(digits):
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
    with pytest.raises(OperationCancelled):  # before the fuzzy graph
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


def test_disconnected_and_inner_product_graphs():
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


def test_default_epochs_and_what_is_disclosed():
    assert [default_epochs(n) for n in (100, 1797, 10_000, 20_000)] == [1500, 1500, 1500, 750]
    assert [default_epochs(n) for n in (50_000, 10**6)] == [300, 300]
    assert chosen(50_000)["n_epochs"] == 300 and chosen(50_000, 40)["n_epochs"] == 40
    assert chosen(50_000)["init"] == "spectral"
    assert "umap-learn: 200" in chosen(50_000)["differs_from_paper"]["epochs"]
    assert "umap-learn: 500" in chosen(5_000)["differs_from_paper"]["epochs"]
    assert "epochs" not in chosen(50_000, 40)["differs_from_paper"]  # the user's own choice
    assert set(chosen(50_000, 40)["differs_from_paper"]) == {"optimiser"}


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


def test_above_the_arpack_limit_the_start_is_lobpcg_and_as_good(digits, monkeypatch):
    import embscope.core.projections.umap_layout as ul
    from embscope.core.projections import umap_kernel

    X, y, graph = digits
    idx, dist = graph.with_self(15)
    head, tail, w = umap_kernel.fuzzy_graph(
        np.ascontiguousarray(idx), np.ascontiguousarray(dist), n_neighbors=15, pool=None, threads=1
    )
    head, tail, w = umap_kernel.prune_edges(head, tail, w, 500)
    n = len(X)

    def start():
        return ul.spectral_start(n, head, tail, w, dims=2, data=X, rng=np.random.RandomState(0))

    arpack = start()
    monkeypatch.setattr(ul, "ARPACK_MAX_N", 100)
    lobpcg = start()
    # The same 2-D eigenspace: the cosines of its principal angles with ARPACK's are near 1.
    qa, _ = np.linalg.qr(arpack)
    ql, _ = np.linalg.qr(lobpcg)
    assert np.linalg.svd(qa.T @ ql, compute_uv=False).min() > 0.99
    # And the layout from it is as faithful as the reference (first test's bound).
    Y = umap_layout(graph, seed=42)
    q = projection_quality(Y, graph, X=X, k=10, sample=None)
    assert q.trustworthiness >= 0.985
    assert "LOBPCG" in chosen(n)["differs_from_paper"]["start"]
    monkeypatch.setattr(ul, "ARPACK_MAX_N", 50_000)
    assert "start" not in chosen(n)["differs_from_paper"]
