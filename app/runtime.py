"""The process's long-lived objects: one store, one neighbour service and one job runner per
database, made once under a lock and kept until the process ends.

They are not Streamlit cache entries: a browser may ask the server to clear its caches
(Streamlit's "Clear cache"), and a second store, service or runner would then exist beside
the first (two job runners would each run and record the same work). The results
:mod:`app.cache` keeps are computed through these. Tests call :func:`reset` between tests.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import time

from embscope.app import access
from embscope.core.artifacts import read_only_cache
from embscope.core.jobs import JobRunner
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store, resolve_db_path

_lock = threading.Lock()
_stores: dict[str, Store] = {}
_services: dict[str, NeighbourService] = {}
_runners: dict[str, JobRunner] = {}


def db_path() -> str:
    """The absolute path of ``$EMBSCOPE_DB`` (or ``./embscope.duckdb``): the key of every
    process-wide object and cached result."""
    return _resolved(os.environ.get("EMBSCOPE_DB") or "", os.getcwd())


@functools.lru_cache(maxsize=8)
def _resolved(configured: str, cwd: str) -> str:
    # Called several times in every script run of every session: resolving the path on
    # the file system each time showed in profiles of many sessions at once.
    return str(resolve_db_path(configured or None).resolve())


def get_store(path: str | None = None) -> Store:
    """The process's :class:`core.store.Store` for ``path`` (default :func:`db_path`).

    One database object per process (ARCHITECTURE.md); the store hands each thread its own cursor.
    On a read-only server (``$EMBSCOPE_READ_ONLY``, :func:`app.access.read_only`) it is opened
    read-only: nothing is written to the database or beside it, and what visitors compute is
    kept in memory (:class:`core.artifacts.ReadOnlyCache`), shared by every session.
    """
    key = path or db_path()
    found = _stores.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _stores:
            _stores[key] = Store(key, read_only=access.read_only())
        return _stores[key]


def get_neighbour_service(path: str | None = None) -> NeighbourService:
    """The process's :class:`core.neighbours.NeighbourService` over :func:`get_store`: loaded
    indexes and vectors are shared by every session."""
    key = path or db_path()
    found = _services.get(key)
    if found is not None:
        return found
    store = get_store(key)  # before taking the lock, which get_store takes too
    with _lock:
        if key not in _services:
            _services[key] = NeighbourService(store)
        return _services[key]


def get_job_runner(path: str | None = None) -> JobRunner:
    """The process's :class:`core.jobs.JobRunner` over :func:`get_store`.

    A job started by one session is seen (and shared) by every session, and keeps running
    when the page that started it goes away. With ``$EMBSCOPE_WARM_UP=1`` (``embscope
    serve`` sets it) the projection methods' numba code is compiled first, on the serial
    lane: that starts when the server's first page opens, since that run creates the runner.
    """
    key = path or db_path()
    found = _runners.get(key)
    if found is not None:
        return found
    store = get_store(key)
    with _lock:
        if key not in _runners:
            warm_up = (warm_up_projections,) if os.environ.get(access.WARM_UP_ENV) == "1" else ()
            _runners[key] = JobRunner(store, warm_up=warm_up)
        return _runners[key]


def warm_up_projections() -> None:
    """Compile every projection method once (the job runner's warm-up), then keep the
    long-lived heap out of Python's full collections, and say so on the server's terminal."""
    from embscope.core.projections.runs import warm_up

    start = time.perf_counter()
    warm_up()
    # The heap is now mostly modules and compiled code that live as long as the server.
    # Python's full (generation 2) collections scanned all of it, 0.2 s of holding the GIL
    # on an idle server and 0.1-0.4 s under ten sessions, stalling every session at once;
    # frozen, it is left out of them (a full collection right after: 0.2 s -> under 1 ms).
    gc.freeze()
    # On the terminal that runs `embscope serve`: from now on no projection waits for it.
    seconds = time.perf_counter() - start
    sys.stderr.write(f"embscope: projection methods ready (compiled in {seconds:.1f} s)\n")
    sys.stderr.flush()


def reset(*, wait: float = 5.0) -> None:
    """Forget every process-wide object, for tests: job runners are shut down (their jobs
    cancelled, waiting up to ``wait`` seconds), stores closed and the results read-only ones
    kept in memory dropped (as a restart would); the next ``get_*`` call makes new ones."""
    with _lock:
        runners = list(_runners.values())
        stores = list(_stores.values())
        _runners.clear()
        _services.clear()
        _stores.clear()
    for runner in runners:
        runner.shutdown(wait=wait)
    for store in stores:
        store.close()
        if store.read_only:
            read_only_cache().forget(store.path)
