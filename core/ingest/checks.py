"""The checks every reading ends in, whatever the format: vectors, ids and metadata.

:func:`finish_vectors` turns a reader's raw matrix into finite float32 C-contiguous vectors
(with notes on conversions, zero and repeated vectors); :func:`make_ids` makes unique string
ids from a column or the row numbers; :func:`merge_metadata` puts a separate metadata file
beside the vectors file's own columns; :func:`preview_frame` and :func:`id_candidates`
serve the upload page's preview.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import (
    LISTED,
    PY_STR_BYTES,
    Loaded,
    Where,
    counted,
    quote_list,
    short_repr,
)

#: Rows the upload page's preview shows.
PREVIEW_ROWS = 20


def check_column_names(meta: pd.DataFrame, label: str) -> None:
    """Column names are kept verbatim (quotes, SQL, markup and all) except a NUL, which the
    database would silently cut the name at."""
    bad = [str(c) for c in meta.columns if "\x00" in str(c)]
    if bad:
        raise InvalidInputError(
            f"{label}: column name {bad[0]!r} contains a NUL character (\\x00), which the "
            "database cannot keep in a name: rename the column"
        )


def dtype_problem(dtype: np.dtype) -> str | None:
    """Why an array of this dtype cannot be vectors (None: it can)."""
    if dtype.hasobject:
        return (
            "holds Python objects (a pickle), which embscope never loads; save a numeric "
            "array instead, e.g. np.save(path, np.asarray(X, dtype=np.float32))"
        )
    kind = dtype.kind
    if kind == "c":
        return (
            "holds complex numbers; embscope needs real vectors: keep the real part "
            "(X.real), the magnitude (np.abs(X)) or stack both (np.hstack([X.real, X.imag]))"
        )
    if kind in "US":
        return "holds text, not numbers: convert it with X.astype(np.float32) before saving"
    if kind == "V":
        return "is a structured (record) array; save the numeric fields as one plain 2-D array"
    if kind in "mM":
        return "holds dates or times, not numbers"
    if kind not in "fiub":
        return f"has dtype {dtype}, which is not a number type"
    return None


def shape_problem(shape: tuple[int, ...]) -> str | None:
    """Why an array of this shape cannot be vectors (None: it is 2-D)."""
    if len(shape) == 2:
        return None
    if len(shape) == 0:
        return "is a single number (0-D), not a matrix of vectors"
    if len(shape) == 1:
        return (
            f"is 1-D (shape {shape}); vectors must be a 2-D array of n rows and d columns: "
            "for one vector use X.reshape(1, -1), for n numbers X.reshape(-1, 1)"
        )
    return (
        f"is {len(shape)}-D (shape {shape}); vectors must be 2-D (n rows, d columns): "
        "flatten the trailing axes with X.reshape(len(X), -1) or pick one slice"
    )


def float32_warning(dtype: np.dtype) -> str:
    """The note that wider floats were stored as float32."""
    return (
        f"vectors were converted from {dtype} to float32, the precision embscope stores "
        "(about 7 significant digits)"
    )


def finish_vectors(
    loaded: Loaded, label: str, budget: ReadBudget | None
) -> tuple[np.ndarray, list[str]]:
    """Check the raw matrix and return it as float32 C-contiguous, with warnings.

    ``budget`` counts the float32 copy, when one is made (None: in-memory data, uncounted).
    """
    raw = loaded.vectors
    what = f"{label}: {loaded.what}"
    problem = shape_problem(raw.shape) or dtype_problem(raw.dtype)
    if problem:
        raise InvalidInputError(f"{what} {problem}")
    n, d = raw.shape
    if n == 0:
        raise InvalidInputError(f"{what} has 0 rows: there are no vectors to store")
    if d == 0:
        raise InvalidInputError(
            f"{what} has 0 columns (d = 0): each vector needs at least one value"
        )
    warnings: list[str] = []
    kind = raw.dtype.kind
    if loaded.declared_dtype:
        if kind in "iu":
            warnings.append(f"integer vectors ({raw.dtype}) were converted to float32")
        elif kind == "b":
            warnings.append("boolean vectors were converted to float32 (0.0 and 1.0)")
        elif raw.dtype.itemsize > 4:
            warnings.append(float32_warning(raw.dtype))
    if raw.ndim == 2 and raw.flags.f_contiguous and not raw.flags.c_contiguous:
        warnings.append(
            "the array was stored in Fortran (column-major) order; it was converted to row-major"
        )
    owned = (
        type(raw) is np.ndarray
        and raw.dtype == np.float32
        and raw.flags.c_contiguous
        and raw.flags.owndata
        and raw.flags.writeable
    )
    # One copy at most: from the mmap'd .npy, an Arrow buffer, or a converted dtype.
    if not owned and budget is not None:
        budget.take(n * d * 4, f"the {n:,} x {d:,} float32 vectors")
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported just below
        vectors = raw if owned else np.array(raw, dtype=np.float32, order="C")
    # float64 row sums of float32 values cannot overflow, and NaN/inf propagate into them,
    # so one pass finds exactly the rows with a non-finite value.
    with np.errstate(invalid="ignore", over="ignore"):
        sums = vectors.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(sums))
    if bad.size:
        raise InvalidInputError(_nonfinite_message(raw, vectors, bad, label, loaded))
    warnings += _content_warnings(vectors, loaded.where)
    return vectors, warnings


def _nonfinite_message(
    raw: np.ndarray, vectors: np.ndarray, bad: np.ndarray, label: str, loaded: Loaded
) -> str:
    sample = vectors[bad[:1000]]
    kinds = []
    if np.isnan(sample).any():
        kinds.append("NaN (not a number)")
    if np.isinf(sample).any():
        kinds.append("infinite")
    overflow = False
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 4:
        overflow = bool(np.isfinite(np.asarray(raw[bad[:1000]], dtype=np.float64)).all())
    if overflow:
        what = "values too large for float32 (beyond ±3.4e38)"
        how = "rescale the vectors (for example divide by their largest absolute value)"
    else:
        what = " or ".join(kinds) + " values"
        how = "every value must be a finite number: fix or drop those rows"
        if not loaded.declared_dtype and np.isinf(sample).any():
            what += " (or numbers beyond float32's ±3.4e38)"
    where = f"in {counted(int(bad.size), 'row')}: {loaded.where.many(bad)}"
    columns = ""
    if loaded.vector_names:
        cols = np.flatnonzero(~np.isfinite(sample).all(axis=0))
        names = [loaded.vector_names[c] for c in cols[:LISTED]]
        columns = f", in column{'s' if len(cols) > 1 else ''} {quote_list(names)}"
        if len(cols) > LISTED:
            columns += f" and {len(cols) - LISTED} more"
        how += (
            "; if such a column is metadata rather than part of the vector, leave it out "
            "of vector_columns"
        )
    return f"{label}: {what} {where}{columns}. {how[0].upper()}{how[1:]}"


# Rows per block of the content checks: their temporaries stay a few MB, not n x d.
_CHECK_ROWS = 16_384


def _row_blocks(n: int) -> range:
    return range(0, n, _CHECK_ROWS)


def _canonical(block: np.ndarray) -> np.ndarray:
    """-0.0 + 0.0 == +0.0: equal vectors, equal bytes (a copy only when a -0.0 is there)."""
    if (np.signbit(block) & (block == 0)).any():
        return block + np.float32(0)
    return block


def _duplicate_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows equal to an earlier row, and for each the earlier row it repeats."""
    n = vectors.shape[0]
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Hashing each row's bytes is ~25x faster than np.unique(axis=0) at 100k x 384;
    # candidate pairs are then compared exactly, so a hash collision cannot mislead.
    hashes = np.empty(n, dtype=np.int64)
    for start in _row_blocks(n):
        block = _canonical(vectors[start : start + _CHECK_ROWS])
        hashes[start : start + len(block)] = [hash(r.tobytes()) for r in block]
    _, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    first = first_index[inverse]
    cand = np.flatnonzero(first != np.arange(n))
    if cand.size == 0:
        return cand, cand
    same = (_canonical(vectors[cand]) == _canonical(vectors[first[cand]])).all(axis=1)
    return cand[same], first[cand][same]


