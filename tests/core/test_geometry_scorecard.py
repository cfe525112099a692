"""The geometry scorecard: complete, honest about what it left out, stored once, shared graph."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import embscope.core.graph as graph_mod
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.geometry import scorecard as scorecard_mod
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.geometry.isotropy import isotropic_reference
from embscope.core.geometry.scorecard import (
    KIND,
    SCORES,
    compute_scorecard,
    get_or_compute_scorecard,
)
from embscope.core.graph import build_knn_graph, get_or_build_graph
from embscope.core.store import Store
from tests.helpers import make_parsed


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Test data are made with BLAS too; on a busy 2-core machine two OpenBLAS threads can be
    # 10x slower than one (core.geometry.intrinsic.BLAS_THREADS).
    with limit_blas_threads():
        yield


REQUIRED = {
    "isoscore", "avg_cosine", "partition_isotropy", "effective_rank", "pca_n90", "pca_n95",
    "pca_n99", "participation_ratio", "twonn", "twonn_mle", "mle", "lid_median", "lid_mean",
    "dse", "hubness_skew", "n_duplicates", "n", "dim", "k", "metric",
    "isoscore_reference", "effective_rank_reference", "dse_ceiling",
}  # fmt: skip


def _data(n: int = 1200, d: int = 24, seed: int = 0) -> np.ndarray:
    """Clustered, offset data: every score has something to say."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((5, d)) + 1.0
    return (centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def messy():
    """Clustered data with 7 duplicate copies (of 5 vectors) and 3 zero vectors."""
    X = _data()
    return np.vstack([X, X[:5], X[:2], np.zeros((3, X.shape[1]), np.float32)])


def _card(X, metric="l2", k=10, **kwargs):
    return compute_scorecard(
        X, build_knn_graph(X, k=20, metric=metric, method="exact"), k=k, **kwargs
    )


def test_scorecard_is_complete_and_explained(messy):
    card = _card(messy)
    assert REQUIRED <= set(card.values)
    assert set(card.values) <= set(SCORES), "every value needs a one-line explanation"
    assert all(isinstance(text, str) and len(text) > 20 for text in SCORES.values())
    v = card.values
    assert v["n"] == len(messy) and v["dim"] == 24 and v["k"] == 10 and v["metric"] == "l2"
    for key in REQUIRED - {"metric"}:
        assert isinstance(v[key], (int, float)) and math.isfinite(v[key]), key
    assert 0 < v["isoscore"] < 1 and 0 < v["avg_cosine"] < 1 and 0 < v["partition_isotropy"] <= 1
    assert v["pca_n90"] <= v["pca_n95"] <= v["pca_n99"] <= 24
    assert card.spectrum.n90 == v["pca_n90"]
    assert card.twonn.dimension == v["twonn"] and card.mle.dimension == v["mle"]
    assert card.lid.shape == (len(messy),) and card.hubness.k == 10
    assert card.hubness.k_occurrence.sum() == 10 * len(messy)


def test_duplicates_and_zero_vectors_are_excluded_and_said(messy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card = _card(messy)
        clean = _card(messy[:1200])
    v = card.values
    assert v["n_duplicates"] == 7 + 2 and card.duplicates.n_groups == 6  # 5 + the zero vector
    assert v["n_zero_vectors"] == 3
    assert math.isfinite(v["mle"]) and v["mle"] == pytest.approx(clean.values["mle"], rel=0.05)
    assert v["twonn"] == pytest.approx(clean.values["twonn"], rel=0.05)
    notes = " | ".join(card.notes)
    assert "9 duplicate vectors (copies of 6 distinct vectors)" in notes
    assert "excluded from TwoNN, MLE and LID" in notes
    assert "3 zero vectors" in notes and "average cosine" in notes
    assert "partition isotropy on the raw (not normalised) vectors" in notes
    assert "DSE on all 1,210" in notes
    assert not any("duplicate" in note for note in clean.notes)


def test_one_duplicate_is_said_in_the_singular():
    X = _data(300)
    notes = " | ".join(_card(np.vstack([X, X[:1]])).notes)
    assert "1 duplicate vector (copy of 1 distinct vector):" in notes


def test_cosine_graph_scorecard_uses_chord_distances(messy):
    card = _card(messy, metric="cosine")
    assert card.values["metric"] == "cosine"
    assert any("chord distance" in note for note in card.notes)
    assert any("unit-normalised" in note for note in card.notes)
    assert math.isfinite(card.values["twonn"])


def test_inner_product_graph_gives_nan_estimators_and_a_note(messy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card = _card(messy, metric="ip")
    for key in ("twonn", "twonn_mle", "mle", "lid_median", "lid_mean"):
        assert math.isnan(card.values[key]), key
    assert any("inner-product graph" in note for note in card.notes)
    assert math.isfinite(card.values["hubness_skew"]) and math.isfinite(card.values["isoscore"])
    assert card.to_json()["twonn"] is None


def test_to_json_is_plain_json(messy):
    card = _card(messy, metric="ip")
    out = card.to_json()
    text = json.dumps(out, allow_nan=False)  # NaN would fail here
    assert json.loads(text) == out
    assert out["notes"] == list(card.notes)
    assert set(out) == set(card.values) | {"notes"}


def test_dse_runs_on_a_seeded_sample_of_large_data():
    X = _data(n=2300, d=8, seed=3)
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    a = compute_scorecard(X, graph, seed=1)
    assert a.values["dse_n"] == 2000
    assert any("DSE on a seeded sample of 2,000" in note for note in a.notes)
    assert 0 < a.values["dse"] <= np.log2(2000)
    assert a.values["dse_ceiling"] == math.log2(a.values["dse_n"]) == math.log2(2000)


def test_isoscore_and_effective_rank_come_with_their_isotropic_reference(messy):
    # Both are computed on all n rows, so the reference is an isotropic Gaussian of n rows.
    card = _card(messy, seed=5)
    v = card.values
    assert (v["isoscore_reference"], v["effective_rank_reference"]) == isotropic_reference(
        len(messy), 24, seed=5
    )
    assert v["isoscore"] < v["isoscore_reference"] < 1  # clustered, offset data
    assert v["effective_rank"] < v["effective_rank_reference"] < 24
    assert v["dse_ceiling"] == math.log2(v["dse_n"]) and v["dse"] <= v["dse_ceiling"]
    # A small isotropic dataset scores far below 1, as its reference says it should.
    X = np.random.default_rng(1).standard_normal((300, 64)).astype(np.float32)
    g = _card(X).values
    assert g["isoscore"] < 0.85
    assert g["isoscore"] == pytest.approx(g["isoscore_reference"], abs=0.01)
    assert g["effective_rank"] == pytest.approx(g["effective_rank_reference"], rel=0.005)


def test_scorecard_validates_its_graph():
    X = _data(n=300, d=6)
    narrow = build_knn_graph(X, k=10, metric="l2", method="exact")
    with pytest.raises(InvalidInputError, match="needs 20"):
        compute_scorecard(X, narrow)
    other = build_knn_graph(X[:200], k=20, metric="l2", method="exact")
    with pytest.raises(InvalidInputError, match="200 rows but there are 300"):
        compute_scorecard(X, other)
    with pytest.raises(InvalidInputError, match="KnnGraph"):
        compute_scorecard(X, object())
    with pytest.raises(InvalidInputError, match="at least 3"):
        compute_scorecard(X[:2], narrow)


def test_progress_is_reported_and_can_cancel():
    X = _data(n=300, d=6)
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    seen: list[float] = []
    compute_scorecard(X, graph, progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0
    with pytest.raises(OperationCancelled):
        compute_scorecard(X, graph, progress=lambda f, m: f > 0.3)


# -- stored once, read back identical, on the shared graph ---------------------------------


def _assert_same(a, b):
    assert a.to_json() == b.to_json()
    assert a.notes == b.notes
    assert set(a.values) == set(b.values)
    for key, value in a.values.items():
        other = b.values[key]
        assert type(value) is type(other), key
        assert value == other or (math.isnan(value) and math.isnan(other)), key
    np.testing.assert_array_equal(a.lid, b.lid)
    for part in ("spectrum", "twonn", "mle", "hubness", "duplicates"):
        pa, pb = getattr(a, part), getattr(b, part)
        for name, value in vars(pa).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, getattr(pb, name), err_msg=f"{part}.{name}")
                assert value.dtype == getattr(pb, name).dtype, f"{part}.{name}"
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(getattr(pb, name)), f"{part}.{name}"
            else:
                assert value == getattr(pb, name), f"{part}.{name}"
                assert type(value) is type(getattr(pb, name)), f"{part}.{name}"


def test_scorecard_is_stored_once_and_read_back_identical(db_path, monkeypatch, messy):
    builds = []
    real_build = graph_mod.build_knn_graph

    def counting_build(*args, **kwargs):
        builds.append(kwargs.get("k"))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(graph_mod, "build_knn_graph", counting_build)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(messy), name="messy")
        assert get_or_compute_scorecard(store, info.id, metric="l2", run=False) is None
        seen: list[float] = []
        card = get_or_compute_scorecard(
            store, info.id, k=10, metric="l2", progress=lambda f, m: seen.append(f)
        )
        assert seen and seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen)
        # A second consumer of the same dataset and metric (hubness-like, k = 10) reads the
        # graph the scorecard built: one build in all, wide enough for everyone.
        get_or_build_graph(store, info.id, k=10, metric="l2")
        assert len(builds) == 1 and builds[0] >= 20
        assert [a.kind for a in store.list_artifacts(info.id, kind=KIND)] == [KIND]

    def fail(*args, **kwargs):
        raise AssertionError("a stored scorecard must not be recomputed")

    for name in ("compute_scorecard", "twonn", "mle_dimension", "find_duplicates", "hubness"):
        monkeypatch.setattr(scorecard_mod, name, fail)
    monkeypatch.setattr(graph_mod, "build_knn_graph", fail)
    with Store(db_path) as store:
        again = get_or_compute_scorecard(store, info.id, k=10, metric="l2", run=False)
        assert again is not None
        _assert_same(card, again)
        # Another k or metric is another scorecard: not stored yet.
        assert get_or_compute_scorecard(store, info.id, k=5, metric="l2", run=False) is None
        assert get_or_compute_scorecard(store, info.id, metric="cosine", run=False) is None


def test_ip_scorecard_round_trips_its_nans(db_path):
    X = _data(n=400, d=8, seed=5)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(X), name="ip")
        card = get_or_compute_scorecard(store, info.id, metric="ip")
        again = get_or_compute_scorecard(store, info.id, metric="ip", run=False)
    _assert_same(card, again)
    assert math.isnan(again.values["twonn"]) and math.isnan(again.twonn.dimension)


def test_get_or_compute_scorecard_validates(db_path):
    X = _data(n=50, d=4)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(X), name="small")
        with pytest.raises(InvalidInputError, match="metric"):
            get_or_compute_scorecard(store, info.id, metric="manhattan")
        with pytest.raises(InvalidInputError, match="k"):
            get_or_compute_scorecard(store, info.id, k=0)
        card = get_or_compute_scorecard(store, info.id, k=49, metric="l2")
        assert card.values["k"] == 49 and card.values["n"] == 50
