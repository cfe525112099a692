"""core.hubness_reduction: CSLS and mutual proximity against naive implementations, the
measured effect on a hubby dataset, true distances kept, and the search path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.graph import build_knn_graph, get_or_build_graph
from embscope.core.hubness_reduction import (
    HUBNESS_PARAMS,
    check_method,
    hub_stats,
    hubness_reduction_effect,
    pool_size,
    query_stats,
    rerank,
    resolve_neighbours,
)
from embscope.core.hubness_runs import get_or_measure_effect
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store
from tests.helpers import make_parsed


def _hubby(n: int = 2000, d: int = 300, seed: int = 0) -> np.ndarray:
    """iid Gaussian in 300-D: strong hubness under l2 (skewness about 5)."""
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """300 points in 40-D, their full distance matrices (cosine, l2) in float64."""
    X = _hubby(300, 40, seed=3)
    X[:, 0] += 1.5  # off-centre, so cosine has hubs too
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = 1.0 - U.astype(np.float64) @ U.T.astype(np.float64)
    diff = X[:, None, :].astype(np.float64) - X[None, :, :]
    l2 = np.sqrt((diff**2).sum(-1))
    return X, {"cosine": cos, "l2": l2}


def _naive_neighbours(D: np.ndarray, i: int) -> np.ndarray:
    """Rows sorted by (distance, row), self left out."""
    others = np.array([j for j in range(D.shape[0]) if j != i])
    return others[np.lexsort((others, D[i, others]))]


def _naive_csls(D: np.ndarray, q: int, K: int, metric: str) -> dict[int, float]:
    """Conneau et al. 2018 written out: 2 cos(q,x) - r(q) - r(x), r the mean similarity to
    the K nearest (the cosine for cosine, -distance for l2)."""
    sim = (1.0 - D) if metric == "cosine" else -D

    def r(i: int) -> float:
        return float(np.mean(sim[i, _naive_neighbours(D, i)[:K]]))

    return {x: 2 * sim[q, x] - r(q) - r(x) for x in range(D.shape[0]) if x != q}


def _naive_mp(D: np.ndarray, q: int, K: int) -> dict[int, float]:
    """Schnitzer et al. 2012, MP-GaussI with each point's mean and sd (ddof 0) from its K
    nearest distances: P(D_q > d) * P(D_x > d), normal survival functions via math.erfc."""

    def moments(i: int) -> tuple[float, float]:
        d = D[i, _naive_neighbours(D, i)[:K]]
        return float(np.mean(d)), float(np.std(d))

    def sf(x: float, mu: float, sd: float) -> float:
        return 0.5 * math.erfc((x - mu) / (sd * math.sqrt(2)))

    mq, sq = moments(q)
    out = {}
    for x in range(D.shape[0]):
        if x != q:
            mx, sx = moments(x)
            out[x] = sf(D[q, x], mq, sq) * sf(D[q, x], mx, sx)
    return out


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("method", ["csls", "mp"])
def test_scores_match_a_naive_implementation(small, metric, method):
    X, dists = small
    D = dists[metric]
    graph = build_knn_graph(X, k=150, metric=metric, method="exact")
    K = resolve_neighbours(method)
    stats = hub_stats(graph, K)
    for q in (0, 17, 250):
        naive = _naive_csls(D, q, K, metric) if method == "csls" else _naive_mp(D, q, K)
        pool = graph.indices[q, :100]
        rows, dist, score = rerank(
            method, pool, graph.distances[q, :100], k=10,
            query_mean=stats.mean[q], query_sd=stats.sd[q], stats=stats,
        )  # fmt: skip
        assert np.allclose(score, [naive[int(r)] for r in rows], atol=2e-5)
        # The same top 10 as the naive scores over the pool, in the same order.
        expected = sorted(pool.tolist(), key=lambda x: (-round(naive[x], 6), D[q, x], x))[:10]
        assert rows.tolist() == expected
        # Distances are the true metric distances, not the scores.
        assert np.allclose(dist, D[q, rows], atol=2e-5)


def test_csls_of_a_row_query_equals_its_own_graph_row(small):
    """r(q) of a database row from the graph equals query_stats of its nearest distances."""
    X, _ = small
    graph = build_knn_graph(X, k=40, metric="cosine", method="exact")
    stats = hub_stats(graph, 10)
    mean, sd = query_stats(graph.distances[5], 10)
    assert mean == pytest.approx(stats.mean[5]) and sd == pytest.approx(stats.sd[5])


@pytest.mark.parametrize("method", ["csls", "mp"])
def test_reduction_lowers_skewness_on_a_hubby_dataset(method):
    graph = build_knn_graph(_hubby(), k=100, metric="l2", method="exact")
    effect = hubness_reduction_effect(graph, method, 10)
    assert effect["skewness_before"] > 3.0  # strong hubness
    assert effect["skewness_after"] < effect["skewness_before"] - 1.0
    assert effect["max_occurrence_after"] < effect["max_occurrence_before"]
    assert effect["antihubs_after"] < effect["antihubs_before"]
    assert 0.3 < effect["recall_vs_exact"] < 1.0
    assert effect["n_queries"] == 2000 and effect["pool"] == 100


def test_effect_with_none_changes_nothing_and_labels_are_counted():
    graph = build_knn_graph(_hubby(400, 50), k=100, metric="l2", method="exact")
    labels = np.arange(400) % 3
    e = hubness_reduction_effect(graph, "none", 5, labels=labels)
    assert e["skewness_after"] == e["skewness_before"] and e["recall_vs_exact"] == 1.0
    assert e["label_agreement_before"] == e["label_agreement_after"]
    # A sample of queries is seeded.
    a = hubness_reduction_effect(graph, "mp", 5, n_queries=150, seed=4)
    b = hubness_reduction_effect(graph, "mp", 5, n_queries=150, seed=4)
    assert a == b and a["n_queries"] == 150


def test_bad_input_is_refused_with_a_message():
    graph = build_knn_graph(_hubby(200, 20), k=30, metric="l2", method="exact")
    with pytest.raises(InvalidInputError, match="one of none, csls, mp"):
        check_method("qbnorm")
    with pytest.raises(InvalidInputError, match="neighbours"):
        resolve_neighbours("csls", 500)
    with pytest.raises(InvalidInputError, match="wider"):
        hubness_reduction_effect(graph, "csls", 10, neighbours=100)
    with pytest.raises(InvalidInputError, match="n_queries"):
        hubness_reduction_effect(graph, "csls", 10, n_queries=10**6)
    with pytest.raises(InvalidInputError, match="labels"):
        hubness_reduction_effect(graph, "csls", 10, labels=[1, 2])
    assert check_method(" CSLS ") == "csls" and check_method(None) == "none"
    assert pool_size(10, 10, 5000) == 100 and pool_size(50, 10, 5000) == 500
    assert pool_size(200, 10, 5000) == 2000 and pool_size(10, 10, 40) == 40
    # Never fewer than k: a k above the cap re-ranks its own k nearest (k items back).
    assert pool_size(2500, 30, 5000) == 2500 and pool_size(2500, 30, 2000) == 2000
    assert HUBNESS_PARAMS["neighbours"].high == 150


@pytest.fixture
def service(tmp_path):
    rng = np.random.default_rng(1)
    X = _hubby(600, 64, seed=1) + 0.8  # off-centre: hubs under cosine
    groups = np.array([f"g{i % 4}" for i in range(600)], dtype=object)
    import pandas as pd

    meta = pd.DataFrame({"group": groups, "size": rng.random(600)})
    with Store(tmp_path / "h.duckdb") as store:
        info = store.add_dataset(make_parsed(X, meta), name="hubby")
        yield NeighbourService(store), info.id, X


@pytest.mark.parametrize("method", ["csls", "mp"])
@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_search_returns_true_distances_and_scores(service, method, backend):
    svc, ds, X = service
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    for query in (svc.resolve(ds, row=7), svc.resolve(ds, vector=X[7] + 0.05)):
        answer = svc.search(ds, query, k=10, metric="cosine", backend=backend,
                            hubness_reduction=method)  # fmt: skip
        assert answer.hubness_reduction == method and len(answer.rows) == 10
        assert 7 not in answer.rows or query.exclude_row is None
        q = query.vector[0] / np.linalg.norm(query.vector[0])
        assert np.allclose(answer.distances, 1.0 - U[answer.rows] @ q, atol=1e-5)
        assert np.all(np.diff(answer.scores) <= 1e-12)  # ordered by the score
        data = answer.to_json()
        assert data["hubness_reduction"] == method
        assert set(data["neighbours"][0]) == {"row", "id", "distance", "score"}


def test_search_of_a_row_equals_the_effect_lists(service):
    """A row's exact reduced answer is the list the effect measures for it."""
    svc, ds, _ = service
    graph = get_or_build_graph(svc.store, ds, k=150, metric="cosine")
    stats = hub_stats(graph, 30)
    for row in (0, 99, 512):
        answer = svc.search(ds, svc.resolve(ds, row=row), k=10, metric="cosine",
                            backend="exact", hubness_reduction="mp")  # fmt: skip
        expected, _, _ = rerank(
            "mp", graph.indices[row, :100], graph.distances[row, :100], k=10,
            query_mean=stats.mean[row], query_sd=stats.sd[row], stats=stats,
        )  # fmt: skip
        assert answer.rows.tolist() == expected.tolist()


