"""Compression: what each codec costs in recall, size and rank fidelity, and where it hurts."""

from __future__ import annotations

import streamlit as st

from embscope.app import compression_view as view
from embscope.app import widgets

widgets.page_header("Compression")
widgets.show_flashes()
info = widgets.current_dataset()
view.apply_url(info)
options = view.settings(info)
view.write_url(info, options)
report = view.stored_or_job(info, options)
if report is not None:
    view.results(report)
    st.subheader("Where compression hurts")
    view.harm_map(info, report)
    st.subheader("Compressed copies")
    view.saved_copies(info, report)
