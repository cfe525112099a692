"""Projection quality scores against scikit-learn and heat-geodesic's protocol (docs/science.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.manifold import trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from embscope.core.demo import swiss_roll
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, build_knn_graph
from embscope.core.projections import quality
from embscope.core.projections.quality import ProjectionQuality, projection_quality


def _data(n: int = 500, d: int = 20, seed: int = 0):
    """Vectors and a noisy 2-D layout of them: a middling, tie-free projection."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * np.linspace(3, 0.5, d)).astype(np.float32)
    Y = (X[:, :2] + 0.8 * rng.standard_normal((n, 2))).astype(np.float32)
    return X, Y


def _loo_knn_accuracy(Y, labels, k):
    """scikit-learn's leave-one-out k-NN vote: neighbours without self, ties to the smallest."""
    nbrs = NearestNeighbors(n_neighbors=k).fit(Y).kneighbors(return_distance=False)
    _, codes = np.unique(labels, return_inverse=True)
    pred = scipy.stats.mode(codes[nbrs], axis=1).mode.ravel()
    return float((pred == codes).mean())


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_trustworthiness_and_continuity_match_sklearn(metric):
    X, Y = _data()
    graph = build_knn_graph(X, k=30, metric=metric, method="exact")
    for k in (5, 10, 25):
        q = projection_quality(Y, graph, X=X, k=k, sample=None)
        sk_metric = "cosine" if metric == "cosine" else "euclidean"
        assert q.trustworthiness == pytest.approx(
            trustworthiness(X, Y, n_neighbors=k, metric=sk_metric), abs=1e-6
        )
        # Continuity is trustworthiness with the spaces swapped; unit rows rank like cosine.
        Xm = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
        assert q.continuity == pytest.approx(trustworthiness(Y, Xm, n_neighbors=k), abs=1e-6)
        assert 0.5 < q.trustworthiness < 0.99 and 0.5 < q.continuity < 0.99  # not trivial


def test_both_rank_branches_agree(monkeypatch):
    # A poor layout sends neighbours far away: ranks are then counted instead of sorted.
    X, Y = _data(400)
    Y = np.random.default_rng(5).standard_normal((400, 2)).astype(np.float32)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    sorted_ = projection_quality(Y, graph, X=X, k=10, sample=None)
    monkeypatch.setattr(quality, "_SORT_MAX", 3)
    counted = projection_quality(Y, graph, X=X, k=10, sample=None)
    assert counted == sorted_
    assert sorted_.trustworthiness == pytest.approx(trustworthiness(X, Y, n_neighbors=10), abs=1e-6)


def test_perfect_layout_scores_one():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 2)).astype(np.float32)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    q = projection_quality(X * 3.0 + 1.0, graph, X=X, k=10, sample=None)
    assert q.trustworthiness == 1.0 and q.continuity == 1.0 and q.knn_preservation == 1.0


def test_knn_preservation_is_overlap_with_the_graph():
    X, Y = _data(300)
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    low = NearestNeighbors(n_neighbors=7).fit(Y).kneighbors(return_distance=False)
    expected = np.mean([np.intersect1d(low[i], graph.indices[i, :7]).size / 7 for i in range(300)])
    q = projection_quality(Y, graph, k=7, sample=None)
    assert q.knn_preservation == pytest.approx(expected, abs=1e-12)
    # Read from the graph: a graph with other neighbours gives another overlap.
    shuffled = KnnGraph(graph.indices[:, ::-1].copy(), graph.distances, "l2", "exact", 1.0)
    assert projection_quality(Y, shuffled, k=7, sample=None).knn_preservation < expected


def test_knn_accuracy_is_sklearn_leave_one_out():
    X, Y = _data(400)
    labels = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    q = projection_quality(Y, graph, k=5, labels=labels, sample=None)
    assert q.knn_accuracy == pytest.approx(_loo_knn_accuracy(Y, labels, 5), abs=1e-12)
    assert 0.5 < q.knn_accuracy < 0.95
    # String labels in the same sorted order give the same votes and ties.
    names = np.array(["a", "b", "c", "d"], dtype=object)[labels]
    assert projection_quality(Y, graph, k=5, labels=names, sample=None).knn_accuracy == (
        q.knn_accuracy
    )


