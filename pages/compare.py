"""Compare: two embeddings of the same items, item by item (two models, or a model and its copy)."""

from __future__ import annotations

import streamlit as st

from embscope.app import compare_view as view
from embscope.app import widgets

widgets.page_header("Compare")
widgets.show_flashes()
info = widgets.current_dataset()
view.apply_url(info)
options = view.settings(info)
if options is not None:
    result = view.stored_or_job(info, options)
    if result is not None:
        view.summary(info, options["other"], result)
        st.subheader("Where the spaces disagree")
        view.projections(info, options["other"], result)
        st.subheader("Items that moved most")
        view.moved_most(info, result)
view.write_url(info, options)
