"""Hubness reduction at query time: CSLS and mutual proximity (docs/science.md §6.6).

Hubs (:mod:`core.geometry.hubness`) crowd the neighbour lists of many queries. Both methods
here re-rank a bounded **candidate pool**: the ``pool_size(k)`` = max(10 k, 100) nearest
items by the true metric (capped at :data:`POOL_MAX` and at the items available) are fetched
by the ordinary search (exact, or the index, with the metadata filter if one is given),
re-scored, and the ``k`` best by the reduced score are returned. Their ``distance`` stays the
true metric distance; the reduced score that ordered them is returned beside it (higher is
nearer for both methods; ties go to the smaller distance, then the smaller row).

What each database row contributes is read from the shared neighbour graph
(:func:`core.graph.get_or_build_graph`, ``graph.head(K)``): :class:`HubStats` holds, per row,
the mean and standard deviation (ddof 0) of the distances to its ``K`` nearest other rows.
The query's own statistics come from its ``K`` nearest database rows: its graph row when the
query is a database row (self excluded), else the first ``K`` of its nearest rows.

Methods (``METHODS``):

``csls``
    Cross-domain similarity local scaling (Conneau, Lample, Ranzato, Denoyer & Jégou, "Word
    translation without parallel data", ICLR 2018): ``2 s(q, x) - r(q) - r(x)``, ``r(.)`` the
    mean similarity to its ``K`` nearest database rows (K = 10 in the paper). On similarity
    ``s = 1 - d`` (the cosine, or the inner product) and on ``s = -d`` (l2) alike this is
    ``score = m(q) + m(x) - 2 d(q, x)`` with ``m(.)`` the mean *distance* to the K nearest:
    for cosine exactly the paper's CSLS; for l2 CSLS on the similarity ``-d``; for ip CSLS on
    the inner product. ``r(q)`` is the same for every candidate of a query, so it changes the
    score and not the order.
``mp``
    Mutual proximity, the Gaussian variant with independent distributions ("MP-GaussI",
    Schnitzer, Flexer, Schedl & Widmer, "Local and global scaling reduce hubs in space", JMLR
    2012): ``score = P(D_q > d) * P(D_x > d)``, each point's distances modelled as a normal
    distribution; the score is the probability that ``x`` is closer to ``q`` than a typical one
    of ``q``'s K nearest is to ``q``, and closer than a typical one of ``x``'s K nearest is
    to ``x`` (with the local estimate below, "typical" means among the K nearest, not among
    all items). Each point's mean and standard deviation are estimated from its ``K``
    nearest neighbours (K = 30) in the shared graph, not from all its distances: the local
    estimate of scikit-hubness's ``MutualProximity(method="normal")`` and of Feldbauer,
    Leodolter, Plant & Flexer ("Fast approximate hubness reduction for large
    high-dimensional data", ICBK 2018), which needs no distance beyond the graph and no
    sample. It works on any dissimilarity, so every metric (cosine, l2, ip) is defined.

Why these two, and not QB-Norm (Bogolin et al., CVPR 2022): QB-Norm's dynamic inverted
softmax is built for cross-modal retrieval, where queries (captions) come from another
distribution than the gallery and a bank of such queries is at hand; here the queries are
mostly the database's own items or texts embedded by the same model, so a bank would be a
sample of the database itself, and its activation-set rule leaves most queries unchanged.
CSLS and mutual proximity are symmetric re-scorings defined from each point's own
neighbourhood, need only the graph every consumer already shares, and mutual proximity is
among the strongest reductions in Feldbauer & Flexer's comparison ("A comprehensive
empirical comparison of hubness reduction in high-dimensional spaces", KAIS 2019). Measured
on the demo text set (2,098 docstrings, MiniLM, k = 10, all rows as queries): k-occurrence
skewness 0.96 -> 0.65 (CSLS) and -0.04 (MP), recall@10 against the unreduced exact lists
0.80 and 0.83.

:func:`hubness_reduction_effect` measures a method on a dataset from its graph alone: the
k-occurrence skewness of the k-NN lists of a seeded sample of its rows (all rows up to
:data:`EFFECT_QUERIES`) before and after, and recall@k of the reduced lists against the
unreduced ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr  # the normal distribution function (imported once, untimed)

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.hubness import skewness
from embscope.core.graph import GRAPH_K, KnnGraph, recall_at_k
from embscope.core.params import Param, ParamTable
from embscope.core.progress import ProgressFn, check_cancel
from embscope.core.validation import check_int, check_k, check_seed

__all__ = [
    "DEFAULT_NEIGHBOURS",
    "EFFECT_QUERIES",
    "HUBNESS_PARAMS",
    "METHODS",
    "METHOD_LABELS",
    "POOL_MAX",
    "HubStats",
    "check_method",
    "hub_stats",
    "hubness_reduction_effect",
    "pool_size",
    "query_stats",
    "rerank",
    "resolve_neighbours",
    "scores",
]

METHODS = ("none", "csls", "mp")
METHOD_LABELS: Mapping[str, str] = {
    "none": "Off",
    "csls": "CSLS",
    "mp": "Mutual proximity",
}
# K, the neighbours whose distances describe a point: the paper's 10 for CSLS; 30 for mutual
# proximity (its normal fit needs more points, and 30 is the narrowest shared graph, so it
# never makes a graph be built wider; on the demo text set K = 30 gives the lowest skewness).
DEFAULT_NEIGHBOURS: Mapping[str, int] = {"csls": 10, "mp": 30}
# The candidate pool: max(POOL_FACTOR * k, POOL_MIN, K) nearest by the true metric, at most
# POOL_MAX (k <= 200 on every page and command).
POOL_FACTOR = 10
POOL_MIN = 100
POOL_MAX = 2_000
# Queries of the measured effect: every row up to this many, a seeded sample above.
EFFECT_QUERIES = 5_000
EFFECT_QUERIES_MAX = 20_000
# A standard deviation below this is taken as this (all K neighbours at one distance).
_SD_FLOOR = 1e-12
_CHUNK = 1_024

HUBNESS_PARAMS = ParamTable(
    "hubness reduction",
    (
        Param(
            "method", "choice", "none", 0, 1, "Reduce hubs",
            "Re-rank the nearest candidates so that hubs (items that are near almost "
            "everything) stop crowding every answer: CSLS or mutual proximity.",
            choices=METHODS,
        ),
        Param(
            "neighbours", "int", None, 2, GRAPH_K, "Neighbours per point (K)",
            "How many nearest neighbours describe each point's neighbourhood: 10 for CSLS, "
            "30 for mutual proximity by default.",
            auto=True, below_n=True,
        ),
    ),
)  # fmt: skip


def check_method(method: Any) -> str:
    """``method`` as one of :data:`METHODS`; InvalidInputError otherwise."""
    if method is None:
        return "none"
    if isinstance(method, str):
        method = method.strip().lower()
    checked: str = HUBNESS_PARAMS["method"].check(method, owner="hubness reduction")
    return checked


def resolve_neighbours(method: str, neighbours: Any = None, *, n: int | None = None) -> int:
    """K for ``method``: ``neighbours`` checked (2 to 150, below the number of items ``n``),
    or the method's default (capped at n - 1)."""
    method = check_method(method)
    value = HUBNESS_PARAMS["neighbours"].check(neighbours, n=n, owner="hubness reduction")
    if value is None:
        value = DEFAULT_NEIGHBOURS.get(method, DEFAULT_NEIGHBOURS["csls"])
        if n is not None:
            value = min(value, n - 1)
    if value < 1:
        raise InvalidInputError("hubness reduction needs a dataset of at least 2 items")
    return int(value)


