"""The Datasets page's upload of a table of texts (no vectors): pick the text column and one of
the models embscope runs offline (all-MiniLM-L6-v2 by default, or WordLlama), embed it and save
it as a dataset with its model and text column recorded, so the map, its clusters' names and
search by meaning work at once; the same table embedded by both models can be compared. The
embedding runs as a background job (app/upload_panel.py: progress with Cancel; one table at a
time on a server)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from embscope.app import upload_panel, widgets
from embscope.app.cache import text_table
from embscope.core.errors import InvalidInputError
from embscope.core.text_ingest import DEFAULT_TEXT_MODEL, MAX_TEXTS, TABLE_SUFFIXES
from embscope.core.text_model import SUPPORTED_MODELS, text_model_status
from embscope.core.upload_jobs import TextsUpload

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


def runnable_models() -> tuple[list[str], list[tuple[str, str]]]:
    """The models that can embed texts here, the default first, and those that cannot (each
    with the reason)."""
    ordered = [DEFAULT_TEXT_MODEL, *(m for m in SUPPORTED_MODELS if m != DEFAULT_TEXT_MODEL)]
    status = {name: text_model_status(name) for name in ordered}
    return (
        [name for name in ordered if status[name][0]],
        [(name, status[name][1]) for name in ordered if not status[name][0]],
    )


def model_help(models: list[str]) -> str:
    """The model box's help: where the models run and what each one is."""
    lines = [f"- **{name}**: {SUPPORTED_MODELS[name].about}" for name in models]
    return "Run here, offline.\n\n" + "\n".join(lines)


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
    models, unavailable = runnable_models()
    if not models:
        reason = text_model_status(DEFAULT_TEXT_MODEL)[1]
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
        model = right.selectbox("Model", models, help=model_help(models))
        st.caption(
            f"About {max(1, n // 150):,} s with all-MiniLM-L6-v2 on this server's CPU, a second "
            "or so with WordLlama; the texts, the model and the text column are kept, so search "
            "by meaning and cluster names work at once. Embed the table again with the other "
            "model to compare the two on the Compare page."
        )
        for other, why in unavailable:
            st.caption(f"{other} cannot run here: {why}")
        submitted = st.form_submit_button("Embed and save", type="primary")
    if not submitted:
        return
    request = TextsUpload(
        path=path, filename=filename, name=name, text_column=column, model=model, n=int(n),
        id_column=None if id_choice == ROW_NUMBERS else id_choice,
    )  # fmt: skip
    try:
        # Embedded and stored by a background job, with progress and Cancel (one table of
        # texts at a time on a server: it takes both cores for minutes).
        upload_panel.start_upload(request)
    except InvalidInputError as exc:
        widgets.show_error(exc)
