"""The Compare page's parts: pick two datasets over the same items, run, show how they differ."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, share, widgets
from embscope.app.cache import id_row_map, shared_item_count
from embscope.app.jobs import artifact_or_job
from embscope.app.layout_pair import (
    SAME_CHOICE,
    left_layout,
    pair_caption,
    pair_or_left,
    right_layout,
)
from embscope.app.runtime import get_store
from embscope.app.scatter import PCA_CHOICE, Panel, hover_for, make_panel, stored_layouts
from embscope.app.selection import selection_list
from embscope.app.text import md_escape
from embscope.core import compare, compare_runs
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo
from embscope.core.validation import METRICS

OVERLAP = "neighbourhood overlap"


def _link_layout(link: share.Link, name: str, info: DatasetInfo, key: str) -> None:
    """``layout_a``/``layout_b``: ``pca``, ``same`` (``layout_b``: the left one's method and
    parameters, the default) or a stored projection's fingerprint."""
    if name not in link:
        return
    raw = (link.raw(name) or "").strip().lower()
    if raw == "pca":
        st.session_state[key] = PCA_CHOICE
        return
    if raw == "same" and name == "layout_b":
        st.session_state[key] = SAME_CHOICE
        return
    found = link.fingerprint(name, [p.fingerprint for p in stored_layouts(info)])
    if found is not None:
        st.session_state[key] = found


def apply_url(info: DatasetInfo, link: share.Link | None = None) -> None:
    """Set the page from a share link: the second dataset (``other``), ``k``, ``metric``,
    the two layouts (``layout_a``, ``layout_b``) and the colour. Does nothing when there is
    no new link."""
    link = share.link("compare") if link is None else link
    if not link:
        return
    others = {d.id: d for d in get_store().list_datasets() if d.id != info.id}
    other = link.choice("other", others)
    if other is not None:
        st.session_state[f"compare.other.{info.id}"] = other
    k = link.integer("k", 1, 200)
    if k is not None:
        st.session_state["compare.k"] = k
    metric = link.choice("metric", METRICS)
    if metric is not None:
        st.session_state[f"compare.metric.{info.id}"] = metric
    colour = link.choice("color", [OVERLAP, *info.metadata_columns])
    if colour is not None:
        st.session_state[f"compare.colour.{info.id}"] = colour
    _link_layout(link, "layout_a", info, f"compare.layout_a.{info.id}")
    partner = others.get(st.session_state.get(f"compare.other.{info.id}", -1))
    if partner is None and others:
        listed = list(others.values())
        partner = listed[_default_partner(info, listed)]
    if partner is not None:
        _link_layout(link, "layout_b", partner, f"compare.layout_b.{partner.id}")
    elif "layout_b" in link:
        link.ignore("layout_b", link.raw("layout_b"), "the link names no second dataset")


def _layout_param(key: str) -> str | None:
    value = st.session_state.get(key)
    if value is None or value == SAME_CHOICE:  # the default needs no word in the link
        return None
    return "pca" if value == PCA_CHOICE else share.short(str(value))


def write_url(info: DatasetInfo, options: dict[str, Any] | None) -> None:
    """Make the address bar the link to this view."""
    if options is None:
        share.write("compare", {})
        return
    other = options["other"]
    colour = st.session_state.get(f"compare.colour.{info.id}")
    share.write(
        "compare",
        {
            "other": other.id,
            "k": options["k"],
            "metric": options["metric"],
            "layout_a": _layout_param(f"compare.layout_a.{info.id}"),
            "layout_b": _layout_param(f"compare.layout_b.{other.id}"),
            "color": colour if colour not in (None, OVERLAP) else None,
        },
    )


def _derived(a: DatasetInfo, b: DatasetInfo) -> bool:
    return (b.info or {}).get("derived_from") == a.id or (a.info or {}).get("derived_from") == b.id


def _default_partner(info: DatasetInfo, others: list[DatasetInfo]) -> int:
    """Prefer a copy derived from this dataset (or its original), else the dataset sharing
    the most items with it (of those, one of the same size)."""
    for i, o in enumerate(others):
        if _derived(info, o):
            return i
    return max(
        range(len(others)),
        key=lambda i: (shared_item_count(info.id, others[i].id), others[i].n == info.n, -i),
    )


