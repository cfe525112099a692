"""A clicked point's neighbours (NeighbourService.point_neighbours): its row of the stored
shared graph when one is wide enough and no filter is on, else exact search, checked against
scikit-learn's NearestNeighbors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

import embscope.core.graph as graph_mod
from embscope.core.errors import InvalidInputError
from embscope.core.graph import find_graph, get_or_build_graph
from embscope.core.neighbours import NeighbourService
from tests.helpers import make_parsed

N, D, K = 300, 8, 10


@pytest.fixture
def points(store):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, N)
    X = (rng.standard_normal((N, D)) + 3 * rng.standard_normal((3, D))[labels]).astype(np.float32)
    meta = pd.DataFrame({"part": [f"p{v}" for v in labels]})
    info = store.add_dataset(make_parsed(X, meta), name="points")
    return store, info, X, labels


def _sklearn(X: np.ndarray, row: int, k: int, metric: str, among: np.ndarray | None = None):
    """sklearn's k nearest of ``row`` among ``among`` (default all rows), itself left out."""
    rows = np.arange(len(X)) if among is None else among
    rows = rows[rows != row]
    nn = NearestNeighbors(n_neighbors=k, metric="euclidean" if metric == "l2" else metric)
    dist, idx = nn.fit(X[rows]).kneighbors(X[row : row + 1])
    return rows[idx[0]], dist[0]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_without_a_graph_the_answer_is_exact_and_agrees_with_sklearn(points, metric):
    store, info, X, _ = points
    service = NeighbourService(store)
    for row in (0, 123, N - 1):
        found = service.point_neighbours(info.id, row, k=K, metric=metric)
        assert found.source == "exact" and found.label == "by exact search"
        assert found.graph_k is None and found.description == f"row {row} (id {row})"
        rows, dist = _sklearn(X, row, K, metric)
        np.testing.assert_array_equal(found.rows, rows)
        np.testing.assert_allclose(found.distances, dist, atol=1e-5)
    assert find_graph(store, info.id, metric=metric) is None  # none was built for it


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_a_stored_graph_answers_with_its_row_read_once(points, metric, monkeypatch):
    store, info, X, _ = points
    get_or_build_graph(store, info.id, k=15, metric=metric)  # stored 150 wide (n <= 50,000)
    graph = find_graph(store, info.id, metric=metric)
    assert graph is not None and graph.k == 150
    service = NeighbourService(store)
    loads = []
    real_load = graph_mod.load
    monkeypatch.setattr(graph_mod, "load", lambda *a, **kw: loads.append(1) or real_load(*a, **kw))

    def no_search(*args, **kwargs):
        raise AssertionError("the graph path must not search")

    monkeypatch.setattr(service, "search", no_search)
    for row in (0, 57, N - 1):
        found = service.point_neighbours(info.id, row, k=K, metric=metric)
        assert found.source == "graph" and found.graph_k == 150
        assert found.graph_method == graph.method and found.graph_recall == graph.recall
        assert found.label == f"from the neighbour graph (recall@150 {graph.recall:.3f})"
        np.testing.assert_array_equal(found.rows, graph.indices[row, :K])
        np.testing.assert_array_equal(found.distances, np.maximum(graph.distances[row, :K], 0))
        assert found.rows.dtype == np.int64 and row not in found.rows
        # the graph here is exact: its row is sklearn's answer too
        rows, dist = _sklearn(X, row, K, metric)
        np.testing.assert_array_equal(found.rows, rows)
        np.testing.assert_allclose(found.distances, dist, atol=1e-5)
    assert len(loads) == 1  # the graph read once, its first K columns kept


def test_a_filter_a_narrow_graph_or_another_metric_answer_exactly(points):
    store, info, X, labels = points
    get_or_build_graph(store, info.id, k=15, metric="l2")  # 150 wide
    service = NeighbourService(store)
    row = int(np.flatnonzero(labels == 1)[0])
    # a filter: exact search over the matching rows, though a graph is stored
    found = service.point_neighbours(info.id, row, k=K, metric="l2", where=["part=p1"])
    assert found.source == "exact"
    rows, dist = _sklearn(X, row, K, "l2", among=np.flatnonzero(labels == 1))
    np.testing.assert_array_equal(found.rows, rows)
    np.testing.assert_allclose(found.distances, dist, atol=1e-5)
    # wider than the stored graph: exact (and nothing is built)
    wide = service.point_neighbours(info.id, row, k=200, metric="l2")
    assert wide.source == "exact" and wide.rows.size == 200
    np.testing.assert_array_equal(wide.rows, _sklearn(X, row, 200, "l2")[0])
    # no cosine graph is stored: exact
    assert service.point_neighbours(info.id, row, k=K, metric="cosine").source == "exact"
    assert find_graph(store, info.id, metric="l2", k=151) is None
    assert find_graph(store, info.id, metric="cosine") is None


def test_bad_input_is_refused(points):
    store, info, _, _ = points
    get_or_build_graph(store, info.id, k=15, metric="cosine")
    service = NeighbourService(store)
    for bad, match in (
        ({"row": N}, "outside the dataset"),
        ({"row": -1}, "outside the dataset"),
        ({"row": 1.5}, "whole number"),
        ({"row": 0, "k": 0}, "at least 1"),
        ({"row": 0, "k": N}, "more neighbours"),
        ({"row": 0, "metric": "hamming"}, "metric"),
    ):
        args = {"metric": "cosine", "k": K, **bad}
        with pytest.raises(InvalidInputError, match=match):
            service.point_neighbours(info.id, args.pop("row"), **args)
