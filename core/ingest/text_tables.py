"""Delimited text (CSV, TSV, the TensorFlow Projector's files) parsed into Arrow tables.

The first records decide the delimiter and whether there is a header; pyarrow parses the
file (never through a path whose suffix would make it decompress), as one table
(:func:`read_csv_table`) or block by block (:func:`csv_stream`, with the same options);
Python's csv module is used only to name the lines behind an error, and only as far as the
message needs them.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.columns import BLOCK, open_binary
from embscope.core.ingest.files import FORMAT_NAMES, unreadable
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import LISTED, counted, short_repr

#: A cell that is a number, as pyarrow and Python's float() read it (nan and inf included).
NUMBER_RE = re.compile(
    r"^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*$", re.IGNORECASE
)
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclass
class TextHead:
    """What the start of a text file says about how to parse it."""

    delimiter: str
    records: list[list[str]]  # the first (up to) two non-empty records
    bom: bool
    crlf: bool
    has_quotes: bool
    lines: int  # lines in the file (a last line without a line break counted): >= its records


def text_head(path: Path, label: str, suffix: str, *, metadata: bool) -> TextHead:
    """The delimiter and first records of a UTF-8 text file; UTF-16/32 and binary refused."""
    with open(path, "rb") as fh:
        raw = fh.read(1 << 20)
    for mark, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(mark):
            raise InvalidInputError(
                f"{label} is {name} text; embscope reads UTF-8: save it again as UTF-8"
            )
    if b"\x00" in raw:
        raise InvalidInputError(
            f"{label} looks like a binary file, not text: check that it really is "
            f"{FORMAT_NAMES[suffix]} (its suffix is {suffix})"
        )
    bom = raw.startswith(codecs.BOM_UTF8)
    text = (
        raw[3:].decode("utf-8", errors="replace") if bom else raw.decode("utf-8", errors="replace")
    )
    if not text.strip():
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    first_line = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    if suffix == ".tsv" or (metadata and suffix == ".txt"):
        delimiter = "\t"
    elif suffix == ".csv":
        delimiter = ","
        if "," not in first_line:
            delimiter = next((d for d in (";", "\t") if d in first_line), ",")
    else:  # .txt vectors: whatever the first line uses (np.savetxt writes spaces)
        delimiter = next((d for d in ("\t", ",", ";", " ") if d in first_line.strip()), "\t")
    records = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for rec in reader:
            if rec and any(cell != "" for cell in rec):
                records.append(rec)
                if len(records) == 2:
                    break
    except csv.Error:
        pass  # the head was cut inside a quoted field; pyarrow reads the full file below
    # One pass in blocks (a memory map would count the whole file as resident memory).
    has_quotes, lines, last = False, 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK):
            has_quotes = has_quotes or b'"' in chunk
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return TextHead(delimiter, records, bom, "\r\n" in text, has_quotes, lines + (last != b"\n"))


def is_number(cell: str) -> bool:
    """Whether a text cell is a number (:data:`NUMBER_RE`)."""
    return bool(NUMBER_RE.match(cell))


def has_header(records: list[list[str]]) -> bool:
    """Whether the first of the first two records is a header row."""
    first = records[0]
    numeric = [is_number(c) for c in first]
    if all(numeric):
        # pandas' DataFrame(X).to_csv(index=False) writes the header 0,1,...,d-1.
        if len(records) > 1 and all(_INT_RE.match(c) for c in first):
            ints = [int(c) for c in first]
            if ints in (list(range(len(ints))), list(range(1, len(ints) + 1))) and len(ints) > 1:
                return any(not _INT_RE.match(c) for c in records[1])
        return False
    if len(records) < 2 or not any(numeric):
        return True
    # A text cell above a number is a column name; text above text in every text column,
    # with numbers beside, is a headerless file with label columns.
    second = records[1]
    return any(not a and is_number(b) for a, b in zip(numeric, second, strict=False))


def unique_names(raw: Sequence[str]) -> tuple[list[str], list[str]]:
    """Header names made unique and non-empty (case-insensitively), with notes of renames."""
    names, notes, seen = [], [], set()
    for k, name in enumerate(raw):
        new = name
        if name.strip() == "" or name == "Unnamed: 0":
            new = "index" if k == 0 else f"column_{k + 1}"
        base, j = new, 2
        while new.lower() in seen:
            new, j = f"{base}_{j}", j + 1
        if new != name:
            notes.append(f"{name!r} -> {new!r}")
        seen.add(new.lower())
        names.append(new)
    return names, notes


def csv_records(path: Path, delimiter: str, quoting: bool) -> Iterator[tuple[int, list[str]]]:
    """(first file line, fields) of each non-blank record, as pyarrow splits the file.

    Stops quietly at a record Python's csv module cannot read (e.g. a field over its
    size limit, which is process-global and so is left alone): callers then name rows by
    number instead of by line.
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(
            fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        )
        prev = 0
        try:
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if rec and rec != [""]:
                    yield start, rec
        except csv.Error:
            return


def csv_line_map(path: Path, delimiter: str, header: bool, quoting: bool, limit: int) -> np.ndarray:
    """First file line (from 1) of each of the first ``limit`` data records, skipping blank
    lines as pyarrow does."""
    want = limit + (1 if header else 0)
    starts = [
        start for start, _rec in itertools.islice(csv_records(path, delimiter, quoting), want)
    ]
    return np.asarray(starts[1:] if header else starts, dtype=np.int64)


