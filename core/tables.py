"""Tables in and out of the store: metadata as typed Arrow columns, query results as pandas.

:mod:`core.store` runs the SQL; this module shapes what goes in (checked names, the row
column) and what comes out (whole numbers kept whole, the key columns first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from embscope.core.errors import InvalidInputError

__all__ = [
    "MAX_NAME_LENGTH",
    "NULLABLE_INTEGERS",
    "ROW_COLUMN",
    "arrow_to_frame",
    "key_columns_first",
    "metadata_table",
    "same_text",
    "validate_name",
]

ROW_COLUMN = "__row"
MAX_NAME_LENGTH = 200


def same_text(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    try:
        return bool(a.cast(pa.string()).equals(b.cast(pa.string())))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. a list column
        return False


NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A query result as pandas, whole numbers kept whole.

    Arrow's plain conversion turns an integer column with a missing value into float64 (a
    year 2019 shown as 2019.0 in tables, hover text and CSV); such a column becomes pandas'
    nullable integer type instead, as :func:`core.ingest.read_dataset` made it. Integer
    columns without missing values stay numpy integers.
    """
    frame = table.to_pandas()
    for i, arrow_type in enumerate(table.schema.types):
        if arrow_type in NULLABLE_INTEGERS and table.column(i).null_count:
            mapper = {arrow_type: NULLABLE_INTEGERS[arrow_type]}.get
            frame.isetitem(i, table.column(i).to_pandas(types_mapper=mapper))
    return frame


def key_columns_first(table: pa.Table) -> pd.DataFrame:
    """``row``, ``id`` and the metadata columns of a query result, as a frame.

    A metadata column called ``id`` that holds the ids (the column they were taken from) is
    dropped as a repeat; any other metadata column named ``row`` or ``id`` is kept as
    ``"row (metadata)"`` / ``"id (metadata)"`` rather than lost. Names are made unique on the
    Arrow table: pandas mixes up the types of columns that share a name.
    """
    names = table.column_names
    if len(set(names)) == len(names):
        return arrow_to_frame(table)
    keep, out_names = [], []
    for i, name in enumerate(names):
        if name not in out_names:
            keep.append(i)
            out_names.append(name)
            continue
        if same_text(table.column(i), table.column(names.index(name))):
            continue  # the same values: a repeat of the key column
        label = f"{name} (metadata)"
        while label in names or label in out_names:
            label += "'"
        keep.append(i)
        out_names.append(label)
    return arrow_to_frame(table.select(keep).rename_columns(out_names))


def validate_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"dataset name must be text, got {type(name).__name__}")
    clean = name.strip()
    if not clean:
        raise InvalidInputError("dataset name is empty: give the dataset a name")
    if len(clean) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"dataset name is {len(clean)} characters long; use at most {MAX_NAME_LENGTH}"
        )
    if any(ord(c) < 32 for c in clean):
        raise InvalidInputError(
            "dataset name contains control characters (newline, tab, ...): remove them"
        )
    return clean


def metadata_table(metadata: pd.DataFrame, n: int) -> pa.Table:
    """Arrow table of the metadata plus the row column; validates column names for DuckDB."""
    if len(metadata) != n:
        raise InvalidInputError(
            f"metadata has {len(metadata)} rows but there are {n} vectors: they must match row for row"
        )
    names = [str(c) for c in metadata.columns]
    seen: dict[str, str] = {}
    for name in names:
        if name == "":
            raise InvalidInputError(
                "a metadata column has an empty name: give every column a header"
            )
        if name.lower() == ROW_COLUMN:
            raise InvalidInputError(
                f"metadata column name {name!r} is reserved by embscope: rename it"
            )
        # DuckDB column names are case-insensitive, so "Label" and "label" would collide.
        key = name.lower()
        if key in seen:
            raise InvalidInputError(
                f"metadata columns {seen[key]!r} and {name!r} differ only in letter case; "
                "the database treats them as the same column: rename one"
            )
        seen[key] = name
    rows = pa.array(np.arange(n, dtype=np.int64))
    if not names:
        # A frame with no columns converts to a 0-row Arrow table; build the row column alone.
        return pa.table({ROW_COLUMN: rows})
    frame = metadata.reset_index(drop=True)
    frame.columns = names
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"metadata could not be stored: {exc}. Make each column hold one kind of value "
            "(all numbers or all text)"
        ) from exc
    table = table.replace_schema_metadata(None)
    return table.add_column(0, ROW_COLUMN, rows)
