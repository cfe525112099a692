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

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embscope.core.errors import InvalidInputError
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
    try:
        with open_binary(path) as fh:
            check_footer(fh, label)  # before pyarrow touches a column chunk
            md = pq.ParquetFile(fh).metadata
            estimate = parquet_decoded_estimate(md)
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
        if "crypt" in str(exc).lower():  # "encrypted metadata", "Cannot decrypt ColumnMetadata"
            raise encrypted_error(label) from exc
        raise InvalidInputError(
            f"{label} is not a readable Parquet file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-export it, e.g. with DataFrame.to_parquet"
        ) from exc
    return table


def read_parquet(request: ReadRequest) -> Loaded:
    """A Parquet vectors file: a list column of numbers, or numeric scalar columns."""
    path, label, budget = request.path, request.label, request.budget
    id_column, vector_column = request.id_column, request.vector_column
    vector_columns = request.vector_columns
    table = read_parquet_table(path, label, budget)
    # A pandas index saved by to_parquet is a real column here: keep it, named sensibly.
    names = list(table.column_names)
    if "__index_level_0__" in names and "index" not in names:
        names[names.index("__index_level_0__")] = "index"
        table = table.rename_columns(names)
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
            warnings.append(
                f"several list columns could be the vectors ({quote_list(list_cols)}); "
                f"{key!r} was used: choose another with vector_column"
            )
        vectors = list_matrix(table.column(key), key, label, where)
        rest = table.drop_columns([key])
        dropped = [c for c in list_cols if c != key]
        if dropped:
            rest = rest.drop_columns(dropped)
            warnings.append(
                f"other vector columns ({quote_list(dropped)}) were not kept as metadata; "
                "ingest them as datasets of their own with vector_column"
            )
        meta = arrow_frame(rest, n, budget)
        return Loaded(
            format="parquet",
            vectors=vectors,
            metadata=meta,
            where=where,
            vector_column=key,
            vector_candidates=order_candidates(list_cols),
            columns=tuple(names),
            warnings=warnings,
            what=f"column {key!r}",
        )
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
