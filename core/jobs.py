"""Background jobs: long work runs outside the page's script thread.

A :class:`JobRunner` (one per server process) runs submitted work on worker threads. Each
job reports ``progress(fraction, message)``, can be cancelled (its progress callback then
returns True and the work raises :class:`core.errors.OperationCancelled`), keeps running
when the page that started it goes away, and writes its result to the store, where every
session sees it.

* **Shared work.** A job is keyed by what it computes (usually the fingerprint of the
  artifact it will store). Submitting a key that is already queued or running returns the
  running job, so two people asking for the same projection share one computation.
* **numba-heavy work is serialised.** Jobs submitted with ``serial=True`` (LargeVis, UMAP,
  heat-geodesic) run one at a time on a dedicated thread: concurrent numba/umap-learn calls
  in one process are known to crash, and on a small machine they would only compete for
  the same cores. Other jobs run on a small pool beside it.
* **Nothing is lost silently.** Every state change is recorded in the store's ``jobs``
  table; jobs a dead process left queued or running are shown as ``interrupted`` the next
  time the database is opened by a runner, and can be submitted again.
* **A read-only store records nothing.** On it (``embscope serve --read-only``) the jobs of
  this process live in memory only; the recorded ones are read as they are, except that a
  queued or running one reads as ``interrupted`` (no writer can hold the file meanwhile, so
  its process is gone).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.progress import ProgressFn

if TYPE_CHECKING:
    from embscope.core.store import Store

__all__ = ["ACTIVE_STATES", "STATES", "Job", "JobRunner", "JobStatus"]

log = logging.getLogger(__name__)

Work = Callable[[ProgressFn], Any]

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES = frozenset({"queued", "running"})
# Finished jobs kept in memory, and in the store's jobs table (the newest ones).
_KEEP_FINISHED = 200


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job, safe to show in a page."""

    key: str
    kind: str
    label: str
    dataset_id: int | None
    params: Mapping[str, Any]
    state: str
    fraction: float
    message: str
    error: str | None
    created: datetime | None
    seconds: float | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "label": self.label,
            "dataset_id": self.dataset_id,
            "params": dict(self.params),
            "state": self.state,
            "fraction": self.fraction,
            "message": self.message,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass(eq=False)
class Job:
    """One submitted piece of work. Read it through :meth:`status`; stop it with :meth:`cancel`."""

    key: str
    kind: str
    label: str
    dataset_id: int | None
    params: Mapping[str, Any]
    work: Work
    serial: bool
    state: str = "queued"
    fraction: float = 0.0
    message: str = "waiting for a worker"
    error: str | None = None
    result: Any = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    started_at: float | None = None
    finished_at: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Ask the work to stop at its next progress report (a queued job never starts)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (in any state); False on timeout."""
        return self._finished.wait(timeout)

    def status(self) -> JobStatus:
        if self.started_at is None:
            seconds = None
        else:
            seconds = (self.finished_at or time.monotonic()) - self.started_at
        return JobStatus(
            key=self.key,
            kind=self.kind,
            label=self.label,
            dataset_id=self.dataset_id,
            params=dict(self.params),
            state=self.state,
            fraction=self.fraction,
            message=self.message,
            error=self.error,
            created=self.created,
            seconds=seconds,
        )


# Background work yields the CPU to interactive requests (neighbour queries, page runs):
# worker threads run at this nice value, and threads they start (numba, hnswlib) inherit it.
JOB_NICENESS = 10


def _lower_priority() -> None:
    """Lower this thread's scheduling priority (Linux: nice is per thread)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, JOB_NICENESS))
    except OSError:
        log.debug("could not lower the priority of a job thread", exc_info=True)


