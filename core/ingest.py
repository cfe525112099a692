"""Readers for every upload format, turning a file into vectors, ids and metadata.

Every reader ends in the same checks (:func:`read_dataset`): vectors become a finite
float32 C-contiguous ``(n, d)`` matrix, ids are unique strings, metadata is a typed pandas
frame with one row per vector. Anything embscope cannot use raises
:class:`~core.errors.InvalidInputError` with a message saying what is wrong, where (rows,
lines, columns, keys) and how to fix it; anything odd but usable is accepted with a note in
``warnings``. Pickles are never loaded: every ``np.load`` passes ``allow_pickle=False`` and
object arrays are refused from their header before any data is read.

Hostile files do no harm: every reader works within a memory budget
(:func:`read_budget_bytes`, or ``max_read_bytes``) and refuses a file whose contents would
expand beyond it, from the sizes its headers declare (npy/npz headers, zip entries, Parquet
footers, HDF5 dataspaces) before anything large is allocated. Compressed containers (npz,
Parquet, h5ad) may also expand to at most :data:`MAX_EXPANSION_RATIO` times the file's size
(above :data:`EXPANSION_RATIO_FLOOR`): a decompression bomb is refused, a real embedding file
(float32 vectors compress about 1.1x) never is. Reading itself is capped too, so a header
that lies cannot get through: zip entries stop at their declared size, Parquet is read in
batches whose real size is counted. Text is never read through a path whose suffix asks
pyarrow to decompress it.

Rows are named by file line (counting from 1) for text formats and by row number
(counting from 0, the same numbers that become the default ids) for binary formats.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import csv
import io
import itertools
import json
import math
import mmap
import os
import re
import struct
import sys
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from embscope.core.errors import InvalidInputError

__all__ = [
    "EXPANSION_RATIO_FLOOR",
    "FORMATS",
    "MAX_EXPANSION_RATIO",
    "MAX_QUERY_VECTOR_BYTES",
    "METADATA_SUFFIXES",
    "READ_BUDGET_ENV",
    "SUPPORTED_SUFFIXES",
    "FileInspection",
    "ParsedDataset",
    "inspect_file",
    "read_budget_bytes",
    "read_dataset",
    "read_query_vector",
]

#: File suffixes a vectors file may have (the same list the upload page accepts).
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".npy",
    ".npz",
    ".parquet",
    ".csv",
    ".tsv",
    ".txt",
    ".jsonl",
    ".json",
    ".h5ad",
)
#: File suffixes a separate metadata file may have.
METADATA_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".json")
#: Values of ``ParsedDataset.format`` / ``FileInspection.format``.
FORMATS: tuple[str, ...] = ("npy", "npz", "parquet", "csv", "tsv", "projector", "jsonl", "h5ad")

PREVIEW_ROWS = 20
# A sparse AnnData X is densified only up to this many float32 values (400 MB).
MAX_DENSIFIED_VALUES = 100_000_000
#: Environment variable: the most memory (MiB) one read may build; default half of the
#: memory available when the read starts (see :func:`read_budget_bytes`).
READ_BUDGET_ENV = "EMBSCOPE_MAX_READ_MB"
#: Compressed containers (npz entries, Parquet, HDF5 datasets) may expand to at most this
#: many times the file's size. Float32 embeddings compress ~1.1x, int8 or binary codes saved
#: as float32 ~5-20x; zeros deflate ~1000x. Files expanding less than the floor are allowed
#: whatever their ratio (they cannot hurt).
MAX_EXPANSION_RATIO = 100.0
EXPANSION_RATIO_FLOOR = 256 * 2**20
# The budget is never below this, however little memory the machine reports as free.
_MIN_READ_BUDGET = 256 * 2**20
# Python objects built by the exact JSON readers: bytes per byte of text, at least (the real
# factor is measured on a sample of records; ~3 for numeric vectors, ~25 for tiny records).
_MIN_PY_JSON_FACTOR = 4.0
# A query vector file (.npy) is one vector: never more than this.
MAX_QUERY_VECTOR_BYTES = 64 * 2**20
_LISTED = 5  # how many offending rows/cells a message names before "and k more"
_PY_STR_BYTES = 64  # a short Python str plus the pointer to it
_NPY_HEADER_MAX = 10_000 + 12  # numpy's max_header_size, plus magic, version and length
_BLOCK = 1 << 24  # pyarrow block size: wide numeric rows parse ~2x faster in big blocks
# Field names preferred for the vector when a JSONL/Parquet file has several list fields.
_VECTOR_NAMES = ("vector", "vectors", "embedding", "embeddings", "emb", "vec", "features", "values")
_NUMBER_RE = re.compile(
    r"^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*$", re.IGNORECASE
)
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_LIST_CELL_RE = r"^\s*\[.*\]\s*$"


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInspection:
    """What an uploaded file holds, for the upload page's preview and choices.

    Attributes
    ----------
    format : str
        One of :data:`FORMATS`.
    n_rows : int
        Number of vectors (rows).
    dim : int or None
        Dimension of the default vector choice, when known.
    columns : tuple of str
        Table-like formats: every column or field seen (vectors file, then metadata file).
    vector_candidates : tuple of str
        Choices for ``vector_column``, default first: npz keys, Parquet list columns, JSONL
        list fields, CSV columns of bracketed lists, h5ad ``"X"`` / ``"obsm/<key>"``.
    numeric_columns : tuple of str
        Choices for ``vector_columns`` (CSV/TSV with a header, Parquet without a list
        column).
    default_vector_columns : tuple of str
        The columns the default reading used as the vector (a subset of
        ``numeric_columns``; whole-number columns next to float columns are left out as
        labels).
    id_candidates : tuple of str
        Columns whose values are unique, non-null and not floats (choices for ``id_column``).
    preview : pandas.DataFrame
        The first rows (at most 20): the vector shortened to text, then the metadata.
    warnings : tuple of str
        Valid-but-odd findings of the default reading.
    """

    format: str
    n_rows: int
    dim: int | None
    columns: tuple[str, ...]
    vector_candidates: tuple[str, ...]
    numeric_columns: tuple[str, ...]
    id_candidates: tuple[str, ...]
    preview: pd.DataFrame
    warnings: tuple[str, ...]
    default_vector_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedDataset:
    """A validated dataset, ready for :meth:`core.store.Store.add_dataset`.

    Attributes
    ----------
    vectors : numpy.ndarray
        float32, C-contiguous, shape (n, d), n >= 1, d >= 1, every value finite.
    ids : numpy.ndarray
        object array of str, shape (n,), unique and non-empty.
    metadata : pandas.DataFrame
        n rows, RangeIndex, typed columns (int, float, str, bool, ...); no vector column(s).
        The id column, when one was chosen, is kept here too.
    warnings : tuple of str
        Valid-but-odd input (duplicate vectors, zero vectors, d == 1, conversions, ...).
    source : str
        The user's file name(s), for display only.
    format : str
        One of :data:`FORMATS`.
    id_column : str or None
        None: ids are the row numbers "0", "1", ...
    vector_column : str or None
        The column, field, key or h5ad path the vectors came from (None: the whole file, or
        several numeric columns).
    """

    vectors: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame
    warnings: tuple[str, ...]
    source: str
    format: str
    id_column: str | None
    vector_column: str | None


# -- naming rows in messages ---------------------------------------------------------------


class _Where:
    """Names data rows in messages: by file line for text, by row number (from 0) otherwise.

    ``line_map(k)`` gives the lines of the first ``k`` rows; it is called only when a
    message needs it, and only as far as the rows the message names, so neither the fast
    path nor an error early in a huge file pays for scanning the whole file again.
    """

    def __init__(self, line_map: Callable[[int], np.ndarray] | None = None, unit: str = "row"):
        self._line_map = line_map
        self._lines: np.ndarray | None = None
        self._asked = 0
        self.unit = unit

    def lines(self, upto: int = 0) -> np.ndarray | None:
        """File lines of rows 0..upto at least (fewer when the file has fewer rows)."""
        if self._line_map is not None and upto + 1 > self._asked:
            self._asked = max(upto + 1, 2 * self._asked)
            self._lines = np.asarray(self._line_map(self._asked), dtype=np.int64)
        return self._lines

    def one(self, i: int) -> str:
        lines = self.lines(i)
        if lines is not None and 0 <= i < len(lines):
            return f"line {int(lines[i])}"
        return f"{self.unit} {i}"

    def many(self, rows: Iterable[int], total: int | None = None) -> str:
        rows = [int(r) for r in rows]
        total = len(rows) if total is None else total
        shown = rows[:_LISTED]
        lines = self.lines(max(shown, default=0))
        if lines is not None and all(0 <= r < len(lines) for r in shown):
            word, nums, tail = "line", [str(int(lines[r])) for r in shown], ""
        else:
            word, nums, tail = self.unit, [str(r) for r in shown], ", counting from 0"
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        plural = "s" if total > 1 else ""
        return f"{word}{plural} {', '.join(nums)}{more}{tail}"


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _quote_list(names: Iterable[str], limit: int = 30) -> str:
    names = [str(n) for n in names]
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…'"


# -- the reader's intermediate result ------------------------------------------------------


@dataclass
class _Loaded:
    """What a format reader found, before the shared checks."""

    format: str
    vectors: np.ndarray  # 2-D, any numeric dtype; checked and converted by _finish_vectors
    metadata: pd.DataFrame
    where: _Where
    vector_column: str | None = None
    vector_candidates: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    declared_dtype: bool = True  # binary formats state a dtype: conversions are worth a note
    vector_names: tuple[str, ...] = ()  # column names, when the vector is made of columns
    what: str = "the vectors"


# -- the memory budget of one read ---------------------------------------------------------


def _mib(nbytes: float) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:,.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:,.1f} MiB"
    if nbytes >= 2**10:
        return f"{nbytes / 2**10:,.1f} KiB"
    return f"{int(nbytes):,} bytes"


def _available_memory() -> int | None:
    """Bytes of memory this process could still use: MemAvailable, within a cgroup limit."""
    avail = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    if avail is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # In a container MemAvailable describes the host; the cgroup's own limit is what counts.
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            room = max(int(limit) - used, 0)
            avail = room if avail is None else min(avail, room)
    return avail


def read_budget_bytes() -> int:
    """The most memory one read of an upload may build, in bytes.

    ``$EMBSCOPE_MAX_READ_MB`` (MiB) when set to a positive integer, else half of the memory
    available right now (``MemAvailable``, within a cgroup limit), and never less than
    256 MiB. Half, because the caller (the store, the page) copies what was read once more.

    Returns
    -------
    int
        Bytes.
    """
    raw = os.environ.get(READ_BUDGET_ENV, "").strip()
    if raw:
        try:
            mb = int(raw)
        except ValueError:
            mb = 0
        if mb > 0:
            return mb * 2**20
    avail = _available_memory()
    if avail is None:
        avail = 8 * 2**30
    return max(avail // 2, _MIN_READ_BUDGET)


class _Budget:
    """Memory one read may build, and how far the current file may expand.

    ``take`` counts memory for something about to be built (an array, a table); ``inflate``
    counts bytes decoded from compressed storage, which must also stay within
    ``MAX_EXPANSION_RATIO`` times the file's size. Both raise before the allocation.
    """

    def __init__(self, limit: int | None):
        self.limit = limit  # None: unlimited (in-memory data, internal callers)
        self.used = 0
        self.label = "the file"
        self.file_size = 0
        self.expanded = 0

    @contextlib.contextmanager
    def file(self, label: str, size: int) -> Iterator[None]:
        saved = (self.label, self.file_size, self.expanded)
        self.label, self.file_size, self.expanded = label, int(size), 0
        try:
            yield
        finally:
            self.label, self.file_size, self.expanded = saved

    def take(self, nbytes: float, what: str) -> None:
        nbytes = max(int(nbytes), 0)
        if self.limit is not None and self.used + nbytes > self.limit:
            raise InvalidInputError(
                f"{self.label} is too large to read here: {what} would need about "
                f"{_mib(self.used + nbytes)} of memory, and this server lets one file use at "
                f"most {_mib(self.limit)}. Split the file into smaller ones, reduce the "
                "dimension, or save the vectors as float32 .npy; whoever runs the server can "
                f"raise the limit with ${READ_BUDGET_ENV}"
            )
        self.used += nbytes

    def inflate(
        self, nbytes: float, what: str, *, stored: float | None = None, commit: bool = True
    ) -> None:
        """Count ``nbytes`` decoded from compressed storage, before decoding them.

        ``stored``: the compressed size of this part (a zip entry, an HDF5 dataset), checked
        on its own; the file as a whole is checked against its size on disk as well.
        ``commit=False`` only checks (a declared size, counted again as it is read).
        """
        nbytes = max(int(nbytes), 0)
        for base, amount in ((stored, nbytes), (self.file_size, self.expanded + nbytes)):
            if base is None:
                continue
            base = max(int(base), 0)
            if amount > max(MAX_EXPANSION_RATIO * base, EXPANSION_RATIO_FLOOR):
                raise InvalidInputError(
                    f"{self.label} expands far beyond its size: {what} would take "
                    f"{_mib(amount)} in memory from {_mib(base)} on disk "
                    f"({amount / max(base, 1):,.0f}x; embscope allows "
                    f"{MAX_EXPANSION_RATIO:.0f}x). "
                    "It looks like a decompression bomb and was not read. If it is a real "
                    "dataset, save it uncompressed (np.save, or np.savez rather than "
                    "savez_compressed; Parquet with compression=None and use_dictionary=False; "
                    "write_h5ad without compression)"
                )
        if not commit:
            if self.limit is not None and self.used + nbytes > self.limit:
                self.take(nbytes, what)  # raises with the budget message
            return
        self.take(nbytes, what)
        self.expanded += nbytes


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "embscope_read_budget", default=None
)


def _budget() -> _Budget:
    found = _BUDGET.get()
    return found if found is not None else _Budget(None)


@contextlib.contextmanager
def _read_budget(limit: int | None) -> Iterator[_Budget]:
    if limit is None:
        limit = read_budget_bytes()
    elif not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit <= 0:
        raise InvalidInputError(f"max_read_bytes must be a positive integer, got {limit!r}")
    budget = _Budget(int(limit))
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


# -- public API ----------------------------------------------------------------------------


def read_dataset(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    metadata_path: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    vector_column: str | None = None,
    vector_columns: Sequence[str] | None = None,
    metadata_filename: str | None = None,
    max_read_bytes: int | None = None,
) -> ParsedDataset:
    """Read a file of vectors (and optionally a metadata file) into a checked dataset.

    Parameters
    ----------
    path : str or PathLike
        The vectors file: .npy, .npz, .parquet, .csv, .tsv, .txt, .jsonl, .json or .h5ad.
    filename : str, optional
        The name the user's file had; only its suffix picks the reader (uploads are stored
        under a safe temporary name). Defaults to ``path``'s name.
    metadata_path : str or PathLike, optional
        A metadata file (.csv, .tsv, .txt, .parquet, .jsonl, .json) with one row per vector
        in the same order. A single-column .tsv/.txt has no header (TensorFlow Projector's
        rule) unless it has exactly one line more than there are vectors.
    id_column : str, optional
        Column (of either file) whose values, as str, become the ids; they must be unique
        and non-empty. Default: row numbers "0".."n-1".
    vector_column : str, optional
        Which array holds the vectors: npz key, Parquet/CSV list column, JSONL field, or
        h5ad ``"X"`` / ``"obsm/<key>"``. Default: the first candidate.
    vector_columns : sequence of str, optional
        CSV/TSV (with a header) or Parquet numeric columns that make up the vector, in
        order; the other columns become metadata. Default: every numeric column except
        ``id_column``.
    metadata_filename : str, optional
        The name the user's metadata file had (its suffix picks the reader, and messages
        use it). Defaults to ``metadata_path``'s name.
    max_read_bytes : int, optional
        The most memory the read may build (vectors, metadata, ids, decoded tables), in
        bytes. Default :func:`read_budget_bytes`. Compressed files must also stay within
        :data:`MAX_EXPANSION_RATIO` times their size.

    Returns
    -------
    ParsedDataset
        vectors float32 (n, d) C-contiguous and finite; ids object array of str (n,);
        metadata frame with n rows.

    Raises
    ------
    InvalidInputError
        The file cannot be used, or would need more memory than allowed; the message says
        what, where and how to fix it.
    """
    path = Path(path)
    label = filename or path.name
    with _read_budget(max_read_bytes):
        loaded = _load(
            path,
            label,
            id_column=id_column,
            vector_column=vector_column,
            vector_columns=vector_columns,
        )
        with _library_errors(label, path):
            return _assemble(path, label, loaded, metadata_path, id_column, metadata_filename)


def from_arrays(
    vectors: np.ndarray,
    *,
    metadata: pd.DataFrame | None = None,
    id_column: str | None = None,
    source: str = "generated",
    format: str = "generated",  # noqa: A002 - the ParsedDataset field it fills
) -> ParsedDataset:
    """Check in-memory vectors (and metadata) exactly as an uploaded file would be checked.

    Used for demo and generated datasets, so they reach the store through the same
    validation as uploads.

    Parameters
    ----------
    vectors : ndarray of shape (n, d)
        Any real numeric dtype; converted to float32.
    metadata : DataFrame, optional
        n rows of metadata, in row order.
    id_column : str, optional
        Metadata column whose values (as str) become the ids; default row numbers.
    source, format : str
        What the catalog shows as the dataset's origin.

    Returns
    -------
    ParsedDataset

    Raises
    ------
    InvalidInputError
        Non-finite values, wrong shape or dtype, mismatched rows, duplicate ids.
    """
    arr = np.asarray(vectors)
    meta = pd.DataFrame(index=pd.RangeIndex(arr.shape[0] if arr.ndim else 0))
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            raise InvalidInputError(
                f"metadata must be a pandas DataFrame, got {type(metadata).__name__}"
            )
        if arr.ndim >= 1 and len(metadata) != arr.shape[0]:
            raise InvalidInputError(
                f"{source}: metadata has {len(metadata)} rows but there are {arr.shape[0]} "
                "vectors: they must match row for row"
            )
        meta = metadata.reset_index(drop=True)
        _check_column_names(meta, source)
    loaded = _Loaded(
        format=format, vectors=arr, metadata=meta, where=_Where(), declared_dtype=False
    )
    vecs, warnings = _finish_vectors(loaded, source)
    ids = _make_ids(meta, id_column, vecs.shape[0], source, loaded)
    return ParsedDataset(
        vectors=vecs,
        ids=ids,
        metadata=meta,
        warnings=tuple(dict.fromkeys(warnings)),
        source=source,
        format=format,
        id_column=id_column,
        vector_column=None,
    )


def inspect_file(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    metadata_path: str | os.PathLike[str] | None = None,
    metadata_filename: str | None = None,
    max_read_bytes: int | None = None,
) -> FileInspection:
    """Describe a file for the upload page: format, size, choices and a preview.

    The file is read with the default choices (first vector candidate, every numeric
    column, row-number ids), so a file that :func:`read_dataset` would refuse with those
    defaults is refused here too, with the same message.

    Parameters
    ----------
    path : str or PathLike
        The vectors file.
    filename : str, optional
        The user's file name; its suffix picks the reader.
    metadata_path : str or PathLike, optional
        A metadata file to check against the vectors (row count) and to preview.
    metadata_filename : str, optional
        The user's name for the metadata file.
    max_read_bytes : int, optional
        The memory budget of the read, as for :func:`read_dataset`.

    Returns
    -------
    FileInspection

    Raises
    ------
    InvalidInputError
        The file cannot be used with the default choices.
    """
    path = Path(path)
    label = filename or path.name
    with _read_budget(max_read_bytes):
        loaded = _load(path, label, id_column=None, vector_column=None, vector_columns=None)
        with _library_errors(label, path):
            parsed = _assemble(path, label, loaded, metadata_path, None, metadata_filename)
    with _library_errors(label, path):
        meta = parsed.metadata
        columns = list(loaded.columns)
        columns += [c for c in meta.columns if c not in columns]
        id_candidates = tuple(_id_candidates(meta))
        preview = _preview(parsed.vectors, meta, loaded.vector_column)
    return FileInspection(
        format=loaded.format,
        n_rows=int(parsed.vectors.shape[0]),
        dim=int(parsed.vectors.shape[1]),
        columns=tuple(str(c) for c in columns),
        vector_candidates=loaded.vector_candidates,
        numeric_columns=loaded.numeric_columns,
        id_candidates=id_candidates,
        preview=preview,
        warnings=parsed.warnings,
        default_vector_columns=tuple(loaded.vector_names) if loaded.numeric_columns else (),
    )


def read_query_vector(
    source: bytes | str | os.PathLike[str],
    *,
    label: str = "the vector file",
    dim: int | None = None,
) -> np.ndarray:
    """Read one query vector from a ``.npy`` file (bytes or a path), without pickle.

    For the Neighbours page's "upload a vector" and ``embscope neighbours --vector-file``:
    the header is checked before any data is read, so a pickle, an ``.npz`` archive renamed
    ``.npy``, or a header declaring a huge array is refused with a message rather than
    loaded.

    Parameters
    ----------
    source : bytes or str or PathLike
        The file's content, or its path.
    label : str
        How messages name the file.
    dim : int, optional
        The dimension the vector must have.

    Returns
    -------
    numpy.ndarray
        float32, shape (d,), every value finite.

    Raises
    ------
    InvalidInputError
        Not a .npy file, not one numeric vector, too large, wrong dimension, NaN/inf.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[: MAX_QUERY_VECTOR_BYTES + 1])
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"no such vector file: {path}")
        with open(path, "rb") as fh:
            data = fh.read(MAX_QUERY_VECTOR_BYTES + 1)
    if len(data) > MAX_QUERY_VECTOR_BYTES:
        raise InvalidInputError(
            f"{label} is larger than {_mib(MAX_QUERY_VECTOR_BYTES)}: a query is one vector; "
            "save it with np.save(path, v) where v has shape (d,)"
        )
    if data.startswith(b"PK"):
        raise InvalidInputError(
            f"{label} is a zip archive (.npz), not a .npy file: save the one vector with "
            "np.save(path, v)"
        )
    fh = io.BytesIO(data)
    shape, _fortran, dtype = _npy_header(fh, label, "the file")
    problem = _dtype_problem(dtype)
    if problem:
        raise InvalidInputError(f"{label}: the array {problem}")
    if len(shape) == 2 and shape[0] == 1:
        shape = (shape[1],)
    if len(shape) != 1:
        raise InvalidInputError(
            f"{label} holds an array of shape {shape}: give one vector, shape (d,) or (1, d)"
        )
    count = shape[0]
    body = data[fh.tell() :]
    if len(body) != count * dtype.itemsize:
        raise InvalidInputError(
            f"{label} is truncated or padded: a vector of {count} {dtype} values needs "
            f"{count * dtype.itemsize:,} bytes after the header, the file has {len(body):,}"
        )
    with np.errstate(over="ignore"):
        vec = np.frombuffer(body, dtype=dtype, count=count).astype(np.float32)
    if count == 0:
        raise InvalidInputError(f"{label} holds an empty vector")
    if not np.isfinite(vec).all():
        raise InvalidInputError(
            f"{label} holds NaN or infinite values (or numbers beyond float32's range)"
        )
    if dim is not None and count != dim:
        raise InvalidInputError(
            f"{label} holds a vector of {count} values, but the dataset's vectors have {dim}"
        )
    return vec


