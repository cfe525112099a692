"""LID (core.geometry.intrinsic) and the ANN diagnostics of the Neighbours page (core.diagnostics).

Reference numbers are docs/science.md §7.3 (LID), §8.4 (recall vs intrinsic dimension, insertion
order) and checklist rows 19-20. Every HNSW index here is built single-threaded with a fixed
seed, so each figure below is deterministic on a given platform.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from embscope.core.diagnostics import (
    ORDERS,
    EfCurve,
    OrderExperiment,
    _insertion_order,
    insertion_order_experiment,
    per_query_recall_vs_lid,
    recall_vs_ef,
)
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.geometry.intrinsic import lid_summary, local_intrinsic_dimension
from embscope.core.graph import KnnGraph, build_knn_graph, recall_per_row
from embscope.core.index import HnswIndex, exact_knn
from embscope.core.stats import bootstrap_ci

# -- data -----------------------------------------------------------------------------------


def subspace_gaussian(n: int, d: int, *, ambient: int, seed: int) -> np.ndarray:
    """N(0, I_d) in a random d-dim linear subspace of R^ambient (orthonormal basis by QR,
    i.e. Gram–Schmidt), as in Elliott & Clark (docs/science.md §8.3)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
    return (rng.standard_normal((n, d)) @ basis.T).astype(np.float32)