def pool_size(k: int, neighbours: int, available: int) -> int:
    """How many nearest candidates are re-ranked: max(10 k, 100, K), at most
    :data:`POOL_MAX` (but never fewer than k) and the ``available`` items."""
    want = max(POOL_FACTOR * int(k), POOL_MIN, int(neighbours))
    # Never fewer than k: a k above POOL_MAX re-ranks its own k nearest.
    return max(0, min(max(min(want, POOL_MAX), int(k)), int(available)))


@dataclass(frozen=True)
class HubStats:
    """Per database row: mean and standard deviation (ddof 0) of the distances to its ``K``
    nearest other rows, read from the shared graph (float64 arrays of shape (n,))."""

    neighbours: int
    mean: np.ndarray
    sd: np.ndarray

    @property
    def n(self) -> int:
        return int(self.mean.shape[0])


def hub_stats(graph: KnnGraph, neighbours: int) -> HubStats:
    """:class:`HubStats` of every row from ``graph.head(neighbours)`` (in row chunks)."""
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError("hub_stats needs a KnnGraph (core.graph.get_or_build_graph)")
    K = check_int(neighbours, "neighbours", low=1)
    if K > graph.k:
        raise InvalidInputError(
            f"the neighbour graph holds {graph.k} neighbours per point, fewer than the K = {K} "
            "asked for: ask get_or_build_graph for at least K"
        )
    mean = np.empty(graph.n, np.float64)
    sd = np.empty(graph.n, np.float64)
    for start in range(0, graph.n, 65_536):
        D = np.asarray(graph.distances[start : start + 65_536, :K], dtype=np.float64)
        mean[start : start + len(D)], sd[start : start + len(D)] = D.mean(axis=1), D.std(axis=1)
    mean.setflags(write=False)
    sd.setflags(write=False)
    return HubStats(K, mean, sd)


