"""The one artifact layer: every stored result is computed, keyed, written and read here.

Everything embscope computes from a dataset and keeps (the neighbour graph, index records,
projections, the geometry scorecard, ANN diagnostics, compression reports, comparisons) is
an *artifact*: a row of the store's ``artifacts`` table holding a JSON document and an
``.npz`` blob of arrays, keyed by a fingerprint of (kind, the request, code version).

A kind of artifact is an :class:`ArtifactSpec`: what identifies a request (:meth:`key`),
how to compute its result (:meth:`compute`) and the result's dataclass. One generic
:func:`encode`/:func:`decode` codec turns any result dataclass into JSON plus arrays and
back, the same way for every kind (NaN and infinities, tuples, enums, nested dataclasses,
numpy scalars and object arrays of text). :func:`get_or_compute` is the only way a result
is stored: it returns the stored result when there is one, and computes and stores it
otherwise. Only this module calls :meth:`core.store.Store.put_artifact`.

A read-only store (``embscope serve --read-only``) writes nothing: its results go through the
same codec into :class:`ReadOnlyCache`, one bounded least-recently-used store of records in
the process's memory, keyed by (database file, fingerprint), that :func:`load`,
:func:`stored` and every spec's :meth:`ArtifactSpec.find` read before the database. So a
read-only server behaves like a writable one (every session sees a result once, and it is
computed once), except that its results vanish when the process ends and the least recently
used ones are dropped past the bound (``$EMBSCOPE_READ_ONLY_CACHE_MB``, default 1 GiB).

Records written before this layer existed carry no codec mark; they read as missing, so
they are computed again (and replaced) the first time they are asked for.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import logging
import math
import os
import sys
import threading
import time
import types
import typing
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.memory import job_peak
from embscope.core.progress import ProgressFn, check_cancel
from embscope.core.result_drops import asked, now, refuse_dropped
from embscope.core.store import Artifact, fingerprint_arrays

if TYPE_CHECKING:
    from embscope.core.jobs import Job, JobRunner
    from embscope.core.store import Store

__all__ = [
    "CODEC_VERSION",
    "READ_ONLY_CACHE_ENV",
    "RECORD_CREATED",
    "RECORD_FINGERPRINT",
    "RECORD_SECONDS",
    "TRANSIENT",
    "ArtifactSpec",
    "ReadOnlyCache",
    "Stored",
    "decode",
    "encode",
    "fingerprint",
    "get_or_compute",
    "load",
    "read_only_cache",
    "stored",
    "submit",
]

log = logging.getLogger(__name__)

Q = TypeVar("Q")  # a request
T = TypeVar("T")  # its result

# Bump when the layout of the stored document changes: older records then read as missing.
CODEC_VERSION = 1
_CODEC = "$codec"

# Field metadata for result dataclasses. A TRANSIENT field is never stored (an in-memory
# handle such as a loaded index); it reads back as its default. The RECORD_* fields are not
# stored in the document either: they are filled from the record when it is read.
TRANSIENT: Mapping[str, Any] = {"embscope.artifact": "transient"}
RECORD_FINGERPRINT: Mapping[str, Any] = {"embscope.artifact": "fingerprint"}
RECORD_CREATED: Mapping[str, Any] = {"embscope.artifact": "created"}
RECORD_SECONDS: Mapping[str, Any] = {"embscope.artifact": "duration_s"}


# -- the codec --------------------------------------------------------------------------------


def encode(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """A value as ``(document, arrays)``: JSON-native data plus the numpy arrays it holds.

    Dataclasses become objects of their stored fields, arrays become ``{"$array": name}``
    references into ``arrays``, and what JSON cannot say is tagged: ``{"$float": "nan"}``,
    ``{"$tuple": [...]}``, ``{"$datetime": "..."}``, and ``{"$items": [[k, v], ...]}`` for a
    mapping whose keys are not all text. Object arrays (text) are stored as unicode arrays and
    read back as object arrays of ``str``. Anything else raises TypeError.
    """
    arrays: dict[str, np.ndarray] = {}
    return _encode(value, arrays, "a"), arrays


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _encode(value.value, arrays, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, np.ndarray):
        # Named by where it sits, for a reader of the blob; a key holding "." could repeat a
        # nested path, so a taken name gets a number.
        name = path if path not in arrays else f"{path}~{len(arrays)}"
        if value.dtype.hasobject:
            arrays[name] = np.asarray([str(v) for v in value.ravel()], dtype=str).reshape(
                value.shape
            )
            return {"$array": name, "object": True}
        arrays[name] = value
        return {"$array": name}
    if isinstance(value, np.generic):
        return _encode(value.item(), arrays, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _encode(getattr(value, f.name), arrays, f"{path}.{f.name}")
            for f in dataclasses.fields(value)
            if "embscope.artifact" not in f.metadata
        }
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        # Keys that are not text, or that start with "$" as the tags do, go as pairs.
        plain = all(isinstance(k, str) and not k.startswith("$") for k in value)
        if plain:
            return {k: _encode(v, arrays, f"{path}.{k}") for k, v in value.items()}
        return {
            "$items": [
                [_encode(k, arrays, f"{path}.k{i}"), _encode(v, arrays, f"{path}.v{i}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in an artifact ({path})")


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _plain(doc: Any, arrays: Mapping[str, np.ndarray] | None) -> Any:
    """Undo the tags of :func:`encode` (dataclasses stay dicts; :func:`_convert` makes them)."""
    if isinstance(doc, list):
        return [_plain(v, arrays) for v in doc]
    if not isinstance(doc, dict):
        return doc
    if len(doc) in (1, 2) and "$array" in doc:
        if arrays is None:
            return None  # a summary: the arrays were not read
        arr = arrays[doc["$array"]]
        return arr.astype(object) if doc.get("object") else arr
    if len(doc) == 1:
        tag, value = next(iter(doc.items()))
        if tag == "$float":
            return _FLOATS[value]
        if tag == "$tuple":
            return tuple(_plain(v, arrays) for v in value)
        if tag == "$datetime":
            return datetime.fromisoformat(value)
        if tag == "$items":
            return {_hashable(_plain(k, arrays)): _plain(v, arrays) for k, v in value}
    return {k: _plain(v, arrays) for k, v in doc.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (a name that cannot be resolved reads as Any)."""
    if cls not in _HINTS:
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):
            module = vars(sys.modules.get(cls.__module__, object()))
            hints = {}
            for f in dataclasses.fields(cls):
                try:
                    hints[f.name] = (
                        eval(f.type, module) if isinstance(f.type, str) else f.type  # noqa: S307
                    )
                except Exception:  # a name only imported for type checkers
                    hints[f.name] = Any
        _HINTS[cls] = hints
    return _HINTS[cls]


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (from :func:`_plain`) as the declared type ``hint`` where the type says more
    than JSON does: dataclasses, enums, floats stored as whole numbers, nested containers."""
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            return _build(hint, value)
        if issubclass(hint, enum.Enum):
            return hint(value)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    args = typing.get_args(hint)
    if origin is tuple and isinstance(value, (tuple, list)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin in (list, Sequence) and isinstance(value, list) and args:
        return [_convert(args[0], v) for v in value]
    if origin in (dict, Mapping) and isinstance(value, dict) and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value


def _build(cls: type[T], values: Mapping[str, Any]) -> T:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "embscope.artifact" in f.metadata or f.name not in values:
            continue
        kwargs[f.name] = _convert(hints.get(f.name, Any), values[f.name])
    return cls(**kwargs)


def decode(cls: type[T], doc: Any, arrays: Mapping[str, np.ndarray] | None) -> T:
    """The ``cls`` instance :func:`encode` stored as ``(doc, arrays)``.

    ``arrays=None`` reads a summary: every array field is None (a listing that must not read
    every stored array).
    """
    return _convert(cls, _plain(doc, arrays))  # type: ignore[no-any-return]


# -- kinds of artifact ----------------------------------------------------------------------


class ArtifactSpec(Generic[Q, T]):
    """One kind of stored result.

    A subclass names the ``kind`` and its ``result_type`` (a dataclass), and says how a
    request is keyed and computed. Requests are frozen dataclasses that hold the dataset's
    catalog row (its fingerprint keys the result), so a spec never looks a dataset up twice.
    """

    kind: ClassVar[str]
    result_type: ClassVar[type]
    # Bump when the computation changes, so stored results are computed again.
    code_version: ClassVar[int] = 1

    def version(self, request: Q) -> int:
        """The code version of this request's result (a kind may version per method)."""
        return self.code_version

    def key(self, request: Q) -> tuple[Any, ...]:
        """Everything besides the kind and code version that decides the result (arrays and
        JSON-able values; usually the dataset's fingerprint and the parameters)."""
        raise NotImplementedError

    def describe(self, request: Q) -> dict[str, Any]:
        """The request as JSON-able values, kept in the record (listings filter on it)."""
        return {}

    def dataset_id(self, request: Q) -> int | None:
        """The dataset the result belongs to (deleted with it)."""
        dataset = getattr(request, "dataset", None)
        return None if dataset is None else int(dataset.id)

    def lineage(self, request: Q, result: T) -> dict[str, Any]:
        """Where the result came from (kept beside it, for a reader of the database)."""
        dataset = getattr(request, "dataset", None)
        return {} if dataset is None else {"dataset_fingerprint": dataset.fingerprint}

    def compute(self, store: Store, request: Q, progress: ProgressFn | None) -> T:
        """Compute the result (reading inputs, including other artifacts, from ``store``)."""
        raise NotImplementedError

    def find(self, store: Store, request: Q) -> str | None:
        """The fingerprint of a stored result that answers ``request``, or None.

        By default the request's own fingerprint; a kind whose stored results can answer
        several requests (a wide graph answers every narrower one) looks further.
        """
        fp = fingerprint(self, request)
        record = _get_record(store, fp, with_arrays=False)
        return fp if record is not None and _readable(record, self) else None

    def stored_request(self, request: Q, result: T) -> dict[str, Any]:
        """The request as kept in the record beside ``result`` (by default :meth:`describe`;
        a kind that decides part of its request while computing records what it decided)."""
        return self.describe(request)

    def fingerprint_of(self, request: Q, result: T) -> str:
        """The fingerprint a computed result is stored under (by default the request's)."""
        return fingerprint(self, request)

    def lock_key(self, request: Q) -> str:
        """Requests with the same lock key are computed one at a time in a process, the later
        ones then finding the first one's stored result (by default: the fingerprint; a kind
        whose stored results answer several requests locks more widely)."""
        return fingerprint(self, request)

    def serial(self, request: Q) -> bool:
        """Whether a job computing it must run on the job runner's one-at-a-time lane
        (numba-heavy work)."""
        return False

    def label(self, request: Q) -> str:
        """What a job computing it is called in the page (e.g. "UMAP 2-D of digits")."""
        dataset = getattr(request, "dataset", None)
        return self.kind if dataset is None else f"{self.kind} of {dataset.name}"