# -- dispatch and shared checks ------------------------------------------------------------

# Library errors a corrupt or unexpected file can raise. They are re-raised as
# InvalidInputError with the file's name, so no library traceback reaches the user.
_LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OSError,
    EOFError,
    OverflowError,
    NotImplementedError,  # zipfile: unknown compression or flags in a damaged .npz
    RuntimeError,  # h5py: damaged group or link structures in an .h5ad
    MemoryError,
    UnicodeError,
    struct.error,
    tokenize.TokenError,
    zlib.error,
    zipfile.BadZipFile,
    csv.Error,
    pa.ArrowException,
)

_FORMAT_NAMES = {
    ".npy": "a NumPy .npy file",
    ".npz": "a NumPy .npz archive",
    ".parquet": "a Parquet file",
    ".csv": "CSV text",
    ".tsv": "tab-separated text",
    ".txt": "delimited text",
    ".jsonl": "JSON Lines",
    ".json": "JSON",
    ".h5ad": "an AnnData .h5ad (HDF5) file",
}


def _suffix(label: str, path: Path, allowed: Sequence[str], role: str) -> str:
    suffix = Path(label).suffix.lower() or path.suffix.lower()
    if suffix not in allowed:
        raise InvalidInputError(
            f"{label!r}: {role} files must end in one of {', '.join(allowed)} "
            f"(got {suffix or 'no suffix'}); rename or convert the file"
        )
    return suffix


