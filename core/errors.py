"""Errors that core raises for a user to act on.

Every reader and public core function validates at its boundary and raises
:class:`InvalidInputError` with a message that says what was wrong, where, and how
to fix it. The CLI prints it as ``error: <message>`` (exit status 2) and the pages
show it with ``st.error``; neither ever shows a traceback for it.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that embscope cannot use, with a message a user can act on."""


class DatasetNotFoundError(InvalidInputError, LookupError):
    """A dataset reference (integer id or exact name) that matches no stored dataset."""


class DatabaseBusyError(InvalidInputError):
    """The database file is locked by another process (for example a running server)."""


class OperationCancelled(Exception):
    """Long work stopped because its ``progress`` callback returned True (the user cancelled)."""


class ResultDroppedError(InvalidInputError):
    """A result computed for a request made before its dataset's results of that metric were
    dropped (a metric change, core/metric_change.py): not stored, so the drop holds."""
