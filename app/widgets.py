"""Widgets shared by every page: the header, the dataset picker, progress, downloads and error
display."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from embscope.app import glossary, share, state
from embscope.app.runtime import get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.store import DatasetInfo

T = TypeVar("T")
PICKER_KEY = "embscope.picker"
PAGES = Path(__file__).resolve().parents[1] / "pages"
# Pages whose header lists the page's terms (the Compression page lists them beside its
# codecs, each codec explained).
GLOSSARY_IN_HEADER = ("Projections", "Neighbours", "Compare", "Geometry")


def page_header(title: str) -> None:
    """The page title with the Copy link button at its right, the same on every page; below
    it, on the pages of :data:`GLOSSARY_IN_HEADER`, a "What is this?" of the page's terms."""
    left, right = st.columns([5, 1], vertical_alignment="center")
    left.title(title)
    with right:
        share.copy_link_button()
    if title in GLOSSARY_IN_HEADER:
        glossary.what_is_this(glossary.PAGE_TERMS[title])


def has_layout(info: DatasetInfo) -> bool:
    """Whether a projection of ``info`` is stored (a map can be shown at once)."""
    return bool(get_store().list_artifacts(info.id, kind="projection"))


def _opening_dataset(by_id: dict[int, DatasetInfo]) -> int:
    """A new session's dataset: the one laid out most recently (so the first page shows a
    map), else the one added last."""
    for artifact in get_store().list_artifacts(kind="projection"):
        if artifact.dataset_id in by_id:
            return int(artifact.dataset_id)
    return max(by_id)


def dataset_picker() -> DatasetInfo | None:
    """The sidebar dataset picker shared by every page; returns the chosen dataset or None.

    It runs first on every full run, so it also notes whether the URL holds a share link
    to apply (:func:`app.share.begin_run`) and takes the link's ``dataset`` from it.
    """
    share.begin_run()
    datasets = get_store().list_datasets()
    with st.sidebar:
        if not datasets:
            st.caption("No datasets yet: upload one on the Datasets page.")
            state.select_dataset(None)
            return None
        by_id = {d.id: d for d in datasets}
        _dataset_from_link(by_id, share.link())
        current = state.selected_dataset_id()
        if current not in by_id:
            current = _opening_dataset(by_id)
        # The session's dataset (a link, a saved upload) drives the picker through its key:
        # popping the key or passing index= does not move a picker the browser already shows.
        if st.session_state.get(PICKER_KEY) != current:
            st.session_state[PICKER_KEY] = current
        chosen = st.selectbox(
            "Dataset",
            options=list(by_id),
            format_func=lambda i: f"{by_id[i].name}  ({by_id[i].n:,} × {by_id[i].dim})",
            key=PICKER_KEY,
            on_change=_picker_changed,
            help="Every page works on this dataset.",
        )
        state.select_dataset(chosen)
        return by_id[chosen]


def _dataset_from_link(by_id: dict[int, DatasetInfo], link: share.Link) -> None:
    """A share link's ``?dataset=`` (an id, or a dataset's exact name) chooses the dataset."""
    wanted = link.raw("dataset")
    if wanted is None:
        return
    text = wanted.strip()
    found = [i for i in by_id if str(i) == text] or [i for i, d in by_id.items() if d.name == text]
    if len(found) != 1:
        link.ignore("dataset", wanted, "no dataset has this id or name")
        return
    state.select_dataset(found[0])


def _picker_changed() -> None:
    state.select_dataset(st.session_state[PICKER_KEY])


def table_csv(frame: Any) -> bytes:
    """``frame`` as CSV bytes (formulas in user text stay text in a spreadsheet)."""
    from embscope.core.export import csv_bytes

    return csv_bytes(frame)


