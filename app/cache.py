"""The only place that uses ``st.cache_*``: process-wide resources shared by every session."""

from __future__ import annotations

import functools
import gc
import os
import sys
import time

import numpy as np
import streamlit as st

from embscope.app import access
from embscope.core.export import as_text
from embscope.core.ingest import FileInspection, inspect_file
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store, resolve_db_path


def _db_path() -> str:
    """The absolute database path every cached resource is keyed by."""
    return _resolved(os.environ.get("EMBSCOPE_DB") or "", os.getcwd())


@functools.lru_cache(maxsize=8)
def _resolved(configured: str, cwd: str) -> str:
    # Called several times in every script run of every session: resolving the path on
    # the file system each time showed in profiles of many sessions at once.
    return str(resolve_db_path(configured or None).resolve())


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    # One database object per process (DESIGN.md); Store hands each thread its own cursor.
    return Store(path)


def get_store() -> Store:
    """The process's store for ``$EMBSCOPE_DB`` (or ``./embscope.duckdb``)."""
    return _store(_db_path())


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
    return _neighbour_service(_db_path())


@st.cache_data(show_spinner="Projecting with PCA…", max_entries=8)
def _pca_layout(path: str, fingerprint: str, dataset_id: int) -> np.ndarray:
    from embscope.core.projections.pca import pca_layout

    return pca_layout(_neighbour_service(path).vectors(dataset_id))


def pca_layout_of(dataset_id: int) -> np.ndarray:
    """The dataset's 2-D PCA layout, computed once per dataset content."""
    path = _db_path()
    info = _neighbour_service(path).dataset(dataset_id)
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

    X = _neighbour_service(path).vectors(dataset_id)
    return scores(X), scores(POSTPROCESSORS[transform](X))


def isotropy_before_after(dataset_id: int, transform: str):
    """Isotropy scores of the dataset before and after a post-processing transform, computed
    once per dataset content and transform (not on every rerun of the page)."""
    path = _db_path()
    info = _neighbour_service(path).dataset(dataset_id)
    return _isotropy_before_after(path, info.fingerprint, info.id, transform)


@st.cache_data(show_spinner=False, max_entries=16)
def _hover_texts(path: str, fingerprint: str, dataset_id: int, column: str | None) -> list[str]:
    import html

    service = _neighbour_service(path)
    ids = service.ids(dataset_id)
    if column is None:
        texts = [str(i) for i in ids]
    else:
        values = as_text(service.store.load_metadata(dataset_id, columns=[column])[column])
        texts = [f"{i}: {v[:120]}" for i, v in zip(ids, values, strict=True)]
    return [html.escape(t) for t in texts]  # plotly renders HTML in hover labels


def hover_texts(dataset_id: int, column: str | None) -> list[str]:
    """Escaped hover labels (id, and a metadata column) for a scatter, once per content."""
    path = _db_path()
    info = _neighbour_service(path).dataset(dataset_id)
    return _hover_texts(path, info.fingerprint, info.id, column)


@st.cache_resource(show_spinner=False)
def _job_runner(path: str):
    from embscope.core.jobs import JobRunner

    # One per process: a job started by one session is seen (and shared) by every session,
    # and keeps running when the page that started it goes away. `embscope serve` asks for
    # the projection methods' numba code to be compiled first, on the serial lane: that
    # starts when the server's first page opens, since that run creates the runner.
    warm_up = ()
    if os.environ.get(access.WARM_UP_ENV) == "1":
        warm_up = (_warm_up_projections,)
    return JobRunner(_store(path), warm_up=warm_up)


def _warm_up_projections() -> None:
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


def get_job_runner():
    """The process's :class:`core.jobs.JobRunner` over :func:`get_store`."""
    return _job_runner(_db_path())


@st.cache_data(show_spinner=False, max_entries=24)
def _projection_coords(path: str, fingerprint: str) -> np.ndarray:
    from embscope.core.projections.runs import load_projection

    projection = load_projection(_store(path), fingerprint)
    if projection is None or projection.coords is None:
        raise KeyError(fingerprint)
    return projection.coords


def projection_coords(fingerprint: str) -> np.ndarray:
    """A stored projection's coordinates, read from the database once per process."""
    return _projection_coords(_db_path(), fingerprint)


@st.cache_data(show_spinner=False, max_entries=32)
def _metadata_column(path: str, fingerprint: str, dataset_id: int, column: str):
    return _store(path).load_metadata(dataset_id, columns=[column])[column]


def metadata_column(dataset_id: int, column: str):
    """One metadata column of a dataset (a pandas Series in row order), once per content."""
    path = _db_path()
    info = _neighbour_service(path).dataset(dataset_id)
    return _metadata_column(path, info.fingerprint, info.id, column)


def hover_labels(dataset_id: int, columns: tuple[str, ...]) -> list[str]:
    """Escaped hover labels: the id and up to three metadata columns, once per content."""
    path = _db_path()
    info = _neighbour_service(path).dataset(dataset_id)
    return _hover_labels(path, info.fingerprint, info.id, tuple(columns))


@st.cache_data(show_spinner=False, max_entries=16)
def _hover_labels(
    path: str, fingerprint: str, dataset_id: int, columns: tuple[str, ...]
) -> list[str]:
    import html

    service = _neighbour_service(path)
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
    service = _neighbour_service(path)
    rows_b = {str(v): i for i, v in enumerate(service.ids(id_b))}
    return np.asarray([rows_b.get(str(v), -1) for v in service.ids(id_a)], dtype=np.int64)


@st.cache_data(show_spinner=False, max_entries=512)
def _shared_item_count(path: str, fp_a: str, id_a: int, fp_b: str, id_b: int) -> int:
    from embscope.core.compare import match_items

    service = _neighbour_service(path)
    return match_items(service.ids(id_a), service.ids(id_b), min_matched=0).matched


def shared_item_count(dataset_a: int, dataset_b: int) -> int:
    """How many ids of dataset a dataset b holds too (kept for every pair a page asks about:
    a number, where :func:`id_row_map` keeps a row per item)."""
    path = _db_path()
    service = _neighbour_service(path)
    a, b = service.dataset(dataset_a), service.dataset(dataset_b)
    if a.id == b.id:
        return a.n
    return _shared_item_count(path, a.fingerprint, a.id, b.fingerprint, b.id)


def id_row_map(dataset_a: int, dataset_b: int) -> np.ndarray:
    """For each row of dataset a, the row of dataset b holding the same id (-1: b lacks it)."""
    path = _db_path()
    service = _neighbour_service(path)
    a, b = service.dataset(dataset_a), service.dataset(dataset_b)
    if a.id == b.id:
        return np.arange(a.n, dtype=np.int64)
    return _id_row_map(path, a.fingerprint, a.id, b.fingerprint, b.id)
