"""The Compare page's parts: pick two datasets over the same items, run, show how they differ."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, widgets
from app import projections_view as pview
from app.cache import get_store, id_row_map, pca_layout_of, projection_coords
from core import compare
from core.projections import runs
from core.store import DatasetInfo

PCA_CHOICE = "PCA (instant)"


def _default_partner(info: DatasetInfo, others: list[DatasetInfo]) -> int:
    """Prefer a copy derived from this dataset (or its original), else one of the same size."""
    for i, o in enumerate(others):
        if (o.info or {}).get("derived_from") == info.id or (info.info or {}).get(
            "derived_from"
        ) == o.id:
            return i
    for i, o in enumerate(others):
        if o.n == info.n:
            return i
    return 0


def settings(info: DatasetInfo) -> dict[str, Any] | None:
    others = [d for d in get_store().list_datasets() if d.id != info.id]
    if not others:
        st.info(
            "Comparing needs a second dataset over the same items: upload another model's "
            "embeddings of them (ids matching), or save a compressed or post-processed copy."
        )
        return None
    cols = st.columns([3, 1, 1])
    by_id = {o.id: o for o in others}
    other_id = cols[0].selectbox(
        "Compare with",
        list(by_id),
        index=_default_partner(info, others),
        format_func=lambda i: f"{by_id[i].name}  ({by_id[i].n:,} × {by_id[i].dim})",
        key=f"compare.other.{info.id}",
    )
    k = int(cols[1].number_input("k", 1, 200, 10, key="compare.k"))
    metric = cols[2].selectbox(
        "Metric",
        ("cosine", "l2", "ip"),
        index=("cosine", "l2", "ip").index(runs.default_metric(info)),
        key=f"compare.metric.{info.id}",
    )
    return {"other": by_id[other_id], "k": k, "metric": metric}


def stored_or_job(info: DatasetInfo, options: dict[str, Any]) -> compare.SpaceComparison | None:
    """The stored comparison, or its running job's progress, or a Compare button."""
    store = get_store()
    other, k, metric = options["other"], options["k"], options["metric"]
    key = widgets.guarded(
        lambda: compare.comparison_key(store, info.id, other.id, k=k, metric=metric)
    )
    if key is None:
        return None

    def work(progress):
        return compare.get_or_compare_datasets(
            store, info.id, other.id, k=k, metric=metric, progress=progress
        ).matched

    return widgets.result_or_job(
        key,
        load=lambda fp: compare.load_comparison(store, fp),
        work=work,
        job={
            "kind": "comparison",
            "label": f"{info.name} vs {other.name} (k={k}, {metric})",
            "dataset_id": info.id,
            "params": {"other": other.id, "k": k, "metric": metric},
        },
        button="Compare",
        button_key="compare.run",
        caption="Pairs items by id, finds each item's k nearest neighbours within the shared "
        "items in both spaces, and measures how much the neighbourhoods agree (per item) and "
        "how alike the two spaces are overall (linear CKA).",
    )


def summary(info: DatasetInfo, other: DatasetInfo, result: compare.SpaceComparison) -> None:
    k = result.k
    cols = st.columns(5)
    cols[0].metric("Items matched", f"{result.matched:,}")
    cols[1].metric(f"kNN overlap@{k}", f"{result.mean_overlap:.3f}")
    cols[2].metric(f"Jaccard@{k}", f"{result.mean_jaccard:.3f}")
    cols[3].metric("Linear CKA", f"{result.cka:.3f}")
    cols[4].metric(f"Chance overlap@{k}", f"{result.chance_overlap:.4f}")
    extra = []
    if result.only_a:
        extra.append(f"{result.only_a:,} items only in {widgets.md_escape(info.name)}")
    if result.only_b:
        extra.append(f"{result.only_b:,} only in {widgets.md_escape(other.name)}")
    st.caption(
        f"{result.matched:,} items matched by id"
        + (f" ({'; '.join(extra)})" if extra else " (all of them)")
        + f". CKA on {result.cka_rows:,} items. kNN overlap: the share of each item's {k} "
        "nearest neighbours that are the same in both spaces, averaged."
    )
    st.plotly_chart(
        figures.shared_neighbours_figure(result.shared_histogram(), k, result.chance_overlap),
        width="stretch",
        key="compare.histogram",
    )


