"""Projections: LargeVis, UMAP, heat-geodesic and PCA layouts, scored, coloured and selectable."""

from __future__ import annotations

import streamlit as st

from embscope.app import clusters_panel, map_controls, preview_note, widgets
from embscope.app import projections_view as view

widgets.page_header("Projections")
widgets.show_flashes()
info = widgets.current_dataset()
view.apply_url(info)
view.open_best(info)
request, slots = view.settings(info)
projection = view.stored_or_job(info, request)
view.other_jobs(info, view.request_key(info, request))
if projection is not None:
    preview_note.show(projection)
    view.opened_note(projection)
    clustering = clusters_panel.clustering(info, projection.metric)
    look = map_controls.map_controls(info, clustering, slots)
    mapped = map_controls.find_row(info, projection.metric)
    if st.session_state.get("projections.side_by_side"):
        map_controls.side_by_side(info, projection, look, clustering, mapped)
    else:
        map_controls.main_scatter(info, projection, look, clustering, mapped)
    st.toggle("Side by side with another projection", key="projections.side_by_side")
    map_controls.linked_charts(info, mapped)
    view.quality_metrics(projection)
    map_controls.clusters_section(info, clustering)
    map_controls.selection_table(info, projection, mapped)
    map_controls.export_projection(info, projection, mapped)
view.write_url(info, request)
st.divider()
st.subheader("Gallery")
st.caption("Every projection of this dataset computed so far, by anyone; pick one to open it.")
view.gallery(info)
