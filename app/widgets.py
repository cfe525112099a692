"""Widgets shared by every page: the header, the dataset picker, progress, downloads and error
display."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from embscope.app import share, state
from embscope.app.runtime import get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.store import DatasetInfo

T = TypeVar("T")
PICKER_KEY = "embscope.picker"


def page_header(title: str) -> None:
    """The page title with the Copy link button at its right, the same on every page."""
    left, right = st.columns([5, 1], vertical_alignment="center")
    left.title(title)
    with right:
        share.copy_link_button()


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


def table_downloads(
    make_frame: Callable[[], Any], name: str, *, key: str, label: str = "", columns: Any = None
) -> None:
    """CSV and Parquet download buttons for a table built only when a button is clicked
    (a million-row export must not slow down every rerun of the page)."""
    import io

    def csv() -> bytes:
        from embscope.core.export import (
            csv_bytes,  # formulas in user text stay text in a spreadsheet
        )

        return csv_bytes(make_frame())

    def parquet() -> bytes:
        buffer = io.BytesIO()
        make_frame().to_parquet(buffer, index=False)
        return buffer.getvalue()

    cols = columns if columns is not None else st.columns([1, 1, 4])
    prefix = f"{label} " if label else ""
    cols[0].download_button(f"{prefix}(CSV)" if label else "CSV", csv, f"{name}.csv",
                            "text/csv", key=f"{key}.csv")  # fmt: skip
    cols[1].download_button(f"{prefix}(Parquet)" if label else "Parquet", parquet,
                            f"{name}.parquet", "application/octet-stream",
                            key=f"{key}.parquet")  # fmt: skip


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
