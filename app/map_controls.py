"""The Projections page's map, given the layout to show: how it is drawn (colour, hover
columns, point size and opacity, cluster names, density; kept for the session and in the share
link), the filter and search row above it, the map alone or beside another stored layout, the
charts linked to it, and what it shows of its items (the cluster table, the selection, the
coordinates to download). Which layout it is, and its scores, are :mod:`app.projections_view`'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, map_charts, map_filter, share, state, widgets
from embscope.app.cache import id_row_map, projection_coords
from embscope.app.clusters_panel import CLUSTERS, cluster_table
from embscope.app.runtime import get_neighbour_service, get_store
from embscope.app.scatter import (
    HOVER_TEXT_LIMIT,
    Panel,
    draw,
    grouping_note,
    linked_pair,
    make_panel,
)
from embscope.app.selection import (
    current_selection,
    neighbours_found,
    selection_list,
    update_selection,
)
from embscope.core.errors import InvalidInputError
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo

NO_COLOUR = "(none)"
# The density shading is on by default above this many points.
DENSITY_FROM = 50_000
SIZE_RANGE = (1.0, 12.0)
OPACITY_RANGE = (0.05, 1.0)
MAP_HEIGHT = 720


# -- how the map is drawn, and its part of the share link ---------------------------------------


def _hover_default(info: DatasetInfo) -> list[str]:
    if info.n > HOVER_TEXT_LIMIT:
        return []
    text_col = (info.info or {}).get("text_column")
    default = runs.default_label_column(info)
    return [c for c in (default, text_col) if c in info.metadata_columns]


def look_from_link(info: DatasetInfo, link: share.Link) -> None:
    """Set the map's controls from a share link: colour, hover columns, point size and
    opacity, cluster names and density (``names``, ``density``: 1 or 0), the filter
    (``where``, repeated) and the search (``q``)."""
    colour = link.choice("color", [NO_COLOUR, CLUSTERS, *info.metadata_columns])
    if colour is not None:
        state.set_widget(f"projections.colour.{info.id}", colour)
    hover = link.values("hover", options=info.metadata_columns, max_count=3)
    if hover is not None:
        state.set_widget(f"projections.hover.{info.id}", hover)
    size = link.number("size", *SIZE_RANGE)
    if size is not None:  # on the slider's steps
        state.set_widget(f"projections.size.{info.id}", round(size * 2) / 2)
    opacity = link.number("opacity", *OPACITY_RANGE)
    if opacity is not None:
        state.set_widget(f"projections.opacity.{info.id}", round(opacity * 20) / 20)
    names = link.flag("names")
    if names is not None:
        state.set_widget("projections.cluster_names", names)
    density = link.flag("density")
    if density is not None:
        state.set_widget(f"projections.density.{info.id}", density)
    map_filter.from_link(info, link)
    search = link.text("q", max_chars=map_filter.MAX_SEARCH_CHARS)
    if search is not None:
        map_filter.set_search(info, search)


def look_params(info: DatasetInfo) -> dict[str, Any]:
    """The map's part of the share link: what differs from this dataset's defaults."""
    params: dict[str, Any] = {}
    colour = state.widget_value(f"projections.colour.{info.id}")
    if colour is not None:
        params["color"] = colour
    hover = state.widget_value(f"projections.hover.{info.id}")
    if hover is not None and list(hover) != _hover_default(info):
        params["hover"] = list(hover)
    # The look, where it is not the default for this dataset.
    for name, key, default in (
        ("size", f"projections.size.{info.id}", float(figures.point_size(info.n))),
        ("opacity", f"projections.opacity.{info.id}", float(figures.point_opacity(info.n))),
    ):
        value = state.widget_value(key)
        if value is not None and float(value) != default:
            params[name] = f"{float(value):g}"
    for name, key, default in (
        ("names", "projections.cluster_names", True),
        ("density", f"projections.density.{info.id}", info.n > DENSITY_FROM),
    ):
        value = state.widget_value(key)
        if value is not None and bool(value) != default:
            params[name] = int(bool(value))
    if map_filter.current(info):
        params["where"] = map_filter.current(info)
    if map_filter.search_text(info).strip():
        params["q"] = map_filter.search_text(info).strip()
    return params


@dataclass(frozen=True)
class Look:
    """How the map is drawn: colour, hover columns, cluster names, marker size and opacity."""

    colour: str | None
    hover: list[str]
    names: bool = True
    size: float | None = None
    opacity: float | None = None
    density: bool = False


def _colour_default(info: DatasetInfo) -> str:
    """The dataset's label column when it records one, else its clusters."""
    label = runs.default_label_column(info)
    return label if label is not None else CLUSTERS


