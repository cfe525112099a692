"""Neighbours: nearest neighbours of an item, a vector or a text, checked against exact search."""

from __future__ import annotations

import streamlit as st

from embscope.app import diagnostics_view, hubness_view, map_filter, widgets
from embscope.app import neighbours_view as view

widgets.page_header("Neighbours")
info = widgets.current_dataset()
view.apply_url(info)
options = view.settings(info)
view.query_picker(info)
view.write_url(info, options)
where = map_filter.filter_line(info)  # the map's filter: only matching items are returned
st.divider()
answer = view.run_query(info, {**options, "where": where})
if answer is not None:
    view.show_answer(info, *answer)
hubness_view.effect_section(info, options)
st.divider()
diagnostics_view.section(info, options)