def test_knn_accuracy_on_digits_is_close_to_10_fold_cv():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    q = projection_quality(X, graph, k=5, labels=y, sample=None)  # the 64-D data as "layout"
    cv = StratifiedKFold(10, shuffle=True, random_state=0)
    ten_fold = cross_val_score(KNeighborsClassifier(5), X, y, cv=cv).mean()
    assert abs(q.knn_accuracy - ten_fold) < 0.01
    assert q.knn_accuracy == pytest.approx(0.9878, abs=1e-3)  # sklearn LeaveOneOut: 0.98776


def test_ties_in_the_layout_go_to_the_smaller_row_number():
    # A coarse grid layout: many points at equal distances, and duplicates.
    rng = np.random.default_rng(2)
    n, k = 300, 6
    Y = rng.integers(0, 6, size=(n, 2)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    graph = build_knn_graph(X, k=k, metric="l2", method="exact")
    D = ((Y[:, None, :].astype(np.float64) - Y[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(D, np.inf)
    cols = np.arange(n)
    low = np.array([np.lexsort((cols, D[i]))[:k] for i in range(n)])
    overlap = np.mean([np.intersect1d(low[i], graph.indices[i]).size / k for i in range(n)])
    votes = [np.unique(labels[low[i]], return_counts=True) for i in range(n)]
    acc = np.mean([v[np.argmax(c)] == labels[i] for i, (v, c) in enumerate(votes)])
    q = projection_quality(Y, graph, k=k, labels=labels, sample=None)
    assert q.knn_preservation == pytest.approx(overlap, abs=1e-12)
    assert q.knn_accuracy == pytest.approx(acc, abs=1e-12)


def test_geodesic_spearman_is_heatgeo_corrs():
    roll = swiss_roll(300, seed=0)
    geo = roll.metadata[["arc_length", "height"]].to_numpy()
    graph = build_knn_graph(roll.vectors, k=10, metric="l2", method="exact")
    # The unrolled coordinates themselves are a perfect layout.
    assert projection_quality(geo, graph, k=5, geodesic=geo, sample=None).geodesic_spearman == (
        pytest.approx(1.0, abs=1e-12)
    )
    # The 3-D roll (first two axes) against the reference protocol, row by row.
    layout = roll.vectors[:, :2]
    D_low = np.linalg.norm(layout[:, None, :].astype(np.float64) - layout[None], axis=2)
    D_geo = np.linalg.norm(geo[:, None, :] - geo[None], axis=2)
    ref = np.mean([scipy.stats.spearmanr(D_low[i], D_geo[i])[0] for i in range(300)])
    q = projection_quality(layout, graph, k=5, geodesic=geo, sample=None)
    assert q.geodesic_spearman == pytest.approx(ref, abs=1e-9)
    assert q.geodesic_spearman < 0.9


def test_geodesic_column_subset_above_the_cap(monkeypatch):
    roll = swiss_roll(600, seed=1)
    geo = roll.metadata[["arc_length", "height"]].to_numpy()
    graph = build_knn_graph(roll.vectors, k=10, metric="l2", method="exact")
    layout = roll.vectors[:, :2]
    full = projection_quality(layout, graph, geodesic=geo, sample=None).geodesic_spearman
    monkeypatch.setattr(quality, "GEODESIC_MAX_COLUMNS", 200)
    part = projection_quality(layout, graph, geodesic=geo, sample=None).geodesic_spearman
    assert part != full and part == pytest.approx(full, abs=0.03)


def test_sample_is_seeded_and_estimates_the_full_score():
    X, Y = _data(1200)
    labels = (X[:, 0] > 0).astype(int)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    full = projection_quality(Y, graph, X=X, labels=labels, sample=None)
    part = projection_quality(Y, graph, X=X, labels=labels, sample=400, seed=3)
    assert part.sample == 400 and full.sample == 1200
    assert part == projection_quality(Y, graph, X=X, labels=labels, sample=400, seed=3)
    assert part != projection_quality(Y, graph, X=X, labels=labels, sample=400, seed=4)
    for name in ("trustworthiness", "continuity", "knn_preservation", "knn_accuracy"):
        assert getattr(part, name) == pytest.approx(getattr(full, name), abs=0.03)
    assert projection_quality(Y, graph, sample=5000).sample == 1200


def test_intervals_of_sampled_scores_cover_the_full_score():
    """A score from 200 sampled points of 1,200 comes with a 95 % bootstrap interval over the
    points; over 20 sample seeds it holds the score of every point (sklearn's
    trustworthiness for trustworthiness) about as often as it should."""
    X, Y = _data(1200)
    labels = (X[:, 0] > 0).astype(int)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    full = projection_quality(Y, graph, X=X, labels=labels, sample=None)
    assert full.trustworthiness == pytest.approx(trustworthiness(X, Y, n_neighbors=10), abs=1e-6)
    names = ("trustworthiness", "continuity", "knn_preservation", "knn_accuracy")
    covered = dict.fromkeys(names, 0)
    for seed in range(20):
        part = projection_quality(Y, graph, X=X, labels=labels, sample=200, seed=seed)
        for name in names:
            lo, hi = part.intervals[name]
            assert lo <= getattr(part, name) <= hi and hi - lo < 0.2
            covered[name] += lo <= getattr(full, name) <= hi
    assert all(count >= 16 for count in covered.values()), covered


def test_json_keys_are_the_public_contract():
    X, Y = _data(200)
    graph = build_knn_graph(X, k=10, metric="cosine", method="exact")
    full = projection_quality(Y, graph, X=X, labels=np.arange(200) % 3, geodesic=Y, k=10)
    assert isinstance(full, ProjectionQuality)
    assert list(full.to_json()) == [
        "trustworthiness@10",
        "trustworthiness@10_ci",
        "continuity@10",
        "continuity@10_ci",
        "knn_preservation@10",
        "knn_preservation@10_ci",
        "knn_accuracy@10",
        "knn_accuracy@10_ci",
        "geodesic_spearman",
        "geodesic_spearman_ci",
        "sample",
    ]
    bare = projection_quality(Y, graph, k=5).to_json()
    assert list(bare) == ["knn_preservation@5", "knn_preservation@5_ci", "sample"]
    assert bare["sample"] == 200
    # Every point scored: the score is exact, its interval is the score itself.
    assert bare["knn_preservation@5_ci"] == [bare["knn_preservation@5"]] * 2
    assert bare["knn_preservation@5"] == pytest.approx(
        projection_quality(Y, graph, X=X, k=5).knn_preservation
    )


def test_progress_and_cancel():
    X, Y = _data(300)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    seen = []
    projection_quality(Y, graph, X=X, progress=lambda f, m: seen.append(f) and False)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(OperationCancelled):
        projection_quality(Y, graph, X=X, progress=lambda f, m: f > 0.5)


def test_bad_input():
    X, Y = _data(100)
    graph = build_knn_graph(X, k=10, metric="l2", method="exact")
    bad = [
        {"layout": Y[:50]},  # not the graph's points
        {"layout": np.where(np.arange(200).reshape(100, 2) == 7, np.nan, Y)},
        {"layout": Y, "k": 50},  # k >= n / 2
        {"layout": Y, "k": 11},  # wider than the graph
        {"layout": Y, "k": 0},
        {"layout": Y, "k": 2.5},
        {"layout": Y, "X": X[:99]},
        {"layout": Y, "X": np.full_like(X, np.inf)},
        {"layout": Y, "labels": np.arange(99)},
        {"layout": Y, "labels": np.r_[np.nan, np.ones(99)]},
        {"layout": Y, "labels": np.array([None] + ["a"] * 99, dtype=object)},
        {"layout": Y, "labels": np.array([1, "a"] * 50, dtype=object)},
        {"layout": Y, "geodesic": np.ones((99, 2))},
        {"layout": Y, "geodesic": np.full((100, 2), np.nan)},
        {"layout": Y, "sample": 0},
        {"layout": Y, "seed": -1, "sample": 10},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidInputError):
            projection_quality(graph=graph, **kwargs)
    with pytest.raises(InvalidInputError):
        projection_quality(Y, (graph.indices, graph.distances))
