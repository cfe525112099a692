"""Datasets: upload a file of vectors (and metadata), preview it, save it; rename or delete."""

from __future__ import annotations

import streamlit as st

from embscope.app import dataset_forms, share, state, widgets
from embscope.app.runtime import get_store

widgets.page_header("Datasets")
share.write("datasets", {})  # the link to this page names the current dataset
widgets.show_flashes()
dataset_forms.upload_section()
st.divider()
current_id = state.selected_dataset_id()
current = get_store().get_dataset(current_id) if current_id is not None else None
dataset_forms.catalog_section(current)
