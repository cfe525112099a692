"""New datasets made from stored ones: a transformed or compressed copy over the same items.

The copy keeps the original's ids and metadata row for row, goes through the same checks as
an upload (:func:`core.ingest.from_arrays`), and records where it came from in its ``info``
(``derived_from``, ``transform``), so every page can use it and compare it with the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.ingest import from_arrays
from embscope.core.store import DatasetInfo, Store

__all__ = ["save_derived_dataset", "save_subset"]

# What a subset keeps of its original's info: its vectors are the original's, so the model
# that embedded them (text search), the metric and the label column still hold.
_SUBSET_KEEPS = (
    "model", "metric", "metric_reason", "label_column", "text_column", "geodesic_columns",
)  # fmt: skip


def _parsed_copy(
    store: Store, original: DatasetInfo, vectors: np.ndarray, rows: np.ndarray | None, source: str
) -> Any:
    """``vectors`` with the original's metadata and ids (of ``rows``, or all), checked as an
    upload is (:func:`core.ingest.from_arrays`)."""
    metadata = store.load_metadata(original.id)
    ids = store.load_ids(original.id)
    if rows is not None:
        metadata, ids = metadata.iloc[rows].reset_index(drop=True), ids[rows]
    parsed = from_arrays(
        vectors,
        metadata=metadata,
        id_column=original.id_column if original.id_column in metadata.columns else None,
        source=source,
        format="derived",
    )
    # The original's ids as stored, whether or not they came from a metadata column.
    return dataclasses.replace(parsed, ids=ids)


def save_derived_dataset(
    store: Store,
    dataset_id: int,
    vectors: np.ndarray,
    *,
    name: str,
    transform: str,
    params: Mapping[str, Any] | None = None,
) -> DatasetInfo:
    """Store ``vectors`` (one row per item of dataset ``dataset_id``) as a new dataset.

    Parameters
    ----------
    vectors : ndarray of shape (n, d')
        The transformed vectors, in the original's row order; d' may differ from d.
    name : str
        The new dataset's name (unique).
    transform : str
        What was done, for the catalog and the lineage (e.g. ``"whiten"``).
    params : mapping, optional
        The transform's parameters, recorded with it.
    """
    original = store.get_dataset(dataset_id)
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[0] != original.n:
        raise InvalidInputError(
            f"the derived vectors have shape {arr.shape}; they need one row per item of "
            f"{original.name!r} ({original.n} rows)"
        )
    parsed = _parsed_copy(store, original, arr, None, f"{transform} of {original.name}")
    info = {
        "derived_from": original.id,
        "derived_from_name": original.name,
        "transform": transform,
        "transform_params": dict(params or {}),
    }
    # The original's model no longer embeds into this space: text queries stay off. The
    # metric stays: a transformed copy is compared the way its original is.
    for key in ("label_column", "metric", "metric_reason"):
        if key in original.info:
            info[key] = original.info[key]
    return store.add_dataset(parsed, name=name, info=info)


def save_subset(store: Store, dataset_id: int, where: Any, *, name: str) -> tuple[DatasetInfo, int]:
    """Save the items of dataset ``dataset_id`` whose metadata match every filter expression
    in ``where`` (:mod:`core.filters`) as a new dataset: the same vectors, ids and metadata
    rows, in the original's order, with ``derived_from`` and the filter recorded. Returns the
    new dataset and how many items the original has. Nothing is stored when the filter is bad
    or matches fewer than 2 items."""
    from embscope.core.filters import parse_filter, rows_for

    if isinstance(where, str):
        where = [where]
    conditions = parse_filter(where)
    if not conditions:
        raise InvalidInputError("a subset needs at least one filter, e.g. 'label=cat'")
    original = store.get_dataset(dataset_id)
    rows = rows_for(store, original.id, conditions)
    if rows.size < 2:
        raise InvalidInputError(
            f"the filter {' AND '.join(map(str, conditions))!r} matches {rows.size} of "
            f"{original.n:,} items of {original.name!r}: a dataset needs at least 2"
        )
    vectors = store.load_vectors(original.id)[rows]
    parsed = _parsed_copy(store, original, vectors, rows, f"subset of {original.name}")
    info: dict[str, Any] = {
        key: original.info[key] for key in _SUBSET_KEEPS if key in original.info
    }
    info.update(
        derived_from=original.id,
        derived_from_name=original.name,
        transform="subset",
        transform_params={"filter": [str(w) for w in where], "rows": int(rows.size)},
    )
    return store.add_dataset(parsed, name=name, info=info), original.n
