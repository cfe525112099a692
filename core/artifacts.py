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
is stored: it returns the stored result when there is one, computes and stores it
otherwise, and computes without storing on a read-only store. Only this module calls
:meth:`core.store.Store.put_artifact`.

Records written before this layer existed carry no codec mark; they read as missing, so
they are computed again (and replaced) the first time they are asked for.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import threading
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from embscope.core.progress import ProgressFn, check_cancel
from embscope.core.store import Artifact, fingerprint_arrays

if TYPE_CHECKING:
    from embscope.core.jobs import Job, JobRunner
    from embscope.core.store import Store

__all__ = [
    "CODEC_VERSION",
    "RECORD_CREATED",
    "RECORD_FINGERPRINT",
    "RECORD_SECONDS",
    "TRANSIENT",
    "ArtifactSpec",
    "Stored",
    "decode",
    "encode",
    "fingerprint",
    "get_or_compute",
    "load",
    "stored",
    "submit",
]

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
        record = store.get_artifact(fp, with_arrays=False)
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


def load(
    store: Store, spec: ArtifactSpec[Any, T], fp: str, *, with_arrays: bool = True
) -> T | None:
    """The stored result with fingerprint ``fp`` (without arrays unless asked), or None."""
    record = store.get_artifact(fp, with_arrays=with_arrays)
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
    for record in store.list_artifacts(dataset_id, kind=spec.kind):
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
    The result, or None when ``run`` is False and nothing is stored. A result computed on a
    read-only store is returned without being stored.
    """
    if not recompute:
        found = _stored_result(store, spec, request)
        if found is not None or not run:
            return found
    elif not run:
        return None
    with _computing(spec, request, progress):
        # Another job (a projection, a scorecard) may have computed it while this one waited.
        found = None if recompute else _stored_result(store, spec, request)
        if found is not None:
            return found
        started = time.perf_counter()
        result = spec.compute(store, request, progress)
        seconds = time.perf_counter() - started
        fp = spec.fingerprint_of(request, result)
        if store.read_only:
            return _with_facts(result, {"fingerprint": fp, "duration_s": seconds})
        doc, arrays = encode(result)
        record = store.put_artifact(
            kind=spec.kind,
            fingerprint=fp,
            dataset_id=spec.dataset_id(request),
            params={
                _CODEC: CODEC_VERSION,
                "version": spec.version(request),
                "request": spec.stored_request(request, result),
                "result": doc,
            },
            arrays=arrays,
            duration_s=seconds,
            lineage=spec.lineage(request, result),
        )
    # The record fields (fingerprint, created, duration) as a later read gives them; the
    # arrays are the ones just computed, not read back.
    return _with_record(result, record)


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
        check_cancel(progress, 0.0, f"waiting for the {spec.kind} another job computes", spec.kind)
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
    the store when shown.
    """
    key = fingerprint(spec, request)

    def work(progress: ProgressFn) -> str:
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
    )
