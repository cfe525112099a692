"""The label of a preview layout (a sample laid out, the other points placed by their
neighbours; core/projections/preview.py) above its map on the Projections page."""

from __future__ import annotations

import streamlit as st

from embscope.core.projections.preview import preview_caption
from embscope.core.projections.runs import Projection


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