def fingerprint(spec: ArtifactSpec[Q, Any], request: Q) -> str:
    """The key of ``request``'s result: a digest of (kind, :meth:`ArtifactSpec.key`, version)."""
    return fingerprint_arrays(spec.kind, *spec.key(request), spec.version(request))


def _readable(record: Artifact, spec: ArtifactSpec[Any, Any]) -> bool:
    return (
        record.kind == spec.kind
        and record.status == "done"
        and record.params.get(_CODEC) == CODEC_VERSION
    )


@dataclass(frozen=True)
class Stored(Generic[T]):
    """A stored result as a listing sees it: its request and its result without arrays."""

    fingerprint: str
    kind: str
    dataset_id: int | None
    created: datetime
    duration_s: float | None
    version: int
    request: Mapping[str, Any]
    result: T | None = field(repr=False)


def _with_record(result: T, record: Artifact) -> T:
    """``result`` with its RECORD_* fields filled from the stored record."""
    return _with_facts(
        result,
        {
            "fingerprint": record.fingerprint,
            "created": record.created,
            "duration_s": record.duration_s,
        },
    )


def _with_facts(result: T, facts: Mapping[str, Any]) -> T:
    """``result`` with the RECORD_* fields named in ``facts`` filled."""
    filled = {
        f.name: facts[f.metadata["embscope.artifact"]]
        for f in dataclasses.fields(result)  # type: ignore[arg-type]
        if f.metadata.get("embscope.artifact") in facts
    }
    return dataclasses.replace(result, **filled) if filled else result  # type: ignore[type-var]


