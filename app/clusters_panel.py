"""Clusters on the map: the dataset's stored clustering (its job starts by itself), each
cluster's name drawn where its points lie in a layout, its colour column, and the table of
clusters with their keywords and most typical rows. Used by the Projections page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import state, widgets
from embscope.app.cache import clustering_of
from embscope.app.figures import MapLabel, robust_range
from embscope.app.jobs import artifact_or_job
from embscope.app.runtime import get_store
from embscope.app.text import md_escape
from embscope.core import artifacts
from embscope.core.clusters import CLUSTER_PARAMS, CLUSTERINGS, Clustering, cluster_request
from embscope.core.export import MISSING
from embscope.core.store import DatasetInfo

# The colour choice that colours the map by cluster (offered only when no metadata column
# has this name).
CLUSTERS = "(clusters)"
# Clusterings start by themselves up to this many items (about a second at 100,000 once the
# neighbour graph is stored); above, a button starts them.
AUTO_START_LIMIT = 200_000
# At most this many cluster names are drawn on a map (the largest clusters).
MAX_LABELS = 30
EXAMPLE_CHARS = 160


def _resolution_key(info: DatasetInfo) -> str:
    return f"clusters.resolution.{info.id}"


def resolution(info: DatasetInfo) -> float:
    """The resolution this session clusters ``info`` at (CLUSTER_PARAMS' default at first)."""
    default = float(CLUSTER_PARAMS["resolution"].default)
    return float(state.get(_resolution_key(info), default))


def set_resolution(info: DatasetInfo, value: float) -> None:
    state.put(_resolution_key(info), float(CLUSTER_PARAMS["resolution"].check(value)))


def clustering(info: DatasetInfo, metric: str) -> Clustering | None:
    """The stored clustering of ``info`` (Leiden on the shared graph of ``metric``); while it
    is missing, its job (started at once up to :data:`AUTO_START_LIMIT` items) or a button."""
    if info.n < 3:  # nothing to cluster
        return None
    request = widgets.guarded(
        lambda: cluster_request(get_store(), info.id, metric=metric, resolution=resolution(info))
    )
    if request is None:
        return None
    found = artifact_or_job(
        CLUSTERINGS,
        request,
        button="Find clusters",
        button_key="clusters.compute",
        start_now=info.n <= AUTO_START_LIMIT,
        with_arrays=False,  # the labels are read once per process, by clustering_of
    )
    if found is None:
        return None
    return clustering_of(artifacts.fingerprint(CLUSTERINGS, request))


def colour_values(result: Clustering) -> np.ndarray:
    """Each row's cluster as a colour value ("3 · parser, token, grammar"); unclustered rows
    are missing (grey)."""
    names = np.asarray([f"{c} · {name}" for c, name in enumerate(result.names)] + [MISSING])
    return names[np.where(result.labels >= 0, result.labels, len(result.names))]


def map_labels(
    result: Clustering,
    coords: np.ndarray,
    *,
    limit: int = MAX_LABELS,
    plot_pixels: tuple[float, float] = (1000.0, 680.0),
    keep: np.ndarray | None = None,
) -> list[MapLabel]:
    """Each of the largest clusters' name at the member nearest its members' median place in
    the layout (on a point of the cluster even when it is split in two islands). On a 2-D
    map a name that would overlap a larger cluster's (on a plot of about ``plot_pixels``,
    opened on :func:`figures.robust_range`) is left out: the legend and the table have it.
    ``keep`` (bool per row, a filter): only the members it keeps count."""
    labels = result.labels if keep is None else np.where(keep, result.labels, -1)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(result.n_clusters + 1))
    biggest = float(result.sizes[0]) if result.n_clusters else 1.0
    flat = coords.shape[1] == 2
    if flat:  # data units per pixel: the larger of the two axes' (the map keeps its aspect)
        spans = [_span(robust_range(coords[:, j])) for j in (0, 1)]
        per_pixel = max(spans[0] / plot_pixels[0], spans[1] / plot_pixels[1])
    boxes: list[tuple[float, float, float, float]] = []
    out = []
    for c in range(min(result.n_clusters, limit)):
        rows = order[starts[c] : starts[c + 1]]
        if rows.size == 0:
            continue
        place = coords[rows]
        centre = np.median(place, axis=0)
        spot = place[int(np.argmin(((place - centre) ** 2).sum(axis=1)))]
        size = int(round(11 + 3 * np.sqrt(result.sizes[c] / biggest)))
        name = result.names[c]
        if flat:
            half_w = 0.5 * (0.58 * size * len(name) + 6) * per_pixel
            half_h = 0.5 * (size + 8) * per_pixel
            box = (spot[0] - half_w, spot[0] + half_w, spot[1] - half_h, spot[1] + half_h)
            if any(_overlap(box, other) for other in boxes):
                continue
            boxes.append(box)
        z = float(spot[2]) if not flat else 0.0
        out.append(MapLabel(float(spot[0]), float(spot[1]), z, name, size))
    return out


