"""export_dataset writes its file whole or not at all, also across a power loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embscope.core.export import export_dataset
from embscope.core.store import Store
from tests.helpers import assert_durable_rename, make_parsed, record_syncs


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_export_is_synced_before_and_after_its_rename(suffix, tmp_path, monkeypatch):
    X = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    with Store(tmp_path / "db.duckdb") as store:
        info = store.add_dataset(make_parsed(X, pd.DataFrame({"note": ["a"] * 50})), name="a")
        out = tmp_path / "out" / f"a{suffix}"
        out.parent.mkdir()
        events = record_syncs(monkeypatch)
        assert export_dataset(store, info.id, out) == out
    monkeypatch.undo()
    assert_durable_rename(events, out)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), X)
    else:
        assert pq.read_table(out).num_rows == 50
