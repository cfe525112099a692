"""embscope's entry point: the frame and router (``streamlit run app/main.py``).

Every page shares the sidebar dataset picker drawn here before the page runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ (not the repository) on sys.path; make the
# `app` and `core` packages importable however the script is started.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import widgets  # noqa: E402
from core.errors import InvalidInputError  # noqa: E402

PAGES = ROOT / "pages"


def run() -> None:
    st.set_page_config(page_title="embscope", page_icon=":material/scatter_plot:", layout="wide")
    page = st.navigation(
        [
            st.Page(
                PAGES / "datasets.py", title="Datasets", icon=":material/database:", default=True
            ),
            st.Page(
                PAGES / "projections.py",
                title="Projections",
                icon=":material/scatter_plot:",
                url_path="projections",
            ),
            st.Page(
                PAGES / "neighbours.py",
                title="Neighbours",
                icon=":material/hub:",
                url_path="neighbours",
            ),
            st.Page(
                PAGES / "compression.py",
                title="Compression",
                icon=":material/compress:",
                url_path="compression",
            ),
            st.Page(
                PAGES / "compare.py",
                title="Compare",
                icon=":material/compare:",
                url_path="compare",
            ),
            st.Page(
                PAGES / "geometry.py",
                title="Geometry",
                icon=":material/insights:",
                url_path="geometry",
            ),
        ]
    )
    st.logo(str(ROOT / "assets" / "logo.svg"), size="large")
    try:
        widgets.dataset_picker()
        widgets.jobs_sidebar()
    except InvalidInputError as exc:
        widgets.show_error(exc)
        st.stop()
    page.run()


run()