def _open_check(path: Path, label: str) -> int:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInputError(f"{label}: cannot be opened ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise InvalidInputError(f"{label} is a directory, not a file")
    if size == 0:
        raise InvalidInputError(
            f"{label} is empty (0 bytes): upload the file that holds the vectors"
        )
    return size


def _load(
    path: Path,
    label: str,
    *,
    id_column: str | None,
    vector_column: str | None,
    vector_columns: Sequence[str] | None,
) -> _Loaded:
    suffix = _suffix(label, path, SUPPORTED_SUFFIXES, "vectors")
    size = _open_check(path, label)
    with _budget().file(label, size):
        return _load_file(path, label, suffix, id_column, vector_column, vector_columns)


def _load_file(
    path: Path,
    label: str,
    suffix: str,
    id_column: str | None,
    vector_column: str | None,
    vector_columns: Sequence[str] | None,
) -> _Loaded:
    if vector_columns is not None:
        vector_columns = [str(c) for c in vector_columns]
        if not vector_columns:
            raise InvalidInputError("vector_columns is empty: choose at least one numeric column")
        if vector_column is not None:
            raise InvalidInputError(
                f"give either vector_column ({vector_column!r}) or vector_columns, not both"
            )
    if vector_columns is not None and suffix in (".npy", ".npz", ".jsonl", ".json", ".h5ad"):
        raise InvalidInputError(
            f"{label}: vector_columns applies to CSV/TSV and Parquet files only; "
            "for this format choose the array with vector_column"
        )
    with _library_errors(label, path):
        if suffix == ".npy":
            if vector_column is not None:
                raise InvalidInputError(
                    f"{label}: a .npy file holds a single array, so there is no vector column "
                    f"to choose ({vector_column!r}); leave vector_column unset"
                )
            return _read_npy(path, label)
        if suffix == ".npz":
            return _read_npz(path, label, vector_column)
        if suffix == ".parquet":
            return _read_parquet(path, label, id_column, vector_column, vector_columns)
        if suffix in (".csv", ".tsv", ".txt"):
            return _read_delimited(path, label, suffix, id_column, vector_column, vector_columns)
        if suffix in (".jsonl", ".json"):
            return _read_json(path, label, suffix, vector_column)
        return _read_h5ad(path, label, vector_column)


@contextlib.contextmanager
def _library_errors(label: str, path: Path) -> Iterator[None]:
    """Re-raise a library's error as InvalidInputError naming the file."""
    try:
        yield
    except InvalidInputError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise _unreadable(label, Path(label).suffix.lower() or path.suffix.lower(), exc) from exc


def _unreadable(label: str, suffix: str, exc: BaseException) -> InvalidInputError:
    if isinstance(exc, MemoryError):
        return InvalidInputError(
            f"{label} is too large to load into memory: split it or reduce its dimension first"
        )
    kind = _FORMAT_NAMES.get(suffix, "a supported file")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInputError(
        f"{label} could not be read as {kind} ({detail}). The file may be truncated, "
        f"corrupt or of another format: re-export it and check that its suffix is {suffix}"
    )


def _assemble(
    path: Path,
    label: str,
    loaded: _Loaded,
    metadata_path: str | os.PathLike[str] | None,
    id_column: str | None,
    metadata_filename: str | None = None,
) -> ParsedDataset:
    vectors, vec_warnings = _finish_vectors(loaded, label)
    n = vectors.shape[0]
    meta = loaded.metadata
    warnings = list(loaded.warnings) + vec_warnings
    source = label
    if metadata_path is not None:
        metadata_path = Path(metadata_path)
        meta_label = metadata_filename or metadata_path.name
        source = f"{label} + {meta_label}"
        file_meta, meta_warnings = _read_metadata_file(metadata_path, meta_label, n)
        warnings += meta_warnings
        meta = _merge_metadata(
            meta, file_meta, label, meta_label, id_column, loaded.where, warnings
        )
    _check_column_names(meta, source)
    ids = _make_ids(meta, id_column, n, label, loaded)
    meta = meta.reset_index(drop=True)
    return ParsedDataset(
        vectors=vectors,
        ids=ids,
        metadata=meta,
        warnings=tuple(dict.fromkeys(warnings)),
        source=source,
        format=loaded.format,
        id_column=id_column,
        vector_column=loaded.vector_column,
    )


def _check_column_names(meta: pd.DataFrame, label: str) -> None:
    """Column names are kept verbatim (quotes, SQL, markup and all) except a NUL, which the
    database would silently cut the name at."""
    bad = [str(c) for c in meta.columns if "\x00" in str(c)]
    if bad:
        raise InvalidInputError(
            f"{label}: column name {bad[0]!r} contains a NUL character (\\x00), which the "
            "database cannot keep in a name: rename the column"
        )


def _dtype_problem(dtype: np.dtype) -> str | None:
    """Why an array of this dtype cannot be vectors (None: it can)."""
    if dtype.hasobject:
        return (
            "holds Python objects (a pickle), which embscope never loads; save a numeric "
            "array instead, e.g. np.save(path, np.asarray(X, dtype=np.float32))"
        )
    kind = dtype.kind
    if kind == "c":
        return (
            "holds complex numbers; embscope needs real vectors: keep the real part "
            "(X.real), the magnitude (np.abs(X)) or stack both (np.hstack([X.real, X.imag]))"
        )
    if kind in "US":
        return "holds text, not numbers: convert it with X.astype(np.float32) before saving"
    if kind == "V":
        return "is a structured (record) array; save the numeric fields as one plain 2-D array"
    if kind in "mM":
        return "holds dates or times, not numbers"
    if kind not in "fiub":
        return f"has dtype {dtype}, which is not a number type"
    return None


def _shape_problem(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 2:
        return None
    if len(shape) == 0:
        return "is a single number (0-D), not a matrix of vectors"
    if len(shape) == 1:
        return (
            f"is 1-D (shape {shape}); vectors must be a 2-D array of n rows and d columns: "
            "for one vector use X.reshape(1, -1), for n numbers X.reshape(-1, 1)"
        )
    return (
        f"is {len(shape)}-D (shape {shape}); vectors must be 2-D (n rows, d columns): "
        "flatten the trailing axes with X.reshape(len(X), -1) or pick one slice"
    )


def _finish_vectors(loaded: _Loaded, label: str) -> tuple[np.ndarray, list[str]]:
    """Check the raw matrix and return it as float32 C-contiguous, with warnings."""
    raw = loaded.vectors
    what = f"{label}: {loaded.what}"
    problem = _shape_problem(raw.shape) or _dtype_problem(raw.dtype)
    if problem:
        raise InvalidInputError(f"{what} {problem}")
    n, d = raw.shape
    if n == 0:
        raise InvalidInputError(f"{what} has 0 rows: there are no vectors to store")
    if d == 0:
        raise InvalidInputError(
            f"{what} has 0 columns (d = 0): each vector needs at least one value"
        )
    warnings: list[str] = []
    kind = raw.dtype.kind
    if loaded.declared_dtype:
        if kind in "iu":
            warnings.append(f"integer vectors ({raw.dtype}) were converted to float32")
        elif kind == "b":
            warnings.append("boolean vectors were converted to float32 (0.0 and 1.0)")
        elif raw.dtype.itemsize > 4:
            warnings.append(
                f"vectors were converted from {raw.dtype} to float32, the precision embscope "
                "stores (about 7 significant digits)"
            )
    if raw.ndim == 2 and raw.flags.f_contiguous and not raw.flags.c_contiguous:
        warnings.append(
            "the array was stored in Fortran (column-major) order; it was converted to row-major"
        )
    owned = (
        type(raw) is np.ndarray
        and raw.dtype == np.float32
        and raw.flags.c_contiguous
        and raw.flags.owndata
        and raw.flags.writeable
    )
    # One copy at most: from the mmap'd .npy, an Arrow buffer, or a converted dtype.
    if not owned:
        _budget().take(n * d * 4, f"the {n:,} x {d:,} float32 vectors")
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported just below
        vectors = raw if owned else np.array(raw, dtype=np.float32, order="C")
    # float64 row sums of float32 values cannot overflow, and NaN/inf propagate into them,
    # so one pass finds exactly the rows with a non-finite value.
    with np.errstate(invalid="ignore", over="ignore"):
        sums = vectors.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(sums))
    if bad.size:
        raise InvalidInputError(_nonfinite_message(raw, vectors, bad, label, loaded))
    warnings += _content_warnings(vectors, loaded.where)
    return vectors, warnings


def _nonfinite_message(
    raw: np.ndarray, vectors: np.ndarray, bad: np.ndarray, label: str, loaded: _Loaded
) -> str:
    sample = vectors[bad[:1000]]
    kinds = []
    if np.isnan(sample).any():
        kinds.append("NaN (not a number)")
    if np.isinf(sample).any():
        kinds.append("infinite")
    overflow = False
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 4:
        overflow = bool(np.isfinite(np.asarray(raw[bad[:1000]], dtype=np.float64)).all())
    if overflow:
        what = "values too large for float32 (beyond ±3.4e38)"
        how = "rescale the vectors (for example divide by their largest absolute value)"
    else:
        what = " or ".join(kinds) + " values"
        how = "every value must be a finite number: fix or drop those rows"
        if not loaded.declared_dtype and np.isinf(sample).any():
            what += " (or numbers beyond float32's ±3.4e38)"
    where = f"in {_count(int(bad.size), 'row')}: {loaded.where.many(bad)}"
    columns = ""
    if loaded.vector_names:
        cols = np.flatnonzero(~np.isfinite(sample).all(axis=0))
        names = [loaded.vector_names[c] for c in cols[:_LISTED]]
        columns = f", in column{'s' if len(cols) > 1 else ''} {_quote_list(names)}"
        if len(cols) > _LISTED:
            columns += f" and {len(cols) - _LISTED} more"
        how += (
            "; if such a column is metadata rather than part of the vector, leave it out "
            "of vector_columns"
        )
    return f"{label}: {what} {where}{columns}. {how[0].upper()}{how[1:]}"


def _duplicate_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows equal to an earlier row, and for each the earlier row it repeats."""
    n = vectors.shape[0]
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows = vectors
    if (np.signbit(vectors) & (vectors == 0)).any():
        rows = vectors + np.float32(0)  # -0.0 + 0.0 == +0.0: equal vectors, equal bytes
    # Hashing each row's bytes is ~25x faster than np.unique(axis=0) at 100k x 384;
    # candidate pairs are then compared exactly, so a hash collision cannot mislead.
    hashes = np.fromiter((hash(r.tobytes()) for r in rows), dtype=np.int64, count=n)
    _, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    first = first_index[inverse]
    cand = np.flatnonzero(first != np.arange(n))
    if cand.size == 0:
        return cand, cand
    same = (rows[cand] == rows[first[cand]]).all(axis=1)
    return cand[same], first[cand][same]


def _content_warnings(vectors: np.ndarray, where: _Where) -> list[str]:
    n, d = vectors.shape
    warnings = []
    if n == 1:
        warnings.append("only one row: neighbours, projections and scores need more vectors")
    elif n == 2:
        warnings.append("only two rows: neighbours, projections and scores need more vectors")
    if d == 1:
        warnings.append(
            "the vectors have a single dimension (d = 1): projections are trivial and cosine "
            "similarity is only ever +1 or -1"
        )
    zero = np.flatnonzero(~vectors.any(axis=1))
    if zero.size:
        warnings.append(
            f"{_count(int(zero.size), 'vector')} {'is' if zero.size == 1 else 'are'} all "
            f"zeros, so cosine similarity is undefined for {'it' if zero.size == 1 else 'them'}: "
            f"{where.many(zero)}"
        )
    dup, orig = _duplicate_rows(vectors)
    if dup.size:
        warnings.append(
            f"{_count(int(dup.size), 'vector')} exactly repeat{'s' if dup.size == 1 else ''} "
            f"an earlier row (for example {where.one(int(dup[0]))} repeats "
            f"{where.one(int(orig[0]))}): their neighbours are tied"
        )
    return warnings


# -- ids and metadata -----------------------------------------------------------------------


def _is_text_dtype(dtype: Any) -> bool:
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def _id_strings(col: pd.Series) -> np.ndarray:
    values = col.to_numpy(dtype=object, na_value=None)
    if pd.api.types.is_float_dtype(col.dtype):
        # 3.0 read from a float column is the id "3", as the user wrote it in an int column.
        return np.array(
            [str(int(v)) if v is not None and float(v).is_integer() else str(v) for v in values],
            dtype=object,
        )
    return np.array([str(v) for v in values], dtype=object)


def _make_ids(
    meta: pd.DataFrame, id_column: str | None, n: int, label: str, loaded: _Loaded
) -> np.ndarray:
    # Ids are Python strings, one per row: a tall, thin file costs more in ids than vectors.
    _budget().take(n * (_PY_STR_BYTES + 32), f"the ids of {n:,} rows")
    if id_column is None:
        return np.arange(n).astype(str).astype(object)
    if id_column not in meta.columns:
        if id_column == loaded.vector_column or id_column in loaded.vector_names:
            raise InvalidInputError(
                f"{label}: {id_column!r} holds the vectors, so it cannot also be the id "
                "column: choose another column or use row numbers"
            )
        raise InvalidInputError(
            f"{label}: there is no column {id_column!r} to take ids from; available "
            f"columns: {_quote_list(meta.columns)}. Choose one of them or use row numbers"
        )
    col = meta[id_column]
    missing = col.isna().to_numpy()
    if _is_text_dtype(col.dtype):
        missing = missing | (col.astype(object) == "").to_numpy()
    bad = np.flatnonzero(missing)
    if bad.size:
        raise InvalidInputError(
            f"{label}: id column {id_column!r} is empty or missing in "
            f"{_count(int(bad.size), 'row')} ({loaded.where.many(bad)}); every row needs an "
            "id: fill them in or use row numbers as ids"
        )
    ids = _id_strings(col)
    series = pd.Series(ids)
    dup_mask = series.duplicated(keep=False).to_numpy()
    if dup_mask.any():
        groups = series[dup_mask].groupby(series[dup_mask], sort=False).groups
        listed = []
        for value, index in list(groups.items())[:_LISTED]:
            listed.append(f"{_short(value)} at {loaded.where.many(np.asarray(index))}")
        more = f" and {len(groups) - _LISTED} more" if len(groups) > _LISTED else ""
        raise InvalidInputError(
            f"{label}: id column {id_column!r} has {_count(len(groups), 'duplicated value')}: "
            f"{'; '.join(listed)}{more}. Ids must be unique: choose another column, fix the "
            "duplicates, or use row numbers"
        )
    return ids


def _id_candidates(meta: pd.DataFrame) -> list[str]:
    out = []
    for name in meta.columns:
        col = meta[name]
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            continue
        if not (pd.api.types.is_integer_dtype(dtype) or _is_text_dtype(dtype)):
            continue
        if col.isna().any():
            continue
        if _is_text_dtype(dtype) and (col.astype(object) == "").any():
            continue
        if len(pd.Series(_id_strings(col)).unique()) == len(col):
            out.append(str(name))
    return out


def _merge_metadata(
    own: pd.DataFrame,
    other: pd.DataFrame,
    label: str,
    meta_label: str,
    id_column: str | None,
    where: _Where,
    warnings: list[str],
) -> pd.DataFrame:
    """Put the metadata file's columns beside the vectors file's own metadata."""
    if id_column is not None and id_column in own.columns and id_column in other.columns:
        left = _id_strings(own[id_column])
        right = _id_strings(other[id_column])
        differ = np.flatnonzero(left != right)
        if differ.size:
            first = int(differ[0])
            hint = (
                "the same ids appear in a different order: sort the metadata file into the "
                "vectors' order"
                if sorted(left) == sorted(right)
                else "both files must list the same items in the same order"
            )
            raise InvalidInputError(
                f"ids in column {id_column!r} differ between {label} and {meta_label} in "
                f"{_count(int(differ.size), 'row')} ({where.many(differ)}); the first is "
                f"{_short(left[first])} vs {_short(right[first])}: {hint}"
            )
        other = other.drop(columns=[id_column])
    out = own.reset_index(drop=True).copy()
    lower = {str(c).lower() for c in out.columns}
    for name in other.columns:
        col = other[name].reset_index(drop=True)
        if name in out.columns and out[name].equals(col):
            continue
        new = str(name)
        if new.lower() in lower:
            base = f"{name}_metadata"
            new, k = base, 2
            while new.lower() in lower:
                new, k = f"{base}_{k}", k + 1
            warnings.append(
                f"column {name!r} is in both {label} and {meta_label} with different values; "
                f"the metadata file's column is kept as {new!r}"
            )
        out[new] = col
        lower.add(new.lower())
    return out


def _preview(vectors: np.ndarray, meta: pd.DataFrame, vector_column: str | None) -> pd.DataFrame:
    k = min(PREVIEW_ROWS, vectors.shape[0])
    d = vectors.shape[1]

    def shorten(row: np.ndarray) -> str:
        head = ", ".join(f"{v:.4g}" for v in row[:4])
        return f"[{head}, … ({d} values)]" if d > 4 else f"[{head}]"

    name = vector_column or "vector"
    if name in meta.columns:
        name = f"{name} (vector)"
    frame = meta.iloc[:k].reset_index(drop=True).copy()
    frame.insert(0, name, [shorten(r) for r in vectors[:k]])
    return frame


# -- typed columns ------------------------------------------------------------------------


def _is_vector_type(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        v = t.value_type
        return pa.types.is_floating(v) or pa.types.is_integer(v)
    return False


def _arrow_series(
    name: str, col: pa.ChunkedArray | pa.Array, *, empty_text: bool = False
) -> pd.Series:
    """One metadata column as a typed pandas Series, text kept exactly."""
    t = col.type
    budget = _budget()
    if pa.types.is_dictionary(t):
        # Parquet text is read as dictionaries; a value repeated n times is n values here,
        # an expansion of what the file stores like any other decompression.
        decoded = _decoded_nbytes(col)
        budget.inflate(decoded, f"column {name!r}")
        value_type = t.value_type
        large = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}.get(value_type)
        if decoded >= 2**31 and large is not None:
            # Past 2 GiB the values need 64-bit offsets: widen the dictionary, then decode.
            chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
            col = pa.chunked_array(
                [pc.take(c.dictionary.cast(large), c.indices) for c in chunks], type=large
            )
        else:
            col = col.cast(value_type)
        t = col.type
    if pa.types.is_null(t):
        fill = "" if empty_text else None
        return pd.Series([fill] * len(col), dtype="str", name=name)
    if pa.types.is_nested(t):
        # Shown as JSON text built from Python objects: tens of bytes per value.
        budget.take(
            _decoded_nbytes(col) * 2 + _leaf_count(col) * 48 + len(col) * 2 * _PY_STR_BYTES,
            f"column {name!r}",
        )
        values = [
            None if v is None else json.dumps(v, ensure_ascii=False, default=str)
            for v in col.to_pylist()
        ]
        return pd.Series(values, dtype="str", name=name)
    if col.null_count and pa.types.is_integer(t):
        return pd.Series(col.to_pandas(types_mapper=lambda _t: pd.Int64Dtype()), name=name)
    if col.null_count and pa.types.is_boolean(t):
        return pd.Series(col.to_pandas(types_mapper=lambda _t: pd.BooleanDtype()), name=name)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            col.validate(full=True)  # Parquet can carry invalid UTF-8; fail here, not later
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(
                f"column {name!r} holds text that is not valid UTF-8; the file may be corrupt: "
                "re-export it"
            ) from exc
        # Straight into pandas' Arrow-backed str dtype: no Python object per cell (a column
        # of one-letter cells would cost ~60 bytes per byte of text as objects).
        return pd.Series(col.to_pandas(types_mapper=_TEXT_TYPES.get), name=name)
    return pd.Series(col.to_pandas(), name=name)


_TEXT_TYPES = {pa.string(): pd.Series([], dtype="str").dtype}
_TEXT_TYPES[pa.large_string()] = _TEXT_TYPES[pa.string()]


def _decoded_nbytes(arr: pa.Array | pa.ChunkedArray) -> int:
    """Bytes ``arr`` takes once its dictionaries are decoded (every repeat spelled out)."""
    if isinstance(arr, pa.ChunkedArray):
        return sum(_decoded_nbytes(c) for c in arr.chunks)
    t = arr.type
    if pa.types.is_dictionary(t):
        values = arr.dictionary
        if len(arr) == 0 or len(values) == 0:
            return 4 * len(arr)
        if (
            pa.types.is_string(values.type)
            or pa.types.is_large_string(values.type)
            or (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type))
        ):
            sizes = pc.fill_null(pc.binary_length(values), 0).cast(pa.int64())
        else:
            per = _decoded_nbytes(values) // len(values) + 1
            sizes = pa.array(np.full(len(values), per, dtype=np.int64))
        taken = pc.take(sizes, arr.indices)
        return int(pc.sum(taken).as_py() or 0) + 8 * len(arr)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _decoded_nbytes(arr.flatten()) + 8 * len(arr)
    if pa.types.is_struct(t):
        return sum(_decoded_nbytes(child) for child in arr.flatten()) + len(arr)
    if pa.types.is_map(t):
        return _decoded_nbytes(arr.keys) + _decoded_nbytes(arr.items) + 8 * len(arr)
    return int(arr.nbytes)


def _leaf_count(arr: pa.Array | pa.ChunkedArray) -> int:
    """How many leaf values a nested column holds (each becomes a Python object)."""
    if isinstance(arr, pa.ChunkedArray):
        return sum(_leaf_count(c) for c in arr.chunks)
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaf_count(arr.flatten()) + len(arr)
    if pa.types.is_struct(t):
        return sum(_leaf_count(child) for child in arr.flatten()) + len(arr)
    if pa.types.is_map(t):
        return _leaf_count(arr.keys) + _leaf_count(arr.items) + len(arr)
    return len(arr)


def _arrow_frame(table: pa.Table, n: int, *, empty_text: bool = False) -> pd.DataFrame:
    data = {
        name: _arrow_series(name, table.column(i), empty_text=empty_text).reset_index(drop=True)
        for i, name in enumerate(table.column_names)
    }
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _py_series(name: str, values: list[Any]) -> tuple[pd.Series, str | None]:
    """A metadata column from Python values (JSON), typed like the values; nested as JSON text."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds & {dict, list}:
        text = [
            None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for v in values
        ]
        return pd.Series(text, dtype="str", name=name), None
    if not present:
        return pd.Series(values, dtype="str", name=name), None
    if kinds == {bool}:
        dtype = "bool" if len(present) == len(values) else "boolean"
        return pd.Series(values, dtype=dtype, name=name), None
    if kinds == {int}:
        if all(-(2**63) <= v < 2**63 for v in present):
            dtype = "int64" if len(present) == len(values) else "Int64"
            return pd.Series(values, dtype=dtype, name=name), None
    if kinds <= {int, float}:
        return pd.Series(
            [math.nan if v is None else float(v) for v in values], dtype="float64", name=name
        ), None
    if kinds == {str}:
        return pd.Series(values, dtype="str", name=name), None
    text = [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]
    return pd.Series(text, dtype="str", name=name), (
        f"field {name!r} mixes kinds of values ({', '.join(sorted(k.__name__ for k in kinds))}); "
        "it was kept as text"
    )


# -- .npy -------------------------------------------------------------------------------------


def _npy_header(fh: Any, label: str, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
    except ValueError as exc:
        raise InvalidInputError(
            f"{label}: {what} is not a NumPy .npy array (it does not start with the .npy "
            "signature); save the vectors with numpy.save(path, X)"
        ) from exc
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InvalidInputError(
                f"{label}: {what} uses .npy format version {version[0]}.{version[1]}, which is "
                "only needed for structured arrays; save a plain float array with numpy.save"
            )
    except (ValueError, SyntaxError, EOFError, tokenize.TokenError) as exc:
        raise InvalidInputError(
            f"{label}: {what} has a corrupt or truncated .npy header; re-save it with numpy.save"
        ) from exc
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def _read_npy(path: Path, label: str) -> _Loaded:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        shape, _fortran, dtype = _npy_header(fh, label, "the file")
        offset = fh.tell()
    problem = _dtype_problem(dtype) or _shape_problem(shape)
    if problem:
        raise InvalidInputError(f"{label}: the array {problem}")
    needed = offset + math.prod(shape) * dtype.itemsize
    if size < needed:
        raise InvalidInputError(
            f"{label} is truncated: a {shape[0]} x {shape[1]} {dtype} array needs {needed:,} "
            f"bytes but the file has {size:,}; upload the complete file"
        )
    if math.prod(shape) == 0:
        arr = np.empty(shape, dtype=dtype)
    else:
        # mmap then one astype copy: no intermediate copy of a large file.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return _Loaded(
        format="npy",
        vectors=arr,
        metadata=pd.DataFrame(index=pd.RangeIndex(shape[0])),
        where=_Where(),
        what="the array",
    )


# -- .npz -------------------------------------------------------------------------------------


def _read_npz(path: Path, label: str, vector_column: str | None) -> _Loaded:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(
            f"{label} is not a valid .npz archive (not a zip file, or truncated); "
            "save the arrays with numpy.savez(path, vectors=X)"
        ) from exc
    with zf:
        headers: dict[str, tuple[tuple[int, ...], np.dtype, zipfile.ZipInfo]] = {}
        for info in zf.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as fh:
                shape, _fortran, dtype = _npy_header(fh, label, f"array {key!r}")
                offset = fh.tell()
            needed = offset + math.prod(shape) * dtype.itemsize
            if not dtype.hasobject and info.file_size < needed:
                raise InvalidInputError(
                    f"{label}: array {key!r} is truncated ({info.file_size:,} of {needed:,} "
                    "bytes); re-save the archive"
                )
            headers[key] = (shape, dtype, info)
        if not headers:
            raise InvalidInputError(f"{label}: the .npz archive holds no arrays")
        usable = [
            k
            for k, (shape, dtype, _i) in headers.items()
            if len(shape) == 2 and _dtype_problem(dtype) is None
        ]
        floats = [k for k in usable if headers[k][1].kind == "f"]
        ordered = floats + [k for k in usable if k not in floats]
        warnings: list[str] = []
        if vector_column is not None:
            key = vector_column
            if key not in headers and key.endswith(".npy"):
                key = key[:-4]
            if key not in headers:
                raise InvalidInputError(
                    f"{label}: the archive has no array {vector_column!r}; arrays usable as "
                    f"vectors: {_quote_list(ordered)} (all arrays: {_quote_list(headers)})"
                )
            shape, dtype, _info = headers[key]
            problem = _dtype_problem(dtype) or _shape_problem(shape)
            if problem:
                raise InvalidInputError(
                    f"{label}: array {key!r} {problem}. Arrays usable as vectors: "
                    f"{_quote_list(ordered)}"
                )
        else:
            if not ordered:
                reasons = "; ".join(
                    f"{k!r} {(_dtype_problem(dt) or _shape_problem(sh) or '').split(';')[0]}"
                    for k, (sh, dt, _i) in headers.items()
                )
                raise InvalidInputError(
                    f"{label}: no array in the archive can be the vectors (a 2-D array of "
                    f"numbers is needed): {reasons}"
                )
            key = ordered[0]
            if len(ordered) > 1:
                warnings.append(
                    f"the archive holds several 2-D arrays ({_quote_list(ordered)}); {key!r} "
                    "was used: choose another with vector_column"
                )
        shape, dtype, info = headers[key]
        vectors = _read_npz_entry(zf, info, shape, dtype, f"array {key!r}")
        n = shape[0]
        # 1-D arrays with one value per row are metadata (labels saved beside the vectors).
        columns: dict[str, pd.Series] = {}
        for other, (oshape, odtype, oinfo) in headers.items():
            if other == key or len(oshape) != 1 or oshape[0] != n:
                continue
            if odtype.hasobject:
                warnings.append(
                    f"array {other!r} holds Python objects (a pickle) and was not loaded"
                )
                continue
            if odtype.kind not in "biufUS":
                continue
            if odtype.kind in "US":  # becomes one Python str per row
                _budget().take(n * (_PY_STR_BYTES + odtype.itemsize), f"the text of {other!r}")
            arr = _read_npz_entry(zf, oinfo, oshape, odtype, f"array {other!r}")
            if odtype.kind == "S":
                try:
                    arr = np.array([b.decode("utf-8") for b in arr], dtype=object)
                except UnicodeDecodeError:
                    warnings.append(f"array {other!r} is not UTF-8 text and was not kept")
                    continue
            if arr.dtype.kind in "US" or arr.dtype == object:
                columns[other] = pd.Series(arr.tolist(), dtype="str")
            else:
                columns[other] = pd.Series(arr)
    meta = pd.DataFrame(columns, index=pd.RangeIndex(n))
    return _Loaded(
        format="npz",
        vectors=vectors,
        metadata=meta,
        where=_Where(),
        vector_column=key,
        vector_candidates=tuple(ordered),
        columns=tuple(meta.columns),
        warnings=warnings,
        what=f"array {key!r}",
    )


class _CappedReader(io.RawIOBase):
    """A read-only stream that refuses to yield more than ``cap`` bytes.

    zipfile already stops an entry at its declared size; this makes the bound ours, so an
    entry whose header lies about its size still cannot produce more than was budgeted.
    """

    def __init__(self, raw: Any, cap: int, label: str):
        super().__init__()
        self._raw, self._left, self._label = raw, int(cap), label

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left + 1  # one byte more than allowed reveals an overlong entry
        data = self._raw.read(size)
        if len(data) > self._left:
            raise InvalidInputError(
                f"{self._label} holds more data than its header declares; the archive is "
                "corrupt or crafted: re-save it with numpy.savez"
            )
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_npz_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype, what: str
) -> np.ndarray:
    """One array of an archive, its decompressed size counted (and capped) before reading."""
    budget = _budget()
    nbytes = math.prod(shape) * dtype.itemsize
    budget.inflate(nbytes, what, stored=info.compress_size)
    with zf.open(info) as raw:
        capped = _CappedReader(raw, nbytes + _NPY_HEADER_MAX, f"{budget.label}: {what}")
        return np.lib.format.read_array(capped, allow_pickle=False)


