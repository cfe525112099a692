"""Who may do what on this server: read-only demo mode and the shared access token.

``embscope serve --read-only`` and ``--token`` reach the Streamlit process through the
environment (the server is a child process started by the CLI), so every session of one
server sees the same settings.

Read-only mode forbids what changes the catalog: uploading, loading the demo datasets,
saving a derived copy as a new dataset, renaming and deleting. Computing projections,
geometry scores and compression reports stays allowed: they are derived caches stored
beside a dataset and change none of it.
"""

from __future__ import annotations

import hmac
import os
import threading
import time

from embscope.core.errors import InvalidInputError

READ_ONLY_ENV = "EMBSCOPE_READ_ONLY"
TOKEN_ENV = "EMBSCOPE_TOKEN"
MAX_UPLOAD_ENV = "EMBSCOPE_MAX_UPLOAD_MB"
#: "1": the job runner compiles the projection methods' code before its first job.
WARM_UP_ENV = "EMBSCOPE_WARM_UP"

#: Token attempts (right or wrong) are answered at most once per this many seconds, across
#: every session of the server, so guessing is slow however many tabs guess at once, and the
#: time of an answer says nothing about the token. (Behind `embscope serve` the gate of
#: app/gate.py answers first, with its own limits; this is the in-app fallback.)
WRONG_TOKEN_INTERVAL_S = 1.0
_wrong_lock = threading.Lock()
_next_wrong_answer = 0.0

READ_ONLY_CAPTION = (
    "Read-only demo: uploading, renaming and deleting datasets are turned off on this server."
)


def read_only() -> bool:
    """True when the server was started with ``--read-only``: nothing may change a dataset."""
    return os.environ.get(READ_ONLY_ENV, "").strip().lower() in {"1", "true", "yes"}


def require_writable(action: str = "change the datasets") -> None:
    """Refuse a change to the catalog on a read-only server.

    Parameters
    ----------
    action : str
        What was attempted, for the message (``"delete a dataset"``).

    Raises
    ------
    InvalidInputError
        When the server runs with ``--read-only``.
    """
    if read_only():
        raise InvalidInputError(
            f"this server is a read-only demo: it cannot {action}; "
            "start your own with `embscope serve` to make changes"
        )


def access_token() -> str | None:
    """The shared token a browser must present before any page renders, or None."""
    token = os.environ.get(TOKEN_ENV, "")
    return token or None


def token_matches(given: object) -> bool:
    """True when ``given`` is the server's access token (constant-time comparison).

    Always False when no token is configured or ``given`` is not a non-empty string. Every
    attempt waits its turn, the right one too: at most one answer per
    :data:`WRONG_TOKEN_INTERVAL_S` across the server.
    """
    expected = access_token()
    if expected is None or not isinstance(given, str) or not given:
        return False
    _wait_for_turn()
    # Compared as UTF-8 bytes: compare_digest refuses non-ASCII str.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _wait_for_turn() -> None:
    """Space token answers :data:`WRONG_TOKEN_INTERVAL_S` apart, server-wide (each session's
    script thread waits its turn)."""
    global _next_wrong_answer
    with _wrong_lock:
        now = time.monotonic()
        turn = max(now, _next_wrong_answer)
        _next_wrong_answer = turn + WRONG_TOKEN_INTERVAL_S
    if turn > now:
        time.sleep(turn - now)
