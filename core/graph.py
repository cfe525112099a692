"""The one shared k-nearest-neighbour graph every consumer reads (docs/science.md §0.1).

UMAP, LargeVis, heat-geodesic, TwoNN/MLE/LID, hubness and the projection quality scores do
not compute neighbours: they take ``graph.head(k)`` of one :class:`KnnGraph` per
(dataset, metric), built once at the largest k any of them needs and stored in the database
(:func:`get_or_build_graph`).

Conventions: self is excluded **by row** (an identical duplicate of a point is still its
neighbour, at distance 0), rows are sorted by (distance, index), and distances are true
metric distances (Euclidean, not squared; ``1 - cos`` for cosine; ``1 - <a, b>`` for ip).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.artifacts import ArtifactSpec, fingerprint, get_or_compute, load, stored
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index import HnswIndex, exact_knn
from embscope.core.index_base import sort_rows, true_l2
from embscope.core.knn_build import cell_knn
from embscope.core.nndescent import nn_descent
from embscope.core.progress import ProgressFn
from embscope.core.validation import (
    Metric,
    check_k,
    check_metric,
    check_vectors,
    prepare_for_metric,
)

if TYPE_CHECKING:
    from embscope.core.store import DatasetInfo, Store

__all__ = [
    "vectors_of_points",
    "GRAPH_CODE_VERSION",
    "GRAPH_K",
    "GRAPH_MIN_K",
    "GraphHeads",
    "NNDESCENT_MIN_N",
    "KnnGraph",
    "PointNeighbours",
    "build_knn_graph",
    "find_graph",
    "get_or_build_graph",
    "measure_recall",
    "recall_at_k",
    "recall_per_row",
    "stored_width",
]

# Where search is exact (up to NNDESCENT_MIN_N points for cosine and l2) a stored graph is
# built at least GRAPH_K wide, the largest k any consumer asks for by default (heat-geodesic's
# kernel; LargeVis's paper K): width costs little there, and no consumer has to rebuild it.
# Above, the graph is approximate and its cost grows with its width, so it is built as wide as
# asked, at least GRAPH_MIN_K (LargeVis's 30, UMAP's 15, geometry's 20 and the quality
# scores' 10 all fit), and a wider ask builds a wider one.
GRAPH_K = 150
GRAPH_MIN_K = 30
# Cosine and l2 graphs: exact (cell-pruned) up to this many points, NN-descent above. At 50,000
# real texts exact search takes ~5 s, about what NN-descent takes; exact grows as n^2 on real
# data (its cells do not prune), NN-descent about as n (~50 s at 1M, bench/bench_graph.py).
NNDESCENT_MIN_N = 50_000
# Bump when the way graphs are built changes, so stored graphs are rebuilt. (NN-descent did
# not bump it: graphs stored before are exact or cells graphs, still right.)
GRAPH_CODE_VERSION = 2  # 2: cell-pruned sgemm ("cells") and the symmetric exact search
# Inner-product graphs: exact blocked BLAS up to this many points, HNSW above.
EXACT_MAX_N = 20_000
# Probe counts tried by the cell-pruned search, cheapest first (bench_graph.py).
CELL_PROBES = (1, 2, 3, 4, 6, 8)
# HNSW settings that reach recall >= 0.98 at k = 30 and k = 150 on 100k x 384
# sentence-like data (bench_graph.py); ef grows with k.
HNSW_GRAPH_M = 16
HNSW_GRAPH_EF_CONSTRUCTION = 100
HNSW_GRAPH_EF_FACTOR = 2.0
HNSW_GRAPH_EF_MIN = 100
# Stored graphs' first k columns kept per process for single rows (a clicked point's
# neighbours): n x k x 8 bytes each, 80 MB at 1M x 10, where reading the whole 1M x 30 graph
# from the store again would take ~0.6 s per click.
GRAPH_HEAD_CACHE = 4
# Heads wider than this (the API may ask up to the graph's width) are not kept: 4 x 1M x 150
# columns would pin 4.8 GB.
GRAPH_HEAD_MAX_K = 32
# Points checked against exact search: 500 x k neighbours pins recall to about +-0.001 and
# takes half the time of 1,000 (0.8 s against 1.6 s at 100k x 384).
RECALL_SAMPLE = 500
KIND = "knn_graph"


@dataclass(frozen=True)
class KnnGraph:
    """k nearest neighbours of every point, self excluded.

    Attributes
    ----------
    indices : int ndarray of shape (n, k)
        Row numbers of the neighbours, nearest first.
    distances : float32 ndarray of shape (n, k)
        True metric distances, ascending along each row.
    metric : str
        ``"cosine"``, ``"l2"`` or ``"ip"``.
    method : str
        ``"exact"``, ``"cells"`` (exact inside the searched cell pairs), ``"nndescent"`` or
        ``"hnsw"``.
    recall : float
        recall@k against exact search on ``recall_sample`` random points (1.0 when exact).
    params : mapping
        How it was built (method parameters, seed, recall sample size).
    seconds : float
        Build time in seconds, recall measurement excluded.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    method: str
    recall: float
    params: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.indices.shape != self.distances.shape or self.indices.ndim != 2:
            raise InvalidInputError(
                f"graph indices {self.indices.shape} and distances {self.distances.shape} "
                "must be two arrays of the same (n, k) shape"
            )

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        """Neighbours per point."""
        return int(self.indices.shape[1])

    def head(self, k: int) -> KnnGraph:
        """The graph of the first ``k`` neighbours of every point (views, no copy)."""
        k = check_k(k, self.k)
        return KnnGraph(
            self.indices[:, :k],
            self.distances[:, :k],
            self.metric,
            self.method,
            self.recall,
            dict(self.params),
            self.seconds,
        )

    def with_self(self, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """umap-learn's ``precomputed_knn`` convention: self first at distance 0.

        Returns exactly ``n_neighbors`` columns (default ``k + 1``): the point itself, then
        its ``n_neighbors - 1`` nearest neighbours. umap-learn silently uses every column it
        is given below 4,096 points, so the width must be exact (docs/science.md §0.1).
        """
        width = self.k + 1 if n_neighbors is None else int(n_neighbors)
        if width < 2 or width > self.k + 1:
            raise InvalidInputError(
                f"n_neighbors must be between 2 and {self.k + 1} for a {self.k}-NN graph"
            )
        own = np.arange(self.n, dtype=self.indices.dtype)[:, None]
        idx = np.hstack([own, self.indices[:, : width - 1]])
        dist = np.hstack([np.zeros((self.n, 1), np.float32), self.distances[:, : width - 1]])
        return idx, dist

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to persist."""
        return {"indices": self.indices, "distances": self.distances}


@dataclass(frozen=True)
class PointNeighbours:
    """A stored point's nearest neighbours and where they came from
    (:meth:`core.neighbours.NeighbourService.point_neighbours`).

    Attributes
    ----------
    rows : int64 ndarray of shape (k,)
        Row numbers of the neighbours, nearest first; the point itself left out.
    distances : float32 ndarray of shape (k,)
        True metric distances, ascending.
    description : str
        The point as a query names it (``"row 3 (id a)"``).
    source : str
        ``"graph"``: its row of the stored shared graph; ``"exact"``: exact search.
    graph_method, graph_recall, graph_k : str, float, int or None
        The graph's build method, its recorded recall and its stored width (the recall is
        recall@graph_k); None when the source is exact search.
    """

    rows: np.ndarray
    distances: np.ndarray
    description: str
    source: str
    graph_method: str | None = None
    graph_recall: float | None = None
    graph_k: int | None = None

    @property
    def label(self) -> str:
        """Where the neighbours came from, in words."""
        if self.source == "graph":
            return f"from the neighbour graph (recall@{self.graph_k} {self.graph_recall:.3f})"
        return "by exact search"


def vectors_of_points(X: Any, n: int, *, made: str = "graph") -> np.ndarray:
    """``X`` checked as the vectors of the ``n`` points a graph or layout was made from."""
    H = check_vectors(X, name="X")
    if H.shape[0] != n:
        raise InvalidInputError(
            f"X has {H.shape[0]} rows but the {made} has {n} points: pass the vectors the "
            f"{made} was made from"
        )
    return H


def recall_per_row(approx: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """recall@k of each row: the fraction of ``exact[i]`` (m, k) found in ``approx[i]``."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0] or exact.ndim != 2 or exact.shape[1] == 0:
        raise InvalidInputError(
            f"recall needs the same rows: approx {approx.shape}, exact {exact.shape}"
        )
    out = np.empty(exact.shape[0], dtype=np.float64)
    for start in range(0, exact.shape[0], 256):  # (rows, k, k) comparisons, in slices
        a, e = approx[start : start + 256], exact[start : start + 256]
        out[start : start + 256] = (e[:, :, None] == a[:, None, :]).any(axis=2).mean(axis=1)
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each row of ``exact`` (m, k) found in the same row of ``approx``."""
    return float(recall_per_row(approx, exact).mean())


def measure_recall(
    X: np.ndarray,
    indices: np.ndarray,
    *,
    metric: str,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
) -> tuple[float, int]:
    """recall@k of a kNN graph against exact search on ``sample`` random points.

    Returns ``(recall, points_checked)``, the way LargeVis's ``test_accuracy`` does it.
    """
    n, k = indices.shape
    m = min(n, int(sample))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    P = prepare_for_metric(X, metric)
    exact_idx, _ = exact_knn(P[rows], P, k, metric=metric, exclude=rows)
    return recall_at_k(indices[rows], exact_idx), m


def stored_width(k: int, n: int, metric: str) -> int:
    """How wide a stored graph is built when a consumer asks for ``k`` neighbours of ``n``
    points: at least :data:`GRAPH_K` where search is exact, at least :data:`GRAPH_MIN_K`
    where it is approximate (its cost grows with the width); never more than n - 1."""
    exact = n <= (EXACT_MAX_N if metric == "ip" else NNDESCENT_MIN_N)
    return max(1, min(max(int(k), GRAPH_K if exact else GRAPH_MIN_K), n - 1))


def _hnsw_ef(k: int) -> int:
    return max(HNSW_GRAPH_EF_MIN, int(np.ceil(HNSW_GRAPH_EF_FACTOR * (k + 1))))


def build_knn_graph(
    X: np.ndarray,
    *,
    k: int,
    metric: str = "cosine",
    method: str = "auto",
    seed: int = 0,
    progress: ProgressFn | None = None,
    recall_sample: int = RECALL_SAMPLE,
) -> KnnGraph:
    """Build the k-NN graph of the rows of ``X`` (self excluded), the fastest way we have to
    recall 0.98.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    k : int
        Neighbours per point, 1 <= k < n.
    metric : {"cosine", "l2", "ip"}
    method : {"auto", "exact", "cells", "nndescent", "hnsw"}
        ``cells`` (the default for cosine and l2 up to :data:`NNDESCENT_MIN_N` points): exact
        search restricted to the pairs of k-means cells that hold the neighbours, with the
        fewest probes that reach recall 0.98 on a sample; it becomes ``exact`` by itself when
        pruning would not pay (:mod:`core.knn_build`). ``nndescent`` (the default above):
        NN-descent from an exact in-cell start (:mod:`core.nndescent`), recall measured on a
        sample. ``exact``: every pair, symmetric blocked sgemm. ``hnsw``: hnswlib. Inner
        product: exact up to :data:`EXACT_MAX_N` points, HNSW above.
    seed : int
        Seeds the HNSW levels, NN-descent's cells and samples, and the recall sample.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).
    recall_sample : int
        Points checked against exact search to measure recall (approximate methods).

    Returns
    -------
    KnnGraph
    """
    X = check_vectors(X)
    metric = check_metric(metric)
    n = X.shape[0]
    if n < 2:
        raise InvalidInputError("a neighbour graph needs at least 2 points")
    k = check_k(k, n - 1)
    if method == "auto":
        # Cell-pruned sgemm handles cosine and l2 (and falls back to exact by itself);
        # inner product is no distance to cluster by, so it goes exact or through HNSW.
        if metric == "ip":
            method = "exact" if n <= EXACT_MAX_N else "hnsw"
        else:
            method = "cells" if n <= NNDESCENT_MIN_N else "nndescent"
    if method not in ("exact", "cells", "nndescent", "hnsw"):
        raise InvalidInputError(
            f"unknown graph method {method!r}: use auto, exact, cells, nndescent or hnsw"
        )
    if method in ("cells", "nndescent") and metric == "ip":
        raise InvalidInputError(
            f"the {method} method needs cosine or l2 (inner product is no distance)"
        )

    def report(fraction: float, message: str, low: float, high: float) -> bool:
        return bool(progress and progress(low + (high - low) * fraction, message))

    rows = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    params: dict[str, Any] = {"k": k, "metric": metric, "method": method, "seed": seed}
    recall, checked = 1.0, 0
    if method in ("exact", "cells") and metric != "ip":
        idx, dist, info = cell_knn(
            X, k, metric, seed=seed, probes=() if method == "exact" else CELL_PROBES,
            progress=lambda f, m: report(f, m, 0.0, 0.95),
        )  # fmt: skip
        if metric == "l2":
            # The sgemm ranks by -|x - y|^2 / 2 in float32; report the distances exactly.
            idx, dist = sort_rows(idx, true_l2(X, X, idx))
        method = "exact" if info["probes"] == "all (exact)" else "cells"
        params.update(method=method, cells=info["cells"], probes=info["probes"],
                      searched=info["searched"])  # fmt: skip
        seconds = time.perf_counter() - t0
        if method == "cells":
            recall, checked = measure_recall(X, idx, metric=metric, sample=recall_sample,
                                             seed=seed)  # fmt: skip
    elif method == "nndescent":
        idx, sim, info = nn_descent(
            X, k, metric, seed=seed, progress=lambda f, m: report(f, m, 0.0, 0.95)
        )
        if metric == "l2":
            idx, dist = sort_rows(idx, true_l2(X, X, idx))
        else:
            dist = np.maximum(1.0 - sim, 0.0).astype(np.float32)
        params.update(cells=info["cells"], build_k=info["build_k"], rounds=info["rounds"],
                      max_candidates=info["max_candidates"])  # fmt: skip
        seconds = time.perf_counter() - t0
        recall, checked = measure_recall(X, idx, metric=metric, sample=recall_sample, seed=seed)
    elif method == "exact":
        P = prepare_for_metric(X, metric)
        idx, dist = exact_knn(
            P, P, k, metric=metric, exclude=rows, progress=lambda f, m: report(f, m, 0.0, 1.0)
        )
        seconds = time.perf_counter() - t0
    else:
        ef = _hnsw_ef(k)
        params.update(M=HNSW_GRAPH_M, ef_construction=HNSW_GRAPH_EF_CONSTRUCTION, ef=ef)
        index = HnswIndex(
            metric, M=HNSW_GRAPH_M, ef_construction=HNSW_GRAPH_EF_CONSTRUCTION, ef=ef, seed=seed
        )
        index.build(X, progress=lambda f, m: report(f, m, 0.0, 0.6))
        parts_i, parts_d = [], []
        chunk = 5_000
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            i, d = index.query(X[start:stop], k, exclude=rows[start:stop], ef=ef)
            parts_i.append(i)
            parts_d.append(d)
            if report(stop / n, f"finding each item's neighbours: {stop:,} of {n:,}", 0.6, 0.95):
                raise OperationCancelled("building the neighbour graph was cancelled")
        idx, dist = np.vstack(parts_i), np.vstack(parts_d)
        seconds = time.perf_counter() - t0
        recall, checked = measure_recall(X, idx, metric=metric, sample=recall_sample, seed=seed)
    params["recall_sample"] = checked
    if progress:
        progress(1.0, f"neighbour lists ready ({k} per item)")
    index_dtype = np.int32 if n < 2**31 else np.int64
    return KnnGraph(
        np.ascontiguousarray(idx, dtype=index_dtype),
        np.ascontiguousarray(dist, dtype=np.float32),
        metric,
        method,
        float(recall),
        params,
        seconds,
    )


# -- persistence: one graph per (dataset, metric) -------------------------------------------


@dataclass(frozen=True)
class GraphRequest:
    """The neighbour graph of a stored dataset for ``metric``, at least ``k`` wide."""

    dataset: DatasetInfo
    metric: Metric
    k: int
    method: str = "auto"


class GraphSpec(ArtifactSpec[GraphRequest, KnnGraph]):
    """Stored graphs: one per (dataset, metric) and width, built :func:`stored_width` wide;
    the widest answers every narrower request."""

    kind = KIND
    result_type = KnnGraph
    code_version = GRAPH_CODE_VERSION

    def key(self, request: GraphRequest) -> tuple[Any, ...]:
        return (request.dataset.fingerprint, request.metric, request.k, request.method)

    def describe(self, request: GraphRequest) -> dict[str, Any]:
        return {"metric": request.metric, "k": request.k, "method": request.method}

    def find(self, store: Store, request: GraphRequest) -> str | None:
        """The widest stored graph of these vectors and metric with at least ``k`` neighbours
        (of any dataset holding the same vectors and ids: a graph is keyed by them)."""
        best: tuple[int, str] | None = None
        for record in stored(store, self):
            r = record.request
            if (
                record.version == GRAPH_CODE_VERSION
                and r.get("metric") == request.metric
                and r.get("dataset_fingerprint") == request.dataset.fingerprint
                and int(r.get("k", 0)) >= request.k
                and (best is None or int(r["k"]) > best[0])
            ):
                best = (int(r["k"]), record.fingerprint)
        return None if best is None else best[1]

    def compute(self, store: Store, request: GraphRequest, progress: ProgressFn | None) -> KnnGraph:
        info = request.dataset
        width = stored_width(request.k, info.n, request.metric)
        graph = build_knn_graph(
            store.load_vectors(info.id),
            k=width,
            metric=request.metric,
            method=request.method,
            progress=progress,
        )
        return replace(graph, params=dict(graph.params, code_version=GRAPH_CODE_VERSION))

    def lock_key(self, request: GraphRequest) -> str:
        # One graph per (vectors, metric) answers every width: one build at a time of it.
        return f"{request.dataset.fingerprint}:{request.metric}"

    def fingerprint_of(self, request: GraphRequest, result: KnnGraph) -> str:
        # Keyed by what was built (its width and the method "auto" chose), not by the ask.
        return fingerprint(self, replace(request, k=result.k, method=result.method))

    def stored_request(self, request: GraphRequest, result: KnnGraph) -> dict[str, Any]:
        return {
            "metric": result.metric,
            "k": result.k,
            "method": result.method,
            "dataset_fingerprint": request.dataset.fingerprint,
        }

    def lineage(self, request: GraphRequest, result: KnnGraph) -> dict[str, Any]:
        return {"dataset_fingerprint": request.dataset.fingerprint, "recall": result.recall}

    def label(self, request: GraphRequest) -> str:
        return f"{request.metric} neighbour graph of {request.dataset.name}"


GRAPHS = GraphSpec()


def find_graph(store: Store, dataset_id: int, *, metric: str, k: int = 1) -> KnnGraph | None:
    """The widest stored graph of this dataset and metric with at least ``k`` neighbours."""
    request = GraphRequest(store.get_dataset(dataset_id), check_metric(metric), int(k))
    fp = GRAPHS.find(store, request)
    return None if fp is None else load(store, GRAPHS, fp)


def get_or_build_graph(
    store: Store,
    dataset_id: int,
    *,
    k: int,
    metric: str = "cosine",
    method: str = "auto",
    progress: ProgressFn | None = None,
) -> KnnGraph:
    """The dataset's stored graph cut to ``k`` neighbours; built and stored first if missing.

    A missing graph is built :func:`stored_width` wide: at least :data:`GRAPH_K` (150)
    neighbours where search is exact, so later consumers that need more than this one find
    it too; as wide as asked (at least :data:`GRAPH_MIN_K`) above :data:`NNDESCENT_MIN_N`
    points, where a wider ask later builds a wider graph. A read-only store keeps
    it in the artifact layer's bounded memory cache, not on disk.
    """
    info = store.get_dataset(dataset_id)
    request = GraphRequest(info, check_metric(metric), check_k(k, info.n - 1), method)
    graph = get_or_compute(store, GRAPHS, request, progress=progress)
    assert graph is not None
    return graph.head(request.k)


class GraphHeads:
    """Stored graphs' first ``k`` columns, kept to read single rows from (a clicked point's
    neighbours): one per (vectors, stored graph, k), the least recently used dropped past
    ``limit``, none wider than :data:`GRAPH_HEAD_MAX_K`; a wider graph stored later is found
    and kept anew. Safe to share between threads; one whole graph is read at a time."""

    def __init__(self, limit: int = GRAPH_HEAD_CACHE):
        self.limit = limit
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._heads: dict[tuple[str, str, int], tuple[KnnGraph, int]] = {}

    def row(
        self, store: Store, info: DatasetInfo, row: int, description: str, *, metric: str, k: int
    ) -> PointNeighbours | None:
        """Row ``row``'s ``k`` nearest from the widest stored graph of ``info`` and ``metric``
        at least ``k`` wide (never built here), or None when there is none."""
        k = check_k(k, info.n - 1)
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < info.n:
            raise InvalidInputError(f"row must be a row number from 0 to {info.n - 1}, got {row!r}")
        fp = GRAPHS.find(store, GraphRequest(info, check_metric(metric), k))
        if fp is None:
            return None
        key = (info.fingerprint, fp, k)
        with self._load_lock:  # one whole graph read at a time, each read once
            with self._lock:
                kept = self._heads.get(key)
                if kept is not None:
                    self._heads[key] = self._heads.pop(key)  # most recently used last
            if kept is None:
                graph = load(store, GRAPHS, fp)
                if graph is None:  # deleted meanwhile
                    return None
                head = graph.head(k)  # copied: the whole graph is not kept alive by a view
                kept = (replace(head, indices=head.indices.copy(),
                                distances=head.distances.copy()), graph.k)  # fmt: skip
                if k <= GRAPH_HEAD_MAX_K:  # a wider head is read, used and not kept
                    with self._lock:
                        self._heads[key] = kept
                        while len(self._heads) > self.limit:
                            self._heads.pop(next(iter(self._heads)))
        graph, width = kept
        return PointNeighbours(
            graph.indices[row].astype(np.int64), graph.distances[row].copy(), description,
            "graph", graph.method, graph.recall, width,
        )  # fmt: skip

    def forget(self, fingerprint: str | None = None) -> None:
        """Drop the heads kept for the vectors with this fingerprint, or all."""
        with self._lock:
            for key in [h for h in self._heads if fingerprint in (None, h[0])]:
                del self._heads[key]
