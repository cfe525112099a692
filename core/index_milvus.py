"""Milvus, the scale-out :class:`~core.index.NeighbourIndex` backend, through pymilvus.

One class, :class:`MilvusIndex`, configured by a URI:

* a local path ending in ``.db`` (``/data/embscope/milvus.db``) runs **Milvus Lite**
  in-process: pymilvus starts a gRPC server on a free loopback port for that path, shared by
  every index of the process that uses the same path and stopped when the last one closes.
  A Milvus Lite database is used by one process at a time.
* ``http://host:19530`` (or ``https://``) reaches a Milvus server or cluster.

(The connections themselves: :mod:`core.milvus_client`.)

The vectors live in a Milvus collection (an INT64 primary key ``id`` holding the label and a
FLOAT_VECTOR field ``vector``); :meth:`MilvusIndex.save` writes only a small JSON
description (uri, collection, metric, dim, n, parameters) from which :meth:`MilvusIndex.load`
reconnects. Credentials are never written: pass ``token`` again to ``load``.

Distances follow the protocol (smaller is nearer, true distances), converted from Milvus
scores, which were checked against :class:`~core.index.ExactIndex` for every index type:

========  ==========================  =====================
metric    Milvus metric and score      distance returned
========  ==========================  =====================
cosine    COSINE: cosine similarity    ``1 - score``
l2        L2: *squared* Euclidean      ``sqrt(score)``
ip        IP: inner product            ``1 - score``
========  ==========================  =====================

Collections are created with Strong consistency, so a query sees every row written before
it; a build flushes once at its end (Milvus rate-limits flushes, so add() does not). Milvus,
Lite included, builds its index in the background, so recall right after a build can differ
from recall later on (:meth:`MilvusIndex.wait_for_index` waits for it). A filtered query
(``query(..., among=labels)``) is filtered by Milvus itself. Every request has a timeout, and
a Milvus that fails or stops answering raises InvalidInputError naming it.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index_base import (
    ReadWriteLock,
    atomic_write,
    check_exclude,
    drop_excluded,
    new_labels,
    read_sidecar,
    sidecar_path,
    sort_rows,
)
from embscope.core.milvus_client import (
    check_collection,
    disconnect,
    drop_collections,
    error_text,
    is_milvus_failure,
    open_client,
    public_uri,
    resolve_uri,
)
from embscope.core.progress import ProgressFn
from embscope.core.validation import check_int, check_k, check_metric, check_vectors

__all__ = ["INDEX_TYPES", "MAX_FILTER_IDS", "MilvusIndex", "drop_collections"]

# FLAT is exact; HNSW and IVF_FLAT are approximate; AUTOINDEX lets the server choose
# (HNSW in Milvus Lite). All four work in Milvus Lite 3.x (HNSW and IVF_FLAT through
# faiss-cpu, a dependency of milvus-lite) and in Milvus 2.x servers.
INDEX_TYPES = ("HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX")
_MILVUS_METRIC = {"cosine": "COSINE", "l2": "L2", "ip": "IP"}
_PK, _VECTOR = "id", "vector"
# Milvus answers at most 16384 results per query vector and 16384 vectors per request.
_MAX_TOPK = 16_384
_QUERY_ROWS = 1_024
_MAX_EF = 32_768
# Rows per insert request: ~16 MB of vectors keeps far below gRPC message limits.
_INSERT_BYTES = 16 * 2**20
_INSERT_MAX_ROWS = 10_000
_GET_IDS = 1_000
# A filtered query names its labels in one expression (``id in [...]``, or ``id not in`` the
# others when that is shorter); Milvus Lite parses ~7 us per label (0.35 s for 50,000).
MAX_FILTER_IDS = 50_000
# Requests that may take long on a big collection (flush, load, index) still end.
_LONG_TIMEOUT = 3_600.0


def default_collection_name(metric: str) -> str:
    """A fresh collection name, ``embscope_<metric>_<12 hex digits>``.

    Random rather than derived from the data, so that two indexes can never overwrite each
    other's collection; it is fixed for the life of the index and saved with it.
    """
    return f"embscope_{metric}_{uuid.uuid4().hex[:12]}"


# -- the index ------------------------------------------------------------------------------


class MilvusIndex:
    """Neighbour search in a Milvus collection: Milvus Lite in-process, or a Milvus server.

    Parameters
    ----------
    metric : {"cosine", "l2", "ip"}
    dim : int, optional
        Set by :meth:`build` when not given.
    uri : str or path
        A local path ending in ``.db`` (Milvus Lite, in-process; relative paths are resolved
        against the working directory once, here) or ``http(s)://host:port`` (a server).
    collection : str, optional
        Collection name; default :func:`default_collection_name`. An existing collection of
        that name is adopted if it has this backend's schema and metric.
    index_type : {"HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX"}
    M, ef_construction : int
        HNSW graph degree and build-time candidate list size.
    ef : int
        HNSW search-time candidate list size (at least the number of neighbours asked for
        is used). Not stored by Milvus; saved in the description and set again on load.
    nlist, nprobe : int
        IVF_FLAT cells and cells searched per query.
    token : str, optional
        ``"user:password"`` or an API key, for servers with authentication. Never saved.
    connect_timeout : float
        Seconds to wait for a server before giving up with InvalidInputError.
    request_timeout : float
        Seconds one search, insert or lookup may take (flush, load and index builds get an
        hour); a server that stops answering (or goes away) then gives InvalidInputError
        naming it, never a hang.

    Notes
    -----
    Thread-safe: queries from many threads run concurrently over one gRPC channel (gRPC
    channels are thread-safe; measured with 8 threads); :meth:`build`, :meth:`add` and
    :meth:`close` wait for running queries and run alone. Call :meth:`close` (or use the
    index as a context manager) to close the connection; an index that is garbage-collected
    is closed too.
    """

    backend = "milvus"

    def __init__(
        self,
        metric: str = "cosine",
        dim: int | None = None,
        *,
        uri: str | os.PathLike[str] | None = None,
        collection: str | None = None,
        index_type: str = "HNSW",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 50,
        nlist: int = 128,
        nprobe: int = 16,
        token: str | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
    ):
        self.metric = check_metric(metric)
        self.dim = None if dim is None else check_int(dim, "dim", low=1)
        kind = index_type.upper() if isinstance(index_type, str) else index_type
        if kind not in INDEX_TYPES:
            raise InvalidInputError(
                f"unknown Milvus index_type {index_type!r}: use one of {', '.join(INDEX_TYPES)}"
            )
        self.index_type = str(kind)
        self.M = check_int(M, "M", low=2)
        self.ef_construction = check_int(ef_construction, "ef_construction", low=1)
        self.ef = check_int(ef, "ef", low=1)
        self.nlist = check_int(nlist, "nlist", low=1)
        self.nprobe = check_int(nprobe, "nprobe", low=1)
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("request_timeout", request_timeout),
        ):
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and 0 < value < math.inf
            ):
                raise InvalidInputError(
                    f"{name} must be a positive number of seconds, got {value!r}"
                )
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.collection = (
            default_collection_name(self.metric)
            if collection is None
            else check_collection(collection)
        )
        self.uri, self._local_path = resolve_uri(uri)
        self._token = token
        self._lock = ReadWriteLock()
        self._n = 0
        self._next_label: int | None = 0
        self.build_seconds = 0.0
        self.server_version = ""
        self._exists = False
        self._client: Any = None
        self._client = self._connect()
        self._finalizer = weakref.finalize(self, disconnect, self._client, self._local_path)
        try:
            with self._failures("open the collection"):
                self._adopt_existing()
        except BaseException:
            self.close()
            raise

    # -- connection -------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True when the index runs Milvus Lite in this process."""
        return self._local_path is not None

    def _connect(self) -> Any:
        client, self.server_version = open_client(
            self.uri, self._local_path, self._token, self.connect_timeout
        )
        return client

    def _live(self) -> Any:
        if self._client is None:
            raise InvalidInputError(
                f"the Milvus index on {self.collection} is closed: load it again to use it"
            )
        return self._client

    @contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """pymilvus and gRPC errors (Milvus down, refusing, or not answering in time) raised
        as InvalidInputError naming the server and what was being done."""
        try:
            yield
        except Exception as exc:
            if not is_milvus_failure(exc):
                raise
            raise InvalidInputError(
                f"Milvus at {public_uri(self.uri)} failed to {what} in collection "
                f"{self.collection}: {error_text(exc)} (is the server still running? requests "
                f"wait at most request_timeout = {self.request_timeout:g} s)"
            ) from exc

    def close(self) -> None:
        """Close the connection (and Milvus Lite's server, if no other index uses it).

        Waits for running queries. Data stays in Milvus; closing twice is harmless.
        """
        with self._lock.write():
            if self._client is None:
                return
            self._client = None
            self._finalizer()

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drop(self) -> None:
        """Delete the collection (the index's data) from Milvus; the index is left empty."""
        with self._lock.write(), self._failures("drop the collection"):
            client = self._live()
            if client.has_collection(self.collection, timeout=self.request_timeout):
                client.drop_collection(self.collection, timeout=self.request_timeout)
            self._exists, self._n, self._next_label = False, 0, 0

    # -- collections ------------------------------------------------------------------------

    def _milvus_metric(self) -> str:
        return _MILVUS_METRIC[self.metric]

    def _build_params(self) -> dict[str, Any]:
        if self.index_type == "HNSW":
            return {"M": self.M, "efConstruction": self.ef_construction}
        if self.index_type == "IVF_FLAT":
            return {"nlist": self.nlist}
        return {}

    def _search_params(self, want: int, ef: int, exhaustive: bool = False) -> dict[str, Any]:
        if self.index_type == "HNSW":
            ef = max(ef, want)
            if exhaustive:
                ef = max(ef, self._n)
            return {"ef": min(ef, _MAX_EF)}
        if self.index_type == "IVF_FLAT":
            return {"nprobe": self.nlist if exhaustive else min(self.nprobe, self.nlist)}
        return {}

    def _create_collection(self, client: Any, name: str, dim: int) -> None:
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_PK, DataType.INT64, is_primary=True)
        schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=dim)
        client.create_collection(
            name, schema=schema, consistency_level="Strong", timeout=self.request_timeout
        )
        try:
            params = client.prepare_index_params()
            params.add_index(
                field_name=_VECTOR,
                index_name=_VECTOR,
                index_type=self.index_type,
                metric_type=self._milvus_metric(),
                params=self._build_params(),
            )
            if self.server_version.startswith("milvus_lite"):
                params = _lite_index_params(params)
            # sync=False: pymilvus would otherwise poll the (empty) index's state with
            # half-second sleeps; loading below waits for what matters.
            client.create_index(name, params, sync=False, timeout=self.request_timeout)
            client.load_collection(name, timeout=_LONG_TIMEOUT)
        except Exception as exc:
            _drop_quietly(client, name)
            raise InvalidInputError(
                f"Milvus at {public_uri(self.uri)} refused a {self.index_type} index with "
                f"metric {self._milvus_metric()}: {error_text(exc)} "
                f"(index_type can be one of {', '.join(INDEX_TYPES)})"
            ) from exc

    def _insert(
        self,
        client: Any,
        name: str,
        X: np.ndarray,
        labels: np.ndarray,
        progress: ProgressFn | None,
    ) -> None:
        n, d = X.shape
        rows = max(1, min(_INSERT_MAX_ROWS, _INSERT_BYTES // (4 * d + 8)))
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            batch = [
                {_PK: int(label), _VECTOR: vector}
                for label, vector in zip(labels[start:stop], X[start:stop], strict=True)
            ]
            client.insert(name, batch, timeout=self.request_timeout)
            if progress is not None and progress(
                stop / n, f"building the Milvus index: {stop:,} of {n:,} items"
            ):
                raise OperationCancelled("building the Milvus index was cancelled")

    def _adopt_existing(self) -> None:
        """Read size and dimension of an existing collection of this name; check it fits."""
        client = self._live()
        wait = self.request_timeout
        if not client.has_collection(self.collection, timeout=wait):
            return
        where = f"collection {self.collection!r} at {public_uri(self.uri)}"
        info = client.describe_collection(self.collection, timeout=wait)
        fields = {f.get("name"): f for f in info.get("fields", [])}
        vec = fields.get(_VECTOR)
        if _PK not in fields or vec is None or not fields[_PK].get("is_primary"):
            raise InvalidInputError(
                f"{where} was not made by embscope (it needs an INT64 primary key {_PK!r} and a "
                f"float vector field {_VECTOR!r}): choose another collection name"
            )
        dim = int(vec.get("params", {}).get("dim", 0))
        if self.dim is not None and dim != self.dim:
            raise InvalidInputError(
                f"{where} holds {dim}-dimensional vectors, not {self.dim}-dimensional ones"
            )
        described: dict[str, Any] = {}
        if _VECTOR in (client.list_indexes(self.collection, timeout=wait) or []):
            described = dict(client.describe_index(self.collection, _VECTOR, timeout=wait) or {})
        metric = str(described.get("metric_type") or "").upper()
        if metric and metric != self._milvus_metric():
            raise InvalidInputError(
                f"{where} is indexed for metric {metric}, not {self._milvus_metric()} "
                f"({self.metric}): choose another collection name or the matching metric"
            )
        # What the collection really has wins over what this object was told.
        kind = str(described.get("index_type") or "").upper()
        if kind in INDEX_TYPES:
            self.index_type = kind
        built = described.get("params")
        built = built if isinstance(built, dict) else described
        for key, attr in (("M", "M"), ("efConstruction", "ef_construction"), ("nlist", "nlist")):
            try:
                setattr(self, attr, int(built[key]))
            except (KeyError, TypeError, ValueError):
                pass
        client.load_collection(self.collection, timeout=_LONG_TIMEOUT)
        rows = client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong",
            timeout=wait,
        )  # fmt: skip
        self._n = int(rows[0]["count(*)"]) if rows else 0
        self.dim = dim
        self._next_label = None if self._n else 0  # found on the first add() that needs it
        self._exists = True

    def _scan_next_label(self, client: Any) -> int:
        top = -1
        iterator = client.query_iterator(
            self.collection, batch_size=10_000, filter="", output_fields=[_PK],
            timeout=self.request_timeout,
        )  # fmt: skip
        try:
            while rows := iterator.next():
                top = max(top, max(int(r[_PK]) for r in rows))
        finally:
            iterator.close()
        return top + 1

    def _labels_present(self, client: Any, labels: np.ndarray) -> np.ndarray:
        found: list[int] = []
        for start in range(0, labels.size, _GET_IDS):
            chunk = [int(x) for x in labels[start : start + _GET_IDS]]
            got = client.get(
                self.collection, ids=chunk, output_fields=[_PK], timeout=self.request_timeout
            )
            found += [int(r[_PK]) for r in got]
        return np.asarray(sorted(found), dtype=np.int64)

    # -- the protocol -----------------------------------------------------------------------

    def build(self, X: np.ndarray, *, progress: ProgressFn | None = None) -> MilvusIndex:
        """Index the rows of ``X`` (labels 0..n-1), replacing the collection's content.

        When the collection exists, the rows go into a staging collection first, which then
        replaces it; a failed or cancelled build (``progress`` returned True:
        OperationCancelled) leaves the previous content as it was. A first build writes the
        collection itself, and drops it if it fails.
        """
        X = check_vectors(X)
        n, d = X.shape
        t0 = time.perf_counter()
        with self._lock.write(), self._failures("build the index"):
            client = self._live()
            replacing = client.has_collection(self.collection, timeout=self.request_timeout)
            # With nothing to keep, the rows go straight into the collection: no rename after
            # the flush (Milvus Lite's rename of a 1M x 384 collection failed on the server:
            # a KeyError in its collection table, after a retried request).
            target = (
                f"{self.collection}_build_{uuid.uuid4().hex[:8]}" if replacing else self.collection
            )
            self._create_collection(client, target, d)
            try:
                self._insert(client, target, X, np.arange(n, dtype=np.int64), progress)
                client.flush(target, timeout=_LONG_TIMEOUT)
            except BaseException:
                _drop_quietly(client, target)
                raise
            if replacing:
                # After a large flush the server may take minutes to answer DDL (Milvus Lite:
                # the rename after 1M x 384 rows passed 60 s): these wait as long as the flush.
                client.drop_collection(self.collection, timeout=_LONG_TIMEOUT)
                client.rename_collection(target, self.collection, timeout=_LONG_TIMEOUT)
            # a new or renamed collection must be loaded
            client.load_collection(self.collection, timeout=_LONG_TIMEOUT)
            self.dim, self._n, self._next_label, self._exists = d, n, n, True
        self.build_seconds = time.perf_counter() - t0
        return self

    def add(self, X: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add rows; labels default to the next row numbers and must not be in the index."""
        X = check_vectors(X, dim=self.dim)
        m = X.shape[0]
        if labels is not None:
            # Shape, type, sign and uniqueness here; presence in Milvus below.
            labels = new_labels(labels, m, np.empty(0, dtype=np.int64))
        with self._lock.write(), self._failures("add rows"):
            client = self._live()
            if not self._exists:
                self._create_collection(client, self.collection, X.shape[1])
                self.dim, self._n, self._next_label, self._exists = X.shape[1], 0, 0, True
            if labels is None:
                if self._next_label is None:
                    self._next_label = self._scan_next_label(client)
                labels = np.arange(self._next_label, self._next_label + m, dtype=np.int64)
            else:
                present = self._labels_present(client, labels)
                if present.size:
                    raise InvalidInputError(
                        "labels must be unique and not already in the index "
                        f"({present.size} already are, e.g. {present[:5].tolist()})"
                    )
            # No flush: the collection's Strong consistency already shows the rows to every
            # later query, and Milvus 2.4+ allows one flush per collection per 10 s by default.
            self._insert(client, self.collection, X, labels, None)
            self._n += m
            top = int(labels.max()) + 1
            if self._next_label is not None:
                self._next_label = max(self._next_label, top)

    def query(
        self,
        Q: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        ef: int | None = None,
        among: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64[m, k], true distances float32[m, k]), rows sorted by (distance, label).

        ``ef`` (HNSW only) overrides the search-time candidate list for this call.
        ``among`` (labels): only these may be answers. Milvus filters the search with one
        ``id in [...]`` expression, or ``id not in`` the other labels when that is shorter
        (at most :data:`MAX_FILTER_IDS` labels either way). A row Milvus cannot fill (fewer
        labels match, or an approximate index found fewer even searching exhaustively) ends
        in label -1 at distance inf.
        """
        Q = check_vectors(Q, dim=self.dim, name="query vectors")
        exclude = check_exclude(exclude, Q.shape[0])
        ef = self.ef if ef is None else check_int(ef, "ef", low=1)
        with self._lock.read(), self._failures("search"):
            client = self._live()
            if self._n == 0:
                raise InvalidInputError("the Milvus index is empty: build it first")
            extra = 0 if exclude is None else 1
            k = check_k(k, self._n - extra)
            want = k + extra
            if want > _MAX_TOPK:
                raise InvalidInputError(
                    f"Milvus answers at most {_MAX_TOPK} neighbours per query; k = {k} is too large"
                )
            expr = None if among is None else self._among_filter(among)
            if expr is None and among is not None:  # no label matches
                labels = np.full((Q.shape[0], want), -1, dtype=np.int64)
                scores = np.full(labels.shape, np.nan)
            else:
                labels, scores = self._search(client, Q, want, ef, expr or "")
        if self.metric == "l2":
            dist = np.sqrt(np.maximum(scores, 0.0))  # Milvus returns squared L2
        else:
            dist = 1.0 - scores  # COSINE and IP return similarities
        dist[labels < 0] = np.inf
        labels, dist = sort_rows(labels, dist.astype(np.float32))
        return drop_excluded(labels, dist, exclude, k)

    def _among_filter(self, among: Any) -> str | None:
        """The filter expression keeping only the labels ``among`` ("" keeps every row; None:
        no label of the index is among them)."""
        labels = np.unique(np.asarray(among).ravel())
        if labels.size and (labels.dtype.kind not in "iu" or labels[0] < 0):
            raise InvalidInputError("among must hold labels: whole numbers >= 0")
        outside = None
        if self._next_label == self._n:  # the labels are 0..n-1 (a build, then adds)
            labels = labels[labels < self._n]
            if 2 * labels.size > self._n:
                outside = np.setdiff1d(np.arange(self._n), labels, assume_unique=True)
        named = labels if outside is None else outside
        if named.size > MAX_FILTER_IDS:
            raise InvalidInputError(
                f"a filter naming {named.size:,} labels is too long for one Milvus expression "
                f"(at most {MAX_FILTER_IDS:,})"
            )
        if outside is not None:
            return f"{_PK} not in {outside.tolist()}" if outside.size else ""
        return f"{_PK} in {labels.tolist()}" if labels.size else None

    def _search(
        self, client: Any, Q: np.ndarray, want: int, ef: int, expr: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        m = Q.shape[0]
        labels = np.empty((m, want), dtype=np.int64)
        scores = np.empty((m, want), dtype=np.float64)
        short: list[int] = []
        for start in range(0, m, _QUERY_ROWS):
            stop = min(start + _QUERY_ROWS, m)
            hits = self._search_rows(client, Q[start:stop], want, ef, expr, exhaustive=False)
            for r, (ids, dists) in enumerate(hits, start=start):
                if len(ids) < want:
                    short.append(r)
                else:
                    labels[r], scores[r] = ids[:want], dists[:want]
        if short:
            # An approximate index may come back short (small or badly connected graphs, or
            # a selective filter): ask again for those rows, searching as widely as it allows.
            rows = np.asarray(short)
            again = self._search_rows(client, Q[rows], want, ef, expr, exhaustive=True)
            for r, (ids, dists) in zip(rows, again, strict=True):
                got = min(len(ids), want)
                if got < want and not expr:
                    raise RuntimeError(
                        f"Milvus returned {len(ids)} of the {want} neighbours asked for query "
                        f"row {r} from {self._n} items in {self.collection}"
                    )
                labels[r], scores[r] = -1, np.nan
                labels[r, :got], scores[r, :got] = ids[:got], dists[:got]
        return labels, scores

    def _search_rows(
        self, client: Any, Q: np.ndarray, want: int, ef: int, expr: str, *, exhaustive: bool
    ) -> list[tuple[list[int], list[float]]]:
        result = client.search(
            self.collection,
            data=Q,
            filter=expr,
            limit=want,
            anns_field=_VECTOR,
            search_params={
                "metric_type": self._milvus_metric(),
                "params": self._search_params(want, ef, exhaustive),
            },
            output_fields=[_PK],
            consistency_level="Strong",
            timeout=self.request_timeout,
        )
        out = []
        for hits in result:
            ids = getattr(hits, "ids", None)
            dists = getattr(hits, "distances", None)
            if ids is None or dists is None:
                ids = [h["id"] for h in hits]
                dists = [h["distance"] for h in hits]
            out.append((list(ids), list(dists)))
        return out

    def wait_for_index(self, timeout: float = 600.0) -> None:
        """Wait until Milvus has indexed every row. A server builds its index in the
        background and meanwhile scans the rows not yet indexed exactly, which would flatter
        a recall measurement (Milvus Lite indexes at once)."""
        deadline = time.monotonic() + timeout
        with self._lock.read(), self._failures("describe the index"):
            client = self._live()
            while True:
                info = (
                    client.describe_index(self.collection, _VECTOR, timeout=self.request_timeout)
                    or {}
                )
                if str(info.get("state", "")) == "Failed":
                    raise InvalidInputError(
                        f"Milvus could not index {self.collection}: {info.get('fail_reason')}"
                    )
                total = int(info.get("total_rows", 0) or 0)
                if (
                    int(info.get("pending_index_rows", 0) or 0) == 0
                    and int(info.get("indexed_rows", total) or 0) >= total
                ):
                    return
                if time.monotonic() > deadline:
                    raise InvalidInputError(
                        f"Milvus had not indexed {self.collection} after {timeout:g} s "
                        f"({info.get('indexed_rows')} of {total} rows)"
                    )
                time.sleep(0.2)

    def _description(self, path: Path) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim,
            "n": self._n,
            "next_label": self._next_label,
            "uri": public_uri(self.uri),
            "collection": self.collection,
            "index_type": self.index_type,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "build_seconds": self.build_seconds,
        }
        if self._local_path is not None:
            # Lets load() find the database when it moved together with the description.
            try:
                meta["local_relative"] = os.path.relpath(
                    self._local_path, os.path.abspath(path.parent)
                )
            except ValueError:  # another drive (Windows): only the absolute path is kept
                pass
        return meta

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index's description to ``path`` (and the same JSON to ``path.json``).

        The vectors themselves stay in Milvus, which keeps inserted rows durable (its log)
        whether or not they have been flushed into sealed segments yet.
        """
        path = Path(path)
        with self._lock.read():
            self._live()
            if not self._exists or self._n == 0:
                raise InvalidInputError("the Milvus index is empty: nothing to save")
            text = json.dumps(self._description(path), indent=2)
            atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
            atomic_write(sidecar_path(path), lambda p: p.write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        uri: str | os.PathLike[str] | None = None,
        token: str | None = None,
        ef: int | None = None,
        nprobe: int | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
        **_: Any,
    ) -> MilvusIndex:
        """Reconnect to the collection described at ``path`` (written by :meth:`save`).

        ``uri`` points elsewhere (a moved database, another address of the same server);
        ``token`` is needed again for servers with authentication; ``ef`` and ``nprobe``
        default to the saved ones.
        """
        path = Path(path)
        meta = read_sidecar(path, cls.backend)
        try:
            saved_uri: str = meta["uri"]  # save() writes the uri as a string
            collection, metric, dim = meta["collection"], meta["metric"], meta["dim"]
        except KeyError as exc:
            raise InvalidInputError(
                f"{path} is an incomplete Milvus description: no {exc}"
            ) from exc
        if uri is None:
            uri = saved_uri
            if "://" not in uri and not os.path.exists(uri) and meta.get("local_relative"):
                moved = os.path.join(os.path.abspath(path.parent), meta["local_relative"])
                if os.path.exists(moved):
                    uri = moved
        target, local = resolve_uri(uri)
        if local is not None and not os.path.exists(local):
            # pymilvus would silently create an empty database there.
            raise InvalidInputError(
                f"the Milvus Lite database {local} of the index at {path} does not exist: "
                "pass uri= to say where it is now, or build the index again"
            )
        index = cls(
            metric,
            dim,
            uri=target,
            collection=collection,
            index_type=meta.get("index_type", "HNSW"),
            M=meta.get("M", 16),
            ef_construction=meta.get("ef_construction", 200),
            ef=meta.get("ef", 50) if ef is None else ef,
            nlist=meta.get("nlist", 128),
            nprobe=meta.get("nprobe", 16) if nprobe is None else nprobe,
            token=token,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
        )
        if not index._exists:
            index.close()
            raise InvalidInputError(
                f"the Milvus collection {collection!r} of the index at {path} is gone from "
                f"{public_uri(target)}: build the index again"
            )
        if index._n == meta.get("n") and meta.get("next_label") is not None:
            index._next_label = int(meta["next_label"])
        index.build_seconds = float(meta.get("build_seconds", 0.0))
        return index

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim,
            "n": self._n,
            "uri": public_uri(self.uri),
            "local": self.is_local,
            "collection": self.collection,
            "index_type": self.index_type,
            "milvus_metric": self._milvus_metric(),
            "build_params": self._build_params(),
            "ef": self.ef,
            "nprobe": self.nprobe,
            "build_seconds": self.build_seconds,
            "server_version": self.server_version,
            "closed": self._client is None,
        }

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"MilvusIndex({self.metric!r}, dim={self.dim}, uri={public_uri(self.uri)!r}, "
            f"collection={self.collection!r}, index_type={self.index_type!r}, n={self._n})"
        )


def _lite_index_params(params: Any) -> Any:
    """``params`` with the build parameters also sent as one JSON ``params`` entry.

    pymilvus 3 sends build parameters (M, efConstruction, nlist) as separate key-value pairs,
    which Milvus servers read but Milvus Lite 3.x's gRPC adapter ignores: it reads only the
    older ``params`` JSON entry, and would silently build with its own defaults.
    """
    from pymilvus.milvus_client.index import IndexParam, IndexParams

    class _WithJsonParams(IndexParam):  # type: ignore[misc]  # pymilvus is untyped: IndexParam is Any
        def __init__(self, base: Any, build: dict[str, Any]):
            super().__init__(base.field_name, base.index_type, base.index_name)
            self._base, self._build = base, build

        def get_index_configs(self) -> dict[str, Any]:
            configs = dict(self._base.get_index_configs())
            if self._build:
                configs["params"] = dict(self._build)
            return configs

    out = IndexParams()
    for p in params:
        configs = p.get_index_configs()
        build = {k: v for k, v in configs.items() if k not in ("index_type", "metric_type")}
        out.append(_WithJsonParams(p, build))
    return out


def _drop_quietly(client: Any, name: str) -> None:
    try:
        if client.has_collection(name):
            client.drop_collection(name)
    except Exception:  # noqa: BLE001 - cleaning up after an error that is being raised
        pass
