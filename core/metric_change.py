"""A dataset's metric changed after upload, and what to do with the results of the old one.

A dataset records its metric at upload (``info["metric"]`` and ``info["metric_reason"]``,
:func:`core.validation.metric_record`), and every page and command defaults to it.
:func:`set_metric` records another one later, with the reason :data:`CHANGED_REASON`.

The results stored under the old metric (its neighbour graph, indexes, layouts, scorecards,
diagnostics, compression reports, comparisons with another dataset, clusters, hubness
effects) are still right for that metric, and a page reaches them again by choosing it: they
are kept unless asked. ``drop_stale=True`` deletes them in the same transaction that records
the new metric, so a failure leaves the dataset as it was; ``dry_run=True`` only says what
would be dropped (kind and count), for a page to ask before it drops anything.

Which results were computed with a metric is read from the artifact layer's records: every
kind that depends on a metric keeps it in its stored request (``params["request"]["metric"]``,
core/artifacts.py). A layout's kNN-accuracy scores on another label column
(``projection_labels``) record no metric: they go with the layouts they scored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from embscope.core.errors import InvalidInputError
from embscope.core.projections.label_scores import KIND as LABEL_SCORES_KIND
from embscope.core.projections.runs import KIND as PROJECTION_KIND
from embscope.core.store import Artifact, DatasetInfo, Store
from embscope.core.validation import check_metric

__all__ = ["CHANGED_REASON", "MetricChange", "set_metric", "stale_artifacts"]

#: The ``metric_reason`` recorded beside a metric chosen after upload.
CHANGED_REASON = "chosen after upload"


@dataclass(frozen=True)
class MetricChange:
    """What :func:`set_metric` did, or would do (``changed`` False).

    ``stale``: per artifact kind, how many stored results of the dataset were computed with
    the ``old`` metric; ``dropped``: per kind, how many of them were deleted (empty when they
    were kept, and on a dry run).
    """

    dataset: DatasetInfo  # as recorded after the change (as it is, when nothing changed)
    old: str
    new: str
    changed: bool
    stale: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def stale_count(self) -> int:
        """How many stored results were computed with the old metric."""
        return sum(self.stale.values())

    @property
    def dropped_count(self) -> int:
        """How many stored results were deleted."""
        return sum(self.dropped.values())


def _request(record: Artifact) -> Mapping[str, Any]:
    request = record.params.get("request") if isinstance(record.params, Mapping) else None
    return request if isinstance(request, Mapping) else {}


def stale_artifacts(store: Store, dataset_id: int | str, metric: str) -> list[Artifact]:
    """The dataset's stored results (records without their arrays, newest first) that were
    computed with ``metric``: those whose request names it, and the kNN-accuracy scores of
    layouts among them."""
    info = store.get_dataset(dataset_id)
    metric = check_metric(metric)
    records = store.list_artifacts(info.id)
    found = [r for r in records if _request(r).get("metric") == metric]
    layouts = {r.fingerprint for r in found if r.kind == PROJECTION_KIND}
    found_ids = {r.id for r in found}
    for record in records:
        scored = _request(record).get("projections")
        if (
            record.kind == LABEL_SCORES_KIND
            and record.id not in found_ids
            and isinstance(scored, Sequence)
            and layouts.intersection(map(str, scored))
        ):
            found.append(record)
    found.sort(key=lambda r: r.id, reverse=True)
    return found


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return value


def set_metric(
    store: Store,
    dataset_id: int | str,
    metric: str,
    *,
    drop_stale: bool = False,
    dry_run: bool = False,
) -> MetricChange:
    """Record ``metric`` as the dataset's metric (reason :data:`CHANGED_REASON`).

    Parameters
    ----------
    store : Store
    dataset_id : int or str
        The dataset's id or exact name.
    metric : {"cosine", "l2", "ip"}
    drop_stale : bool
        Also delete the stored results computed with the old metric (:func:`stale_artifacts`),
        in the same transaction. By default they are kept: they are right for the old metric.
    dry_run : bool
        Change nothing; the result says what would be dropped (``stale``).

    Returns
    -------
    MetricChange
        The dataset as recorded now, the old and new metric, what was computed with the old
        one and what was dropped. The metric the dataset already has changes nothing (and
        drops nothing: its results are the current ones).

    Raises
    ------
    InvalidInputError
        An unknown metric or dataset, a flag that is not True or False, or a read-only
        database. Nothing is changed then.
    """
    drop_stale, dry_run = _flag(drop_stale, "drop_stale"), _flag(dry_run, "dry_run")
    new = check_metric(metric)
    info = store.get_dataset(dataset_id)
    old = info.metric
    if new == old:
        return MetricChange(info, old, new, changed=False)
    stale = stale_artifacts(store, info.id, old)
    counts = dict(sorted(Counter(r.kind for r in stale).items()))
    if dry_run:
        return MetricChange(info, old, new, changed=False, stale=counts)
    record = {**info.info, "metric": new, "metric_reason": CHANGED_REASON}
    drop = [r.fingerprint for r in stale] if drop_stale else []
    after = store.set_info(info.id, record, drop=drop)
    return MetricChange(
        after, old, new, changed=True, stale=counts, dropped=counts if drop_stale else {}
    )
