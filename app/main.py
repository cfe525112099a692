"""embscope's entry point: the frame and router (``streamlit run app/main.py``).

Every page shares the sidebar dataset picker drawn here before the page runs. When the
server was started with ``--token``, the gate in front of Streamlit (app/gate.py) lets no
request through before the browser has given the token; this script checks it again and,
when run without the gate (``streamlit run app/main.py``), asks for it in its own form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from embscope.app import access, gate, jobs, widgets
from embscope.core.errors import InvalidInputError
from embscope.core.store import DatasetInfo

# The checkout: pages/ and assets/ live beside app/ (embscope is installed from it, editable).
ROOT = Path(__file__).resolve().parents[1]

PAGES = ROOT / "pages"
AUTH_KEY = "embscope.authorised"
TOKEN_PARAM = "token"


def _authorised() -> bool:
    """True when this session may see the app: no token is set, or it has given the token.

    A token in the link is taken once and removed from the address bar at once, so a link
    copied from it later does not carry the token along.
    """
    if access.access_token() is None:
        return True
    # Behind embscope serve's gate (app/gate.py) every session carries the access cookie.
    if gate.cookie_is_valid(st.context.cookies.get(gate.COOKIE)):
        return True
    given = st.query_params.get(TOKEN_PARAM)
    if given is not None:
        del st.query_params[TOKEN_PARAM]
    if st.session_state.get(AUTH_KEY):
        return True
    if given is not None and access.token_matches(given):
        st.session_state[AUTH_KEY] = True
        return True
    _token_form(wrong_link=given is not None)
    return False


def _token_form(*, wrong_link: bool) -> None:
    """The only thing a session without the token sees."""
    st.title("embscope")
    st.write("This server is shared with a team: enter its access token to continue.")
    if wrong_link:
        st.error("The access token in the link is not right.", icon=":material/lock:")
    with st.form("embscope.token_form"):
        given = st.text_input("Access token", type="password", key="embscope.token_input")
        submitted = st.form_submit_button("Open embscope", type="primary")
    if not submitted:
        return
    if access.token_matches(given):
        st.session_state[AUTH_KEY] = True
        st.session_state.pop("embscope.token_input", None)
        st.rerun()
    st.error("That access token is not right.", icon=":material/lock:")


# The map owns the page: less of Streamlit's wide-layout padding around the main column.
PAGE_STYLE = """<style>
[data-testid="stMainBlockContainer"] {
  padding-top: 2.2rem; padding-left: 2rem; padding-right: 2rem; max-width: 100%;
}
</style>"""


LANDED_KEY = "embscope.landed"


def _land_on_the_map(on_datasets: bool, chosen: DatasetInfo | None, projections: Any) -> None:
    """The map is the product: a new session that opens the bare front page (the Datasets
    page) goes on to the Projections map when its dataset has a stored layout to show. A link
    (``/?dataset=3``, ``?token=...``) opens the page it names."""
    if st.session_state.get(LANDED_KEY):
        return
    st.session_state[LANDED_KEY] = True
    if on_datasets and not st.query_params and chosen is not None and widgets.has_layout(chosen):
        st.switch_page(projections)


def run() -> None:
    st.set_page_config(page_title="embscope", page_icon=":material/scatter_plot:", layout="wide")
    authorised = _authorised()
    datasets = st.Page(
        PAGES / "datasets.py", title="Datasets", icon=":material/database:", default=True
    )
    projections = st.Page(
        PAGES / "projections.py",
        title="Projections",
        icon=":material/scatter_plot:",
        url_path="projections",
    )
    page = st.navigation(
        [
            projections,
            datasets,
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
        ],
        # Without the token the page list stays hidden too; the page in the link is kept.
        position="sidebar" if authorised else "hidden",
    )
    st.logo(str(ROOT / "assets" / "logo.svg"), size="large")
    st.html(PAGE_STYLE)
    if not authorised:
        st.stop()
    try:
        chosen = widgets.dataset_picker()
        _land_on_the_map(page is datasets, chosen, projections)
        jobs.jobs_sidebar()
        if access.read_only():
            st.sidebar.caption(":material/lock: Read-only demo: datasets cannot be changed here.")
    except InvalidInputError as exc:
        widgets.show_error(exc)
        st.stop()
    page.run()


run()
