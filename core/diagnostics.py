"""ANN diagnostics for the Neighbours page: what approximate search costs, and where.

Three measurements, all against exact search (:func:`core.index.exact_knn`) as ground truth:

* :func:`recall_vs_ef` — recall@k, latency and throughput of an HNSW index as the search
  beam ``ef`` grows (the speed/accuracy dial every vector database exposes), on queries held
  out of the index: a row already in the index only has to find its own node, which flatters
  recall (0.974 against 0.874 at ef = 10 on 12k real text embeddings).
* :func:`per_query_recall_vs_lid` — which queries lose recall: per-query recall against the
  query's local intrinsic dimension (Elliott & Clark, ICTIR 2024: recall falls as LID rises,
  docs/science.md §8.3, so the Spearman correlation is expected to be negative).
* :func:`insertion_order_experiment` — the same data indexed in different insertion orders
  (random, by LID, cluster by cluster); inserting low-ID clusters first can cost the later,
  high-ID clusters much of their recall (docs/science.md §8.4b). Each order is built with
  several seeds, since the seed alone moves recall about as much as the order does.

Every recall comes with a 95 % percentile-bootstrap interval over the queries
(:func:`core.stats.bootstrap_ci`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.geometry.intrinsic import LID_K, local_intrinsic_dimension
from embscope.core.graph import KnnGraph, recall_per_row
from embscope.core.index import HnswIndex, exact_knn
from embscope.core.index_milvus import MilvusIndex
from embscope.core.progress import ProgressFn
from embscope.core.stats import bootstrap_ci
from embscope.core.validation import (
    check_int,
    check_metric,
    check_vectors,
    prepare_for_metric,
)

__all__ = [
    "EF_BACKENDS",
    "ORDERS",
    "EfCurve",
    "OrderExperiment",
    "RecallLid",
    "check_efs",
    "check_holdout",
    "hnsw_seed",
    "holdout_rows",
    "insertion_order_experiment",
    "per_query_recall_vs_lid",
    "recall_vs_ef",
]

# Insertion orders of :func:`insertion_order_experiment`, each with the inputs it needs.
ORDERS: dict[str, tuple[str, ...]] = {
    "random": (),
    "lid_ascending": ("lid",),
    "lid_descending": ("lid",),
    "label_low_lid_first": ("labels", "lid"),
    "label_high_lid_first": ("labels", "lid"),
}


# Where recall_vs_ef builds its index: hnswlib in this process, or a Milvus collection by URI.
EF_BACKENDS = ("hnsw", "milvus")

log = logging.getLogger(__name__)


def hnsw_seed(seed: int) -> int:
    """hnswlib's level-assignment seed for our ``seed``: hnswlib's engine treats 0 and 1 alike,
    so seeds 0, 1, 2, ... map to 1, 2, 3, ... (distinct builds, and seed 0 is unchanged)."""
    return int(seed) + 1


def _experiment_index(
    metric: str, M: int, ef_construction: int, efs: np.ndarray, seed: int, threads: int
) -> HnswIndex:
    """An empty HNSW index of an experiment, searched at most as wide as its largest ef."""
    return HnswIndex(
        metric, M=M, ef_construction=ef_construction, ef=int(efs[-1]), seed=hnsw_seed(seed),
        num_threads=threads,
    )  # fmt: skip


def _milvus_experiment_index(
    metric: str, M: int, ef_construction: int, efs: np.ndarray, uri: str | None,
    token: str | None,
) -> MilvusIndex:  # fmt: skip
    """An empty HNSW collection of an experiment in the Milvus at ``uri`` (a temporary one,
    dropped by :func:`_drop_experiment_index`)."""
    return MilvusIndex(
        metric, uri=uri, collection=f"embscope_diagnostics_{uuid.uuid4().hex[:12]}",
        index_type="HNSW", M=M, ef_construction=ef_construction, ef=int(efs[-1]), token=token,
    )  # fmt: skip


def _drop_experiment_index(index: HnswIndex | MilvusIndex) -> None:
    """Drop a Milvus experiment's collection and close it; a failure (Milvus gone) is logged,
    never raised over the experiment's own result or error."""
    if not isinstance(index, MilvusIndex):
        return
    try:
        index.drop()
    except InvalidInputError as exc:
        log.warning("the temporary Milvus collection %s was not dropped: %s", index.collection, exc)
    finally:
        index.close()


