"""The Projections page and the CLI for heat-geodesic: the advice on a poor fit (measured on the
stdlib docstrings demo), the completion and MDS path as parameters, and what differs from the
paper's method, in the caption, the gallery, links and ``project --json``."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from embscope.core.demo import stdlib_docstrings, swiss_roll
from embscope.core.demo_store import store_demo_dataset
from embscope.core.projections import runs
from embscope.core.store import Store
from tests.helpers import MAIN, by_key, open_page, run_cli

POOR_FIT = "Heat-geodesic is a poor fit for this dataset"


@pytest.fixture
def stdlib_db(db):
    with Store(db) as s:
        store_demo_dataset(s, stdlib_docstrings())
        heat = runs.compute_projection(s, 1, method="heatgeo")
    return db, heat


def _heatgeo_page(query=None):
    at = open_page("projections", query)
    if query is None:
        by_key(at.selectbox, "projections.method").set_value("heatgeo")
        at.run()
    assert not at.exception
    return at


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def test_stdlib_demo_heat_geodesic_says_it_is_a_poor_fit(stdlib_db):
    db, heat = stdlib_db
    trust = heat.quality["trustworthiness@10"]
    assert trust < runs.POOR_FIT_TRUST
    at = _heatgeo_page()
    advice = [w for w in _warnings(at) if POOR_FIT in w]
    assert len(advice) == 1, _warnings(at)
    assert f"trustworthiness@10 is {trust:.3f}, below 0.85" in advice[0]
    assert "LargeVis or UMAP" in advice[0] and "stored LargeVis" not in advice[0]
    # the disclosure: MDS path, completion, what differs from the paper
    caption = next(c.value for c in at.caption if "Diffusion time" in c.value)
    assert "Metric MDS: the paper's (unit weights, steps 1 to 0.01)." in caption
    assert "Completion on, but every landmark distance was within" in caption
    assert "Differs from the paper's method:" in caption
    gallery = next(d.value for d in at.dataframe if "parameters" in d.value.columns)
    row = gallery.iloc[0]
    assert "complete=True" in row["parameters"] and "mds=reference" in row["parameters"]
    assert "landmarks" in row["differs from paper"]
    # the advice offers the other methods
    by_key(at.button, "projections.advice.largevis").click().run()
    assert not at.exception
    assert by_key(at.selectbox, "projections.method").value == "largevis"


def test_the_advice_cites_a_stored_largevis_layout(stdlib_db):
    db, heat = stdlib_db
    with Store(db) as s:
        lv = runs.compute_projection(s, 1, method="largevis")
    at = _heatgeo_page()
    advice = next(w for w in _warnings(at) if POOR_FIT in w)
    lv_trust = lv.quality["trustworthiness@10"]
    assert f"The stored LargeVis 2-D layout of this dataset scores {lv_trust:.3f}" in advice
    pres = heat.quality["knn_preservation@10"]
    assert f"against {pres:.3f}" in advice


def test_no_advice_where_heat_geodesic_fits(db):
    with Store(db) as s:
        store_demo_dataset(s, swiss_roll(1000, seed=0))
        heat = runs.compute_projection(s, 1, method="heatgeo", metric="l2")
    assert heat.quality["trustworthiness@10"] > 0.9  # 0.93
    at = _heatgeo_page()  # the roll records its metric, l2
    assert len(at.metric) > 0
    assert not any(POOR_FIT in w for w in _warnings(at))
    caption = next(c.value for c in at.caption if "Diffusion time" in c.value)
    done = heat.chosen["completed_pairs"]
    assert done > 0 and f"Completion on: {done:,} of" in caption


def test_completion_and_mds_path_from_a_link_and_back(stdlib_db):
    link = {"dataset": "1", "method": "heatgeo", "p.complete": "0", "p.mds": "weighted"}
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("../pages/projections.py")
    at.query_params = dict(link)
    at.run()
    assert not at.exception and not at.toast
    assert by_key(at.checkbox, "projections.heatgeo.complete").value is False
    assert by_key(at.selectbox, "projections.heatgeo.mds").value == "weighted"
    # not stored yet (the stored one is complete=True, mds=reference): the button, and the
    # link kept as it came
    assert any(b.label == "Compute the Heat-geodesic projection" for b in at.button)
    assert at.query_params["p.complete"] == "0" and at.query_params["p.mds"] == "weighted"
    # back to the defaults: the stored layout, and the link drops them
    by_key(at.checkbox, "projections.heatgeo.complete").check()
    by_key(at.selectbox, "projections.heatgeo.mds").set_value("reference")
    at.run()
    assert len(at.metric) > 0
    assert "p.complete" not in at.query_params and "p.mds" not in at.query_params
    bad = {"dataset": "1", "method": "heatgeo", "p.complete": "maybe", "p.mds": "<b>smacof</b>"}
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("../pages/projections.py")
    at.query_params = bad
    at.run()
    assert not at.exception
    toasts = [t.value.replace("\\", "") for t in at.toast]  # markdown-escaped
    assert any("p.complete" in t for t in toasts) and any("p.mds" in t for t in toasts)
    assert by_key(at.checkbox, "projections.heatgeo.complete").value is True


def test_project_json_names_mds_completion_and_departures(capsys, tmp_path):
    path = tmp_path / "cli.duckdb"
    with Store(path) as s:
        store_demo_dataset(s, swiss_roll(600, seed=0))
    code, out, err = run_cli(
        capsys, "--db", str(path), "project", "1", "--method", "heatgeo", "--metric", "l2",
        "--param", "mds=weighted", "--param", "complete=false", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    chosen = obj["chosen"]
    assert obj["params"]["mds"] == "weighted" and obj["params"]["complete"] is False
    assert chosen["mds"] == "weighted" and chosen["completed"] is False
    assert chosen["completed_pairs"] == 0 and chosen["landmark_pairs"] > 0
    assert {"mds", "τ grid"} <= set(chosen["differs_from_paper"])
    assert "completion" not in chosen["differs_from_paper"]
    code, out, err = run_cli(
        capsys, "--db", str(path), "project", "1", "--method", "heatgeo", "--metric", "l2",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    chosen = json.loads(out)["chosen"]
    assert chosen["mds"] == "reference" and chosen["completed"] is True
    assert 0 < chosen["completed_pairs"] <= chosen["landmark_pairs"]
    assert "completion" in chosen["differs_from_paper"]
    code, _out, err = run_cli(
        capsys, "--db", str(path), "project", "1", "--method", "heatgeo",
        "--param", "mds=smacof",
    )  # fmt: skip
    assert code == 2 and "mds must be one of reference, weighted" in err
