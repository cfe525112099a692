"""CSV, TSV and delimited .txt files, the TensorFlow Projector's vectors.tsv among them.

A headerless file of numbers is a matrix (``vectors.tsv`` is format ``"projector"``); with a
header, the float columns are the vector and whole-number columns beside them stay metadata
(labels), unless ``vector_columns`` says otherwise; a column of bracketed lists
(``"[0.1, 0.2]"``) can be the vector too. The separate metadata file (the Projector's
``metadata.tsv``, or any delimited table) is read here as well.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    check_utf8,
    csv_line_map,
    has_header,
    is_number,
    read_csv_table,
    restore_text_columns,
    text_head,
    unique_names,
)

# A text cell holding a bracketed list of numbers.
_LIST_CELL_RE = r"^\s*\[.*\]\s*$"


def read_delimited(request: ReadRequest) -> Loaded:
    """A CSV/TSV/TXT vectors file: a matrix of numbers, numeric columns, or a list column."""
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
        table = read_csv_table(
            path,
            label,
            head,
            budget,
            header=False,
            column_names=names,
            column_types=dict.fromkeys(names, pa.float32()),
        )
        where = Where(lambda k: csv_line_map(path, head.delimiter, False, head.has_quotes, k))
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
        return Loaded(
            format=fmt,
            vectors=_stack_float32(table, budget),
            metadata=pd.DataFrame(index=pd.RangeIndex(table.num_rows)),
            where=where,
            warnings=warnings,
            declared_dtype=False,
            what="the values",
        )

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
    where = Where(lambda k: csv_line_map(path, head.delimiter, header, head.has_quotes, k))

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
        vectors = _parse_list_cells(table.column(key), key, label, where, budget)
        rest = table.drop_columns([key])
        return Loaded(
            format=fmt,
            vectors=vectors,
            metadata=arrow_frame(rest, n, budget, empty_text=True),
            where=where,
            vector_column=key,
            vector_candidates=order_candidates(list_cols),
            columns=tuple(names),
            warnings=warnings,
            declared_dtype=False,
            what=f"column {key!r}",
        )

    if vector_columns is not None:
        chosen = check_vector_columns(vector_columns, names, numeric, label)
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
                f"{quote_list(names)}. A vectors file needs numeric columns (or a column of "
                "bracketed lists such as [0.1, 0.2])"
            )
        ints = [c for c in chosen if pa.types.is_integer(table.column(c).type)]
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
        gappy = [
            f.name
            for f in schema
            if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
            and table.column(f.name).null_count
        ]
        if gappy:
            warnings.append(
                f"numeric {'columns' if len(gappy) > 1 else 'column'} {quote_list(gappy, 5)} "
                f"{'have' if len(gappy) > 1 else 'has'} empty cells, so "
                f"{'they were' if len(gappy) > 1 else 'it was'} kept as metadata and not used "
                "in the vectors; fill the cells to use them"
            )
    vectors = stack_columns(table, chosen, budget)
    meta = arrow_frame(table.drop_columns(chosen), n, budget, empty_text=True)
    return Loaded(
        format=fmt,
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


def _refuse_broken_numeric(
    table: pa.Table, text_cols: Sequence[str], label: str, where: Where
) -> None:
    """A text column that is almost all numbers is a vector column with bad cells."""
    n = table.num_rows
    for name in text_cols:
        col = table.column(name)
        numeric = (
            pc.sum(pc.match_substring_regex(col, NUMBER_RE.pattern, ignore_case=True)).as_py() or 0
        )
        empty = pc.sum(pc.equal(col, "")).as_py() or 0
        if numeric and numeric + empty < n and numeric >= 0.9 * n:
            _require_numeric_column(table, name, label, where)


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
                inner = cell.strip()[1:-1].replace(",", " ").split()
                try:
                    row = [float(v) for v in inner]
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