# -- Parquet ----------------------------------------------------------------------------------


def _list_matrix(col: pa.ChunkedArray, name: str, label: str, where: _Where) -> np.ndarray:
    """A list/fixed-size-list column of numbers as an (n, d) array; refuses null or ragged rows."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(arr)
    if arr.null_count:
        rows = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
        raise InvalidInputError(
            f"{label}: column {name!r} has no vector (null) in {_count(int(rows.size), 'row')}: "
            f"{where.many(rows)}. Every row needs a vector: fill or drop those rows"
        )
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    if n and (lengths != lengths[0]).any():
        d = int(np.bincount(lengths).argmax())
        rows = np.flatnonzero(lengths != d)
        sample = ", ".join(f"{where.one(int(r))} has {lengths[r]}" for r in rows[:_LISTED])
        raise InvalidInputError(
            f"{label}: vectors in column {name!r} have different lengths: most have {d} values "
            f"but {_count(int(rows.size), 'row')} {'differs' if rows.size == 1 else 'differ'} ({sample}"
            f"{' …' if rows.size > _LISTED else ''}). All vectors must have the same length"
        )
    values = arr.flatten()
    if values.null_count:
        pos = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        rows = np.unique(np.repeat(np.arange(n), lengths)[pos])
        raise InvalidInputError(
            f"{label}: column {name!r} has null values inside the vectors of "
            f"{_count(int(rows.size), 'row')}: {where.many(rows)}. Fill them in or drop those rows"
        )
    d = int(lengths[0]) if n else 0
    return values.to_numpy(zero_copy_only=False).reshape(n, d)


def _pick_vector(candidates: Sequence[str]) -> str:
    for preferred in _VECTOR_NAMES:
        for c in candidates:
            if c.lower() == preferred:
                return c
    return candidates[0]


def _order_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    if not candidates:
        return ()
    first = _pick_vector(candidates)
    return (first, *[c for c in candidates if c != first])


# Bytes per value of Parquet's fixed-width physical types once decoded by Arrow.
_PARQUET_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 8, "FLOAT": 4, "DOUBLE": 8}
_PARQUET_BATCH_BYTES = 32 * 2**20  # aim for batches of about this size when streaming


def _parquet_decoded_estimate(md: Any) -> int:
    """Bytes the file decodes to, from its footer: never less than values x width per column.

    ``total_uncompressed_size`` alone misses run-length and dictionary encoding, which can
    turn a few bytes into a billion equal values; ``num_values`` times the value width
    cannot.
    """
    total = 0
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        for j in range(rg.num_columns):
            col = rg.column(j)
            kind = col.physical_type
            width = _PARQUET_WIDTH.get(kind, 0)
            if kind == "FIXED_LEN_BYTE_ARRAY":
                width = max(int(md.schema.column(j).length or 0), 1)
            total += max(int(col.total_uncompressed_size), int(col.num_values) * width)
    return total


def _parquet_text_leaves(md: Any) -> list[str]:
    """Leaf column paths of text/binary values, read as dictionaries so that a value repeated
    a million times is held once (its expansion is counted before any cast, in _arrow_series)."""
    out = []
    for j in range(md.num_columns):
        col = md.schema.column(j)
        if col.physical_type == "BYTE_ARRAY" and col.logical_type.type in (
            "NONE",
            "STRING",
            "JSON",
            "ENUM",
            "BSON",
        ):
            out.append(col.path)
    return out


def _read_parquet_table(path: Path, label: str) -> pa.Table:
    """A Parquet file as a table, within the read budget and the expansion ratio.

    The footer's sizes are checked before reading; then the file is read in batches whose
    real size is counted as they arrive, so a footer that understates the data stops the
    read at the limit rather than at the end of memory.
    """
    budget = _budget()
    try:
        with _open_binary(path) as fh:
            md = pq.ParquetFile(fh).metadata
            estimate = _parquet_decoded_estimate(md)
            budget.inflate(estimate, "its columns (as its footer declares them)", commit=False)
            pf = pq.ParquetFile(fh, metadata=md, read_dictionary=_parquet_text_leaves(md))
            schema = pf.schema_arrow
            n_rows = max(int(md.num_rows), 1)
            rows = int(min(max(_PARQUET_BATCH_BYTES * n_rows // max(estimate, 1), 64), 1 << 16))
            batches = []
            for batch in pf.iter_batches(batch_size=rows):
                budget.inflate(batch.nbytes, "its columns")
                batches.append(batch)
            table = pa.Table.from_batches(batches, schema=schema)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(
            f"{label} is not a readable Parquet file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-export it, e.g. with DataFrame.to_parquet"
        ) from exc
    return table


def _open_binary(path: Path) -> Any:
    """An Arrow file for ``path``: given a file, not a name, no reader guesses a compression
    from the name's suffix (pyarrow would inflate ``x.csv.gz`` read under the name x.csv)."""
    return pa.OSFile(str(path), "rb")


