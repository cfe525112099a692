"""The only place that uses ``st.cache_*``: results computed once per dataset content and
shared by every session (``st.cache_data``). The process-wide objects they read through (the
store, the neighbour service, the job runner) live in :mod:`app.runtime`, outside any cache a
browser can clear."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from embscope.app.runtime import db_path, get_neighbour_service, get_store
from embscope.core.export import as_text
from embscope.core.ingest import FileInspection, inspect_file

if TYPE_CHECKING:
    from embscope.core.clusters import Clustering


@st.cache_data(show_spinner="Reading the file…", max_entries=8)
def inspect_upload(path: str, filename: str, metadata_path: str | None) -> FileInspection:
    """:func:`core.ingest.inspect_file`, once per uploaded content (upload paths are content
    hashes), so widget changes on the page do not parse the file again."""
    return inspect_file(path, filename=filename, metadata_path=metadata_path)


@st.cache_data(show_spinner="Reading the table…", max_entries=8)
def text_table(path: str, filename: str) -> tuple[Any, list[str], int, list[str]]:
    """A table of texts once per uploaded content: its first rows, its text columns (longest
    texts first), its number of rows and the columns that could be its ids."""
    from embscope.core.ingest.checks import id_candidates
    from embscope.core.text_ingest import read_table, text_columns

    frame, _ = read_table(path, filename=filename)
    return frame.head(20), text_columns(frame), len(frame), id_candidates(frame)


@st.cache_data(show_spinner="Projecting with PCA…", max_entries=8)
def _pca_layout(path: str, fingerprint: str, dataset_id: int) -> np.ndarray:
    from embscope.core.projections.pca import pca_layout

    return pca_layout(get_neighbour_service(path).vectors(dataset_id))


def pca_layout_of(dataset_id: int) -> np.ndarray:
    """The dataset's 2-D PCA layout, computed once per dataset content."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _pca_layout(path, info.fingerprint, info.id)


@st.cache_data(show_spinner="Scoring before and after…", max_entries=8)
def _isotropy_before_after(
    path: str, fingerprint: str, dataset_id: int, transform: str
) -> tuple[dict[str, float], dict[str, float]]:
    from embscope.core.geometry import isotropy
    from embscope.core.geometry.postprocess import POSTPROCESSORS

    def scores(X: np.ndarray) -> dict[str, float]:
        spectrum = isotropy.pca_spectrum(X)
        return {
            "IsoScore": isotropy.isoscore(X),
            "Average cosine": isotropy.average_cosine(X),
            "Partition isotropy I(W)": isotropy.partition_isotropy(X),
            "Effective rank": isotropy.effective_rank(X),
            "Participation ratio": spectrum.participation_ratio,
            "PCs for 90 %": spectrum.n90,
        }

    X = get_neighbour_service(path).vectors(dataset_id)
    return scores(X), scores(POSTPROCESSORS[transform](X))


def isotropy_before_after(dataset_id: int, transform: str):
    """Isotropy scores of the dataset before and after a post-processing transform, computed
    once per dataset content and transform (not on every rerun of the page)."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _isotropy_before_after(path, info.fingerprint, info.id, transform)


@st.cache_data(show_spinner=False, max_entries=16)
def _hover_texts(path: str, fingerprint: str, dataset_id: int, column: str | None) -> list[str]:
    import html

    service = get_neighbour_service(path)
    ids = service.ids(dataset_id)
    if column is None:
        texts = [str(i) for i in ids]
    else:
        values = as_text(service.store.load_metadata(dataset_id, columns=[column])[column])
        texts = [f"{i}: {v[:120]}" for i, v in zip(ids, values, strict=True)]
    return [html.escape(t) for t in texts]  # plotly renders HTML in hover labels


def hover_texts(dataset_id: int, column: str | None) -> list[str]:
    """Escaped hover labels (id, and a metadata column) for a scatter, once per content."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _hover_texts(path, info.fingerprint, info.id, column)


@st.cache_data(show_spinner=False, max_entries=24)
def _projection_coords(path: str, fingerprint: str) -> np.ndarray:
    from embscope.core.projections.runs import load_projection

    projection = load_projection(get_store(path), fingerprint)
    if projection is None or projection.coords is None:
        raise KeyError(fingerprint)
    return projection.coords


def projection_coords(fingerprint: str) -> np.ndarray:
    """A stored projection's coordinates, read from the database once per process."""
    return _projection_coords(db_path(), fingerprint)


@st.cache_data(show_spinner=False, max_entries=32)
def _filter_rows(
    path: str, fingerprint: str, dataset_id: int, expressions: tuple[str, ...]
) -> np.ndarray:
    from embscope.core.filters import matching_rows

    return matching_rows(get_store(path), dataset_id, list(expressions))


