"""A table of texts (CSV, TSV, Parquet, JSONL) stored as a dataset: each text embedded with one
of the sentence models embscope runs offline (:data:`core.text_model.SUPPORTED_MODELS`,
all-MiniLM-L6-v2 by default), the table kept as metadata, the model and text column recorded (so
text queries, cluster keywords and the map's search by meaning work at once)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest import ParsedDataset, from_arrays
from embscope.core.ingest.files import library_errors
from embscope.core.ingest.limits import ReadBudget, ReadLimits, resolve_limits
from embscope.core.ingest.readers import load_metadata
from embscope.core.progress import ProgressFn, check_cancel

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "MAX_TEXTS",
    "TABLE_SUFFIXES",
    "read_table",
    "read_texts",
    "recognise_model",
    "text_columns",
    "texts_info",
]

# The files a table of texts can come in.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".json")

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Texts embedded at upload, at most (about 150 a second on two cores: 100,000 take some ten
# minutes); more should come as vectors made elsewhere.
MAX_TEXTS = 100_000
# Texts embedded between two progress reports (and Cancel checks).
CHUNK = 256


def text_columns(frame: pd.DataFrame) -> list[str]:
    """The columns holding text, longest texts first (the likeliest to embed first)."""
    found = [
        c
        for c in frame.columns
        if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object
    ]
    lengths = {c: frame[c].dropna().astype(str).head(1000).str.len().mean() for c in found}
    return sorted(found, key=lambda c: -np.nan_to_num(lengths[c]))


def read_table(
    path: str | os.PathLike[str], *, filename: str | None = None, limits: ReadLimits | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """A table on its own (CSV, TSV, Parquet, JSONL): its rows as a typed frame, and warnings."""
    path = Path(path)
    label = filename or path.name
    budget = ReadBudget(resolve_limits(limits, None))
    with library_errors(label, path):
        return load_metadata(path, label, None, budget)


def texts_info(
    parsed: ParsedDataset, *, model: str, text_column: str, metric: str | None
) -> dict[str, Any]:
    """What a dataset of embedded texts records: its metric (cosine unless chosen), the model
    (text queries) and the text column (cluster keywords, the map's hover)."""
    from embscope.core.validation import metric_record

    return {
        **metric_record(parsed.vectors, metric or "cosine"),
        "model": model,
        "text_column": text_column,
    }


def read_texts(
    path: str | os.PathLike[str],
    *,
    text_column: str,
    model: str = DEFAULT_TEXT_MODEL,
    filename: str | None = None,
    id_column: str | None = None,
    limits: ReadLimits | None = None,
    progress: ProgressFn | None = None,
) -> ParsedDataset:
    """Read a table and embed its ``text_column`` with ``model`` (run offline); the table's
    columns become the metadata.

    Raises
    ------
    InvalidInputError
        An unreadable table, a missing or non-text column, a row without text (its number
        said), more than :data:`MAX_TEXTS` rows, or a model embscope cannot run here.
    OperationCancelled
        ``progress`` asked to stop.
    """
    from embscope.core.text_model import load_text_encoder, text_model_status

    ok, reason = text_model_status(model)
    if not ok:
        raise InvalidInputError(f"cannot embed the texts with {model}: {reason}")
    path = Path(path)
    label = filename or path.name
    frame, warnings = read_table(path, filename=label, limits=limits)
    texts = _texts(frame, text_column, label)
    check_cancel(progress, 0.02, f"loading {model}", "the upload")
    encoder = load_text_encoder(model)
    vectors = np.empty((len(texts), encoder.dim), dtype=np.float32)
    for start in range(0, len(texts), CHUNK):
        done = start / len(texts)
        check_cancel(
            progress, 0.05 + 0.9 * done,
            f"embedding texts {start:,} to {min(start + CHUNK, len(texts)):,} of {len(texts):,}",
            "the upload",
        )  # fmt: skip
        vectors[start : start + CHUNK] = encoder.encode(texts[start : start + CHUNK])
    check_cancel(progress, 0.97, "checking the vectors", "the upload")
    parsed = from_arrays(vectors, metadata=frame, id_column=id_column, source=label, format="texts")
    return replace(parsed, warnings=tuple(dict.fromkeys([*warnings, *parsed.warnings])))


# Rows embedded to recognise a model, and the cosine every one of them must reach.
RECOGNISE_ROWS = 8
RECOGNISE_COSINE = 0.99


def recognise_model(vectors: np.ndarray, metadata: pd.DataFrame) -> tuple[str, str, float] | None:
    """Which supported model made ``vectors``, judged by its own texts: for a model of the
    same dimension that runs here, a few rows of each text column (longest texts first) are
    embedded again; when each is within :data:`RECOGNISE_COSINE` of its stored vector, returns
    ``(model, text column, lowest cosine)``, else None. A dimension alone proves nothing
    (bge-small and e5-small are 384-d too)."""
    from embscope.core.text_model import SUPPORTED_MODELS, load_text_encoder, text_model_status

    for name, spec in SUPPORTED_MODELS.items():
        if vectors.ndim != 2 or vectors.shape[1] != spec.dim or not text_model_status(name)[0]:
            continue
        encoder = None
        for column in text_columns(metadata)[:2]:
            values = metadata[column]
            rows = [i for i, v in enumerate(values.tolist()) if isinstance(v, str) and v.strip()]
            rows = rows[:RECOGNISE_ROWS]
            if len(rows) < 2:
                continue
            encoder = encoder or load_text_encoder(name)
            made = encoder.encode([values.iloc[i] for i in rows])
            stored = vectors[rows].astype(np.float64)
            norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(made, axis=1)
            cosine = float(np.min((stored * made).sum(axis=1) / np.maximum(norms, 1e-12)))
            if cosine >= RECOGNISE_COSINE:
                return name, column, cosine
    return None


def _texts(frame: pd.DataFrame, column: str, label: str) -> list[str]:
    if column not in frame.columns:
        raise InvalidInputError(
            f"{label} has no column {column!r}; its columns are: "
            f"{', '.join(map(str, frame.columns)) or 'none'}"
        )
    if len(frame) == 0:
        raise InvalidInputError(f"{label} has no rows: there is nothing to embed")
    if len(frame) > MAX_TEXTS:
        raise InvalidInputError(
            f"{label} has {len(frame):,} rows; embscope embeds at most {MAX_TEXTS:,} texts at "
            "upload (embed larger sets elsewhere and upload the vectors)"
        )
    values = frame[column]
    if not (pd.api.types.is_string_dtype(values) or values.dtype == object):
        raise InvalidInputError(
            f"column {column!r} of {label} holds {values.dtype} values, not text: choose a "
            f"text column ({', '.join(text_columns(frame)) or 'there is none'})"
        )
    texts = [v if isinstance(v, str) else "" for v in values.tolist()]
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        rows = ", ".join(str(i + 1) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
        raise InvalidInputError(
            f"{len(blank):,} rows of {label} have no text in column {column!r} (data rows "
            f"{rows}): give every row a text, or remove those rows"
        )
    return texts