def _result(spec: ArtifactSpec[Any, T], record: Artifact, *, with_arrays: bool) -> T:
    result_type: type[T] = spec.result_type
    result = decode(result_type, record.params["result"], record.arrays if with_arrays else None)
    return _with_record(result, record)


# -- results of read-only stores, kept in memory --------------------------------------------

#: The bound of :class:`ReadOnlyCache`, in MiB (arrays plus JSON documents).
READ_ONLY_CACHE_ENV = "EMBSCOPE_READ_ONLY_CACHE_MB"
DEFAULT_READ_ONLY_CACHE_MB = 1024


def _cache_limit_bytes() -> int:
    """``$EMBSCOPE_READ_ONLY_CACHE_MB`` in bytes (0 keeps nothing); the default when unset
    or unreadable (a server must not fail on every page for a mistyped setting)."""
    text = os.environ.get(READ_ONLY_CACHE_ENV, "").strip()
    if text:
        try:
            mb = float(text)
        except ValueError:
            mb = math.nan
        if math.isfinite(mb) and mb >= 0:
            return int(mb * 2**20)
        log.warning(
            "%s=%r is not a number of MiB >= 0; using %d",
            READ_ONLY_CACHE_ENV,
            text,
            DEFAULT_READ_ONLY_CACHE_MB,
        )
    return DEFAULT_READ_ONLY_CACHE_MB * 2**20


