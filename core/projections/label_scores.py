"""kNN accuracy of stored layouts on another label column, scored on demand.

A projection's kNN accuracy is scored when it is computed, on the dataset's label column of
that moment (recorded as :attr:`core.projections.runs.Projection.label_column`). Scoring it on
another categorical column needs no new layout: the stored coordinates, the shared neighbour
graph and the column are enough (the same :func:`core.projections.quality.projection_quality`
vote, on the same sampled points and seed, so the column the layout was scored on gives its
stored figure again). The scores are stored as artifact kind ``projection_labels``, one per
(dataset, label column, set of projections); :func:`stored_label_scores` merges every stored
one, so a new layout asks only for its own score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from embscope.core.artifacts import ArtifactSpec, get_or_compute, stored
from embscope.core.errors import InvalidInputError
from embscope.core.graph import get_or_build_graph
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.projections.runs import QUALITY_K, load_labels, load_projection
from embscope.core.store import DatasetInfo, Store

__all__ = [
    "KIND",
    "LABEL_SCORES",
    "LabelScore",
    "LabelScores",
    "LabelScoresRequest",
    "label_scores_request",
    "score_labels",
    "stored_label_scores",
]

KIND = "projection_labels"
CODE_VERSION = 1


@dataclass(frozen=True)
class LabelScore:
    """kNN accuracy@k of one stored layout (by fingerprint) on a label column."""

    projection: str
    knn_accuracy: float
    knn_accuracy_ci: tuple[float, float] | None
    sample: int


@dataclass(frozen=True)
class LabelScores:
    """kNN accuracy of some stored layouts of a dataset on one label column."""

    label_column: str
    k: int
    scores: tuple[LabelScore, ...]


@dataclass(frozen=True)
class LabelScoresRequest:
    dataset: DatasetInfo
    label_column: str
    projections: tuple[str, ...]  # fingerprints of stored layouts, sorted


class LabelScoresSpec(ArtifactSpec[LabelScoresRequest, LabelScores]):
    """Stored kNN accuracies of layouts on a label column chosen after they were computed."""

    kind = KIND
    result_type = LabelScores
    code_version = CODE_VERSION

    def key(self, request: LabelScoresRequest) -> tuple[Any, ...]:
        return (request.dataset.fingerprint, request.label_column, list(request.projections))

    def describe(self, request: LabelScoresRequest) -> dict[str, Any]:
        return {"label_column": request.label_column, "projections": list(request.projections)}

    def compute(
        self, store: Store, request: LabelScoresRequest, progress: ProgressFn | None
    ) -> LabelScores:
        from embscope.core.projections.quality import projection_quality

        info = request.dataset
        k = min(QUALITY_K, max(1, (info.n - 1) // 2))  # as the layouts were scored
        labels = load_labels(store, info, request.label_column)
        scores = []
        count = len(request.projections)
        for i, fp in enumerate(request.projections):
            check_cancel(progress, i / count, f"layout {i + 1} of {count}", "scoring")
            projection = load_projection(store, fp)
            if projection is None or projection.coords is None:
                raise InvalidInputError(
                    f"layout {fp[:12]} of {info.name!r} is no longer stored: reload the page"
                )
            graph = get_or_build_graph(store, info.id, k=k, metric=projection.metric)
            quality = projection_quality(
                projection.coords, graph, k=k, labels=labels, seed=projection.seed,
                progress=stage(progress, i / count, (i + 1) / count),
            )  # fmt: skip
            assert quality.knn_accuracy is not None
            ci = quality.intervals.get("knn_accuracy")
            scores.append(
                LabelScore(
                    projection=fp,
                    knn_accuracy=float(quality.knn_accuracy),
                    knn_accuracy_ci=None if ci is None else (float(ci[0]), float(ci[1])),
                    sample=int(quality.sample),
                )
            )
        return LabelScores(request.label_column, k, tuple(scores))

    def label(self, request: LabelScoresRequest) -> str:
        count = len(request.projections)
        return (
            f"kNN accuracy on {request.label_column} of {count} layout"
            f"{'' if count == 1 else 's'} of {request.dataset.name}"
        )


LABEL_SCORES = LabelScoresSpec()


def label_scores_request(
    store: Store, dataset_id: int, label_column: str, projections: Iterable[str]
) -> LabelScoresRequest:
    """The request to score these stored layouts on ``label_column`` (a metadata column of
    the dataset; a continuous one is refused when its labels are read)."""
    info = store.get_dataset(dataset_id)
    if label_column not in info.metadata_columns:
        raise InvalidInputError(
            f"dataset {info.name!r} has no metadata column {label_column!r}; it has: "
            + (", ".join(info.metadata_columns) or "none")
        )
    fingerprints = tuple(sorted(set(projections)))
    if not fingerprints:
        raise InvalidInputError("no layout to score: compute a projection first")
    return LabelScoresRequest(info, label_column, fingerprints)


def stored_label_scores(store: Store, dataset_id: int, label_column: str) -> dict[str, LabelScore]:
    """Every stored kNN accuracy of the dataset's layouts on ``label_column``, by layout
    fingerprint (nothing is computed)."""
    out: dict[str, LabelScore] = {}
    for record in stored(store, LABEL_SCORES, dataset_id, with_results=True):
        result = record.result
        if result is None or result.label_column != label_column:
            continue
        for score in result.scores:
            out.setdefault(score.projection, score)  # newest first
    return out


def score_labels(
    store: Store,
    dataset_id: int,
    label_column: str,
    projections: Iterable[str],
    *,
    progress: ProgressFn | None = None,
) -> LabelScores:
    """Score (or read) the kNN accuracy of these stored layouts on ``label_column``."""
    request = label_scores_request(store, dataset_id, label_column, projections)
    result = get_or_compute(store, LABEL_SCORES, request, progress=progress)
    assert result is not None
    return result
