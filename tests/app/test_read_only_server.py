"""A read-only server (`embscope serve --read-only`: $EMBSCOPE_READ_ONLY=1) writes nothing:
visitors compute projections and scorecards through the pages, every session sees them, and
the database file and the folder it sits in are left exactly as they were."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from embscope.app import access, runtime
from embscope.core.clusters import ClusterSpec
from embscope.core.geometry.scorecard import ScorecardSpec
from embscope.core.graph import GraphSpec
from embscope.core.projections.runs import ProjectionSpec
from embscope.core.store import Store
from tests.helpers import MAIN, by_key, folder_snapshot, make_parsed, open_page, until


@pytest.fixture
def served(tmp_path, monkeypatch) -> Path:
    """A database alone in its folder, served read-only to the pages under test."""
    folder = tmp_path / "served"
    folder.mkdir()
    path = folder / "demo.duckdb"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    X = (rng.standard_normal((300, 12)) + 4 * rng.standard_normal((3, 12))[labels]).astype(
        np.float32
    )
    meta = pd.DataFrame({"label": [f"c{v}" for v in labels]})
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    return folder


@pytest.fixture
def computed(monkeypatch) -> Counter[str]:
    """How many times each kind of result was computed in this process."""
    calls: Counter[str] = Counter()
    for cls in (GraphSpec, ProjectionSpec, ScorecardSpec, ClusterSpec):

        def compute(self, store, request, progress, _original=cls.compute, _kind=cls.kind):
            calls[_kind] += 1
            return _original(self, store, request, progress)

        monkeypatch.setattr(cls, "compute", compute)
    return calls


def _projection(at):
    by_key(at.selectbox, "projections.method").set_value("pca")
    return at.run()


def _geometry():
    return open_page("geometry")


def test_visitors_compute_share_and_write_nothing(served, computed):
    before = folder_snapshot(served)
    # A visitor opens a PCA projection: it runs as a job (PCA starts at once), and shows.
    at = _projection(open_page("projections"))
    assert runtime.get_store().read_only
    at = until(at, lambda a: len(a.metric) > 0)
    assert not at.exception, at.exception
    assert any("Trustworthiness@10" == m.label for m in at.metric)
    frames = [df.value for df in at.dataframe]
    assert any("method" in f.columns and (f["method"] == "PCA").any() for f in frames)  # gallery
    # ... and the geometry scorecard, with its button.
    geo = _geometry()
    assert not geo.metric
    by_key(geo.button, "geometry.run").click().run()
    geo = until(geo, lambda a: len(a.metric) > 0)
    assert not geo.exception, geo.exception
    scores = {m.label: m.value for m in geo.metric}
    # (the projection's page found the clusters by itself, on the graph the scorecard reads)
    everything = {"knn_graph": 1, "projection": 1, "scorecard": 1, "clusters": 1}
    assert computed == everything
    runner = runtime.get_job_runner()
    assert {j.kind: j.state for j in runner.jobs()} == {
        "projection": "done",
        "scorecard": "done",
        "clusters": "done",
    }
    # A second visitor (another session) sees both at once: no job, nothing computed again.
    other = _projection(open_page("projections"))
    assert len(other.metric) > 0 and not other.exception
    assert not [b for b in other.button if b.key == "projections.compute"]
    geo2 = _geometry()
    assert {m.label: m.value for m in geo2.metric} == scores
    assert not [b for b in geo2.button if b.key == "geometry.run"]
    assert computed == everything
    # Nothing was written, while the server runs and after it stops: not the database's
    # bytes, not its jobs table, not the listing of its folder (.indexes/, .wal, .tmp).
    assert runtime.get_store().list_artifacts() == [] and runtime.get_store().list_jobs() == []
    assert folder_snapshot(served) == before
    runtime.reset()
    assert folder_snapshot(served) == before


def test_a_missing_database_is_not_created(tmp_path, monkeypatch):
    path = tmp_path / "missing.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    assert list(tmp_path.iterdir()) == []