def table_parquet(frame: Any) -> bytes:
    """``frame`` as Parquet bytes (every value verbatim)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _download_row(columns: Any) -> tuple[Any, Any]:
    # Side by side, each button as wide as its label ("Per-item overlap (Parquet)" whole).
    if columns is not None:
        return columns[0], columns[1]
    row = st.container(horizontal=True)
    return row, row


def table_downloads(
    make_frame: Callable[[], Any], name: str, *, key: str, label: str = "", columns: Any = None
) -> None:
    """CSV and Parquet download buttons for a table built only when a button is clicked
    (a million-row export must not slow down every rerun of the page).

    A click does not rerun the page (``on_click="ignore"``): Streamlit gives a lazy download
    a new id on every run and forgets the old one, so a rerun between drawing a button and
    a click on it left the click waiting for a file that no longer existed (the selection's
    CSV after a click on its Parquet). A table the page has built anyway is better offered
    with :func:`frame_downloads`, whose files do not depend on that."""

    def csv() -> bytes:
        return table_csv(make_frame())

    def parquet() -> bytes:
        return table_parquet(make_frame())

    first, second = _download_row(columns)
    prefix = f"{label} " if label else ""
    first.download_button(f"{prefix}(CSV)" if label else "CSV", csv, f"{name}.csv",
                          "text/csv", key=f"{key}.csv", on_click="ignore")  # fmt: skip
    second.download_button(f"{prefix}(Parquet)" if label else "Parquet", parquet,
                           f"{name}.parquet", "application/octet-stream",
                           key=f"{key}.parquet", on_click="ignore")  # fmt: skip


def frame_downloads(
    files: tuple[bytes, bytes], name: str, *, key: str, label: str = "", columns: Any = None
) -> None:
    """CSV and Parquet download buttons for ``files`` (the table's CSV and Parquet bytes,
    made before: :func:`table_csv`, :func:`table_parquet`). The bytes are sent with the page
    and served as plain files, so a click always gets them, whatever ran in between; and a
    click does not rerun the page."""
    first, second = _download_row(columns)
    prefix = f"{label} " if label else ""
    first.download_button(f"{prefix}(CSV)" if label else "CSV", files[0], f"{name}.csv",
                          "text/csv", key=f"{key}.csv", on_click="ignore")  # fmt: skip
    second.download_button(f"{prefix}(Parquet)" if label else "Parquet", files[1],
                           f"{name}.parquet", "application/octet-stream",
                           key=f"{key}.parquet", on_click="ignore")  # fmt: skip


# -- feedback next to the control that caused it -------------------------------------------


# How long a note stays beside its control: the page reruns by itself now and then (a
# background job finishing), and the note must outlive that.
NOTE_SECONDS = 60.0


def note_for(
    place: str,
    message: str,
    *,
    kind: str = "success",
    toast: str | None = None,
    link: tuple[str, str, Mapping[str, str]] | None = None,
) -> None:
    """Queue ``message`` to show at ``place`` (:func:`show_note`, drawn right under the
    control that caused it) from the next rerun on, for :data:`NOTE_SECONDS`, with a
    ``toast`` (shown once, seen wherever the page is scrolled) and a ``link`` to the new
    thing: (page script name, label, query parameters), e.g. ``("projections.py", "Open it
    on the map", {"dataset": "7"})``."""
    state.put(f"note.{place}", (time.monotonic(), kind, message, toast, link))


def show_note(place: str) -> None:
    """The message queued for ``place`` by :func:`note_for`: inline, with its link (and its
    toast, the first time)."""
    note = state.get(f"note.{place}")
    if note is None:
        return
    since, kind, message, toast, link = note
    if time.monotonic() - since > NOTE_SECONDS:
        state.put(f"note.{place}", None)
        return
    getattr(st, kind, st.info)(md_escape(message))
    if toast:
        icon = ":material/check_circle:" if kind == "success" else None
        st.toast(md_escape(toast), icon=icon)
        state.put(f"note.{place}", (since, kind, message, None, link))
    if link is not None:
        page, label, params = link
        st.page_link(str(PAGES / page), label=md_escape(label), icon=":material/arrow_forward:",
                     query_params=dict(params))  # fmt: skip


def run_steps(title: str, steps: list[tuple[str, Callable[[], Any]]]) -> list[Any]:
    """Run ``steps`` (label, function) one after another inside ``st.status`` with a progress bar.

    Returns each step's result. An :class:`InvalidInputError` stops the run, marks the
    status as failed and is re-raised for the caller to show.
    """
    results: list[Any] = []
    with st.status(title, expanded=True) as status:
        bar = st.progress(0.0)
        for i, (label, fn) in enumerate(steps):
            status.update(label=f"{title}: {label}")
            bar.progress(i / len(steps), text=label)
            try:
                results.append(fn())
            except InvalidInputError:
                status.update(label=f"{title}: failed at “{label}”", state="error")
                raise
        bar.progress(1.0, text="done")
        status.update(label=f"{title}: done", state="complete", expanded=False)
    return results


def show_error(exc: BaseException | str) -> None:
    """Show a user-facing error as text (never a traceback; message escaped as plain text)."""
    st.error(md_escape(exc), icon=":material/error:")


def show_flashes() -> None:
    """Show messages queued with :func:`app.state.flash` before the last rerun."""
    for kind, message in state.pop_flashes():
        getattr(st, kind, st.info)(md_escape(message))


def guarded(fn: Callable[[], T]) -> T | None:
    """Call ``fn``; show an :class:`InvalidInputError` with ``st.error`` and return None."""
    try:
        return fn()
    except InvalidInputError as exc:
        show_error(exc)
        return None


def current_dataset() -> DatasetInfo:
    """The dataset chosen in the sidebar; without one, a hint to add one and the page stops."""
    current_id = state.selected_dataset_id()
    if current_id is None:
        st.info("No dataset yet: add one on the Datasets page.")
        st.stop()
    info = get_store().get_dataset(current_id)
    st.caption(f"{info.n:,} items × {info.dim} dimensions")
    return info
