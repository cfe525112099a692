"""What the readers produce, and the vocabulary they share to name rows in messages.

:class:`FileInspection` and :class:`ParsedDataset` are the public results. A format reader
takes a :class:`ReadRequest` (the file, the user's choices and the read's budget) and
returns a :class:`Loaded`: the raw matrix and metadata before the shared checks of
:mod:`embscope.core.ingest.checks`. :class:`Where` names rows by file line (text formats,
counting from 1) or by row number (binary formats, counting from 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embscope.core.ingest.limits import ReadBudget

#: Values of ``ParsedDataset.format`` / ``FileInspection.format``.
FORMATS: tuple[str, ...] = ("npy", "npz", "parquet", "csv", "tsv", "projector", "jsonl", "h5ad")

#: How many offending rows or cells a message names before "and k more".
LISTED = 5
#: Bytes of a short Python str plus the pointer to it.
PY_STR_BYTES = 64

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


class Where:
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
        """Row ``i`` as ``'line 12'`` or ``'row 11'``."""
        lines = self.lines(i)
        if lines is not None and 0 <= i < len(lines):
            return f"line {int(lines[i])}"
        return f"{self.unit} {i}"

    def many(self, rows: Iterable[int], total: int | None = None) -> str:
        """Rows as ``'lines 3, 7 and 2 more'`` (``total``: how many there are in all)."""
        rows = [int(r) for r in rows]
        total = len(rows) if total is None else total
        shown = rows[:LISTED]
        lines = self.lines(max(shown, default=0))
        if lines is not None and all(0 <= r < len(lines) for r in shown):
            word, nums, tail = "line", [str(int(lines[r])) for r in shown], ""
        else:
            word, nums, tail = self.unit, [str(r) for r in shown], ", counting from 0"
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        plural = "s" if total > 1 else ""
        return f"{word}{plural} {', '.join(nums)}{more}{tail}"


def counted(k: int, noun: str) -> str:
    """``k`` and ``noun``, plural unless k is 1: ``'1 row'``, ``'3 rows'``."""
    return f"{k} {noun}" + ("" if k == 1 else "s")


def quote_list(names: Iterable[str], limit: int = 30) -> str:
    """Names quoted and joined for a message, at most ``limit`` of them; ``'(none)'`` if empty."""
    names = [str(n) for n in names]
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def short_repr(value: Any, width: int = 40) -> str:
    """``repr(value)`` cut to ``width`` characters for a message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…'"


# -- the reader's intermediate result ------------------------------------------------------


@dataclass
class Loaded:
    """What a format reader found, before the shared checks."""

    format: str
    vectors: np.ndarray  # 2-D, any numeric dtype; checked and converted by checks.finish_vectors
    metadata: pd.DataFrame
    where: Where
    vector_column: str | None = None
    vector_candidates: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    declared_dtype: bool = True  # binary formats state a dtype: conversions are worth a note
    vector_names: tuple[str, ...] = ()  # column names, when the vector is made of columns
    what: str = "the vectors"


@dataclass(frozen=True)
class ReadRequest:
    """One vectors file to read, with the user's choices: what a format reader is given.

    Attributes
    ----------
    path : pathlib.Path
        Where the file is.
    label : str
        The user's name for the file (messages use it).
    suffix : str
        The suffix that chose the reader (lower case, with the dot).
    budget : ReadBudget
        The read's memory budget; the reader counts what it builds against it.
    id_column, vector_column : str or None
        As given to :func:`embscope.core.ingest.read_dataset`.
    vector_columns : tuple of str or None
        As given to :func:`embscope.core.ingest.read_dataset`, as strings.
    """

    path: Path
    label: str
    suffix: str
    budget: ReadBudget
    id_column: str | None = None
    vector_column: str | None = None
    vector_columns: Sequence[str] | None = None
