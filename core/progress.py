"""The progress convention shared by every long-running core function.

A long function takes ``progress(fraction, message)``; it reports now and then, and a True
answer asks it to stop, which it does by raising :class:`OperationCancelled`. Any other
answer (False, or None from a callback that only reports) lets it go on.
"""

from __future__ import annotations

from collections.abc import Callable

from embscope.core.errors import OperationCancelled

__all__ = ["ProgressFn", "check_cancel", "stage"]

# The one progress type of every core function, the job runner and the pages.
ProgressFn = Callable[[float, str], bool | None]


def stage(progress: ProgressFn | None, low: float, high: float) -> ProgressFn | None:
    """``progress`` for a sub-step that maps its own 0..1 onto ``low..high`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message: progress(low + (high - low) * fraction, message)


def check_cancel(progress: ProgressFn | None, fraction: float, message: str, what: str) -> None:
    """Report ``(fraction, message)``; raise OperationCancelled("<what> was cancelled") on True."""
    if progress is not None and progress(fraction, message):
        raise OperationCancelled(f"{what} was cancelled")
