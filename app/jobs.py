"""Background jobs on a page: a job's progress with Cancel, a stored result or its job or a
start button, the sidebar list of every session's jobs, and a new dataset's index built as a
job. The jobs themselves run on the process's :class:`core.jobs.JobRunner`
(:func:`app.runtime.get_job_runner`).

The sidebar lists every session's jobs, but an upload's label (its file's and dataset's
names) only to the session that submitted it (:func:`shown_label`): the others see "Saving an
upload". A job does not know its session; the session knows its jobs
(:func:`count_for_session` records each job it submits).
"""

from __future__ import annotations

from typing import Any, TypeVar

import streamlit as st

from embscope.app.choices import backend_label
from embscope.app.runtime import get_job_runner, get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.app.widgets import show_error
from embscope.core import artifacts
from embscope.core.artifacts import ArtifactSpec
from embscope.core.memory import format_gib, index_peak
from embscope.core.result_drops import asked, now
from embscope.core.store import DatasetInfo
from embscope.core.upload_jobs import UPLOAD_KINDS

Q = TypeVar("Q")
T = TypeVar("T")


@st.fragment(run_every=1.0)
def job_panel(key: str) -> None:
    """A running background job's progress bar and Cancel button, refreshed every second;
    when the job ends the whole page reruns (and shows its stored result)."""
    status = get_job_runner().status(key)
    if status is None or not status.active:
        st.rerun(scope="app")
    # The bar takes the room the Cancel button leaves (never cut, even in a narrow column).
    row = st.container(horizontal=True, vertical_alignment="bottom")
    # A queued job's message already says what memory it waits for.
    peak = status.memory if status.state == "running" else None
    row.progress(
        min(max(status.fraction, 0.0), 1.0),
        text=f"{md_escape(status.label)}: {md_escape(status.message)}"
        + (f" ({status.seconds:.0f} s)" if status.seconds else "")
        + (f" · expected peak {format_gib(peak)}" if peak else ""),
    )
    if row.button("Cancel", key=f"job.cancel.{key}"):
        get_job_runner().cancel(key)


def last_run_notice(status: Any) -> None:
    """Say how the last run of a job that left no result ended (failed, cancelled...)."""
    if status is None or status.active or status.state == "done":
        return
    if status.state == "failed":
        show_error(f"The last run failed: {status.error or 'unknown error'}")
    elif status.state == "interrupted":
        st.warning("The last run was interrupted (the server stopped while it ran).")
    else:
        st.warning("The last run was cancelled.")


def artifact_or_job(
    spec: ArtifactSpec[Q, T],
    request: Q,
    *,
    button: str,
    button_key: str,
    start_now: bool = False,
    caption: str = "",
    with_arrays: bool = True,
) -> T | None:
    """The stored result of ``request``; else its running job's progress; else a start button.

    The one way a page gets a result that takes time: the job (keyed by the result's
    fingerprint, so every session shares it) computes and stores it through
    :func:`core.artifacts.submit`; the page reruns when it ends and reads the stored result.
    ``start_now`` submits at once (instant work, such as PCA); ``with_arrays=False`` reads
    only the result's summary (a page that reads its arrays elsewhere, once).
    """
    store = get_store()
    key = artifacts.fingerprint(spec, request)
    stored = spec.find(store, request)
    found = None if stored is None else artifacts.load(store, spec, stored, with_arrays=with_arrays)
    if found is not None:
        return found
    runner = get_job_runner()
    status = runner.status(key)
    if status is not None and status.active:
        job_panel(key)
        return None
    last_run_notice(status)
    # start_now only when it never ran here: after a failure or Cancel the button asks again
    # (otherwise every rerun would start it anew, and hide why it stopped).
    if (start_now and status is None) or st.button(button, type="primary", key=button_key):
        refusal = job_refusal()
        if refusal is not None:
            st.warning(refusal)
        else:
            submit_for_session(spec, request)
            st.rerun()
    if caption:
        st.caption(caption)
    return None


# A session may have this many jobs queued or running; the server this many in all. Every
# parameter of a job is bounded (core/params.py); these bound how many a visitor can start.
MAX_JOBS_PER_SESSION = 3
MAX_JOBS_WAITING = 12
_MY_JOBS = "embscope.my_jobs"  # the active jobs this session submitted
_MY_UPLOADS = "embscope.my_uploads"  # every upload job this session submitted
#: What other sessions see of an upload's job: its file's and dataset's names are private.
OTHERS_UPLOAD = "Saving an upload"


