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
* **A memory budget.** Every job states its expected peak memory (``submit(memory=...)``,
  bytes; :func:`core.memory.job_peak` estimates it) and starts only when that fits what the
  running jobs leave of the server's budget (:func:`core.memory.budget_bytes`:
  ``$EMBSCOPE_MEMORY_BUDGET_GIB``, else 75 % of the machine's memory). Until then it stays
  ``queued`` with a message that says why ("waiting for memory: needs 3.4 GiB, 2.1 GiB of the
  17.7 GiB budget free"). Admission is first come, first served across both lanes (in the
  order the jobs reach a worker), so a stream of small jobs never starves a large one: a
  small job that would fit waits behind a large one that does not. A job larger than the
  whole budget runs
  alone, once nothing else runs (the budget is a share for running side by side, and such a
  job can still fit the machine); one larger than the machine's memory too is refused at
  once: it is recorded as failed with a message, since it could only end in the kernel
  killing the server. A job waiting for memory holds its worker but no lock and no memory,
  and running jobs never wait for a queued one (only for locks that running jobs hold), so
  the lanes cannot deadlock: when nothing runs, the first in line always starts. Work that
  states no memory (``memory=0``) is not counted and never waits for memory.
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
from embscope.core.memory import BUDGET_ENV, budget_bytes, format_gib, machine_memory
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
    memory: int | None = None  # expected peak, bytes (None: recorded by another process)

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
            "memory": self.memory,
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
    memory: int = 0  # expected peak, bytes; 0: too little to count
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
            memory=self.memory,
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
    memory_budget : int, optional
        Bytes the running jobs may use together (their expected peaks). Default
        :func:`core.memory.budget_bytes` (``$EMBSCOPE_MEMORY_BUDGET_GIB``, else 75 % of the
        machine's memory; a bad value raises :class:`InvalidInputError` here).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        workers: int = 2,
        warm_up: Sequence[Callable[[], Any]] = (),
        memory_budget: int | None = None,
    ):
        if not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
        if memory_budget is None:
            memory_budget = budget_bytes()
        elif isinstance(memory_budget, bool) or not isinstance(memory_budget, int):
            raise InvalidInputError(f"memory_budget is a number of bytes, got {memory_budget!r}")
        if memory_budget < 1:
            raise InvalidInputError(f"memory_budget must be above 0 bytes, got {memory_budget}")
        #: Bytes the running jobs may use together.
        self.memory_budget = memory_budget
        #: A job expected to need more than this is refused: more than the budget (which it
        #: could have alone) and more than the machine has.
        self._machine_total = machine_memory().total
        self.memory_limit = max(memory_budget, self._machine_total or 0)
        self._admission = threading.Condition()
        self._reserved = 0  # bytes of the admitted jobs that have not finished
        self._waiting: list[Job] = []  # jobs a worker holds until their memory fits, FIFO
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
        memory: int = 0,
    ) -> Job:
        """Run ``work(progress)`` in the background, or join the job already running for ``key``.

        ``work`` receives ``progress(fraction, message) -> bool``; it should report now and
        then and stop (raise :class:`OperationCancelled`) when that returns True.
        ``memory``: the work's expected peak in bytes (:func:`core.memory.job_peak`); it
        starts when that fits the budget the running jobs leave (0: always, at once). A job
        needing more than :attr:`memory_limit` is not run: it is returned failed, its error
        saying why.
        """
        if not key or not isinstance(key, str):
            raise InvalidInputError("a job needs a non-empty string key")
        if not callable(work):
            raise InvalidInputError("a job's work must be callable")
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
            raise InvalidInputError(f"a job's memory is a number of bytes >= 0, got {memory!r}")
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
                memory=memory,
            )
            if memory:
                job.message = f"waiting for a worker (expected peak {format_gib(memory)})"
            refused = memory > self.memory_limit
            if refused:
                job.state, job.message = "failed", "refused: not enough memory"
                job.error = self._too_large(memory)
                job.finished_at = time.monotonic()
            self._jobs[key] = job
            self._prune()
        self._record(job)
        if refused:
            job._finished.set()
        else:
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
        with self._admission:  # a job waiting for memory leaves the queue now
            self._admission.notify_all()
        return True

    @property
    def memory_reserved(self) -> int:
        """Bytes of the budget the running jobs hold (their expected peaks)."""
        with self._admission:
            return self._reserved

    def shutdown(self, *, wait: float | None = 5.0) -> None:
        """Cancel everything and stop the worker threads (waiting up to ``wait`` seconds)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        with self._admission:
            self._admission.notify_all()
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
            admitted = self._admit(job)
            try:
                self._run(job)  # cancelled while it waited: recorded as cancelled, not run
            finally:
                if admitted:
                    self._release(job)
                job._finished.set()  # after the release: a waiter sees the memory free

    # -- the memory budget ------------------------------------------------------------------

    def _too_large(self, memory: int) -> str:
        total = self._machine_total
        return (
            f"this job is expected to need {format_gib(memory)} of memory at its peak, more "
            + (f"than this machine's {format_gib(total)}" if total else "than this machine has")
            + f" and more than the {format_gib(self.memory_budget)} budget of background jobs: "
            "use a smaller dataset (a subset or a sample), or run it on a larger machine; if "
            f"the estimate is too cautious, raise ${BUDGET_ENV}"
        )

    def _fits(self, memory: int) -> bool:
        # Called with self._admission held. A job above the whole budget fits when nothing
        # else holds any of it: it runs alone.
        return memory <= self.memory_budget - self._reserved or self._reserved == 0

    def _admit(self, job: Job) -> bool:
        """Wait until ``job``'s memory fits, first come first served; reserve it. False when
        the job was cancelled while it waited (nothing reserved)."""
        if job.memory == 0:
            return False  # nothing to reserve (and nothing to release)
        with self._admission:
            self._waiting.append(job)
            try:
                while not job.cancel_requested:
                    if self._waiting[0] is job and self._fits(job.memory):
                        self._reserved += job.memory
                        return True
                    job.message = self._waiting_message(job)
                    # Woken when a job ends or is cancelled; the timeout also hears a Cancel
                    # given to the job itself (Job.cancel, not JobRunner.cancel).
                    self._admission.wait(timeout=0.25)
                return False
            finally:
                self._waiting.remove(job)
                self._admission.notify_all()  # the next in line may fit now

    def _release(self, job: Job) -> None:
        with self._admission:
            self._reserved -= job.memory
            self._admission.notify_all()

    def _waiting_message(self, job: Job) -> str:
        free = max(0, self.memory_budget - self._reserved)
        message = (
            f"waiting for memory: needs {format_gib(job.memory)}, {format_gib(free)} of the "
            f"{format_gib(self.memory_budget)} budget free"
        )
        ahead = self._waiting.index(job)
        if ahead:
            message += f", after {ahead} job{'s' if ahead > 1 else ''} waiting before it"
        elif job.memory > self.memory_budget:
            message += "; more than the whole budget, it runs alone when the others finish"
        return message

    def _run(self, job: Job) -> None:
        if job.cancel_requested:
            job.state, job.message = "cancelled", "cancelled before it started"
            job.finished_at = time.monotonic()
            self._record(job)
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
