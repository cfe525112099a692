"""The measured effect of hubness reduction on a stored dataset, kept as an artifact.

The Neighbours page shows, for every method of :mod:`core.hubness_reduction`, what it does to
the dataset's k-NN lists: k-occurrence skewness before and after, recall@k against the
unreduced exact lists and (with a label column) how many neighbours share the query's label.
Everything is read from the shared neighbour graph (:func:`core.graph.get_or_build_graph`);
the result is stored as artifact kind ``hubness_reduction`` and computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embscope.core.artifacts import ArtifactSpec, get_or_compute
from embscope.core.errors import InvalidInputError
from embscope.core.graph import find_graph, get_or_build_graph
from embscope.core.hubness_reduction import (
    EFFECT_QUERIES,
    EFFECT_QUERIES_MAX,
    METHODS,
    hubness_reduction_effect,
    resolve_neighbours,
)
from embscope.core.progress import ProgressFn, stage
from embscope.core.projections.runs import load_labels
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import Metric, check_int, check_k, check_metric, check_seed

__all__ = [
    "HUBNESS_EFFECTS",
    "HubnessEffect",
    "HubnessEffectRequest",
    "HubnessEffectSpec",
    "MethodEffect",
    "effect_request",
    "get_or_measure_effect",
]

KIND = "hubness_reduction"
CODE_VERSION = 1


@dataclass(frozen=True)
class MethodEffect:
    """One method's k-NN lists (``"none"``: the unreduced ones)."""

    method: str
    neighbours: int  # K (0 for "none")
    skewness: float
    recall_vs_exact: float
    antihubs: int
    max_occurrence: int
    label_agreement: float | None = None


@dataclass(frozen=True)
class HubnessEffect:
    """What each hubness reduction does to the k-NN lists of ``n_queries`` rows."""

    metric: str
    k: int
    n_queries: int
    pool: int
    seed: int
    label_column: str | None
    graph_method: str
    graph_recall: float
    rows: tuple[MethodEffect, ...]

    def to_json(self) -> list[dict[str, Any]]:
        """One dict per method, "none" first."""
        out = []
        for r in self.rows:
            row: dict[str, Any] = {
                "method": r.method,
                "neighbours": r.neighbours,
                "skewness": r.skewness,
                "recall_vs_exact": r.recall_vs_exact,
                "antihubs": r.antihubs,
                "max_occurrence": r.max_occurrence,
            }
            if r.label_agreement is not None:
                row["label_agreement"] = r.label_agreement
            out.append(row)
        return out


@dataclass(frozen=True)
class HubnessEffectRequest:
    dataset: DatasetInfo
    metric: Metric
    k: int
    n_queries: int
    seed: int
    label_column: str | None


class HubnessEffectSpec(ArtifactSpec[HubnessEffectRequest, HubnessEffect]):
    """Stored measurements of every hubness reduction on one dataset's graph."""

    kind = KIND
    result_type = HubnessEffect
    code_version = CODE_VERSION

    def key(self, request: HubnessEffectRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint, request.metric, request.k, request.n_queries,
            request.seed, request.label_column, METHODS,
        )  # fmt: skip

    def describe(self, request: HubnessEffectRequest) -> dict[str, Any]:
        return {
            "metric": request.metric,
            "k": request.k,
            "n_queries": request.n_queries,
            "seed": request.seed,
            "label_column": request.label_column,
        }

    def compute(
        self, store: Store, request: HubnessEffectRequest, progress: ProgressFn | None
    ) -> HubnessEffect:
        info = request.dataset
        widest = max(resolve_neighbours(m, n=info.n) for m in METHODS[1:])
        # The pool is max(10 k, 100) columns of the widest stored graph: 150 where the graph
        # is exact; above 50,000 items its stored width (never built wider for this).
        want = min(max(request.k, widest), info.n - 1)
        graph = find_graph(store, info.id, metric=request.metric, k=want)
        if graph is None:
            get_or_build_graph(
                store, info.id, k=want, metric=request.metric, progress=stage(progress, 0, 0.6)
            )
            graph = find_graph(store, info.id, metric=request.metric, k=want)
        assert graph is not None
        labels = None
        if request.label_column is not None:
            labels = load_labels(store, info, request.label_column)
        rows: list[MethodEffect] = []
        for i, method in enumerate(METHODS[1:]):
            e = hubness_reduction_effect(
                graph, method, request.k, n_queries=request.n_queries, seed=request.seed,
                labels=labels, progress=stage(progress, 0.6 + 0.2 * i, 0.8 + 0.2 * i),
            )  # fmt: skip
            if not rows:  # the unreduced lists, the same for every method
                rows.append(_row(e, "none", "before", neighbours=0, recall=1.0))
            rows.append(_row(e, method, "after", neighbours=e["neighbours"]))
        return HubnessEffect(
            request.metric, request.k, e["n_queries"], e["pool"], request.seed,
            request.label_column, graph.method, float(graph.recall), tuple(rows),
        )  # fmt: skip

    def label(self, request: HubnessEffectRequest) -> str:
        return f"Hubness reduction on {request.dataset.name}"


HUBNESS_EFFECTS = HubnessEffectSpec()


def _row(
    effect: dict[str, Any], method: str, when: str, *, neighbours: int, recall: float | None = None
) -> MethodEffect:
    """One method's lists from :func:`hubness_reduction_effect`'s ``*_before`` or ``*_after``."""
    return MethodEffect(
        method=method,
        neighbours=int(neighbours),
        skewness=effect[f"skewness_{when}"],
        recall_vs_exact=effect["recall_vs_exact"] if recall is None else recall,
        antihubs=effect[f"antihubs_{when}"],
        max_occurrence=effect[f"max_occurrence_{when}"],
        label_agreement=effect.get(f"label_agreement_{when}"),
    )


def effect_request(
    store: Store,
    dataset_id: int,
    *,
    metric: str = "cosine",
    k: int = 10,
    n_queries: int = EFFECT_QUERIES,
    seed: int = 0,
    label_column: str | None = None,
) -> HubnessEffectRequest:
    """The request for these settings, checked (k from 1 to 200 and below n; the queries
    capped at the number of rows; the label column must be one of the dataset's, and
    categorical when it is read)."""
    info = store.get_dataset(dataset_id)
    k = check_k(k, max(min(200, info.n - 1), 1))
    n_queries = check_int(n_queries, "n_queries", low=100, high=EFFECT_QUERIES_MAX)
    if label_column is not None and label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"dataset {info.name!r} has no metadata column {label_column!r}; it has: "
            + (", ".join(info.metadata_columns) or "none")
        )  # a continuous column is refused when the labels are read (load_labels)
    return HubnessEffectRequest(
        info, check_metric(metric), k, min(n_queries, info.n), check_seed(seed), label_column
    )


def get_or_measure_effect(
    store: Store,
    dataset_id: int,
    *,
    progress: ProgressFn | None = None,
    **settings: Any,
) -> HubnessEffect:
    """The stored effect of every method on the dataset, measured first if needed
    (``settings`` as for :func:`effect_request`)."""
    request = effect_request(store, dataset_id, **settings)
    result = get_or_compute(store, HUBNESS_EFFECTS, request, progress=progress)
    assert result is not None
    return result
