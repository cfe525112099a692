"""The Datasets page's sections: upload with preview, and the catalog with rename and delete.

On a read-only server (``embscope serve --read-only``) upload, demo loading, rename and delete
are not drawn, and their handlers refuse as well (:func:`app.access.require_writable`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from embscope.app import access, metric_change, state, text_upload, upload_panel, widgets
from embscope.app.cache import inspect_upload
from embscope.app.jobs import start_index_job
from embscope.app.runtime import get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.app.uploads import save_upload
from embscope.core.demo_store import load_demo_datasets
from embscope.core.errors import InvalidInputError
from embscope.core.ingest import METADATA_SUFFIXES, SUPPORTED_SUFFIXES
from embscope.core.store import DatasetInfo
from embscope.core.text_model import SUPPORTED_MODELS
from embscope.core.upload_jobs import VectorsUpload

ROW_NUMBERS = "(row number)"
UNKNOWN_MODEL = "(unknown model)"
GUESS_METRIC = "guess from the vectors"


def _uploader_generation() -> int:
    # Streamlit cannot clear a file_uploader; a new key after a save gives an empty one.
    return int(state.get("upload_generation", 0))


def upload_section() -> None:
    """Upload one or two files, show what was detected, and save them as a dataset."""
    if access.read_only():
        st.caption(f":material/lock: {access.READ_ONLY_CAPTION}")
        return
    st.subheader("Add a dataset")
    upload_panel.upload_jobs_panel()  # this session's uploads being saved, with Cancel
    gen = _uploader_generation()
    left, right = st.columns(2)
    vec_file = left.file_uploader(
        "Vectors file",
        type=[s.lstrip(".") for s in SUPPORTED_SUFFIXES],
        key=f"upload.vectors.{gen}",
        help="A matrix of vectors, one row per item: .npy, .npz, Parquet (a list column), "
        "CSV/TSV (numeric columns), JSONL (a vector field), AnnData .h5ad, or the "
        "TensorFlow Projector's vectors.tsv.",
    )
    meta_file = right.file_uploader(
        "Metadata file (optional)",
        type=[s.lstrip(".") for s in METADATA_SUFFIXES],
        key=f"upload.metadata.{gen}",
        help="One row per vector, in the same order (for example the Projector's metadata.tsv).",
    )
    if vec_file is None:
        st.caption("Drop a file above to preview it before saving.")
        return
    try:
        access.require_writable("accept uploads")
        vec_path = save_upload(vec_file, vec_file.name)
        meta_path = save_upload(meta_file, meta_file.name) if meta_file is not None else None
    except InvalidInputError as exc:
        widgets.show_error(exc)
        return
    as_texts = meta_file is None and text_upload.is_table(vec_file.name) and st.toggle(
        "A table of texts: embed one of its columns", key=f"upload.texts.{gen}",
        help="For a file without vectors: each row's text is embedded with the bundled "
        "sentence model, and the other columns kept as metadata.",
    )  # fmt: skip
    try:
        inspection = None if as_texts else inspect_upload(
            str(vec_path), vec_file.name, str(meta_path) if meta_path is not None else None
        )  # fmt: skip
    except InvalidInputError as exc:
        if meta_file is None and text_upload.is_table(vec_file.name):
            st.info(
                f"{md_escape(exc)} — if this is a table of texts, embed one of its columns:",
                icon=":material/notes:",
            )
            as_texts = True
        else:
            widgets.show_error(exc)
            return
    if as_texts or inspection is None:
        text_upload.texts_form(vec_file.name, vec_path, key=str(gen))
        return
    _show_inspection(inspection)
    _save_form(
        inspection, vec_file.name, vec_path, meta_file.name if meta_file else None, meta_path
    )


def _show_inspection(inspection: Any) -> None:
    cols = st.columns(4)
    cols[0].metric("Format", inspection.format)
    cols[1].metric("Rows", f"{inspection.n_rows:,}")
    cols[2].metric("Dimension", "?" if inspection.dim is None else f"{inspection.dim:,}")
    in_vector = set(inspection.default_vector_columns) | set(inspection.vector_candidates[:1])
    cols[3].metric("Metadata columns", len([c for c in inspection.columns if c not in in_vector]))
    for warning in inspection.warnings:
        st.warning(md_escape(warning))
    st.caption("Preview (first rows)")
    st.dataframe(inspection.preview, hide_index=True, width="stretch")


def _save_form(
    inspection: Any, filename: str, vec_path: Path, meta_name: str | None, meta_path: Path | None
) -> None:
    with st.form(f"save_dataset.{_uploader_generation()}"):
        name = st.text_input("Name", value=Path(filename).stem, max_chars=200)
        id_choice = st.selectbox(
            "Id column",
            [ROW_NUMBERS, *inspection.id_candidates],
            index=text_upload.id_default(list(inspection.id_candidates)),
            help="A column whose values are unique; otherwise items are numbered by row.",
        )
        vector_column = None
        if len(inspection.vector_candidates) > 1:
            vector_column = st.selectbox("Vector column", list(inspection.vector_candidates))
        elif inspection.vector_candidates:
            vector_column = inspection.vector_candidates[0]
        vector_columns = None
        if inspection.numeric_columns:
            vector_columns = st.multiselect(
                "Vector columns",
                list(inspection.numeric_columns),
                default=list(inspection.default_vector_columns or inspection.numeric_columns),
                help="Numeric columns that make up the vector; the others are kept as metadata.",
            )
        model = st.selectbox(
            "Embedded with (optional)",
            [UNKNOWN_MODEL, *SUPPORTED_MODELS],
            help="The model that made these vectors. When embscope can run it offline, the "
            "Neighbours page can search this dataset by text. Left unknown, embscope embeds a "
            "few of the file's own texts with each model of the same dimension it can run, and "
            "records the one whose vectors match.",
        )
        metric_choice = st.selectbox(
            "Metric",
            [GUESS_METRIC, "cosine", "l2", "ip"],
            help="How distances are measured in every later view (changeable later). Guessed: "
            "l2 for coordinates (up to 3 dimensions) and few features, cosine for "
            "embeddings.",
        )
        submitted = st.form_submit_button("Save dataset", type="primary")
    if not submitted:
        return
    request = VectorsUpload(
        path=vec_path,
        filename=filename,
        name=name,
        n=int(inspection.n_rows),
        dim=int(inspection.dim or 0),
        metadata_path=meta_path,
        metadata_filename=meta_name,
        id_column=None if id_choice == ROW_NUMBERS else id_choice,
        vector_column=vector_column,
        vector_columns=None if vector_columns is None else tuple(vector_columns),
        model=None if model == UNKNOWN_MODEL else model,
        metric=None if metric_choice == GUESS_METRIC else metric_choice,
    )
    try:
        # A background job reads, checks and stores it, with progress and Cancel; the page
        # reruns with its panel where this form was (app/upload_panel.py).
        upload_panel.start_upload(request)
    except InvalidInputError as exc:
        widgets.show_error(exc)


def catalog_frame(datasets: list[DatasetInfo]) -> pd.DataFrame:
    """The table of stored datasets shown on the page."""
    return pd.DataFrame(
        {
            "id": [d.id for d in datasets],
            "name": [d.name for d in datasets],
            "n": [d.n for d in datasets],
            "dim": [d.dim for d in datasets],
            "metric": [d.metric for d in datasets],
            "created": [d.created for d in datasets],
            "source": [d.source for d in datasets],
            "format": [d.format for d in datasets],
        }
    )


def catalog_section(current: DatasetInfo | None) -> None:
    """The stored datasets, details of the current one, and rename/delete."""
    st.subheader("Stored datasets")
    datasets = get_store().list_datasets()
    if not datasets or current is None:  # the last one deleted: say so here
        widgets.show_note(ACTIONS_NOTE)
    if not datasets:
        if access.read_only():
            st.info("This read-only demo server holds no datasets yet.")
            return
        st.info("No datasets yet. Upload a file above, or load the demo datasets.")
        if st.button("Load the demo datasets", icon=":material/download:"):
            _load_demos()
        return
    st.dataframe(
        catalog_frame(datasets),
        hide_index=True,
        width="stretch",
        column_config={
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")
        },
    )
    if current is None:
        return
    st.markdown(f"#### {md_escape(current.name)}")
    st.caption(
        f"Dataset {current.id} · {current.n:,} × {current.dim} · from {md_escape(current.source)}"
    )
    for warning in current.warnings:
        st.warning(md_escape(warning))
    metric_change.metric_control(current)
    with st.expander("Metadata (first 200 rows)", expanded=True):
        meta = get_store().load_metadata(current.id, limit=200)
        if meta.shape[1] == 0:
            st.caption("This dataset has no metadata columns.")
        else:
            st.dataframe(meta, hide_index=True, width="stretch")
    if current.info:
        with st.expander("Provenance"):
            st.json(dict(current.info))
    if not access.read_only():
        _rename_and_delete(current)


ACTIONS_NOTE = "datasets.actions"  # where rename and delete say what they did


def _rename_and_delete(current: DatasetInfo) -> None:
    # One row, every control on the same baseline: the name box, Rename, and Delete at the
    # right end (the form keeps Enter in the box as a click on Rename).
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    with left.form(f"rename.{current.id}", border=False):
        box, button = st.columns([4, 1], vertical_alignment="bottom")
        new_name = box.text_input("Rename to", value=current.name, max_chars=200)
        renamed = button.form_submit_button("Rename", width="stretch")
    deleting = right.button(
        "Delete dataset…", type="secondary", icon=":material/delete:", width="stretch"
    )
    if renamed:
        try:
            access.require_writable("rename a dataset")
            get_store().rename_dataset(current.id, new_name)
            get_neighbour_service().forget(current.id)
        except InvalidInputError as exc:
            widgets.show_error(exc)
        else:
            name = get_store().get_dataset(current.id).name
            widgets.note_for(
                ACTIONS_NOTE, f"Renamed dataset {current.id} to “{name}”.",
                toast="Dataset renamed",
            )  # fmt: skip
            st.rerun()
    widgets.show_note(ACTIONS_NOTE)
    if deleting:
        state.put("pending_delete", current.id)
    # Kept in session state so the confirmation survives the rerun its own buttons cause.
    if state.get("pending_delete") == current.id:
        _confirm_delete(current)


def _clear_pending_delete() -> None:
    state.put("pending_delete", None)


@st.dialog("Delete this dataset?", on_dismiss=_clear_pending_delete)
def _confirm_delete(current: DatasetInfo) -> None:
    st.markdown(
        f"**{md_escape(current.name)}** ({current.n:,} × {current.dim}) and everything computed "
        "from it will be deleted. This cannot be undone."
    )
    yes, no = st.columns(2)
    if yes.button("Delete", type="primary", key="confirm_delete"):
        try:
            access.require_writable("delete a dataset")
        except InvalidInputError as exc:
            _clear_pending_delete()
            widgets.show_error(exc)
            return
        # With its loaded index and vectors, its index files and its Milvus collections.
        get_neighbour_service().delete_dataset(current.id)
        _clear_pending_delete()
        state.select_dataset(None)
        widgets.note_for(
            ACTIONS_NOTE, f"Deleted dataset {current.id} “{current.name}” and everything "
            "computed from it.", toast="Dataset deleted",
        )  # fmt: skip
        st.rerun()
    if no.button("Cancel", key="cancel_delete"):
        _clear_pending_delete()
        st.rerun()


def _load_demos() -> None:
    with st.status("Loading the demo datasets", expanded=True) as status:
        bar = st.progress(0.0)

        def progress(fraction: float, message: str) -> bool:
            bar.progress(fraction, text=message)
            return False

        try:
            access.require_writable("load the demo datasets")
            added = load_demo_datasets(get_store(), progress=progress)
        except InvalidInputError as exc:
            status.update(label="Loading the demo datasets: failed", state="error")
            widgets.show_error(exc)
            return
        status.update(label="Demo datasets loaded", state="complete")
    for info in added:
        start_index_job(info)  # in the background, at low priority
    if added:
        state.select_dataset(added[0].id)
    state.flash("success", f"Loaded {len(added)} demo datasets.")
    st.rerun()