def _matching_note(info: DatasetInfo, other: DatasetInfo, shared: int) -> bool:
    """Say when the two datasets cannot be compared, or are matched only by row number;
    False when a comparison cannot run."""
    if shared < compare.MIN_MATCHED:
        st.warning(
            f"{md_escape(other.name)} shares {shared:,} item"
            f"{'' if shared == 1 else 's'} with {md_escape(info.name)} (items are "
            f"matched by id; a comparison needs at least {compare.MIN_MATCHED}). Choose a "
            "dataset of the same items, stored with the same id column.",
            icon=":material/link_off:",
        )
        return False
    if info.id_column is None and other.id_column is None and not _derived(info, other):
        st.caption(
            ":material/info: Neither dataset has an id column, so items are matched by row "
            "number: row i must be the same item in both."
        )
    return True


# A partner shares at least this many items (a neighbourhood needs a few).
MIN_SHARED = 3


def settings(info: DatasetInfo) -> dict[str, Any] | None:
    others = [d for d in get_store().list_datasets() if d.id != info.id]
    if not others:
        st.info(
            "Comparing needs a second dataset over the same items: upload another model's "
            "embeddings of them (ids matching), or save a compressed or post-processed copy."
        )
        return None
    # Only datasets over some of the same items (matched by id) are partners.
    shared = {o.id: shared_item_count(info.id, o.id) for o in others}
    others = [o for o in others if shared[o.id] >= MIN_SHARED]
    if not others:
        st.info(
            f"No other dataset shares items with {md_escape(info.name)} (items are matched by "
            "id). Upload another model's embeddings of the same items with the same ids, or "
            "save a compressed or post-processed copy of this one, to compare."
        )
        return None
    cols = st.columns([3, 1, 1])
    by_id = {o.id: o for o in others}
    other_key = f"compare.other.{info.id}"
    if st.session_state.get(other_key) not in by_id:  # first visit, or a deleted partner
        st.session_state[other_key] = others[_default_partner(info, others)].id
    other_id = cols[0].selectbox(
        "Compare with",
        list(by_id),
        format_func=lambda i: (
            f"{by_id[i].name}  ({by_id[i].n:,} × {by_id[i].dim}) · {shared[i]:,} shared items"
        ),
        key=other_key,
        help="Items are matched by id: the other dataset should hold the same items.",
    )
    st.session_state.setdefault("compare.k", 10)
    k = int(cols[1].number_input("k", 1, 200, key="compare.k"))
    st.session_state.setdefault(f"compare.metric.{info.id}", runs.default_metric(info))
    metric = cols[2].selectbox("Metric", METRICS, key=f"compare.metric.{info.id}")
    if not _matching_note(info, by_id[other_id], shared[other_id]):
        return None
    return {"other": by_id[other_id], "k": k, "metric": metric}


def stored_or_job(info: DatasetInfo, options: dict[str, Any]) -> compare.SpaceComparison | None:
    """The stored comparison, or its running job's progress, or a Compare button."""
    other, k, metric = options["other"], options["k"], options["metric"]
    request = widgets.guarded(
        lambda: compare_runs.comparison_request(get_store(), info.id, other.id, k=k, metric=metric)
    )
    if request is None:
        return None
    return artifact_or_job(
        compare_runs.COMPARISONS,
        request,
        button="Compare",
        button_key="compare.run",
        caption="Pairs items by id, finds each item's k nearest neighbours within the shared "
        "items in both spaces, and measures how much the neighbourhoods agree (per item) and "
        "how alike the two spaces are overall (linear CKA, debiased, and its chance level "
        "from shuffled items).",
    )


def summary(info: DatasetInfo, other: DatasetInfo, result: compare.SpaceComparison) -> None:
    k = result.k
    cols = st.columns(4)
    cols[0].metric("Items matched", f"{result.matched:,}")
    cols[1].metric(f"kNN overlap@{k}", f"{result.mean_overlap:.3f}")
    cols[2].metric(f"Jaccard@{k}", f"{result.mean_jaccard:.3f}")
    cols[3].metric(f"Chance overlap@{k}", f"{result.chance_overlap:.4f}")
    cka_cards(result)
    extra = []
    if result.only_a:
        extra.append(f"{result.only_a:,} items only in {md_escape(info.name)}")
    if result.only_b:
        extra.append(f"{result.only_b:,} only in {md_escape(other.name)}")
    st.caption(
        f"{result.matched:,} items matched by id"
        + (f" ({'; '.join(extra)})" if extra else " (all of them)")
        + f". CKA on {result.cka_rows:,} items: "
        + _cka_verdict(result)
        + ". kNN overlap: the share of each item's "
        f"{k} nearest neighbours that are the same in both spaces, averaged."
    )
    st.plotly_chart(
        figures.shared_neighbours_figure(result.shared_histogram(), k, result.chance_overlap),
        width="stretch",
        key="compare.histogram",
    )