def query_stats(distances: Any, neighbours: int) -> tuple[float, float]:
    """Mean and standard deviation (ddof 0) of the first ``neighbours`` of a query's nearest
    distances (ascending; fewer when fewer are given)."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)[: int(neighbours)]
    if d.size == 0:
        raise InvalidInputError("the query has no neighbours to describe its neighbourhood")
    return float(d.mean()), float(d.std())


def scores(
    method: str,
    distances: np.ndarray,
    rows: np.ndarray,
    query_mean: Any,
    query_sd: Any,
    stats: HubStats,
) -> np.ndarray:
    """The reduced scores (float64, higher is nearer) of candidates ``rows`` at true
    ``distances`` from their queries, both of shape (m, p) or (p,); ``query_mean`` and
    ``query_sd`` per query (shape (m,) or scalars)."""
    method = check_method(method)
    d = np.asarray(distances, dtype=np.float64)
    r = np.asarray(rows, dtype=np.int64)
    if d.shape != r.shape:
        raise InvalidInputError(f"distances {d.shape} and rows {r.shape} must have one shape")
    if r.size and (r.min() < 0 or r.max() >= stats.n):
        raise InvalidInputError(f"candidate rows must be 0 to {stats.n - 1}")
    qm = np.asarray(query_mean, dtype=np.float64)
    qs = np.asarray(query_sd, dtype=np.float64)
    if d.ndim == 2:
        qm, qs = qm.reshape(-1, 1), qs.reshape(-1, 1)
    out: np.ndarray
    if method == "none":
        out = -d
    elif method == "csls":
        # 2 s(q,x) - r(q) - r(x) with s = 1 - d (cosine, ip) or -d (l2): the same numbers.
        out = qm + stats.mean[r] - 2.0 * d
    else:
        p_query = ndtr(-(d - qm) / np.maximum(qs, _SD_FLOOR))
        p_item = ndtr(-(d - stats.mean[r]) / np.maximum(stats.sd[r], _SD_FLOOR))
        out = np.asarray(p_query * p_item, dtype=np.float64)
    return out


def _order(score: np.ndarray, distances: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions sorted by score (descending), then distance, then row (along the last axis)."""
    return np.lexsort((rows, np.asarray(distances, np.float64), -score), axis=-1)


