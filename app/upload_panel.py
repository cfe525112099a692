"""An upload saved in the background: the Datasets page submits the save (a file of vectors,
or a table of texts to embed) as a job of its own kind (core/upload_jobs.py), shows its
progress with Cancel where the upload form was (the job panel every job uses), and when it
ends shows the saved dataset (selected, its index started, the same messages as ever), the
error, or that it was cancelled and nothing was saved.

The uploaded files belong to the job once it is submitted: the upload form is emptied, the
files are held (:func:`app.uploads.hold_uploads`) until the job ends, and removed then.

The Save button sits at the foot of a tall form; the browser keeps the page's scroll position
across the rerun that replaces the form with the job's panel, which left the panel (at the top
of the section) out of view. The first run after a submit scrolls the panel into view, once.
"""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path
from typing import Any

import streamlit as st

from embscope.app import access, state, widgets
from embscope.app.jobs import count_for_session, job_panel, job_refusal, start_index_job
from embscope.app.runtime import get_job_runner, get_store
from embscope.app.uploads import hold_uploads, release_uploads
from embscope.core.errors import InvalidInputError
from embscope.core.jobs import JobRunner
from embscope.core.memory import job_peak
from embscope.core.progress import ProgressFn
from embscope.core.upload_jobs import (
    BUSY_EMBEDDING,
    TEXT_UPLOAD_KIND,
    SavedUpload,
    TextsUpload,
    VectorsUpload,
    check_upload,
    save_upload,
    upload_key,
)

log = logging.getLogger(__name__)

# Held from the check that no table of texts is being embedded to the submit of a new one, so
# two sessions cannot both pass the check (the second job would fail after its form emptied).
_SUBMITTING = threading.Lock()
# This session's uploads being saved: job key -> the uploaded files it reads.
_PENDING = "upload_jobs"
#: Where the end of an upload that saved nothing is said (app.widgets.note_for).
NOTE = "datasets.upload"
# The job just submitted, whose panel the next run brings into view.
_SCROLL = "upload_jobs.scroll"
# Our own markup and script (the only value in it is a job key, a hash): brings the panels
# that follow it into view. Run by st.html in the page itself, like app/share.py's button.
_SCROLL_HTML = """<div class="embscope-upload-jobs" data-job="{job}"></div><script>
(function () {{
  var marks = document.querySelectorAll(".embscope-upload-jobs");
  var mark = marks[marks.length - 1];
  if (mark) {{ mark.scrollIntoView({{block: "center", behavior: "instant"}}); }}
}})();
</script>"""


def _active(runner: JobRunner, key: str) -> bool:
    status = runner.status(key)
    return status is not None and status.active


def start_upload(request: VectorsUpload | TextsUpload) -> None:
    """Save ``request`` as a dataset in a background job, then rerun the page.

    Checked first (a writable server, the name free, the files there, this session's and the
    server's job limits, one table of texts embedded at a time); the uploaded files are then
    held until the job ends and removed after, and the upload form is emptied.

    Raises
    ------
    InvalidInputError
        What stops the upload; nothing was started.
    """
    access.require_writable("add a dataset")
    store, runner = get_store(), get_job_runner()
    check_upload(store, request)
    refusal = job_refusal()
    if refusal is not None:
        raise InvalidInputError(refusal)
    with _SUBMITTING:
        job = _submit(runner, store, request)
    count_for_session(job.key, upload=True)  # its label: shown to this session only
    state.put(_PENDING, {**state.get(_PENDING, {}), job.key: [str(p) for p in request.paths]})
    state.put(_SCROLL, job.key)  # its panel in view after the rerun, not the page scrolled down
    # A new uploader key gives an empty form: Streamlit forgets its copy, the job has its own.
    state.put("upload_generation", int(state.get("upload_generation", 0)) + 1)
    st.rerun()