def _read_parquet(
    path: Path,
    label: str,
    id_column: str | None,
    vector_column: str | None,
    vector_columns: Sequence[str] | None,
) -> _Loaded:
    table = _read_parquet_table(path, label)
    # A pandas index saved by to_parquet is a real column here: keep it, named sensibly.
    names = list(table.column_names)
    if "__index_level_0__" in names and "index" not in names:
        names[names.index("__index_level_0__")] = "index"
        table = table.rename_columns(names)
    n = table.num_rows
    where = _Where()
    schema = table.schema
    list_cols = [f.name for f in schema if _is_vector_type(f.type)]
    numeric = [
        f.name
        for f in schema
        if (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        and table.column(f.name).null_count == 0
    ]
    warnings: list[str] = []
    if vector_column is not None:
        if vector_column not in names:
            raise InvalidInputError(
                f"{label}: there is no column {vector_column!r}; list columns usable as "
                f"vectors: {_quote_list(list_cols)} (all columns: {_quote_list(names)})"
            )
        t = schema.field(vector_column).type
        if not _is_vector_type(t):
            hint = (
                "; to build vectors from numeric columns pass vector_columns instead"
                if vector_column in numeric
                else ""
            )
            raise InvalidInputError(
                f"{label}: column {vector_column!r} ({t}) is not a list of numbers{hint}. "
                f"List columns usable as vectors: {_quote_list(list_cols)}"
            )
    if vector_columns is None and (vector_column is not None or list_cols):
        key = vector_column or _pick_vector(list_cols)
        if vector_column is None and len(list_cols) > 1:
            warnings.append(
                f"several list columns could be the vectors ({_quote_list(list_cols)}); "
                f"{key!r} was used: choose another with vector_column"
            )
        vectors = _list_matrix(table.column(key), key, label, where)
        rest = table.drop_columns([key])
        dropped = [c for c in list_cols if c != key]
        if dropped:
            rest = rest.drop_columns(dropped)
            warnings.append(
                f"other vector columns ({_quote_list(dropped)}) were not kept as metadata; "
                "ingest them as datasets of their own with vector_column"
            )
        meta = _arrow_frame(rest, n)
        return _Loaded(
            format="parquet",
            vectors=vectors,
            metadata=meta,
            where=where,
            vector_column=key,
            vector_candidates=_order_candidates(list_cols),
            columns=tuple(names),
            warnings=warnings,
            what=f"column {key!r}",
        )
    # No list column: numeric scalar columns are the coordinates, like a CSV with a header.
    if vector_columns is not None:
        chosen = _check_vector_columns(vector_columns, names, numeric, label)
    else:
        chosen = [c for c in numeric if c != id_column]
        if not chosen:
            raise InvalidInputError(
                f"{label}: no column holds vectors: a Parquet file needs a list column of "
                f"numbers (e.g. 'vector') or numeric columns; columns found: {_quote_list(names)}"
            )
        ints = [c for c in chosen if pa.types.is_integer(table.column(c).type)]
        if ints and len(ints) < len(chosen):
            # As for CSV: whole numbers beside float coordinates are labels, not coordinates.
            chosen = [c for c in chosen if c not in ints]
            warnings.append(
                f"integer {'columns' if len(ints) > 1 else 'column'} {_quote_list(ints, 5)} "
                "beside float columns kept as metadata, not used as vector coordinates; "
                "choose the vector columns yourself to include them"
            )
    if id_column in chosen:
        chosen.remove(id_column)
        warnings.append(f"the id column {id_column!r} was left out of the vector columns")
    kinds = {table.column(c).type for c in chosen}
    if any(pa.types.is_integer(t) for t in kinds):
        warnings.append("integer columns were converted to float32")
    if any(pa.types.is_floating(t) and t.bit_width > 32 for t in kinds):
        warnings.append("float64 columns were converted to float32, the precision embscope stores")
    vectors = _stack_columns(table, chosen)
    meta = _arrow_frame(table.drop_columns(chosen), n)
    return _Loaded(
        format="parquet",
        vectors=vectors,
        metadata=meta,
        where=where,
        numeric_columns=tuple(numeric),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        vector_names=tuple(chosen),
        what=f"columns {_quote_list(chosen, 5)}",
    )


def _check_vector_columns(
    wanted: Sequence[str], names: Sequence[str], numeric: Sequence[str], label: str
) -> list[str]:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InvalidInputError(
            f"{label}: vector column{'s' if len(missing) > 1 else ''} {_quote_list(missing)} "
            f"not found; numeric columns available: {_quote_list(numeric)}"
        )
    if len(set(wanted)) != len(wanted):
        raise InvalidInputError(f"{label}: vector_columns names a column twice")
    return list(wanted)


def _stack_columns(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    _budget().take(table.num_rows * len(columns) * 8, "the vector columns side by side")
    out = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        out[:, j] = table.column(name).to_numpy()
    return out


# -- CSV / TSV / Projector -----------------------------------------------------------------


@dataclass
class _TextHead:
    delimiter: str
    records: list[list[str]]  # the first (up to) two non-empty records
    bom: bool
    crlf: bool
    has_quotes: bool


def _text_head(path: Path, label: str, suffix: str, *, metadata: bool) -> _TextHead:
    with open(path, "rb") as fh:
        raw = fh.read(1 << 20)
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            raise InvalidInputError(
                f"{label} is {name} text; embscope reads UTF-8: save it again as UTF-8"
            )
    if b"\x00" in raw:
        raise InvalidInputError(
            f"{label} looks like a binary file, not text: check that it really is "
            f"{_FORMAT_NAMES[suffix]} (its suffix is {suffix})"
        )
    bom = raw.startswith(codecs.BOM_UTF8)
    text = (
        raw[3:].decode("utf-8", errors="replace") if bom else raw.decode("utf-8", errors="replace")
    )
    if not text.strip():
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    first_line = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    if suffix == ".tsv" or (metadata and suffix == ".txt"):
        delimiter = "\t"
    elif suffix == ".csv":
        delimiter = ","
        if "," not in first_line:
            delimiter = next((d for d in (";", "\t") if d in first_line), ",")
    else:  # .txt vectors: whatever the first line uses (np.savetxt writes spaces)
        delimiter = next((d for d in ("\t", ",", ";", " ") if d in first_line.strip()), "\t")
    records = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for rec in reader:
            if rec and any(cell != "" for cell in rec):
                records.append(rec)
                if len(records) == 2:
                    break
    except csv.Error:
        pass  # the head was cut inside a quoted field; pyarrow reads the full file below
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        has_quotes = mm.find(b'"') != -1
    return _TextHead(delimiter, records, bom, "\r\n" in text, has_quotes)


def _is_number(cell: str) -> bool:
    return bool(_NUMBER_RE.match(cell))


def _has_header(records: list[list[str]]) -> bool:
    first = records[0]
    numeric = [_is_number(c) for c in first]
    if all(numeric):
        # pandas' DataFrame(X).to_csv(index=False) writes the header 0,1,...,d-1.
        if len(records) > 1 and all(_INT_RE.match(c) for c in first):
            ints = [int(c) for c in first]
            if ints in (list(range(len(ints))), list(range(1, len(ints) + 1))) and len(ints) > 1:
                return any(not _INT_RE.match(c) for c in records[1])
        return False
    if len(records) < 2 or not any(numeric):
        return True
    # A text cell above a number is a column name; text above text in every text column,
    # with numbers beside, is a headerless file with label columns.
    second = records[1]
    return any(not a and _is_number(b) for a, b in zip(numeric, second, strict=False))


def _unique_names(raw: Sequence[str]) -> tuple[list[str], list[str]]:
    names, notes, seen = [], [], set()
    for k, name in enumerate(raw):
        new = name
        if name.strip() == "" or name == "Unnamed: 0":
            new = "index" if k == 0 else f"column_{k + 1}"
        base, j = new, 2
        while new.lower() in seen:
            new, j = f"{base}_{j}", j + 1
        if new != name:
            notes.append(f"{name!r} -> {new!r}")
        seen.add(new.lower())
        names.append(new)
    return names, notes


def _csv_records(path: Path, delimiter: str, quoting: bool) -> Iterator[tuple[int, list[str]]]:
    """(first file line, fields) of each non-blank record, as pyarrow splits the file.

    Stops quietly at a record Python's csv module cannot read (e.g. a field over its
    size limit, which is process-global and so is left alone): callers then name rows by
    number instead of by line.
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(
            fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        )
        prev = 0
        try:
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if rec and rec != [""]:
                    yield start, rec
        except csv.Error:
            return


def _csv_line_map(
    path: Path, delimiter: str, header: bool, quoting: bool, limit: int
) -> np.ndarray:
    """First file line (from 1) of each of the first ``limit`` data records, skipping blank
    lines as pyarrow does."""
    want = limit + (1 if header else 0)
    starts = [
        start for start, _rec in itertools.islice(_csv_records(path, delimiter, quoting), want)
    ]
    return np.asarray(starts[1:] if header else starts, dtype=np.int64)


def _diagnose_csv(
    path: Path, label: str, head: _TextHead, header: bool, exc: Exception
) -> InvalidInputError:
    """Find the lines behind a pyarrow CSV error (only ever run on the error path)."""
    ragged: list[tuple[int, int]] = []  # the first few only: a message names five
    n_ragged = 0
    bad_cells: list[tuple[int, int, str]] = []
    expected = None
    first_line = None
    for start, rec in _csv_records(path, head.delimiter, head.has_quotes):
        if expected is None:
            expected, first_line = len(rec), start
            if header:
                continue
        if len(rec) != expected:
            n_ragged += 1
            if len(ragged) < _LISTED:
                ragged.append((start, len(rec)))
        elif not header and len(bad_cells) < _LISTED:
            for j, cell in enumerate(rec):
                if not _is_number(cell) and cell != "":
                    bad_cells.append((start, j, cell))
                    break
    if ragged:
        shown = ", ".join(f"line {ln} has {k}" for ln, k in ragged[:_LISTED])
        more = f" and {n_ragged - _LISTED} more" if n_ragged > _LISTED else ""
        return InvalidInputError(
            f"{label}: rows have different numbers of fields: line {first_line} has {expected} "
            f"but {_count(n_ragged, 'line')} differ{'s' if n_ragged == 1 else ''} "
            f"({shown}{more}). Every row needs the same number of values: fix or remove those lines"
        )
    if bad_cells:
        shown = "; ".join(f"line {ln}, column {j + 1}: {_short(cell)}" for ln, j, cell in bad_cells)
        complex_hint = (
            "; complex numbers are not supported: keep the real part or the magnitude"
            if any(re.search(r"\dj$", cell.strip()) for _, _, cell in bad_cells)
            else ""
        )
        return InvalidInputError(
            f"{label}: cells that are not numbers ({shown}). Every vector value must be a "
            f"number (a header row, if any, must come first){complex_hint}"
        )
    return _unreadable(label, ".csv", exc)


def _read_csv_table(
    path: Path,
    label: str,
    head: _TextHead,
    *,
    header: bool,
    column_names: Sequence[str] | None,
    column_types: dict[str, pa.DataType] | None,
) -> pa.Table:
    read = pacsv.ReadOptions(
        block_size=_BLOCK,
        column_names=list(column_names) if column_names is not None and not header else None,
    )
    parse = pacsv.ParseOptions(
        delimiter=head.delimiter,
        quote_char='"' if head.has_quotes else False,
        newlines_in_values=head.has_quotes,
    )
    convert = pacsv.ConvertOptions(
        column_types=column_types or {},
        null_values=[""],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with _open_binary(path) as fh:
            table = pacsv.read_csv(
                fh, read_options=read, parse_options=parse, convert_options=convert
            )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise InvalidInputError(f"{label} is empty: it holds no rows") from exc
        raise _diagnose_csv(path, label, head, header, exc) from exc
    _budget().take(table.nbytes, "its parsed columns")
    return table


def _check_utf8(path: Path, label: str, table: pa.Table) -> None:
    if not any(
        pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema
    ):
        return
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{label}: line {line} is not valid UTF-8 text (byte {data[exc.start]:#04x}); "
            "save the file with UTF-8 encoding"
        ) from exc


def _restore_text_columns(
    path: Path,
    label: str,
    head: _TextHead,
    table: pa.Table,
    header: bool,
    names: Sequence[str] | None,
) -> pa.Table:
    """Re-read columns pyarrow took for dates/times as text, so the text is kept exactly."""
    temporal = [
        i
        for i, f in enumerate(table.schema)
        if pa.types.is_temporal(f.type) or pa.types.is_decimal(f.type)
    ]
    if not temporal:
        return table
    raw_names = table.column_names
    types = {raw_names[i]: pa.string() for i in temporal}
    again = _read_csv_table(
        path, label, head, header=header, column_names=names, column_types=types
    )
    for i in temporal:
        table = table.set_column(i, raw_names[i], again.column(i))
    return table


def _read_delimited(
    path: Path,
    label: str,
    suffix: str,
    id_column: str | None,
    vector_column: str | None,
    vector_columns: Sequence[str] | None,
) -> _Loaded:
    head = _text_head(path, label, suffix, metadata=False)
    if not head.records:
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    header = _has_header(head.records)
    tab = head.delimiter == "\t"
    warnings: list[str] = []
    if head.bom:
        warnings.append("the file starts with a byte-order mark (BOM); it was ignored")
    if head.crlf:
        warnings.append(
            "the file has Windows line endings (CRLF); they were read as plain line breaks"
        )
    width = len(head.records[0])
    # A headerless file whose first row is all numbers is a matrix: a text cell further
    # down is an error to report, not a label column.
    all_numeric = not header and all(_is_number(c) for c in head.records[0])

    if all_numeric:
        # The TensorFlow Projector's vectors.tsv: tab-separated floats, no header.
        fmt = "projector" if suffix == ".tsv" or (tab and width > 1) else "csv"
        # (an id_column may still come from the metadata file: _make_ids checks it)
        if vector_column is not None or vector_columns is not None:
            chosen = vector_column or (vector_columns or [""])[0]
            raise InvalidInputError(
                f"{label} has no header row, so it has no column {chosen!r}: every column is "
                "part of the vector. Add a header row to name columns, or leave the choice unset"
            )
        names = [f"c{j}" for j in range(width)]
        table = _read_csv_table(
            path,
            label,
            head,
            header=False,
            column_names=names,
            column_types=dict.fromkeys(names, pa.float32()),
        )
        where = _Where(lambda k: _csv_line_map(path, head.delimiter, False, head.has_quotes, k))
        empty = [
            (j, np.flatnonzero(table.column(j).is_null().to_numpy(zero_copy_only=False)))
            for j in range(width)
            if table.column(j).null_count
        ]
        if empty:
            j, rows = empty[0]
            raise InvalidInputError(
                f"{label}: empty cells in column {j + 1} ({where.many(rows)}); every vector "
                "value must be a number: fill them in or drop those rows"
            )
        return _Loaded(
            format=fmt,
            vectors=_stack_float32(table),
            metadata=pd.DataFrame(index=pd.RangeIndex(table.num_rows)),
            where=where,
            warnings=warnings,
            declared_dtype=False,
            what="the values",
        )

    fmt = "tsv" if tab else "csv"
    if header:
        names, renamed = _unique_names(head.records[0])
    else:
        names, renamed = [f"column_{j + 1}" for j in range(width)], []
    if renamed:
        warnings.append(f"columns renamed to give each a unique name: {', '.join(renamed)}")
    raw_names = head.records[0] if header else names
    types = {}
    if id_column is not None and id_column in names:
        types[raw_names[names.index(id_column)]] = pa.string()  # ids keep their exact text
    table = _read_csv_table(
        path, label, head, header=header, column_names=names, column_types=types
    )
    if table.num_columns != len(names):
        raise InvalidInputError(
            f"{label}: the header has {len(names)} fields but the rows have {table.num_columns}; "
            "make the header name every column"
        )
    _check_utf8(path, label, table)
    table = _restore_text_columns(path, label, head, table, header, names)
    table = table.rename_columns(names)
    n = table.num_rows
    if n == 0:
        raise InvalidInputError(
            f"{label} has a header ({_quote_list(names, 8)}) but no data rows: add the rows of vectors"
        )
    where = _Where(lambda k: _csv_line_map(path, head.delimiter, header, head.has_quotes, k))

    schema = table.schema
    # A saved pandas index (empty or "Unnamed: 0" header) is metadata, never a coordinate.
    index_like = set()
    if (
        header
        and head.records[0][0].strip() in ("", "Unnamed: 0")
        and pa.types.is_integer(schema.field(0).type)
    ):
        index_like.add(names[0])
    numeric = [
        f.name
        for f in schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        and table.column(f.name).null_count == 0
        and f.name not in index_like
    ]
    text_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    list_cols = [
        c
        for c in text_cols
        if n and pc.all(pc.match_substring_regex(table.column(c), _LIST_CELL_RE)).as_py()
    ]

    if vector_column is not None or (vector_columns is None and list_cols):
        if vector_column is not None and vector_column not in list_cols:
            where_hint = (
                "it is a numeric column: pass it in vector_columns instead"
                if vector_column in numeric
                else f"columns holding bracketed lists of numbers: {_quote_list(list_cols)}"
                if vector_column in names
                else f"columns: {_quote_list(names)}"
            )
            raise InvalidInputError(
                f"{label}: column {vector_column!r} cannot be the vector column ({where_hint})"
                if vector_column in names
                else f"{label}: there is no column {vector_column!r}; {where_hint}"
            )
        key = vector_column or _pick_vector(list_cols)
        vectors = _parse_list_cells(table.column(key), key, label, where)
        rest = table.drop_columns([key])
        return _Loaded(
            format=fmt,
            vectors=vectors,
            metadata=_arrow_frame(rest, n, empty_text=True),
            where=where,
            vector_column=key,
            vector_candidates=_order_candidates(list_cols),
            columns=tuple(names),
            warnings=warnings,
            declared_dtype=False,
            what=f"column {key!r}",
        )

    if vector_columns is not None:
        chosen = _check_vector_columns(vector_columns, names, numeric, label)
        if id_column in chosen:
            chosen.remove(id_column)
            warnings.append(f"the id column {id_column!r} was left out of the vector columns")
            if not chosen:
                raise InvalidInputError(
                    f"{label}: no vector columns remain besides the id column {id_column!r}"
                )
        for c in chosen:
            _require_numeric_column(table, c, label, where)
    else:
        chosen = [c for c in numeric if c != id_column]
        _refuse_broken_numeric(table, text_cols, label, where)
        if not chosen:
            raise InvalidInputError(
                f"{label}: no numeric column to use as vectors; columns found: "
                f"{_quote_list(names)}. A vectors file needs numeric columns (or a column of "
                "bracketed lists such as [0.1, 0.2])"
            )
        ints = [c for c in chosen if pa.types.is_integer(table.column(c).type)]
        if ints and len(ints) < len(chosen):
            # Whole numbers beside float coordinates are nearly always labels or counts
            # ("label", "year"): keep them as metadata unless the user picks them.
            chosen = [c for c in chosen if c not in ints]
            warnings.append(
                f"{'columns' if len(ints) > 1 else 'column'} {_quote_list(ints, 5)} "
                f"{'hold' if len(ints) > 1 else 'holds'} whole numbers beside float columns, so "
                f"{'they were' if len(ints) > 1 else 'it was'} kept as metadata, not used as a "
                "vector coordinate; choose the vector columns yourself to include "
                f"{'them' if len(ints) > 1 else 'it'}"
            )
        gappy = [
            f.name
            for f in schema
            if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
            and table.column(f.name).null_count
        ]
        if gappy:
            warnings.append(
                f"numeric {'columns' if len(gappy) > 1 else 'column'} {_quote_list(gappy, 5)} "
                f"{'have' if len(gappy) > 1 else 'has'} empty cells, so "
                f"{'they were' if len(gappy) > 1 else 'it was'} kept as metadata and not used "
                "in the vectors; fill the cells to use them"
            )
    vectors = _stack_columns(table, chosen)
    meta = _arrow_frame(table.drop_columns(chosen), n, empty_text=True)
    return _Loaded(
        format=fmt,
        vectors=vectors,
        metadata=meta,
        where=where,
        numeric_columns=tuple(numeric),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        vector_names=tuple(chosen),
        what=f"columns {_quote_list(chosen, 5)}",
    )


def _stack_float32(table: pa.Table) -> np.ndarray:
    _budget().take(table.num_rows * table.num_columns * 4, "the vector columns side by side")
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j in range(table.num_columns):
        out[:, j] = table.column(j).to_numpy()
    return out


def _require_numeric_column(table: pa.Table, name: str, label: str, where: _Where) -> None:
    col = table.column(name)
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if col.null_count:
            rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
            raise InvalidInputError(
                f"{label}: vector column {name!r} has empty cells ({where.many(rows)}); "
                "fill them in or drop those rows"
            )
        return
    if pa.types.is_string(t):
        ok = pc.fill_null(
            pc.match_substring_regex(col, _NUMBER_RE.pattern, ignore_case=True), False
        )
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False).astype(bool))
        shown = "; ".join(
            f"{where.one(int(i))}: {_short(col[int(i)].as_py())}" for i in bad[:_LISTED]
        )
        raise InvalidInputError(
            f"{label}: vector column {name!r} has {_count(len(bad), 'cell')} that "
            f"{'is' if len(bad) == 1 else 'are'} not a number ({shown}"
            f"{' …' if len(bad) > _LISTED else ''}). Fix those cells or leave {name!r} out "
            "of vector_columns"
        )
    raise InvalidInputError(
        f"{label}: column {name!r} ({t}) is not numeric and cannot be part of the vector"
    )


def _refuse_broken_numeric(
    table: pa.Table, text_cols: Sequence[str], label: str, where: _Where
) -> None:
    """A text column that is almost all numbers is a vector column with bad cells."""
    n = table.num_rows
    for name in text_cols:
        col = table.column(name)
        numeric = (
            pc.sum(pc.match_substring_regex(col, _NUMBER_RE.pattern, ignore_case=True)).as_py() or 0
        )
        empty = pc.sum(pc.equal(col, "")).as_py() or 0
        if numeric and numeric + empty < n and numeric >= 0.9 * n:
            _require_numeric_column(table, name, label, where)


def _parse_list_cells(col: pa.ChunkedArray, name: str, label: str, where: _Where) -> np.ndarray:
    """A text column of bracketed lists ("[0.1, 0.2]" or numpy's "[0.1 0.2]") as (n, d).

    Parsed a slice at a time straight into one float64 matrix, so the memory is the matrix
    (counted against the read budget), not a Python string and an array per row.
    """
    n = len(col)
    lengths = np.zeros(n, dtype=np.int64)
    out: np.ndarray | None = None
    bad: list[int] = []
    n_bad = 0
    i = 0
    for chunk in col.chunks:
        for start in range(0, len(chunk), 4096):
            for cell in chunk.slice(start, 4096).to_pylist():
                inner = cell.strip()[1:-1].replace(",", " ").split()
                try:
                    row = [float(v) for v in inner]
                except ValueError:
                    n_bad += 1
                    if len(bad) < _LISTED:
                        bad.append(i)
                    i += 1
                    continue
                lengths[i] = len(row)
                if out is None:
                    _budget().take(n * len(row) * 8, f"the vectors in column {name!r}")
                    out = np.empty((n, len(row)), dtype=np.float64)
                if len(row) == out.shape[1]:
                    out[i] = row
                i += 1
    if n_bad:
        raise InvalidInputError(
            f"{label}: column {name!r} has lists with values that are not numbers "
            f"({where.many(bad, n_bad)}); every vector value must be a number"
        )
    if out is None:
        return np.empty((0, 0))
    if (lengths != lengths[0]).any():
        d = int(np.bincount(lengths).argmax())
        odd = np.flatnonzero(lengths != d)
        raise InvalidInputError(
            f"{label}: vectors in column {name!r} have different lengths: most have {d} values "
            f"but {where.many(odd)} differ. All vectors must have the same length"
        )
    return out


# -- JSON Lines --------------------------------------------------------------------------------


def _jsonl_line_map(path: Path, limit: int) -> np.ndarray:
    with open(path, "rb") as fh:
        found = (i for i, line in enumerate(fh, 1) if line.strip())
        return np.fromiter(itertools.islice(found, limit), dtype=np.int64)


def _py_size(obj: Any) -> int:
    """Approximate bytes of a parsed JSON value as Python objects (with the pointers to them)."""
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        total += sys.getsizeof(item) + 8
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


def _sample_json_records(head: bytes) -> tuple[list[Any], int]:
    """Records parsed from the start of a JSON array or JSON Lines file, and the bytes they took."""
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    records: list[Any] = []
    body = text.lstrip()
    if body.startswith("["):
        decoder = json.JSONDecoder()
        pos = len(text) - len(body) + 1
        end = pos
        while len(records) < 1000:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError):
                break
            records.append(obj)
            end = pos
        return records, len(text[:end].encode("utf-8"))
    used = 0
    lines = head.split(b"\n")
    for raw in lines[:-1][:1000]:  # the last piece may be cut short
        used += len(raw) + 1
        if raw.strip():
            try:
                records.append(json.loads(raw.decode("utf-8", errors="ignore")))
            except (ValueError, RecursionError):
                break
    return records, used


def _charge_python_json(path: Path, what: str) -> None:
    """Count the Python objects the exact JSON readers will build, from a sample, before
    building them (json.load is all or nothing: it cannot be stopped half way)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    records, used = _sample_json_records(head)
    factor = 8.0  # no sample (one huge record): numbers as Python floats, ~3-8x their text
    if records and used:
        factor = sum(_py_size(r) for r in records) / used
    factor = max(factor, _MIN_PY_JSON_FACTOR)
    # the text itself (decoded to str), then the objects built from it
    _budget().take(size + size * factor, what)


def _read_json(path: Path, label: str, suffix: str, vector_column: str | None) -> _Loaded:
    with open(path, "rb") as fh:
        start = fh.read(4096)
    if start.startswith(codecs.BOM_UTF8):
        start = start[3:]
    stripped = start.lstrip()
    if not stripped:
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    if stripped.startswith(b"["):
        _charge_python_json(path, "its records as Python objects")
        return _read_json_array(path, label, vector_column)
    fast = _read_jsonl_fast(path, label, vector_column)
    if fast is not None:
        return fast
    _charge_python_json(path, "its records as Python objects")
    return _read_jsonl_python(path, label, vector_column)


def _read_jsonl_fast(path: Path, label: str, vector_column: str | None) -> _Loaded | None:
    """pyarrow's JSON reader for well-formed files; None sends the file to the exact reader."""
    try:
        with _open_binary(path) as fh:
            table = pajson.read_json(fh, read_options=pajson.ReadOptions(block_size=_BLOCK))
    except pa.ArrowException:
        return None
    schema = table.schema
    names = table.column_names
    candidates = [f.name for f in schema if _is_vector_type(f.type)]
    key = (
        vector_column
        if vector_column is not None
        else (_pick_vector(candidates) if candidates else None)
    )
    if key is None or key not in candidates:
        return None
    _budget().take(table.nbytes, "its parsed fields")
    col = table.column(key)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count or arr.flatten().null_count:
        return None
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        return None
    # pyarrow merges the keys of every object into one struct (adding nulls a line never
    # had) and turns date-like strings into timestamps; metadata must stay as written, so
    # nested objects go to the exact reader and top-level dates are read again as strings.
    if any(_needs_exact_reader(f.type) for f in schema):
        return None
    if any(pa.types.is_temporal(f.type) for f in schema):
        text_schema = pa.schema(
            [pa.field(f.name, pa.string()) if pa.types.is_temporal(f.type) else f for f in schema]
        )
        try:
            with _open_binary(path) as fh:
                table = pajson.read_json(
                    fh,
                    read_options=pajson.ReadOptions(block_size=_BLOCK),
                    parse_options=pajson.ParseOptions(explicit_schema=text_schema),
                )
        except pa.ArrowException:
            return None
    where = _Where(lambda k: _jsonl_line_map(path, k))
    vectors = _list_matrix(col, key, label, where)
    warnings = []
    others = [c for c in candidates if c != key]
    rest = table.drop_columns([key, *others])
    if others:
        warnings.append(
            f"other list fields ({_quote_list(others)}) were not kept as metadata; ingest them "
            "as datasets of their own with vector_column"
        )
    if len(candidates) > 1 and vector_column is None:
        warnings.append(
            f"several fields could be the vectors ({_quote_list(candidates)}); {key!r} was "
            "used: choose another with vector_column"
        )
    return _Loaded(
        format="jsonl",
        vectors=vectors,
        metadata=_arrow_frame(rest, table.num_rows),
        where=where,
        vector_column=key,
        vector_candidates=_order_candidates(candidates),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        what=f"field {key!r}",
    )


def _needs_exact_reader(t: pa.DataType) -> bool:
    """Objects anywhere, or dates inside lists: types the fast JSON path cannot keep exact."""
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.types.is_temporal(t.value_type) or _needs_exact_reader(t.value_type)
    return False


def _json_error_line(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at column {exc.colno}"


def _read_jsonl_python(path: Path, label: str, vector_column: str | None) -> _Loaded:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"{label}: line {lineno} is not valid UTF-8 text; save the file as UTF-8"
                ) from exc
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"{label}: line {lineno} is not valid JSON ({_json_error_line(exc)}). Each "
                    'line must hold one JSON object, e.g. {"vector": [0.1, 0.2], "label": "cat"}'
                ) from exc
            if not isinstance(obj, dict):
                raise InvalidInputError(
                    f"{label}: line {lineno} holds a JSON {type(obj).__name__}, not an object; "
                    'each line must be one object, e.g. {"vector": [0.1, 0.2], "label": "cat"}'
                )
            records.append(obj)
            lines.append(lineno)
    where = _Where(lambda k: np.asarray(lines[:k]), unit="row")
    return _records_to_loaded(records, where, label, vector_column, "line")


def _read_json_array(path: Path, label: str, vector_column: str | None) -> _Loaded:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{label} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "fix the file or save it as JSON Lines (one object per line)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{label} is not UTF-8 text: save it as UTF-8") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInputError(
            f"{label}: a .json file must be a list of objects "
            '([{"vector": [0.1, 0.2], "label": "cat"}, ...]) or JSON Lines'
        )
    return _records_to_loaded(data, _Where(unit="item"), label, vector_column, "item")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _records_to_loaded(
    records: list[dict[str, Any]], where: _Where, label: str, vector_column: str | None, unit: str
) -> _Loaded:
    if not records:
        raise InvalidInputError(f"{label} holds no records: there are no vectors to store")
    fields: dict[str, None] = {}
    for rec in records:
        for k in rec:
            fields.setdefault(k, None)
    names = list(fields)
    sample = records[:100]
    candidates = []
    for k in names:
        seen = [r[k] for r in sample if r.get(k) is not None]
        # Lists everywhere and at least one all-numeric: a vector field, perhaps with a
        # bad value that the checks below report by line.
        if (
            seen
            and all(isinstance(v, list) and v for v in seen)
            and any(all(_is_num(x) for x in v) for v in seen)
        ):
            candidates.append(k)
    if vector_column is not None:
        if vector_column not in fields:
            raise InvalidInputError(
                f"{label}: no record has a field {vector_column!r}; fields found: "
                f"{_quote_list(names)} (lists of numbers: {_quote_list(candidates)})"
            )
        key = vector_column
    elif candidates:
        key = _pick_vector(candidates)
    else:
        raise InvalidInputError(
            f"{label}: no field holds a list of numbers to use as the vector; fields found: "
            f'{_quote_list(names)}. Each {unit} needs one, e.g. "vector": [0.1, 0.2]'
        )
    missing = [i for i, r in enumerate(records) if key not in r or r[key] is None]
    if missing:
        raise InvalidInputError(
            f"{label}: field {key!r} (the vector) is missing in {_count(len(missing), unit)} "
            f"({where.many(missing)}); every {unit} needs one"
        )
    not_list = [i for i, r in enumerate(records) if not isinstance(r[key], list)]
    if not_list:
        i = not_list[0]
        raise InvalidInputError(
            f"{label}: field {key!r} is not a list of numbers in {_count(len(not_list), unit)} "
            f"({where.many(not_list)}; e.g. {_short(records[i][key])}): write vectors as "
            "[0.1, 0.2, ...]"
        )
    bad = [i for i, r in enumerate(records) if not all(_is_num(x) for x in r[key])]
    if bad:
        i = bad[0]
        value = next(x for x in records[i][key] if not _is_num(x))
        raise InvalidInputError(
            f"{label}: field {key!r} holds values that are not numbers in "
            f"{_count(len(bad), unit)} ({where.many(bad)}; e.g. {_short(value)}): every vector "
            "value must be a number"
        )
    lengths = np.array([len(r[key]) for r in records])
    if (lengths != lengths[0]).any():
        d = int(np.bincount(lengths).argmax())
        odd = np.flatnonzero(lengths != d)
        shown = ", ".join(f"{where.one(int(i))} has {lengths[i]}" for i in odd[:_LISTED])
        raise InvalidInputError(
            f"{label}: vectors have different lengths: most have {d} values but "
            f"{_count(int(odd.size), unit)} {'differs' if odd.size == 1 else 'differ'} ({shown}{' …' if odd.size > _LISTED else ''}). "
            "All vectors must have the same length"
        )
    _budget().take(len(records) * int(lengths[0]) * 8, f"the vectors in field {key!r}")
    vectors = np.array([r[key] for r in records], dtype=np.float64)
    if vectors.ndim == 1:  # every list was empty
        vectors = vectors.reshape(len(records), 0)
    others = [k for k in candidates if k != key]
    warnings = []
    if others:
        warnings.append(
            f"other list fields ({_quote_list(others)}) were not kept as metadata; ingest them "
            "as datasets of their own with vector_column"
        )
    if len(candidates) > 1 and vector_column is None:
        warnings.append(
            f"several fields could be the vectors ({_quote_list(candidates)}); {key!r} was "
            "used: choose another with vector_column"
        )
    columns = {}
    for name in names:
        if name == key or name in others:
            continue
        series, note = _py_series(name, [r.get(name) for r in records])
        columns[name] = series
        if note:
            warnings.append(note)
    meta = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    return _Loaded(
        format="jsonl",
        vectors=vectors,
        metadata=meta,
        where=where,
        vector_column=key,
        vector_candidates=_order_candidates(candidates) if key in candidates else (key,),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        what=f"field {key!r}",
    )


# -- AnnData .h5ad (read with h5py; anndata is not needed) ----------------------------------


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


def _encoding(node: Any) -> str:
    return _attr_str(node.attrs.get("encoding-type", ""))


def _sparse_info(node: Any) -> tuple[str, tuple[int, int]] | None:
    enc = _encoding(node)
    if enc in ("csr_matrix", "csc_matrix") and "shape" in node.attrs:
        return enc[:3], tuple(int(s) for s in node.attrs["shape"])  # type: ignore[return-value]
    legacy = node.attrs.get("h5sparse_format")
    if legacy is not None and "h5sparse_shape" in node.attrs:
        return _attr_str(legacy), tuple(int(s) for s in node.attrs["h5sparse_shape"])  # type: ignore[return-value]
    return None


def _h5_matrix_shape(node: Any) -> tuple[tuple[int, ...], bool] | None:
    """(shape, is_sparse) of a node that could hold vectors, else None."""
    if isinstance(node, h5py.Dataset):
        return tuple(node.shape), False
    if isinstance(node, h5py.Group):
        info = _sparse_info(node)
        if info is not None:
            return info[1], True
    return None


def _h5_dtype_problem(dtype: np.dtype) -> str | None:
    # h5py reports variable-length strings as object dtype: text, not a pickle.
    if h5py.check_string_dtype(dtype) is not None:
        return "holds text, not numbers"
    return _dtype_problem(dtype)


def _h5_read(ds: Any, what: str) -> Any:
    """A whole HDF5 dataset, its size in memory counted before reading.

    The size comes from the dataspace (shape x item size), which cannot lie; it is checked
    against the bytes the dataset really occupies in the file, because HDF5 compresses
    chunks and even lets a dataset of any shape take no space at all (fill values).
    """
    if not isinstance(ds, h5py.Dataset):
        raise InvalidInputError(f"{what} is not an HDF5 dataset; the file is inconsistent")
    _h5_charge(ds, what)
    return ds[()]


def _h5_charge(ds: Any, what: str) -> None:
    budget = _budget()
    size = int(ds.size or 0)
    budget.inflate(size * ds.dtype.itemsize, what, stored=ds.id.get_storage_size())
    if h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.hasobject:
        budget.take(size * (_PY_STR_BYTES + 16), f"the text of {what}")


def _densify(node: Any, label: str, key: str) -> np.ndarray:
    fmt, (n, d) = _sparse_info(node)  # type: ignore[misc]
    if n * d > MAX_DENSIFIED_VALUES:
        raise InvalidInputError(
            f"{label}: {key!r} is a sparse {n:,} x {d:,} matrix; as dense float32 it would need "
            f"{n * d * 4 / 1e9:.1f} GB. Choose an obsm array (e.g. 'obsm/X_pca') with "
            "vector_column, or reduce the matrix first"
        )
    data = _h5_read(node["data"], f"{key!r} (data)")
    budget = _budget()
    budget.take(3 * 8 * len(data), f"{key!r} (indices)")
    indices = _h5_read(node["indices"], f"{key!r} (indices)").astype(np.int64)
    indptr = _h5_read(node["indptr"], f"{key!r} (indptr)").astype(np.int64)
    major, minor = (n, d) if fmt == "csr" else (d, n)
    if (
        indptr.shape != (major + 1,)
        or indptr[0] != 0
        or indptr[-1] != len(data)
        or len(indices) != len(data)
        or (np.diff(indptr) < 0).any()
        or (len(indices) and (indices.min() < 0 or indices.max() >= minor))
    ):
        raise InvalidInputError(
            f"{label}: sparse matrix {key!r} is inconsistent (indptr/indices do not match its "
            "shape); the file is corrupt: re-save it"
        )
    problem = _dtype_problem(data.dtype)
    if problem:
        raise InvalidInputError(f"{label}: {key!r} {problem}")
    dtype = np.result_type(data.dtype, np.float32)
    budget.take(major * minor * dtype.itemsize, f"{key!r} made dense")
    out = np.zeros((major, minor), dtype=dtype)
    rows = np.repeat(np.arange(major), np.diff(indptr))
    np.add.at(out, (rows, indices), data)  # add, not assign: repeated entries sum (scipy's rule)
    return out if fmt == "csr" else out.T


def _h5_strings(ds: Any) -> list[str]:
    _h5_charge(ds, f"dataset {ds.name!r}")
    return [str(v) for v in ds.asstr()[()].tolist()]


def _h5_column(node: Any, name: str, n: int, legacy_cats: Any, label: str) -> pd.Series | None:
    """One obs column in AnnData's on-disk encoding as a typed Series (None: unsupported)."""
    if isinstance(node, h5py.Dataset):
        if node.ndim != 1:
            return None
        if len(node) != n:
            raise InvalidInputError(
                f"{label}: obs column {name!r} has {len(node)} values for {n} rows; the file is "
                "inconsistent: re-save it"
            )
        if legacy_cats is not None and name in legacy_cats:
            return _categorical(_h5_read(node, f"obs column {name!r}"), legacy_cats[name], name)
        if h5py.check_string_dtype(node.dtype) is not None:
            return pd.Series(_h5_strings(node), dtype="str", name=name)
        if node.dtype.kind in "biuf":
            return pd.Series(_h5_read(node, f"obs column {name!r}"), name=name)
        return None
    enc = _encoding(node)
    if enc == "categorical":
        return _categorical(
            _h5_read(node["codes"], f"obs column {name!r}"), node["categories"], name
        )
    if enc in ("nullable-integer", "nullable-boolean", "nullable-string-array"):
        mask = _h5_read(node["mask"], f"obs column {name!r}").astype(bool)
        if enc == "nullable-string-array":
            values = _h5_strings(node["values"])
            return pd.Series(
                [None if m else v for v, m in zip(values, mask, strict=True)],
                dtype="str",
                name=name,
            )
        values = _h5_read(node["values"], f"obs column {name!r}")
        dtype = "Int64" if enc == "nullable-integer" else "boolean"
        return pd.Series(pd.array(values, dtype=dtype), name=name).mask(mask)
    return None


def _categorical(codes: np.ndarray, categories: Any, name: str) -> pd.Series:
    if h5py.check_string_dtype(categories.dtype) is not None:
        cats: Any = np.array(_h5_strings(categories), dtype=object)
    else:
        cats = _h5_read(categories, f"the categories of obs column {name!r}")
    codes = np.asarray(codes).astype(np.int64)
    missing = codes < 0
    if len(cats) and codes.size:
        # Each row spells out its category: a long category repeated n times is n copies.
        if cats.dtype == object:
            sizes = np.fromiter((len(str(c)) for c in cats), dtype=np.int64, count=len(cats))
        else:
            sizes = np.full(len(cats), cats.dtype.itemsize, dtype=np.int64)
        valid = (codes >= 0) & (codes < len(cats))
        _budget().take(
            int(sizes[codes[valid]].sum()) + codes.size * _PY_STR_BYTES,
            f"obs column {name!r} with its categories spelled out",
        )
    values = cats[np.where(missing, 0, codes)] if len(cats) else np.full(len(codes), None)
    if cats.dtype == object:
        return pd.Series(
            [None if m else v for v, m in zip(values, missing, strict=True)], dtype="str", name=name
        )
    series = pd.Series(values, name=name)
    if missing.any():
        series = series.astype("Int64" if series.dtype.kind in "iu" else "float64").mask(missing)
    return series


def _read_obs(f: Any, n: int, label: str, warnings: list[str]) -> pd.DataFrame:
    if "obs" not in f:
        return pd.DataFrame(index=pd.RangeIndex(n))
    obs = f["obs"]
    if isinstance(obs, h5py.Dataset):
        warnings.append(
            "obs is stored in the old (pre-0.7) AnnData layout and was not read; re-save the "
            "file with a recent anndata to keep it"
        )
        return pd.DataFrame(index=pd.RangeIndex(n))
    columns: dict[str, pd.Series] = {}
    index_key = _attr_str(obs.attrs.get("_index", "_index"))
    legacy_cats = obs.get("__categories")
    if index_key in obs:
        name = "obs_names" if index_key == "_index" else index_key
        series = _h5_column(obs[index_key], name, n, None, label)
        if series is not None:
            columns[name] = series
    order = obs.attrs.get("column-order")
    names = (
        [_attr_str(c) for c in np.atleast_1d(order)]
        if order is not None and np.size(order)
        else [k for k in obs if k not in (index_key, "__categories")]
    )
    skipped = []
    for name in names:
        if name not in obs:
            continue
        series = _h5_column(obs[name], name, n, legacy_cats, label)
        if series is None:
            skipped.append(name)
        else:
            columns[name if name not in columns else f"{name}_obs"] = series
    if skipped:
        warnings.append(
            f"obs columns in encodings embscope does not read were left out: {_quote_list(skipped)}"
        )
    return pd.DataFrame(
        {k: v.reset_index(drop=True) for k, v in columns.items()}, index=pd.RangeIndex(n)
    )


def _read_h5ad(path: Path, label: str, vector_column: str | None) -> _Loaded:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidInputError(
            f"{label} is not a readable HDF5/.h5ad file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-save it with anndata's write_h5ad"
        ) from exc
    with f:
        nodes: dict[str, tuple[tuple[int, ...], bool]] = {}
        if "X" in f:
            shape = _h5_matrix_shape(f["X"])
            if shape is not None:
                nodes["X"] = shape
        if "obsm" in f and isinstance(f["obsm"], h5py.Group):
            for k in f["obsm"]:
                shape = _h5_matrix_shape(f["obsm"][k])
                if shape is not None:
                    nodes[f"obsm/{k}"] = shape

        def usable(key: str) -> bool:
            shape, sparse = nodes[key]
            if len(shape) != 2:
                return False
            if sparse:
                return shape[0] * shape[1] <= MAX_DENSIFIED_VALUES
            return _h5_dtype_problem(f[key].dtype) is None

        def why_not(key: str) -> str:
            shape, sparse = nodes[key]
            if len(shape) != 2:
                return (_shape_problem(shape) or "").split(";")[0]
            if sparse:
                return f"is a sparse {shape[0]:,} x {shape[1]:,} matrix, too large to make dense"
            return (_h5_dtype_problem(f[key].dtype) or "").split(";")[0].split(":")[0]

        candidates = [k for k in nodes if usable(k)]
        warnings: list[str] = []
        if vector_column is not None:
            key = (
                vector_column
                if vector_column in nodes or vector_column == "X"
                else (
                    f"obsm/{vector_column}" if f"obsm/{vector_column}" in nodes else vector_column
                )
            )
            if key not in nodes:
                raise InvalidInputError(
                    f"{label}: there is no array {vector_column!r}; arrays usable as vectors: "
                    f"{_quote_list(candidates)}"
                )
        elif candidates:
            key = candidates[0]
            if "X" in nodes and key != "X":
                warnings.append(
                    f"X cannot be used as the vectors (too large or not numeric); {key!r} was used"
                )
        else:
            found = "; ".join(f"{k!r} {why_not(k)}" for k in nodes) or "no X and no obsm arrays"
            raise InvalidInputError(
                f"{label}: no array in the file can be the vectors (X or obsm/<key> as a 2-D "
                f"numeric matrix is needed); found: {found}"
            )
        node = f[key]
        shape, sparse = nodes[key]
        if len(shape) != 2:
            raise InvalidInputError(f"{label}: {key!r} {_shape_problem(shape)}")
        if sparse:
            vectors = _densify(node, label, key)
            if key == "X":
                warnings.append("X was stored sparse; it was made dense")
        else:
            problem = _h5_dtype_problem(node.dtype)
            if problem:
                raise InvalidInputError(f"{label}: {key!r} {problem}")
            vectors = _h5_read(node, f"array {key!r}")
        meta = _read_obs(f, shape[0], label, warnings)
    return _Loaded(
        format="h5ad",
        vectors=vectors,
        metadata=meta,
        where=_Where(),
        vector_column=key,
        vector_candidates=tuple(candidates),
        columns=tuple(meta.columns),
        warnings=warnings,
        what=f"array {key!r}",
    )


# -- the separate metadata file -----------------------------------------------------------------


def _read_metadata_file(path: Path, label: str, n: int) -> tuple[pd.DataFrame, list[str]]:
    """A metadata file's rows as a typed frame of exactly n rows."""
    suffix = _suffix(label, path, METADATA_SUFFIXES, "metadata")
    size = _open_check(path, label)
    with _budget().file(f"metadata file {label}", size):
        return _read_metadata_checked(path, label, suffix, n)


def _read_metadata_checked(
    path: Path, label: str, suffix: str, n: int
) -> tuple[pd.DataFrame, list[str]]:
    try:
        if suffix == ".parquet":
            table = _read_parquet_table(path, f"metadata file {label}")
            frame, warnings = _arrow_frame(table, table.num_rows), []
        elif suffix in (".jsonl", ".json"):
            frame, warnings = _json_metadata(path, label)
        else:
            frame, warnings = _delimited_metadata(path, label, suffix, n)
    except InvalidInputError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise _unreadable(f"metadata file {label}", suffix, exc) from exc
    if len(frame) != n:
        raise InvalidInputError(
            f"the vectors file has {n} rows but metadata file {label} has {len(frame)} data rows; "
            "the metadata needs exactly one row per vector, in the same order"
        )
    return frame, warnings


def _json_metadata(path: Path, label: str) -> tuple[pd.DataFrame, list[str]]:
    _charge_python_json(path, "its records as Python objects")
    with open(path, "rb") as fh:
        start = fh.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    if start.startswith(b"["):
        with open(path, encoding="utf-8-sig") as fh:
            try:
                records = json.load(fh)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"metadata file {label} is not valid JSON ({exc.msg} at line {exc.lineno})"
                ) from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInputError(
                f"metadata file {label} must be a list of objects or JSON Lines"
            )
    else:
        records = []
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InvalidInputError(
                        f"metadata file {label}: line {lineno} is not valid JSON; each line must "
                        "hold one JSON object"
                    ) from exc
                if not isinstance(obj, dict):
                    raise InvalidInputError(
                        f"metadata file {label}: line {lineno} is not a JSON object"
                    )
                records.append(obj)
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(k, None)
    columns, warnings = {}, []
    for name in names:
        series, note = _py_series(name, [r.get(name) for r in records])
        columns[name] = series
        if note:
            warnings.append(note)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records))), warnings


