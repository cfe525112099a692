"""The scatter of a layout: a panel (coordinates, colour, hover), drawn with a selection, two
side by side with one linked selection, and the choice of a layout to draw (PCA or a stored
2-D projection). Used by the Projections, Compression and Compare pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, state
from embscope.app.cache import hover_labels, metadata_column, pca_layout_of, projection_coords
from embscope.app.clusters_panel import CLUSTERS, colour_values, map_labels
from embscope.app.runtime import get_store
from embscope.app.selection import current_selection, update_selection
from embscope.app.text import md_escape
from embscope.core.clusters import Clustering
from embscope.core.export import MISSING, as_text
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo

# Above this many points the default hover is the row number only (hover strings for a
# million points would be most of the page's payload).
HOVER_TEXT_LIMIT = 200_000
# A map zooms with the wheel, as a map does; the mode bar stays, for the lasso and box tools.
MAP_CONFIG = {"scrollZoom": True, "displaylogo": False}


def hover_for(info: DatasetInfo, columns: list[str]) -> list[str] | None:
    """Hover labels: the id and ``columns``; None (the row number) for a dataset above
    :data:`HOVER_TEXT_LIMIT` points when no column is asked for."""
    if info.n > HOVER_TEXT_LIMIT and not columns:
        return None
    return hover_labels(info.id, tuple(columns))


@dataclass
class Panel:
    """One scatter to draw: a layout of a dataset with its colour and hover labels."""

    info: DatasetInfo
    coords: np.ndarray  # float32 (n, 2 | 3), the dataset's row order
    title: str
    colour: Any = None  # per-row values, or None
    categorical: bool = False
    colour_title: str = ""
    hover: list[str] | None = None
    size: float | None = None  # marker size and opacity (None: from n)
    opacity: float | None = None
    labels: list[figures.MapLabel] = field(default_factory=list)
    focus: int | None = None  # a clicked point, and its neighbours ringed
    neighbours: np.ndarray | None = None
    keep: np.ndarray | None = None  # bool (n,): the rows a filter keeps (others grey)
    highlights: list[figures.Highlight] = field(default_factory=list)  # search matches
    density: bool = False  # a shaded density beneath the points (2-D)


def _colour(info: DatasetInfo, column: str | None, clusters: Clustering | None) -> tuple[Any, bool]:
    # Per-row colour values of a metadata column (or the clusters), and whether they are
    # categories.
    if column == CLUSTERS and clusters is not None:
        return colour_values(clusters), True
    if column is None or column not in info.metadata_columns:
        return None, False
    values = metadata_column(info.id, column)
    if runs.is_categorical(values) or not pd.api.types.is_numeric_dtype(values):
        return as_text(values, missing=MISSING), True
    return values.to_numpy(dtype=np.float64, na_value=np.nan), False


def make_panel(
    info: DatasetInfo,
    coords: np.ndarray,
    *,
    title: str,
    colour: str | None,
    hover_columns: list[str],
    clusters: Clustering | None = None,
    cluster_names: bool = False,
    size: float | None = None,
    opacity: float | None = None,
    keep: np.ndarray | None = None,
    density: bool = False,
) -> Panel:
    """A panel coloured by a metadata column (categorical or continuous) or by ``clusters``
    (``colour`` :data:`CLUSTERS`), with hover labels; ``cluster_names`` draws the clusters'
    names where their points lie."""
    values, categorical = _colour(info, colour, clusters)
    hover = [c for c in hover_columns if c in info.metadata_columns]
    names = (
        map_labels(clusters, coords, keep=keep) if clusters is not None and cluster_names else []
    )
    title_of_colour = "cluster" if colour == CLUSTERS else colour or ""
    return Panel(
        info, coords, title, values, categorical, title_of_colour, hover_for(info, hover),
        size=size, opacity=opacity, labels=names, keep=keep, density=density,
    )  # fmt: skip


def grouping_note(panel: Panel, *, clusters: int | None = None) -> str:
    """When a categorical colour has more values than the map has colours, what its legend
    groups (:func:`app.figures.category_groups`: the largest ``MAX_CATEGORIES - 1`` values
    keep a colour, the rest share a grey "other"), and, given how many clusters the dataset
    has (None: no suggestion), colouring by them instead. Empty when every value has a
    colour."""
    limit = figures.MAX_CATEGORIES
    if not panel.categorical or panel.colour is None or len(panel.colour) <= limit:
        return ""
    values = len(pd.unique(np.asarray(panel.colour, dtype=object)))
    if values <= limit:
        return ""
    kept = limit - 1
    text = (
        f"{md_escape(panel.colour_title)}: {values:,} values, more than the map's {limit} "
        f"colours: the {kept} largest have one each, the other {values - kept:,} share the "
        f'grey "other ({values - kept:,} values)".'
    )
    if clusters:
        text += (
            f" Colour by clusters (found in the data) to see the {clusters:,} groups the "
            "data falls into, each in its own colour."
        )
    return text


def draw(panel: Panel, *, selected: np.ndarray | None, key: str, height: int = 620):
    """Draw a panel; returns (figure, selection event or None for 3-D, whether it changed).

    Streamlit keys a chart's selection to its figure, so a redrawn figure (another colour,
    another highlight) comes back with an empty selection: ``changed`` tells
    :func:`update_selection` that such an empty event is not the user clearing theirs.
    """
    signature = (
        panel.title, panel.colour_title, panel.categorical, panel.coords.shape, height,
        None if selected is None else np.asarray(selected, dtype=np.int64).tobytes(),
        panel.size, panel.opacity, len(panel.labels), panel.focus,
        None if panel.keep is None else np.packbits(panel.keep).tobytes(),
        tuple((h.name, h.rows.size) for h in panel.highlights), panel.density,
    )  # fmt: skip
    changed = state.get(f"projections.drawn.{key}") != signature
    state.put(f"projections.drawn.{key}", signature)
    fig = figures.projection_figure(
        panel.coords,
        color=panel.colour,
        categorical=panel.categorical,
        color_title=panel.colour_title,
        hover=panel.hover,
        selected=selected,
        title=panel.title,
        height=height,
        size=panel.size,
        opacity=panel.opacity,
        labels=panel.labels,
        focus=panel.focus,
        neighbours=panel.neighbours,
        keep=panel.keep,
        highlights=panel.highlights,
        density=panel.density,
    )
    if panel.coords.shape[1] == 3:  # streamlit reports selections of 2-D charts only
        st.plotly_chart(fig, width="stretch", key=key, config=MAP_CONFIG)
        return fig, None, changed
    event = st.plotly_chart(
        fig,
        width="stretch",
        key=key,
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config=MAP_CONFIG,
    )
    return fig, event, changed


def linked_pair(left: Panel, right: Panel, forward: np.ndarray, *, key: str) -> None:
    """Two scatters side by side with one selection, kept in ``left``'s rows.

    ``forward[i]`` is the row of ``right.info`` holding the item of row i of ``left.info``
    (-1 when it has none); a selection in either chart highlights the same items in both.
    """
    selected = current_selection(left.info)
    cols = st.columns(2)
    with cols[0]:
        fig_a, event_a, redrawn_a = draw(left, selected=selected, key=f"{key}.left", height=520)
    theirs = None if selected is None else forward[selected][forward[selected] >= 0]
    with cols[1]:
        fig_b, event_b, redrawn_b = draw(right, selected=theirs, key=f"{key}.right", height=520)
    changed = False
    if event_a is not None:
        changed |= update_selection(
            left.info, f"{key}.left", figures.selected_rows(fig_a, event_a), redrawn=redrawn_a
        )
    if event_b is not None:
        picked = figures.selected_rows(fig_b, event_b)
        backward = np.full(right.info.n, -1, dtype=np.int64)
        ok = forward >= 0
        backward[forward[ok]] = np.flatnonzero(ok)
        ours = backward[picked]
        changed |= update_selection(
            left.info, f"{key}.right", np.unique(ours[ours >= 0]), redrawn=redrawn_b
        )
    if changed:
        st.rerun()


PCA_CHOICE = "PCA (instant)"


def stored_layouts(info: DatasetInfo) -> list[runs.Projection]:
    """The stored 2-D projections of a dataset (the layouts a chart can show)."""
    return [p for p in runs.list_projections(get_store(), info.id) if p.dims == 2]


def best_layout(layouts: list[runs.Projection]) -> runs.Projection | None:
    """The most faithful of ``layouts``: highest trustworthiness@10, then kNN preservation@10
    (unscored ones last; the first of equals, which is the newest as list_projections gives
    them), or None when there is none."""
    k = runs.QUALITY_K

    def value(p: runs.Projection, name: str) -> float:
        v = p.quality.get(f"{name}@{k}")
        return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else -1.0

    return max(
        layouts,
        key=lambda p: (value(p, "trustworthiness"), value(p, "knn_preservation")),
        default=None,
    )


def layout_choice(info: DatasetInfo, key: str) -> tuple[np.ndarray, str]:
    """A layout of ``info`` to draw: PCA, or one of its stored 2-D projections (by
    fingerprint, so a share link can name it)."""
    stored = {p.fingerprint: p for p in stored_layouts(info)}
    options = [PCA_CHOICE, *stored]
    if st.session_state.get(key) not in options:  # first visit, or a layout since replaced
        st.session_state[key] = options[1] if stored else PCA_CHOICE
    pick = st.selectbox(
        f"Layout of {md_escape(info.name)}",
        options,
        format_func=lambda o: o if o == PCA_CHOICE else stored[o].label,
        key=key,
    )
    if pick == PCA_CHOICE:
        return pca_layout_of(info.id), "PCA 2-D"
    return projection_coords(stored[pick].fingerprint), stored[pick].title