@dataclass(frozen=True)
class _Kept:
    """One record of :class:`ReadOnlyCache`: what the ``artifacts`` table would hold."""

    id: int
    dataset_id: int | None
    kind: str
    params: str  # JSON text, as in the table
    fingerprint: str
    created: datetime
    duration_s: float | None
    lineage: str  # JSON text
    arrays: Mapping[str, np.ndarray]  # private, read-only copies
    nbytes: int

    def artifact(self, *, with_arrays: bool) -> Artifact:
        """The record as :meth:`Store.get_artifact` would read it: JSON parsed anew and
        arrays copied on every read, so a caller that changes them changes nothing here."""
        return Artifact(
            id=self.id,
            dataset_id=self.dataset_id,
            kind=self.kind,
            params=json.loads(self.params),
            fingerprint=self.fingerprint,
            created=self.created,
            duration_s=self.duration_s,
            lineage=json.loads(self.lineage),
            status="done",
            arrays={k: v.copy(order="K") for k, v in self.arrays.items()} if with_arrays else {},
        )


class ReadOnlyCache:
    """The records read-only stores would have written, in this process's memory.

    One per process (:func:`read_only_cache`), shared by every store, session and job of the
    process. Records are keyed by (database file, fingerprint), hold exactly what
    :meth:`core.store.Store.put_artifact` would store (the codec's JSON document as text and
    the arrays) and read back as :meth:`core.store.Store.get_artifact` would give them.

    The bound is the size of the arrays plus the JSON text of every record kept:
    ``$EMBSCOPE_READ_ONLY_CACHE_MB`` MiB (default 1 GiB), read at every :meth:`put`. Past it
    the least recently used records (read or written) are dropped; a record larger than the
    whole bound is not kept (its result is returned and computed again when asked again).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._nbytes = 0
        self._ids = itertools.count(1)
        self.evicted = 0  # records dropped for the bound since the process started

    @property
    def nbytes(self) -> int:
        """Bytes held: arrays plus JSON text of every record kept."""
        return self._nbytes

    @property
    def limit_bytes(self) -> int:
        """The bound now: ``$EMBSCOPE_READ_ONLY_CACHE_MB`` in bytes."""
        return _cache_limit_bytes()

    def __len__(self) -> int:
        return len(self._records)

    def put(
        self,
        db: str,
        *,
        kind: str,
        fingerprint: str,
        dataset_id: int | None,
        params: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        duration_s: float | None,
        lineage: Mapping[str, Any],
    ) -> Artifact:
        """Keep (or replace) a record, as ``Store.put_artifact`` takes it; returns the record
        without arrays (its fields as a later read gives them)."""
        kept_arrays: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            arr = np.array(value, copy=True, order="K")
            if arr.dtype.hasobject:  # what put_artifact refuses too (never read back)
                raise InvalidInputError(
                    f"artifact array {name!r} holds Python objects: store text as a str array"
                )
            arr.setflags(write=False)
            kept_arrays[name] = arr
        # The JSON text the artifacts table would hold (same encoding: read back alike).
        params_json = json.dumps(dict(params), default=str)
        lineage_json = json.dumps(dict(lineage), sort_keys=True, default=str)
        nbytes = sum(a.nbytes for a in kept_arrays.values()) + len(params_json) + len(lineage_json)
        record = _Kept(
            id=next(self._ids),
            dataset_id=dataset_id,
            kind=kind,
            params=params_json,
            fingerprint=fingerprint,
            created=datetime.now(UTC).replace(tzinfo=None),
            duration_s=duration_s,
            lineage=lineage_json,
            arrays=kept_arrays,
            nbytes=nbytes,
        )
        limit = self.limit_bytes
        key = (db, fingerprint)
        with self._lock:
            old = self._records.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            if nbytes > limit:
                log.info(
                    "a %s result of %.1f MiB is larger than the read-only cache (%s): not kept",
                    kind,
                    nbytes / 2**20,
                    READ_ONLY_CACHE_ENV,
                )
            else:
                while self._records and self._nbytes + nbytes > limit:
                    _, dropped = self._records.popitem(last=False)
                    self._nbytes -= dropped.nbytes
                    self.evicted += 1
                self._records[key] = record
                self._nbytes += nbytes
        return record.artifact(with_arrays=False)

    def get(self, db: str, fingerprint: str, *, with_arrays: bool = True) -> Artifact | None:
        """The record, or None; a read makes it the most recently used."""
        with self._lock:
            record = self._records.get((db, fingerprint))
            if record is None:
                return None
            self._records.move_to_end((db, fingerprint))
        return record.artifact(with_arrays=with_arrays)

    def records(
        self, db: str, dataset_id: int | None = None, *, kind: str | None = None
    ) -> list[Artifact]:
        """Records of this database (of one dataset, of one kind), newest first, without
        their arrays (a listing is not a use: the order of eviction stays)."""
        with self._lock:
            found = [
                r
                for (key_db, _), r in self._records.items()
                if key_db == db
                and (dataset_id is None or r.dataset_id == int(dataset_id))
                and (kind is None or r.kind == kind)
            ]
        found.sort(key=lambda r: r.id, reverse=True)
        return [r.artifact(with_arrays=False) for r in found]

    def forget(self, path: str | os.PathLike[str] | None = None) -> None:
        """Drop the records of one database file (a path as a store was opened with), or all."""
        db = None if path is None else _db_file(path)
        with self._lock:
            for key in [k for k in self._records if db is None or k[0] == db]:
                self._nbytes -= self._records.pop(key).nbytes


_READ_ONLY_CACHE = ReadOnlyCache()


def read_only_cache() -> ReadOnlyCache:
    """The process's :class:`ReadOnlyCache` (results computed on read-only stores)."""
    return _READ_ONLY_CACHE


