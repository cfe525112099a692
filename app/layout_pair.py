"""Two datasets' layouts side by side, like for like: the left dataset's best stored layout and,
on the right, the same method with the same parameters and seed on the other dataset (computed
as a background job when it is not stored). Used by the Compare page and the Compression
page's "original beside a saved copy": a UMAP beside a PCA would show the methods' difference,
not the datasets'."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from embscope.app import figures
from embscope.app.cache import pca_layout_of, projection_coords
from embscope.app.jobs import artifact_or_job
from embscope.app.runtime import get_store
from embscope.app.scatter import (
    PCA_CHOICE,
    Panel,
    best_layout,
    draw,
    linked_pair,
    stored_layouts,
)
from embscope.app.selection import current_selection, update_selection
from embscope.app.text import md_escape
from embscope.app.widgets import guarded
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo

# The right side's default choice: the left layout's method, parameters and seed.
SAME_CHOICE = "same as the left"
# Its label names no method: a selectbox keeps showing the label it last showed for its value,
# so a label that followed the left choice would go stale.
SAME_LABEL = "Same method and parameters as the left"
TRUST = f"trustworthiness@{runs.QUALITY_K}"


@dataclass(frozen=True)
class Side:
    """One side's layout: its coordinates (None while the right one is being computed), its
    title and the stored projection it is (None: the instant PCA preview)."""

    coords: np.ndarray | None
    title: str
    projection: runs.Projection | None = None
    # The right side while its layout is not stored: what to compute (see pair_or_left).
    request: runs.ProjectionRequest | None = None
    dataset: DatasetInfo | None = None


def _labels(layouts: dict[str, runs.Projection]) -> dict[str, str]:
    """Each layout's label with its seed (two seeds of one method read apart). A label never
    changes once shown: a selectbox keeps the label it last showed for its value."""
    return {
        fp: p.label + ("" if p.method == "pca" else f", seed {p.seed}") for fp, p in layouts.items()
    }


def left_layout(info: DatasetInfo, key: str) -> Side:
    """The left dataset's layout: PCA or one of its stored 2-D projections (by fingerprint,
    so a share link can name it), its best stored one by default."""
    stored = {p.fingerprint: p for p in stored_layouts(info)}
    labels = _labels(stored)
    options = [PCA_CHOICE, *stored]
    if st.session_state.get(key) not in options:  # first visit, or a layout since replaced
        best = best_layout(list(stored.values()))
        st.session_state[key] = PCA_CHOICE if best is None else best.fingerprint
    pick = st.selectbox(
        f"Layout of {md_escape(info.name)}",
        options,
        format_func=lambda o: o if o == PCA_CHOICE else labels[o],
        key=key,
        help="The best stored layout (highest trustworthiness) is shown first; compute others "
        "on the Projections page.",
    )
    if pick == PCA_CHOICE:
        return Side(pca_layout_of(info.id), "PCA 2-D")
    chosen = stored[pick]
    return Side(projection_coords(chosen.fingerprint), chosen.title, chosen)


def right_layout(other: DatasetInfo, key: str, left: Side) -> Side:
    """The right dataset's layout: by default the left one's method, parameters and seed on
    ``other`` (read if stored, else computed as a background job, whose progress is shown
    here); or PCA, or another of its stored 2-D projections when chosen."""
    stored = {p.fingerprint: p for p in stored_layouts(other)}
    labels = _labels(stored)
    options = [SAME_CHOICE, PCA_CHOICE, *stored]
    if st.session_state.get(key) not in options:
        st.session_state[key] = SAME_CHOICE
    pick = st.selectbox(
        f"Layout of {md_escape(other.name)}",
        options,
        format_func=lambda o: (
            SAME_LABEL if o == SAME_CHOICE else o if o == PCA_CHOICE else labels[o]
        ),
        key=key,
        help="By default the same method, parameters and seed as the left layout (computed "
        "in the background if this dataset has none), so that differences between the two "
        "maps come from the data, not from two methods.",
    )
    if pick == PCA_CHOICE or (pick == SAME_CHOICE and left.projection is None):
        return Side(pca_layout_of(other.id), "PCA 2-D")
    if pick != SAME_CHOICE:
        return Side(projection_coords(pick), stored[pick].title, stored[pick])
    source = left.projection
    assert source is not None
    request = guarded(
        lambda: runs.projection_request(
            get_store(), other.id, method=source.method, dims=source.dims, seed=source.seed,
            metric=source.metric, params=source.params,
        )
    )  # fmt: skip
    if request is None:  # the other dataset cannot take these settings (said above)
        return Side(pca_layout_of(other.id), "PCA 2-D")
    found = runs.PROJECTIONS.find(get_store(), request)
    if found is None:  # computed in the background, its progress where its map will be
        return Side(None, source.title, request=request, dataset=other)
    coords = projection_coords(found)
    return Side(coords, source.title, runs.load_projection(get_store(), found, with_coords=False))


def like_for_like(left: Side, right: Side) -> bool:
    """Whether the two sides are the same method with the same parameters (and seed)."""
    a, b = left.projection, right.projection
    if a is None or b is None:
        return a is None and b is None
    return (a.method, a.dims, a.seed, a.metric, dict(a.params)) == (
        b.method, b.dims, b.seed, b.metric, dict(b.params),
    )  # fmt: skip


def pair_caption(left: Side, right: Side) -> str:
    """One sentence on whether the two maps are comparable."""
    if right.coords is None:  # the right one is still to be computed (always like for like)
        return (
            f"Like for like: the other map is being laid out with {md_escape(right.title)}, "
            "the left one's method, parameters and seed."
        )
    if like_for_like(left, right):
        what = "PCA" if left.projection is None else md_escape(left.projection.label)
        seed = "" if left.projection is None else f", seed {left.projection.seed}"
        return f"Like for like: both maps are {what}{seed}, one of each dataset."
    return (
        f":orange[Two different layouts] ({md_escape(left.title)} beside "
        f"{md_escape(right.title)}): part of what differs is the methods'. Choose "
        "*Same as the left* for a like-for-like view."
    )


def pair_or_left(
    left: Panel, right: Panel | None, forward: np.ndarray, *, key: str, pending: Side | None = None
) -> None:
    """Both panels with one linked selection; while the right layout is not stored
    (``pending``: the right :class:`Side` with its request), the left one alone and, where the
    right one will be, its background job's progress (started at once) or a button."""
    if right is not None:
        linked_pair(left, right, forward, key=key)
        return
    cols = st.columns(2)
    with cols[0]:
        fig, event, redrawn = draw(
            left, selected=current_selection(left.info), key=f"{key}.left", height=520
        )
    with cols[1]:
        if pending is not None and pending.request is not None and pending.dataset is not None:
            found = artifact_or_job(
                runs.PROJECTIONS,
                pending.request,
                button=f"Compute {pending.title} of {md_escape(pending.dataset.name)}",
                button_key=f"{key}.compute",
                # Only instant work starts by itself: a visitor who merely looks at a page
                # must not start a UMAP or LargeVis of another dataset.
                start_now=pending.request.method == "pca",
                with_arrays=False,
            )
            if found is not None:  # it finished meanwhile
                st.rerun()
        st.caption(
            "The other map appears here once it is laid out with the left one's method, "
            "parameters and seed, in the background."
        )
    if event is not None and update_selection(
        left.info, f"{key}.left", figures.selected_rows(fig, event), redrawn=redrawn
    ):
        st.rerun()
