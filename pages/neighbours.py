"""Neighbours: nearest neighbours of an item, a vector or a text, beside the exact answer."""

from __future__ import annotations

import streamlit as st

from app import diagnostics_view, state
from app import neighbours_view as view
from app.cache import get_store

st.title("Neighbours")
current_id = state.selected_dataset_id()
if current_id is None:
    st.info("No dataset yet: add one on the Datasets page.")
    st.stop()
info = get_store().get_dataset(current_id)
st.caption(f"{info.n:,} items × {info.dim} dimensions")
options = view.settings(info)
view.query_picker(info)
st.divider()
answer = view.run_query(info, options)
if answer is not None:
    view.show_answer(info, *answer)
st.divider()
diagnostics_view.section(info, options)
