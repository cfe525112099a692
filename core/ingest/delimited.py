"""CSV, TSV and delimited .txt files, the TensorFlow Projector's vectors.tsv among them.

A headerless file of numbers is a matrix (``vectors.tsv`` is format ``"projector"``); with a
header, the float columns are the vector and whole-number columns beside them stay metadata
(labels), unless ``vector_columns`` says otherwise; a column of bracketed lists
(``"[0.1, 0.2]"``) can be the vector too. The separate metadata file (the Projector's
``metadata.tsv``, or any delimited table) is read here as well.

A vectors file is streamed: read in blocks of :data:`STREAM_BLOCK` bytes of text, its vector
written block by block into one float32 matrix and its other columns kept as Arrow blocks
(metadata columns are usually a few and small beside the vectors), so the memory is the
matrix, the metadata and a few blocks, not the parsed table plus two copies of the vectors.
Anything unusual falls back to the whole-file read, whose messages name the lines.
"""

from __future__ import annotations

import codecs
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.columns import (
    arrow_frame,
    check_vector_columns,
    order_candidates,
    pick_vector,
    stack_columns,
)
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import (
    LISTED,
    PY_STR_BYTES,
    Loaded,
    ReadRequest,
    Where,
    counted,
    quote_list,
    short_repr,
)
from embscope.core.ingest.text_tables import (
    NUMBER_RE,
    TextHead,
    check_utf8,
    csv_line_map,
    csv_stream,
    has_header,
    is_number,
    read_ahead,
    read_csv_table,
    restore_text_columns,
    text_head,
    unique_names,
)

# A text cell holding a bracketed list of numbers.
_LIST_CELL_RE = r"^\s*\[.*\]\s*$"
#: Bytes of text per block of the streamed read (tests make it tiny to get many blocks).
STREAM_BLOCK = 4 * 2**20


def read_delimited(request: ReadRequest) -> Loaded:
    """A CSV/TSV/TXT vectors file: a matrix of numbers, numeric columns, or a list column.

    The file is streamed block by block into one float32 matrix (:func:`_stream`); anything
    unusual sends it through the whole-file read, whose messages name the lines.
    """
    path, label, suffix, budget = request.path, request.label, request.suffix, request.budget
    id_column, vector_column = request.id_column, request.vector_column
    vector_columns = request.vector_columns
    head = text_head(path, label, suffix, metadata=False)
    if not head.records:
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    header = has_header(head.records)
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
    all_numeric = not header and all(is_number(c) for c in head.records[0])
    where = Where(lambda k: csv_line_map(path, head.delimiter, header, head.has_quotes, k))

    if all_numeric:
        # The TensorFlow Projector's vectors.tsv: tab-separated floats, no header.
        fmt = "projector" if suffix == ".tsv" or (tab and width > 1) else "csv"
        # (an id_column may still come from the metadata file: make_ids checks it)
        if vector_column is not None or vector_columns is not None:
            asked = vector_column or (vector_columns or [""])[0]
            raise InvalidInputError(
                f"{label} has no header row, so it has no column {asked!r}: every column is "
                "part of the vector. Add a header row to name columns, or leave the choice unset"
            )
        names = [f"c{j}" for j in range(width)]
        types = dict.fromkeys(names, pa.float32())
        every = _Choice(key=None, chosen=names, numeric=[], list_cols=[], warnings=[])
        streamed = _stream(request, head, False, names, types, lambda _census: every)
        if streamed is not None:
            return _matrix_loaded(fmt, streamed.vectors, where, warnings)
        table = read_csv_table(
            path, label, head, budget, header=False, column_names=names, column_types=types
        )
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
        return _matrix_loaded(fmt, _stack_float32(table, budget), where, warnings)

    fmt = "tsv" if tab else "csv"
    if header:
        names, renamed = unique_names(head.records[0])
    else:
        names, renamed = [f"column_{j + 1}" for j in range(width)], []
    if renamed:
        warnings.append(f"columns renamed to give each a unique name: {', '.join(renamed)}")
    raw_names = head.records[0] if header else names
    types = {}
    if id_column is not None and id_column in names:
        types[raw_names[names.index(id_column)]] = pa.string()  # ids keep their exact text
    # A saved pandas index (empty or "Unnamed: 0" header) is metadata, never a coordinate.
    index_first = header and head.records[0][0].strip() in ("", "Unnamed: 0")

    def choose(census: _Census) -> _Choice:
        return _choose(census, names, index_first, request)

    streamed = _stream(request, head, header, names, types, choose)
    if streamed is not None:
        return _table_loaded(fmt, streamed, names, warnings, where, budget)
    table = read_csv_table(
        path, label, head, budget, header=header, column_names=names, column_types=types
    )
    if table.num_columns != len(names):
        raise InvalidInputError(
            f"{label}: the header has {len(names)} fields but the rows have {table.num_columns}; "
            "make the header name every column"
        )
    check_utf8(path, label, table)
    table = restore_text_columns(path, label, head, table, header, names, budget)
    table = table.rename_columns(names)
    n = table.num_rows
    if n == 0:
        raise InvalidInputError(
            f"{label} has a header ({quote_list(names, 8)}) but no data rows: add the rows of vectors"
        )
    census = _Census(table.schema)
    census.add(table)
    choice = choose(census)
    if choice.refused is not None:
        _require_numeric_column(table, choice.refused, label, where)  # raises: it says why
    if choice.key is not None:
        vectors = _parse_list_cells(table.column(choice.key), choice.key, label, where, budget)
        rest = table.drop_columns([choice.key])
    else:
        vectors = stack_columns(table, choice.chosen, budget)
        rest = table.drop_columns(choice.chosen)
    read = _TableRead(vectors, rest, choice)
    return _table_loaded(fmt, read, names, warnings, where, budget)