def filter_rows(dataset_id: int, expressions: tuple[str, ...]) -> np.ndarray:
    """The rows of a dataset matching every filter expression (``core.filters``), once per
    content and filter."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _filter_rows(path, info.fingerprint, info.id, tuple(expressions))


@st.cache_data(show_spinner=False, max_entries=8)
def _clustering_of(path: str, fingerprint: str) -> Clustering:
    from embscope.core.artifacts import load
    from embscope.core.clusters import CLUSTERINGS

    found = load(get_store(path), CLUSTERINGS, fingerprint)
    if found is None:
        raise KeyError(fingerprint)
    return found


def clustering_of(fingerprint: str) -> Clustering:
    """A stored clustering (:class:`core.clusters.Clustering`, labels included), read from
    the database once per process."""
    return _clustering_of(db_path(), fingerprint)


@st.cache_data(show_spinner=False, max_entries=32)
def _metadata_column(path: str, fingerprint: str, dataset_id: int, column: str):
    return get_store(path).load_metadata(dataset_id, columns=[column])[column]


def metadata_column(dataset_id: int, column: str):
    """One metadata column of a dataset (a pandas Series in row order), once per content."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _metadata_column(path, info.fingerprint, info.id, column)


@st.cache_data(show_spinner=False, max_entries=16)
def _label_columns(path: str, fingerprint: str, dataset_id: int) -> list[str]:
    from embscope.core.projections.runs import is_categorical

    store = get_store(path)
    info = store.get_dataset(dataset_id)
    return [
        c
        for c in info.metadata_columns
        if is_categorical(store.load_metadata(dataset_id, columns=[c])[c])
    ]


def label_columns(dataset_id: int) -> list[str]:
    """The metadata columns that can serve as class labels (not continuous, 2-200 values),
    worked out once per dataset content (each column read once, not kept)."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _label_columns(path, info.fingerprint, info.id)


def hover_labels(dataset_id: int, columns: tuple[str, ...]) -> list[str]:
    """Escaped hover labels: the id and up to three metadata columns, once per content."""
    path = db_path()
    info = get_neighbour_service(path).dataset(dataset_id)
    return _hover_labels(path, info.fingerprint, info.id, tuple(columns))


@st.cache_data(show_spinner=False, max_entries=16)
def _hover_labels(
    path: str, fingerprint: str, dataset_id: int, columns: tuple[str, ...]
) -> list[str]:
    import html

    service = get_neighbour_service(path)
    ids = [str(i) for i in service.ids(dataset_id)]
    if not columns:
        return [html.escape(i) for i in ids]
    frame = service.store.load_metadata(dataset_id, columns=list(columns))
    parts = [
        [f"{html.escape(c)}: {html.escape(v[:100])}" for v in as_text(frame[c])] for c in columns
    ]
    return ["<br>".join([html.escape(i), *p]) for i, *p in zip(ids, *parts, strict=True)]


@st.cache_data(show_spinner=False, max_entries=16)
def _id_row_map(path: str, fp_a: str, id_a: int, fp_b: str, id_b: int) -> np.ndarray:
    service = get_neighbour_service(path)
    rows_b = {str(v): i for i, v in enumerate(service.ids(id_b))}
    return np.asarray([rows_b.get(str(v), -1) for v in service.ids(id_a)], dtype=np.int64)


@st.cache_data(show_spinner=False, max_entries=512)
def _shared_item_count(path: str, fp_a: str, id_a: int, fp_b: str, id_b: int) -> int:
    from embscope.core.compare import match_items

    service = get_neighbour_service(path)
    return match_items(service.ids(id_a), service.ids(id_b), min_matched=0).matched


def shared_item_count(dataset_a: int, dataset_b: int) -> int:
    """How many ids of dataset a dataset b holds too (kept for every pair a page asks about:
    a number, where :func:`id_row_map` keeps a row per item)."""
    path = db_path()
    service = get_neighbour_service(path)
    a, b = service.dataset(dataset_a), service.dataset(dataset_b)
    if a.id == b.id:
        return a.n
    return _shared_item_count(path, a.fingerprint, a.id, b.fingerprint, b.id)


def id_row_map(dataset_a: int, dataset_b: int) -> np.ndarray:
    """For each row of dataset a, the row of dataset b holding the same id (-1: b lacks it)."""
    path = db_path()
    service = get_neighbour_service(path)
    a, b = service.dataset(dataset_a), service.dataset(dataset_b)
    if a.id == b.id:
        return np.arange(a.n, dtype=np.int64)
    return _id_row_map(path, a.fingerprint, a.id, b.fingerprint, b.id)
