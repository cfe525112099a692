"""Live nearest-neighbour queries over a stored dataset: the index, the exact answer, recall.

:class:`NeighbourService` ties the store to the index backends. Per (dataset, metric,
backend, parameters) an index is built once, saved beside the database under its
fingerprint (``<db>.indexes/<fingerprint>.hnsw``), recorded as an ``index`` artifact and
kept loaded in the process, so every session and every query shares it. Queries name the
item by row, id, vector or text; the item itself is never among its own neighbours.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.artifacts import (
    TRANSIENT,
    ArtifactSpec,
    fingerprint,
    get_or_compute,
    load,
    stored,
)
from embscope.core.errors import InvalidInputError
from embscope.core.graph import GraphHeads, PointNeighbours, get_or_build_graph, recall_at_k
from embscope.core.hubness_reduction import (
    HubStats,
    check_method,
    hub_stats,
    pool_size,
    query_stats,
    rerank,
    resolve_neighbours,
)
from embscope.core.index import (
    BACKENDS,
    ExactIndex,
    HnswIndex,
    exact_knn,
    load_index,
    make_index,
)
from embscope.core.index_base import NeighbourIndex
from embscope.core.index_milvus import MAX_FILTER_IDS, MilvusIndex, drop_collections
from embscope.core.milvus_client import public_uri
from embscope.core.progress import ProgressFn
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import (
    Metric,
    check_int,
    check_k,
    check_metric,
    check_vectors,
    prepare_for_metric,
)

if TYPE_CHECKING:  # imported when the first text query runs
    from embscope.core.metric_change import MetricChange
    from embscope.core.text_model import TextEncoder

__all__ = [
    "DEFAULT_EF",
    "DEFAULT_HNSW",
    "Neighbours",
    "NeighbourService",
    "QueryComparison",
]

DEFAULT_EF = 50
# The widest search beam a query may ask for (the diagnostics' bound too).
MAX_SEARCH_EF = 4_096
# Filtered search: when at most this share of the rows match (or FILTER_EXACT_MIN rows), the
# answer is exact over the matching rows (selective filters defeat an index: its nearest are
# mostly filtered out); above, the index is asked for more until k matching rows come back.
FILTER_EXACT_SHARE = 0.05
FILTER_EXACT_MIN = 20_000
# Filters whose matching rows (and their prepared vectors) are kept per process.
FILTER_CACHE = 8
# The most neighbours the index is asked for under a filter before exact search takes over.
FILTER_INDEX_MAX = 16_384
# hnswlib's own defaults: a good index for interactive search (recall@10 >= 0.95 at ef 50
# on 100k x 384 sentence-like data, bench_neighbours.py).
DEFAULT_HNSW: Mapping[str, int] = {"M": 16, "ef_construction": 200}
INDEX_CODE_VERSION = 1
INDEX_KIND = "index"

log = logging.getLogger(__name__)


def milvus_collection(index_fingerprint: str) -> str:
    """The Milvus collection of the index with this fingerprint."""
    return f"embscope_{index_fingerprint[:24]}"


@dataclass(frozen=True)
class Neighbours:
    """The answer to one query.

    Attributes
    ----------
    rows : int64 ndarray of shape (k,)
        Row numbers of the neighbours, nearest first.
    ids : object ndarray of shape (k,)
        Their ids (str).
    distances : float32 ndarray of shape (k,)
        True metric distances.
    latency_ms : float
        Wall time of the search through embscope's query path, in milliseconds.
    backend : str
        ``"hnsw"``, ``"exact"`` or ``"milvus"``.
    filtered : int or None
        Items matching the filter, when one was given.
    scores : float64 ndarray of shape (k,) or None
        With a hubness reduction: the reduced score that ordered the rows (higher is
        nearer; :mod:`core.hubness_reduction`). ``distances`` stay the true distances.
    hubness_reduction : str or None
        The reduction used (``"csls"``, ``"mp"``), None without one.
    """

    rows: np.ndarray
    ids: np.ndarray
    distances: np.ndarray
    latency_ms: float
    backend: str
    filtered: int | None = None
    scores: np.ndarray | None = None
    hubness_reduction: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``neighbours --json`` object."""
        items: list[dict[str, Any]] = [
            {"row": int(r), "id": str(i), "distance": float(d)}
            for r, i, d in zip(self.rows, self.ids, self.distances, strict=True)
        ]
        if self.scores is not None:
            for item, score in zip(items, self.scores, strict=True):
                item["score"] = float(score)
        out: dict[str, Any] = {
            "neighbours": items,
            "latency_ms": float(self.latency_ms),
            "backend": self.backend,
        }
        if self.filtered is not None:
            out["filtered"] = int(self.filtered)
        if self.hubness_reduction is not None:
            out["hubness_reduction"] = self.hubness_reduction
        return out