def moved_most(info: DatasetInfo, result: compare.SpaceComparison, n_top: int = 25) -> None:
    """The items whose neighbourhoods changed most, with their metadata."""
    positions = result.moved_most(n_top)
    rows = result.rows_a[positions]
    table = get_store().load_rows(info.id, rows)
    table.insert(1, f"jaccard@{result.k}", result.jaccard[positions])
    table.insert(2, "shared", result.shared[positions])
    st.dataframe(table, hide_index=True, width="stretch", height=320)
    ids = get_store().load_ids(info.id)
    widgets.table_downloads(
        lambda: pd.DataFrame(
            {
                "row_a": result.rows_a, "row_b": result.rows_b, "id": ids[result.rows_a],
                f"jaccard@{result.k}": result.jaccard, "shared": result.shared,
            }
        ),
        "overlap", key="compare.download", label="Per-item overlap",
    )  # fmt: skip


def layout_choice(info: DatasetInfo, key: str) -> tuple[np.ndarray, str]:
    stored = [p for p in runs.list_projections(get_store(), info.id) if p.dims == 2]
    options = [PCA_CHOICE, *range(len(stored))]
    pick = st.selectbox(
        f"Layout of {widgets.md_escape(info.name)}",
        options,
        format_func=lambda o: o if o == PCA_CHOICE else stored[o].label,
        index=1 if stored else 0,
        key=key,
    )
    if pick == PCA_CHOICE:
        return pca_layout_of(info.id), "PCA 2-D"
    return projection_coords(stored[pick].fingerprint), stored[pick].title


def projections(info: DatasetInfo, other: DatasetInfo, result: compare.SpaceComparison) -> None:
    """Both spaces' layouts, B Procrustes-aligned onto A, coloured by per-item overlap."""
    cols = st.columns(3)
    with cols[0]:
        coords_a, label_a = layout_choice(info, f"compare.layout_a.{info.id}")
    with cols[1]:
        coords_b, label_b = layout_choice(other, f"compare.layout_b.{other.id}")
    colour_by = cols[2].selectbox(
        "Colour by",
        ["neighbourhood overlap", *info.metadata_columns],
        key=f"compare.colour.{info.id}",
    )
    alignment = compare.procrustes_align(coords_a[result.rows_a], coords_b[result.rows_b])
    aligned_b = alignment.apply(coords_b).astype(np.float32)
    if colour_by == "neighbourhood overlap":
        values_a = np.full(info.n, np.nan)
        values_a[result.rows_a] = result.jaccard
        values_b = np.full(other.n, np.nan)
        values_b[result.rows_b] = result.jaccard
        title = f"Jaccard@{result.k}"
        left = pview.Panel(info, coords_a, f"{label_a} of {info.name}", values_a, False, title,
                           pview.hover_for(info, []))  # fmt: skip
        right = pview.Panel(other, aligned_b, f"{label_b} of {other.name} (aligned)", values_b,
                            False, title, pview.hover_for(other, []))  # fmt: skip
    else:
        left = pview.make_panel(info, coords_a, title=f"{label_a} of {info.name}",
                                colour=colour_by, hover_columns=[colour_by])  # fmt: skip
        right = pview.make_panel(other, aligned_b, title=f"{label_b} of {other.name} (aligned)",
                                 colour=colour_by, hover_columns=[colour_by])  # fmt: skip
    st.caption(
        f"The right layout is rotated, scaled and shifted onto the left one (Procrustes over "
        f"the matched items, disparity {alignment.disparity:.3f}). Select points in either to "
        "see the same items in the other."
    )
    pview.linked_pair(left, right, id_row_map(info.id, other.id), key="compare.pair")
    pview.selection_list(info)