def map_controls(info: DatasetInfo, clustering: Any, cols: list[Any]) -> Look:
    """The map's colour, hover columns, cluster names, density, point size and opacity (in
    ``cols``, five columns of the top row), kept for the session (across methods) and in the
    share link (``color``, ``hover``, ``size``, ``opacity``, ``names``, ``density``)."""
    columns = [NO_COLOUR, *info.metadata_columns]
    if clustering is not None and CLUSTERS not in info.metadata_columns:
        columns.insert(1, CLUSTERS)
    key = f"projections.colour.{info.id}"
    state.restore_widget(key, _colour_default(info))
    # Clusters asked for (by default, a link or earlier) but not found yet: no colour until
    # they are, then the clusters.
    if st.session_state[key] == CLUSTERS:
        state.keep_widget(key)
    pending = state.kept_value(key) == CLUSTERS
    if pending and CLUSTERS in columns and st.session_state[key] == NO_COLOUR:
        st.session_state[key] = CLUSTERS
    if st.session_state[key] not in columns:
        st.session_state[key] = (
            NO_COLOUR
            if st.session_state[key] == CLUSTERS
            else (runs.default_label_column(info) or NO_COLOUR)
        )
    colour = cols[0].selectbox(
        "Colour by", columns, key=key,
        format_func=lambda c: "clusters (found in the data)" if c == CLUSTERS else c,
    )  # fmt: skip
    if not (pending and CLUSTERS not in columns and colour == NO_COLOUR):
        state.keep_widget(key)
    hover_key = f"projections.hover.{info.id}"
    state.restore_widget(hover_key, _hover_default(info))
    if not set(st.session_state[hover_key]) <= set(info.metadata_columns):
        st.session_state[hover_key] = _hover_default(info)
    hover = cols[1].multiselect(
        "Hover shows",
        list(info.metadata_columns),
        max_selections=3,
        key=hover_key,
        help="Metadata shown when the pointer is over a point (besides its id).",
    )
    state.keep_widget(hover_key)
    size_key, opacity_key = f"projections.size.{info.id}", f"projections.opacity.{info.id}"
    state.restore_widget(size_key, float(figures.point_size(info.n)))
    state.restore_widget(opacity_key, float(figures.point_opacity(info.n)))
    size = cols[2].slider("Point size", *SIZE_RANGE, step=0.5, key=size_key)
    opacity = cols[3].slider("Opacity", *OPACITY_RANGE, step=0.05, key=opacity_key)
    names_key = "projections.cluster_names"
    state.restore_widget(names_key, True)
    names = cols[4].toggle(
        "Names", key=names_key, disabled=clustering is None,
        help="Each cluster's name (its most typical words) where its points lie.",
    )  # fmt: skip
    density_key = f"projections.density.{info.id}"
    state.restore_widget(density_key, info.n > DENSITY_FROM)
    density = cols[4].toggle(
        "Density", key=density_key,
        help="Shade where the points crowd, beneath them (2-D): a million points read as "
        "structure, not as a blob.",
    )  # fmt: skip
    for k in (size_key, opacity_key, names_key, density_key):
        state.keep_widget(k)
    return Look(
        None if colour == NO_COLOUR else colour, list(hover), bool(names), float(size),
        float(opacity), bool(density),
    )  # fmt: skip


def _panel(
    info: DatasetInfo,
    projection: runs.Projection,
    look: Look,
    clustering: Any,
    *,
    title: str | None = None,
    keep: np.ndarray | None = None,
) -> Panel:
    return make_panel(
        info, projection_coords(projection.fingerprint),
        title=title or f"{projection.title} of {info.name}", colour=look.colour,
        hover_columns=look.hover, clusters=clustering, cluster_names=look.names,
        size=look.size, opacity=look.opacity, keep=keep, density=look.density,
    )  # fmt: skip


def colour_note(panel: Panel, look: Look, clustering: Any) -> None:
    """Under the map, when its colour has more values than colours: how many the legend
    groups as "other", and colouring by the stored clusters instead, when they are offered
    (the colour is not theirs already, and they fit the colours)."""
    offered = (
        clustering is not None
        and look.colour != CLUSTERS
        and CLUSTERS not in panel.info.metadata_columns
        and len(clustering.names) < figures.MAX_CATEGORIES
    )
    note = grouping_note(panel, clusters=len(clustering.names) if offered else None)
    if note:
        st.caption(note)


def find_row(info: DatasetInfo, metric: str) -> map_filter.MapFilter:
    """The row above the map: the filter (add, remove, save as a dataset) and the search."""
    cols = st.columns([1.4, 3.4, 1.9, 3.0, 3.4], vertical_alignment="center")
    map_filter.filter_controls(info, cols[:3])
    map_filter.search_box(info, cols[3])
    mapped = map_filter.apply(info, metric)
    line = map_filter.summary(mapped, info)
    if line:
        cols[4].caption(line)
    return mapped


def main_scatter(
    info: DatasetInfo,
    projection: runs.Projection,
    look: Look,
    clustering: Any,
    mapped: map_filter.MapFilter,
) -> None:
    """The projection on its own, full width; a lasso, box or click selects points, and a
    single point's nearest neighbours (within the filter) are ringed and linked to it."""
    panel = _panel(info, projection, look, clustering, keep=mapped.keep)
    panel.highlights = mapped.highlights
    selected = _within(current_selection(info), mapped)
    if selected is not None and selected.size == 1:
        try:
            near = neighbours_found(
                info, int(selected[0]), projection.metric, where=mapped.expressions
            ).rows
        except InvalidInputError:
            near = np.zeros(0, dtype=np.int64)
        panel.focus, panel.neighbours = int(selected[0]), near
        selected = np.concatenate([selected, near])
    fig, event, redrawn = draw(panel, selected=selected, key="projections.main", height=MAP_HEIGHT)
    colour_note(panel, look, clustering)
    if event is not None and update_selection(
        info, "projections.main", figures.selected_rows(fig, event), redrawn=redrawn
    ):
        st.rerun()


