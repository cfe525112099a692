"""A dataset's metric changed after upload, and what to do with the results of the old one.

A dataset records its metric at upload (``info["metric"]`` and ``info["metric_reason"]``,
:func:`core.validation.metric_record`), and every page and command defaults to it.
:func:`set_metric` records another one later, with the reason :data:`CHANGED_REASON`.

The results stored under the old metric (its neighbour graph, indexes, layouts, scorecards,
diagnostics, compression reports, comparisons with another dataset, clusters, hubness
effects) are still right for that metric, and a page reaches them again by choosing it: they
are kept unless asked. ``drop_stale=True`` deletes them in the same transaction that records
the new metric, so a failure leaves the dataset as it was; ``dry_run=True`` only says what
would be dropped (kind and count), for a page to ask before it drops anything. What is dropped
is read inside that transaction (:meth:`core.store.Store.set_info` calls back), so a result
stored meanwhile is either counted and dropped or stored after the change, never left behind
uncounted.

Results shared with another dataset are kept: every result is keyed by the fingerprint of the
dataset's vectors and ids, so a dataset holding the same vectors (a twin, an upload saved
twice) reaches every one of them, and dropping them would take them from it too (``shared``,
``shared_with``; ``to_drop`` is what a drop really deletes). A drop is recorded in the
dataset's info with its time (:mod:`core.result_drops`), so that a job asked for before it
under the old metric cannot store its result after it.

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
from embscope.core.result_drops import now, record_drop, twins
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
    were kept, and on a dry run); ``shared``: per kind, how many of the stale ones another
    dataset of the same vectors uses too (``shared_with``, their names): kept by a drop.
    """

    dataset: DatasetInfo  # as recorded after the change (as it is, when nothing changed)
    old: str
    new: str
    changed: bool
    stale: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    shared: Mapping[str, int] = field(default_factory=dict)
    shared_with: tuple[str, ...] = ()

    @property
    def stale_count(self) -> int:
        """How many stored results were computed with the old metric."""
        return sum(self.stale.values())

    @property
    def dropped_count(self) -> int:
        """How many stored results were deleted."""
        return sum(self.dropped.values())

    @property
    def shared_count(self) -> int:
        """How many of the stale results another dataset uses too (a drop keeps them)."""
        return sum(self.shared.values())

    @property
    def to_drop(self) -> dict[str, int]:
        """Per kind, what ``drop_stale=True`` deletes: the stale results no other dataset uses."""
        left = {kind: n - self.shared.get(kind, 0) for kind, n in self.stale.items()}
        return {kind: n for kind, n in left.items() if n > 0}

    @property
    def to_drop_count(self) -> int:
        """How many stored results ``drop_stale=True`` deletes."""
        return sum(self.to_drop.values())


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


def _counts(records: Sequence[Artifact]) -> dict[str, int]:
    return dict(sorted(Counter(r.kind for r in records).items()))


@dataclass(frozen=True)
class _Plan:
    stale: list[Artifact]
    shared: list[Artifact]  # of stale: reached by another dataset of the same vectors
    shared_with: tuple[str, ...]

    @property
    def to_drop(self) -> list[str]:
        kept = {r.fingerprint for r in self.shared}
        return [r.fingerprint for r in self.stale if r.fingerprint not in kept]

    def change(
        self, info: DatasetInfo, old: str, new: str, *, changed: bool, dropped: bool
    ) -> MetricChange:
        stale, shared = _counts(self.stale), _counts(self.shared)
        gone = {k: n - shared.get(k, 0) for k, n in stale.items()} if dropped else {}
        return MetricChange(
            info, old, new, changed=changed, stale=stale, shared=shared,
            shared_with=self.shared_with, dropped={k: n for k, n in gone.items() if n > 0},
        )  # fmt: skip


def _plan(store: Store, info: DatasetInfo, old: str) -> _Plan:
    stale = stale_artifacts(store, info.id, old)
    others = twins(store, info)
    # Every result is keyed by the vectors' fingerprint: a twin reaches all of them.
    return _Plan(stale, stale if others else [], tuple(d.name for d in others))


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
        in the same transaction, except those another dataset of the same vectors uses too
        (``shared``). By default they are kept: they are right for the old metric.
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
        An unknown metric or dataset, a flag that is not True or False, a read-only database,
        or a metric changed by someone else meanwhile. Nothing is changed then.
    """
    drop_stale, dry_run = _flag(drop_stale, "drop_stale"), _flag(dry_run, "dry_run")
    new = check_metric(metric)
    info = store.get_dataset(dataset_id)
    old = info.metric
    if new == old:
        return MetricChange(info, old, new, changed=False)
    if dry_run:
        return _plan(store, info, old).change(info, old, new, changed=False, dropped=False)
    plans: list[_Plan] = []

    def drop() -> list[str]:
        # Called by set_info inside its transaction: what is counted is what is dropped.
        current = store.get_dataset(info.id)
        # The record written is built from the info read before: any change since (another
        # metric change and back, with its drop record) would be overwritten.
        if current.metric != old or current.info != info.info:
            raise InvalidInputError(
                f"the metric of {info.name!r} was changed meanwhile (it is {current.metric} "
                "now): look at it again before changing it"
            )
        plans.append(_plan(store, info, old))
        return plans[-1].to_drop if drop_stale else []

    record = {**info.info, "metric": new, "metric_reason": CHANGED_REASON}
    if drop_stale:  # jobs asked for before now cannot store old-metric results after it
        record = record_drop(record, old, now())
    after = store.set_info(info.id, record, drop=drop)
    return plans[-1].change(after, old, new, changed=True, dropped=drop_stale)
