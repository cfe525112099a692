"""Derived datasets: same items (ids, metadata), new vectors, lineage recorded, checks as uploads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embscope.core.derive import save_derived_dataset
from embscope.core.errors import InvalidInputError
from tests.helpers import make_parsed, snapshot


def test_derived_dataset_keeps_items_and_records_lineage(store):
    X = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    meta = pd.DataFrame({"key": [f"k{i}" for i in range(50)], "label": np.arange(50) % 3})
    original = store.add_dataset(
        make_parsed(X, meta, ids=[f"k{i}" for i in range(50)], id_column="key"),
        name="orig",
        info={"model": "some/model", "label_column": "label"},
    )
    derived = save_derived_dataset(
        store, original.id, X[:, :4] * 2, name="half", transform="truncate", params={"k": 4}
    )
    assert (derived.n, derived.dim) == (50, 4) and derived.format == "derived"
    np.testing.assert_array_equal(store.load_ids(derived.id), store.load_ids(original.id))
    pd.testing.assert_frame_equal(store.load_metadata(derived.id), store.load_metadata(original.id))
    np.testing.assert_array_equal(store.load_vectors(derived.id), X[:, :4] * 2)
    assert derived.info["derived_from"] == original.id and derived.info["transform"] == "truncate"
    assert derived.info["transform_params"] == {"k": 4}
    assert "model" not in derived.info  # the model does not embed into the new space
    assert derived.info["label_column"] == "label"


def test_ids_not_held_in_a_metadata_column_are_kept_too(store):
    # e.g. a dataset stored through from_arrays' callers with ids of their own
    X = np.random.default_rng(1).standard_normal((20, 6)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(20)]
    original = store.add_dataset(make_parsed(X, ids=ids), name="orig")
    derived = save_derived_dataset(store, original.id, -X, name="negated", transform="negate")
    assert store.load_ids(derived.id).tolist() == ids  # not the row numbers "0", "1", ...
    assert derived.id_column is None


def test_bad_derived_vectors_change_nothing(store):
    X = np.eye(5, dtype=np.float32)
    original = store.add_dataset(make_parsed(X), name="orig")
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="one row per item"):
        save_derived_dataset(store, original.id, X[:3], name="x", transform="t")
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InvalidInputError):
        save_derived_dataset(store, original.id, bad, name="x", transform="t")
    with pytest.raises(InvalidInputError, match="already exists"):
        save_derived_dataset(store, original.id, X, name="orig", transform="t")
    assert snapshot(store) == before