class JobRunner:
    """Runs jobs on background threads and records their states in ``store``.

    Parameters
    ----------
    store : Store, optional
        Where job states are recorded (``jobs`` table). Without a store, or on a read-only
        one, states live in memory only (tests, the CLI, a read-only server).
    workers : int
        Threads for ordinary jobs. ``serial=True`` jobs have one thread of their own.
    warm_up : sequence of callables
        Run first on the serial lane, before any job (e.g. compiling numba code, so the first
        projection a user asks for does not pay for it). Not recorded; a failure is logged.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        workers: int = 2,
        warm_up: Sequence[Callable[[], Any]] = (),
    ):
        if not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
        self.store = store
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        # Jobs, warm-up callables (serial lane only) and None, which stops a worker.
        self._queues: dict[str, queue.Queue[Job | Callable[[], Any] | None]] = {
            "serial": queue.Queue(),
            "pool": queue.Queue(),
        }
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._finished_since_prune = 0
        if store is not None:
            n = store.mark_interrupted_jobs()
            if n:
                log.warning("%d job(s) were interrupted by the last shutdown", n)
            store.prune_jobs(_KEEP_FINISHED)
        for fn in warm_up:
            if not callable(fn):
                raise InvalidInputError(f"warm_up takes callables, got {fn!r}")
            self._queues["serial"].put(fn)
        for lane, count in (("serial", 1), ("pool", workers)):
            for i in range(count):
                thread = threading.Thread(
                    target=self._worker, args=(lane,), name=f"embscope-job-{lane}-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    # -- submitting and reading ---------------------------------------------------------

    def submit(
        self,
        key: str,
        work: Work,
        *,
        kind: str,
        label: str,
        dataset_id: int | None = None,
        params: Mapping[str, Any] | None = None,
        serial: bool = False,
    ) -> Job:
        """Run ``work(progress)`` in the background, or join the job already running for ``key``.

        ``work`` receives ``progress(fraction, message) -> bool``; it should report now and
        then and stop (raise :class:`OperationCancelled`) when that returns True.
        """
        if not key or not isinstance(key, str):
            raise InvalidInputError("a job needs a non-empty string key")
        if not callable(work):
            raise InvalidInputError("a job's work must be callable")
        with self._lock:
            if self._closed:
                raise InvalidInputError("the job runner has been shut down")
            running = self._jobs.get(key)
            if running is not None and running.state in ACTIVE_STATES:
                return running
            job = Job(
                key=key,
                kind=kind,
                label=label,
                dataset_id=dataset_id,
                params=dict(params or {}),
                work=work,
                serial=serial,
            )
            self._jobs[key] = job
            self._prune()
        self._record(job)
        self._queues["serial" if serial else "pool"].put(job)
        return job

    def get(self, key: str) -> Job | None:
        """The job of this process with this key (running or finished), or None."""
        with self._lock:
            return self._jobs.get(key)

    def status(self, key: str) -> JobStatus | None:
        """The job's state: from this process if it ran here, else as last recorded."""
        job = self.get(key)
        if job is not None:
            return job.status()
        for record in self._records():
            if record.key == key:
                return record
        return None

    def jobs(self, dataset_id: int | None = None) -> list[JobStatus]:
        """Jobs of this process and those recorded by earlier ones, newest first."""
        with self._lock:
            live = [j.status() for j in self._jobs.values()]
        if dataset_id is not None:
            live = [s for s in live if s.dataset_id == dataset_id]
        seen = {s.key for s in live}
        older = [r for r in self._records(dataset_id) if r.key not in seen]
        live.sort(key=lambda s: s.created or datetime.min, reverse=True)
        return live + older

    def live(self) -> list[JobStatus]:
        """Queued and running jobs of this process, newest first, from memory only (no
        store read: cheap enough for a view that refreshes every second)."""
        with self._lock:
            live = [j.status() for j in self._jobs.values()]
        live = [s for s in live if s.active]
        live.sort(key=lambda s: s.created or datetime.min, reverse=True)
        return live

    def active(self, dataset_id: int | None = None) -> list[JobStatus]:
        return [s for s in self.jobs(dataset_id) if s.active]

    def cancel(self, key: str) -> bool:
        """Ask a queued or running job to stop; False when there is no such active job."""
        job = self.get(key)
        if job is None or job.state not in ACTIVE_STATES:
            return False
        job.cancel()
        return True

    def shutdown(self, *, wait: float | None = 5.0) -> None:
        """Cancel everything and stop the worker threads (waiting up to ``wait`` seconds)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        for lane, q in self._queues.items():
            for _ in range(1 if lane == "serial" else len(self._threads) - 1):
                q.put(None)
        if wait:
            deadline = time.monotonic() + wait
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals ------------------------------------------------------------------------

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.state not in ACTIVE_STATES]
        if len(finished) > _KEEP_FINISHED:
            finished.sort(key=lambda j: j.finished_at or 0.0)
            for job in finished[: len(finished) - _KEEP_FINISHED]:
                del self._jobs[job.key]

    def _records(self, dataset_id: int | None = None) -> list[JobStatus]:
        if self.store is None:
            return []
        try:
            rows = self.store.list_jobs(dataset_id)
        except Exception:  # a deleted dataset or a closing store: show what is in memory
            log.debug("could not read recorded jobs", exc_info=True)
            return []
        # A read-only open shuts writers out, so a job recorded as queued or running belongs
        # to a process that is gone (a writable runner marks these when it starts; this one
        # cannot write): it reads as interrupted, never as a job to wait for.
        gone = self.store.read_only
        return [
            JobStatus(
                key=r["key"],
                kind=r["kind"],
                label=r["label"],
                dataset_id=r["dataset_id"],
                params=r["params"],
                state="interrupted" if gone and r["state"] in ACTIVE_STATES else r["state"],
                fraction=1.0 if r["state"] == "done" else 0.0,
                message=r["message"],
                error=r["error"],
                created=r["created"],
                seconds=(r["updated"] - r["created"]).total_seconds(),
            )
            for r in rows
        ]

    def _record(self, job: Job) -> None:
        if self.store is None or self.store.read_only:
            return  # kept in memory only (self._jobs): nothing is written
        try:
            self.store.put_job(
                key=job.key,
                kind=job.kind,
                dataset_id=job.dataset_id,
                label=job.label,
                params=job.params,
                state=job.state,
                message=job.message,
                error=job.error,
            )
            if job.state not in ACTIVE_STATES:
                self._finished_since_prune += 1
                if self._finished_since_prune >= _KEEP_FINISHED // 4:
                    self._finished_since_prune = 0
                    self.store.prune_jobs(_KEEP_FINISHED)
        except Exception:  # recording is best effort: the work itself must not fail for it
            log.warning("could not record the state of job %s", job.key, exc_info=True)

    def _worker(self, lane: str) -> None:
        _lower_priority()
        q = self._queues[lane]
        while True:
            job = q.get()
            if job is None:
                return
            if not isinstance(job, Job):  # a warm-up task
                try:
                    job()
                except Exception:
                    log.warning("warm-up %r failed", job, exc_info=True)
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        if job.cancel_requested:
            job.state, job.message = "cancelled", "cancelled before it started"
            job.finished_at = time.monotonic()
            self._record(job)
            job._finished.set()
            return
        job.state, job.message, job.started_at = "running", "starting", time.monotonic()
        self._record(job)

        def progress(fraction: float, message: str) -> bool:
            job.fraction = min(1.0, max(job.fraction, float(fraction)))
            job.message = str(message)
            return job.cancel_requested

        try:
            job.result = job.work(progress)
        except OperationCancelled:
            job.state, job.message = "cancelled", "cancelled"
        except InvalidInputError as exc:
            job.state, job.error, job.message = "failed", str(exc), "failed"
        except Exception as exc:
            log.error("job %s failed:\n%s", job.key, traceback.format_exc())
            job.state, job.message = "failed", "failed"
            job.error = f"{type(exc).__name__}: {exc}"
        else:
            if job.cancel_requested and job.result is None:
                job.state, job.message = "cancelled", "cancelled"
            else:
                job.state, job.fraction, job.message = "done", 1.0, "done"
        job.finished_at = time.monotonic()
        self._record(job)
        job._finished.set()
