"""Parquet files: vectors in a list column (or numeric columns), the rest metadata.

The footer's sizes are checked against the read's budget and expansion ratio before a row
is read; the file is then read in batches whose real size is counted as they arrive, and
text columns are read as dictionaries (their decoding is counted when they become columns).

Only what is inside the file is read: a footer whose column chunks name another file
(``file_path``, which a ``_metadata`` summary uses) or that is encrypted is refused by
:mod:`~embscope.core.ingest.parquet_footer` before pyarrow reads a column chunk (no
decryption properties, key server or external key material is ever configured, so pyarrow
could not fetch keys from anywhere either).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.checks import float32_warning
from embscope.core.ingest.columns import (
    arrow_frame,
    check_vector_columns,
    is_vector_type,
    list_matrix,
    open_binary,
    order_candidates,
    pick_vector,
    stack_columns,
)
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import Loaded, ReadRequest, Where, quote_list
from embscope.core.ingest.parquet_footer import check_footer, encrypted_error

# Bytes per value of Parquet's fixed-width physical types once decoded by Arrow.
_PARQUET_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 8, "FLOAT": 4, "DOUBLE": 8}
_PARQUET_BATCH_BYTES = 32 * 2**20  # aim for batches of about this size when streaming


def parquet_decoded_estimate(md: Any) -> int:
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
    a million times is held once (its expansion is counted before any cast, by columns.arrow_frame)."""
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


def read_parquet_table(path: Path, label: str, budget: ReadBudget) -> pa.Table:
    """A Parquet file as a table, within the read budget and the expansion ratio.

    The footer's sizes are checked before reading; then the file is read in batches whose
    real size is counted as they arrive, so a footer that understates the data stops the
    read at the limit rather than at the end of memory.
    """
    table, _ = _read_parquet(path, label, budget, None)
    return table


