"""The registry of readers, ``{suffix: reader}``, and the dispatch that uses it.

:data:`READERS` maps each vectors-file suffix to a :class:`Reader` (its format family's
function, and whether several numeric columns can make up the vector);
:data:`METADATA_READERS` does the same for a separate metadata file. :func:`load_vectors`
and :func:`load_metadata` check the file, look its suffix up and call the reader with a
:class:`~embscope.core.ingest.model.ReadRequest` carrying the read's budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.anndata import read_h5ad
from embscope.core.ingest.delimited import read_delimited, read_delimited_metadata
from embscope.core.ingest.files import (
    LIBRARY_ERRORS,
    check_file,
    check_suffix,
    library_errors,
    unreadable,
)
from embscope.core.ingest.json_files import read_json, read_json_metadata
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import Loaded, ReadRequest
from embscope.core.ingest.numpy_files import read_npy, read_npz
from embscope.core.ingest.parquet import read_parquet, read_parquet_metadata

#: A metadata file's reader: ``(request, n) -> (frame, warnings)``.
MetadataReader = Callable[[ReadRequest, int | None], tuple[pd.DataFrame, list[str]]]


@dataclass(frozen=True)
class Reader:
    """How one format family reads a vectors file.

    Attributes
    ----------
    read : callable
        ``read(request) -> Loaded``: the file's raw vectors and metadata, before the shared
        checks of :mod:`embscope.core.ingest.checks`.
    vector_columns : bool
        Whether several numeric columns can make up the vector (``vector_columns``).
    """

    read: Callable[[ReadRequest], Loaded]
    vector_columns: bool = False


#: The reader of each vectors-file suffix, in the order the upload page lists them.
READERS: dict[str, Reader] = {
    ".npy": Reader(read_npy),
    ".npz": Reader(read_npz),
    ".parquet": Reader(read_parquet, vector_columns=True),
    ".csv": Reader(read_delimited, vector_columns=True),
    ".tsv": Reader(read_delimited, vector_columns=True),
    ".txt": Reader(read_delimited, vector_columns=True),
    ".jsonl": Reader(read_json),
    ".json": Reader(read_json),
    ".h5ad": Reader(read_h5ad),
}
#: The reader of each suffix a separate metadata file may have.
METADATA_READERS: dict[str, MetadataReader] = {
    ".csv": read_delimited_metadata,
    ".tsv": read_delimited_metadata,
    ".txt": read_delimited_metadata,
    ".parquet": read_parquet_metadata,
    ".jsonl": read_json_metadata,
    ".json": read_json_metadata,
}
#: File suffixes a vectors file may have (the same list the upload page accepts).
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(READERS)
#: File suffixes a separate metadata file may have.
METADATA_SUFFIXES: tuple[str, ...] = tuple(METADATA_READERS)


def load_vectors(
    path: Path,
    label: str,
    budget: ReadBudget,
    *,
    id_column: str | None,
    vector_column: str | None,
    vector_columns: Sequence[str] | None,
) -> Loaded:
    """Read a vectors file with the reader its suffix names, before the shared checks.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    label : str
        The user's name for it: its suffix picks the reader, messages use it.
    budget : ReadBudget
        The read's memory budget.
    id_column, vector_column, vector_columns
        The user's choices, as given to :func:`embscope.core.ingest.read_dataset`.

    Returns
    -------
    Loaded

    Raises
    ------
    InvalidInputError
        An unknown suffix, a missing or empty file, choices the format does not have, or
        a file the reader refuses.
    """
    suffix = check_suffix(label, path, SUPPORTED_SUFFIXES, "vectors")
    size = check_file(path, label)
    with budget.file(label, size):
        if vector_columns is not None:
            vector_columns = tuple(str(c) for c in vector_columns)
            if not vector_columns:
                raise InvalidInputError(
                    "vector_columns is empty: choose at least one numeric column"
                )
            if vector_column is not None:
                raise InvalidInputError(
                    f"give either vector_column ({vector_column!r}) or vector_columns, not both"
                )
        reader = READERS[suffix]
        if vector_columns is not None and not reader.vector_columns:
            raise InvalidInputError(
                f"{label}: vector_columns applies to CSV/TSV and Parquet files only; "
                "for this format choose the array with vector_column"
            )
        request = ReadRequest(
            path=path,
            label=label,
            suffix=suffix,
            budget=budget,
            id_column=id_column,
            vector_column=vector_column,
            vector_columns=vector_columns,
        )
        with library_errors(label, path):
            return reader.read(request)


def load_metadata(
    path: Path, label: str, n: int | None, budget: ReadBudget
) -> tuple[pd.DataFrame, list[str]]:
    """A metadata file's rows as a typed frame of exactly ``n`` rows, with warnings.

    Parameters
    ----------
    path : pathlib.Path
        The metadata file.
    label : str
        The user's name for it: its suffix picks the reader, messages use it.
    n : int or None
        How many vectors there are: the file must have one row for each (None: a table read
        on its own, any number of rows; a one-column text file then has a header line).
    budget : ReadBudget
        The read's memory budget (shared with the vectors file).

    Returns
    -------
    frame : pandas.DataFrame
        ``n`` rows, RangeIndex.
    warnings : list of str

    Raises
    ------
    InvalidInputError
        An unknown suffix, an unreadable file, or a row count other than ``n``.
    """
    suffix = check_suffix(label, path, METADATA_SUFFIXES, "metadata")
    size = check_file(path, label)
    request = ReadRequest(path=path, label=label, suffix=suffix, budget=budget)
    with budget.file(f"metadata file {label}", size):
        try:
            frame, warnings = METADATA_READERS[suffix](request, n)
        except InvalidInputError:
            raise
        except LIBRARY_ERRORS as exc:
            raise unreadable(f"metadata file {label}", suffix, exc) from exc
    if n is not None and len(frame) != n:
        raise InvalidInputError(
            f"the vectors file has {n} rows but metadata file {label} has {len(frame)} data rows; "
            "the metadata needs exactly one row per vector, in the same order"
        )
    return frame, warnings
