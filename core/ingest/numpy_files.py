"""NumPy files: ``.npy`` arrays, ``.npz`` archives, and the one-vector query file.

Headers are read and checked before any data: object (pickle) arrays are refused from
their header, every ``np.load`` passes ``allow_pickle=False``, and an archive entry's
declared size is counted against the read's budget (and capped while reading, so an entry
whose header lies cannot yield more). Archive members are read out of the archive by zipfile,
never extracted, so a member named ``../../etc/passwd`` is only a name; a member stored as a
symbolic link is refused.
"""

from __future__ import annotations

import io
import math
import os
import stat
import tokenize
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.checks import dtype_problem, shape_problem
from embscope.core.ingest.files import check_regular
from embscope.core.ingest.limits import MAX_QUERY_VECTOR_BYTES, ReadBudget, mib
from embscope.core.ingest.model import PY_STR_BYTES, Loaded, ReadRequest, Where, quote_list

# numpy's max_header_size, plus magic, version and length.
_NPY_HEADER_MAX = 10_000 + 12

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


def read_npy(request: ReadRequest) -> Loaded:
    """A ``.npy`` file: one 2-D numeric array, memory-mapped (converted once, later)."""
    path, label = request.path, request.label
    if request.vector_column is not None:
        raise InvalidInputError(
            f"{label}: a .npy file holds a single array, so there is no vector column "
            f"to choose ({request.vector_column!r}); leave vector_column unset"
        )
    size = path.stat().st_size
    with open(path, "rb") as fh:
        shape, _fortran, dtype = _npy_header(fh, label, "the file")
        offset = fh.tell()
    problem = dtype_problem(dtype) or shape_problem(shape)
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
        # mmap then one astype copy: no intermediate copy of a large file. ``path`` is the
        # file load_vectors checked (regular, not a link), never one named inside the file.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return Loaded(
        format="npy",
        vectors=arr,
        metadata=pd.DataFrame(index=pd.RangeIndex(shape[0])),
        where=Where(),
        what="the array",
    )


# -- .npz -------------------------------------------------------------------------------------


def read_npz(request: ReadRequest) -> Loaded:
    """A ``.npz`` archive: one 2-D array is the vectors, 1-D arrays of n values metadata."""
    path, label = request.path, request.label
    vector_column, budget = request.vector_column, request.budget
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
            if stat.S_ISLNK(info.external_attr >> 16):
                # zipfile would only yield the link's own text, never its target; say so plainly.
                raise InvalidInputError(
                    f"{label}: array {key!r} is a symbolic link inside the archive (to a file "
                    "outside it): embscope reads only what is inside the uploaded file; save "
                    "the arrays with numpy.savez"
                )
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
            if len(shape) == 2 and dtype_problem(dtype) is None
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
                    f"vectors: {quote_list(ordered)} (all arrays: {quote_list(headers)})"
                )
            shape, dtype, _info = headers[key]
            problem = dtype_problem(dtype) or shape_problem(shape)
            if problem:
                raise InvalidInputError(
                    f"{label}: array {key!r} {problem}. Arrays usable as vectors: "
                    f"{quote_list(ordered)}"
                )
        else:
            if not ordered:
                reasons = "; ".join(
                    f"{k!r} {(dtype_problem(dt) or shape_problem(sh) or '').split(';')[0]}"
                    for k, (sh, dt, _i) in headers.items()
                )
                raise InvalidInputError(
                    f"{label}: no array in the archive can be the vectors (a 2-D array of "
                    f"numbers is needed): {reasons}"
                )
            key = ordered[0]
            if len(ordered) > 1:
                warnings.append(
                    f"the archive holds several 2-D arrays ({quote_list(ordered)}); {key!r} "
                    "was used: choose another with vector_column"
                )
        shape, dtype, info = headers[key]
        vectors = _read_npz_entry(zf, info, shape, dtype, f"array {key!r}", budget)
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
                budget.take(n * (PY_STR_BYTES + odtype.itemsize), f"the text of {other!r}")
            arr = _read_npz_entry(zf, oinfo, oshape, odtype, f"array {other!r}", budget)
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
    return Loaded(
        format="npz",
        vectors=vectors,
        metadata=meta,
        where=Where(),
        vector_column=key,
        vector_candidates=tuple(ordered),
        columns=tuple(meta.columns),
        warnings=warnings,
        what=f"array {key!r}",
    )


class CappedReader(io.RawIOBase):
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
        data: bytes = self._raw.read(size)
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
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    shape: tuple[int, ...],
    dtype: np.dtype,
    what: str,
    budget: ReadBudget,
) -> np.ndarray:
    """One array of an archive, its decompressed size counted (and capped) before reading."""
    nbytes = math.prod(shape) * dtype.itemsize
    budget.inflate(nbytes, what, stored=info.compress_size)
    with zf.open(info) as raw:
        capped = CappedReader(raw, nbytes + _NPY_HEADER_MAX, f"{budget.label}: {what}")
        return np.lib.format.read_array(capped, allow_pickle=False)


# -- one query vector -------------------------------------------------------------------------


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
        check_regular(path, label)  # not a link: only the file given is read
        with open(path, "rb") as fh:
            data = fh.read(MAX_QUERY_VECTOR_BYTES + 1)
    if len(data) > MAX_QUERY_VECTOR_BYTES:
        raise InvalidInputError(
            f"{label} is larger than {mib(MAX_QUERY_VECTOR_BYTES)}: a query is one vector; "
            "save it with np.save(path, v) where v has shape (d,)"
        )
    if data.startswith(b"PK"):
        raise InvalidInputError(
            f"{label} is a zip archive (.npz), not a .npy file: save the one vector with "
            "np.save(path, v)"
        )
    stream = io.BytesIO(data)
    shape, _fortran, dtype = _npy_header(stream, label, "the file")
    problem = dtype_problem(dtype)
    if problem:
        raise InvalidInputError(f"{label}: the array {problem}")
    if len(shape) == 2 and shape[0] == 1:
        shape = (shape[1],)
    if len(shape) != 1:
        raise InvalidInputError(
            f"{label} holds an array of shape {shape}: give one vector, shape (d,) or (1, d)"
        )
    count = shape[0]
    body = data[stream.tell() :]
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
