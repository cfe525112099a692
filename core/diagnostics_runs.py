"""ANN diagnostics of a stored dataset, computed once and kept as artifacts.

The Neighbours page asks for these; a stored result (same dataset, parameters and code) is
returned at once, otherwise it is computed with progress and stored (through
:mod:`core.artifacts`), so a restart or a second session sees it without recomputing. Both
read the dataset's shared neighbour graph for LID (:func:`core.graph.get_or_build_graph`) and
never compute neighbours of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embscope.core.artifacts import ArtifactSpec, fingerprint, get_or_compute
from embscope.core.diagnostics import (
    EfCurve,
    OrderExperiment,
    RecallLid,
    insertion_order_experiment,
    per_query_recall_vs_lid,
    recall_vs_ef,
)
from embscope.core.errors import InvalidInputError
from embscope.core.export import MISSING, as_text
from embscope.core.geometry.intrinsic import LID_K, local_intrinsic_dimension
from embscope.core.graph import get_or_build_graph
from embscope.core.neighbours import DEFAULT_HNSW, NeighbourService
from embscope.core.progress import ProgressFn, stage
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import Metric, check_k, check_metric

__all__ = [
    "DIAGNOSTIC_EFS",
    "ORDER_SAMPLE",
    "EfDiagnostics",
    "EfDiagnosticsRequest",
    "EfDiagnosticsSpec",
    "OrderDiagnosticsRequest",
    "OrderDiagnosticsSpec",
    "ef_diagnostics",
    "ef_key",
    "ef_request",
    "order_diagnostics",
    "order_request",
]

CODE_VERSION = 2  # 2: LID on cosine graphs uses chord distances (was half the dimension)
DIAGNOSTIC_EFS = (10, 20, 40, 80, 160, 320)
EF_QUERIES = 300
# The insertion-order experiment builds one single-threaded index per order: on a sample.
ORDER_SAMPLE = 20_000
ORDER_QUERIES = 500
MAX_LABELS = 100


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


class EfDiagnosticsSpec(ArtifactSpec[EfDiagnosticsRequest, EfDiagnostics]):
    """Recall vs ef of the dataset's default HNSW index (the one queries use)."""

    kind = "ef_diagnostics"
    result_type = EfDiagnostics
    code_version = CODE_VERSION

    def __init__(self, service: NeighbourService):
        self.service = service

    def key(self, request: EfDiagnosticsRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint, request.metric, request.k, DIAGNOSTIC_EFS,
            request.n_queries, dict(DEFAULT_HNSW),
        )  # fmt: skip

    def describe(self, request: EfDiagnosticsRequest) -> dict[str, Any]:
        return {"metric": request.metric, "k": request.k, "n_queries": request.n_queries}

    def compute(
        self, store: Store, request: EfDiagnosticsRequest, progress: ProgressFn | None
    ) -> EfDiagnostics:
        info, metric = request.dataset, request.metric
        index = self.service.get_index(info.id, metric=metric, progress=stage(progress, 0, 0.4))
        curve = recall_vs_ef(
            self.service.vectors(info.id), metric=metric, k=request.k, efs=DIAGNOSTIC_EFS,
            n_queries=request.n_queries, index=index, seed=0,
            progress=stage(progress, 0.4, 0.9),
        )  # fmt: skip
        lid = None
        if metric != "ip" and info.n > LID_K:
            graph = get_or_build_graph(
                store, info.id, k=LID_K, metric=metric, progress=stage(progress, 0.9, 1.0)
            )
            lid = per_query_recall_vs_lid(curve, graph, ef=min(DIAGNOSTIC_EFS))
        if progress:
            progress(1.0, "diagnostics ready")
        return EfDiagnostics(curve, lid)

    def label(self, request: EfDiagnosticsRequest) -> str:
        return f"Recall vs ef of {request.dataset.name}"


@dataclass(frozen=True)
class OrderDiagnosticsRequest:
    dataset: DatasetInfo
    metric: Metric
    label_column: str | None
    sample: int
    n_queries: int


