"""Geometry: the isotropy, intrinsic-dimension and hubness scorecard of a dataset."""

from __future__ import annotations

import streamlit as st

from embscope.app import geometry_view as view
from embscope.app import widgets

widgets.page_header("Geometry")
widgets.show_flashes()
info = widgets.current_dataset()
view.apply_url(info)
options = view.settings(info)
card = view.scorecard(info, options)
if card is not None:
    view.show_scorecard(card)
    view.plots(info, card)
    view.where(info, card)
    view.export(info, card)
st.divider()
st.subheader("Compare scorecards")
view.compare(info, options)
st.divider()
st.subheader("Post-processing")
st.caption(
    "Change the space and see what it does to isotropy; save the result as a new dataset to "
    "use it on every page (its own scorecard, neighbours, projections)."
)
view.postprocess(info)
view.write_url(info, options)
