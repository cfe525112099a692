"""The public readers: :func:`read_dataset`, :func:`inspect_file` and :func:`from_arrays`.

Each read resolves its :class:`~embscope.core.ingest.limits.ReadLimits` (``limits=``, else
the environment's; ``max_read_bytes=`` overrides the budget), makes one
:class:`~embscope.core.ingest.limits.ReadBudget` from them and passes it to the reader the
registry names (:mod:`embscope.core.ingest.readers`), then to the shared checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.checks import (
    check_column_names,
    finish_vectors,
    id_candidates,
    make_ids,
    merge_metadata,
    preview_frame,
)
from embscope.core.ingest.files import library_errors
from embscope.core.ingest.limits import ReadBudget, ReadLimits, resolve_limits
from embscope.core.ingest.model import FileInspection, Loaded, ParsedDataset, Where
from embscope.core.ingest.readers import load_metadata, load_vectors


def read_dataset(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    metadata_path: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    vector_column: str | None = None,
    vector_columns: Sequence[str] | None = None,
    metadata_filename: str | None = None,
    max_read_bytes: int | None = None,
    limits: ReadLimits | None = None,
) -> ParsedDataset:
    """Read a file of vectors (and optionally a metadata file) into a checked dataset.

    Parameters
    ----------
    path : str or PathLike
        The vectors file: .npy, .npz, .parquet, .csv, .tsv, .txt, .jsonl, .json or .h5ad.
    filename : str, optional
        The name the user's file had; only its suffix picks the reader (uploads are stored
        under a safe temporary name). Defaults to ``path``'s name.
    metadata_path : str or PathLike, optional
        A metadata file (.csv, .tsv, .txt, .parquet, .jsonl, .json) with one row per vector
        in the same order. A single-column .tsv/.txt has no header (TensorFlow Projector's
        rule) unless it has exactly one line more than there are vectors.
    id_column : str, optional
        Column (of either file) whose values, as str, become the ids; they must be unique
        and non-empty. Default: row numbers "0".."n-1".
    vector_column : str, optional
        Which array holds the vectors: npz key, Parquet/CSV list column, JSONL field, or
        h5ad ``"X"`` / ``"obsm/<key>"``. Default: the first candidate.
    vector_columns : sequence of str, optional
        CSV/TSV (with a header) or Parquet numeric columns that make up the vector, in
        order; the other columns become metadata. Default: every numeric column except
        ``id_column``.
    metadata_filename : str, optional
        The name the user's metadata file had (its suffix picks the reader, and messages
        use it). Defaults to ``metadata_path``'s name.
    max_read_bytes : int, optional
        The most memory the read may build (vectors, metadata, ids, decoded tables), in
        bytes; overrides ``limits.max_read_bytes``.
    limits : ReadLimits, optional
        The limits of the read: memory budget, expansion ratio of compressed files (at
        most :data:`MAX_EXPANSION_RATIO` times their size by default), sparse matrices made
        dense. Default :meth:`ReadLimits.from_environment` (:func:`read_budget_bytes`).

    Returns
    -------
    ParsedDataset
        vectors float32 (n, d) C-contiguous and finite; ids object array of str (n,);
        metadata frame with n rows.

    Raises
    ------
    InvalidInputError
        The file cannot be used, or would need more memory than allowed; the message says
        what, where and how to fix it.
    """
    budget = ReadBudget(resolve_limits(limits, max_read_bytes))
    path = Path(path)
    label = filename or path.name
    loaded = load_vectors(
        path,
        label,
        budget,
        id_column=id_column,
        vector_column=vector_column,
        vector_columns=vector_columns,
    )
    with library_errors(label, path):
        return _assemble(path, label, loaded, metadata_path, id_column, metadata_filename, budget)


def from_arrays(
    vectors: np.ndarray,
    *,
    metadata: pd.DataFrame | None = None,
    id_column: str | None = None,
    source: str = "generated",
    format: str = "generated",  # noqa: A002 - the ParsedDataset field it fills
) -> ParsedDataset:
    """Check in-memory vectors (and metadata) exactly as an uploaded file would be checked.

    Used for demo and generated datasets, so they reach the store through the same
    validation as uploads.

    Parameters
    ----------
    vectors : ndarray of shape (n, d)
        Any real numeric dtype; converted to float32.
    metadata : DataFrame, optional
        n rows of metadata, in row order.
    id_column : str, optional
        Metadata column whose values (as str) become the ids; default row numbers.
    source, format : str
        What the catalog shows as the dataset's origin.

    Returns
    -------
    ParsedDataset

    Raises
    ------
    InvalidInputError
        Non-finite values, wrong shape or dtype, mismatched rows, duplicate ids.
    """
    arr = np.asarray(vectors)
    meta = pd.DataFrame(index=pd.RangeIndex(arr.shape[0] if arr.ndim else 0))
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            raise InvalidInputError(
                f"metadata must be a pandas DataFrame, got {type(metadata).__name__}"
            )
        if arr.ndim >= 1 and len(metadata) != arr.shape[0]:
            raise InvalidInputError(
                f"{source}: metadata has {len(metadata)} rows but there are {arr.shape[0]} "
                "vectors: they must match row for row"
            )
        meta = metadata.reset_index(drop=True)
        check_column_names(meta, source)
    loaded = Loaded(format=format, vectors=arr, metadata=meta, where=Where(), declared_dtype=False)
    vecs, warnings = finish_vectors(loaded, source, None)
    ids = make_ids(meta, id_column, vecs.shape[0], source, loaded, None)
    return ParsedDataset(
        vectors=vecs,
        ids=ids,
        metadata=meta,
        warnings=tuple(dict.fromkeys(warnings)),
        source=source,
        format=format,
        id_column=id_column,
        vector_column=None,
    )


def inspect_file(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    metadata_path: str | os.PathLike[str] | None = None,
    metadata_filename: str | None = None,
    max_read_bytes: int | None = None,
    limits: ReadLimits | None = None,
) -> FileInspection:
    """Describe a file for the upload page: format, size, choices and a preview.

    The file is read with the default choices (first vector candidate, every numeric
    column, row-number ids), so a file that :func:`read_dataset` would refuse with those
    defaults is refused here too, with the same message.

    Parameters
    ----------
    path : str or PathLike
        The vectors file.
    filename : str, optional
        The user's file name; its suffix picks the reader.
    metadata_path : str or PathLike, optional
        A metadata file to check against the vectors (row count) and to preview.
    metadata_filename : str, optional
        The user's name for the metadata file.
    max_read_bytes : int, optional
        The memory budget of the read, as for :func:`read_dataset`.
    limits : ReadLimits, optional
        The limits of the read, as for :func:`read_dataset`.

    Returns
    -------
    FileInspection

    Raises
    ------
    InvalidInputError
        The file cannot be used with the default choices.
    """
    budget = ReadBudget(resolve_limits(limits, max_read_bytes))
    path = Path(path)
    label = filename or path.name
    loaded = load_vectors(
        path, label, budget, id_column=None, vector_column=None, vector_columns=None
    )
    with library_errors(label, path):
        parsed = _assemble(path, label, loaded, metadata_path, None, metadata_filename, budget)
    with library_errors(label, path):
        meta = parsed.metadata
        columns = list(loaded.columns)
        columns += [c for c in meta.columns if c not in columns]
        candidates = tuple(id_candidates(meta))
        preview = preview_frame(parsed.vectors, meta, loaded.vector_column)
    return FileInspection(
        format=loaded.format,
        n_rows=int(parsed.vectors.shape[0]),
        dim=int(parsed.vectors.shape[1]),
        columns=tuple(str(c) for c in columns),
        vector_candidates=loaded.vector_candidates,
        numeric_columns=loaded.numeric_columns,
        id_candidates=candidates,
        preview=preview,
        warnings=parsed.warnings,
        default_vector_columns=tuple(loaded.vector_names) if loaded.numeric_columns else (),
    )


def _assemble(
    path: Path,
    label: str,
    loaded: Loaded,
    metadata_path: str | os.PathLike[str] | None,
    id_column: str | None,
    metadata_filename: str | None,
    budget: ReadBudget,
) -> ParsedDataset:
    """The shared checks on a reader's result, with the metadata file merged in."""
    vectors, vec_warnings = finish_vectors(loaded, label, budget)
    n = vectors.shape[0]
    meta = loaded.metadata
    warnings = list(loaded.warnings) + vec_warnings
    source = label
    if metadata_path is not None:
        metadata_path = Path(metadata_path)
        meta_label = metadata_filename or metadata_path.name
        source = f"{label} + {meta_label}"
        file_meta, meta_warnings = load_metadata(metadata_path, meta_label, n, budget)
        warnings += meta_warnings
        meta = merge_metadata(meta, file_meta, label, meta_label, id_column, loaded.where, warnings)
    check_column_names(meta, source)
    ids = make_ids(meta, id_column, n, label, loaded, budget)
    meta = meta.reset_index(drop=True)
    return ParsedDataset(
        vectors=vectors,
        ids=ids,
        metadata=meta,
        warnings=tuple(dict.fromkeys(warnings)),
        source=source,
        format=loaded.format,
        id_column=id_column,
        vector_column=loaded.vector_column,
    )
