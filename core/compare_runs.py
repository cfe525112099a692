"""Two stored datasets compared over the items they share, and the stored comparisons.

:func:`compare_datasets` pairs the items of two datasets by id and compares them with
:func:`core.compare.compare_spaces`, taking each side's neighbours from its stored shared
graph where it can (:func:`core.compare.restrict_neighbours`). :class:`ComparisonSpec` stores
the result through :mod:`core.artifacts`, keyed by both datasets' contents, so a comparison is
computed once and every session sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.artifacts import ArtifactSpec, get_or_compute
from embscope.core.compare import (
    CKA_SAMPLE,
    SpaceComparison,
    compare_spaces,
    match_items,
    restrict_neighbours,
)
from embscope.core.errors import InvalidInputError
from embscope.core.graph import KnnGraph, find_graph, get_or_build_graph
from embscope.core.index import exact_knn
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.validation import (
    Metric,
    check_int,
    check_k,
    check_metric,
    check_seed,
    prepare_for_metric,
)

if TYPE_CHECKING:
    from embscope.core.store import DatasetInfo, Store

# The widest neighbourhoods a comparison may ask for (the page's bound).
MAX_K = 200

__all__ = [
    "COMPARISONS",
    "ComparisonRequest",
    "ComparisonSpec",
    "compare_datasets",
    "comparison_request",
    "get_or_compare_datasets",
]


def _subset_graph(
    store: Store,
    dataset_id: int,
    n_total: int,
    rows: np.ndarray,
    X: np.ndarray,
    *,
    k: int,
    metric: str,
    progress: ProgressFn | None,
) -> KnnGraph | None:
    """The k-NN graph of the matched rows from the dataset's stored graph, or None.

    All rows matched: the stored graph (built and stored first if missing, for every later
    consumer). Some rows matched: a stored graph restricted to them, rows whose stored list
    holds fewer than k matched items searched again exactly; None if no graph is stored.
    """
    graph: KnnGraph | None
    if rows.size == n_total:
        graph = get_or_build_graph(store, dataset_id, k=k, metric=metric, progress=progress)
        source = "stored graph"
    else:
        graph = find_graph(store, dataset_id, metric=metric, k=k)
        if graph is None:
            return None
        source = "stored graph restricted to the matched items"
    idx, dist, complete = restrict_neighbours(graph.indices, graph.distances, rows, k=k)
    missing = np.flatnonzero(~complete)
    if missing.size:
        P = prepare_for_metric(X, metric)
        fix_i, fix_d = exact_knn(P[missing], P, k, metric=metric, exclude=missing)
        idx[missing], dist[missing] = fix_i, fix_d
    params = dict(graph.params, source=source, recomputed_rows=int(missing.size))
    return KnnGraph(idx, dist, metric, graph.method, graph.recall, params, graph.seconds)


def compare_datasets(
    store: Store,
    id_a: int | str,
    id_b: int | str,
    *,
    k: int = 10,
    metric: str = "cosine",
    seed: int = 0,
    cka_sample: int | None = CKA_SAMPLE,
    progress: ProgressFn | None = None,
) -> SpaceComparison:
    """Compare two stored datasets over the items they share (paired by id).

    Neighbours are searched within the matched items (module docstring). A dataset whose
    items all match uses its stored shared graph (:func:`core.graph.get_or_build_graph`,
    which builds and stores it when missing); a partly matched one uses its stored graph
    restricted to the matched items when one is stored (rows that keep fewer than k matched
    neighbours are searched again exactly) and otherwise a new graph of the matched items
    (exact up to :data:`EXACT_MAX_N` items).

    Parameters
    ----------
    store : core.store.Store
    id_a, id_b : int or str
        Dataset ids or exact names.
    k, metric, seed, cka_sample, progress
        As :func:`compare_spaces`.

    Returns
    -------
    SpaceComparison
        Per-item arrays in A's row order over the matched items; ``rows_a``/``rows_b`` are
        their rows in each dataset, ``only_a``/``only_b`` the unmatched counts.

    Raises
    ------
    InvalidInputError
        Unknown dataset, fewer than :data:`MIN_MATCHED` shared ids, k >= matched items, ...
    """
    t0 = time.perf_counter()
    metric = check_metric(metric)
    info_a, info_b = store.get_dataset(id_a), store.get_dataset(id_b)
    check_cancel(progress, 0.0, "pairing items by id", "the comparison")
    match = match_items(store.load_ids(info_a.id), store.load_ids(info_b.id))
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= match.matched:
        raise InvalidInputError(
            f"k = {k} needs more than k items in both datasets, but only {match.matched} "
            "ids are shared: choose a smaller k"
        )
    k = check_k(k, match.matched - 1)
    X_a = store.load_vectors(info_a.id)[match.rows_a]
    X_b = store.load_vectors(info_b.id)[match.rows_b]
    check_cancel(
        progress, 0.05, f"finding each item's neighbours in {info_a.name}", "the comparison"
    )
    graph_a = _subset_graph(store, info_a.id, info_a.n, match.rows_a, X_a, k=k, metric=metric,
                            progress=stage(progress, 0.05, 0.45))  # fmt: skip
    check_cancel(
        progress, 0.45, f"finding each item's neighbours in {info_b.name}", "the comparison"
    )
    graph_b = _subset_graph(store, info_b.id, info_b.n, match.rows_b, X_b, k=k, metric=metric,
                            progress=stage(progress, 0.45, 0.85))  # fmt: skip
    result = compare_spaces(
        X_a, X_b, k=k, metric=metric, seed=seed, cka_sample=cka_sample,
        graph_a=graph_a, graph_b=graph_b, progress=stage(progress, 0.85, 1.0),
    )  # fmt: skip
    return replace(
        result,
        only_a=match.only_a,
        only_b=match.only_b,
        rows_a=match.rows_a,
        rows_b=match.rows_b,
        seconds=time.perf_counter() - t0,
    )


# -- stored comparisons ---------------------------------------------------------------------------

KIND = "comparison"
# 2: debiased linear CKA and its chance level (cka_debiased, cka_null, cka_note).
COMPARISON_CODE_VERSION = 2


@dataclass(frozen=True)
class ComparisonRequest:
    """Two stored datasets compared over the items they share."""

    dataset: DatasetInfo  # A: the comparison is stored with (and deleted with) A
    other: DatasetInfo  # B
    k: int
    metric: Metric
    seed: int


class ComparisonSpec(ArtifactSpec[ComparisonRequest, SpaceComparison]):
    """Stored comparisons, keyed by both datasets' contents."""

    kind = KIND
    result_type = SpaceComparison
    code_version = COMPARISON_CODE_VERSION

    def key(self, request: ComparisonRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint,
            request.other.fingerprint,
            request.k,
            request.metric,
            request.seed,
        )

    def describe(self, request: ComparisonRequest) -> dict[str, Any]:
        return {
            "other_dataset": request.other.id,
            "k": request.k,
            "metric": request.metric,
            "seed": request.seed,
        }

    def lineage(self, request: ComparisonRequest, result: SpaceComparison) -> dict[str, Any]:
        return {"a": request.dataset.fingerprint, "b": request.other.fingerprint}

    def compute(
        self, store: Store, request: ComparisonRequest, progress: ProgressFn | None
    ) -> SpaceComparison:
        return compare_datasets(
            store, request.dataset.id, request.other.id, k=request.k, metric=request.metric,
            seed=request.seed, progress=progress,
        )  # fmt: skip

    def label(self, request: ComparisonRequest) -> str:
        return f"{request.dataset.name} vs {request.other.name} (k={request.k}, {request.metric})"


COMPARISONS = ComparisonSpec()


def comparison_request(
    store: Store, id_a: int | str, id_b: int | str, *, k: int = 10, metric: str = "cosine",
    seed: int = 0,
) -> ComparisonRequest:  # fmt: skip
    """The request of comparing two stored datasets at these settings (k at most
    :data:`MAX_K`; it must also stay below the number of shared items, checked when run)."""
    return ComparisonRequest(
        store.get_dataset(id_a),
        store.get_dataset(id_b),
        check_int(k, "k", low=1, high=MAX_K),
        check_metric(metric),
        check_seed(seed),
    )


def get_or_compare_datasets(
    store: Store,
    id_a: int | str,
    id_b: int | str,
    *,
    k: int = 10,
    metric: str = "cosine",
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> SpaceComparison:
    """:func:`compare_datasets`, stored as artifact ``comparison`` (of dataset A) and reused."""
    request = comparison_request(store, id_a, id_b, k=k, metric=metric, seed=seed)
    result = get_or_compute(store, COMPARISONS, request, progress=progress)
    assert result is not None
    return result
