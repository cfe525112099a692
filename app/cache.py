"""The only place that uses ``st.cache_*``: process-wide resources shared by every session."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.ingest import FileInspection, inspect_file
from core.neighbours import NeighbourService
from core.store import Store, resolve_db_path


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    # One database object per process (DESIGN.md); Store hands each thread its own cursor.
    return Store(path)


def get_store() -> Store:
    """The process's store for ``$EMBSCOPE_DB`` (or ``./embscope.duckdb``)."""
    return _store(str(resolve_db_path().resolve()))


@st.cache_data(show_spinner="Reading the file…", max_entries=8)
def inspect_upload(path: str, filename: str, metadata_path: str | None) -> FileInspection:
    """:func:`core.ingest.inspect_file`, once per uploaded content (upload paths are content
    hashes), so widget changes on the page do not parse the file again."""
    return inspect_file(path, filename=filename, metadata_path=metadata_path)


@st.cache_resource(show_spinner=False)
def _neighbour_service(path: str) -> NeighbourService:
    # One per process: loaded indexes and vectors are shared by every session.
    return NeighbourService(_store(path))


def get_neighbour_service() -> NeighbourService:
    """The process's :class:`core.neighbours.NeighbourService` over :func:`get_store`."""
    return _neighbour_service(str(resolve_db_path().resolve()))


@st.cache_data(show_spinner="Projecting with PCA…", max_entries=8)
def _pca_layout(path: str, fingerprint: str, dataset_id: int) -> np.ndarray:
    from core.projections.pca import pca_layout

    return pca_layout(_neighbour_service(path).vectors(dataset_id))


def pca_layout_of(dataset_id: int) -> np.ndarray:
    """The dataset's 2-D PCA layout, computed once per dataset content."""
    path = str(resolve_db_path().resolve())
    info = _neighbour_service(path).dataset(dataset_id)
    return _pca_layout(path, info.fingerprint, info.id)