# -- which columns are the vector ------------------------------------------------------------


def _is_number_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


class _Census:
    """What the choice of the vector columns depends on, counted over a table or block by
    block: rows, empty cells per column, and per text column whether every cell is a
    bracketed list, how many are numbers and how many are empty."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.n = 0
        self.nulls: Counter[str] = Counter()
        self.lists = {f.name for f in schema if pa.types.is_string(f.type)}
        self.numbers: Counter[str] = Counter()
        self.empty: Counter[str] = Counter()

    def add(self, part: pa.Table | pa.RecordBatch) -> None:
        self.n += part.num_rows
        for f in self.schema:
            col = part.column(f.name)
            self.nulls[f.name] += col.null_count
            if not pa.types.is_string(f.type) or not part.num_rows:
                continue
            if (
                f.name in self.lists
                and not pc.all(pc.match_substring_regex(col, _LIST_CELL_RE)).as_py()
            ):
                self.lists.discard(f.name)
            if f.name not in self.lists:  # (a cell that is a list is neither number nor empty)
                matches = pc.match_substring_regex(col, NUMBER_RE.pattern, ignore_case=True)
                self.numbers[f.name] += pc.sum(matches).as_py() or 0
                self.empty[f.name] += pc.sum(pc.equal(col, "")).as_py() or 0


@dataclass(frozen=True)
class _Choice:
    """The vector of a delimited table: a text column of lists (``key``) or numeric columns
    (``chosen``). ``refused``: a column whose cells fail the read (its check names them)."""

    key: str | None
    chosen: list[str]
    numeric: list[str]
    list_cols: list[str]
    warnings: list[str]
    refused: str | None = None


def _choose(census: _Census, names: list[str], index_first: bool, request: ReadRequest) -> _Choice:
    """The vector columns the user's choices and the columns' contents pick."""
    label, id_column = request.label, request.id_column
    vector_column, vector_columns = request.vector_column, request.vector_columns
    schema, n = census.schema, census.n
    index_like = {names[0]} if index_first and pa.types.is_integer(schema.field(0).type) else set()
    whole = [f.name for f in schema if _is_number_type(f.type) and census.nulls[f.name] == 0]
    numeric = [c for c in whole if c not in index_like]
    text_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    list_cols = [c for c in text_cols if n and c in census.lists]

    if vector_column is not None or (vector_columns is None and list_cols):
        if vector_column is not None and vector_column not in list_cols:
            where_hint = (
                "it is a numeric column: pass it in vector_columns instead"
                if vector_column in numeric
                else f"columns holding bracketed lists of numbers: {quote_list(list_cols)}"
                if vector_column in names
                else f"columns: {quote_list(names)}"
            )
            raise InvalidInputError(
                f"{label}: column {vector_column!r} cannot be the vector column ({where_hint})"
                if vector_column in names
                else f"{label}: there is no column {vector_column!r}; {where_hint}"
            )
        key = vector_column or pick_vector(list_cols)
        return _Choice(key, [], numeric, list_cols, [])

    warnings = []
    if vector_columns is not None:
        chosen = check_vector_columns(vector_columns, names, numeric, label)
        if id_column in chosen:
            chosen.remove(id_column)
            warnings.append(f"the id column {id_column!r} was left out of the vector columns")
            if not chosen:
                raise InvalidInputError(
                    f"{label}: no vector columns remain besides the id column {id_column!r}"
                )
        refused = next((c for c in chosen if c not in whole), None)
        return _Choice(None, chosen, numeric, list_cols, warnings, refused)
    chosen = [c for c in numeric if c != id_column]
    # A text column that is almost all numbers is a vector column with bad cells.
    for c in text_cols:
        numbers, empty = census.numbers[c], census.empty[c]
        if numbers and numbers + empty < n and numbers >= 0.9 * n:
            return _Choice(None, chosen, numeric, list_cols, warnings, c)
    if not chosen:
        raise InvalidInputError(
            f"{label}: no numeric column to use as vectors; columns found: "
            f"{quote_list(names)}. A vectors file needs numeric columns (or a column of "
            "bracketed lists such as [0.1, 0.2])"
        )
    ints = [c for c in chosen if pa.types.is_integer(schema.field(c).type)]
    if ints and len(ints) < len(chosen):
        # Whole numbers beside float coordinates are nearly always labels or counts
        # ("label", "year"): keep them as metadata unless the user picks them.
        chosen = [c for c in chosen if c not in ints]
        warnings.append(
            f"{'columns' if len(ints) > 1 else 'column'} {quote_list(ints, 5)} "
            f"{'hold' if len(ints) > 1 else 'holds'} whole numbers beside float columns, so "
            f"{'they were' if len(ints) > 1 else 'it was'} kept as metadata, not used as a "
            "vector coordinate; choose the vector columns yourself to include "
            f"{'them' if len(ints) > 1 else 'it'}"
        )
    gappy = [f.name for f in schema if _is_number_type(f.type) and census.nulls[f.name]]
    if gappy:
        warnings.append(
            f"numeric {'columns' if len(gappy) > 1 else 'column'} {quote_list(gappy, 5)} "
            f"{'have' if len(gappy) > 1 else 'has'} empty cells, so "
            f"{'they were' if len(gappy) > 1 else 'it was'} kept as metadata and not used "
            "in the vectors; fill the cells to use them"
        )
    return _Choice(None, chosen, numeric, list_cols, warnings)


# -- the results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TableRead:
    """A delimited table read: its vectors, the other columns (Arrow), and how it was chosen."""

    vectors: np.ndarray
    rest: pa.Table
    choice: _Choice


def _matrix_loaded(fmt: str, vectors: np.ndarray, where: Where, warnings: list[str]) -> Loaded:
    """The Loaded of a headerless file of numbers: every column is the vector."""
    return Loaded(
        format=fmt,
        vectors=vectors,
        metadata=pd.DataFrame(index=pd.RangeIndex(vectors.shape[0])),
        where=where,
        warnings=warnings,
        declared_dtype=False,
        what="the values",
    )


def _table_loaded(
    fmt: str,
    read: _TableRead,
    names: list[str],
    warnings: list[str],
    where: Where,
    budget: ReadBudget,
) -> Loaded:
    """The Loaded of a table whose vector is a list column or numeric columns."""
    choice, n = read.choice, read.vectors.shape[0]
    meta = arrow_frame(read.rest, n, budget, empty_text=True)
    if choice.key is not None:
        return Loaded(
            format=fmt,
            vectors=read.vectors,
            metadata=meta,
            where=where,
            vector_column=choice.key,
            vector_candidates=order_candidates(choice.list_cols),
            columns=tuple(names),
            warnings=warnings + choice.warnings,
            declared_dtype=False,
            what=f"column {choice.key!r}",
        )
    return Loaded(
        format=fmt,
        vectors=read.vectors,
        metadata=meta,
        where=where,
        numeric_columns=tuple(choice.numeric),
        columns=tuple(names),
        warnings=warnings + choice.warnings,
        declared_dtype=False,
        vector_names=tuple(choice.chosen),
        what=f"columns {quote_list(choice.chosen, 5)}",
    )


# -- the streamed read ---------------------------------------------------------------------


def _stream(
    request: ReadRequest,
    head: TextHead,
    header: bool,
    names: list[str],
    types: dict[str, pa.DataType],
    choose: Callable[[_Census], _Choice],
) -> _TableRead | None:
    """The file read block by block: the vector straight into one float32 matrix, the other
    columns kept as Arrow blocks (metadata: usually a few columns, small beside the vectors).

    None when anything is unusual (a parse error, a later block whose types differ from the
    first's, an empty or non-number cell in the vector, a ragged list, NaN or a value beyond
    float32, dates, text that is not UTF-8, a choice the whole file would make differently):
    the caller then reads the whole file, whose messages say what is wrong. Memory: the
    matrix, one block of text and its parsed columns, and the metadata columns.
    """
    budget = request.budget
    spent = (budget.used, budget.expanded)
    try:
        read = _stream_blocks(request, head, header, names, types, choose)
    except (pa.ArrowException, OSError):
        read = None
    except InvalidInputError:
        # Over the read budget: the matrix is booked for one row per line, more than the
        # records when quoted cells span lines. The whole-file read counts records; it says
        # so itself when the file is really too large.
        read = None
    if read is None:
        budget.used, budget.expanded = spent
        pa.default_memory_pool().release_unused()  # the blocks' buffers, to the OS
    return read


def _stream_blocks(
    request: ReadRequest,
    head: TextHead,
    header: bool,
    names: list[str],
    types: dict[str, pa.DataType],
    choose: Callable[[_Census], _Choice],
) -> _TableRead | None:
    def blocks(
        types: dict[str, pa.DataType],
    ) -> contextlib.AbstractContextManager[pacsv.CSVStreamingReader]:
        return csv_stream(
            request.path,
            head,
            header=header,
            column_names=names,
            column_types=types,
            block_size=STREAM_BLOCK,
        )

    with blocks(types) as reader:
        schema = reader.schema
        dated = [f.name for f in schema if _dated(f.type)]
        if not dated or len(set(schema.names)) < len(schema.names):
            return _read_blocks(request, reader, head.lines - header, names, choose)
    # Columns pyarrow takes for dates stay text, as the whole-file read keeps them
    # (restore_text_columns): read again with those columns as text.
    with blocks({**types, **dict.fromkeys(dated, pa.string())}) as reader:
        return _read_blocks(request, reader, head.lines - header, names, choose)


def _read_blocks(
    request: ReadRequest,
    reader: pacsv.CSVStreamingReader,
    bound: int,
    names: list[str],
    choose: Callable[[_Census], _Choice],
) -> _TableRead | None:
    """The blocks of ``reader`` (at most ``bound`` rows) into the matrix and the metadata;
    the columns are chosen on the first block and must be chosen alike on the whole file."""
    budget = request.budget
    schema = reader.schema
    if len(schema) != len(names) or any(
        _dated(f.type) or pa.types.is_binary(f.type) for f in schema
    ):
        return None
    fill = _Fill(bound, budget)
    census, choice = None, None
    rest: list[pa.RecordBatch] = []
    for block in read_ahead(reader):
        if not block.num_rows:
            continue
        block = pa.RecordBatch.from_arrays(block.columns, names=names)
        if census is None:
            census = _Census(block.schema)
        census.add(block)
        if choice is None:
            choice = _chosen(choose, census)
        if choice is None or not fill.add(block, choice):
            return None
        kept = block.drop_columns([choice.key] if choice.key is not None else choice.chosen)
        budget.take(kept.nbytes, "its parsed columns")
        rest.append(kept)
    if census is None or choice is None:
        return None
    final = _chosen(choose, census)
    if final is None or (final.key, final.chosen) != (choice.key, choice.chosen):
        return None
    vectors = fill.finish(census.n)
    if vectors is None:
        return None
    return _TableRead(vectors, pa.Table.from_batches(rest), final)


def _chosen(choose: Callable[[_Census], _Choice], census: _Census) -> _Choice | None:
    """The choice, or None where the whole-file read would refuse the file."""
    try:
        choice = choose(census)
    except InvalidInputError:
        return None
    return choice if choice.refused is None else None


def _dated(t: pa.DataType) -> bool:
    return bool(pa.types.is_temporal(t) or pa.types.is_decimal(t))


class _Fill:
    """One float32 matrix of at most ``bound`` rows, filled block by block as the whole-file
    read would fill it (through float64: the same rounding). ``add`` is False on anything
    the whole-file read would report or read differently."""

    def __init__(self, bound: int, budget: ReadBudget):
        self.bound, self.budget = bound, budget
        self.matrix: np.ndarray | None = None
        self.filled = 0

    def _part(self, rows: int, d: int, what: str) -> np.ndarray | None:
        if self.matrix is None:
            self.budget.take(self.bound * d * 4, what)
            self.matrix = np.empty((self.bound, d), dtype=np.float32)
        if d != self.matrix.shape[1] or self.filled + rows > self.bound:
            return None
        return self.matrix[self.filled : self.filled + rows]

    def add(self, block: pa.RecordBatch, choice: _Choice) -> bool:
        rows = block.num_rows
        if choice.key is not None:
            col = block.column(choice.key)
            if col.null_count or not pa.types.is_string(col.type):
                return False
            part = self._lists(col, choice.key)
        else:
            part = self._part(rows, len(choice.chosen), "the vector columns as float32")
            with np.errstate(over="ignore"):  # beyond float32: inf, found just below
                for j, name in enumerate(choice.chosen):
                    col = block.column(name)
                    if part is None or col.null_count or not _is_number_type(col.type):
                        return False
                    values = col.to_numpy(zero_copy_only=False)
                    part[:, j] = values.astype(np.float64) if values.dtype.kind in "iu" else values
        if part is None or not np.isfinite(part).all():
            return False  # NaN, infinities and overflows are named by the whole-file read
        self.filled += rows
        return True

    def _lists(self, col: pa.Array, name: str) -> np.ndarray | None:
        part = None
        for i, cell in enumerate(col.to_pylist()):
            try:
                row = _list_values(cell)
            except ValueError:
                return None
            if part is None:
                part = self._part(len(col), len(row), f"the vectors in column {name!r}")
                if part is None or not row:
                    return None
            if len(row) != part.shape[1]:
                return None
            part[i] = row
        return part

    def finish(self, n: int) -> np.ndarray | None:
        """The matrix of the ``n`` rows read, cut to them in place (no copy)."""
        if self.matrix is None or self.filled != n:
            return None
        if n < self.bound:
            d = self.matrix.shape[1]
            self.matrix.resize((n, d), refcheck=False)
            # The bound counts lines, not records (a quoted cell may span lines): give back
            # what was booked for rows that never came.
            self.budget.used -= (self.bound - n) * d * 4
        return self.matrix


def _stack_float32(table: pa.Table, budget: ReadBudget) -> np.ndarray:
    budget.take(table.num_rows * table.num_columns * 4, "the vector columns side by side")
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j in range(table.num_columns):
        out[:, j] = table.column(j).to_numpy()
    return out


def _require_numeric_column(table: pa.Table, name: str, label: str, where: Where) -> None:
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
        ok = pc.fill_null(pc.match_substring_regex(col, NUMBER_RE.pattern, ignore_case=True), False)
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False).astype(bool))
        shown = "; ".join(
            f"{where.one(int(i))}: {short_repr(col[int(i)].as_py())}" for i in bad[:LISTED]
        )
        raise InvalidInputError(
            f"{label}: vector column {name!r} has {counted(len(bad), 'cell')} that "
            f"{'is' if len(bad) == 1 else 'are'} not a number ({shown}"
            f"{' …' if len(bad) > LISTED else ''}). Fix those cells or leave {name!r} out "
            "of vector_columns"
        )
    raise InvalidInputError(
        f"{label}: column {name!r} ({t}) is not numeric and cannot be part of the vector"
    )


def _list_values(cell: str) -> list[float]:
    """The numbers of a bracketed list cell ("[0.1, 0.2]" or "[0.1 0.2]"); ValueError if any
    is not a number."""
    return [float(v) for v in cell.strip()[1:-1].replace(",", " ").split()]


def _parse_list_cells(
    col: pa.ChunkedArray, name: str, label: str, where: Where, budget: ReadBudget
) -> np.ndarray:
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
                try:
                    row = _list_values(cell)
                except ValueError:
                    n_bad += 1
                    if len(bad) < LISTED:
                        bad.append(i)
                    i += 1
                    continue
                lengths[i] = len(row)
                if out is None:
                    budget.take(n * len(row) * 8, f"the vectors in column {name!r}")
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


def read_delimited_metadata(request: ReadRequest, n: int | None) -> tuple[pd.DataFrame, list[str]]:
    """A delimited metadata file; one column has no header unless it has n + 1 lines (with
    ``n`` None, a table on its own: it has one)."""
    path, label, budget = request.path, request.label, request.budget
    head = text_head(path, label, request.suffix, metadata=True)
    warnings: list[str] = []
    budget.take(2 * path.stat().st_size, "its text")
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
        if n is None:
            n = count - 1  # a table on its own: its first line names the column
        if count not in (n, n + 1):
            raise InvalidInputError(
                f"the vectors file has {n} rows but metadata file {label} has {count} "
                f"lines (a single-column file has one label per line, plus optionally a header "
                "line); the metadata needs exactly one row per vector, in the same order"
            )
        # one Python str per line
        budget.take(count * PY_STR_BYTES + len(text), "its lines")
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
    names, renamed = unique_names(head.records[0])
    if renamed:
        warnings.append(
            f"metadata columns renamed to give each a unique name: {', '.join(renamed)}"
        )
    table = read_csv_table(
        path, label, head, budget, header=True, column_names=names, column_types=None
    )
    table = restore_text_columns(path, label, head, table, True, names, budget)
    table = table.rename_columns(names)
    return arrow_frame(table, table.num_rows, budget, empty_text=True), warnings
