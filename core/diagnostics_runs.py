"""ANN diagnostics of a stored dataset, computed once and kept as artifacts.

Every experiment holds its queries out of the index it measures (the served index stays
whole and is never used here) and uses one index setting, the served one
(:data:`core.neighbours.DEFAULT_HNSW`), so the recall shown is that of an unseen query
against an index like the one queries use. :func:`diagnostics_report` is the CLI's
``embscope diagnostics --json``.

The Neighbours page asks for these; a stored result (same dataset, parameters and code) is
returned at once, otherwise it is computed with progress and stored (through
:mod:`core.artifacts`), so a restart or a second session sees it without recomputing. Both
read the dataset's shared neighbour graph for LID (:func:`core.graph.get_or_build_graph`) and
never compute neighbours of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embscope.core.artifacts import ArtifactSpec, fingerprint, get_or_compute
from embscope.core.diagnostics import (
    EF_BACKENDS,
    ORDERS,
    EfCurve,
    OrderExperiment,
    RecallLid,
    check_efs,
    check_holdout,
    insertion_order_experiment,
    per_query_recall_vs_lid,
    recall_vs_ef,
)
from embscope.core.errors import InvalidInputError
from embscope.core.export import MISSING, as_text
from embscope.core.geometry.intrinsic import LID_K, local_intrinsic_dimension
from embscope.core.graph import get_or_build_graph
from embscope.core.milvus_client import public_uri, resolve_uri
from embscope.core.neighbours import DEFAULT_HNSW, NeighbourService
from embscope.core.progress import ProgressFn, stage
from embscope.core.stats import ci_json, finite_or_none
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import Metric, check_int, check_metric

__all__ = [
    "DIAGNOSTIC_EFS",
    "DIAGNOSTIC_QUERIES",
    "DIAGNOSTIC_SAMPLE",
    "ORDER_SAMPLE",
    "ORDER_SEEDS",
    "EfDiagnostics",
    "EfDiagnosticsRequest",
    "EfDiagnosticsSpec",
    "OrderDiagnosticsRequest",
    "OrderDiagnosticsSpec",
    "ef_diagnostics",
    "ef_key",
    "diagnostics_report",
    "ef_request",
    "order_diagnostics",
    "order_request",
]

# 2: LID on cosine graphs uses chord distances (was half the dimension); 3: held-out queries,
# one index setting, seeds and intervals; 4: distinct hnswlib seeds per build, one thread.
CODE_VERSION = 4
# The page, the CLI and the API share these defaults, so each reads what the other stored.
DIAGNOSTIC_EFS = (10, 20, 40, 80, 160)
DIAGNOSTIC_QUERIES = 500
MAX_QUERIES = 5_000
MAX_EFS = 12
MAX_EF = 4_096
MAX_K = 200  # the Neighbours page's k
# Recall vs ef builds an index of its own (on the rows not held out): on a sample above this.
DIAGNOSTIC_SAMPLE = 200_000
# The insertion-order experiment builds single-threaded indexes, seeds per order: on a sample.
ORDER_SAMPLE = 20_000
ORDER_SEEDS = 3
ORDER_MIN_ITEMS = 70
MAX_SEEDS = 10
MAX_LABELS = 100


def _sample_rows(n: int, size: int) -> np.ndarray | None:
    """Seeded rows of a sample of ``size`` (None: every row)."""
    if size >= n:
        return None
    return np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))


@dataclass(frozen=True, eq=False)
class EfDiagnostics:
    """Recall and latency against ef, and per-query recall against LID (None for ``ip``,
    whose distances can be negative, and for datasets too small for LID)."""

    curve: EfCurve
    lid: RecallLid | None


@dataclass(frozen=True)
class EfDiagnosticsRequest:
    dataset: DatasetInfo
    metric: Metric
    k: int
    n_queries: int
    efs: tuple[int, ...] = DIAGNOSTIC_EFS
    sample: int = 0  # rows the experiment uses (a seeded sample when below the dataset's n)
    backend: str = "hnsw"  # EF_BACKENDS: hnswlib here, or a temporary Milvus collection
    milvus_uri: str | None = None  # backend "milvus": where (may hold credentials: never stored)


class EfDiagnosticsSpec(ArtifactSpec[EfDiagnosticsRequest, EfDiagnostics]):
    """Recall vs ef of an index with the served settings, on held-out queries."""

    kind = "ef_diagnostics"
    result_type = EfDiagnostics
    code_version = CODE_VERSION

    def __init__(self, service: NeighbourService):
        self.service = service

    def key(self, request: EfDiagnosticsRequest) -> tuple[Any, ...]:
        # hnsw keeps the key it always had, so results stored before backends still count.
        where = () if request.backend == "hnsw" else (request.backend, _where(request))
        return (
            request.dataset.fingerprint, request.metric, request.k, request.efs,
            request.n_queries, request.sample, dict(DEFAULT_HNSW), *where,
        )  # fmt: skip

    def describe(self, request: EfDiagnosticsRequest) -> dict[str, Any]:
        where = {} if request.backend == "hnsw" else {"milvus_uri": _where(request)}
        return {
            "metric": request.metric, "k": request.k, "n_queries": request.n_queries,
            "efs": list(request.efs), "sample": request.sample, **DEFAULT_HNSW,
            "backend": request.backend, **where,
        }  # fmt: skip

    def compute(
        self, store: Store, request: EfDiagnosticsRequest, progress: ProgressFn | None
    ) -> EfDiagnostics:
        info, metric = request.dataset, request.metric
        rows = _sample_rows(info.n, request.sample)
        X = self.service.vectors(info.id)
        curve = recall_vs_ef(
            X if rows is None else X[rows], metric=metric, k=request.k, efs=request.efs,
            n_queries=request.n_queries, M=DEFAULT_HNSW["M"],
            ef_construction=DEFAULT_HNSW["ef_construction"], seed=0, num_threads=1,
            progress=stage(progress, 0.0, 0.9), backend=request.backend,
            milvus_uri=request.milvus_uri, milvus_token=self.service.milvus_token,
        )  # fmt: skip
        lid = None
        if metric != "ip" and info.n > LID_K:
            graph = get_or_build_graph(
                store, info.id, k=LID_K, metric=metric, progress=stage(progress, 0.9, 1.0)
            )
            lid = per_query_recall_vs_lid(curve, graph, graph_rows=rows)  # at the smallest ef
        if rows is not None:  # query rows as rows of the dataset, not of the sample
            curve = replace(curve, query_rows=rows[curve.query_rows])
            if lid is not None:
                lid = replace(lid, query_rows=curve.query_rows)
        if progress:
            progress(1.0, "diagnostics ready")
        return EfDiagnostics(curve, lid)

    def label(self, request: EfDiagnosticsRequest) -> str:
        on = "" if request.backend == "hnsw" else f" on Milvus at {_where(request)}"
        return f"Recall vs ef of {request.dataset.name}{on}"


def _where(request: EfDiagnosticsRequest) -> str:
    """The request's Milvus URI without credentials (what keys and records hold)."""
    return public_uri(request.milvus_uri or "")


