"""Stored ANN diagnostics: computed once, read back identical, built on the shared graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import embscope.core.graph as graph_mod
from embscope.core.diagnostics_runs import DIAGNOSTIC_EFS, ef_diagnostics, order_diagnostics
from embscope.core.errors import InvalidInputError
from embscope.core.graph import find_graph
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store
from tests.helpers import make_parsed


def _clusters(n=1500, d=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    X = rng.standard_normal((n, d)) + 5 * rng.standard_normal((4, d))[labels]
    meta = pd.DataFrame({"cluster": [f"c{v}" for v in labels], "value": rng.random(n)})
    return X.astype(np.float32), meta


@pytest.fixture
def dataset(db_path):
    X, meta = _clusters()
    with Store(db_path) as s:
        info = s.add_dataset(make_parsed(X, meta), name="clusters")
    return db_path, info


def test_ef_diagnostics_are_stored_and_read_back_identical(dataset, monkeypatch):
    db_path, info = dataset
    with Store(db_path) as store:
        service = NeighbourService(store)
        assert ef_diagnostics(service, info.id, run=False) is None
        seen = []
        curve, lid = ef_diagnostics(service, info.id, k=10, progress=lambda f, m: seen.append(f))
        assert list(curve.ef) == list(DIAGNOSTIC_EFS) and curve.recall.shape == (5,)
        assert curve.recall[-1] >= 0.99 and (curve.p50_ms > 0).all()
        assert lid is not None and lid.recall.shape == lid.lid.shape
        assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
        # The LID came from the shared graph, which is now stored for every other consumer.
        assert find_graph(store, info.id, metric="cosine", k=20) is not None

    def fail(*args, **kwargs):
        raise AssertionError("stored diagnostics must not be recomputed")

    monkeypatch.setattr("embscope.core.diagnostics_runs.recall_vs_ef", fail)
    monkeypatch.setattr(graph_mod, "build_knn_graph", fail)
    with Store(db_path) as store:
        again_curve, again_lid = ef_diagnostics(NeighbourService(store), info.id, run=False)
    np.testing.assert_array_equal(again_curve.recall, curve.recall)
    np.testing.assert_array_equal(again_curve.per_query_recall, curve.per_query_recall)
    np.testing.assert_array_equal(again_lid.lid, lid.lid)
    assert again_lid.spearman_rho == pytest.approx(lid.spearman_rho, nan_ok=True)
    assert again_curve.k == 10 and again_curve.metric == "cosine"


def test_ip_has_no_lid_part(dataset):
    db_path, info = dataset
    with Store(db_path) as store:
        curve, lid = ef_diagnostics(NeighbourService(store), info.id, metric="ip")
    assert lid is None and curve.metric == "ip"


def test_order_diagnostics_with_labels_round_trip(dataset):
    db_path, info = dataset
    with Store(db_path) as store:
        service = NeighbourService(store)
        result = order_diagnostics(service, info.id, metric="l2", label_column="cluster")
        assert result.orders[0] == "random" and len(result.orders) == 5
        assert result.recall.shape == (5, 5) and (result.recall > 0.5).all()
        assert sorted(result.label_values.tolist()) == ["c0", "c1", "c2", "c3"]
        again = order_diagnostics(service, info.id, metric="l2", label_column="cluster", run=False)
    np.testing.assert_array_equal(again.recall, result.recall)
    assert again.orders == result.orders and again.skipped == result.skipped
    assert again.label_values.tolist() == result.label_values.tolist()


def test_order_diagnostics_without_labels_skips_label_orders(dataset):
    db_path, info = dataset
    with Store(db_path) as store:
        result = order_diagnostics(NeighbourService(store), info.id, metric="l2")
    assert result.orders == ("random", "lid_ascending", "lid_descending")
    assert set(result.skipped) == {"label_low_lid_first", "label_high_lid_first"}


def test_order_diagnostics_refuse_bad_label_columns(dataset):
    db_path, info = dataset
    with Store(db_path) as store:
        service = NeighbourService(store)
        with pytest.raises(InvalidInputError, match="no metadata column"):
            order_diagnostics(service, info.id, label_column="nope")
        with pytest.raises(InvalidInputError, match="distinct values"):
            order_diagnostics(service, info.id, label_column="value")


def test_store_refuses_object_arrays_in_artifacts(store):
    info = store.add_dataset(make_parsed(np.eye(3, dtype=np.float32)), name="tiny")
    with pytest.raises(InvalidInputError, match="Python objects"):
        store.put_artifact(
            kind="x", fingerprint="f", dataset_id=info.id,
            arrays={"labels": np.array(["a", None], dtype=object)},
        )  # fmt: skip
    assert store.list_artifacts() == []


def test_diagnostics_report_is_the_cli_json_on_held_out_queries(dataset):
    """``embscope diagnostics --json``: one index setting (the served one) for every
    experiment, held-out queries, an interval beside every recall, seeds per order."""
    from embscope.core.diagnostics_runs import diagnostics_report
    from embscope.core.neighbours import DEFAULT_HNSW

    db_path, info = dataset
    with Store(db_path) as store:
        report = diagnostics_report(
            NeighbourService(store), info.id, efs=(10, 40), n_queries=100, seeds=2
        )
    assert report["queries"] == "held-out" and report["n_queries"] == 100 and report["k"] == 10
    assert report["index"] == dict(DEFAULT_HNSW) and report["n_indexed"] == 1400
    assert [r["ef"] for r in report["recall_vs_ef"]] == [10, 40]
    for row in report["recall_vs_ef"]:
        assert set(row) == {"ef", "recall", "recall_ci", "p50_ms", "p99_ms", "qps"}
        lo, hi = row["recall_ci"]
        assert lo <= row["recall"] <= hi and row["p99_ms"] >= row["p50_ms"] > 0
    assert isinstance(report["recall_lid_spearman"], float)
    orders = {r["order"] for r in report["insertion_order"]}
    assert orders == {"random", "lid_ascending", "lid_descending"}
    for row in report["insertion_order"]:
        assert row["seeds"] == 2 and row["recall_sd"] is not None and row["recall_sd"] >= 0
        assert {"order", "ef", "recall_mean", "recall_sd", "recall_ci", "seeds"} <= set(row)
    assert set(report["insertion_order_skipped"]) == {"label_low_lid_first", "label_high_lid_first"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"efs": ()}, "no ef given"),
        ({"efs": (10, 5000)}, "every ef must be"),
        ({"efs": tuple(range(1, 14))}, "at most 12"),
        ({"n_queries": 0}, "queries must be"),
        ({"n_queries": 5001}, "queries must be"),
        ({"n_queries": 1495}, "fewer than k"),
        ({"seeds": 11}, "seeds must be"),
        ({"k": 201}, "k must be"),
        ({"label_column": "value"}, "distinct values"),
    ],
)
def test_diagnostics_report_refuses_out_of_bounds_settings_before_any_work(
    dataset, kwargs, match, monkeypatch
):
    from embscope.core.diagnostics_runs import diagnostics_report

    def fail(*args, **kwargs):
        raise AssertionError("nothing may run on bad input")

    monkeypatch.setattr("embscope.core.diagnostics_runs.recall_vs_ef", fail)
    db_path, info = dataset
    with Store(db_path) as store, pytest.raises(InvalidInputError, match=match):
        diagnostics_report(NeighbourService(store), info.id, **kwargs)


def test_a_small_dataset_gets_recall_vs_ef_and_the_orders_skipped_with_the_reason(db_path):
    """Below 70 items there is no insertion-order experiment: the report says why rather
    than failing, and recall vs ef still runs."""
    from embscope.core.diagnostics_runs import ORDER_MIN_ITEMS, diagnostics_report

    X, meta = _clusters(n=60)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(X, meta), name="small")
        report = diagnostics_report(NeighbourService(store), info.id, efs=(10,), n_queries=10)
    assert report["insertion_order"] == [] and report["insertion_order_sample"] is None
    assert set(report["insertion_order_skipped"]) == {
        "random", "lid_ascending", "lid_descending", "label_low_lid_first", "label_high_lid_first"
    }  # fmt: skip
    assert f"at least {ORDER_MIN_ITEMS}" in report["insertion_order_skipped"]["random"]
    assert report["recall_vs_ef"][0]["ef"] == 10 and report["n_indexed"] == 50


def test_above_the_sample_query_rows_are_rows_of_the_dataset(dataset, monkeypatch):
    """Recall vs ef on a seeded sample: the stored query rows are the dataset's rows, and LID
    was read at those rows of the shared graph."""
    from embscope.core import diagnostics_runs as dr
    from embscope.core.geometry.intrinsic import local_intrinsic_dimension

    monkeypatch.setattr(dr, "DIAGNOSTIC_SAMPLE", 700)
    db_path, info = dataset
    with Store(db_path) as store:
        curve, lid = ef_diagnostics(NeighbourService(store), info.id, efs=(10,), n_queries=50)
        graph = find_graph(store, info.id, metric="cosine", k=20)
    sample = np.sort(np.random.default_rng(0).choice(1500, size=700, replace=False))
    assert curve.n_points == 700 and set(curve.query_rows) <= set(sample)
    np.testing.assert_array_equal(lid.query_rows, curve.query_rows)
    direct = local_intrinsic_dimension(
        graph.distances[curve.query_rows, :20], k=20, metric="cosine"
    )
    np.testing.assert_allclose(lid.lid, direct)
