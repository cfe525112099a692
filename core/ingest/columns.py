"""Columns shared by the table formats (Parquet, CSV/TSV, JSON): typed metadata, vectors.

Arrow and Python (JSON) columns become typed pandas columns with text kept exactly; a list
column of numbers becomes an ``(n, d)`` matrix; numeric scalar columns are stacked into one.
Decoding a dictionary-encoded column counts as expansion against the read's budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import LISTED, PY_STR_BYTES, Where, counted, quote_list

#: pyarrow block size: wide numeric rows parse ~2x faster in big blocks.
BLOCK = 1 << 24
# Field names preferred for the vector when a JSONL/Parquet file has several list fields.
_VECTOR_NAMES = ("vector", "vectors", "embedding", "embeddings", "emb", "vec", "features", "values")

# -- typed columns ------------------------------------------------------------------------


def is_vector_type(t: pa.DataType) -> bool:
    """Whether an Arrow column of this type can hold vectors: a list of numbers."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        v = t.value_type
        return bool(pa.types.is_floating(v) or pa.types.is_integer(v))
    return False


def _arrow_series(
    name: str,
    col: pa.ChunkedArray | pa.Array,
    budget: ReadBudget,
    *,
    empty_text: bool = False,
) -> pd.Series:
    """One metadata column as a typed pandas Series, text kept exactly."""
    t = col.type
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
            _decoded_nbytes(col) * 2 + _leaf_count(col) * 48 + len(col) * 2 * PY_STR_BYTES,
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


def arrow_frame(
    table: pa.Table, n: int, budget: ReadBudget, *, empty_text: bool = False
) -> pd.DataFrame:
    """A table's columns as typed metadata of ``n`` rows (``empty_text``: null text is "")."""
    data = {
        name: _arrow_series(name, table.column(i), budget, empty_text=empty_text).reset_index(
            drop=True
        )
        for i, name in enumerate(table.column_names)
    }
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def py_series(name: str, values: list[Any]) -> tuple[pd.Series, str | None]:
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


def list_matrix(col: pa.ChunkedArray, name: str, label: str, where: Where) -> np.ndarray:
    """A list/fixed-size-list column of numbers as an (n, d) array; refuses null or ragged rows."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(arr)
    if arr.null_count:
        rows = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
        raise InvalidInputError(
            f"{label}: column {name!r} has no vector (null) in {counted(int(rows.size), 'row')}: "
            f"{where.many(rows)}. Every row needs a vector: fill or drop those rows"
        )
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    if n and (lengths != lengths[0]).any():
        d = int(np.bincount(lengths).argmax())
        rows = np.flatnonzero(lengths != d)
        sample = ", ".join(f"{where.one(int(r))} has {lengths[r]}" for r in rows[:LISTED])
        raise InvalidInputError(
            f"{label}: vectors in column {name!r} have different lengths: most have {d} values "
            f"but {counted(int(rows.size), 'row')} {'differs' if rows.size == 1 else 'differ'} ({sample}"
            f"{' …' if rows.size > LISTED else ''}). All vectors must have the same length"
        )
    values = arr.flatten()
    if values.null_count:
        pos = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        rows = np.unique(np.repeat(np.arange(n), lengths)[pos])
        raise InvalidInputError(
            f"{label}: column {name!r} has null values inside the vectors of "
            f"{counted(int(rows.size), 'row')}: {where.many(rows)}. Fill them in or drop those rows"
        )
    d = int(lengths[0]) if n else 0
    matrix: np.ndarray = values.to_numpy(zero_copy_only=False).reshape(n, d)
    return matrix


def pick_vector(candidates: Sequence[str]) -> str:
    """The candidate with the most vector-like name ("vector", "embedding", ...), else the first."""
    for preferred in _VECTOR_NAMES:
        for c in candidates:
            if c.lower() == preferred:
                return c
    return candidates[0]


def order_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    """The candidates with :func:`pick_vector`'s choice first."""
    if not candidates:
        return ()
    first = pick_vector(candidates)
    return (first, *[c for c in candidates if c != first])


def open_binary(path: Path) -> Any:
    """An Arrow file for ``path``: given a file, not a name, no reader guesses a compression
    from the name's suffix (pyarrow would inflate ``x.csv.gz`` read under the name x.csv)."""
    return pa.OSFile(str(path), "rb")


def check_vector_columns(
    wanted: Sequence[str], names: Sequence[str], numeric: Sequence[str], label: str
) -> list[str]:
    """The user's ``vector_columns``, if every one exists and none is named twice."""
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InvalidInputError(
            f"{label}: vector column{'s' if len(missing) > 1 else ''} {quote_list(missing)} "
            f"not found; numeric columns available: {quote_list(numeric)}"
        )
    if len(set(wanted)) != len(wanted):
        raise InvalidInputError(f"{label}: vector_columns names a column twice")
    return list(wanted)


def stack_columns(table: pa.Table, columns: Sequence[str], budget: ReadBudget) -> np.ndarray:
    """Numeric columns side by side as one float64 matrix, counted against ``budget``."""
    budget.take(table.num_rows * len(columns) * 8, "the vector columns side by side")
    out = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        out[:, j] = table.column(name).to_numpy()
    return out
