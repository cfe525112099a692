"""Nearest-neighbour indexes behind one protocol: HNSW (default), exact, and Milvus (scale-out).

Every backend speaks the same :class:`NeighbourIndex` contract:

* ``metric`` is ``"cosine"``, ``"l2"`` or ``"ip"`` and every backend returns **true
  distances**: Euclidean distance (not squared) for ``l2``, ``1 - cos`` for ``cosine`` and
  ``1 - <q, x>`` for ``ip`` (hnswlib's convention, so smaller is always nearer).
* Items are labelled with non-negative integers (the dataset's row numbers by default).
* ``query(Q, k, exclude=...)`` returns ``(indices int64[m, k], distances float32[m, k])``,
  each row sorted by (distance, label). ``exclude[i]`` is a label removed from row ``i``'s
  answer (the query item itself: self is excluded **by label**, so an identical duplicate
  of the query is still a neighbour at distance 0).
* ``save(path)`` / ``load(path)`` round-trip the index; query-time options such as HNSW's
  ``ef`` are set on load, since hnswlib does not keep them in the file.

:class:`ExactIndex` is brute force with BLAS and is the ground truth every recall figure is
measured against. Backends are chosen by name with :func:`make_index`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index_base import (
    NeighbourIndex,
    ReadWriteLock,
    atomic_write,
    check_exclude,
    drop_excluded,
    new_labels,
    read_sidecar,
    sidecar_path,
    sort_rows,
    true_l2,
)
from embscope.core.progress import ProgressFn
from embscope.core.validation import (
    check_k,
    check_metric,
    check_vectors,
    prepare_for_metric,
)

__all__ = [
    "BACKENDS",
    "ExactIndex",
    "HnswIndex",
    "NeighbourIndex",
    "exact_knn",
    "make_index",
]

BACKENDS = ("hnsw", "exact", "milvus")

# Rows per BLAS block in exact search: a 2048 x n float32 distance block stays in memory
# comfortably for n up to a few million.
_EXACT_BLOCK = 2048
# And at most this many distances per block (256 MB of float32; at 1M points a block of 2,048
# queries would hold 8 GB), but at least _EXACT_BLOCK_MIN queries, so that a large X is not
# streamed once per handful of queries.
_EXACT_BLOCK_ELEMENTS = 64_000_000
_EXACT_BLOCK_MIN = 64
_CPUS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


# -- validation at the boundary -------------------------------------------------------------


# -- exact search ---------------------------------------------------------------------------


def _block_distances(
    Qb: np.ndarray, X: np.ndarray, sq_norms: np.ndarray | None, metric: str
) -> np.ndarray:
    """Distances of the query block to every row of ``X``: squared Euclidean for ``l2``
    (``sq_norms``: the rows' squared norms, computed here when not given), else 1 - dot."""
    dots: np.ndarray = Qb @ X.T
    if metric == "l2":
        if sq_norms is None:
            sq_norms = np.einsum("ij,ij->i", X, X)
        q2 = np.einsum("ij,ij->i", Qb, Qb)
        d2: np.ndarray = q2[:, None] + sq_norms[None, :] - 2.0 * dots
        np.maximum(d2, 0.0, out=d2)
        return d2  # squared; same order as the distance
    np.subtract(1.0, dots, out=dots)
    return dots


def _select_rows(d: np.ndarray, want: int) -> np.ndarray:
    part = np.argpartition(d, want - 1, axis=1)[:, :want]
    # Ties at the boundary: keep every column as close as the want-th, then take the
    # smallest labels among them, so the answer never depends on partition order.
    kth = np.take_along_axis(d, part, axis=1).max(axis=1)
    for r in range(d.shape[0]):
        cols = np.flatnonzero(d[r] <= kth[r])
        if cols.size > want:
            order = np.lexsort((cols, d[r, cols]))[:want]
            part[r] = cols[order]
    return part


def _select_smallest(d: np.ndarray, want: int) -> np.ndarray:
    """Columns of the ``want`` smallest entries of each row of ``d`` (ties: smaller column).

    numpy's partition releases the GIL, so large blocks are split over the machine's cores.
    """
    threads = min(_CPUS, d.shape[0] // 64)
    if threads < 2 or d.size < 4_000_000:
        return _select_rows(d, want)
    bounds = np.linspace(0, d.shape[0], threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(lambda a, b: _select_rows(d[a:b], want), bounds[:-1], bounds[1:])
        return np.concatenate(list(parts))


def exact_knn(
    Q: np.ndarray,
    X: np.ndarray,
    k: int,
    *,
    metric: str,
    exclude: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each row of ``Q`` among the rows of ``X``, blocked BLAS.

    Parameters
    ----------
    Q : float32 ndarray of shape (m, d)
    X : float32 ndarray of shape (n, d)
        For ``cosine`` both must already be unit-normalised (:func:`normalise_rows`).
    k : int
    metric : {"cosine", "l2", "ip"}
    exclude : int ndarray of shape (m,), optional
        Label removed from each row's answer (self, by label).
    labels : int ndarray of shape (n,), optional
        Labels of the rows of ``X`` (default: row numbers).

    Returns
    -------
    indices : int64 ndarray of shape (m, k)
        Labels, sorted by (distance, label); ties are broken by the smaller label.
    distances : float32 ndarray of shape (m, k)
        True distances (see the module docstring).
    """
    m, n = Q.shape[0], X.shape[0]
    extra = 0 if exclude is None else 1
    want = min(k + extra, n)
    sq_norms = np.einsum("ij,ij->i", X, X) if metric == "l2" else None
    out_i = np.empty((m, want), dtype=np.int64)
    out_d = np.empty((m, want), dtype=np.float32)
    block = max(_EXACT_BLOCK_MIN, min(_EXACT_BLOCK, _EXACT_BLOCK_ELEMENTS // max(n, 1)))
    for start in range(0, m, block):
        stop = min(start + block, m)
        d = _block_distances(Q[start:stop], X, sq_norms, metric)
        if want < n:
            part = _select_smallest(d, want)
        else:
            part = np.broadcast_to(np.arange(n), (stop - start, n)).copy()
        dd = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, dd), axis=-1)
        out_i[start:stop] = np.take_along_axis(part, order, axis=1)
        out_d[start:stop] = np.take_along_axis(dd, order, axis=1)
        if progress is not None and progress(
            stop / m, f"comparing with every item: {stop:,} of {m:,} queries"
        ):
            raise OperationCancelled("exact search was cancelled")
    if metric == "l2":
        out_d = true_l2(Q, X, out_i)
    # cosine and ip distances are 1 - the BLAS dot product itself: already exact.
    if labels is not None:
        out_i = labels[out_i]
    out_i, out_d = sort_rows(out_i, out_d)
    return drop_excluded(out_i, out_d, exclude, k)


# -- the protocol ---------------------------------------------------------------------------


# -- exact ----------------------------------------------------------------------------------


class ExactIndex:
    """Brute-force search with BLAS: the ground truth for every recall figure.

    Parameters
    ----------
    metric : {"cosine", "l2", "ip"}
    dim : int, optional
        Set by :meth:`build` when not given.
    """

    backend = "exact"

    def __init__(self, metric: str = "cosine", dim: int | None = None):
        self.metric = check_metric(metric)
        self.dim = dim
        self._X = np.empty((0, dim or 0), dtype=np.float32)
        self._labels = np.empty(0, dtype=np.int64)
        self._lock = ReadWriteLock()
        self.build_seconds = 0.0

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return prepare_for_metric(X, self.metric)

    def build(self, X: np.ndarray, *, progress: ProgressFn | None = None) -> ExactIndex:
        X = check_vectors(X)
        t0 = time.perf_counter()
        with self._lock.write():
            self.dim = X.shape[1]
            self._X = np.ascontiguousarray(self._prepare(X))
            self._labels = np.arange(X.shape[0], dtype=np.int64)
        self.build_seconds = time.perf_counter() - t0
        if progress is not None:
            progress(1.0, "exact index ready")
        return self

    def add(self, X: np.ndarray, labels: np.ndarray | None = None) -> None:
        X = check_vectors(X, dim=self.dim)
        labels = new_labels(labels, X.shape[0], self._labels)
        with self._lock.write():
            self.dim = X.shape[1]
            self._X = np.ascontiguousarray(
                np.vstack([self._X.reshape(-1, self.dim), self._prepare(X)])
            )
            self._labels = np.concatenate([self._labels, labels])

    def query(
        self, Q: np.ndarray, k: int, *, exclude: np.ndarray | None = None, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        Q = check_vectors(Q, dim=self.dim, name="query vectors")
        exclude = check_exclude(exclude, Q.shape[0])
        with self._lock.read():
            n = len(self._labels)
            k = check_k(k, n - (1 if exclude is not None else 0))
            labels = None if _is_arange(self._labels) else self._labels
            return exact_knn(
                self._prepare(Q), self._X, k, metric=self.metric, exclude=exclude, labels=labels
            )

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        with self._lock.read():
            atomic_write(path, lambda p: _save_npz(p, self._X, self._labels))
            meta = {"backend": self.backend, "metric": self.metric, "dim": self.dim}
            atomic_write(sidecar_path(path), lambda p: p.write_text(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> ExactIndex:
        meta = read_sidecar(Path(path), cls.backend)
        index = cls(meta["metric"], meta["dim"])
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            index._X = np.ascontiguousarray(z["vectors"], dtype=np.float32)
            index._labels = z["labels"].astype(np.int64)
        return index

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim,
            "n": len(self),
            "build_seconds": self.build_seconds,
            "bytes": int(self._X.nbytes + self._labels.nbytes),
        }

    def __len__(self) -> int:
        return int(self._labels.shape[0])


def _save_npz(path: Path, X: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, vectors=X, labels=labels)


def _is_arange(labels: np.ndarray) -> bool:
    return bool(labels.size == 0 or (labels[0] == 0 and np.all(np.diff(labels) == 1)))


# -- HNSW -----------------------------------------------------------------------------------


def _report_build(progress: ProgressFn | None, done: int, n: int) -> None:
    """An index build's progress; True from ``progress`` cancels it."""
    if progress is not None and progress(
        done / n, f"building the search index: {done:,} of {n:,} items"
    ):
        raise OperationCancelled("building the HNSW index was cancelled")


class HnswIndex:
    """Approximate search with hnswlib's HNSW graph: the default backend.

    Parameters
    ----------
    metric : {"cosine", "l2", "ip"}
    dim : int, optional
        Set by :meth:`build` when not given.
    M : int
        Links per node (layer 0 keeps 2M). More links: better recall, more memory.
    ef_construction : int
        Candidate list size while inserting. Larger: better graph, slower build.
    ef : int
        Candidate list size while searching (at least k is used). hnswlib does not save it,
        so it is set again on :meth:`load`.
    seed : int
        hnswlib's level-assignment seed.
    num_threads : int
        Threads for building (-1: all cores). Insertion order experiments need 1.
    """

    backend = "hnsw"

    def __init__(
        self,
        metric: str = "cosine",
        dim: int | None = None,
        *,
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 50,
        seed: int = 100,
        num_threads: int = -1,
    ):
        self.metric = check_metric(metric)
        self.dim = dim
        for name, value, low in (
            ("M", M, 2),
            ("ef_construction", ef_construction, 1),
            ("ef", ef, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidInputError(f"{name} must be a whole number >= {low}, got {value!r}")
        self.M, self.ef_construction, self.ef = int(M), int(ef_construction), int(ef)
        self.seed, self.num_threads = int(seed), int(num_threads)
        self._index: Any = None
        self._lock = ReadWriteLock()
        self._ef_in_use = int(ef)
        self.build_seconds = 0.0

    def _threads(self) -> int:
        return self.num_threads if self.num_threads > 0 else os.cpu_count() or 1

    def _new(self, capacity: int) -> Any:
        import hnswlib

        index = hnswlib.Index(space=self.metric, dim=self.dim)
        index.init_index(
            max_elements=max(capacity, 1),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=self.seed,
        )
        index.set_num_threads(self._threads())
        index.set_ef(self.ef)
        return index

    def build(
        self,
        X: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        order: np.ndarray | None = None,
        chunk: int = 10_000,
    ) -> HnswIndex:
        """Index the rows of ``X`` (labels are row numbers).

        ``order`` inserts the rows in that order (the insertion-order experiment); progress is
        reported every ``chunk`` rows and returning True from it cancels the build.
        """
        X = check_vectors(X)
        n = X.shape[0]
        if order is None:
            order = np.arange(n)
        else:
            order = np.asarray(order)
            if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
                raise InvalidInputError("order must be a permutation of the row numbers")
        t0 = time.perf_counter()
        with self._lock.write():
            self.dim = X.shape[1]
            index = self._new(n)
            for start in range(0, n, chunk):
                rows = order[start : start + chunk]
                index.add_items(X[rows], rows)
                _report_build(progress, min(start + chunk, n), n)
            self._index = index
            self._ef_in_use = self.ef
        self.build_seconds = time.perf_counter() - t0
        return self

    def build_from(
        self,
        batches: Iterable[tuple[np.ndarray, np.ndarray]],
        n: int,
        *,
        progress: ProgressFn | None = None,
        chunk: int = 10_000,
    ) -> HnswIndex:
        """Index ``n`` vectors given as ``(row numbers, vectors)`` batches (a store's scan,
        :meth:`core.store.Store.iter_vectors`), never holding them all: the labels are the
        row numbers, as :meth:`build` makes them."""
        t0 = time.perf_counter()
        done, index = 0, None
        with self._lock.write():
            for rows, block in batches:
                block = check_vectors(block, dim=self.dim if index is not None else None)
                if index is None:
                    self.dim = block.shape[1]
                    index = self._new(n)
                for start in range(0, len(block), chunk):
                    part = slice(start, start + chunk)
                    index.add_items(block[part], np.asarray(rows[part], dtype=np.int64))
                    done += len(block[part])
                    _report_build(progress, done, n)
            if index is None or done != n or index.get_current_count() != n:
                raise InvalidInputError(f"the batches held {done:,} vectors, not {n:,}")
            self._index = index
            self._ef_in_use = self.ef
        self.build_seconds = time.perf_counter() - t0
        return self

    def add(self, X: np.ndarray, labels: np.ndarray | None = None) -> None:
        X = check_vectors(X, dim=self.dim)
        with self._lock.write():
            if self._index is None:
                self.dim = X.shape[1]
                self._index = self._new(X.shape[0])
            existing = np.asarray(self._index.get_ids_list(), dtype=np.int64)
            labels = new_labels(labels, X.shape[0], existing)
            need = self._index.get_current_count() + X.shape[0]
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
            self._index.add_items(X, labels)

    @contextmanager
    def _searching(self, ef: int) -> Iterator[Any]:
        # hnswlib keeps one ef per index; queries with the ef in force run concurrently,
        # a query with another ef waits for them and then changes it.
        while True:
            with self._lock.read():
                if self._ef_in_use == ef:
                    yield self._index
                    return
            with self._lock.write():
                self._index.set_ef(ef)
                self._ef_in_use = ef

    def query(
        self, Q: np.ndarray, k: int, *, exclude: np.ndarray | None = None, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            raise InvalidInputError("the HNSW index is empty: build it first")
        Q = check_vectors(Q, dim=self.dim, name="query vectors")
        exclude = check_exclude(exclude, Q.shape[0])
        extra = 0 if exclude is None else 1
        k = check_k(k, len(self) - extra)
        want = k + extra
        ef = max(int(ef if ef is not None else self.ef), want)
        while True:
            try:
                with self._searching(ef) as index:
                    # One thread for a single query (concurrent sessions share the cores),
                    # all of them for a batch.
                    threads = 1 if Q.shape[0] < 64 else self._threads()
                    labels, dist = index.knn_query(Q, k=want, num_threads=threads)
                break
            except RuntimeError:
                # hnswlib could not collect `want` results with this ef (tiny or
                # disconnected graphs): widen the search rather than fail.
                if ef >= len(self):
                    raise
                ef = min(2 * ef, len(self))
        labels = labels.astype(np.int64, copy=False)
        if self.metric == "l2":
            dist = np.sqrt(np.maximum(dist, 0.0))  # hnswlib returns squared L2
        labels, dist = sort_rows(labels, dist.astype(np.float32, copy=False))
        return drop_excluded(labels, dist, exclude, k)

    def save(self, path: str | os.PathLike[str]) -> Path:
        if self._index is None:
            raise InvalidInputError("the HNSW index is empty: nothing to save")
        path = Path(path)
        with self._lock.read():
            atomic_write(path, lambda p: self._index.save_index(str(p)))
            meta = {
                "backend": self.backend,
                "metric": self.metric,
                "dim": self.dim,
                "M": self.M,
                "ef_construction": self.ef_construction,
                "ef": self.ef,  # hnswlib's file does not keep it; load sets it again
                "seed": self.seed,
                "n": len(self),
                "build_seconds": self.build_seconds,
            }
            atomic_write(sidecar_path(path), lambda p: p.write_text(json.dumps(meta)))
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        ef: int | None = None,
        num_threads: int = -1,
        **_: Any,
    ) -> HnswIndex:
        """Read an index written by :meth:`save`; ``ef`` defaults to the one it was saved with."""
        meta = read_sidecar(Path(path), cls.backend)
        ef = int(meta.get("ef", 50)) if ef is None else ef
        index = cls(
            meta["metric"],
            meta["dim"],
            M=meta["M"],
            ef_construction=meta["ef_construction"],
            ef=ef,
            seed=meta.get("seed", 100),
            num_threads=num_threads,
        )
        import hnswlib

        raw = hnswlib.Index(space=index.metric, dim=index.dim)
        raw.load_index(str(path), max_elements=int(meta["n"]))
        raw.set_ef(index.ef)  # not stored in the file
        raw.set_num_threads(num_threads if num_threads > 0 else os.cpu_count() or 1)
        index._index = raw
        index._ef_in_use = index.ef
        index.build_seconds = float(meta.get("build_seconds", 0.0))
        return index

    def stats(self) -> dict[str, Any]:
        n = len(self)
        return {
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim,
            "n": n,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "build_seconds": self.build_seconds,
            # docs/science.md 8.1: vectors plus 2M links on layer 0, plus the upper layers.
            "bytes_estimate": int(
                n * (4 * (self.dim or 0) + 4 * 2 * self.M + 16) * (1 + 1 / self.M)
            ),
        }

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.get_current_count())


# -- choosing a backend ---------------------------------------------------------------------


def make_index(backend: str = "hnsw", metric: str = "cosine", **options: Any) -> NeighbourIndex:
    """A new, empty index of ``backend`` ("hnsw", "exact" or "milvus") for ``metric``.

    ``options`` go to the backend's constructor (for example ``M``, ``ef_construction``
    and ``ef`` for HNSW, ``uri`` for Milvus).
    """
    if backend == "hnsw":
        return HnswIndex(metric, **options)
    if backend == "exact":
        return ExactIndex(metric, **options)
    if backend == "milvus":
        from embscope.core.index_milvus import MilvusIndex

        return MilvusIndex(metric, **options)
    raise InvalidInputError(f"unknown index backend {backend!r}: use one of {', '.join(BACKENDS)}")


def load_index(backend: str, path: str | os.PathLike[str], **options: Any) -> NeighbourIndex:
    """Load an index of ``backend`` saved at ``path``."""
    if backend == "hnsw":
        return HnswIndex.load(path, **options)
    if backend == "exact":
        return ExactIndex.load(path, **options)
    if backend == "milvus":
        from embscope.core.index_milvus import MilvusIndex

        return MilvusIndex.load(path, **options)
    raise InvalidInputError(f"unknown index backend {backend!r}: use one of {', '.join(BACKENDS)}")