def _read_parquet(
    path: Path, label: str, budget: ReadBudget, vector_key: str | None
) -> tuple[pa.Table, np.ndarray | None]:
    """The file's columns, and with ``vector_key`` that column streamed into an owned float32
    matrix instead (None when it cannot be: the caller reads it the whole-table way, whose
    messages say what is wrong)."""
    spent = (budget.used, budget.expanded)
    try:
        with open_binary(path) as fh:
            check_footer(fh, label)  # before pyarrow touches a column chunk
            md = pq.ParquetFile(fh).metadata
            estimate = parquet_decoded_estimate(md)
            budget.inflate(estimate, "its columns (as its footer declares them)", commit=False)
            pf = pq.ParquetFile(
                fh, metadata=md, read_dictionary=_parquet_text_leaves(md), pre_buffer=False
            )  # pre-buffering keeps every column chunk read so far: memory grew to the file
            schema = pf.schema_arrow
            n_rows = max(int(md.num_rows), 1)
            rows = int(min(max(_PARQUET_BATCH_BYTES * n_rows // max(estimate, 1), 64), 1 << 16))
            stream = None
            if vector_key is not None and md.num_rows and _streamable(schema, vector_key):
                stream = _VectorStream(int(md.num_rows), budget)
            batches = []
            for batch in pf.iter_batches(batch_size=rows):
                budget.inflate(batch.nbytes, "its columns")
                if stream is not None:
                    if not stream.add(batch.column(vector_key)):
                        break  # the whole-table read below names the problem
                    batch = batch.drop_columns([vector_key])
                batches.append(batch)
            if stream is not None and stream.ok and stream.filled == int(md.num_rows):
                schema = schema.remove(schema.get_field_index(vector_key))
                table = pa.Table.from_batches(batches, schema=schema)
                pa.default_memory_pool().release_unused()  # the batches' buffers, to the OS
                return table, stream.matrix
            if stream is not None:
                del batches, stream
                budget.used, budget.expanded = spent
                return _read_parquet(path, label, budget, None)
            table = pa.Table.from_batches(batches, schema=schema)
    except (pa.ArrowException, OSError) as exc:
        if "crypt" in str(exc).lower():  # "encrypted metadata", "Cannot decrypt ColumnMetadata"
            raise encrypted_error(label) from exc
        raise InvalidInputError(
            f"{label} is not a readable Parquet file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-export it, e.g. with DataFrame.to_parquet"
        ) from exc
    return table, None


def _streamable(schema: pa.Schema, key: str) -> bool:
    """A list column of float32 or float64 values: copied batch by batch into the matrix."""
    if schema.get_field_index(key) < 0 or not is_vector_type(schema.field(key).type):
        return False
    value = schema.field(key).type.value_type
    return bool(pa.types.is_float32(value) or pa.types.is_float64(value))


class _VectorStream:
    """A vector column read batch by batch into one preallocated float32 (n, d) matrix, so the
    file's vectors are held once (not as Arrow batches, their concatenation and a float32
    copy). Any null, ragged row or value beyond float32 stops it (``ok`` False)."""

    def __init__(self, n: int, budget: ReadBudget):
        self.n, self.budget = n, budget
        self.matrix: np.ndarray | None = None
        self.filled = 0
        self.ok = True

    def add(self, col: pa.Array) -> bool:
        rows = len(col)
        if rows == 0:
            return True
        if col.null_count:
            self.ok = False
            return False
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        d = int(lengths[0])
        if self.matrix is None:
            if d < 1:
                self.ok = False
                return False
            self.budget.take(self.n * d * 4, f"the {self.n:,} x {d:,} float32 vectors")
            self.matrix = np.empty((self.n, d), dtype=np.float32)
        values = col.flatten()
        if (
            d != self.matrix.shape[1]
            or (lengths != d).any()
            or values.null_count
            or self.filled + rows > self.n
        ):
            self.ok = False
            return False
        raw = values.to_numpy(zero_copy_only=False).reshape(rows, d)
        part = self.matrix[self.filled : self.filled + rows]
        with np.errstate(over="ignore"):
            np.copyto(part, raw, casting="unsafe")
        if raw.dtype != np.float32 and not np.isfinite(part).all() and np.isfinite(raw).all():
            self.ok = False  # float64 beyond float32's range: the whole-table read says so
            return False
        self.filled += rows
        return True


def several_lists_warning(list_cols: list[str], key: str) -> str:
    """The warning when the vectors were picked among several list columns."""
    return (
        f"several list columns could be the vectors ({quote_list(list_cols)}); "
        f"{key!r} was used: choose another with vector_column"
    )


def _named_index(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """A pandas index saved by to_parquet is a real column here: kept, named sensibly."""
    names = list(table.column_names)
    if "__index_level_0__" in names and "index" not in names:
        names[names.index("__index_level_0__")] = "index"
        table = table.rename_columns(names)
    return table, names


def _vector_key(path: Path, label: str, vector_column: str | None) -> str | None:
    """The list column the vectors will come from, from the schema alone (None: not a list
    column, or the file cannot be read: the whole-table read says why)."""
    try:
        with open_binary(path) as fh:
            check_footer(fh, label)
            schema = pq.ParquetFile(fh).schema_arrow
    except (pa.ArrowException, OSError, InvalidInputError):
        return None
    list_cols = [f.name for f in schema if is_vector_type(f.type)]
    if vector_column is not None:
        return vector_column if vector_column in list_cols else None
    return pick_vector(list_cols) if list_cols else None


def _streamed(request: ReadRequest, rest: pa.Table, vectors: np.ndarray, key: str) -> Loaded:
    """The Loaded of a file whose vector column ``key`` was streamed into ``vectors``."""
    with open_binary(request.path) as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    list_cols = [f.name for f in schema if is_vector_type(f.type)]
    rest, _ = _named_index(rest)
    names = [("index" if c == "__index_level_0__" and "index" not in schema.names else c)
             for c in schema.names]  # fmt: skip
    warnings = []
    if request.vector_column is None and len(list_cols) > 1:
        warnings.append(several_lists_warning(list_cols, key))
    if schema.field(key).type.value_type != pa.float32():
        warnings.append(
            float32_warning(np.dtype(schema.field(key).type.value_type.to_pandas_dtype()))
        )
    loaded = _list_loaded(rest, names, list_cols, key, vectors, warnings, request)
    loaded.declared_dtype = False  # already float32: its conversion is in the warnings
    return loaded


def _list_loaded(
    rest: pa.Table,
    names: list[str],
    list_cols: list[str],
    key: str,
    vectors: np.ndarray,
    warnings: list[str],
    request: ReadRequest,
) -> Loaded:
    """The Loaded of a file whose vectors come from list column ``key`` (``rest``: the others)."""
    dropped = [c for c in list_cols if c != key]
    if dropped:
        rest = rest.drop_columns(dropped)
        warnings.append(
            f"other vector columns ({quote_list(dropped)}) were not kept as metadata; "
            "ingest them as datasets of their own with vector_column"
        )
    return Loaded(
        format="parquet",
        vectors=vectors,
        metadata=arrow_frame(rest, rest.num_rows, request.budget),
        where=Where(),
        vector_column=key,
        vector_candidates=order_candidates(list_cols),
        columns=tuple(names),
        warnings=warnings,
        what=f"column {key!r}",
    )


def read_parquet(request: ReadRequest) -> Loaded:
    """A Parquet vectors file: a list column of numbers, or numeric scalar columns."""
    path, label, budget = request.path, request.label, request.budget
    id_column, vector_column = request.id_column, request.vector_column
    vector_columns = request.vector_columns
    key = None if vector_columns is not None else _vector_key(path, label, vector_column)
    table, streamed = _read_parquet(path, label, budget, key)
    if streamed is not None and key is not None:
        return _streamed(request, table, streamed, key)
    table, names = _named_index(table)
    n = table.num_rows
    where = Where()
    schema = table.schema
    list_cols = [f.name for f in schema if is_vector_type(f.type)]
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
                f"vectors: {quote_list(list_cols)} (all columns: {quote_list(names)})"
            )
        t = schema.field(vector_column).type
        if not is_vector_type(t):
            hint = (
                "; to build vectors from numeric columns pass vector_columns instead"
                if vector_column in numeric
                else ""
            )
            raise InvalidInputError(
                f"{label}: column {vector_column!r} ({t}) is not a list of numbers{hint}. "
                f"List columns usable as vectors: {quote_list(list_cols)}"
            )
    if vector_columns is None and (vector_column is not None or list_cols):
        key = vector_column or pick_vector(list_cols)
        if vector_column is None and len(list_cols) > 1:
            warnings.append(several_lists_warning(list_cols, key))
        vectors = list_matrix(table.column(key), key, label, where)
        return _list_loaded(table.drop_columns([key]), names, list_cols, key, vectors,
                            warnings, request)  # fmt: skip
    # No list column: numeric scalar columns are the coordinates, like a CSV with a header.
    if vector_columns is not None:
        chosen = check_vector_columns(vector_columns, names, numeric, label)
    else:
        chosen = [c for c in numeric if c != id_column]
        if not chosen:
            raise InvalidInputError(
                f"{label}: no column holds vectors: a Parquet file needs a list column of "
                f"numbers (e.g. 'vector') or numeric columns; columns found: {quote_list(names)}"
            )
        ints = [c for c in chosen if pa.types.is_integer(table.column(c).type)]
        if ints and len(ints) < len(chosen):
            # As for CSV: whole numbers beside float coordinates are labels, not coordinates.
            chosen = [c for c in chosen if c not in ints]
            warnings.append(
                f"integer {'columns' if len(ints) > 1 else 'column'} {quote_list(ints, 5)} "
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
    vectors = stack_columns(table, chosen, budget)
    meta = arrow_frame(table.drop_columns(chosen), n, budget)
    return Loaded(
        format="parquet",
        vectors=vectors,
        metadata=meta,
        where=where,
        numeric_columns=tuple(numeric),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        vector_names=tuple(chosen),
        what=f"columns {quote_list(chosen, 5)}",
    )


def read_parquet_metadata(request: ReadRequest, n: int | None) -> tuple[pd.DataFrame, list[str]]:
    """A Parquet metadata file as typed columns (its rows are counted by the caller)."""
    table = read_parquet_table(request.path, f"metadata file {request.label}", request.budget)
    return arrow_frame(table, table.num_rows, request.budget), []
