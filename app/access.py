"""Who may do what on this server: read-only demo mode and the shared access token.

``embscope serve --read-only`` and ``--token`` reach the Streamlit process through the
environment (the server is a child process started by the CLI), so every session of one
server sees the same settings.
"""

from __future__ import annotations

import os

READ_ONLY_ENV = "EMBSCOPE_READ_ONLY"
TOKEN_ENV = "EMBSCOPE_TOKEN"


def read_only() -> bool:
    """True when the server was started with ``--read-only``: nothing may change a dataset."""
    return os.environ.get(READ_ONLY_ENV, "").strip().lower() in {"1", "true", "yes"}


def access_token() -> str | None:
    """The shared token a browser must present before any page renders, or None."""
    token = os.environ.get(TOKEN_ENV, "")
    return token or None
