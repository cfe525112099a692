"""Projections: LargeVis, UMAP, heat-geodesic and PCA layouts, scored, coloured and selectable."""

from __future__ import annotations

import streamlit as st

from embscope.app import projections_view as view
from embscope.app import widgets

widgets.page_header("Projections")
widgets.show_flashes()
info = widgets.current_dataset()
view.apply_url(info)
request = view.settings(info)
projection = view.stored_or_job(info, request)
view.other_jobs(info, view.request_key(info, request))
if projection is not None:
    colour, hover = view.colour_options(info)
    view.quality_metrics(projection)
    if st.toggle("Side by side with another projection", key="projections.side_by_side"):
        view.side_by_side(info, projection, colour=colour, hover_columns=hover)
    else:
        view.main_scatter(info, projection, colour=colour, hover_columns=hover)
    view.selection_table(info, projection)
    view.export_projection(info, projection)
view.write_url(info, request)
st.divider()
st.subheader("Gallery")
st.caption("Every projection of this dataset computed so far, by anyone; pick one to open it.")
view.gallery(info)
