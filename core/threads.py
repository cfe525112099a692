"""Threads for the numba kernels that release the GIL (``nogil=True``): how many the process may
use, and a loop over contiguous ranges on a pool.

The kernels (k-NN cells, LargeVis and UMAP SGD, fuzzy-graph rows) run on plain Python threads
rather than numba's ``parallel=True`` so that a caller can report progress and cancel between
chunks, and so that their compiled code can be cached (``cache=True``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["available_threads", "ranges", "run_ranges"]


def available_threads() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges ``(lo, hi)`` splitting ``0..n`` as evenly as possible (empty
    ones dropped)."""
    bounds = np.linspace(0, n, max(1, parts) + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def run_ranges(
    pool: ThreadPoolExecutor | None, fn: Callable[[int, int], None], n: int, parts: int
) -> None:
    """``fn(lo, hi)`` over :func:`ranges` of ``0..n``: ``parts`` of them on ``pool``, or one
    call in this thread without a pool. Waits for all; the first error is raised."""
    spans = ranges(n, parts if pool is not None else 1)
    if pool is None:
        for lo, hi in spans:
            fn(lo, hi)
        return
    for future in [pool.submit(fn, lo, hi) for lo, hi in spans]:
        future.result()