def rerank(
    method: str,
    rows: Any,
    distances: Any,
    *,
    k: int,
    query_mean: float,
    query_sd: float,
    stats: HubStats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best of one query's candidate pool by the reduced score.

    Parameters
    ----------
    method : {"csls", "mp"} (or "none": the pool's first k, score ``-distance``)
    rows, distances : arrays of shape (p,)
        The candidate pool: row numbers and true metric distances.
    k : int
    query_mean, query_sd : float
        The query's :func:`query_stats`.
    stats : HubStats

    Returns
    -------
    rows : int64 (min(k, p),), distances : float32 (true distances), scores : float64
    """
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    d = np.asarray(distances, dtype=np.float32).reshape(-1)
    s = scores(method, d, r, query_mean, query_sd, stats)
    top = _order(s, d, r)[: int(k)]
    return r[top], d[top], s[top]


def _occurrence(lists: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(lists.ravel(), minlength=n).astype(np.int64)


def hubness_reduction_effect(
    graph: KnnGraph,
    method: str,
    k: int = 10,
    *,
    neighbours: int | None = None,
    n_queries: int = EFFECT_QUERIES,
    seed: int = 0,
    labels: Any = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """What ``method`` does to the k-NN lists of a dataset, measured from its graph alone.

    The queries are the dataset's rows (all up to ``n_queries``, a seeded sample above),
    self excluded. The unreduced lists are ``graph.head(k)`` (exact up to 50,000 items); the
    reduced ones re-rank each query's first ``min(max(10 k, 100, K), graph.k)`` graph
    neighbours: the pool a query through :meth:`core.neighbours.NeighbourService.search` with
    exact search re-ranks when the graph is at least that wide, else the graph's width (the
    ``"pool"`` of the result says which; the lists can then differ slightly from live ones).

    Parameters
    ----------
    graph : KnnGraph
        The dataset's shared graph, at least ``max(k, K)`` wide (wider gives a larger pool).
    method : {"csls", "mp", "none"}
    k : int
    neighbours : int, optional
        K (default: the method's, :data:`DEFAULT_NEIGHBOURS`).
    n_queries : int
        At most this many queries, 1 to 20,000.
    seed : int
        Seeds the sample of queries when there are more rows than ``n_queries``.
    labels : array of shape (n,), optional
        Class labels: the share of each query's k neighbours with its label is reported too.

    Returns
    -------
    dict
        ``method``, ``k``, ``neighbours`` (K), ``pool``, ``n_queries``,
        ``skewness_before`` / ``skewness_after`` (k-occurrence skewness of the queries' lists,
        :func:`core.geometry.hubness.skewness`; over all n rows as candidates),
        ``recall_vs_exact`` (recall@k of the reduced lists against the unreduced ones),
        ``antihubs_before`` / ``antihubs_after`` (rows in no query's list),
        ``max_occurrence_before`` / ``max_occurrence_after`` (the largest k-occurrence), and
        with ``labels`` ``label_agreement_before`` / ``label_agreement_after``.
    """
    method = check_method(method)
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError("the effect is measured on a KnnGraph (get_or_build_graph)")
    n = graph.n
    k = check_k(k, graph.k)
    K = resolve_neighbours(method, neighbours, n=n)
    if K > graph.k:
        raise InvalidInputError(
            f"the neighbour graph holds {graph.k} neighbours per point: K = {K} needs a wider "
            "one (get_or_build_graph with k >= K)"
        )
    n_queries = check_int(n_queries, "n_queries", low=1, high=EFFECT_QUERIES_MAX)
    seed = check_seed(seed)
    if n <= n_queries:
        queries = np.arange(n, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(n, size=n_queries, replace=False)).astype(np.int64)
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != n:
            raise InvalidInputError(f"labels must be one value per row ({n}), got {y.shape}")
    pool = min(max(POOL_FACTOR * k, POOL_MIN, K), graph.k)
    stats = hub_stats(graph, K)
    before = np.asarray(graph.indices[queries, :k], dtype=np.int64)
    after = np.empty_like(before)
    for start in range(0, len(queries), _CHUNK):
        q = queries[start : start + _CHUNK]
        P = np.asarray(graph.indices[q, :pool], dtype=np.int64)
        D = np.asarray(graph.distances[q, :pool], dtype=np.float64)
        S = scores(method, D, P, stats.mean[q], stats.sd[q], stats)
        top = _order(S, D, P)[:, :k]
        after[start : start + len(q)] = np.take_along_axis(P, top, axis=1)
        done = min(start + _CHUNK, len(queries))
        check_cancel(progress, done / len(queries), f"re-ranked {done:,} queries", "measuring")
    n_before, n_after = _occurrence(before, n), _occurrence(after, n)
    out: dict[str, Any] = {
        "method": method,
        "k": k,
        "neighbours": K,
        "pool": int(pool),
        "n_queries": int(len(queries)),
        "skewness_before": skewness(n_before),
        "skewness_after": skewness(n_after),
        "recall_vs_exact": recall_at_k(after, before),
        "antihubs_before": int((n_before == 0).sum()),
        "antihubs_after": int((n_after == 0).sum()),
        "max_occurrence_before": int(n_before.max()),
        "max_occurrence_after": int(n_after.max()),
    }
    if y is not None:
        own = y[queries][:, None]
        out["label_agreement_before"] = float(np.mean(y[before] == own))
        out["label_agreement_after"] = float(np.mean(y[after] == own))
    return out
