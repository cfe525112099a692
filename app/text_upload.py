"""The Datasets page's upload of a table of texts (no vectors): pick the text column, embed it
with the bundled model (a progress bar; leaving the page stops it; one table at a time on a
server), save it as a dataset with its model and text column recorded, so the map, its
clusters' names and search by meaning work at once."""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from embscope.app import access, state, widgets
from embscope.app.cache import text_table
from embscope.app.jobs import start_index_job
from embscope.app.runtime import get_store
from embscope.core.errors import InvalidInputError
from embscope.core.text_ingest import (
    DEFAULT_TEXT_MODEL,
    MAX_TEXTS,
    TABLE_SUFFIXES,
    read_texts,
    texts_info,
)
from embscope.core.text_model import SUPPORTED_MODELS, text_model_status

ROW_NUMBERS = "(row number)"


def is_table(filename: str) -> bool:
    """Whether a file can be a table of texts (by its suffix)."""
    return Path(filename).suffix.lower() in TABLE_SUFFIXES


def id_default(candidates: list[str]) -> int:
    """The position (after "(row number)") of a column named like an id, else 0."""
    for i, name in enumerate(candidates):
        if name.strip().lower() in ("id", "ids", "_id", "key", "uid", "uuid"):
            return i + 1
    return 0


def texts_form(filename: str, path: Path, *, key: str) -> None:
    """Preview a table of texts and embed one of its columns as a new dataset."""
    try:
        frame, columns, n, ids = text_table(str(path), filename)
    except InvalidInputError as exc:
        widgets.show_error(exc)
        return
    if not columns:
        widgets.show_error(f"{filename} has no text column to embed either.")
        return
    cols = st.columns(3)
    cols[0].metric("Format", "table of texts")
    cols[1].metric("Rows", f"{n:,}")
    cols[2].metric("Text columns", len(columns))
    st.caption("Preview (first rows)")
    st.dataframe(frame, hide_index=True, width="stretch")
    ok, reason = text_model_status(DEFAULT_TEXT_MODEL)
    if not ok:
        widgets.show_error(f"Texts cannot be embedded on this server: {reason}")
        return
    if n > MAX_TEXTS:
        widgets.show_error(
            f"{filename} has {n:,} rows; at most {MAX_TEXTS:,} texts are embedded at upload "
            "(embed larger sets elsewhere and upload the vectors)."
        )
        return
    with st.form(f"save_texts.{key}"):
        name = st.text_input("Name", value=Path(filename).stem, max_chars=200)
        left, mid, right = st.columns(3)
        column = left.selectbox(
            "Text to embed", columns, help="Each row's text in this column becomes its vector."
        )
        id_choice = mid.selectbox(
            "Id column", [ROW_NUMBERS, *ids], index=id_default(ids),
            help="A column whose values are unique; otherwise items are numbered by row.",
        )  # fmt: skip
        model = right.selectbox("Model", list(SUPPORTED_MODELS), help="Run here, offline.")
        st.caption(
            f"About {max(1, n // 150):,} s on this server's CPU; the texts, the model and the "
            "text column are kept, so search by meaning and cluster names work at once."
        )
        submitted = st.form_submit_button("Embed and save", type="primary")
    if submitted:
        _embed_and_save(path, filename, name, column, id_choice, model)


# One table of texts is embedded at a time on a server (it takes both cores for minutes).
_EMBEDDING = threading.BoundedSemaphore(1)


def _embed_and_save(
    path: Path, filename: str, name: str, column: str, id_choice: str, model: str
) -> None:
    if not _EMBEDDING.acquire(blocking=False):
        widgets.show_error(
            "Another upload's texts are being embedded on this server: try again when it has "
            "finished."
        )
        return
    try:
        _embed_and_save_now(path, filename, name, column, id_choice, model)
    finally:
        _EMBEDDING.release()


def _embed_and_save_now(
    path: Path, filename: str, name: str, column: str, id_choice: str, model: str
) -> None:
    # Leaving the page (or another click) stops the script at its next progress report.
    bar = st.progress(0.0, text="reading the table")

    def progress(fraction: float, message: str) -> bool:
        bar.progress(min(max(fraction, 0.0), 1.0), text=message)
        return False

    try:
        access.require_writable("add a dataset")
        parsed = read_texts(
            path, text_column=column, model=model, filename=filename,
            id_column=None if id_choice == ROW_NUMBERS else id_choice, progress=progress,
        )  # fmt: skip
        bar.progress(1.0, text="writing to the database")
        info = get_store().add_dataset(
            parsed,
            name=name,
            info=texts_info(parsed, model=model, text_column=column, metric=None),
        )
    except InvalidInputError as exc:
        bar.empty()
        widgets.show_error(exc)
        return
    path.unlink(missing_ok=True)
    state.select_dataset(info.id)
    start_index_job(info)
    state.put("upload_generation", int(state.get("upload_generation", 0)) + 1)
    state.flash(
        "success",
        f"Saved dataset {info.id}: {info.n:,} texts of “{column}” embedded with {model} "
        f"({info.dim} dimensions). Open Projections to see its map.",
    )
    for warning in parsed.warnings:
        state.flash("warning", warning)
    st.rerun()
