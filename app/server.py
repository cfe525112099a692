"""What ``embscope serve`` runs: the dashboard (app/main.py) as an ``st.App`` behind the gate.

``streamlit run app/server.py`` finds ``app`` below and serves it with uvicorn; the
:class:`app.gate.AccessGate` middleware sees every request before Streamlit does (the token,
the host check, the upload budget), and an uncaught error in a page is logged here with its
traceback while the browser sees only a short message (``client.showErrorDetails`` none).
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from embscope.app.gate import AccessGate

log = logging.getLogger("embscope.server")


def log_script_error(exc: Exception) -> None:
    """Log a page's uncaught error server-side (the browser is told only that it happened)."""
    log.error("a page raised %s", type(exc).__name__, exc_info=exc)


app = st.App(
    Path(__file__).with_name("main.py"),
    middleware=[Middleware(AccessGate)],
    on_script_error=log_script_error,
)