def _zero_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows that are all zeros, found block by block."""
    n = vectors.shape[0]
    found = [start + np.flatnonzero(~vectors[start : start + _CHECK_ROWS].any(axis=1))
             for start in _row_blocks(n)]  # fmt: skip
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _content_warnings(vectors: np.ndarray, where: Where) -> list[str]:
    n, d = vectors.shape
    warnings = []
    if n == 1:
        warnings.append("only one row: neighbours, projections and scores need more vectors")
    elif n == 2:
        warnings.append("only two rows: neighbours, projections and scores need more vectors")
    if d == 1:
        warnings.append(
            "the vectors have a single dimension (d = 1): projections are trivial and cosine "
            "similarity is only ever +1 or -1"
        )
    zero = _zero_rows(vectors)
    if zero.size:
        warnings.append(
            f"{counted(int(zero.size), 'vector')} {'is' if zero.size == 1 else 'are'} all "
            f"zeros, so cosine similarity is undefined for {'it' if zero.size == 1 else 'them'}: "
            f"{where.many(zero)}"
        )
    dup, orig = _duplicate_rows(vectors)
    if dup.size:
        warnings.append(
            f"{counted(int(dup.size), 'vector')} exactly repeat{'s' if dup.size == 1 else ''} "
            f"an earlier row (for example {where.one(int(dup[0]))} repeats "
            f"{where.one(int(orig[0]))}): their neighbours are tied"
        )
    return warnings


# -- ids and metadata -----------------------------------------------------------------------


def _is_text_dtype(dtype: Any) -> bool:
    return bool(pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype))


def _id_strings(col: pd.Series) -> np.ndarray:
    values = col.to_numpy(dtype=object, na_value=None)
    if pd.api.types.is_float_dtype(col.dtype):
        # 3.0 read from a float column is the id "3", as the user wrote it in an int column.
        return np.array(
            [str(int(v)) if v is not None and float(v).is_integer() else str(v) for v in values],
            dtype=object,
        )
    return np.array([str(v) for v in values], dtype=object)


def make_ids(
    meta: pd.DataFrame,
    id_column: str | None,
    n: int,
    label: str,
    loaded: Loaded,
    budget: ReadBudget | None,
) -> np.ndarray:
    """The ids: ``id_column``'s values as unique non-empty strings, else the row numbers."""
    # Ids are Python strings, one per row: a tall, thin file costs more in ids than vectors.
    if budget is not None:
        budget.take(n * (PY_STR_BYTES + 32), f"the ids of {n:,} rows")
    if id_column is None:
        return np.arange(n).astype(str).astype(object)
    if id_column not in meta.columns:
        if id_column == loaded.vector_column or id_column in loaded.vector_names:
            raise InvalidInputError(
                f"{label}: {id_column!r} holds the vectors, so it cannot also be the id "
                "column: choose another column or use row numbers"
            )
        raise InvalidInputError(
            f"{label}: there is no column {id_column!r} to take ids from; available "
            f"columns: {quote_list(meta.columns)}. Choose one of them or use row numbers"
        )
    col = meta[id_column]
    missing = col.isna().to_numpy()
    if _is_text_dtype(col.dtype):
        missing = missing | (col.astype(object) == "").to_numpy()
    bad = np.flatnonzero(missing)
    if bad.size:
        raise InvalidInputError(
            f"{label}: id column {id_column!r} is empty or missing in "
            f"{counted(int(bad.size), 'row')} ({loaded.where.many(bad)}); every row needs an "
            "id: fill them in or use row numbers as ids"
        )
    ids = _id_strings(col)
    series = pd.Series(ids)
    dup_mask = series.duplicated(keep=False).to_numpy()
    if dup_mask.any():
        groups = series[dup_mask].groupby(series[dup_mask], sort=False).groups
        listed = []
        for value, index in list(groups.items())[:LISTED]:
            listed.append(f"{short_repr(value)} at {loaded.where.many(np.asarray(index))}")
        more = f" and {len(groups) - LISTED} more" if len(groups) > LISTED else ""
        raise InvalidInputError(
            f"{label}: id column {id_column!r} has {counted(len(groups), 'duplicated value')}: "
            f"{'; '.join(listed)}{more}. Ids must be unique: choose another column, fix the "
            "duplicates, or use row numbers"
        )
    return ids