@dataclass(frozen=True)
class OrderDiagnosticsRequest:
    dataset: DatasetInfo
    metric: Metric
    label_column: str | None
    sample: int
    n_queries: int
    efs: tuple[int, ...] = DIAGNOSTIC_EFS
    k: int = 10
    seeds: int = ORDER_SEEDS


class OrderDiagnosticsSpec(ArtifactSpec[OrderDiagnosticsRequest, OrderExperiment]):
    """The insertion-order experiment on a seeded sample of the dataset, served index
    settings, several seeds per order."""

    kind = "order_diagnostics"
    result_type = OrderExperiment
    code_version = CODE_VERSION

    def __init__(self, service: NeighbourService):
        self.service = service

    def key(self, request: OrderDiagnosticsRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint, request.metric, request.label_column, request.sample,
            request.n_queries, request.efs, request.k, request.seeds, dict(DEFAULT_HNSW),
        )  # fmt: skip

    def describe(self, request: OrderDiagnosticsRequest) -> dict[str, Any]:
        return {
            "metric": request.metric,
            "label_column": request.label_column,
            "sample": request.sample,
            "n_queries": request.n_queries,
            "efs": list(request.efs),
            "k": request.k,
            "seeds": request.seeds,
            **DEFAULT_HNSW,
        }

    def lineage(self, request: OrderDiagnosticsRequest, result: Any) -> dict[str, Any]:
        return {"dataset_fingerprint": request.dataset.fingerprint, "sample_rows_seed": 0}

    def compute(
        self, store: Store, request: OrderDiagnosticsRequest, progress: ProgressFn | None
    ) -> OrderExperiment:
        info, metric, label_column = request.dataset, request.metric, request.label_column
        rows = _sample_rows(info.n, request.sample)
        if rows is None:
            rows = np.arange(info.n)
        X = self.service.vectors(info.id)[rows]
        lid = None
        if metric != "ip" and info.n > LID_K:
            graph = get_or_build_graph(
                store, info.id, k=LID_K, metric=metric, progress=stage(progress, 0.0, 0.2)
            )
            lid = local_intrinsic_dimension(graph.distances[rows], k=LID_K, metric=graph.metric)
        labels = None
        if label_column is not None:
            values = store.load_metadata(info.id, columns=[label_column])[label_column]
            labels = as_text(values, missing=MISSING)[rows]
        return insertion_order_experiment(
            X, metric=metric, labels=labels, lid=lid, n_queries=request.n_queries,
            M=DEFAULT_HNSW["M"], ef_construction=DEFAULT_HNSW["ef_construction"],
            efs=request.efs, k=request.k, seed=0, seeds=request.seeds,
            progress=stage(progress, 0.2, 1.0),
        )  # fmt: skip

    def label(self, request: OrderDiagnosticsRequest) -> str:
        return f"Insertion-order experiment on {request.dataset.name}"


