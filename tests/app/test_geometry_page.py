"""AppTest of the Geometry page and the `embscope geometry` contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from embscope.core.store import Store
from tests.helpers import (
    assert_index_built_in_background,
    by_key,
    make_parsed,
    run_cli,
    snapshot,
    until,
)

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CLI_KEYS = {
    "isoscore", "avg_cosine", "partition_isotropy", "effective_rank", "pca_n90", "pca_n95",
    "participation_ratio", "twonn", "mle", "lid_median", "dse", "hubness_skew", "n_duplicates",
    "isoscore_reference", "effective_rank_reference", "dse_ceiling",
}  # fmt: skip


def _data(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, d)) + 4 * rng.standard_normal((3, d))[labels] + 2).astype(
        np.float32
    )
    X[5] = X[9]  # a duplicate, as real data has
    return X, pd.DataFrame({"label": [f"<i>c{v}</i>" for v in labels]})


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "geo.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _data()
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="first")
        s.add_dataset(make_parsed(_data(seed=1)[0]), name="second")
    return path


def _page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.run()
    at.switch_page("../pages/geometry.py")
    at.run()
    at.sidebar.selectbox[0].set_value(1)  # "first", the dataset with metadata and a duplicate
    return at.run()


def test_scorecard_computed_once_with_plots_and_hubs(db):
    at = _page()
    assert not at.exception and at.title[0].value == "Geometry"
    assert not at.metric  # nothing stored yet: a button, not a silent computation
    by_key(at.button, "geometry.run").click().run()
    at = until(at, lambda a: len(a.metric) > 0)  # a background job: the page stays usable
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert {"IsoScore", "TwoNN", "k-occurrence skewness", "Duplicate vectors"} <= set(labels)
    assert labels["Duplicate vectors"] == "1"
    assert 0 <= float(labels["IsoScore"]) <= 1
    assert all(m.help for m in at.metric), "every score carries its explanation"
    # IsoScore, effective rank and DSE are shown beside their finite-sample reference.
    deltas = {m.label: m.proto.delta for m in at.metric}
    assert deltas["IsoScore"].startswith("isotropic Gaussian of the same n, d: 0.")
    assert deltas["Effective rank"].startswith("isotropic Gaussian of the same n, d: ")
    assert deltas["Diffusion spectral entropy (DSE)"].startswith("at most log2(sample size): ")
    captions = " ".join(c.value for c in at.caption)
    assert "perfectly isotropic data does not score 1" in captions
    assert "400 vectors in 16 dimensions" in captions and "at most log2" in captions
    assert len(at.get("plotly_chart")) == 5  # spectrum, TwoNN fit, LID, k-occurrence, PCA map
    assert any("duplicate" in i.value for i in at.info)
    hubs = next(d.value for d in at.dataframe if "N10" in d.value.columns)
    assert hubs["label"].str.startswith("<i>c").all()  # metadata shown as data, literally
    # The PCA map's hover text shows metadata literally (escaped for plotly's HTML labels).
    by_key(at.selectbox, "geometry.hover").set_value("label").run()
    spec = at.get("plotly_chart")[-1].proto.spec
    assert "&lt;i&gt;c" in spec and "<i>c" not in spec
    by_key(at.radio, "geometry.colour_by").set_value("k-occurrence").run()
    assert not at.exception
    # A new session sees the stored scorecard at once.
    again = _page()
    assert {m.label: m.value for m in again.metric} == labels
    assert not [b for b in again.button if b.key == "geometry.run"]


def _compare_table(at):
    return next((d.value for d in at.dataframe if "first (id 1)" in d.value.columns), None)


def test_compare_and_postprocess_save(db):
    at = _page()
    by_key(at.button, "geometry.run").click().run()
    at = until(at, lambda a: len(a.metric) > 0)
    by_key(at.multiselect, "geometry.compare").set_value([2]).run()
    by_key(at.button, "geometry.compare_run").click().run()
    at = until(at, lambda a: _compare_table(a) is not None and len(_compare_table(a).columns) == 2)
    assert not at.exception
    table = _compare_table(at)
    assert list(table.columns) == ["first (id 1)", "second (id 2)"]
    assert table.index[0] == "IsoScore"
    assert table.index[1] == "IsoScore of an isotropic Gaussian (same n, d)"
    by_key(at.selectbox, "geometry.transform").set_value("mean_centre").run()
    by_key(at.toggle, "geometry.preview").set_value(True).run()
    before_after = next(d.value for d in at.dataframe if "before" in d.value.columns)
    assert float(before_after.loc["Average cosine"].iloc[1]) < 0.05
    assert float(before_after.loc["Average cosine"].iloc[0]) > 0.3
    by_key(at.button, "geometry.save_derived").click().run()
    assert not at.exception
    from embscope.app.runtime import get_store  # the page holds the database open: share it

    [derived] = [d for d in get_store().list_datasets() if d.name == "first · mean_centre"]
    assert_index_built_in_background(derived.id)


run = run_cli


def test_cli_geometry_json_contract(capsys, tmp_path):
    db = str(tmp_path / "cli.duckdb")
    with Store(db) as s:
        s.add_dataset(make_parsed(_data()[0]), name="pts")
    code, out, err = run(capsys, "--db", db, "geometry", "pts", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert CLI_KEYS <= set(obj)
    assert obj["n_duplicates"] == 1 and obj["metric"] == "cosine"
    assert isinstance(obj["notes"], list)
    code, out2, _ = run(capsys, "--db", db, "geometry", "pts", "--json")
    assert json.loads(out2) == obj  # stored, read back identical
    assert obj["dse_ceiling"] == pytest.approx(np.log2(obj["dse_n"]))
    assert 0 < obj["isoscore"] <= obj["isoscore_reference"] < 1
    code, out, _ = run(capsys, "--db", db, "geometry", "pts", "-k", "5", "--metric", "l2")
    assert code == 0 and "isoscore" in out and "twonn" in out
    # Each score beside its reference on one line; the references have no line of their own.
    [iso] = [line for line in out.splitlines() if line.split()[0] == "isoscore"]
    assert "(isotropic Gaussian of the same n, d: 0." in iso
    [dse] = [line for line in out.splitlines() if line.split()[0] == "dse"]
    assert f"(ceiling log2(dse_n): {np.log2(400):.4g})" in dse
    assert not [line for line in out.splitlines() if line.split()[0] == "isoscore_reference"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["geometry", "nope"], "no dataset"),
        (["geometry", "pts", "-k", "400"], "more neighbours"),
        (["geometry", "pts", "--metric", "ip"], "invalid choice"),
    ],
)
def test_cli_geometry_bad_input(capsys, tmp_path, args, message):
    db = str(tmp_path / "cli.duckdb")
    with Store(db) as s:
        s.add_dataset(make_parsed(_data()[0]), name="pts")
        before = snapshot(s)
    code, out, err = run(capsys, "--db", db, *args)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err, err
    with Store(db) as s:
        assert snapshot(s) == before


def test_the_scorecard_is_a_job_the_page_stays_usable_and_cancel_stops_it(db, monkeypatch):
    """Long work never freezes a page: the scorecard runs as a background job with progress
    and Cancel; the page's run returns while it works, other pages are usable meanwhile, and
    a cancelled job stores nothing."""
    import threading

    from embscope.app.runtime import get_job_runner, get_store
    from embscope.core.errors import OperationCancelled
    from embscope.core.geometry import scorecard as sc

    started, release = threading.Event(), threading.Event()
    real = sc.compute_scorecard

    def held(X, graph, *, k, seed, progress=None):
        started.set()
        while not release.wait(0.05):  # held until the test lets it go, or cancelled
            if progress is not None and progress(0.5, "held by the test"):
                raise OperationCancelled("computing the geometry scorecard was cancelled")
        return real(X, graph, k=k, seed=seed, progress=progress)

    monkeypatch.setattr(sc, "compute_scorecard", held)
    at = _page()
    by_key(at.button, "geometry.run").click().run()
    assert started.wait(60)
    # The run returned although the job cannot finish: its progress and Cancel are shown.
    key = sc.scorecard_key(get_store(), 1, k=10, metric="cosine")
    assert get_job_runner().status(key).state == "running"
    assert [b for b in at.button if b.label == "Cancel"]
    assert not at.metric and not at.exception
    at.switch_page("../pages/neighbours.py").run()  # another page, meanwhile
    assert not at.exception and at.title[0].value == "Neighbours"
    at.switch_page("../pages/geometry.py").run()
    next(b for b in at.button if b.label == "Cancel").click().run()
    at = until(at, lambda a: any("cancelled" in w.value for w in a.warning))
    assert get_job_runner().status(key).state == "cancelled"
    assert not at.metric
    assert sc.get_or_compute_scorecard(get_store(), 1, run=False) is None  # nothing stored
    release.set()
    by_key(at.button, "geometry.run").click().run()  # asked again, it completes
    at = until(at, lambda a: len(a.metric) > 0)
    assert not at.exception