def subspace_mixture(
    n_per: int, ids: tuple[int, ...], *, ambient: int = 128, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian subspace clusters of the given IDs, each offset by 3·N(0, I_ambient)
    (docs/science.md §8.4b). Returns (X float32[n_per * len(ids), ambient], labels int[n])."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for c, d in enumerate(ids):
        basis, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
        offset = 3.0 * rng.standard_normal(ambient)
        parts.append(rng.standard_normal((n_per, d)) @ basis.T + offset)
        labels.append(np.full(n_per, c))
    return np.vstack(parts).astype(np.float32), np.concatenate(labels)


ORDER_IDS = (4, 16, 64, 128)
# 10,000 base points + 500 held-out queries: half the reference's 20,000 (docs/science.md §8.4b).
ORDER_N_PER = 10_500 // 4


@pytest.fixture(scope="module")
def order_data() -> tuple[np.ndarray, np.ndarray]:
    return subspace_mixture(ORDER_N_PER, ORDER_IDS, seed=0)


# -- LID --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subspace_lid_medians() -> dict[int, float]:
    """Median LID (k=20) of a Gaussian in a d-dim subspace of R^64, N = 3000, exact graph."""
    out = {}
    for d in (2, 5, 10, 20):
        X = subspace_gaussian(3000, d, ambient=64, seed=d)
        graph = build_knn_graph(X, k=20, metric="l2", method="exact")
        out[d] = lid_summary(local_intrinsic_dimension(graph.head(20), k=20))["median"]
    return out


@pytest.mark.parametrize("d", [2, 5])
def test_lid_median_is_close_to_the_subspace_dimension(subspace_lid_medians, d):
    # Measured: 2 -> 2.16, 5 -> 5.38 (docs/science.md §7.6: the Gaussian 10-d median is 10.03).
    assert subspace_lid_medians[d] == pytest.approx(d, rel=0.2)


def test_lid_grows_with_the_subspace_dimension(subspace_lid_medians):
    # Measured: 2.16 < 5.38 < 9.99 < 16.75 (d = 20 under-estimates, a known bias, §7.6).
    medians = [subspace_lid_medians[d] for d in (2, 5, 10, 20)]
    assert medians == sorted(medians) and len(set(medians)) == 4


def test_lid_matches_the_formula_on_hand_made_rows():
    rows = np.array(
        [
            [0.5, 1.0, 1.5, 2.0],  # no duplicates: divisor k
            [0.0, 0.5, 1.0, 2.0],  # one duplicate: dropped, divisor 3
            [0.0, 0.0, 0.0, 1.0],  # one positive distance left: undefined
            [0.0, 0.0, 0.0, 0.0],  # r_k = 0: undefined
            [1.0, 1.0, 1.0, 1.0],  # all at r_k: the estimate is unbounded, undefined
        ],
        dtype=np.float32,
    )
    lid = local_intrinsic_dimension(rows, k=4)
    r = rows[0].astype(np.float64)
    assert lid[0] == pytest.approx(-1.0 / np.mean(np.log(r / r[-1])), rel=1e-12)
    assert lid[1] == pytest.approx(-3.0 / (np.log(0.25) + np.log(0.5)), rel=1e-12)
    assert np.isnan(lid[2:]).all()
    assert lid.dtype == np.float64 and lid.shape == (5,)
    # Only the first k columns are read: r_k is the k-th distance, not the last column.
    wide = np.array([[0.5, 1.0, 1.5, 2.0, 9.0, 10.0]])
    assert local_intrinsic_dimension(wide, k=4)[0] == pytest.approx(lid[0], rel=1e-12)


def test_lid_is_amsaleg_not_levina_bickel():
    # docs/science.md §7.3: divisor k, so LID = k/(k-1) times the Levina–Bickel pointwise MLE.
    r = np.sort(np.random.default_rng(3).uniform(0.1, 1.0, size=(50, 20)), axis=1)
    levina_bickel = 19.0 / np.log(r[:, -1:] / r).sum(axis=1)
    assert np.allclose(local_intrinsic_dimension(r, k=20), levina_bickel * 20 / 19)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_lid_with_duplicates_is_finite_or_nan_and_warning_free(metric):
    rng = np.random.default_rng(1)
    base = np.hstack([rng.standard_normal((400, 16)), np.zeros((400, 16))]).astype(np.float32)
    # 100 points twice, and 5 points 30 times each (more copies than k = 20). The 5 sit in
    # the other 16 dimensions, far (and orthogonal) from the rest, so that no base point has
    # them as neighbours: a point whose k neighbours are all copies of one point has an
    # unbounded estimate, NaN too.
    far = np.hstack([np.zeros((5, 16)), rng.standard_normal((5, 16)) + 50.0]).astype(np.float32)
    X = np.vstack([base, base[:100], np.repeat(far, 30, axis=0)])
    graph = build_knn_graph(X, k=20, metric=metric, method="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lid = local_intrinsic_dimension(graph, k=20)
        summary = lid_summary(lid)
    assert not np.isinf(lid).any()
    defined = lid[~np.isnan(lid)]
    assert (defined > 0.5).all()  # no collapse towards 0 from log(0) or float noise
    # The 150 copies have >= 20 duplicates each: r_k is 0 (or float32 noise for cosine).
    assert np.isnan(lid[500:]).all()
    assert summary["n_undefined"] == 150
    # A point with one duplicate keeps a finite LID near its duplicate-free value.
    clean = local_intrinsic_dimension(build_knn_graph(base, k=20, metric=metric), k=20)
    assert np.isfinite(lid[:500]).all()
    assert np.median(np.abs(lid[:100] / clean[:100] - 1)) < 0.25


def test_lid_summary():
    s = lid_summary(np.array([1.0, 2.0, 3.0, np.nan, 4.0]))
    assert s["mean"] == pytest.approx(2.5) and s["median"] == pytest.approx(2.5)
    assert s["q10"] == pytest.approx(1.3) and s["q90"] == pytest.approx(3.7)
    assert s["n_undefined"] == 1
    empty = lid_summary(np.array([np.nan, np.nan]))
    assert np.isnan(empty["median"]) and empty["n_undefined"] == 2
    with pytest.raises(InvalidInputError, match="1-D"):
        lid_summary(np.ones((3, 2)))


@pytest.mark.parametrize(
    ("distances", "k", "match"),
    [
        (np.ones(30), 20, "2-D"),
        (np.ones((5, 10)), 20, "only 10 neighbours"),
        (np.ones((5, 30)), 1, ">= 2"),
        (np.ones((5, 30)), 2.5, "whole number"),
        (np.full((5, 30), np.nan), 20, "NaN"),
        (-np.ones((5, 30)), 20, "negative"),
        (np.tile(np.arange(30.0)[::-1], (5, 1)), 20, "sorted"),
        (np.array([["a", "b"]]), 2, "real numbers"),
    ],
)
def test_lid_rejects_bad_input(distances, k, match):
    with pytest.raises(InvalidInputError, match=match):
        local_intrinsic_dimension(distances, k=k)


# -- recall vs ef -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def easy_data() -> np.ndarray:
    X, _ = subspace_mixture(500, (4, 6, 8, 8), ambient=32, seed=2)
    return X


@pytest.fixture(scope="module")
def easy_curve(easy_data) -> EfCurve:
    return recall_vs_ef(easy_data, k=10, n_queries=200, seed=0, num_threads=1)


def test_recall_vs_ef_shapes_and_latencies(easy_curve):
    c = easy_curve
    e = len((10, 20, 40, 80, 160, 320))
    assert c.ef.tolist() == [10, 20, 40, 80, 160, 320]
    for name in ("recall", "p50_ms", "p99_ms", "qps"):
        arr = getattr(c, name)
        assert arr.shape == (e,) and arr.dtype == np.float64, name
    assert c.per_query_recall.shape == (e, 200)
    assert c.query_rows.shape == (200,) and np.all(np.diff(c.query_rows) > 0)
    assert (c.p50_ms > 0).all() and (c.p99_ms >= c.p50_ms).all() and (c.qps > 0).all()
    assert np.allclose(c.per_query_recall.mean(axis=1), c.recall)
    assert c.build_seconds > 0 and c.n_points == 2000 and c.metric == "cosine"
    assert c.params == {"M": 16, "ef_construction": 200, "seed": 0}
    rows = c.to_rows()
    assert len(rows) == e
    assert set(rows[0]) == {"ef", "recall", "recall_ci", "p50_ms", "p99_ms", "qps"}
    # Each interval is the bootstrap of that ef's per-query recalls, and holds the mean.
    for i in range(e):
        assert tuple(c.recall_ci[i]) == bootstrap_ci(c.per_query_recall[i], seed=0)
        assert c.recall_ci[i, 0] <= c.recall[i] <= c.recall_ci[i, 1]


def test_recall_rises_with_ef_and_reaches_099(easy_curve):
    assert (np.diff(easy_curve.recall) >= -0.005).all(), easy_curve.recall
    assert easy_curve.recall[-1] >= 0.99
    assert easy_curve.recall[0] < easy_curve.recall[-1]


def test_recall_vs_ef_holds_its_queries_out_and_matches_a_direct_hnswlib_measurement():
    # The queries are rows the index has never seen: searched in an index of the other rows,
    # against exact search over those rows. A direct hnswlib build with the same settings on
    # the same split lands inside the bootstrap interval; querying rows of the index instead
    # (the old measurement) reads far higher on data of high intrinsic dimension.
    import hnswlib

    X, _ = subspace_mixture(600, (32, 48), ambient=64, seed=3)
    curve = recall_vs_ef(
        X, metric="l2", efs=(10,), n_queries=200, M=8, ef_construction=40, num_threads=1
    )
    base = np.setdiff1d(np.arange(X.shape[0]), curve.query_rows)
    Q, B = X[curve.query_rows], X[base]
    truth = np.argsort(((Q[:, None, :] - B[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
    direct = []
    for build_seed in (11, 12, 13):
        index = hnswlib.Index("l2", X.shape[1])
        index.init_index(B.shape[0], M=8, ef_construction=40, random_seed=build_seed)
        index.add_items(B, np.arange(B.shape[0]))
        index.set_ef(10)
        found, _ = index.knn_query(Q, k=10)
        direct.append(
            np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        )
    lo, hi = curve.recall_ci[0]
    assert lo <= np.mean(direct) <= hi, (direct, curve.recall_ci[0])
    # In-index queries (each excluded from its own answer) are flattered.
    whole = HnswIndex("l2", M=8, ef_construction=40, seed=0, num_threads=1).build(X)
    found, _ = whole.query(Q, 10, exclude=curve.query_rows, ef=10)
    in_index_truth, _ = exact_knn(Q, X, 10, metric="l2", exclude=curve.query_rows)
    in_index = recall_per_row(found, in_index_truth).mean()
    assert in_index > curve.recall[0] + 0.03, (in_index, curve.recall[0])


# -- per-query recall vs LID ------------------------------------------------------------------


def test_per_query_recall_falls_with_query_lid():
    # Clusters of ID 2/8/32/64 in R^64: the high-ID clusters' queries lose recall first.
    # Measured: rho = -0.67 at ef = 10 (recall 0.913), -0.35 at ef = 40 (recall 0.982).
    X, _ = subspace_mixture(750, (2, 8, 32, 64), ambient=64, seed=0)
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    curve = recall_vs_ef(
        X, metric="l2", efs=(10, 40), n_queries=300, M=8, ef_construction=40, num_threads=1
    )
    res = per_query_recall_vs_lid(curve, graph)
    assert res.ef == 10 and res.recall.shape == res.lid.shape == (300,)
    np.testing.assert_array_equal(res.recall, curve.per_query_recall[0])
    np.testing.assert_allclose(
        res.lid, local_intrinsic_dimension(graph.head(20))[curve.query_rows], rtol=1e-6
    )
    assert res.n_used == 300
    assert res.spearman_rho < -0.4 and res.spearman_p < 1e-6
    assert per_query_recall_vs_lid(curve, graph, ef=40).spearman_rho < 0


def test_per_query_recall_vs_lid_constant_recall_gives_nan_without_warning(easy_data):
    curve = recall_vs_ef(easy_data, efs=(320,), n_queries=50, num_threads=1)
    graph = build_knn_graph(easy_data, k=20, metric="cosine", method="exact")
    curve = replace(curve, per_query_recall=np.ones((1, 50)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = per_query_recall_vs_lid(curve, graph)
    assert np.isnan(res.spearman_rho) and np.isnan(res.spearman_p)


def test_per_query_recall_vs_lid_rejects_bad_input(easy_data, easy_curve):
    graph = build_knn_graph(easy_data, k=20, metric="cosine", method="exact")
    with pytest.raises(InvalidInputError, match="not in the curve"):
        per_query_recall_vs_lid(easy_curve, graph, ef=11)
    with pytest.raises(InvalidInputError, match="lid_k = 30"):
        per_query_recall_vs_lid(easy_curve, graph, lid_k=30)
    with pytest.raises(InvalidInputError, match="same dataset"):
        small = KnnGraph(graph.indices[:100], graph.distances[:100], "cosine", "exact", 1.0)
        per_query_recall_vs_lid(easy_curve, small)
    l2_graph = build_knn_graph(easy_data, k=20, metric="l2", method="exact")
    with pytest.raises(InvalidInputError, match="use the cosine graph"):
        per_query_recall_vs_lid(easy_curve, l2_graph)
    with pytest.raises(InvalidInputError, match="EfCurve"):
        per_query_recall_vs_lid({"ef": 10}, graph)


# -- recall vs intrinsic dimension (docs/science.md §8.4a, checklist row 19) ----------------------


@pytest.mark.slow
def test_recall_falls_with_intrinsic_dimension():
    """Held-out queries (not in the index) on Gaussians in k-dim subspaces of R^128.

    N = 10,000 (+300 queries), M = 16, efC = 100, single-threaded. Measured recall@10
    (ef = 10 / 40): ID 4: 0.993 / 1.000; ID 8: 0.948 / 0.999; ID 16: 0.808 / 0.989;
    ID 64: 0.437 / 0.785. Reference at N = 20,000: 0.991 / 1.000, 0.948 / 1.000,
    0.781 / 0.975, 0.367 / 0.687 (the gap grows with N).
    """
    recall = {}
    for d in (4, 8, 16, 64):
        X = subspace_gaussian(10_300, d, ambient=128, seed=0)
        res = insertion_order_experiment(
            X, orders=("random",), M=16, ef_construction=100, efs=(10, 40), n_queries=300
        )
        recall[d] = res.recall_at("random", 40)
    assert recall[8] > recall[64] + 0.2
    assert recall[4] >= recall[16] > recall[64]


# -- insertion order (docs/science.md §8.4b, checklist row 20) ------------------------------------


def test_cluster_by_cluster_low_id_first_loses_recall(order_data):
    """M = 16, efC = 40: inserting the clusters one at a time, low ID first, costs recall.

    The label orders use only each label's median LID, so the clusters' true IDs stand in
    for LID here (the slow test below computes real LID and gets the same orders).
    Measured (10,000 base points, seed 0): random 0.733 / 0.935 at ef 10 / 40, low-ID first
    0.657 / 0.796, a 13.9 pp loss (reference: 14 pp at 20,000), almost all of it in the
    ID-128 cluster (0.87 -> 0.40). The size of the loss varies with the seeds, see
    test_order_effect_across_seeds.
    """
    X, labels = order_data
    true_id = np.asarray(ORDER_IDS, dtype=np.float64)[labels]
    res = insertion_order_experiment(
        X, labels=labels, lid=true_id, orders=("random", "label_low_lid_first"), seed=0
    )
    drop = res.recall_at("random", 40) - res.recall_at("label_low_lid_first", 40)
    assert drop >= 0.05
    # The loss falls on the clusters inserted last (the high-ID ones).
    per_label = res.label_recall[0, 1] - res.label_recall[1, 1]
    assert per_label[2:].max() >= 0.15 and np.abs(per_label[:2]).max() < 0.02


@pytest.mark.slow
def test_insertion_order_table_with_real_lid(order_data):
    """All five orders, LID (k=20) from the exact kNN graph.

    Measured recall@10 at ef 10 / 40: random 0.733 / 0.935; lid_ascending 0.687 / 0.875;
    lid_descending 0.732 / 0.936; label_low_lid_first 0.657 / 0.796; label_high_lid_first
    0.729 / 0.931. Median LID per cluster 4.4 / 14.2 / 35.1 / 52.9 (reference at 20,000:
    4.3 / 14.5 / 36.6 / 55.6).
    """
    X, labels = order_data
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    lid = local_intrinsic_dimension(graph, k=20)
    res = insertion_order_experiment(X, labels=labels, lid=lid, seed=0)
    assert res.orders == tuple(ORDERS) and res.skipped == {}
    assert res.recall.shape == (5, 2) and res.label_recall.shape == (5, 2, 4)
    np.testing.assert_allclose(res.label_median_lid, [4.3, 14.5, 36.6, 55.6], rtol=0.1)
    random40 = res.recall_at("random", 40)
    assert random40 - res.recall_at("label_low_lid_first", 40) >= 0.05
    assert abs(res.recall_at("label_high_lid_first", 40) - random40) < 0.02
    assert abs(res.recall_at("lid_descending", 40) - random40) < 0.02
    assert (res.build_seconds > 0).all()
    rows = res.to_rows()
    assert len(rows) == 5 * 2 * (1 + 4)
    assert {r["label"] for r in rows} == {None, 0, 1, 2, 3}
    assert sum(r["n_queries"] for r in rows if r["label"] is not None) == 5 * 2 * 500


@pytest.mark.slow
def test_order_effect_across_seeds():
    """The low-ID-first loss is real but seed-dependent: it is a tail event, not a shift.

    Over 10 data seeds x 3 HNSW seeds at 10,000 base points the loss at ef = 40 ranged from
    -0.9 to 13.9 pp (mean 3.8 pp; >= 5 pp in 11 of 30). The nine runs here (data 0-2 x
    seeds 0-2, hnswlib seeds 1-3) lose 13.9, 6.9, 4.1, -0.9, 10.0, 8.0, -0.1, -0.6, -0.3 pp.
    """
    drops = []
    for data_seed in range(3):
        X, labels = subspace_mixture(ORDER_N_PER, ORDER_IDS, seed=data_seed)
        true_id = np.asarray(ORDER_IDS, dtype=np.float64)[labels]
        for seed in range(3):
            res = insertion_order_experiment(
                X,
                labels=labels,
                lid=true_id,
                orders=("random", "label_low_lid_first"),
                efs=(40,),
                seed=seed,
            )
            drops.append(res.recall[0, 0] - res.recall[1, 0])
    drops = np.array(drops)
    assert drops.min() > -0.02  # never meaningfully better than random
    assert drops.max() >= 0.05 and drops.mean() >= 0.02


def test_insertion_orders_are_what_they_say():
    lid = np.array([3.0, np.nan, 1.0, 2.0, 5.0, 4.0])
    asc = _insertion_order("lid_ascending", 6, lid=lid, codes=None, group_lid=None, seed=0)
    desc = _insertion_order("lid_descending", 6, lid=lid, codes=None, group_lid=None, seed=0)
    assert asc.tolist() == [2, 3, 0, 5, 4, 1] and desc.tolist() == [4, 5, 0, 3, 2, 1]
    codes = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    group_lid = np.array([9.0, 1.0, 5.0])
    kw = {"lid": None, "codes": codes, "group_lid": group_lid, "seed": 7}
    low = _insertion_order("label_low_lid_first", 9, **kw)
    high = _insertion_order("label_high_lid_first", 9, **kw)
    assert codes[low].tolist() == [1, 1, 1, 2, 2, 2, 0, 0, 0]
    assert codes[high].tolist() == [0, 0, 0, 2, 2, 2, 1, 1, 1]
    assert np.array_equal(low, _insertion_order("label_low_lid_first", 9, **kw))
    rand = _insertion_order("random", 9, **kw)
    assert sorted(rand.tolist()) == list(range(9))


def test_insertion_order_experiment_skips_orders_without_inputs_and_is_deterministic():
    X, labels = subspace_mixture(150, (2, 8), ambient=16, seed=4)
    res = insertion_order_experiment(X, n_queries=50, efs=(10, 10, 20))
    assert isinstance(res, OrderExperiment)
    assert res.orders == ("random",) and set(res.skipped) == set(ORDERS) - {"random"}
    assert res.skipped["label_low_lid_first"] == "needs labels and lid"
    assert res.ef.tolist() == [10, 20] and res.label_recall is None
    assert res.query_rows.shape == (50,) and res.base_rows.shape == (250,)
    assert not set(res.query_rows) & set(res.base_rows)
    with_lid = insertion_order_experiment(
        X, labels=labels, lid=np.arange(300.0), n_queries=50, efs=(10, 20), orders=("random",)
    )
    # Same seed, single-threaded builds: the same recall, run after run.
    np.testing.assert_array_equal(with_lid.recall, res.recall)
    assert with_lid.label_query_counts.sum() == 50
    labelled = insertion_order_experiment(X, labels=labels, n_queries=50, efs=(10,))
    assert labelled.orders == ("random",) and labelled.skipped["lid_ascending"] == "needs lid"
    assert [r["label"] for r in labelled.to_rows()] == [None, 0, 1]


def test_insertion_order_over_seeds_reports_the_mean_and_spread_of_independent_builds():
    # seeds=3 is three builds per order (seeds 0, 1, 2) on one held-out split: each seed's
    # recall equals a one-seed run with that seed's build (same split), and the mean and sd
    # are those of the three.
    X, labels = subspace_mixture(200, (4, 16), ambient=32, seed=6)
    lid = np.random.default_rng(0).random(400)
    res = insertion_order_experiment(
        X, lid=lid, orders=("random", "lid_ascending"), n_queries=60, efs=(10, 20), seeds=3
    )
    assert res.seeds == 3 and res.params["seeds"] == 3 and res.seed_recall.shape == (3, 2, 2)
    np.testing.assert_allclose(res.recall, res.seed_recall.mean(axis=0))
    # The builds differ: a deterministic order still gets new HNSW levels from each seed.
    assert (res.recall_sd > 0).any(axis=1).all(), res.seed_recall
    np.testing.assert_allclose(res.recall_sd, res.seed_recall.std(axis=0, ddof=1))
    assert (res.recall_ci[..., 0] <= res.recall).all() and (
        res.recall <= res.recall_ci[..., 1]
    ).all()
    # The first seed's build is the one-seed experiment's build.
    one = insertion_order_experiment(
        X, lid=lid, orders=("random", "lid_ascending"), n_queries=60, efs=(10, 20), seeds=1
    )
    np.testing.assert_array_equal(one.recall, res.seed_recall[0])
    assert np.isnan(one.recall_sd).all() and one.to_rows()[0]["recall_sd"] is None
    row = res.to_rows()[0]
    assert row["seeds"] == 3 and row["recall_sd"] == pytest.approx(res.recall_sd[0, 0])
    with pytest.raises(InvalidInputError, match="seeds must be"):
        insertion_order_experiment(X, n_queries=60, seeds=0)


# -- bad input and cancelling -----------------------------------------------------------------


SMALL = np.random.default_rng(5).standard_normal((60, 8)).astype(np.float32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": np.ones((4, 5, 6))}, "2-D"),
        ({"X": np.ones((1, 8))}, "fewer than k"),
        ({"X": np.where(np.eye(60, 8) > 0, np.nan, SMALL)}, "NaN"),
        ({"k": 60}, "fewer than k"),
        ({"k": 0}, "at least 1"),
        ({"efs": ()}, "no ef given"),
        ({"efs": (10, 0)}, "every ef"),
        ({"n_queries": 61}, "holding out 61"),
        ({"metric": "hamming"}, "unknown metric"),
        ({"progress": "yes"}, "progress must be"),
    ],
)
def test_recall_vs_ef_rejects_bad_input(kwargs, match):
    args = {"X": SMALL, "efs": (10,), "n_queries": 10, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        recall_vs_ef(args.pop("X"), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lid": np.ones(59)}, "lid must be one number per row"),
        ({"lid": np.full(60, np.inf)}, "infinite"),
        ({"labels": np.zeros(61)}, "labels must hold one value per row"),
        ({"orders": ("random", "lid_sideways")}, "unknown insertion order 'lid_sideways'"),
        ({"orders": ()}, "orders is empty"),
        ({"orders": ("random", "random")}, "twice"),
        ({"n_queries": 55}, "ask for fewer queries"),
        ({"k": 0}, "k must be"),
        ({"M": 1}, "M must be"),
        ({"X": np.ones((60,))}, "1 items: holding out"),
    ],
)
def test_insertion_order_experiment_rejects_bad_input(kwargs, match):
    args = {"X": SMALL, "n_queries": 10, "efs": (10,), **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        insertion_order_experiment(args.pop("X"), **args)


def test_progress_returning_true_cancels():
    with pytest.raises(OperationCancelled):
        recall_vs_ef(SMALL, efs=(10,), n_queries=10, progress=lambda f, m: True)
    with pytest.raises(OperationCancelled):
        insertion_order_experiment(SMALL, n_queries=10, efs=(10,), progress=lambda f, m: True)
    # Cancelling after the first order has been measured stops before the second.
    calls = []

    def stop_after_first_order(fraction, message):
        calls.append(message)
        return "recall@" in message

    X, labels = subspace_mixture(100, (2, 4), ambient=8, seed=0)
    with pytest.raises(OperationCancelled):
        insertion_order_experiment(
            X, labels=labels, lid=np.ones(200), n_queries=20, progress=stop_after_first_order
        )
    assert not any(m.startswith("lid_ascending") for m in calls)


def test_progress_fractions_rise_to_one():
    seen: list[float] = []
    recall_vs_ef(SMALL, efs=(10, 20), n_queries=30, progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and 0.0 <= seen[0]
    seen.clear()
    insertion_order_experiment(SMALL, n_queries=10, efs=(10,), progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