def _diagnose_csv(
    path: Path, label: str, head: TextHead, header: bool, exc: Exception
) -> InvalidInputError:
    """Find the lines behind a pyarrow CSV error (only ever run on the error path)."""
    ragged: list[tuple[int, int]] = []  # the first few only: a message names five
    n_ragged = 0
    bad_cells: list[tuple[int, int, str]] = []
    expected = None
    first_line = None
    for start, rec in csv_records(path, head.delimiter, head.has_quotes):
        if expected is None:
            expected, first_line = len(rec), start
            if header:
                continue
        if len(rec) != expected:
            n_ragged += 1
            if len(ragged) < LISTED:
                ragged.append((start, len(rec)))
        elif not header and len(bad_cells) < LISTED:
            for j, cell in enumerate(rec):
                if not is_number(cell) and cell != "":
                    bad_cells.append((start, j, cell))
                    break
    if ragged:
        shown = ", ".join(f"line {ln} has {k}" for ln, k in ragged[:LISTED])
        more = f" and {n_ragged - LISTED} more" if n_ragged > LISTED else ""
        return InvalidInputError(
            f"{label}: rows have different numbers of fields: line {first_line} has {expected} "
            f"but {counted(n_ragged, 'line')} differ{'s' if n_ragged == 1 else ''} "
            f"({shown}{more}). Every row needs the same number of values: fix or remove those lines"
        )
    if bad_cells:
        shown = "; ".join(
            f"line {ln}, column {j + 1}: {short_repr(cell)}" for ln, j, cell in bad_cells
        )
        complex_hint = (
            "; complex numbers are not supported: keep the real part or the magnitude"
            if any(re.search(r"\dj$", cell.strip()) for _, _, cell in bad_cells)
            else ""
        )
        return InvalidInputError(
            f"{label}: cells that are not numbers ({shown}). Every vector value must be a "
            f"number (a header row, if any, must come first){complex_hint}"
        )
    return unreadable(label, ".csv", exc)


def _csv_options(
    head: TextHead,
    header: bool,
    column_names: Sequence[str] | None,
    column_types: dict[str, pa.DataType] | None,
    block_size: int,
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    """How pyarrow parses the file: the same for the whole-file read and the stream."""
    read = pacsv.ReadOptions(
        block_size=block_size,
        column_names=list(column_names) if column_names is not None and not header else None,
    )
    parse = pacsv.ParseOptions(
        delimiter=head.delimiter,
        quote_char='"' if head.has_quotes else False,
        newlines_in_values=head.has_quotes,
    )
    convert = pacsv.ConvertOptions(
        column_types=column_types or {},
        null_values=[""],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return read, parse, convert


def read_csv_table(
    path: Path,
    label: str,
    head: TextHead,
    budget: ReadBudget,
    *,
    header: bool,
    column_names: Sequence[str] | None,
    column_types: dict[str, pa.DataType] | None,
) -> pa.Table:
    """The whole file parsed by pyarrow, counted against ``budget``; errors located by line."""
    read, parse, convert = _csv_options(head, header, column_names, column_types, BLOCK)
    try:
        with open_binary(path) as fh:
            table = pacsv.read_csv(
                fh, read_options=read, parse_options=parse, convert_options=convert
            )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise InvalidInputError(f"{label} is empty: it holds no rows") from exc
        raise _diagnose_csv(path, label, head, header, exc) from exc
    budget.take(table.nbytes, "its parsed columns")
    return table


@contextlib.contextmanager
def csv_stream(
    path: Path,
    head: TextHead,
    *,
    header: bool,
    column_names: Sequence[str] | None,
    column_types: dict[str, pa.DataType] | None,
    block_size: int,
) -> Iterator[pacsv.CSVStreamingReader]:
    """The file as record batches of about ``block_size`` bytes of text each, parsed as
    :func:`read_csv_table` parses it, except that the column types are those of the first
    block: a later block that does not fit them raises ``pyarrow.ArrowInvalid``, as does any
    parse error (unlocated: the caller reads the whole file again to name the lines)."""
    read, parse, convert = _csv_options(head, header, column_names, column_types, block_size)
    with open_binary(path) as fh:
        yield pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)


def read_ahead(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    """The reader's blocks, the next one parsed on a worker thread (pyarrow lets go of the
    GIL) while the caller handles the current one: one block more in memory. Closing the
    generator early waits for that one block."""

    def following() -> pa.RecordBatch | None:
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None

    with ThreadPoolExecutor(1, thread_name_prefix="csv-block") as pool:
        pending = pool.submit(following)
        while (block := pending.result()) is not None:  # the reader's errors raise here
            pending = pool.submit(following)
            yield block


def check_utf8(path: Path, label: str, table: pa.Table) -> None:
    """Refuse text that is not UTF-8 (pyarrow reads it as binary columns), naming the line."""
    if not any(
        pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema
    ):
        return
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{label}: line {line} is not valid UTF-8 text (byte {data[exc.start]:#04x}); "
            "save the file with UTF-8 encoding"
        ) from exc


def restore_text_columns(
    path: Path,
    label: str,
    head: TextHead,
    table: pa.Table,
    header: bool,
    names: Sequence[str] | None,
    budget: ReadBudget,
) -> pa.Table:
    """Re-read columns pyarrow took for dates/times as text, so the text is kept exactly."""
    temporal = [
        i
        for i, f in enumerate(table.schema)
        if pa.types.is_temporal(f.type) or pa.types.is_decimal(f.type)
    ]
    if not temporal:
        return table
    raw_names = table.column_names
    types = {raw_names[i]: pa.string() for i in temporal}
    again = read_csv_table(
        path, label, head, budget, header=header, column_names=names, column_types=types
    )
    for i in temporal:
        table = table.set_column(i, raw_names[i], again.column(i))
    return table