def _db_file(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


_DB_KEYS: weakref.WeakKeyDictionary[Store, str] = weakref.WeakKeyDictionary()
_DB_KEYS_LOCK = threading.Lock()


def _db_key(store: Store) -> str:
    """The database file of ``store`` as the cache keys it (resolved once per store)."""
    with _DB_KEYS_LOCK:
        key = _DB_KEYS.get(store)
        if key is None:
            key = _DB_KEYS[store] = _db_file(store.path)
        return key


def _get_record(store: Store, fp: str, *, with_arrays: bool) -> Artifact | None:
    """The record with fingerprint ``fp``: a read-only store's memory first, then the database."""
    if store.read_only:
        kept = _READ_ONLY_CACHE.get(_db_key(store), fp, with_arrays=with_arrays)
        if kept is not None:
            return kept
    return store.get_artifact(fp, with_arrays=with_arrays)


def _list_records(store: Store, dataset_id: int | None, kind: str) -> list[Artifact]:
    """Records of one kind, newest first: a read-only store's memory (all computed since the
    database was last written: no writer can hold it meanwhile), then the database's."""
    records = store.list_artifacts(dataset_id, kind=kind)
    if not store.read_only:
        return records
    kept = _READ_ONLY_CACHE.records(_db_key(store), dataset_id, kind=kind)
    seen = {r.fingerprint for r in kept}
    return kept + [r for r in records if r.fingerprint not in seen]


# -- reading ----------------------------------------------------------------------------------


def load(
    store: Store, spec: ArtifactSpec[Any, T], fp: str, *, with_arrays: bool = True
) -> T | None:
    """The stored result with fingerprint ``fp`` (without arrays unless asked), or None."""
    record = _get_record(store, fp, with_arrays=with_arrays)
    if record is None or not _readable(record, spec):
        return None
    return _result(spec, record, with_arrays=with_arrays)


def stored(
    store: Store,
    spec: ArtifactSpec[Any, T],
    dataset_id: int | None = None,
    *,
    with_results: bool = False,
) -> list[Stored[T]]:
    """Every readable stored result of this kind (of one dataset), newest first.

    Only the records are read, never their arrays: with ``with_results`` each carries its
    result with every array field None (a gallery), otherwise its ``result`` is None (a
    search over requests, such as the widest stored graph).
    """
    out = []
    for record in _list_records(store, dataset_id, spec.kind):
        if not _readable(record, spec):
            continue
        out.append(
            Stored(
                fingerprint=record.fingerprint,
                kind=record.kind,
                dataset_id=record.dataset_id,
                created=record.created,
                duration_s=record.duration_s,
                version=int(record.params.get("version", 0)),
                request=record.params.get("request", {}),
                result=_result(spec, record, with_arrays=False) if with_results else None,
            )
        )
    return out


def get_or_compute(
    store: Store,
    spec: ArtifactSpec[Q, T],
    request: Q,
    *,
    progress: ProgressFn | None = None,
    run: bool = True,
    recompute: bool = False,
) -> T | None:
    """The stored result of ``request``; else compute it, store it and return it.

    Parameters
    ----------
    store : Store
    spec : ArtifactSpec
        The kind of result.
    request
        What to compute (the spec's request dataclass).
    progress : callable(fraction, message) -> bool, optional
        Passed to the computation; returning True cancels it (OperationCancelled).
    run : bool
        False: only look; None when nothing is stored.
    recompute : bool
        Compute again even when a result is stored (a stored index whose file is gone).

    Returns
    -------
    The result, or None when ``run`` is False and nothing is stored. A read-only store
    writes nothing: its result is kept in the process's :class:`ReadOnlyCache` instead.

    Raises
    ------
    ResultDroppedError
        Its dataset's results of its metric were dropped after it was asked for
        (:func:`core.result_drops.refuse_dropped`): computed, not stored.
    """
    if not recompute:
        found = _stored_result(store, spec, request)
        if found is not None or not run:
            return found
    elif not run:
        return None
    with asked() as since, _computing(spec, request, progress):
        # Another job (a projection, a scorecard) may have computed it while this one waited.
        found = None if recompute else _stored_result(store, spec, request)
        if found is not None:
            return found
        started = time.perf_counter()
        result = spec.compute(store, request, progress)
        seconds = time.perf_counter() - started
        fp = spec.fingerprint_of(request, result)
        doc, arrays = encode(result)
        params = {
            _CODEC: CODEC_VERSION,
            "version": spec.version(request),
            "request": spec.stored_request(request, result),
            "result": doc,
        }
        fields: dict[str, Any] = {
            "kind": spec.kind,
            "fingerprint": fp,
            "dataset_id": spec.dataset_id(request),
            "params": params,
            "arrays": arrays,
            "duration_s": seconds,
            "lineage": spec.lineage(request, result),
        }
        if store.read_only:  # the same record, kept in memory: nothing is written
            record = _READ_ONLY_CACHE.put(_db_key(store), **fields)
        else:
            record = store.put_artifact(**fields, check=_not_dropped(store, fields, since))
    # The record fields (fingerprint, created, duration) as a later read gives them; the
    # arrays are the ones just computed, not read back.
    return _with_record(result, record)


def _not_dropped(store: Store, fields: Mapping[str, Any], since: datetime) -> Callable[[], None]:
    """The check a result is stored under: not one of a drop made after it was asked for."""
    dataset_id, request = fields["dataset_id"], fields["params"]["request"]

    def check() -> None:
        if dataset_id is not None:
            refuse_dropped(store, dataset_id=int(dataset_id), request=request, since=since)

    return check


def _stored_result(store: Store, spec: ArtifactSpec[Q, T], request: Q) -> T | None:
    fp = spec.find(store, request)
    return None if fp is None else load(store, spec, fp)


_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
# How often a computation waiting for another one to finish asks whether it was cancelled.
_WAIT_POLL_S = 0.5


@contextmanager
def _computing(
    spec: ArtifactSpec[Q, Any], request: Q, progress: ProgressFn | None
) -> Iterator[None]:
    """Hold the lock of ``request``'s result while computing it, so that two jobs that need
    the same result (a projection and a scorecard both need the graph) compute it once. A
    waiting job still hears its Cancel."""
    key = (spec.kind, spec.lock_key(request))
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    while not lock.acquire(timeout=_WAIT_POLL_S):
        waiting = f"waiting for another job computing the same {spec.label(request)}"
        check_cancel(progress, 0.0, waiting, spec.kind)
    try:
        yield
    finally:
        lock.release()


def submit(
    runner: JobRunner,
    store: Store,
    spec: ArtifactSpec[Q, Any],
    request: Q,
    *,
    label: str | None = None,
) -> Job:
    """Compute ``request``'s result as a background job keyed by its fingerprint (a request
    already queued or running is shared, not started twice).

    The job's result is the fingerprint the result is stored under (for a graph, the one it
    was built under, see :meth:`ArtifactSpec.fingerprint_of`), not the result itself: a
    finished job stays in the runner's memory, a result (a million coordinates) is read from
    the store when shown. Its expected peak memory, :func:`core.memory.job_peak`, holds it
    in the queue until it fits the runner's memory budget.
    """
    key = fingerprint(spec, request)
    when = now()  # asked for now: a queued job's result counts from here (core/result_drops.py)

    def work(progress: ProgressFn) -> str:
        with asked(when):
            get_or_compute(store, spec, request, progress=progress)
        return spec.find(store, request) or key

    return runner.submit(
        key,
        work,
        kind=spec.kind,
        label=label or spec.label(request),
        dataset_id=spec.dataset_id(request),
        params=spec.describe(request),
        serial=spec.serial(request),
        memory=job_peak(spec.kind, request),
    )
