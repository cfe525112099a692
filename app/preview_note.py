"""The label of a preview layout (a sample laid out, the other points placed by their
neighbours; core/projections/preview.py) above its map on the Projections page, and the hint
that offers one where a full layout takes minutes."""

from __future__ import annotations

import streamlit as st

from embscope.core.projections.preview import preview_caption
from embscope.core.projections.runs import Projection

# From this many items a full LargeVis or UMAP layout takes minutes (graph included: about
# 1.5 min at 300,000, 5 to 7 at a million; bench/bench_scale.py): the Compute caption offers
# the preview (about 40 s at a million).
HINT_N = 200_000


def show(projection: Projection) -> None:
    """A note above the map when ``projection`` is a preview; nothing otherwise."""
    preview = projection.preview
    if not preview:
        return
    st.info(
        preview_caption(preview) + ". Its coarse shape is the full layout's; the fine "
        "neighbourhoods of the placed points are approximate. Turn preview off in the "
        "settings for the full layout.",
        icon=":material/preview:",
    )


def compute_hint(n: int, method: str, params: dict) -> str:
    """What the Compute caption adds for a full LargeVis or UMAP layout of ``n`` items when
    that takes minutes: where the preview is. Empty otherwise."""
    if n < HINT_N or method not in ("largevis", "umap") or params.get("preview"):
        return ""
    return (
        f" On {n:,} items a full layout takes minutes; a preview (a 50,000-point sample laid "
        "out, the rest placed by their neighbours: about 40 s at a million) is the "
        "'preview' switch in the settings above."
    )
