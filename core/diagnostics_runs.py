"""ANN diagnostics of a stored dataset, computed once and kept as artifacts.

The Neighbours page asks for these; a stored result (same dataset, parameters and code) is
returned at once, otherwise it is computed with progress and stored, so a restart or a second
session sees it without recomputing. Both read the dataset's shared neighbour graph for LID
(:func:`core.graph.get_or_build_graph`) and never compute neighbours of their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

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
from embscope.core.progress import ProgressFn
from embscope.core.progress import stage as _stage
from embscope.core.store import fingerprint_arrays
from embscope.core.validation import check_metric

__all__ = [
    "DIAGNOSTIC_EFS",
    "ORDER_SAMPLE",
    "ef_diagnostics",
    "order_diagnostics",
]

CODE_VERSION = 2  # 2: LID on cosine graphs uses chord distances (was half the dimension)
DIAGNOSTIC_EFS = (10, 20, 40, 80, 160, 320)
EF_QUERIES = 300
# The insertion-order experiment builds one single-threaded index per order: on a sample.
ORDER_SAMPLE = 20_000
ORDER_QUERIES = 500
MAX_LABELS = 100


def _to_artifact(result: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value.astype(str) if value.dtype.hasobject else value
        elif isinstance(value, (np.integer, np.floating)):
            params[f.name] = value.item()
        else:
            params[f.name] = list(value) if isinstance(value, tuple) else value
    return arrays, params


def _from_artifact(cls: type, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in arrays:
            kwargs[f.name] = arrays[f.name]
        elif f.name in params:
            value = params[f.name]
            kwargs[f.name] = tuple(value) if "tuple" in str(f.type) and value is not None else value
    return cls(**kwargs)


def _prefixed(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix) :]: v for name, v in arrays.items() if name.startswith(prefix)}


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
    metric = check_metric(metric)
    store = service.store
    info = store.get_dataset(dataset_id)
    n_queries = min(EF_QUERIES, info.n)
    fp = fingerprint_arrays(
        "ef_diagnostics", info.fingerprint, metric, k, DIAGNOSTIC_EFS, n_queries,
        dict(DEFAULT_HNSW), CODE_VERSION,
    )  # fmt: skip
    art = store.get_artifact(fp)
    if art is not None:
        curve = _from_artifact(EfCurve, _prefixed(art.arrays, "curve."), art.params["curve"])
        lid = None
        if art.params.get("lid") is not None:
            lid = _from_artifact(RecallLid, _prefixed(art.arrays, "lid."), art.params["lid"])
        return curve, lid
    if not run:
        return None
    t0 = time.perf_counter()
    index = service.get_index(info.id, metric=metric, progress=_stage(progress, 0.0, 0.4))
    curve = recall_vs_ef(
        service.vectors(info.id), metric=metric, k=k, efs=DIAGNOSTIC_EFS, n_queries=n_queries,
        index=index, seed=0, progress=_stage(progress, 0.4, 0.9),
    )  # fmt: skip
    lid_result = None
    if metric != "ip" and info.n > LID_K:
        graph = get_or_build_graph(
            store, info.id, k=LID_K, metric=metric, progress=_stage(progress, 0.9, 1.0)
        )
        lid_result = per_query_recall_vs_lid(curve, graph, ef=min(DIAGNOSTIC_EFS))
    arrays, curve_params = _to_artifact(curve)
    stored = {f"curve.{name}": v for name, v in arrays.items()}
    lid_params = None
    if lid_result is not None:
        lid_arrays, lid_params = _to_artifact(lid_result)
        stored.update({f"lid.{name}": v for name, v in lid_arrays.items()})
    if not store.read_only:
        store.put_artifact(
            kind="ef_diagnostics", fingerprint=fp, dataset_id=info.id,
            params={"curve": curve_params, "lid": lid_params, "metric": metric, "k": k},
            arrays=stored, duration_s=time.perf_counter() - t0,
            lineage={"dataset_fingerprint": info.fingerprint},
        )  # fmt: skip
    if progress:
        progress(1.0, "diagnostics ready")
    return curve, lid_result


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
    metric = check_metric(metric)
    store = service.store
    info = store.get_dataset(dataset_id)
    if label_column is not None and label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"no metadata column {label_column!r}; the dataset has {list(info.metadata_columns)}"
        )
    m = min(info.n, ORDER_SAMPLE)
    n_queries = min(ORDER_QUERIES, m // 5)
    if m - n_queries <= 10:
        raise InvalidInputError("the insertion-order experiment needs at least 70 items")
    fp = fingerprint_arrays(
        "order_diagnostics", info.fingerprint, metric, label_column, m, n_queries, CODE_VERSION
    )
    art = store.get_artifact(fp)
    if art is not None:
        return _from_artifact(OrderExperiment, art.arrays, art.params)
    if not run:
        return None
    t0 = time.perf_counter()
    rows = np.sort(np.random.default_rng(0).choice(info.n, size=m, replace=False))
    X = service.vectors(info.id)[rows]
    lid = None
    if metric != "ip" and info.n > LID_K:
        graph = get_or_build_graph(
            store, info.id, k=LID_K, metric=metric, progress=_stage(progress, 0.0, 0.2)
        )
        lid = local_intrinsic_dimension(graph.distances[rows], k=LID_K, metric=graph.metric)
    labels = None
    if label_column is not None:
        values = store.load_metadata(info.id, columns=[label_column])[label_column]
        labels = as_text(values, missing=MISSING)[rows]
        if len(np.unique(labels)) > MAX_LABELS:
            raise InvalidInputError(
                f"column {label_column!r} has {len(np.unique(labels))} distinct values: choose a "
                f"category column with at most {MAX_LABELS}"
            )
    result = insertion_order_experiment(
        X, metric=metric, labels=labels, lid=lid, n_queries=n_queries, seed=0,
        progress=_stage(progress, 0.2, 1.0),
    )  # fmt: skip
    arrays, params = _to_artifact(result)
    if not store.read_only:
        store.put_artifact(
            kind="order_diagnostics", fingerprint=fp, dataset_id=info.id,
            params={**params, "label_column": label_column, "sample": m},
            arrays=arrays, duration_s=time.perf_counter() - t0,
            lineage={"dataset_fingerprint": info.fingerprint, "sample_rows_seed": 0},
        )  # fmt: skip
    return result
