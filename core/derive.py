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

__all__ = ["save_derived_dataset"]


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
    metadata = store.load_metadata(original.id)
    parsed = from_arrays(
        arr,
        metadata=metadata,
        id_column=original.id_column if original.id_column in metadata.columns else None,
        source=f"{transform} of {original.name}",
        format="derived",
    )
    # The original's ids as stored, whether or not they came from a metadata column.
    parsed = dataclasses.replace(parsed, ids=store.load_ids(original.id))
    info = {
        "derived_from": original.id,
        "derived_from_name": original.name,
        "transform": transform,
        "transform_params": dict(params or {}),
    }
    # The original's model no longer embeds into this space: text queries stay off.
    if "label_column" in original.info:
        info["label_column"] = original.info["label_column"]
    return store.add_dataset(parsed, name=name, info=info)
