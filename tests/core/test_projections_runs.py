"""Stored projections: computed once from one shared graph, scored, found again, validated."""

from __future__ import annotations

import numpy as np
import pytest

import embscope.core.graph as graph_module
from embscope.core.demo import digits, swiss_roll
from embscope.core.demo_store import store_demo_dataset
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.projections import runs
from embscope.core.store import Store


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture
def digits_id(store):
    return store_demo_dataset(store, digits()).id


@pytest.fixture
def roll_id(store):
    return store_demo_dataset(store, swiss_roll(400, noise=0.0, seed=0)).id


def test_pca_projection_is_stored_scored_and_reused(store, digits_id, monkeypatch):
    calls = []
    real = runs._layout
    monkeypatch.setattr(runs, "_layout", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = runs.compute_projection(store, digits_id, method="pca", dims=2)
    assert first.coords.shape == (1797, 2) and first.coords.dtype == np.float32
    assert first.metric == "l2"  # the demo records its metric
    q = first.quality
    # PCA of digits is a poor layout (docs/science.md §1.3: trust@10 0.830, 5-NN accuracy 0.618).
    assert 0.78 < q["trustworthiness@10"] < 0.88
    assert 0.5 < q["knn_accuracy@10"] < 0.72
    assert {"continuity@10", "knn_preservation@10"} <= set(q)
    again = runs.compute_projection(store, digits_id, method="pca", dims=2)
    assert calls == [1] and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.coords, first.coords)
    assert runs.find_projection(store, digits_id, method="pca").fingerprint == first.fingerprint
    assert runs.find_projection(store, digits_id, method="pca", dims=3) is None
    gallery = runs.list_projections(store, digits_id)
    assert [p.fingerprint for p in gallery] == [first.fingerprint] and gallery[0].coords is None


def test_swiss_roll_projection_reports_geodesic_spearman(store, roll_id):
    p = runs.compute_projection(store, roll_id, method="pca", dims=3)
    assert p.coords.shape == (400, 3)
    assert (
        "geodesic_spearman" in p.quality and "knn_accuracy@10" not in p.quality
    )  # t is continuous


def test_bad_requests_are_refused(store, digits_id):
    with pytest.raises(InvalidInputError, match="unknown projection method"):
        runs.compute_projection(store, digits_id, method="tsne")
    with pytest.raises(InvalidInputError, match="2 or 3"):
        runs.compute_projection(store, digits_id, method="pca", dims=4)
    with pytest.raises(InvalidInputError, match="has no parameter 'perplexity'"):
        runs.compute_projection(store, digits_id, method="umap", params={"perplexity": 5})
    with pytest.raises(InvalidInputError, match="seed"):
        runs.compute_projection(store, digits_id, method="pca", seed=-1)
    with pytest.raises(InvalidInputError, match="continuous"):
        runs.load_labels(store, store.get_dataset(digits_id), "id")  # unique: not a label
    assert store.list_artifacts(digits_id, kind=runs.KIND) == []


def test_cancel_before_the_layout_stores_nothing(store, digits_id):
    with pytest.raises(OperationCancelled):
        runs.compute_projection(store, digits_id, method="pca", progress=lambda f, m: "layout" in m)
    assert runs.list_projections(store, digits_id) == []


@pytest.mark.slow
def test_every_method_reads_one_stored_graph(store, monkeypatch):
    demo = swiss_roll(600, noise=0.05, seed=1)
    dataset_id = store_demo_dataset(store, demo).id
    builds = []
    real = graph_module.build_knn_graph
    monkeypatch.setattr(
        graph_module, "build_knn_graph", lambda *a, **k: builds.append(k.get("k")) or real(*a, **k)
    )
    fast = {
        "largevis": {"samples_per_point": 300},
        "umap": {"n_epochs": 50},
        "heatgeo": {},
        "pca": {},
    }
    for method, params in fast.items():
        for dims in (2, 3):
            p = runs.compute_projection(
                store, dataset_id, method=method, dims=dims, params=params, seed=3
            )
            assert p.coords.shape == (600, dims) and np.isfinite(p.coords).all()
            assert 0.5 < p.quality["trustworthiness@10"] <= 1.0
    assert builds == [150]  # one graph, at GRAPH_K, for every method, dims and score
    assert len(runs.list_projections(store, dataset_id)) == 8
    # what a method chose for itself is stored with it
    stored = {(p.method, p.dims): p for p in runs.list_projections(store, dataset_id)}
    umap_chosen = stored["umap", 2].chosen
    assert umap_chosen["n_epochs"] == 50 and umap_chosen["init"] == "spectral"
    assert set(umap_chosen["differs_from_paper"]) == {"optimiser"}  # 50 epochs: the user's
    hg = stored["heatgeo", 3].chosen
    assert hg["tau_auto"] is True and hg["tau"] > 0 and hg["order"] >= 32
    assert hg["n_landmarks"] <= 600 and stored["heatgeo", 3].to_json()["chosen"] == hg
    assert stored["pca", 2].chosen == {}
    lv = stored["largevis", 2].chosen
    assert lv["total_samples"] == 300 * 600 and lv["n_neighbors"] == 30
    assert set(lv["differs_from_paper"]) == {"start", "samples", "K", "perplexity"}


def test_a_new_code_version_of_a_method_hides_only_its_old_projections(store, roll_id, monkeypatch):
    pca = runs.compute_projection(store, roll_id, method="pca")
    monkeypatch.setitem(runs.CODE_VERSIONS, "largevis", runs.CODE_VERSIONS["largevis"] + 1)
    assert [p.fingerprint for p in runs.list_projections(store, roll_id)] == [pca.fingerprint]
    monkeypatch.setitem(runs.CODE_VERSIONS, "pca", runs.CODE_VERSIONS["pca"] + 1)
    assert runs.list_projections(store, roll_id) == []
    assert runs.find_projection(store, roll_id, method="pca") is None