def job_refusal() -> str | None:
    """Why this session may not start another job now (too many of its own, or the server
    is busy), or None."""
    runner = get_job_runner()
    mine = [k for k in st.session_state.get(_MY_JOBS, []) if _active(runner.status(k))]
    st.session_state[_MY_JOBS] = mine
    if len(mine) >= MAX_JOBS_PER_SESSION:
        return (
            f"You have {len(mine)} jobs running: wait for one to finish (or cancel one) "
            "before starting another."
        )
    if len(runner.active()) >= MAX_JOBS_WAITING:
        return "The server is busy with other people's jobs: try again when one has finished."
    return None


def submit_for_session(spec: ArtifactSpec[Q, Any], request: Q) -> None:
    """Submit a stored result's job and count it against this session's jobs."""
    count_for_session(artifacts.submit(get_job_runner(), get_store(), spec, request).key)


def count_for_session(key: str, *, upload: bool = False) -> None:
    """Count the job ``key`` (just submitted) against this session's jobs (:func:`job_refusal`);
    ``upload``: an upload's, whose label only this session is shown (:func:`shown_label`)."""
    st.session_state[_MY_JOBS] = [*st.session_state.get(_MY_JOBS, []), key]
    if upload:
        st.session_state[_MY_UPLOADS] = [*st.session_state.get(_MY_UPLOADS, []), key]


def shown_label(job: Any) -> str:
    """A job's label as this session may see it: an upload's (its file's and dataset's names)
    only in the session that submitted it, :data:`OTHERS_UPLOAD` in every other."""
    if job.kind in UPLOAD_KINDS and job.key not in st.session_state.get(_MY_UPLOADS, []):
        return OTHERS_UPLOAD
    return str(job.label)


def _active(status: Any) -> bool:
    return status is not None and status.active


def jobs_sidebar() -> None:
    """Background jobs of every session, in the sidebar: running ones with their progress
    (refreshed while any runs), and ones the last server stop interrupted (they can be
    started again from their page)."""
    jobs = get_job_runner().jobs()
    running = any(j.active for j in jobs)
    interrupted = [j for j in jobs if j.state == "interrupted"]
    if not running and not interrupted:
        return
    with st.sidebar:
        if running:
            _running_jobs()
        for job in interrupted[:3]:
            st.caption(f":orange[interrupted:] {md_escape(shown_label(job))}")


@st.fragment(run_every=1.5)
def _running_jobs() -> None:
    # Only this part of the sidebar reruns, from the runner's memory: the progress moves
    # while the page is read, and a job that ends leaves a line saying so until the next run.
    active = get_job_runner().live()
    if not active:
        st.caption("Background jobs: all finished")
        return
    st.caption(f"Background jobs: {len(active)} running")
    for job in active[:5]:
        st.progress(
            min(max(job.fraction, 0.0), 1.0),
            text=f"{md_escape(shown_label(job))} ({job.fraction:.0%})",
        )


INDEX_JOB_KIND = "index"


def start_index_job(info: DatasetInfo, *, metric: str | None = None, backend: str = "hnsw") -> None:
    """Build a new dataset's default index as a background job (lower priority, shared by
    every session), so its first query neither builds it inside the request nor slows
    everyone else's queries while it does. ``metric``: the dataset's by default (the
    Neighbours page's default)."""
    metric = metric or info.metric
    service = get_neighbour_service()
    if service.has_index(info.id, metric=metric, backend=backend):
        return

    when = now()  # asked for now (a drop of this metric's results after it holds)

    def work(progress):
        with asked(when):
            service.get_index(info.id, metric=metric, backend=backend, progress=progress)

    get_job_runner().submit(
        service.index_fingerprint(info.id, metric=metric, backend=backend),
        work,
        kind=INDEX_JOB_KIND,
        label=f"{backend_label(backend)} index of {info.name}",
        dataset_id=info.id,
        params={"metric": metric, "backend": backend},
        memory=index_peak(info.n, info.dim, backend=backend),
    )