def test_search_with_a_filter_and_comparison(service):
    svc, ds, _ = service
    query = svc.resolve(ds, row=3)
    answer = svc.search(ds, query, k=5, metric="cosine", backend="hnsw", where=["group=g1"],
                        hubness_reduction="csls")  # fmt: skip
    assert answer.filtered == 150 and len(answer.rows) == 5
    assert all(r % 4 == 1 for r in answer.rows)
    cmp = svc.compare(ds, query, k=5, metric="l2", backend="hnsw", hubness_reduction="mp")
    assert cmp.exact.hubness_reduction == "mp" and cmp.exact.backend == "exact"
    assert 0.0 <= cmp.recall <= 1.0
    plain = svc.search(ds, query, k=5, metric="cosine", backend="exact")
    assert plain.scores is None and "hubness_reduction" not in plain.to_json()
    with pytest.raises(InvalidInputError, match="one of none, csls, mp"):
        svc.search(ds, query, k=5, metric="cosine", hubness_reduction="qbnorm")


def test_the_effect_is_stored_once_with_labels(service):
    svc, ds, _ = service
    first = get_or_measure_effect(svc.store, ds, metric="cosine", k=10, label_column="group")
    assert [r.method for r in first.rows] == ["none", "csls", "mp"]
    assert first.rows[0].recall_vs_exact == 1.0 and first.n_queries == 600
    assert all(r.label_agreement is not None for r in first.rows)
    again = get_or_measure_effect(svc.store, ds, metric="cosine", k=10, label_column="group")
    assert again.to_json() == first.to_json()
    assert len(svc.store.list_artifacts(kind="hubness_reduction")) == 1
    with pytest.raises(InvalidInputError, match="no metadata column"):
        get_or_measure_effect(svc.store, ds, metric="cosine", label_column="nope")
    with pytest.raises(InvalidInputError, match="categorical"):
        get_or_measure_effect(svc.store, ds, metric="cosine", label_column="size")
