"""When heat-geodesic is a poor fit, measured: core.projections.runs.heatgeo_fit_advice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from embscope.core.demo import stdlib_docstrings
from embscope.core.demo_store import store_demo_dataset
from embscope.core.projections import runs
from embscope.core.store import Store


def _projection(method, trust, *, pres=0.3, dims=2, metric="cosine", dataset_id=1):
    return runs.Projection(
        dataset_id=dataset_id, method=method, dims=dims, seed=0, metric=metric, params={},
        quality={"trustworthiness@10": trust, "knn_preservation@10": pres}, seconds=1.0,
    )  # fmt: skip


@pytest.fixture
def peers(monkeypatch):
    stored: list[runs.Projection] = []
    monkeypatch.setattr(runs, "list_projections", lambda store, dataset_id: list(stored))
    return stored


def test_advice_follows_the_measured_scores(peers):
    advise = runs.heatgeo_fit_advice
    assert runs.POOR_FIT_TRUST == 0.85 and runs.POOR_FIT_GAP == 0.10
    # its own score below the threshold: advised, with or without another layout stored
    low = advise(None, _projection("heatgeo", 0.81))
    assert low is not None and low.below_threshold and low.peer is None
    assert low.to_json()["trustworthiness@10"] == 0.81
    # a good score and nothing better stored: no advice
    assert advise(None, _projection("heatgeo", 0.95)) is None
    # a stored LargeVis of the same dataset, metric and dims far better: advised
    peers.append(_projection("umap", 0.97))
    peers.append(_projection("largevis", 0.99, pres=0.5))
    peers.append(_projection("largevis", 1.0, dims=3))  # other dims: not compared
    peers.append(_projection("pca", 1.0))  # not a suggested method
    beaten = advise(None, _projection("heatgeo", 0.88))
    assert beaten is not None and not beaten.below_threshold
    assert beaten.peer is not None and beaten.peer.method == "largevis"
    assert beaten.peer_trust == 0.99 and beaten.to_json()["peer"]["knn_preservation@10"] == 0.5
    # close to it: no advice (digits: 0.950 against 0.990)
    assert advise(None, _projection("heatgeo", 0.95)) is None
    # other methods, and layouts that were not scored, get none
    assert advise(None, _projection("umap", 0.5)) is None
    unscored = dataclasses.replace(_projection("heatgeo", 0.5), quality={})
    assert advise(None, unscored) is None


def test_stdlib_docstrings_heat_geodesic_is_advised_against(tmp_path):
    """The demo of clustered text: heat-geodesic's own trustworthiness is below 0.85, and a
    stored LargeVis layout of it scores far more."""
    with Store(tmp_path / "t.duckdb") as store:
        info = store_demo_dataset(store, stdlib_docstrings())
        heat = runs.compute_projection(store, info.id, method="heatgeo")
        trust = heat.quality["trustworthiness@10"]
        assert 0.7 < trust < runs.POOR_FIT_TRUST, trust  # 0.81 at seed 0
        advice = runs.heatgeo_fit_advice(store, heat)
        assert advice is not None and advice.below_threshold and advice.peer is None
        lv = runs.compute_projection(store, info.id, method="largevis")
        assert lv.quality["trustworthiness@10"] - trust >= runs.POOR_FIT_GAP  # 0.95
        advice = runs.heatgeo_fit_advice(store, heat)
        assert advice is not None and advice.peer is not None
        assert advice.peer.method == "largevis" and advice.peer_trust == pytest.approx(
            lv.quality["trustworthiness@10"]
        )
        chosen = heat.to_json()["chosen"]
        assert chosen["mds"] == "reference" and chosen["completed"] is True
        assert chosen["completed_pairs"] == 0  # every heat distance reliable: nothing to do
        assert "completion" not in chosen["differs_from_paper"]
        assert "landmarks" in chosen["differs_from_paper"]
        assert np.isfinite(heat.coords).all()
