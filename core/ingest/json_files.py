"""JSON Lines and JSON files: a list-of-numbers field is the vector, the other fields metadata.

Well-formed JSON Lines go through pyarrow's reader; anything it cannot keep exact (nested
objects, dates, ragged or null vectors, JSON arrays) goes through Python's json module,
whose objects are counted against the read's budget from a sample before they are built.
"""

from __future__ import annotations

import codecs
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.columns import (
    BLOCK,
    arrow_frame,
    is_vector_type,
    list_matrix,
    open_binary,
    order_candidates,
    pick_vector,
    py_series,
)
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import (
    LISTED,
    Loaded,
    ReadRequest,
    Where,
    counted,
    quote_list,
    short_repr,
)

# Python objects built by the exact JSON readers: bytes per byte of text, at least (the real
# factor is measured on a sample of records; ~3 for numeric vectors, ~25 for tiny records).
_MIN_PY_JSON_FACTOR = 4.0


def _jsonl_line_map(path: Path, limit: int) -> np.ndarray:
    with open(path, "rb") as fh:
        found = (i for i, line in enumerate(fh, 1) if line.strip())
        return np.fromiter(itertools.islice(found, limit), dtype=np.int64)


def _py_size(obj: Any) -> int:
    """Approximate bytes of a parsed JSON value as Python objects (with the pointers to them)."""
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        total += sys.getsizeof(item) + 8
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


def _sample_json_records(head: bytes) -> tuple[list[Any], int]:
    """Records parsed from the start of a JSON array or JSON Lines file, and the bytes they took."""
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    records: list[Any] = []
    body = text.lstrip()
    if body.startswith("["):
        decoder = json.JSONDecoder()
        pos = len(text) - len(body) + 1
        end = pos
        while len(records) < 1000:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError):
                break
            records.append(obj)
            end = pos
        return records, len(text[:end].encode("utf-8"))
    used = 0
    lines = head.split(b"\n")
    for raw in lines[:-1][:1000]:  # the last piece may be cut short
        used += len(raw) + 1
        if raw.strip():
            try:
                records.append(json.loads(raw.decode("utf-8", errors="ignore")))
            except (ValueError, RecursionError):
                break
    return records, used


def _charge_python_json(path: Path, what: str, budget: ReadBudget) -> None:
    """Count the Python objects the exact JSON readers will build, from a sample, before
    building them (json.load is all or nothing: it cannot be stopped half way)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    records, used = _sample_json_records(head)
    factor = 8.0  # no sample (one huge record): numbers as Python floats, ~3-8x their text
    if records and used:
        factor = sum(_py_size(r) for r in records) / used
    factor = max(factor, _MIN_PY_JSON_FACTOR)
    # the text itself (decoded to str), then the objects built from it
    budget.take(size + size * factor, what)


def read_json(request: ReadRequest) -> Loaded:
    """A JSON Lines file (one object per line) or a JSON array of objects."""
    path, label = request.path, request.label
    vector_column, budget = request.vector_column, request.budget
    with open(path, "rb") as fh:
        start = fh.read(4096)
    if start.startswith(codecs.BOM_UTF8):
        start = start[3:]
    stripped = start.lstrip()
    if not stripped:
        raise InvalidInputError(f"{label} is empty: it holds no rows")
    if stripped.startswith(b"["):
        _charge_python_json(path, "its records as Python objects", budget)
        return _read_json_array(path, label, vector_column, budget)
    fast = _read_jsonl_fast(path, label, vector_column, budget)
    if fast is not None:
        return fast
    _charge_python_json(path, "its records as Python objects", budget)
    return _read_jsonl_python(path, label, vector_column, budget)


def _read_jsonl_fast(
    path: Path, label: str, vector_column: str | None, budget: ReadBudget
) -> Loaded | None:
    """pyarrow's JSON reader for well-formed files; None sends the file to the exact reader."""
    try:
        with open_binary(path) as fh:
            table = pajson.read_json(fh, read_options=pajson.ReadOptions(block_size=BLOCK))
    except pa.ArrowException:
        return None
    schema = table.schema
    names = table.column_names
    candidates = [f.name for f in schema if is_vector_type(f.type)]
    key = (
        vector_column
        if vector_column is not None
        else (pick_vector(candidates) if candidates else None)
    )
    if key is None or key not in candidates:
        return None
    budget.take(table.nbytes, "its parsed fields")
    col = table.column(key)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count or arr.flatten().null_count:
        return None
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        return None
    # pyarrow merges the keys of every object into one struct (adding nulls a line never
    # had) and turns date-like strings into timestamps; metadata must stay as written, so
    # nested objects go to the exact reader and top-level dates are read again as strings.
    if any(_needs_exact_reader(f.type) for f in schema):
        return None
    if any(pa.types.is_temporal(f.type) for f in schema):
        text_schema = pa.schema(
            [pa.field(f.name, pa.string()) if pa.types.is_temporal(f.type) else f for f in schema]
        )
        try:
            with open_binary(path) as fh:
                table = pajson.read_json(
                    fh,
                    read_options=pajson.ReadOptions(block_size=BLOCK),
                    parse_options=pajson.ParseOptions(explicit_schema=text_schema),
                )
        except pa.ArrowException:
            return None
    where = Where(lambda k: _jsonl_line_map(path, k))
    vectors = list_matrix(col, key, label, where)
    warnings = []
    others = [c for c in candidates if c != key]
    rest = table.drop_columns([key, *others])
    if others:
        warnings.append(
            f"other list fields ({quote_list(others)}) were not kept as metadata; ingest them "
            "as datasets of their own with vector_column"
        )
    if len(candidates) > 1 and vector_column is None:
        warnings.append(
            f"several fields could be the vectors ({quote_list(candidates)}); {key!r} was "
            "used: choose another with vector_column"
        )
    return Loaded(
        format="jsonl",
        vectors=vectors,
        metadata=arrow_frame(rest, table.num_rows, budget),
        where=where,
        vector_column=key,
        vector_candidates=order_candidates(candidates),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        what=f"field {key!r}",
    )