CKA_HELP = (
    "Linear CKA (Kornblith et al. 2019): how alike the two spaces' item-to-item similarities "
    "are, from 0 to 1, ignoring rotations and scale. It reads well above 0 even for unrelated "
    "spaces when there are few items for the dimensions; compare it with its chance level."
)
DEBIASED_HELP = (
    "Linear CKA with the unbiased HSIC estimator (Song et al. 2012): about 0 for unrelated "
    "spaces at any number of items (slightly negative happens), 1 for the same geometry."
)
CKA_NULL_HELP = (
    "The chance level of linear CKA: the 95th percentile of CKA over {permutations} seeded "
    "shuffles of the second dataset's items against the first's. A shuffle keeps each space "
    "as it is and breaks the pairing, so a CKA at or below this level says the two spaces "
    "share no more structure than unpaired items would."
)


def cka_cards(result: compare.SpaceComparison) -> None:
    """Linear CKA beside its debiased value and its chance level."""
    debiased = result.cka_debiased
    cols = st.columns(4)
    cols[0].metric("Linear CKA", f"{result.cka:.3f}", help=CKA_HELP)
    cols[1].metric(
        "Debiased CKA",
        f"{debiased:.3f}" if np.isfinite(debiased) else "n/a",
        help=DEBIASED_HELP + (f" Here: {result.cka_note}." if result.cka_note else ""),
    )
    cols[2].metric(
        "Chance CKA (95 %)",
        f"{result.cka_null:.3f}",
        help=CKA_NULL_HELP.format(permutations=compare.CKA_PERMUTATIONS),
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


def projections(info: DatasetInfo, other: DatasetInfo, result: compare.SpaceComparison) -> None:
    """Both spaces' layouts, like for like by default (the same method, parameters and seed:
    :mod:`app.layout_pair`), B Procrustes-aligned onto A, coloured by per-item overlap."""
    cols = st.columns(3)
    with cols[0]:
        side_a = left_layout(info, f"compare.layout_a.{info.id}")
    with cols[1]:
        side_b = right_layout(other, f"compare.layout_b.{other.id}", side_a)
    colour_key = f"compare.colour.{info.id}"
    if st.session_state.get(colour_key) not in (OVERLAP, *info.metadata_columns):
        st.session_state[colour_key] = OVERLAP
    colour_by = cols[2].selectbox("Colour by", [OVERLAP, *info.metadata_columns], key=colour_key)
    coords_a, coords_b = side_a.coords, side_b.coords
    assert coords_a is not None
    left = _panel(info, coords_a, f"{side_a.title} of {info.name}", result.rows_a, result,
                  colour_by)  # fmt: skip
    right, alignment = None, None
    if coords_b is not None:  # None while the right layout is being computed
        alignment = compare.procrustes_align(coords_a[result.rows_a], coords_b[result.rows_b])
        right = _panel(other, alignment.apply(coords_b).astype(np.float32),
                       f"{side_b.title} of {other.name} (aligned)", result.rows_b, result,
                       colour_by)  # fmt: skip
    st.caption(
        pair_caption(side_a, side_b)
        + (
            ""
            if alignment is None
            else " The right layout is rotated, scaled and shifted onto the left one "
            f"(Procrustes over the matched items, disparity {alignment.disparity:.3f})."
        )
        + " Select points in either to see the same items in the other."
    )
    pair_or_left(left, right, id_row_map(info.id, other.id), key="compare.pair", pending=side_b)
    selection_list(info)


def _panel(
    info: DatasetInfo,
    coords: np.ndarray,
    title: str,
    rows: np.ndarray,
    result: compare.SpaceComparison,
    colour_by: str,
) -> Panel:
    """One side's panel, coloured by per-item overlap (``rows``: its matched rows) or by a
    metadata column."""
    if colour_by == OVERLAP:
        values = np.full(info.n, np.nan)
        values[rows] = result.jaccard
        return Panel(info, coords, title, values, False, f"Jaccard@{result.k}", hover_for(info, []))
    return make_panel(info, coords, title=title, colour=colour_by, hover_columns=[colour_by])


def _cka_verdict(result: Any) -> str:
    """What CKA says once its chance level and debiased value are read with it."""
    cka, null, debiased = result.cka, result.cka_null, result.cka_debiased
    if not (np.isfinite(cka) and np.isfinite(null)):
        return "no chance level (too few items)"
    if cka <= null:
        return "not above its chance level (shuffled items): no shared structure"
    if np.isfinite(debiased) and debiased < 0.05:
        return (
            "at its chance level (shuffled items) and debiased CKA near 0: little or no "
            "shared structure"
        )
    return "above its chance level (shuffled items)"
