"""Results dropped with a metric change stay dropped: a request made before the drop cannot
store its result after it.

:func:`core.metric_change.set_metric` with ``drop_stale=True`` deletes the dataset's results
computed with the old metric, and records when (``info["results_dropped"][metric]``, an ISO
time in UTC, :func:`record_drop`). A job asked for before that under the old metric (a layout
whose page defaulted to it, its graph built on the way) may still be running; when it ends,
:func:`core.artifacts.get_or_compute` stores its result through
:meth:`core.store.Store.put_artifact` with :func:`refuse_dropped` as its check, inside the
write transaction: the result is refused (:class:`core.errors.ResultDroppedError`, the job
fails saying why) when its dataset's results of its metric were dropped at or after the moment
it was asked for. The check and the drop are each one transaction under the store's write
lock, so no order of the two lets the result back in. A result asked for after the drop (the
old metric chosen on purpose) is stored as any other; so is every result when nothing was
dropped.

When a request was made is :func:`asked`'s context: :func:`core.artifacts.submit` takes the
moment a job is submitted (a queued job counts from then, not from when it starts), and a
computation inside another one (the graph a layout builds) counts from the outer request.

A result whose dataset shares its vectors with another dataset is never refused: every stored
result is keyed by the vectors' fingerprint, so the other dataset reaches it too, and a drop
keeps such results (:func:`twins`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from embscope.core.errors import ResultDroppedError

if TYPE_CHECKING:
    from embscope.core.store import DatasetInfo, Store

__all__ = ["DROPPED_KEY", "asked", "dropped_at", "now", "record_drop", "refuse_dropped", "twins"]

#: The key of a dataset's info that says when its results of each metric were last dropped.
DROPPED_KEY = "results_dropped"

_ASKED: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "embscope_result_asked", default=None
)


def now() -> datetime:
    """The time a request or a drop is recorded at (UTC)."""
    return datetime.now(UTC)


@contextmanager
def asked(when: datetime | None = None) -> Iterator[datetime]:
    """Results stored inside count as asked for at ``when`` (default now); inside another
    ``asked``, the earlier moment holds (a computation made for an outer request belongs to
    it). Yields the moment that holds."""
    outer = _ASKED.get()
    moment = when or now()
    if outer is not None and outer <= moment:
        yield outer
        return
    token = _ASKED.set(moment)
    try:
        yield moment
    finally:
        _ASKED.reset(token)


def record_drop(info: Mapping[str, Any], metric: str, when: datetime) -> dict[str, Any]:
    """``info`` with the drop of the ``metric`` results at ``when`` recorded."""
    drops = dict(info.get(DROPPED_KEY) or {})
    drops[metric] = when.isoformat()
    return {**info, DROPPED_KEY: drops}


def dropped_at(info: DatasetInfo) -> dict[str, datetime]:
    """When the dataset's results of each metric were last dropped (metrics never dropped are
    missing; an unreadable record reads as never)."""
    drops = info.info.get(DROPPED_KEY)
    out: dict[str, datetime] = {}
    if isinstance(drops, Mapping):
        for metric, text in drops.items():
            try:
                when = datetime.fromisoformat(str(text))
            except ValueError:
                continue
            out[str(metric)] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return out


def twins(store: Store, info: DatasetInfo) -> list[DatasetInfo]:
    """The other datasets with the same vectors and ids (the same fingerprint): they reach
    every result stored for ``info``, since every result is keyed by that fingerprint."""
    return [
        d for d in store.list_datasets() if d.fingerprint == info.fingerprint and d.id != info.id
    ]


def refuse_dropped(
    store: Store, *, dataset_id: int, request: Mapping[str, Any], since: datetime
) -> None:
    """Raise :class:`ResultDroppedError` when a result of ``dataset_id`` asked for at ``since``
    with this stored ``request`` would have been dropped by a drop made since: its metric's
    results were dropped at or after ``since`` (or, for a result that names no metric but the
    layouts it scored, ``projections``, some of them are gone after a drop), and no other
    dataset shares the vectors. Run inside the transaction that stores the result."""
    info = store.get_dataset(dataset_id)
    recent = {m for m, t in dropped_at(info).items() if t >= since}
    if not recent:
        return
    metric = request.get("metric")
    named = request.get("projections")
    if metric in recent:
        what = f"its results computed with {metric} were dropped"
    elif metric is None and isinstance(named, Sequence) and not isinstance(named, str):
        if all(store.get_artifact(str(fp), with_arrays=False) is not None for fp in named):
            return
        dropped = ", ".join(sorted(recent))
        what = f"the layouts this result scores were dropped with its {dropped} results"
    else:
        return
    if twins(store, info):
        return  # kept by the drop too: another dataset of the same vectors uses it
    raise ResultDroppedError(
        f"the metric of “{info.name}” was changed to {info.metric} and {what} after this was "
        "asked for: its result was not stored, so they stay dropped. Ask again to compute it "
        f"with {metric or 'that metric'} on purpose."
    )