def _within(rows: np.ndarray | None, mapped: map_filter.MapFilter) -> np.ndarray | None:
    """The selected rows the filter keeps (None: nothing selected, or nothing kept)."""
    if rows is None or mapped.keep is None:
        return rows
    kept = rows[(rows >= 0) & (rows < mapped.keep.size)]
    kept = kept[mapped.keep[kept]]
    return kept if kept.size else None


def linked_charts(info: DatasetInfo, mapped: map_filter.MapFilter) -> None:
    """Charts of chosen metadata columns under the map: the items shown, the selected ones on
    top; a click on a bar filters the map to it."""
    left, _ = st.columns([3, 7])
    columns = map_charts.chart_columns(info, left)
    map_charts.charts(info, columns, mapped.keep, _within(current_selection(info), mapped))


def clusters_section(info: DatasetInfo, clustering: Any) -> None:
    """The table of clusters; picking one selects its points on the map."""
    rows = cluster_table(info, clustering)
    if rows is not None and update_selection(info, "clusters.table", rows):
        st.rerun()


def selection_table(
    info: DatasetInfo, projection: runs.Projection, mapped: map_filter.MapFilter
) -> None:
    """The selected rows (those the filter keeps) with their metadata and coordinates, and
    CSV/Parquet downloads."""
    selection_list(
        info,
        coords=projection_coords(projection.fingerprint),
        metric=projection.metric,
        keep=mapped.keep,
        where=mapped.expressions,
    )
    rows = current_selection(info)
    if rows is not None and rows.size > share.MAX_LINK_ITEMS:
        st.caption(
            f"The page's link keeps a selection of up to {share.MAX_LINK_ITEMS} points; "
            "this one is left out of it."
        )


def export_projection(
    info: DatasetInfo, projection: runs.Projection, mapped: map_filter.MapFilter
) -> None:
    """The coordinates of every item (of those the filter keeps) as CSV or Parquet."""

    def frame() -> pd.DataFrame:
        coords = projection_coords(projection.fingerprint)
        out = pd.DataFrame(coords, columns=list("xyz"[: projection.dims]))
        out.insert(0, "id", get_neighbour_service().ids(info.id))
        return out if mapped.rows is None else out.iloc[mapped.rows].reset_index(drop=True)

    widgets.table_downloads(
        frame, f"{projection.method}-{projection.dims}d", key="projections.all",
        label="Coordinates",
    )  # fmt: skip


# -- beside another layout ----------------------------------------------------------------------


def comparable(info: DatasetInfo) -> list[tuple[DatasetInfo, runs.Projection]]:
    """Stored projections of this dataset and of datasets over the same number of items."""
    store = get_store()
    out: list[tuple[DatasetInfo, runs.Projection]] = []
    for other in store.list_datasets():
        if other.id != info.id and other.n != info.n:
            continue
        out.extend((other, p) for p in runs.list_projections(store, other.id))
    return out


def side_by_side(
    info: DatasetInfo,
    main: runs.Projection,
    look: Look,
    clustering: Any,
    mapped: map_filter.MapFilter,
) -> None:
    """The main projection beside another stored one, with linked selection (matched by id)."""
    choices = [(o, p) for o, p in comparable(info) if p.fingerprint != main.fingerprint]
    if not choices:
        st.caption(
            "Compute another projection of this dataset (another method, or the same method "
            "with other parameters), or of a dataset over the same items, to see them side by side."
        )
        return
    by_fp = {p.fingerprint: (o, p) for o, p in choices}
    key = f"projections.beside.{info.id}"
    if st.session_state.get(key) not in by_fp:  # a partner since deleted, or none yet
        st.session_state[key] = next(iter(by_fp))
    pick = st.selectbox(
        "Beside it",
        list(by_fp),
        format_func=lambda fp: f"{by_fp[fp][1].label} of {by_fp[fp][0].name}",
        key=key,
    )
    other_info, other = by_fp[pick]
    forward = id_row_map(info.id, other_info.id)  # our row -> their row
    matched = int((forward >= 0).sum())
    if other_info.id != info.id:
        st.caption(f"{matched:,} of {info.n:,} items matched by id.")
    left = _panel(info, main, look, clustering, keep=mapped.keep)
    left.highlights = mapped.highlights
    # The clusters, filter and search are this dataset's rows: they apply to the partner
    # only when it is this dataset too.
    same = other_info.id == info.id
    right = _panel(
        other_info, other, look, clustering if same else None,
        title=f"{other.title} of {other_info.name}", keep=mapped.keep if same else None,
    )  # fmt: skip
    if same:
        right.highlights = mapped.highlights
    linked_pair(left, right, forward, key="projections.pair")
    colour_note(left, look, clustering)
