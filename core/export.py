"""Writing data back out: a stored dataset as ``.npy`` (vectors) or Parquet (vectors and
metadata), tables as CSV that a spreadsheet opens as data (:func:`csv_bytes`), and metadata
values as text for labels, legends and hover (:func:`as_text`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embscope.core.errors import InvalidInputError
from embscope.core.index_base import fsync_directory, fsync_file
from embscope.core.store import Store

__all__ = [
    "EXPORT_FORMATS",
    "FORMULA_PREFIXES",
    "MISSING",
    "as_text",
    "csv_bytes",
    "export_dataset",
]

#: How a missing metadata value is named where it is a group of its own (legends, labels).
MISSING = "(missing)"

EXPORT_FORMATS = {".npy": "vectors only (float32)", ".parquet": "ids, vectors and metadata"}


def as_text(values: Any, *, missing: str = "") -> np.ndarray:
    """Metadata values as an object array of ``str``, missing ones (None, NaN, NA) as
    ``missing``.

    ``Series.astype(str)`` cannot be used for this: since pandas 3 it leaves missing values
    as float NaN, so one empty cell in a column made ``v[:120]`` fail and ``factorize`` drop
    the point from every group. Numbers read as before (``2.0`` -> ``"2.0"``).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, object))
    absent = series.isna().to_numpy()
    out = np.empty(len(series), dtype=object)
    out[:] = [missing if gone else str(v) for v, gone in zip(series.tolist(), absent, strict=True)]
    return out


#: A text cell starting with one of these is read as a formula by spreadsheets (Excel,
#: LibreOffice, Google Sheets): OWASP's "CSV injection".
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _formula_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV (no index) that a spreadsheet opens as data.

    A text cell or column name that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading apostrophe, which spreadsheets show as text rather than
    evaluate: ``=HYPERLINK(...)`` from someone's metadata stays visible text and runs
    nothing. Numbers (``-1.5`` in a numeric column) are written as they are; Parquet
    exports keep every value verbatim.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"csv_bytes takes a pandas DataFrame, got {type(frame).__name__}")
    out = frame.copy(deep=False)
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object or isinstance(
            column.dtype, (pd.StringDtype, pd.CategoricalDtype)
        ):
            out.isetitem(i, column.astype(object).map(_formula_safe))
    out.columns = [_formula_safe(str(c)) for c in out.columns]
    # pandas is untyped here; to_csv without a path returns the text
    return cast(str, out.to_csv(index=False)).encode("utf-8")


def export_dataset(store: Store, dataset_id: int, out: str | os.PathLike[str]) -> Path:
    """Write dataset ``dataset_id`` to ``out``; the suffix picks the format.

    ``.npy`` holds the float32 (n, d) vectors; ``.parquet`` holds an ``id`` column, a
    ``vector`` column (fixed-size list of float32) and every metadata column. The file
    appears whole or not at all (written beside the target, synced to the disk, then
    renamed), also after a power loss.

    Raises
    ------
    InvalidInputError
        Unknown suffix, or the target directory does not exist.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        choices = ", ".join(f"{k} ({v})" for k, v in EXPORT_FORMATS.items())
        raise InvalidInputError(f"cannot export to {out.name!r}: use one of {choices}")
    if not out.parent.exists():
        raise InvalidInputError(f"directory {out.parent} does not exist: create it first")
    if out.exists() and out.is_dir():
        raise InvalidInputError(f"{out} is a directory: give a file name")
    info = store.get_dataset(dataset_id)
    vectors = store.load_vectors(info.id)
    fd, tmp_name = tempfile.mkstemp(prefix=".embscope-export-", suffix=suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if suffix == ".npy":
            np.save(tmp, vectors, allow_pickle=False)
        else:
            meta = store.load_metadata(info.id)
            table = (
                pa.Table.from_pandas(meta, preserve_index=False)
                if meta.shape[1]
                else pa.table({"__n": pa.nulls(info.n)}).drop_columns("__n")
            )
            # The metadata may itself hold an "id" or "vector" column (the id column is
            # kept as metadata), even "embscope_id": the key columns take free names, free
            # ignoring case too, so the file can be ingested again.
            id_name = _free_name("id", meta.columns)
            vec_name = _free_name("vector", [*meta.columns, id_name])
            vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), info.dim)
            table = table.add_column(
                0, id_name, pa.array(list(store.load_ids(info.id)), pa.string())
            )
            table = table.add_column(1, vec_name, vec)
            pq.write_table(table.replace_schema_metadata(None), tmp)
        fsync_file(tmp)  # on the disk before the rename, and the rename after it
        os.replace(tmp, out)
        fsync_directory(out.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _free_name(name: str, taken: Iterable[object]) -> str:
    """``name``, else ``embscope_<name>``, else ``embscope_<name>_2``, ... (case-insensitive)."""
    used = {str(c).lower() for c in taken}
    candidates = [name, f"embscope_{name}"]
    k = 2
    while True:
        for candidate in candidates:
            if candidate.lower() not in used:
                return candidate
        candidates = [f"embscope_{name}_{k}"]
        k += 1