@dataclass(frozen=True)
class QueryComparison:
    """An approximate answer, the exact one, and recall@k of the first against the second."""

    approximate: Neighbours
    exact: Neighbours
    recall: float  # NaN when the exact answer is empty (a filter nothing matches)


@dataclass(frozen=True)
class Query:
    """A resolved query: the vector searched for and the row to leave out (its own)."""

    vector: np.ndarray  # float32 (1, d)
    exclude_row: int | None
    description: str


class NeighbourService:
    """Indexes and queries for the datasets of one store; safe to share between threads.

    Parameters
    ----------
    store : Store
    index_dir : path, optional
        Where index files live (default: ``<database>.indexes`` beside the database file).
    milvus_uri : str, optional
        The Milvus backend's URI (default ``$EMBSCOPE_MILVUS_URI``, else a Milvus Lite file
        ``<database>.milvus.db`` beside the database); a query or index may name another
        with ``uri=``.
    milvus_token : str, optional
        ``"user:password"`` or an API key for a Milvus server with authentication (default
        ``$EMBSCOPE_MILVUS_TOKEN``); never stored.
    """

    def __init__(
        self,
        store: Store,
        *,
        index_dir: str | os.PathLike[str] | None = None,
        milvus_uri: str | None = None,
        milvus_token: str | None = None,
    ):
        self.store = store
        if index_dir is None:
            if str(store.path) == ":memory:":
                index_dir = tempfile.mkdtemp(prefix="embscope-indexes-")
                # An in-memory database keeps nothing; neither do its index files.
                weakref.finalize(self, shutil.rmtree, index_dir, ignore_errors=True)
            else:
                index_dir = store.path.with_name(store.path.name + ".indexes")
        self.index_dir = Path(index_dir)
        default_milvus = (
            self.index_dir / "milvus.db"
            if str(store.path) == ":memory:"
            else store.path.with_name(store.path.name + ".milvus.db")
        )
        self.milvus_uri = milvus_uri or os.environ.get("EMBSCOPE_MILVUS_URI") or str(default_milvus)
        self.milvus_token = milvus_token or os.environ.get("EMBSCOPE_MILVUS_TOKEN") or None
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        # Index fingerprints being loaded or built right now: their file may already be
        # saved while their artifact is not yet recorded, and must not be pruned meanwhile.
        self._building: set[str] = set()
        self._indexes: dict[str, NeighbourIndex] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._ids: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        self._encoders: dict[str, TextEncoder] = {}
        self._infos: dict[int, DatasetInfo] = {}
        self._filters: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray | None]] = {}
        self._index_owner: dict[str, int] = {}
        # Per (vectors, metric, K): each row's mean and sd of distances to its K nearest,
        # read once from the shared graph (hubness reduction).
        self._hub_stats: dict[tuple[str, str, int], HubStats] = {}
        self._graph_heads = GraphHeads()  # stored graphs' first k columns (clicked points)

    # -- cached data --------------------------------------------------------------------------

    def dataset(self, dataset_id: int | str) -> DatasetInfo:
        """The dataset's catalog row, cached by id so the query path runs no SQL.

        Safe because ids are never reused and a dataset's vectors never change (its
        fingerprint keys everything cached); :meth:`forget` drops it after a rename or delete.
        """
        if isinstance(dataset_id, (int, np.integer)) and not isinstance(dataset_id, bool):
            info = self._infos.get(int(dataset_id))
            if info is not None:
                return info
        info = self.store.get_dataset(dataset_id)
        self._infos[info.id] = info
        return info

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def vectors(self, dataset_id: int) -> np.ndarray:
        """The dataset's vectors, loaded once per process (read-only array)."""
        info = self.dataset(dataset_id)
        with self._key_lock("vectors:" + info.fingerprint):
            if info.fingerprint not in self._vectors:
                X = self.store.load_vectors(info.id)
                X.setflags(write=False)
                self._vectors[info.fingerprint] = X
            return self._vectors[info.fingerprint]

    def has_vectors(self, dataset_id: int) -> bool:
        """True when the dataset's vectors are loaded in this process."""
        return self.dataset(dataset_id).fingerprint in self._vectors

    def _row_vector(self, info: DatasetInfo, row: int) -> np.ndarray:
        """Row ``row``'s vector (1, d): from the loaded vectors, else read alone from the store
        (a query by row does not load a million vectors beside the index)."""
        X = self._vectors.get(info.fingerprint)
        if X is not None:
            out: np.ndarray = X[row][None, :]
            return out
        return self.store.load_vector_rows(info.id, [row])

    def ids(self, dataset_id: int) -> np.ndarray:
        """The dataset's ids (object array of str), loaded once per process."""
        return self._id_table(self.dataset(dataset_id))[0]

    def _id_table(self, info: DatasetInfo) -> tuple[np.ndarray, dict[str, int]]:
        with self._key_lock("ids:" + info.fingerprint):
            if info.fingerprint not in self._ids:
                ids = self.store.load_ids(info.id)
                self._ids[info.fingerprint] = (ids, {str(v): i for i, v in enumerate(ids)})
            return self._ids[info.fingerprint]

    def row_of_id(self, dataset_id: int, item_id: str) -> int:
        """The row number of the item with this id."""
        info = self.dataset(dataset_id)
        _, lookup = self._id_table(info)
        if str(item_id) not in lookup:
            raise InvalidInputError(
                f"no item with id {item_id!r} in dataset {info.name!r}; ids look like "
                f"{', '.join(repr(str(i)) for i in self._id_table(info)[0][:3])}"
            )
        return lookup[str(item_id)]

    # -- indexes ------------------------------------------------------------------------------

    def _index_params(self, backend: str, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if backend == "hnsw":
            out.update(DEFAULT_HNSW)
            out.update({k: int(v) for k, v in params.items() if k in ("M", "ef_construction")})
            return out
        if backend == "milvus":
            out["uri"] = str(params.get("uri") or self.milvus_uri)
            if public_uri(out["uri"]) != out["uri"]:  # the uri is recorded with the index
                raise InvalidInputError(
                    "give Milvus credentials in $EMBSCOPE_MILVUS_TOKEN (user:password or an API "
                    "key), not in the uri: the uri is recorded with the index"
                )
            kind = str(params.get("index_type") or "HNSW").upper()
            if kind != "HNSW":  # the default is left out, so its key stays as it was
                out["index_type"] = kind
        return out

    def index_fingerprint(
        self, dataset_id: int, *, metric: str, backend: str = "hnsw", **params: Any
    ) -> str:
        """The artifact key of the index of a dataset with these settings."""
        info = self.dataset(dataset_id)
        request = IndexRequest(
            info, check_metric(metric), backend, self._index_params(backend, params)
        )
        return fingerprint(IndexSpec(self), request)

    def has_index(
        self, dataset_id: int, *, metric: str, backend: str = "hnsw", **params: Any
    ) -> bool:
        """True when the index is loaded or saved (a query will not have to build it)."""
        if backend == "exact":
            return True
        fp = self.index_fingerprint(dataset_id, metric=metric, backend=backend, **params)
        return fp in self._indexes or load(self.store, IndexSpec(self), fp) is not None

    def get_index(
        self,
        dataset_id: int,
        *,
        metric: str = "cosine",
        backend: str = "hnsw",
        progress: ProgressFn | None = None,
        **params: Any,
    ) -> NeighbourIndex:
        """The dataset's index for ``metric`` and ``backend``: loaded, read from disk, or built.

        Two callers asking for the same index at once share one build.
        """
        metric = check_metric(metric)
        if backend not in BACKENDS:
            raise InvalidInputError(
                f"unknown index backend {backend!r}: use one of {', '.join(BACKENDS)}"
            )
        if backend == "milvus" and self.store.read_only:
            raise InvalidInputError(
                "the Milvus backend is not available on a read-only server: it would create "
                "collections; use hnsw or exact"
            )
        info = self.dataset(dataset_id)
        chosen = self._index_params(backend, params)
        fp = self.index_fingerprint(info.id, metric=metric, backend=backend, **params)
        if fp in self._indexes:
            return self._indexes[fp]
        with self._key_lock("index:" + fp):
            if fp in self._indexes:
                return self._indexes[fp]
            with self._lock:
                self._building.add(fp)
            try:
                index = self._load_or_build(info, fp, metric, backend, chosen, progress)
                with self._lock:
                    self._indexes[fp] = index
                    self._index_owner[fp] = info.id
            finally:
                with self._lock:
                    self._building.discard(fp)
            return index

    def _load_or_build(
        self,
        info: DatasetInfo,
        fp: str,
        metric: str,
        backend: str,
        chosen: dict[str, Any],
        progress: ProgressFn | None,
    ) -> NeighbourIndex:
        if backend == "exact":
            return ExactIndex(metric).build(self.vectors(info.id))
        spec = IndexSpec(self)
        request = IndexRequest(info, check_metric(metric), backend, chosen)
        path = self.index_dir / f"{fp}.{backend}"
        record = get_or_compute(self.store, spec, request, run=False)
        if record is not None and path.exists():
            try:
                options: dict[str, Any] = {"ef": DEFAULT_EF} if backend == "hnsw" else {}
                if backend == "milvus":
                    options["token"] = self.milvus_token
                index = load_index(backend, path, **options)
                if len(index) == info.n:
                    return index
            except (InvalidInputError, RuntimeError, OSError):
                pass  # a damaged or partial file: build it again below
        built = get_or_compute(self.store, spec, request, progress=progress, recompute=True)
        assert built is not None and built.index is not None
        return built.index

    def forget(self, dataset_id: int | None = None) -> None:
        """Drop what is cached for one dataset (after a rename or delete), or for all; then
        remove index files whose artifact is gone (a deleted dataset's indexes). A dataset is
        deleted with :meth:`delete_dataset`, which also drops its Milvus collections."""
        with self._lock:
            if dataset_id is None:
                self._indexes.clear()
                self._index_owner.clear()
                self._vectors.clear()
                self._ids.clear()
                self._infos.clear()
                self._filters.clear()
                self._hub_stats.clear()
                self._graph_heads.forget()
            else:
                info = self._infos.pop(int(dataset_id), None)
                for fp, owner in list(self._index_owner.items()):
                    if owner == int(dataset_id):
                        self._indexes.pop(fp, None)
                        del self._index_owner[fp]
                if info is not None:
                    self._vectors.pop(info.fingerprint, None)
                    self._ids.pop(info.fingerprint, None)
                    for key in [k for k in self._filters if k[0] == info.fingerprint]:
                        del self._filters[key]
                    for hub in [h for h in self._hub_stats if h[0] == info.fingerprint]:
                        del self._hub_stats[hub]
                    self._graph_heads.forget(info.fingerprint)
        self.prune_files()

    def delete_dataset(self, dataset_id: int | str) -> list[str]:
        """Delete a dataset with everything of it: its tables and artifacts (one transaction,
        :meth:`Store.delete_dataset`), what is cached for it here, its index files, and the
        Milvus collections of its indexes. Returns the collections dropped.

        The collections are found from the dataset's index records before the delete removes
        them, and dropped once it is committed (a refused delete leaves them). One that cannot
        be dropped (Milvus unreachable, a Lite database another process holds) is logged: the
        dataset is gone all the same.
        """
        info = self.store.get_dataset(dataset_id)
        milvus = self._milvus_indexes(info.id)
        self.store.delete_dataset(info.id)
        self.forget(info.id)
        return self._drop_milvus(milvus)

    def change_metric(
        self, dataset_id: int | str, metric: str, *, drop_stale: bool = False
    ) -> MetricChange:
        """:func:`core.metric_change.set_metric` and what this service holds: what is cached
        for the dataset is forgotten (the files of dropped indexes go), and the Milvus
        collections of dropped Milvus indexes are dropped once the change is committed."""
        from embscope.core.metric_change import set_metric, stale_artifacts

        info = self.store.get_dataset(dataset_id)
        stale = set()
        if drop_stale is True:
            stale = {r.fingerprint for r in stale_artifacts(self.store, info.id, info.metric)}
        milvus = [(uri, fp) for uri, fp in self._milvus_indexes(info.id) if fp in stale]
        change = set_metric(self.store, info.id, metric, drop_stale=drop_stale)
        self.forget(info.id)
        if change.dropped:
            self._drop_milvus(milvus)
        return change

    def _milvus_indexes(self, dataset_id: int) -> list[tuple[str, str]]:
        """(uri, fingerprint) of the dataset's stored Milvus index records."""
        return [
            (str(r.request.get("uri") or self.milvus_uri), r.fingerprint)
            for r in stored(self.store, IndexSpec(self), dataset_id)
            if r.request.get("backend") == "milvus"
        ]

    def _drop_milvus(self, indexes: list[tuple[str, str]]) -> list[str]:
        """Drop the collections of these (uri, index fingerprint) pairs, except those still in
        use: an index of the same vectors that another dataset has loaded, is building or has
        recorded keeps its collection."""
        if not indexes:
            return []
        with self._lock:
            in_use = set(self._indexes) | self._building
        in_use |= {r.fingerprint for r in stored(self.store, IndexSpec(self))}
        by_uri: dict[str, list[str]] = {}
        for uri, fp in indexes:
            if fp not in in_use:
                by_uri.setdefault(uri, []).append(milvus_collection(fp))
        dropped: list[str] = []
        for uri, names in by_uri.items():
            try:
                dropped += drop_collections(uri, names, token=self.milvus_token)
            except InvalidInputError as exc:
                log.warning("Milvus collections %s were not dropped: %s", ", ".join(names), exc)
        return dropped

    def prune_files(self) -> list[Path]:
        """Delete index files beside the database that no stored artifact refers to."""
        if self.store.read_only or not self.index_dir.is_dir():
            return []
        removed = []
        # Under the lock: an index another thread is building (its file saved, its artifact
        # not yet recorded) is protected, and no build starts until the files are pruned.
        with self._lock:
            protected = set(self._indexes) | self._building
            known = {r.fingerprint for r in stored(self.store, IndexSpec(self))}
            for path in self.index_dir.iterdir():
                if _orphaned_temp_file(path):
                    path.unlink(missing_ok=True)
                    removed.append(path)
                    continue
                fp = path.name.split(".", 1)[0]
                if len(fp) == 40 and fp not in known and fp not in protected:
                    if path.is_dir():
                        continue  # Milvus data lives elsewhere; never remove directories here
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    # -- queries ------------------------------------------------------------------------------

    def resolve(
        self,
        dataset_id: int,
        *,
        row: int | None = None,
        item_id: str | None = None,
        vector: Any = None,
        text: str | None = None,
    ) -> Query:
        """Turn exactly one of row / id / vector / text into the vector to search for."""
        given = [
            name
            for name, v in (("row", row), ("id", item_id), ("vector", vector), ("text", text))
            if v is not None
        ]
        if len(given) != 1:
            raise InvalidInputError(
                "give exactly one query: a row, an id, a vector or a text"
                + (f" (got {', '.join(given)})" if given else "")
            )
        info = self.dataset(dataset_id)
        if item_id is not None:
            row = self.row_of_id(info.id, item_id)
        if row is not None:
            if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
                raise InvalidInputError(f"row must be a whole number, got {row!r}")
            if not 0 <= row < info.n:
                raise InvalidInputError(
                    f"row {row} is outside the dataset: rows are 0 to {info.n - 1}"
                )
            ids = self.ids(info.id)
            return Query(
                self._row_vector(info, int(row)), int(row), f"row {row} (id {ids[int(row)]})"
            )
        if text is not None:
            return Query(self.encode_text(info.id, text), None, f"text {text!r}")
        q = check_vectors(vector, dim=info.dim, name="query vector")
        with np.errstate(over="ignore"):
            too_large = not np.isfinite(np.einsum("ij,ij->i", q, q)).all()
        if too_large:
            raise InvalidInputError(
                "the query vector is too large: its squared length overflows 32-bit floats, so "
                "no distance to it can be computed; scale it down"
            )
        if q.shape[0] != 1:
            raise InvalidInputError(f"give one query vector, got {q.shape[0]}")
        return Query(q, None, "vector")

    def text_status(self, dataset_id: int) -> tuple[bool, str]:
        """Whether text queries can run for this dataset, and why not."""
        from embscope.core.text_model import text_model_status

        info = self.dataset(dataset_id)
        return text_model_status(info.info.get("model"))

    def encode_text(self, dataset_id: int, text: str) -> np.ndarray:
        """``text`` embedded with the model the dataset was embedded with: float32 (1, d)."""
        from embscope.core.text_model import load_text_encoder

        info = self.dataset(dataset_id)
        ok, reason = self.text_status(info.id)
        if not ok:
            raise InvalidInputError(reason)
        model = str(info.info["model"])
        with self._key_lock("model:" + model):
            if model not in self._encoders:
                self._encoders[model] = load_text_encoder(model)
        vec = self._encoders[model].encode([text])
        if vec.shape[1] != info.dim:
            raise InvalidInputError(
                f"the model {model} gives {vec.shape[1]}-dimensional vectors but the dataset "
                f"holds {info.dim}-dimensional ones"
            )
        return vec

    def search(
        self,
        dataset_id: int,
        query: Query,
        *,
        k: int = 10,
        metric: str = "cosine",
        backend: str = "hnsw",
        ef: int | None = None,
        where: Sequence[str] | None = None,
        progress: ProgressFn | None = None,
        hubness_reduction: str | None = "none",
        hubness_neighbours: int | None = None,
        **params: Any,
    ) -> Neighbours:
        """The k nearest neighbours of a resolved query; with ``where`` (filter expressions,
        :mod:`core.filters`, AND-ed) only items that match, ``filtered`` their count. The
        matching rows come from the store; backend ``"milvus"`` hands them to Milvus as its
        search filter (at most ``MAX_FILTER_IDS`` named) and searches as widely as Milvus
        allows (``ef`` is not used), the others search exactly among them when the filter is
        selective and ask the index for more otherwise.
        ``params`` choose the index (``M``, ``ef_construction``; Milvus: ``uri``,
        ``index_type``).

        ``hubness_reduction`` (``"csls"`` or ``"mp"``, :mod:`core.hubness_reduction`):
        the nearest max(10 k, 100) candidates (through the same backend and filter) are
        re-ranked by the reduced score, returned as ``scores``; ``hubness_neighbours`` is
        its K (default: the method's)."""
        info = self.dataset(dataset_id)
        metric = check_metric(metric)
        if isinstance(where, str):
            where = [where]  # one expression, not its characters
        method = check_method(hubness_reduction)
        if backend not in BACKENDS:
            raise InvalidInputError(
                f"unknown index backend {backend!r}: use one of {', '.join(BACKENDS)}"
            )
        exclude = None if query.exclude_row is None else np.array([query.exclude_row])
        allowed = None if not where else self.matching(info.id, where, metric=metric)[0]
        if allowed is None:
            # Checked before any index is built, so a bad k changes nothing.
            k = check_k(k, info.n - (0 if exclude is None else 1))
        else:
            check_k(k, max(info.n - 1, 1))
        if ef is not None:
            check_int(ef, "ef", low=1, high=MAX_SEARCH_EF)
        if method != "none":  # every input checked before the graph is read
            return self._reduced_search(
                info, query, k=k, metric=metric, backend=backend, ef=ef, where=where,
                progress=progress, method=method, neighbours=hubness_neighbours, **params,
            )  # fmt: skip
        if allowed is not None and backend == "milvus":
            answer = self._milvus_among(
                info, allowed, query, k, metric=metric, progress=progress, **params
            )
            if answer is not None:
                return answer
        if allowed is not None and (
            backend == "exact" or len(allowed) <= max(FILTER_EXACT_MIN, FILTER_EXACT_SHARE * info.n)
        ):
            t0 = time.perf_counter()
            rows1, dist1 = self._exact_among(info.id, where or (), query, k, metric=metric)
            latency = (time.perf_counter() - t0) * 1000.0
            # Answered by exact search over the matching rows: said so, whatever was asked.
            return Neighbours(rows1, self.ids(info.id)[rows1], _true(dist1, metric), latency, "exact",
                              len(allowed))  # fmt: skip
        index = self.get_index(info.id, metric=metric, backend=backend, progress=progress, **params)
        t0 = time.perf_counter()
        if allowed is None:
            rows, dist = index.query(query.vector, k, exclude=exclude, ef=ef)
            latency = (time.perf_counter() - t0) * 1000.0
            return Neighbours(
                rows[0], self.ids(info.id)[rows[0]], _true(dist[0], metric), latency, backend
            )
        found = self._index_among(index, info, allowed, query, k, ef=ef)
        used = backend if found is not None else "exact"
        # None: the index kept too few matching rows; exact search over them instead.
        rows2, dist2 = found or self._exact_among(info.id, where or (), query, k, metric=metric)
        latency = (time.perf_counter() - t0) * 1000.0
        return Neighbours(
            rows2, self.ids(info.id)[rows2], _true(dist2, metric), latency, used, len(allowed)
        )

    def point_neighbours(
        self, dataset_id: int, row: int, *, k: int = 10, metric: str = "cosine",
        where: Sequence[str] | None = None,
    ) -> PointNeighbours:  # fmt: skip
        """Row ``row``'s ``k`` nearest neighbours (itself left out) and where they came from:
        its row of the dataset's stored shared graph for ``metric`` when one at least ``k``
        wide is stored (read, never built here) and no filter ``where`` is given; else exact
        search (over the rows matching ``where``)."""
        info = self.dataset(dataset_id)
        metric = check_metric(metric)
        query = self.resolve(info.id, row=row)
        where = [where] if isinstance(where, str) else where
        found = None if where else self._graph_heads.row(
            self.store, info, int(row), query.description, metric=metric, k=check_k(k, info.n - 1)
        )  # fmt: skip
        if found is None:
            answer = self.search(info.id, query, k=k, metric=metric, backend="exact", where=where)
            return PointNeighbours(answer.rows, answer.distances, query.description, "exact")
        return replace(found, distances=_true(found.distances, metric))

    def hub_stats(
        self, dataset_id: int, *, metric: str, neighbours: int, progress: ProgressFn | None = None
    ) -> HubStats:
        """Every row's mean and sd of distances to its ``neighbours`` nearest, from the shared
        graph (built first if missing), kept per process."""
        info = self.dataset(dataset_id)
        key = (info.fingerprint, check_metric(metric), int(neighbours))
        with self._key_lock("hub:" + repr(key)):
            if key not in self._hub_stats:
                graph = get_or_build_graph(
                    self.store, info.id, k=int(neighbours), metric=metric, progress=progress
                )
                self._hub_stats[key] = hub_stats(graph, int(neighbours))
            return self._hub_stats[key]

    def _reduced_search(
        self, info: DatasetInfo, query: Query, *, k: int, metric: str, backend: str,
        ef: int | None, where: Sequence[str] | None, progress: ProgressFn | None,
        method: str, neighbours: int | None, **params: Any,
    ) -> Neighbours:  # fmt: skip
        """:meth:`search` with a hubness reduction: a candidate pool re-ranked."""
        own = query.exclude_row
        available = info.n - (0 if own is None else 1)
        k = check_k(k, max(info.n - 1, 1) if where else available)
        K = resolve_neighbours(method, neighbours, n=info.n)
        stats = self.hub_stats(info.id, metric=metric, neighbours=K, progress=progress)
        same = {"metric": metric, "backend": backend, "ef": ef, "progress": progress, **params}
        pool = self.search(info.id, query, k=pool_size(k, K, available), where=where, **same)
        latency = pool.latency_ms  # the searches' own latencies: loading an index is not counted
        if own is not None:  # a database row: its K nearest are its graph row
            q_mean, q_sd = float(stats.mean[own]), float(stats.sd[own])
        else:  # its K nearest of all rows: the pool's first, unless a filter narrowed it
            near = pool if not where else self.search(info.id, query, k=min(K, available), **same)
            latency += near.latency_ms if near is not pool else 0.0
            q_mean, q_sd = query_stats(near.distances, K)
        t0 = time.perf_counter()
        rows, dist, score = rerank(
            method, pool.rows, pool.distances, k=k, query_mean=q_mean, query_sd=q_sd,
            stats=stats,
        )  # fmt: skip
        latency += (time.perf_counter() - t0) * 1000.0
        return Neighbours(
            rows, self.ids(info.id)[rows], dist, latency, pool.backend, pool.filtered, score,
            method,
        )  # fmt: skip

    def matching(
        self, dataset_id: int, where: Sequence[str], *, metric: str = "cosine"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows matching ``where`` (sorted int64) and, once an exact search has asked for
        them, their vectors prepared for ``metric``; cached per (dataset, filter, metric)."""
        from embscope.core.filters import matching_rows

        info = self.dataset(dataset_id)
        key = _filter_key(info, where, metric)
        with self._lock:
            hit = self._filters.get(key)
        if hit is not None:
            return hit
        rows = matching_rows(self.store, info.id, list(where))
        with self._lock:
            self._filters[key] = (rows, None)
            while len(self._filters) > FILTER_CACHE:
                self._filters.pop(next(iter(self._filters)))
        return rows, None

    def _exact_among(
        self, dataset_id: int, where: Sequence[str], query: Query, k: int, *, metric: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the rows matching ``where`` (the query's own row left out)."""
        info = self.dataset(dataset_id)
        rows, prepared = self.matching(info.id, where, metric=metric)
        if prepared is None:
            prepared = prepare_for_metric(self.vectors(info.id)[rows], metric)
            prepared.setflags(write=False)
            with self._lock:
                self._filters[_filter_key(info, where, metric)] = (rows, prepared)
        own = query.exclude_row
        # The query's own row is left out only when it is among the matching rows.
        own_in = own is not None and bool(np.isin(own, rows))
        available = len(rows) - int(own_in)
        if available <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        idx, dist = exact_knn(
            prepare_for_metric(query.vector, metric), prepared, min(k, available),
            metric=metric, exclude=np.array([own]) if own_in else None, labels=rows,
        )  # fmt: skip
        return idx[0], dist[0]

    def _index_among(
        self, index: NeighbourIndex, info: DatasetInfo, allowed: np.ndarray, query: Query,
        k: int, *, ef: int | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
        """The index asked for more and more neighbours until ``k`` matching ones come back
        (at most a quarter of the rows); None if it never gets there."""
        own = query.exclude_row
        exclude = None if own is None else np.array([own])
        if k >= len(allowed) - int(own is not None):
            return None  # every match is wanted: exact search over them is the answer
        share = len(allowed) / info.n
        # Beyond this many, a scan of the matching rows is cheaper (and Milvus answers at
        # most 16,384 per query).
        cap = min(info.n - 1 - int(own is not None), info.n // 4, FILTER_INDEX_MAX)
        want = int(np.ceil(2 * k / max(share, 1e-9)))
        while want <= cap:
            search_ef = max(ef or DEFAULT_EF, want)
            rows, dist = index.query(query.vector, want, exclude=exclude, ef=search_ef)
            keep = np.isin(rows[0], allowed)
            if keep.sum() >= k:
                return rows[0][keep][:k], dist[0][keep][:k]
            want *= 4
        return None

    def _milvus_among(
        self, info: DatasetInfo, allowed: np.ndarray, query: Query, k: int, *, metric: str,
        progress: ProgressFn | None, **params: Any,
    ) -> Neighbours | None:  # fmt: skip
        """A filtered query answered by Milvus itself: the matching rows (or the others, when
        fewer) go into its filter expression. None when that expression would be too long,
        when no row matches, or when an approximate index found fewer than k matching rows
        even searching exhaustively: the other paths of :meth:`search` answer then."""
        own = query.exclude_row
        own_in = own is not None and bool(np.isin(own, allowed))
        available = len(allowed) - int(own_in)
        if available <= 0 or min(len(allowed), info.n - len(allowed)) > MAX_FILTER_IDS:
            return None
        index = self.get_index(info.id, metric=metric, backend="milvus", progress=progress,
                               **params)  # fmt: skip
        if not isinstance(index, MilvusIndex):  # pragma: no cover - get_index's contract
            return None
        k = min(k, available)
        exclude = np.array([own]) if own_in else None
        # As wide as Milvus searches (ef = n, at most 32,768): a graph search confined to
        # the matching rows returns full but wrong answers when the filter leaves out the
        # query's neighbourhood (Milvus Lite's HNSW, 20,000 rows, 7 of 8 clusters kept, a
        # query in the eighth: recall@10 0.03 at ef 1,000, 1.0 at ef 20,000; SCALE.md).
        t0 = time.perf_counter()
        rows, dist = index.query(query.vector, k, exclude=exclude, ef=info.n, among=allowed)
        latency = (time.perf_counter() - t0) * 1000.0
        if rows[0, -1] < 0:  # fewer than k found (padded with -1)
            return None
        return Neighbours(rows[0], self.ids(info.id)[rows[0]], _true(dist[0], metric), latency,
                          "milvus", len(allowed))  # fmt: skip

    def compare(self, dataset_id: int, query: Query, **options: Any) -> QueryComparison:
        """The backend's answer beside the exact one, with recall@k (``options`` as for
        :meth:`search`)."""
        approx = self.search(dataset_id, query, **options)
        same = ("k", "metric", "where", "hubness_reduction", "hubness_neighbours")
        exact_options = {k: v for k, v in options.items() if k in same}
        exact = self.search(dataset_id, query, backend="exact", **exact_options)
        if len(exact.rows) == 0:  # nothing matches the filter: nothing to find or miss
            return QueryComparison(approx, exact, float("nan"))
        recall = recall_at_k(approx.rows[None, :], exact.rows[None, :])
        return QueryComparison(approx, exact, recall)


def _true(distances: np.ndarray, metric: str) -> np.ndarray:
    """Distances as the README promises them: a cosine or Euclidean distance is never below 0
    (float32 rounding gives -1.2e-7 for a vector and its duplicate); inner-product distances
    ``1 - <q, x>`` keep their sign."""
    return distances if metric == "ip" else np.maximum(distances, 0).astype(distances.dtype)


def _filter_key(info: DatasetInfo, where: Sequence[str], metric: str) -> tuple[Any, ...]:
    return (info.fingerprint, info.id, metric, tuple(str(w) for w in where))


def _orphaned_temp_file(path: Path) -> bool:
    """A ``.<name>.<pid>.<thread>.tmp`` file (core.index's atomic write) whose process is gone:
    what a kill during an index save leaves behind (gigabytes for a large index)."""
    parts = path.name.split(".")
    if not path.name.startswith(".") or len(parts) < 5 or parts[-1] != "tmp":
        return False
    try:
        pid = int(parts[-3])
    except ValueError:
        return False
    if pid == os.getpid() or pid <= 0:
        return False  # ours: a save in progress
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return path.is_file()
    except OSError:  # alive, someone else's
        return False
    return False


@dataclass(frozen=True)
class IndexRequest:
    """An index of a stored dataset: its backend, metric and build parameters."""

    dataset: DatasetInfo
    metric: Metric
    backend: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class IndexRecord:
    """A built index saved beside the database (``<db>.indexes/<fingerprint>.<backend>``).

    ``index`` is the index just built, in memory; it is not stored (a record read back has
    None there, and the file is loaded).
    """

    backend: str
    metric: str
    params: Mapping[str, Any]
    file: str
    n: int
    index: NeighbourIndex | None = field(default=None, repr=False, metadata=TRANSIENT)


class IndexSpec(ArtifactSpec[IndexRequest, IndexRecord]):
    """Index records: the artifact says the file of a built index is complete."""

    kind = INDEX_KIND
    result_type = IndexRecord
    code_version = INDEX_CODE_VERSION

    def __init__(self, service: NeighbourService):
        self.service = service

    def key(self, request: IndexRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint, request.backend, request.metric, dict(request.params),
        )  # fmt: skip

    def describe(self, request: IndexRequest) -> dict[str, Any]:
        return {"backend": request.backend, "metric": request.metric, **request.params}

    def lineage(self, request: IndexRequest, result: IndexRecord) -> dict[str, Any]:
        return {"dataset_fingerprint": request.dataset.fingerprint, "file": result.file}

    def compute(
        self, store: Store, request: IndexRequest, progress: ProgressFn | None
    ) -> IndexRecord:
        info, backend = request.dataset, request.backend
        fp = fingerprint(self, request)
        options: dict[str, Any] = dict(request.params)
        if backend == "hnsw":
            options["ef"] = DEFAULT_EF
        if backend == "milvus":
            options["collection"] = milvus_collection(fp)
            options["token"] = self.service.milvus_token
        index = make_index(backend, request.metric, **options)
        if isinstance(index, HnswIndex) and not self.service.has_vectors(info.id):
            # Streamed from the store: the whole matrix is never held beside hnswlib's copy
            # (4.3 GiB at 1M x 384 with it).
            index.build_from(store.iter_vectors(info.id), info.n, progress=progress)
        else:
            index.build(self.service.vectors(info.id), progress=progress)
        if store.read_only:  # kept in memory only: nothing is written beside the database
            return IndexRecord(backend, request.metric, dict(request.params), "", info.n, index)
        path = index.save(self.service.index_dir / f"{fp}.{backend}")
        return IndexRecord(
            backend, request.metric, dict(request.params), Path(path).name, info.n, index
        )

    def label(self, request: IndexRequest) -> str:
        return f"{request.backend} index of {request.dataset.name}"