def _delimited_metadata(
    path: Path, label: str, suffix: str, n: int
) -> tuple[pd.DataFrame, list[str]]:
    head = _text_head(path, label, suffix, metadata=True)
    warnings = []
    _budget().take(2 * path.stat().st_size, "its text")
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"metadata file {label}: line {line} is not valid UTF-8 text; save the file as UTF-8"
        ) from exc
    if head.delimiter not in text:
        # One column: the Projector writes no header then. A header is assumed only when the
        # file has exactly one line more than there are vectors.
        count = text.count("\n") + (0 if text.endswith("\n") else 1)
        if count not in (n, n + 1):
            raise InvalidInputError(
                f"the vectors file has {n} rows but metadata file {label} has {count} "
                f"lines (a single-column file has one label per line, plus optionally a header "
                "line); the metadata needs exactly one row per vector, in the same order"
            )
        # one Python str per line
        _budget().take(count * _PY_STR_BYTES + len(text), "its lines")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        if len(lines) == n + 1:
            name, values = lines[0] or "label", lines[1:]
        elif len(lines) == n:
            name, values = "label", lines
        else:
            raise InvalidInputError(
                f"the vectors file has {n} rows but metadata file {label} has {len(lines)} "
                f"lines (a single-column file has one label per line, plus optionally a header "
                "line); the metadata needs exactly one row per vector, in the same order"
            )
        return pd.DataFrame(
            {name: pd.Series(values, dtype="str")}, index=pd.RangeIndex(len(values))
        ), warnings
    # Several columns: the first line is the header (also the Projector's rule).
    names, renamed = _unique_names(head.records[0])
    if renamed:
        warnings.append(
            f"metadata columns renamed to give each a unique name: {', '.join(renamed)}"
        )
    table = _read_csv_table(path, label, head, header=True, column_names=names, column_types=None)
    table = _restore_text_columns(path, label, head, table, True, names)
    table = table.rename_columns(names)
    return _arrow_frame(table, table.num_rows, empty_text=True), warnings