def _span(bounds: list[float]) -> float:
    return bounds[1] - bounds[0]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _examples(info: DatasetInfo, result: Clustering) -> list[str]:
    """Each cluster's most typical rows as text (the text column, else the ids)."""
    rows = result.examples[result.examples >= 0]
    if rows.size == 0:
        return ["" for _ in range(result.n_clusters)]
    frame = get_store().load_rows(info.id, np.unique(rows))
    column = result.text_column if result.text_column in frame.columns else "id"
    by_row = dict(zip(np.unique(rows).tolist(), frame[column].astype(str), strict=True))
    out = []
    for c in range(result.n_clusters):
        picked = [by_row[r][:EXAMPLE_CHARS] for r in result.examples[c] if r >= 0]
        out.append(" ┃ ".join(picked))
    return out


def cluster_frame(info: DatasetInfo, result: Clustering) -> pd.DataFrame:
    """One row per cluster: its number, size, name, keywords and typical rows."""
    share = result.sizes / max(info.n, 1)
    return pd.DataFrame(
        {
            "cluster": np.arange(result.n_clusters),
            "size": result.sizes,
            "share": share,
            "label": list(result.names),
            "keywords": [", ".join(k) for k in result.keywords],
            "typical items": _examples(info, result),
        }
    )


def cluster_table(info: DatasetInfo, result: Clustering | None) -> np.ndarray | None:
    """The table of clusters with a resolution control; picking a cluster returns its rows
    (to select them on the map), else None."""
    if result is None:
        return None
    with st.expander(
        f"Clusters: {result.n_clusters} found"
        + (f", {result.noise:,} items in none" if result.noise else ""),
        expanded=False,
    ):
        left, right = st.columns([1, 3], vertical_alignment="bottom")
        res = CLUSTER_PARAMS["resolution"]
        wanted = left.number_input(
            res.label, float(res.low), float(res.high), value=resolution(info), step=0.25,
            format="%.2f", help=res.help, key=f"clusters.resolution_input.{info.id}",
        )  # fmt: skip
        if wanted != resolution(info):
            set_resolution(info, wanted)
            st.rerun()
        how = (
            f"Leiden communities of the {result.metric} neighbour graph "
            f"({result.graph_k} neighbours a point), modularity {result.quality:.2f}, "
            f"found in {result.seconds:.1f} s; named by the words most typical of each "
            + (f"cluster's “{md_escape(result.text_column)}”" if result.text_column else "cluster")
            + ". They live in the original space: every layout shows the same clusters."
        )
        right.caption(how)
        event = st.dataframe(
            cluster_frame(info, result),
            hide_index=True,
            width="stretch",
            height=min(420, 38 + 35 * result.n_clusters),
            on_select="rerun",
            selection_mode="single-row",
            key=f"clusters.table.{info.id}.{result.resolution}",
            column_config=_columns(),
        )
        picked = event.selection.rows if event else []
        if picked:
            return np.flatnonzero(result.labels == int(picked[0]))
    return None


def _columns() -> dict[str, Any]:
    return {
        "share": st.column_config.ProgressColumn(
            "share", format="percent", min_value=0.0, max_value=1.0
        ),  # fmt: skip
        "keywords": st.column_config.TextColumn(width="large"),
        "typical items": st.column_config.TextColumn(width="large"),
    }