def id_candidates(meta: pd.DataFrame) -> list[str]:
    """Columns that could be the ids: unique, non-null, non-empty, not floats or booleans."""
    out = []
    for name in meta.columns:
        col = meta[name]
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            continue
        if not (pd.api.types.is_integer_dtype(dtype) or _is_text_dtype(dtype)):
            continue
        if col.isna().any():
            continue
        if _is_text_dtype(dtype) and (col.astype(object) == "").any():
            continue
        if len(pd.Series(_id_strings(col)).unique()) == len(col):
            out.append(str(name))
    return out


def merge_metadata(
    own: pd.DataFrame,
    other: pd.DataFrame,
    label: str,
    meta_label: str,
    id_column: str | None,
    where: Where,
    warnings: list[str],
) -> pd.DataFrame:
    """Put the metadata file's columns beside the vectors file's own metadata."""
    if id_column is not None and id_column in own.columns and id_column in other.columns:
        left = _id_strings(own[id_column])
        right = _id_strings(other[id_column])
        differ = np.flatnonzero(left != right)
        if differ.size:
            first = int(differ[0])
            hint = (
                "the same ids appear in a different order: sort the metadata file into the "
                "vectors' order"
                if sorted(left) == sorted(right)
                else "both files must list the same items in the same order"
            )
            raise InvalidInputError(
                f"ids in column {id_column!r} differ between {label} and {meta_label} in "
                f"{counted(int(differ.size), 'row')} ({where.many(differ)}); the first is "
                f"{short_repr(left[first])} vs {short_repr(right[first])}: {hint}"
            )
        other = other.drop(columns=[id_column])
    out = own.reset_index(drop=True).copy()
    lower = {str(c).lower() for c in out.columns}
    for name in other.columns:
        col = other[name].reset_index(drop=True)
        if name in out.columns and out[name].equals(col):
            continue
        new = str(name)
        if new.lower() in lower:
            base = f"{name}_metadata"
            new, k = base, 2
            while new.lower() in lower:
                new, k = f"{base}_{k}", k + 1
            warnings.append(
                f"column {name!r} is in both {label} and {meta_label} with different values; "
                f"the metadata file's column is kept as {new!r}"
            )
        out[new] = col
        lower.add(new.lower())
    return out


def preview_frame(
    vectors: np.ndarray, meta: pd.DataFrame, vector_column: str | None
) -> pd.DataFrame:
    """The first :data:`PREVIEW_ROWS` rows: the vector shortened to text, then the metadata."""
    k = min(PREVIEW_ROWS, vectors.shape[0])
    d = vectors.shape[1]

    def shorten(row: np.ndarray) -> str:
        head = ", ".join(f"{v:.4g}" for v in row[:4])
        return f"[{head}, … ({d} values)]" if d > 4 else f"[{head}]"

    name = vector_column or "vector"
    if name in meta.columns:
        name = f"{name} (vector)"
    frame = meta.iloc[:k].reset_index(drop=True).copy()
    frame.insert(0, name, [shorten(r) for r in vectors[:k]])
    return frame