# Single queries timed between two progress reports in recall_vs_ef.
_LATENCY_REPORT_EVERY = 100


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EfCurve:
    """Recall and speed of one index at several search beams ``ef``, on held-out queries.

    Attributes
    ----------
    ef : int64 ndarray of shape (e,)
        Search beams, ascending.
    recall : float64 ndarray of shape (e,)
        Mean recall@k over the queries at each ef.
    recall_ci : float64 ndarray of shape (e, 2)
        95 % percentile-bootstrap interval of ``recall`` over the queries.
    p50_ms, p99_ms : float64 ndarray of shape (e,)
        Median and 99th-percentile latency of one query (one row per call), milliseconds.
    qps : float64 ndarray of shape (e,)
        Queries per second of one batched call over all queries.
    per_query_recall : float64 ndarray of shape (e, m)
        recall@k of each query at each ef.
    query_rows : int64 ndarray of shape (m,)
        Rows of ``X`` used as queries (ascending): held out of the index.
    k : int
    metric : str
    n_points : int
        Rows of ``X``; the index holds ``n_points - m`` of them.
    build_seconds : float
        Time to build the experiment's index.
    params : dict
        ``M``, ``ef_construction``, ``seed`` of the index.
    """

    ef: np.ndarray
    recall: np.ndarray
    recall_ci: np.ndarray
    p50_ms: np.ndarray
    p99_ms: np.ndarray
    qps: np.ndarray
    per_query_recall: np.ndarray
    query_rows: np.ndarray
    k: int
    metric: str
    n_points: int
    build_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        return int(self.query_rows.shape[0])

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per ef: ``ef``, ``recall``, ``recall_ci``, ``p50_ms``, ``p99_ms``, ``qps``."""
        return [
            {
                "ef": int(self.ef[i]),
                "recall": float(self.recall[i]),
                "recall_ci": [float(v) for v in self.recall_ci[i]],
                "p50_ms": float(self.p50_ms[i]),
                "p99_ms": float(self.p99_ms[i]),
                "qps": float(self.qps[i]),
            }
            for i in range(self.ef.shape[0])
        ]


@dataclass(frozen=True, eq=False)
class RecallLid:
    """Per-query recall at one ef beside each query's local intrinsic dimension.

    Attributes
    ----------
    ef : int
    query_rows : int64 ndarray of shape (m,)
    recall : float64 ndarray of shape (m,)
        recall@k of each query at ``ef``.
    lid : float64 ndarray of shape (m,)
        LID of each query row (NaN where undefined, e.g. among duplicates).
    spearman_rho : float
        Spearman rank correlation of recall and LID over the queries with a defined LID;
        NaN when fewer than 3 such queries or when either side is constant (for example
        every query at recall 1.0). Expected negative (docs/science.md §8.3).
    spearman_p : float
        Two-sided p-value of ``spearman_rho`` (NaN alongside it).
    n_used : int
        Queries in the correlation.
    """

    ef: int
    query_rows: np.ndarray
    recall: np.ndarray
    lid: np.ndarray
    spearman_rho: float
    spearman_p: float
    n_used: int


@dataclass(frozen=True, eq=False)
class OrderExperiment:
    """Recall of HNSW indexes that differ only in the order their points were inserted.

    Attributes
    ----------
    orders : tuple of str
        The orders that were run, in the order asked.
    skipped : dict of str to str
        Orders asked for but not run, with the reason (a missing ``labels`` or ``lid``).
    ef : int64 ndarray of shape (e,)
    recall : float64 ndarray of shape (o, e)
        Mean recall@k over all queries and seeds, per order and ef.
    recall_sd : float64 ndarray of shape (o, e)
        Standard deviation (ddof 1) over the seeds of each seed's mean recall; NaN for one seed.
    recall_ci : float64 ndarray of shape (o, e, 2)
        95 % bootstrap interval over the queries of the seed-averaged per-query recall.
    seed_recall : float64 ndarray of shape (s, o, e)
        Mean recall of each seed's build.
    label_values : ndarray of shape (c,) or None
        The distinct labels, sorted (None when no labels were given).
    label_recall : float64 ndarray of shape (o, e, c) or None
        Mean recall@k over the queries of each label and the seeds (NaN for a label with no
        query).
    label_query_counts : int64 ndarray of shape (c,) or None
        Queries per label.
    label_median_lid : float64 ndarray of shape (c,) or None
        Median LID of each label's base rows (None without both labels and lid).
    build_seconds : float64 ndarray of shape (o,)
        Single-threaded build time per order (mean over the seeds).
    query_rows, base_rows : int64 ndarray of shapes (m,) and (n - m,)
        Rows of ``X`` held out as queries, and the rows indexed.
    k : int
    metric : str
    params : dict
        ``M``, ``ef_construction``, ``seed`` (of the query split and the first build), ``seeds``
        (builds per order, seeded ``seed``, ``seed + 1``, ...).
    """

    orders: tuple[str, ...]
    skipped: dict[str, str]
    ef: np.ndarray
    recall: np.ndarray
    recall_sd: np.ndarray
    recall_ci: np.ndarray
    seed_recall: np.ndarray
    label_values: np.ndarray | None
    label_recall: np.ndarray | None
    label_query_counts: np.ndarray | None
    label_median_lid: np.ndarray | None
    build_seconds: np.ndarray
    query_rows: np.ndarray
    base_rows: np.ndarray
    k: int
    metric: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> int:
        """Builds per order."""
        return int(self.seed_recall.shape[0])

    def recall_at(self, order: str, ef: int) -> float:
        """Mean recall@k of ``order`` at ``ef`` (both must be in the experiment)."""
        if order not in self.orders or int(ef) not in self.ef:
            raise InvalidInputError(
                f"no result for order {order!r} at ef {ef}: the experiment has orders "
                f"{', '.join(self.orders)} and ef {', '.join(str(int(e)) for e in self.ef)}"
            )
        return float(self.recall[self.orders.index(order), int(np.flatnonzero(self.ef == ef)[0])])

    def to_rows(self) -> list[dict[str, Any]]:
        """The results as tidy rows, one dict per (order, ef, label).

        Keys: ``order``, ``ef``, ``label`` (None for all queries together), ``recall``,
        ``recall_sd`` (over the seeds; None per label and for one seed), ``seeds``,
        ``n_queries``, ``build_seconds``. ``pandas.DataFrame(result.to_rows())`` makes a frame.
        """
        rows: list[dict[str, Any]] = []
        m = int(self.query_rows.shape[0])
        for o, order in enumerate(self.orders):
            for e, ef in enumerate(self.ef):
                base = {
                    "order": order,
                    "ef": int(ef),
                    "build_seconds": float(self.build_seconds[o]),
                }
                sd = float(self.recall_sd[o, e])
                rows.append(
                    {
                        **base,
                        "label": None,
                        "recall": float(self.recall[o, e]),
                        "recall_sd": None if np.isnan(sd) else sd,
                        "seeds": self.seeds,
                        "n_queries": m,
                    }
                )
                if (
                    self.label_values is None
                    or self.label_recall is None
                    or self.label_query_counts is None
                ):
                    continue
                for c, label in enumerate(self.label_values):
                    rows.append(
                        {
                            **base,
                            "label": label.item() if hasattr(label, "item") else label,
                            "recall": float(self.label_recall[o, e, c]),
                            "recall_sd": None,
                            "seeds": self.seeds,
                            "n_queries": int(self.label_query_counts[c]),
                        }
                    )
        return rows


# -- validation -----------------------------------------------------------------------------


def check_efs(efs: Any, *, high: int | None = None, most: int | None = None) -> np.ndarray:
    """Distinct search beams, ascending: each a whole number from 1 to ``high``, at most
    ``most`` of them."""
    if isinstance(efs, (int, np.integer)) and not isinstance(efs, bool):
        efs = (efs,)
    try:
        values = list(efs)
    except TypeError:
        raise InvalidInputError(f"ef must be a list of whole numbers >= 1, got {efs!r}") from None
    if not values:
        raise InvalidInputError("no ef given: give at least one search beam, e.g. 10,20,40")
    if most is not None and len(values) > most:
        raise InvalidInputError(f"at most {most} values of ef, got {len(values)}")
    for v in values:
        check_int(v, "every ef", low=1, high=high)
    return np.unique(np.asarray(values, dtype=np.int64))


def check_holdout(
    n_queries: Any, n: int, k: int, *, high: int | None = None, name: str = "n_queries"
) -> int:
    """``n_queries`` checked (1 to ``high``), leaving at least k + 1 of ``n`` rows to index."""
    count = check_int(n_queries, name, low=1, high=high)
    if n - count < k + 1:
        raise InvalidInputError(
            f"{n} items: holding out {count} as queries leaves {max(n - count, 0)} to index, "
            f"fewer than k + 1 = {k + 1}: ask for fewer queries or a smaller k, or use more items"
        )
    return count


def _check_progress(progress: Any) -> ProgressFn | None:
    if progress is not None and not callable(progress):
        raise InvalidInputError("progress must be a function (fraction, message) -> bool")
    return cast("ProgressFn | None", progress)


def _reporter(progress: ProgressFn | None, what: str) -> Callable[[float, str], None]:
    """``report(fraction, message)`` that raises OperationCancelled when progress says stop."""

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(float(min(max(fraction, 0.0), 1.0)), message):
            raise OperationCancelled(f"{what} was cancelled")

    return report


def _query_rows(n: int, n_queries: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_queries, replace=False)).astype(np.int64)


# -- recall vs ef ---------------------------------------------------------------------------


def holdout_rows(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(query_rows, base_rows)``: ``n_queries`` seeded random rows held out as queries, and
    the rest (both ascending)."""
    query_rows = _query_rows(n, n_queries, seed)
    base_mask = np.ones(n, dtype=bool)
    base_mask[query_rows] = False
    return query_rows, np.flatnonzero(base_mask).astype(np.int64)


