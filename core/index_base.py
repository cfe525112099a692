"""What every index backend shares: the protocol, the row conventions, files and locks.

:mod:`core.index` (exact search, HNSW) and :mod:`core.index_milvus` (Milvus) both build on
this module, so neither imports the other's internals.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.progress import ProgressFn
from embscope.core.validation import Metric

__all__ = [
    "NeighbourIndex",
    "ReadWriteLock",
    "atomic_write",
    "check_exclude",
    "drop_excluded",
    "fsync_directory",
    "fsync_file",
    "new_labels",
    "read_sidecar",
    "sidecar_path",
    "sort_rows",
    "true_l2",
]


def check_exclude(exclude: Any, m: int) -> np.ndarray | None:
    """``exclude`` as int64 (m,): one label to leave out of each query's answer (or None)."""
    if exclude is None:
        return None
    ex = np.asarray(exclude)
    if ex.ndim == 0:
        ex = ex[None]
    if ex.shape != (m,) or not np.issubdtype(ex.dtype, np.integer):
        raise InvalidInputError(
            f"exclude must hold one integer label per query ({m}), got {ex.dtype} {ex.shape}"
        )
    return ex.astype(np.int64, copy=False)


def sort_rows(indices: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours in a deterministic order: by distance, then label."""
    order = np.lexsort((indices, distances), axis=-1)
    return (
        np.take_along_axis(indices, order, axis=1),
        np.take_along_axis(distances, order, axis=1),
    )


def drop_excluded(
    indices: np.ndarray, distances: np.ndarray, exclude: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's excluded label from a (m, k+1) answer, leaving (m, k)."""
    if exclude is None:
        return indices[:, :k], distances[:, :k]
    hit = indices == exclude[:, None]
    # Rows without their excluded label lose their last (farthest) column instead.
    no_hit = ~hit.any(axis=1)
    hit[no_hit, -1] = True
    keep = ~hit
    m = indices.shape[0]
    return indices[keep].reshape(m, -1)[:, :k], distances[keep].reshape(m, -1)[:, :k]


def true_l2(Q: np.ndarray, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Euclidean distances recomputed directly for the chosen pairs (the BLAS expansion
    ||q||^2 + ||x||^2 - 2 q.x loses digits to cancellation for near neighbours)."""
    out = np.empty(idx.shape, dtype=np.float32)
    for start in range(0, idx.shape[0], 128):  # small slices keep the gather in cache
        stop = start + 128
        diff = X[idx[start:stop]] - Q[start:stop, None, :]
        out[start:stop] = np.sqrt(np.einsum("mkd,mkd->mk", diff, diff))
    return out


@runtime_checkable
class NeighbourIndex(Protocol):
    """What every index backend offers. See the module docstring for the conventions."""

    backend: str
    metric: Metric
    dim: int | None  # None until the first build or add when not given to the constructor

    def build(self, X: np.ndarray, *, progress: ProgressFn | None = None) -> NeighbourIndex:
        """Index the rows of ``X`` (labels 0..n-1), replacing any content; returns self."""
        ...

    def add(self, X: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add rows (labels default to the next row numbers)."""
        ...

    def query(
        self, Q: np.ndarray, k: int, *, exclude: np.ndarray | None = None, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64[m, k], distances float32[m, k]), rows sorted by (distance, label)."""
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to ``path`` (atomically); returns the path."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> NeighbourIndex:
        """Read an index written by :meth:`save`; ``options`` set query-time parameters."""
        ...

    def stats(self) -> dict[str, Any]:
        """Backend, metric, size, parameters and build time, JSON-serialisable."""
        ...

    def __len__(self) -> int: ...


class ReadWriteLock:
    """Many concurrent readers (queries) or one writer (add, a change of ef)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it into place:
    a reader sees the old file or the whole new one, never half of it (whatever ``write``
    returns, e.g. a byte count, is ignored; ``write`` closes what it opens).

    Durable too: the written file is synced to the disk before the rename, and its folder
    after it, so a power loss leaves the old file or the whole new one, never a renamed but
    empty (or partial) file.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_directory(folder.parent)  # the new folder's own entry
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_directory(folder)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def fsync_file(path: Path) -> None:
    """Flush a written (and closed) file's data to the disk."""
    # Windows' fsync (_commit) needs a descriptor open for writing; POSIX takes any.
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(folder: Path) -> None:
    """Flush a folder's entries to the disk, so that a file just renamed (or made) in it is
    still there after a power loss. Nothing to do on Windows (a folder cannot be opened; NTFS
    journals renames) or on a file system that cannot sync a folder (EINVAL)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def sidecar_path(path: Path) -> Path:
    """The JSON file that describes the index saved at ``path``."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path, backend: str) -> dict[str, Any]:
    """The description of a saved ``backend`` index (InvalidInputError when there is none)."""
    side = sidecar_path(Path(path))
    if not Path(path).exists() or not side.exists():
        raise InvalidInputError(f"no {backend} index at {path}: build it first")
    meta: dict[str, Any] = json.loads(side.read_text(encoding="utf-8"))
    if meta.get("backend") != backend:
        raise InvalidInputError(f"{path} holds a {meta.get('backend')} index, not {backend}")
    return meta


def new_labels(labels: Any, m: int, existing: np.ndarray) -> np.ndarray:
    """Labels for ``m`` added rows: the next numbers, or ``labels`` checked against the index."""
    if labels is None:
        start = int(existing.max()) + 1 if existing.size else 0
        return np.arange(start, start + m, dtype=np.int64)
    arr = np.asarray(labels)
    if arr.shape != (m,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
        raise InvalidInputError(
            f"labels must be {m} non-negative integers, got {arr.dtype} {arr.shape}"
        )
    if len(np.unique(arr)) != m or np.isin(arr, existing).any():
        raise InvalidInputError("labels must be unique and not already in the index")
    return arr.astype(np.int64)