def _needs_exact_reader(t: pa.DataType) -> bool:
    """Objects anywhere, or dates inside lists: types the fast JSON path cannot keep exact."""
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.types.is_temporal(t.value_type) or _needs_exact_reader(t.value_type)
    return False


def _json_error_line(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at column {exc.colno}"


def _read_jsonl_python(
    path: Path, label: str, vector_column: str | None, budget: ReadBudget
) -> Loaded:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"{label}: line {lineno} is not valid UTF-8 text; save the file as UTF-8"
                ) from exc
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"{label}: line {lineno} is not valid JSON ({_json_error_line(exc)}). Each "
                    'line must hold one JSON object, e.g. {"vector": [0.1, 0.2], "label": "cat"}'
                ) from exc
            if not isinstance(obj, dict):
                raise InvalidInputError(
                    f"{label}: line {lineno} holds a JSON {type(obj).__name__}, not an object; "
                    'each line must be one object, e.g. {"vector": [0.1, 0.2], "label": "cat"}'
                )
            records.append(obj)
            lines.append(lineno)
    where = Where(lambda k: np.asarray(lines[:k]), unit="row")
    return _records_to_loaded(records, where, label, vector_column, "line", budget)


def _read_json_array(
    path: Path, label: str, vector_column: str | None, budget: ReadBudget
) -> Loaded:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{label} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "fix the file or save it as JSON Lines (one object per line)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{label} is not UTF-8 text: save it as UTF-8") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInputError(
            f"{label}: a .json file must be a list of objects "
            '([{"vector": [0.1, 0.2], "label": "cat"}, ...]) or JSON Lines'
        )
    return _records_to_loaded(data, Where(unit="item"), label, vector_column, "item", budget)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _records_to_loaded(
    records: list[dict[str, Any]],
    where: Where,
    label: str,
    vector_column: str | None,
    unit: str,
    budget: ReadBudget,
) -> Loaded:
    if not records:
        raise InvalidInputError(f"{label} holds no records: there are no vectors to store")
    fields: dict[str, None] = {}
    for rec in records:
        for k in rec:
            fields.setdefault(k, None)
    names = list(fields)
    sample = records[:100]
    candidates = []
    for k in names:
        seen = [r[k] for r in sample if r.get(k) is not None]
        # Lists everywhere and at least one all-numeric: a vector field, perhaps with a
        # bad value that the checks below report by line.
        if (
            seen
            and all(isinstance(v, list) and v for v in seen)
            and any(all(_is_num(x) for x in v) for v in seen)
        ):
            candidates.append(k)
    if vector_column is not None:
        if vector_column not in fields:
            raise InvalidInputError(
                f"{label}: no record has a field {vector_column!r}; fields found: "
                f"{quote_list(names)} (lists of numbers: {quote_list(candidates)})"
            )
        key = vector_column
    elif candidates:
        key = pick_vector(candidates)
    else:
        raise InvalidInputError(
            f"{label}: no field holds a list of numbers to use as the vector; fields found: "
            f'{quote_list(names)}. Each {unit} needs one, e.g. "vector": [0.1, 0.2]'
        )
    missing = [i for i, r in enumerate(records) if key not in r or r[key] is None]
    if missing:
        raise InvalidInputError(
            f"{label}: field {key!r} (the vector) is missing in {counted(len(missing), unit)} "
            f"({where.many(missing)}); every {unit} needs one"
        )
    not_list = [i for i, r in enumerate(records) if not isinstance(r[key], list)]
    if not_list:
        i = not_list[0]
        raise InvalidInputError(
            f"{label}: field {key!r} is not a list of numbers in {counted(len(not_list), unit)} "
            f"({where.many(not_list)}; e.g. {short_repr(records[i][key])}): write vectors as "
            "[0.1, 0.2, ...]"
        )
    bad = [i for i, r in enumerate(records) if not all(_is_num(x) for x in r[key])]
    if bad:
        i = bad[0]
        value = next(x for x in records[i][key] if not _is_num(x))
        raise InvalidInputError(
            f"{label}: field {key!r} holds values that are not numbers in "
            f"{counted(len(bad), unit)} ({where.many(bad)}; e.g. {short_repr(value)}): every vector "
            "value must be a number"
        )
    lengths = np.array([len(r[key]) for r in records])
    if (lengths != lengths[0]).any():
        d = int(np.bincount(lengths).argmax())
        odd = np.flatnonzero(lengths != d)
        shown = ", ".join(f"{where.one(int(i))} has {lengths[i]}" for i in odd[:LISTED])
        raise InvalidInputError(
            f"{label}: vectors have different lengths: most have {d} values but "
            f"{counted(int(odd.size), unit)} {'differs' if odd.size == 1 else 'differ'} ({shown}{' …' if odd.size > LISTED else ''}). "
            "All vectors must have the same length"
        )
    budget.take(len(records) * int(lengths[0]) * 8, f"the vectors in field {key!r}")
    vectors = np.array([r[key] for r in records], dtype=np.float64)
    if vectors.ndim == 1:  # every list was empty
        vectors = vectors.reshape(len(records), 0)
    others = [k for k in candidates if k != key]
    warnings = []
    if others:
        warnings.append(
            f"other list fields ({quote_list(others)}) were not kept as metadata; ingest them "
            "as datasets of their own with vector_column"
        )
    if len(candidates) > 1 and vector_column is None:
        warnings.append(
            f"several fields could be the vectors ({quote_list(candidates)}); {key!r} was "
            "used: choose another with vector_column"
        )
    columns = {}
    for name in names:
        if name == key or name in others:
            continue
        series, note = py_series(name, [r.get(name) for r in records])
        columns[name] = series
        if note:
            warnings.append(note)
    meta = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    return Loaded(
        format="jsonl",
        vectors=vectors,
        metadata=meta,
        where=where,
        vector_column=key,
        vector_candidates=order_candidates(candidates) if key in candidates else (key,),
        columns=tuple(names),
        warnings=warnings,
        declared_dtype=False,
        what=f"field {key!r}",
    )


def read_json_metadata(request: ReadRequest, n: int | None) -> tuple[pd.DataFrame, list[str]]:
    """A JSON Lines or JSON array metadata file (its rows are counted by the caller)."""
    path, label = request.path, request.label
    _charge_python_json(path, "its records as Python objects", request.budget)
    with open(path, "rb") as fh:
        start = fh.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    if start.startswith(b"["):
        with open(path, encoding="utf-8-sig") as fh:
            try:
                records = json.load(fh)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"metadata file {label} is not valid JSON ({exc.msg} at line {exc.lineno})"
                ) from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInputError(
                f"metadata file {label} must be a list of objects or JSON Lines"
            )
    else:
        records = []
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise InvalidInputError(
                        f"metadata file {label}: line {lineno} is not valid JSON; each line must "
                        "hold one JSON object"
                    ) from exc
                if not isinstance(obj, dict):
                    raise InvalidInputError(
                        f"metadata file {label}: line {lineno} is not a JSON object"
                    )
                records.append(obj)
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(k, None)
    columns, warnings = {}, []
    for name in names:
        series, note = py_series(name, [r.get(name) for r in records])
        columns[name] = series
        if note:
            warnings.append(note)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records))), warnings