class OrderDiagnosticsSpec(ArtifactSpec[OrderDiagnosticsRequest, OrderExperiment]):
    """The insertion-order experiment on a seeded sample of the dataset."""

    kind = "order_diagnostics"
    result_type = OrderExperiment
    code_version = CODE_VERSION

    def __init__(self, service: NeighbourService):
        self.service = service

    def key(self, request: OrderDiagnosticsRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint, request.metric, request.label_column, request.sample,
            request.n_queries,
        )  # fmt: skip

    def describe(self, request: OrderDiagnosticsRequest) -> dict[str, Any]:
        return {
            "metric": request.metric,
            "label_column": request.label_column,
            "sample": request.sample,
            "n_queries": request.n_queries,
        }

    def lineage(self, request: OrderDiagnosticsRequest, result: Any) -> dict[str, Any]:
        return {"dataset_fingerprint": request.dataset.fingerprint, "sample_rows_seed": 0}

    def compute(
        self, store: Store, request: OrderDiagnosticsRequest, progress: ProgressFn | None
    ) -> OrderExperiment:
        info, metric, label_column = request.dataset, request.metric, request.label_column
        rows = np.sort(np.random.default_rng(0).choice(info.n, size=request.sample, replace=False))
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
            if len(np.unique(labels)) > MAX_LABELS:
                raise InvalidInputError(
                    f"column {label_column!r} has {len(np.unique(labels))} distinct values: "
                    f"choose a category column with at most {MAX_LABELS}"
                )
        return insertion_order_experiment(
            X, metric=metric, labels=labels, lid=lid, n_queries=request.n_queries, seed=0,
            progress=stage(progress, 0.2, 1.0),
        )  # fmt: skip

    def label(self, request: OrderDiagnosticsRequest) -> str:
        return f"Insertion-order experiment on {request.dataset.name}"


def ef_request(
    service: NeighbourService, dataset_id: int, *, metric: str = "cosine", k: int = 10
) -> EfDiagnosticsRequest:
    """The recall-vs-ef request for these settings."""
    info = service.store.get_dataset(dataset_id)
    k = check_k(k, max(info.n - 1, 1))
    return EfDiagnosticsRequest(info, check_metric(metric), k, min(EF_QUERIES, info.n))


def order_request(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    label_column: str | None = None,
) -> OrderDiagnosticsRequest:
    """The insertion-order request for these settings, validated."""
    metric = check_metric(metric)
    info = service.store.get_dataset(dataset_id)
    if label_column is not None and label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"no metadata column {label_column!r}; the dataset has {list(info.metadata_columns)}"
        )
    m = min(info.n, ORDER_SAMPLE)
    n_queries = min(ORDER_QUERIES, m // 5)
    if m - n_queries <= 10:
        raise InvalidInputError("the insertion-order experiment needs at least 70 items")
    return OrderDiagnosticsRequest(info, metric, label_column, m, n_queries)


def ef_diagnostics(
    service: NeighbourService,
    dataset_id: int,
    *,
    metric: str = "cosine",
    k: int = 10,
    run: bool = True,
    progress: ProgressFn | None = None,
) -> tuple[EfCurve, RecallLid | None] | None:
    """Recall@k and latency of the dataset's default HNSW index over :data:`DIAGNOSTIC_EFS`,
    and per-query recall against LID (from the shared graph).

    Returns None when nothing is stored and ``run`` is False. The LID part is None for the
    ``ip`` metric, whose distances can be negative (LID needs distances >= 0).
    """
    request = ef_request(service, dataset_id, metric=metric, k=k)
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
    run: bool = True,
    progress: ProgressFn | None = None,
) -> OrderExperiment | None:
    """The insertion-order experiment on (a seeded sample of at most :data:`ORDER_SAMPLE` of)
    the dataset, with LID from the shared graph and labels from ``label_column``.

    Returns None when nothing is stored and ``run`` is False.
    """
    request = order_request(service, dataset_id, metric=metric, label_column=label_column)
    return get_or_compute(
        service.store, OrderDiagnosticsSpec(service), request, run=run, progress=progress
    )