def _submit(runner: JobRunner, store: Any, request: VectorsUpload | TextsUpload) -> Any:
    """The upload's job, submitted (its files held until it ends); one table of texts embedded
    at a time."""
    if request.kind == TEXT_UPLOAD_KIND and any(s.kind == TEXT_UPLOAD_KIND for s in runner.live()):
        raise InvalidInputError(BUSY_EMBEDDING)
    key, paths = upload_key(request), request.paths
    # Held from now: until the job is submitted, a clean-up by another session (which asks
    # ``needed``) must not take the files because no job is running yet.
    submitted = [False]
    hold_uploads(paths, needed=lambda: not submitted[0] or _active(runner, key))

    def work(progress: ProgressFn) -> SavedUpload:
        try:
            saved = save_upload(store, request, progress)
        finally:
            release_uploads(paths)  # saved or not, the files are not needed any more
        try:  # its index, even if no page sees the job end (the session may have gone)
            start_index_job(saved.dataset)
        except Exception:  # the dataset is saved: a missing index is built on first query
            log.warning(
                "could not start the index job of dataset %s", saved.dataset.id, exc_info=True
            )
        return saved

    try:
        job = runner.submit(
            key,
            work,
            kind=request.kind,
            label=f"Saving {request.source} as “{request.name}”",
            params={"file": request.source, "name": request.name},
            memory=job_peak(request.kind, request),
        )
    except BaseException:
        release_uploads(paths)
        raise
    submitted[0] = True
    return job


def upload_jobs_panel() -> None:
    """This session's uploads being saved, each with its progress and Cancel; one that has
    ended is shown here once (a saved dataset through the page's messages)."""
    pending: dict[str, list[str]] = dict(state.get(_PENDING, {}))
    runner = get_job_runner()
    scroll = state.get(_SCROLL)
    if scroll is not None:
        st.html(_SCROLL_HTML.format(job=html.escape(str(scroll))), unsafe_allow_javascript=True)
    for key, paths in list(pending.items()):
        if _active(runner, key):
            job_panel(key)
            continue
        del pending[key]
        state.put(_PENDING, pending)
        release_uploads([Path(p) for p in paths])  # a job cancelled before it started
        job = runner.get(key)
        _ended(runner.status(key), None if job is None else job.result)
    # Once (a run that ended in a rerun above scrolls again): then the page keeps where the user
    # scrolls to.
    state.put(_SCROLL, None)
    widgets.show_note(NOTE)


def _ended(status: Any, result: Any) -> None:
    if status is not None and status.state == "done" and isinstance(result, SavedUpload):
        _saved(result)
        return
    label = status.label if status is not None else "An upload"
    if status is not None and status.state == "failed":
        widgets.note_for(
            NOTE,
            f"{label}: failed: {status.error or 'unknown error'}. Nothing was saved; upload the "
            "file again to try again.",
            kind="error",
        )
    elif status is not None and status.state == "interrupted":
        widgets.note_for(NOTE, f"{label}: interrupted: nothing was saved.", kind="warning")
    elif status is None or status.state == "done":
        # Done, but its result is no longer kept in memory (the runner keeps the latest
        # finished jobs): the dataset was saved; the catalog below lists it.
        outcome = "has ended" if status is None else "is saved"
        widgets.note_for(NOTE, f"{label} {outcome}: see the stored datasets below.", kind="info")
    else:
        widgets.note_for(NOTE, f"{label}: cancelled: nothing was saved.", kind="warning")


def _saved(result: SavedUpload) -> None:
    info, request = result.dataset, result.request
    state.select_dataset(info.id)  # its index job was started by the upload's job
    if isinstance(request, TextsUpload):
        message = (
            f"Saved dataset {info.id}: {info.n:,} texts of “{request.text_column}” embedded "
            f"with {request.model} ({info.dim} dimensions). Open Projections to see its map."
        )
    else:
        message = (
            f"Saved dataset {info.id}: {info.n:,} vectors of dimension {info.dim}; metric "
            f"{info.metric} ({info.info.get('metric_reason', '')})."
        )
    state.flash("success", message)
    if result.recognised:
        found, column, cosine = result.recognised
        state.flash(
            "info",
            f"Recognised the vectors as {found}'s: its embeddings of column “{column}” match "
            f"(lowest cosine {cosine:.4f}), so the dataset can be searched by text.",
        )
    for warning in result.warnings:
        state.flash("warning", warning)
    st.rerun()