def _check_efs(efs: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in check_efs(efs, high=MAX_EF, most=MAX_EFS))


def _check_queries(n_queries: Any, n: int, k: int) -> int:
    return check_holdout(n_queries, n, k, high=MAX_QUERIES, name="queries")


def ef_request(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    k: int = 10,
    efs: Any = DIAGNOSTIC_EFS,
    n_queries: int | None = None,
    backend: str = "hnsw",
    milvus_uri: str | None = None,
) -> EfDiagnosticsRequest:
    """The recall-vs-ef request for these settings, validated. ``n_queries`` defaults to
    :data:`DIAGNOSTIC_QUERIES` (at most a fifth of the dataset). ``backend`` ``"milvus"``:
    the index is a temporary collection of the Milvus at ``milvus_uri`` (default the
    service's, ``$EMBSCOPE_MILVUS_URI``)."""
    if backend not in EF_BACKENDS:
        raise InvalidInputError(
            f"unknown backend {backend!r} for the diagnostics: use one of {', '.join(EF_BACKENDS)}"
        )
    uri = None
    if backend == "milvus":
        if service.store.read_only:
            raise InvalidInputError(
                "the Milvus backend is not available on a read-only server: it would create "
                "collections; use hnsw"
            )
        uri = milvus_uri or service.milvus_uri
        resolve_uri(uri)  # a malformed uri is refused before any work
    elif milvus_uri is not None:
        raise InvalidInputError("a Milvus uri only goes with backend milvus")
    info = service.store.get_dataset(dataset_id)
    metric = check_metric(metric)
    k = check_int(k, "k", low=1, high=MAX_K)
    sample = min(info.n, DIAGNOSTIC_SAMPLE)
    if n_queries is None:
        n_queries = max(1, min(DIAGNOSTIC_QUERIES, sample // 5, sample - k - 1))
    n_queries = _check_queries(n_queries, sample, k)
    return EfDiagnosticsRequest(info, metric, k, n_queries, _check_efs(efs), sample, backend, uri)


def order_request(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    label_column: str | None = None,
    k: int = 10,
    efs: Any = DIAGNOSTIC_EFS,
    n_queries: int | None = None,
    seeds: int = ORDER_SEEDS,
) -> OrderDiagnosticsRequest:
    """The insertion-order request for these settings, validated."""
    metric = check_metric(metric)
    info = service.store.get_dataset(dataset_id)
    if label_column is not None and label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"no metadata column {label_column!r}; the dataset has {list(info.metadata_columns)}"
        )
    k = check_int(k, "k", low=1, high=MAX_K)
    seeds = check_int(seeds, "seeds", low=1, high=MAX_SEEDS)
    if label_column is not None:
        values = service.store.load_metadata(dataset_id, columns=[label_column])[label_column]
        distinct = len(np.unique(as_text(values, missing=MISSING)))
        if distinct > MAX_LABELS:
            raise InvalidInputError(
                f"column {label_column!r} has {distinct:,} distinct values: choose a category "
                f"column with at most {MAX_LABELS} for the cluster-by-cluster orders"
            )
    m = min(info.n, ORDER_SAMPLE)
    if n_queries is None:
        n_queries = min(DIAGNOSTIC_QUERIES, m // 5)
    if m < ORDER_MIN_ITEMS:
        raise InvalidInputError(
            f"the insertion-order experiment needs at least {ORDER_MIN_ITEMS} items"
        )
    n_queries = _check_queries(n_queries, m, k)
    return OrderDiagnosticsRequest(
        info, metric, label_column, m, n_queries, _check_efs(efs), k, seeds
    )


def ef_diagnostics(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    k: int = 10,
    efs: Any = DIAGNOSTIC_EFS,
    n_queries: int | None = None,
    run: bool = True,
    progress: ProgressFn | None = None,
    backend: str = "hnsw",
    milvus_uri: str | None = None,
) -> tuple[EfCurve, RecallLid | None] | None:
    """Recall@k and latency on held-out queries of an index with the served settings over
    ``efs``, and per-query recall against LID (from the shared graph).

    Returns None when nothing is stored and ``run`` is False. The LID part is None for the
    ``ip`` metric, whose distances can be negative (LID needs distances >= 0). ``backend``
    and ``milvus_uri``: as for :func:`ef_request`.
    """
    request = ef_request(
        service, dataset_id, metric=metric, k=k, efs=efs, n_queries=n_queries,
        backend=backend, milvus_uri=milvus_uri,
    )  # fmt: skip
    result = get_or_compute(
        service.store, EfDiagnosticsSpec(service), request, run=run, progress=progress
    )
    return None if result is None else (result.curve, result.lid)


def ef_key(
    service: NeighbourService, dataset_id: int, *, metric: str = "cosine", k: int = 10
) -> str:
    """The fingerprint (artifact and job key) of the recall-vs-ef diagnostics."""
    return fingerprint(
        EfDiagnosticsSpec(service), ef_request(service, dataset_id, metric=metric, k=k)
    )


def order_diagnostics(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    label_column: str | None = None,
    k: int = 10,
    efs: Any = DIAGNOSTIC_EFS,
    n_queries: int | None = None,
    seeds: int = ORDER_SEEDS,
    run: bool = True,
    progress: ProgressFn | None = None,
) -> OrderExperiment | None:
    """The insertion-order experiment on (a seeded sample of at most :data:`ORDER_SAMPLE` of)
    the dataset, with LID from the shared graph and labels from ``label_column``.

    Returns None when nothing is stored and ``run`` is False.
    """
    request = order_request(
        service, dataset_id, metric=metric, label_column=label_column, k=k, efs=efs,
        n_queries=n_queries, seeds=seeds,
    )  # fmt: skip
    return get_or_compute(
        service.store, OrderDiagnosticsSpec(service), request, run=run, progress=progress
    )


def diagnostics_report(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str | None = None,
    k: int = 10,
    efs: Any = DIAGNOSTIC_EFS,
    n_queries: int | None = None,
    seeds: int = ORDER_SEEDS,
    label_column: str | None = None,
    progress: ProgressFn | None = None,
    backend: str = "hnsw",
    milvus_uri: str | None = None,
) -> dict[str, Any]:
    """``embscope diagnostics --json``: recall vs ef, recall vs LID and the insertion-order
    experiment, all on held-out queries and with the served index settings.

    Keys: ``queries`` ("held-out"), ``n_queries``, ``k``, ``metric``, ``index`` (``M``,
    ``ef_construction``), ``n_indexed``, ``recall_vs_ef`` (one dict per ef: ``ef``,
    ``recall``, ``recall_ci``, ``p50_ms``, ``p99_ms``, ``qps``), ``recall_lid_spearman`` (None
    without LID), ``insertion_order`` (one dict per order and ef: ``order``, ``ef``,
    ``recall_mean``, ``recall_sd``, ``recall_ci``, ``seeds``), ``insertion_order_sample``,
    ``insertion_order_skipped``, ``backend`` (where recall vs ef ran: ``"hnsw"``, or
    ``"milvus"``: a temporary collection of the Milvus at ``milvus_uri``, default the
    service's; the insertion-order experiment always builds hnswlib indexes here).
    """
    info = service.store.get_dataset(dataset_id)
    metric = check_metric(metric or info.metric)
    ef_req = ef_request(
        service, dataset_id, metric=metric, k=k, efs=efs, n_queries=n_queries,
        backend=backend, milvus_uri=milvus_uri,
    )  # fmt: skip
    check_int(seeds, "seeds", low=1, high=MAX_SEEDS)
    if label_column is not None and label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"no metadata column {label_column!r}; the dataset has {list(info.metadata_columns)}"
        )
    order_req = None
    skipped: dict[str, str] = {}
    if info.n < ORDER_MIN_ITEMS:
        skipped = dict.fromkeys(ORDERS, f"needs at least {ORDER_MIN_ITEMS} items")
    else:
        same = {
            "metric": metric, "k": k, "efs": efs, "seeds": seeds,
            "n_queries": ef_req.n_queries if n_queries is not None else None,
        }  # fmt: skip
        recorded = info.info.get("label_column")
        if label_column is None and recorded in info.metadata_columns:
            try:  # the recorded label column, unless it has too many categories
                order_req = order_request(service, dataset_id, label_column=recorded, **same)
                label_column = recorded
            except InvalidInputError:
                pass  # the label orders are skipped
        if order_req is None:
            order_req = order_request(service, dataset_id, label_column=label_column, **same)
    got = get_or_compute(
        service.store, EfDiagnosticsSpec(service), ef_req, progress=stage(progress, 0.0, 0.4)
    )
    assert got is not None  # run=True always computes
    curve, lid = got.curve, got.lid
    orders: list[dict[str, Any]] = []
    order_queries = 0
    if order_req is not None:
        experiment = get_or_compute(
            service.store, OrderDiagnosticsSpec(service), order_req,
            progress=stage(progress, 0.4, 1.0),
        )  # fmt: skip
        assert experiment is not None
        skipped = dict(experiment.skipped)
        order_queries = int(experiment.query_rows.shape[0])
        orders = [
            {
                "order": order,
                "ef": int(ef),
                "recall_mean": float(experiment.recall[o, e]),
                "recall_sd": finite_or_none(float(experiment.recall_sd[o, e])),
                "recall_ci": ci_json(tuple(experiment.recall_ci[o, e])),
                "seeds": experiment.seeds,
            }
            for o, order in enumerate(experiment.orders)
            for e, ef in enumerate(experiment.ef)
        ]
    return {
        "dataset": info.name,
        "queries": "held-out",
        "n_queries": curve.n_queries,
        "k": curve.k,
        "metric": metric,
        "index": {
            "M": int(DEFAULT_HNSW["M"]),
            "ef_construction": int(DEFAULT_HNSW["ef_construction"]),
        },
        "n_indexed": curve.n_points - curve.n_queries,
        "recall_vs_ef": [
            {
                "ef": row["ef"],
                "recall": row["recall"],
                "recall_ci": row["recall_ci"],
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "qps": row["qps"],
            }
            for row in curve.to_rows()
        ],
        "recall_lid_spearman": None if lid is None else finite_or_none(lid.spearman_rho),
        "recall_lid_ef": None if lid is None else lid.ef,
        "insertion_order": orders,
        "insertion_order_sample": None if order_req is None else order_req.sample,
        "insertion_order_n_queries": order_queries,
        "insertion_order_label_column": label_column,
        "insertion_order_skipped": skipped,
        "backend": ef_req.backend,
    }