def recall_vs_ef(
    X: np.ndarray,
    *,
    metric: str = "cosine",
    k: int = 10,
    efs: Sequence[int] = (10, 20, 40, 80, 160, 320),
    n_queries: int = 500,
    M: int = 16,
    ef_construction: int = 200,
    seed: int = 0,
    num_threads: int = -1,
    progress: ProgressFn | None = None,
    backend: str = "hnsw",
    milvus_uri: str | None = None,
    milvus_token: str | None = None,
) -> EfCurve:
    """Recall@k, latency and throughput of an HNSW index over a range of search beams ``ef``,
    on queries the index has never seen.

    ``n_queries`` seeded random rows of ``X`` are held out; an HNSW index with ``M`` and
    ``ef_construction`` is built here on the other rows, and each held-out row is searched in
    it. Ground truth is exact search over the indexed rows. A served index that holds every
    row is never used: a query that is already a node of the graph only has to reach itself,
    which flatters recall (on 12k real MiniLM embeddings, M = 16, ef_construction = 200,
    recall@10 at ef = 10 is 0.974 for rows of the index and 0.874 for held-out ones).

    Latency is timed one query per call (what a user of the page waits for); QPS comes from
    one batched call (with the index's threads). Each recall carries a 95 % percentile
    bootstrap interval over the queries (:func:`core.stats.bootstrap_ci`, seeded).

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    metric : {"cosine", "l2", "ip"}
    k : int
        Neighbours per query; at least k + 1 rows must remain in the index.
    efs : sequence of int
        Search beams to try (each >= 1; sorted, duplicates dropped). hnswlib uses at least k.
    n_queries : int
        Held-out queries, 1 <= n_queries < n - k.
    M, ef_construction : int
        HNSW parameters of the index built here.
    seed : int
        Seeds the held-out split, the index's level assignment and the intervals.
    num_threads : int
        Build threads; 1 makes the build deterministic.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).
    backend : {"hnsw", "milvus"}
        ``"milvus"``: the rows not held out go into a temporary HNSW collection (``M``,
        ``ef_construction``) of the Milvus at ``milvus_uri`` (``milvus_token`` for a server
        with authentication), searched through Milvus's ``ef`` search parameter and
        dropped afterwards (also on error or Cancel). Milvus's build takes no seed, and
        timings include the round trip to the server.

    Returns
    -------
    EfCurve
    """
    X = check_vectors(X)
    metric = check_metric(metric)
    n = X.shape[0]
    k = check_int(k, "k", low=1)
    # hnswlib searches at least k wide: a smaller ef is raised to k (and merged with it).
    efs_arr = np.unique(np.maximum(check_efs(efs), k))
    n_queries = check_holdout(n_queries, n, k)
    M = check_int(M, "M", low=2)
    ef_construction = check_int(ef_construction, "ef_construction", low=1)
    if backend not in EF_BACKENDS:
        raise InvalidInputError(
            f"unknown backend {backend!r} for recall vs ef: use one of {', '.join(EF_BACKENDS)}"
        )
    report = _reporter(_check_progress(progress), "measuring recall against ef")

    rows, base_rows = holdout_rows(n, n_queries, seed)
    X_base, Q = np.ascontiguousarray(X[base_rows]), np.ascontiguousarray(X[rows])
    params: dict[str, Any] = {"M": M, "ef_construction": ef_construction, "seed": int(seed)}
    index: HnswIndex | MilvusIndex
    if backend == "milvus":
        index = _milvus_experiment_index(
            metric, M, ef_construction, efs_arr, milvus_uri, milvus_token
        )
        params.update(backend="milvus", uri=index.stats()["uri"])
    else:
        index = _experiment_index(metric, M, ef_construction, efs_arr, seed, num_threads)
    build_share = 0.5

    def build_progress(fraction: float, message: str) -> bool:
        return bool(progress and progress(build_share * fraction, message))

    try:
        if isinstance(index, MilvusIndex):
            index.build(X_base, progress=build_progress)
            index.wait_for_index()  # a server indexes in the background
        else:
            index.build(X_base, progress=build_progress, chunk=max(1_000, X_base.shape[0] // 20))
        truth, _ = exact_knn(
            prepare_for_metric(Q, metric), prepare_for_metric(X_base, metric), k, metric=metric
        )
        share = 0.1 * (1.0 - build_share)
        report(build_share + share, f"exact neighbours of {n_queries} held-out queries found")
        curve = _sweep_ef(index, Q, truth, k, efs_arr, seed, report, build_share + share)
    finally:
        _drop_experiment_index(index)
    return EfCurve(
        **curve, query_rows=rows, k=k, metric=metric, n_points=n,
        build_seconds=float(index.build_seconds), params=params,
    )  # fmt: skip


def _sweep_ef(
    index: HnswIndex | MilvusIndex, Q: np.ndarray, truth: np.ndarray, k: int, efs: np.ndarray,
    seed: int, report: Callable[[float, str], None], start: float,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Recall, its interval, latency and QPS of ``index`` at each ef: EfCurve's fields."""
    n_queries = Q.shape[0]
    e_count = efs.shape[0]
    recall = np.empty((e_count, n_queries))
    recall_ci = np.empty((e_count, 2))
    p50, p99, qps = np.empty(e_count), np.empty(e_count), np.empty(e_count)
    width = (1.0 - start) / e_count
    for i, ef in enumerate(efs):
        ef = int(ef)
        t0 = time.perf_counter()
        found, _ = index.query(Q, k, ef=ef)
        qps[i] = n_queries / max(time.perf_counter() - t0, 1e-9)
        recall[i] = recall_per_row(found, truth)
        recall_ci[i] = bootstrap_ci(recall[i], seed=seed)
        times = np.empty(n_queries)
        for j in range(n_queries):
            t0 = time.perf_counter()
            index.query(Q[j : j + 1], k, ef=ef)
            times[j] = time.perf_counter() - t0
            if (j + 1) % _LATENCY_REPORT_EVERY == 0:
                report(start + width * (i + (j + 1) / n_queries), f"ef={ef}: timed {j + 1} queries")
        p50[i], p99[i] = np.percentile(times, [50, 99]) * 1e3
        report(start + width * (i + 1), f"ef={ef}: recall@{k} {recall[i].mean():.3f}")
    return {
        "ef": efs, "recall": recall.mean(axis=1), "recall_ci": recall_ci, "p50_ms": p50,
        "p99_ms": p99, "qps": qps, "per_query_recall": recall,
    }  # fmt: skip


# -- per-query recall vs LID ----------------------------------------------------------------


def per_query_recall_vs_lid(
    curve: EfCurve,
    graph: KnnGraph,
    *,
    ef: int | None = None,
    lid_k: int = LID_K,
    graph_rows: np.ndarray | None = None,
) -> RecallLid:
    """Per-query recall at one ef beside each query's LID, and their Spearman correlation.

    Parameters
    ----------
    curve : EfCurve
        From :func:`recall_vs_ef` (its per-query recall and query rows are used).
    graph : KnnGraph
        The dataset's shared neighbour graph (same rows as the ``X`` of ``curve``), with at
        least ``lid_k`` neighbours; LID is read from ``graph.head(lid_k)`` at the query rows.
    ef : int, optional
        One of ``curve.ef``; default the smallest, where recall varies most.
    lid_k : int
        Neighbours for LID (docs/science.md §7.3).
    graph_rows : int ndarray of shape (curve.n_points,), optional
        When the curve was measured on a sample of the graph's points: the graph row of each
        row of the sample.

    Returns
    -------
    RecallLid
    """
    from scipy.stats import spearmanr

    if not isinstance(curve, EfCurve):
        raise InvalidInputError("curve must be an EfCurve from recall_vs_ef")
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError("graph must be a KnnGraph (core.graph.build_knn_graph)")
    if graph.metric != curve.metric:
        raise InvalidInputError(
            f"the graph was built with metric {graph.metric!r} but the recall curve with "
            f"{curve.metric!r}: use the {curve.metric} graph of the dataset"
        )
    if graph_rows is not None:
        graph_rows = np.asarray(graph_rows)
        if (
            graph_rows.shape != (curve.n_points,)
            or graph_rows.dtype.kind not in "iu"
            or (curve.n_points and (graph_rows.min() < 0 or graph_rows.max() >= graph.n))
        ):
            raise InvalidInputError(
                f"graph_rows must be {curve.n_points} rows of the graph (0..{graph.n - 1})"
            )
    elif graph.n != curve.n_points:
        raise InvalidInputError(
            f"the graph has {graph.n} points but the recall curve was measured on "
            f"{curve.n_points}: use the graph of the same dataset"
        )
    if ef is None:
        e = 0
    else:
        hits = np.flatnonzero(curve.ef == ef)
        if hits.size == 0:
            raise InvalidInputError(
                f"ef = {ef!r} is not in the curve; choose one of "
                f"{', '.join(str(int(v)) for v in curve.ef)}"
            )
        e = int(hits[0])
    lid_k = check_int(lid_k, "lid_k", low=2)
    if lid_k > graph.k:
        raise InvalidInputError(
            f"lid_k = {lid_k} but the graph has only {graph.k} neighbours per point: "
            f"lower lid_k or build the graph with k >= {lid_k}"
        )
    rows = curve.query_rows
    at = rows if graph_rows is None else graph_rows[rows]
    lid = local_intrinsic_dimension(graph.distances[at, :lid_k], k=lid_k, metric=graph.metric)
    recall = curve.per_query_recall[e].astype(np.float64, copy=True)
    ok = ~np.isnan(lid)
    n_used = int(ok.sum())
    rho = p = float("nan")
    # Constant input has no ranks to correlate (scipy would warn): report NaN instead.
    if n_used >= 3 and np.ptp(recall[ok]) > 0 and np.ptp(lid[ok]) > 0:
        res = spearmanr(recall[ok], lid[ok])
        rho, p = float(res.statistic), float(res.pvalue)
    return RecallLid(
        ef=int(curve.ef[e]),
        query_rows=rows,
        recall=recall,
        lid=lid,
        spearman_rho=rho,
        spearman_p=p,
        n_used=n_used,
    )


# -- insertion order ------------------------------------------------------------------------


def _order_rng(seed: int, order: str) -> np.random.Generator:
    # One stream per order, so an order's permutation does not depend on which others ran.
    return np.random.default_rng([int(seed), list(ORDERS).index(order)])


def _insertion_order(
    order: str,
    n_base: int,
    *,
    lid: np.ndarray | None,
    codes: np.ndarray | None,
    group_lid: np.ndarray | None,
    seed: int,
) -> np.ndarray:
    """A permutation of 0..n_base-1: the order in which the base rows are inserted."""
    rng = _order_rng(seed, order)
    if order == "random":
        return rng.permutation(n_base)
    if order in ("lid_ascending", "lid_descending"):
        if lid is None:
            raise ValueError(f"insertion order {order!r} needs lid")
        if order == "lid_ascending":
            return np.argsort(lid, kind="stable")  # NaN sorts last
        return np.argsort(-lid, kind="stable")  # -NaN is NaN: still last
    if codes is None or group_lid is None:
        raise ValueError(f"insertion order {order!r} needs codes and group_lid")
    # Cluster by cluster, clusters ranked by median LID (NaN last, ties by label), each
    # cluster's rows shuffled.
    rank = np.argsort(group_lid if order == "label_low_lid_first" else -group_lid, kind="stable")
    parts = [rng.permutation(np.flatnonzero(codes == c)) for c in rank]
    return np.concatenate(parts).astype(np.int64)


def insertion_order_experiment(
    X: np.ndarray,
    *,
    metric: str = "l2",
    labels: np.ndarray | None = None,
    lid: np.ndarray | None = None,
    orders: Sequence[str] = tuple(ORDERS),
    M: int = 16,
    ef_construction: int = 40,
    efs: Sequence[int] = (10, 40),
    k: int = 10,
    n_queries: int = 500,
    seed: int = 0,
    seeds: int = 1,
    progress: ProgressFn | None = None,
) -> OrderExperiment:
    """Recall of HNSW indexes of the same points inserted in different orders (docs/science.md §8.4b).

    ``n_queries`` seeded random rows are held out as queries; every order indexes the remaining
    (base) rows with the same parameters and seeds, **single-threaded** so that the order is the
    only difference (docs/science.md §0.2). Ground truth is exact search over the base rows.
    Each order is built ``seeds`` times (seeds ``seed``, ``seed + 1``, ...: the HNSW levels
    and the shuffles change, the held-out queries do not), since the seed alone moves recall
    about as much as the order does; the result has the mean and the spread over the seeds.

    Orders:

    * ``"random"`` — a seeded shuffle.
    * ``"lid_ascending"`` / ``"lid_descending"`` — by per-row LID (needs ``lid``; NaN last).
    * ``"label_low_lid_first"`` / ``"label_high_lid_first"`` — one label (cluster, category)
      at a time, labels ranked by the median LID of their base rows, rows shuffled (seeded)
      within each label (needs ``labels`` and ``lid``).

    Orders whose inputs are missing are skipped and listed in ``skipped``.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    metric : {"l2", "cosine", "ip"}
    labels : ndarray of shape (n,), optional
        A category per row (ints or strings). Also gives per-label recall.
    lid : float ndarray of shape (n,), optional
        LID per row (:func:`core.geometry.intrinsic.local_intrinsic_dimension`), NaN allowed.
    orders : sequence of str
        Names from :data:`ORDERS`.
    M, ef_construction : int
        HNSW parameters (the defaults are the ones where order matters, docs/science.md §8.4b).
    efs : sequence of int
        Search beams to measure (sorted, duplicates dropped).
    k : int
        recall@k.
    n_queries : int
        Held-out queries; at least k + 1 rows must remain.
    seed : int
        Seeds the query split, the shuffles and the HNSW levels (the same for every order).
    seeds : int
        Builds per order, 1 to 20.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    OrderExperiment
    """
    X = check_vectors(X)
    metric = check_metric(metric)
    n = X.shape[0]
    k = check_int(k, "k", low=1)
    # hnswlib searches at least k wide: a smaller ef is raised to k (and merged with it).
    efs_arr = np.unique(np.maximum(check_efs(efs), k))
    n_queries = check_holdout(n_queries, n, k)
    check_int(M, "M", low=2)
    check_int(ef_construction, "ef_construction", low=1)
    seeds = check_int(seeds, "seeds", low=1, high=20)
    report = _reporter(_check_progress(progress), "the insertion-order experiment")

    if isinstance(orders, str):
        orders = (orders,)
    orders = tuple(orders)
    if not orders:
        raise InvalidInputError(f"orders is empty: choose from {', '.join(ORDERS)}")
    unknown = [o for o in orders if o not in ORDERS]
    if unknown:
        raise InvalidInputError(
            f"unknown insertion order {unknown[0]!r}: choose from {', '.join(ORDERS)}"
        )
    if len(set(orders)) != len(orders):
        raise InvalidInputError("orders lists the same order twice")

    codes = label_values = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n:
            raise InvalidInputError(
                f"labels must hold one value per row of X ({n}), got shape {lab.shape}"
            )
        try:
            label_values, codes = np.unique(lab, return_inverse=True)
        except TypeError as exc:
            raise InvalidInputError(f"labels must be comparable values: {exc}") from exc
        codes = codes.astype(np.int64)
    lid_arr = None
    if lid is not None:
        lid_arr = np.asarray(lid)
        if lid_arr.ndim != 1 or lid_arr.shape[0] != n or lid_arr.dtype.kind not in "fiu":
            raise InvalidInputError(
                f"lid must be one number per row of X ({n}), got {lid_arr.dtype} "
                f"{lid_arr.shape}: compute it with local_intrinsic_dimension(graph.head(20))"
            )
        lid_arr = lid_arr.astype(np.float64)
        if np.isinf(lid_arr).any():
            raise InvalidInputError("lid holds infinite values: use NaN for undefined points")

    have = {"labels": labels is not None, "lid": lid is not None}
    run: list[str] = []
    skipped: dict[str, str] = {}
    for name in orders:
        missing = [need for need in ORDERS[name] if not have[need]]
        if missing:
            skipped[name] = f"needs {' and '.join(missing)}"
        else:
            run.append(name)

    query_rows, base_rows = holdout_rows(n, n_queries, seed)
    X_base, X_query = np.ascontiguousarray(X[base_rows]), np.ascontiguousarray(X[query_rows])
    nb = base_rows.shape[0]
    truth, _ = exact_knn(
        prepare_for_metric(X_query, metric), prepare_for_metric(X_base, metric), k, metric=metric
    )
    report(0.02, f"exact neighbours of {n_queries} queries found")

    base_codes = query_codes = group_lid = None
    base_lid = None if lid_arr is None else lid_arr[base_rows]
    n_labels = 0 if label_values is None else label_values.shape[0]
    if codes is not None:
        base_codes, query_codes = codes[base_rows], codes[query_rows]
        if base_lid is not None:
            group_lid = np.full(n_labels, np.nan)
            for c in range(n_labels):
                vals = base_lid[(base_codes == c) & ~np.isnan(base_lid)]
                if vals.size:
                    group_lid[c] = np.median(vals)

    o_count, e_count = len(run), efs_arr.shape[0]
    seed_recall = np.full((seeds, o_count, e_count), np.nan)
    per_query = np.zeros((o_count, e_count, n_queries))
    build_seconds = np.zeros(o_count)
    span = 0.98 / max(o_count * seeds, 1)
    for o, order in enumerate(run):
        for s_i in range(seeds):
            build_seed = seed + s_i
            low = 0.02 + (o * seeds + s_i) * span
            perm = _insertion_order(
                order, nb, lid=base_lid, codes=base_codes, group_lid=group_lid, seed=build_seed
            )
            index = _experiment_index(metric, M, ef_construction, efs_arr, build_seed, 1)
            what = order if seeds == 1 else f"{order}, seed {s_i + 1} of {seeds}"

            def build_progress(f: float, msg: str, low: float = low, what: str = what) -> bool:
                return bool(progress and progress(low + 0.9 * span * f, f"{what}: {msg}"))

            index.build(
                X_base,
                order=perm,
                # Chunks only pace progress reports: one thread inserts in `perm` order.
                chunk=max(500, nb // 20),
                progress=build_progress,
            )
            build_seconds[o] += index.build_seconds / seeds
            for e, ef in enumerate(efs_arr):
                found, _ = index.query(X_query, k, ef=int(ef))
                mine = recall_per_row(found, truth)
                seed_recall[s_i, o, e] = mine.mean()
                per_query[o, e] += mine / seeds
            best = ", ".join(
                f"ef={int(ef)}: {seed_recall[s_i, o, e]:.3f}" for e, ef in enumerate(efs_arr)
            )
            report(low + span, f"{what}: recall@{k} {best}")

    recall = per_query.mean(axis=2) if o_count else np.full((0, e_count), np.nan)
    recall_sd = (
        seed_recall.std(axis=0, ddof=1) if seeds > 1 else np.full((o_count, e_count), np.nan)
    )
    recall_ci = np.full((o_count, e_count, 2), np.nan)
    for o in range(o_count):
        for e in range(e_count):
            recall_ci[o, e] = bootstrap_ci(per_query[o, e], seed=seed)
    label_recall = None
    if codes is not None and query_codes is not None:
        label_recall = np.full((o_count, e_count, n_labels), np.nan)
        for c in range(n_labels):
            mine = query_codes == c
            if mine.any():
                label_recall[:, :, c] = per_query[:, :, mine].mean(axis=2)

    return OrderExperiment(
        orders=tuple(run),
        skipped=skipped,
        ef=efs_arr,
        recall=recall,
        recall_sd=recall_sd,
        recall_ci=recall_ci,
        seed_recall=seed_recall,
        label_values=label_values,
        label_recall=label_recall,
        label_query_counts=(
            None if query_codes is None else np.bincount(query_codes, minlength=n_labels)
        ),
        label_median_lid=group_lid,
        build_seconds=build_seconds,
        query_rows=query_rows,
        base_rows=base_rows,
        k=k,
        metric=metric,
        params={
            "M": int(M),
            "ef_construction": int(ef_construction),
            "seed": int(seed),
            "seeds": int(seeds),
        },
    )
