"""The selection of points every scatter shares (Projections, Compression, Compare): kept in
the session for one dataset, listed with its metadata and downloads, and for a single point
its nearest neighbours."""

from __future__ import annotations

import hashlib
from typing import cast

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import state, widgets
from embscope.app.neighbour_query import open_query
from embscope.app.runtime import get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.graph import PointNeighbours
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo

SELECTION_KEY = "projections.selection"


def current_selection(info: DatasetInfo) -> np.ndarray | None:
    """The rows of ``info`` selected in this session, or None (nothing selected)."""
    chosen = state.get(SELECTION_KEY)
    if chosen and chosen.get("dataset") == info.id and chosen.get("rows"):
        return np.asarray(chosen["rows"], dtype=np.int64)
    return None  # nothing selected: nothing dimmed


def set_selection(info: DatasetInfo, rows: list[int] | None) -> None:
    """Make ``rows`` of ``info`` the session's selection (None: nothing selected)."""
    state.put(SELECTION_KEY, None if rows is None else {"dataset": info.id, "rows": list(rows)})


def update_selection(
    info: DatasetInfo, source: str, rows: np.ndarray, *, redrawn: bool = False
) -> bool:
    """Record the selection a chart reports (rows of ``info``); True when it changed.

    An empty report from a chart that was just redrawn is Streamlit resetting its selection
    state, not the user clearing the selection: it is ignored (the Clear button clears).
    """
    seen_key = f"projections.seen.{source}"
    signature = (info.id, rows.tobytes())
    if state.get(seen_key) == signature:
        return False
    state.put(seen_key, signature)
    if rows.size == 0 and (redrawn or current_selection(info) is None):
        return False
    set_selection(info, rows.tolist())
    return True


def selection_list(
    info: DatasetInfo,
    *,
    coords: np.ndarray | None = None,
    metric: str | None = None,
    keep: np.ndarray | None = None,
    where: list[str] | None = None,
) -> None:
    """The selected rows with their metadata (and layout coordinates), with downloads; a
    single selected point also shows its nearest neighbours. ``keep`` (bool per row) and
    ``where`` (its filter expressions): only rows the map's filter keeps."""
    rows = current_selection(info)
    rows = np.zeros(0, dtype=np.int64) if rows is None else rows[(rows >= 0) & (rows < info.n)]
    if keep is not None:
        rows = rows[keep[rows]]
    if rows.size == 0:
        st.caption("Select points with the lasso or box tool (or click one) to list them here.")
        return
    frame = get_store().load_rows(info.id, rows)
    if coords is not None:
        for j, axis in enumerate("xyz"[: coords.shape[1]]):
            frame[axis] = coords[rows, j]
    st.markdown(f"**{rows.size:,} selected point(s)**")
    st.dataframe(frame, hide_index=True, width="stretch", height=280)
    row = st.container(horizontal=True)
    widgets.frame_downloads(
        selection_files(info, rows, frame), "selection", key="projections.sel",
        columns=(row, row),
    )  # fmt: skip
    if row.button("Clear", key="projections.clear_selection"):
        set_selection(info, None)
        st.rerun()
    if rows.size == 1:
        point_neighbours(info, int(rows[0]), metric or runs.default_metric(info), where=where)


def selection_files(
    info: DatasetInfo, rows: np.ndarray, frame: pd.DataFrame
) -> tuple[bytes, bytes]:
    """The selected rows' table as CSV and Parquet bytes, made from the table itself (not
    later, from the session, when a button is clicked) and kept for the session while the
    same rows of the same dataset are listed, so a rerun does not write them again."""
    digest = hashlib.blake2b(rows.tobytes(), digest_size=16)
    for axis in ("x", "y", "z"):  # the layout's coordinates (the metadata is the dataset's)
        if axis in frame.columns:
            digest.update(np.ascontiguousarray(frame[axis].to_numpy(np.float64)).tobytes())
    signature = (info.fingerprint, digest.hexdigest())
    kept = state.get("selection.files")
    if kept is not None and kept[0] == signature:
        return cast("tuple[bytes, bytes]", kept[1])
    files = (widgets.table_csv(frame), widgets.table_parquet(frame))
    state.put("selection.files", (signature, files))
    return files


POINT_NEIGHBOURS = 10


def neighbours_found(
    info: DatasetInfo,
    row: int,
    metric: str,
    *,
    k: int = POINT_NEIGHBOURS,
    where: list[str] | None = None,
) -> PointNeighbours:
    """A point's ``k`` nearest neighbours, the point itself left out, and where they came
    from (:meth:`core.neighbours.NeighbourService.point_neighbours`): its row of the shared
    neighbour graph when one at least ``k`` wide is stored for ``metric`` and no filter is
    on, else exact search (only items matching ``where``, filter expressions, when given).
    Kept for the session's last point, so the map's rings and the table below it read one
    answer."""
    key = (info.fingerprint, int(row), metric, int(k), tuple(where or ()))
    kept = state.get("selection.neighbours")
    if kept is not None and kept[0] == key:
        return cast("PointNeighbours", kept[1])
    found = get_neighbour_service().point_neighbours(
        info.id, int(row), k=min(k, info.n - 1), metric=metric, where=where or None
    )
    state.put("selection.neighbours", (key, found))
    return found


def point_neighbours(
    info: DatasetInfo, row: int, metric: str, *, where: list[str] | None = None
) -> None:
    """A clicked point's nearest neighbours, and a link to explore them on the Neighbours page."""
    try:
        found = neighbours_found(info, row, metric, where=where)
    except InvalidInputError as exc:
        widgets.show_error(exc)
        return
    table = get_store().load_rows(info.id, found.rows)
    table.insert(1, "distance", found.distances)
    st.markdown(
        f"**Nearest neighbours of {md_escape(found.description)}** ({found.rows.size}, "
        f"{metric}) {found.label}, ringed on the map"
    )
    st.dataframe(table, hide_index=True, width="stretch", height=240)
    if st.button("Open in Neighbours →", key="projections.open_neighbours"):
        open_query(info, row)
