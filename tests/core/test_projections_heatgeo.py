"""Heat-geodesic distances and layout against the reference numbers of docs/science.md §3.8."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata

import embscope.core.projections.heatgeo as hgm
import embscope.core.projections.heatgeo_kernel as hgk
import embscope.core.projections.heatgeo_mds as hgmds
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, build_knn_graph
from embscope.core.projections.heatgeo import (
    chebyshev_order,
    heat_geodesic_distances,
    heatgeo_layout,
    saturation_distance,
)

ROOT = Path(__file__).resolve().parents[2]


def swiss_roll_stretch(n: int, *, noise: float = 0.05, width: float = 5.0, seed: int = 42):
    """``SwissRollStretch`` of heatgeo's experiments/datasets/toy_dataset.py (docs/science.md §3.8).

    core.demo.swiss_roll differs (height 21, numpy Generator draws), so the reference's
    generator is written out here: points (n, 3) and the true geodesic coordinates (n, 2).
    """
    rs = np.random.RandomState(seed)  # the same stream as np.random.seed(seed) + np.random.*
    t = 1.5 * np.pi * (1 + 2 * rs.rand(1, n))
    h = width * rs.rand(1, n)
    X = np.concatenate([t * np.cos(t), h, t * np.sin(t)]).T + noise * rs.randn(n, 3)
    arc = 0.5 * (t * np.sqrt(t * t + 1) + np.arcsinh(t))
    return X.astype(np.float32), np.concatenate([arc, h]).T


def _row_corr(D: np.ndarray, G: np.ndarray, *, rank: bool) -> float:
    """Mean over rows of the per-row Spearman (rank=True) or Pearson correlation
    (heatgeo's knn_methods.py::corrs, the diagonal of D set to 0)."""
    D = np.array(D, dtype=np.float64)
    if D.shape[0] == D.shape[1]:
        np.fill_diagonal(D, 0.0)
    if rank:
        D, G = rankdata(D, axis=1), rankdata(G, axis=1)
    D = D - D.mean(axis=1, keepdims=True)
    G = G - G.mean(axis=1, keepdims=True)
    return float(np.mean((D * G).sum(1) / np.sqrt((D * D).sum(1) * (G * G).sum(1))))


@pytest.fixture(scope="module")
def roll500():
    X, U = swiss_roll_stretch(500)
    return X, squareform(pdist(U)), build_knn_graph(X, k=30, metric="l2", method="exact")


@pytest.fixture(scope="module")
def roll2000():
    X, U = swiss_roll_stretch(2000)
    return X, U, build_knn_graph(X, k=60, metric="l2", method="exact")


# -- target 1: the distance matrix (docs/science.md §3.8, N = 500, knn = 10, order 32) ---------------


def test_distance_matrix_matches_reference_numbers(roll500):
    X, G, graph = roll500
    d10 = heat_geodesic_distances(graph, knn=10, tau=10.0, order=32)
    d1 = heat_geodesic_distances(graph, knn=10, tau=1.0, order=32)
    assert d10.distances.shape == (500, 500) and d10.order == 32
    np.testing.assert_array_equal(d10.landmarks, np.arange(500))
    spearman = _row_corr(d10.distances, G, rank=True)
    euclid = _row_corr(squareform(pdist(X)), G, rank=True)
    assert spearman >= 0.95, spearman
    assert abs(spearman - 0.988) < 0.005, spearman  # heatgeo 0.0.1: 0.98790
    assert abs(euclid - 0.41) < 0.02 and spearman > euclid + 0.5, euclid
    # tau 1 -> 10 raises Pearson (reference 0.713 -> 0.904) and Spearman (0.948 -> 0.988)
    p1, p10 = _row_corr(d1.distances, G, rank=False), _row_corr(d10.distances, G, rank=False)
    assert abs(p1 - 0.713) < 0.01 and abs(p10 - 0.904) < 0.01 and p10 > p1 + 0.15, (p1, p10)
    assert abs(_row_corr(d1.distances, G, rank=True) - 0.948) < 0.005
    # saturation: pairs out of reach tie at sqrt(4 tau ln 1e16), and nothing is above it
    top = d10.distances.max()
    assert top == pytest.approx(saturation_distance(10.0), rel=1e-9)
    assert (d10.distances >= top - 1e-9).mean() > 0.2


def test_matches_the_reference_package_when_installed(roll500):
    embedding = pytest.importorskip("heatgeo.embedding")  # the optional bench extra
    X, _G, graph = roll500
    model = embedding.HeatGeo(knn=10, tau=10, order=32, n_pca=None, filter_method="mar")
    model.fit(X.astype(np.float64))
    model.metric_computation(X)
    ours = heat_geodesic_distances(graph, knn=10, tau=10.0, order=32).distances
    # same kernel, Laplacian, phi and polynomial; the only difference is the graph's float32
    # distances (relative 1e-7, times 40 in the kernel's exponent): max |diff| 4e-4 on ~10-40
    np.testing.assert_allclose(ours, model.dist, rtol=1e-4, atol=1e-3)


def test_landmark_columns_are_columns_of_the_full_matrix(roll500):
    _X, _G, graph = roll500
    full = heat_geodesic_distances(graph, tau=10.0, order=32).distances
    land = np.array([3, 77, 140, 499])
    part = heat_geodesic_distances(graph, tau=10.0, order=32, landmarks=land)
    np.testing.assert_array_equal(part.landmarks, land)
    np.testing.assert_allclose(part.distances, full[:, land], rtol=1e-9, atol=1e-9)
    chosen = heat_geodesic_distances(graph, tau=10.0, order=32, landmarks=40, seed=3)
    assert chosen.landmarks.size == 40 and np.unique(chosen.landmarks).size == 40
    np.testing.assert_allclose(chosen.distances, full[:, chosen.landmarks], rtol=1e-9)
    # farthest-point sampling covers the roll: every point is near some landmark
    again = heat_geodesic_distances(graph, tau=10.0, order=32, landmarks=40, seed=3)
    np.testing.assert_array_equal(again.landmarks, chosen.landmarks)


def test_harnack_term_and_order_rule(roll500):
    _X, _G, graph = roll500
    harnack = heat_geodesic_distances(graph, tau=10.0, sigma=1.0, order=32).distances
    np.testing.assert_allclose(np.diag(harnack), 0.0, atol=1e-6)  # d_ii = 0 with sigma = 1
    plain = heat_geodesic_distances(graph, tau=10.0, order=32).distances
    assert np.diag(plain).min() > 1.0  # sigma = 0 keeps the self-offset, as the reference does
    auto = heat_geodesic_distances(graph, tau=50.0)
    x = 50.0 * auto.phi
    assert auto.order == chebyshev_order(50.0, auto.phi) == int(np.ceil(x + 10 * np.sqrt(x)))
    assert chebyshev_order(0.1, 0.7) == 32


def test_cosine_graph_is_the_chord_graph():
    rng = np.random.default_rng(1)
    P = rng.standard_normal((300, 8)).astype(np.float32)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    cos = heat_geodesic_distances(build_knn_graph(P, k=30, metric="cosine", method="exact"),
                                  tau=5.0, order=32)  # fmt: skip
    l2 = heat_geodesic_distances(build_knn_graph(P, k=30, metric="l2", method="exact"),
                                 tau=5.0, order=32)  # fmt: skip
    np.testing.assert_allclose(cos.distances, l2.distances, rtol=1e-4, atol=1e-4)


# -- the automatic diffusion time ------------------------------------------------------------------


def test_auto_tau_is_the_entropy_knee(roll500):
    _X, G, graph = roll500
    auto = heat_geodesic_distances(graph, tau="auto")
    taus, entropy = auto.entropy
    np.testing.assert_allclose(taus, hgm.AUTO_TAU_GRID)
    assert np.all(np.diff(entropy) > -1e-6 * entropy.max())  # diffusion only spreads
    assert 15.0 <= auto.tau <= 30.0, auto.tau  # reference (coarse grid): 22.27
    assert auto.tau == pytest.approx(hgk._knee(taus, entropy))
    assert _row_corr(auto.distances, G, rank=True) >= 0.98  # reference at auto: 0.992
    assert heat_geodesic_distances(graph, tau="auto", seed=5).tau == pytest.approx(auto.tau)


def test_knee_agrees_with_kneed():
    kneed = pytest.importorskip("kneed")
    x = np.linspace(0.05, 200.0, 10)  # the reference's grid
    for scale in (3.0, 20.0, 60.0):
        y = np.log1p(x / scale) + 0.01 * np.sin(x)
        ref = kneed.KneeLocator(x, y, S=0.5, curve="concave").knee
        assert hgk._knee(x, y) == pytest.approx(ref)
    assert hgk._knee(x, -x) == hgm.AUTO_TAU_FALLBACK  # no knee: HeatGeo's default tau


# -- the layout ----------------------------------------------------------------------------------


def test_layout_completion_beats_saturated_distances(roll2000):
    _X, U, graph = roll2000
    G = squareform(pdist(U))
    Y = heatgeo_layout(graph, tau=20.0, n_landmarks=500, seed=0)
    assert Y.dtype == np.float32 and Y.shape == (2000, 2)
    completed = _row_corr(squareform(pdist(Y)), G, rank=True)
    saturated = heatgeo_layout(graph, tau=20.0, n_landmarks=500, complete=False)
    saturated = _row_corr(squareform(pdist(saturated)), G, rank=True)
    # reference 2-D embedding of the 2,000 roll at auto tau: 0.797 (docs/science.md §3.8)
    assert completed >= 0.97 and saturated < 0.9 and completed > saturated + 0.1, (
        completed,
        saturated,
    )
    np.testing.assert_allclose(Y.mean(axis=0), 0.0, atol=1e-3 * np.abs(Y).max())


def test_layout_seeded_and_3d(roll500):
    _X, G, graph = roll500
    a = heatgeo_layout(graph, tau=10.0, n_landmarks=300, seed=1)
    b = heatgeo_layout(graph, tau=10.0, n_landmarks=300, seed=1)
    c = heatgeo_layout(graph, tau=10.0, n_landmarks=300, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    Y3 = heatgeo_layout(graph, dims=3, tau=10.0, n_landmarks=300)
    assert Y3.shape == (500, 3) and Y3.dtype == np.float32 and np.isfinite(Y3).all()
    assert _row_corr(squareform(pdist(Y3)), G, rank=True) >= 0.95
    # all points landmarks (the exact method) works too
    exact = heatgeo_layout(graph, tau=10.0, n_landmarks=10_000)
    assert _row_corr(squareform(pdist(exact)), G, rank=True) >= 0.95


def test_embedding_reports_what_it_chose(roll500):
    _X, _G, graph = roll500
    fixed = hgm.heatgeo_embedding(graph, tau=10.0, n_landmarks=300, seed=1)
    np.testing.assert_array_equal(
        fixed.coords, heatgeo_layout(graph, tau=10.0, n_landmarks=300, seed=1)
    )
    assert fixed.tau == 10.0 and fixed.tau_auto is False and fixed.n_landmarks == 300
    exact = heat_geodesic_distances(graph, tau=10.0)
    assert fixed.order == exact.order == chebyshev_order(10.0, exact.phi)
    assert fixed.heat_points == 500 and fixed.chosen()["heat_sampled"] is False
    auto = hgm.heatgeo_embedding(graph, n_landmarks=300)
    # the knee of the same time-entropy curve as the distances' own auto tau (15-30 here)
    assert auto.tau_auto is True
    assert auto.tau == pytest.approx(heat_geodesic_distances(graph, tau="auto").tau)
    assert json.loads(json.dumps(auto.chosen())) == auto.chosen()


def test_sampled_heat_graph_extends_to_every_point(roll2000, monkeypatch):
    _X, U, graph = roll2000
    monkeypatch.setattr(hgk, "WORK_BUDGET", 2.0e8)  # forces a sampled heat graph at n = 2000
    nodes = hgk.sample_nodes(graph, 10, 0)
    assert nodes is not None and 500 < nodes.size < 2000
    Y = heatgeo_layout(graph, tau=20.0, n_landmarks=256)
    assert np.isfinite(Y).all()
    rows = np.arange(0, 2000, 4)
    G = np.sqrt(((U[rows, None, :] - U[None, :, :]) ** 2).sum(-1))
    L = np.sqrt(((Y[rows, None, :] - Y[None, :, :]) ** 2).sum(-1))
    assert _row_corr(L, G, rank=True) >= 0.95


def test_disconnected_components_are_laid_out_apart():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((200, 3)), rng.standard_normal((200, 3)) + 40.0])
    graph = build_knn_graph(X.astype(np.float32), k=20, metric="l2", method="exact")
    Y = heatgeo_layout(graph, tau=5.0, n_landmarks=100)
    assert np.isfinite(Y).all()
    a, b = Y[:200], Y[200:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 2 * max(a.std(0).max(), b.std(0).max())


# -- the MDS paths: the reference's (s_gd2 with w=None) and ours (1/d^2) -----------------------


def _record_sgd(monkeypatch) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Every sweep of sgd_mds as (eta, weights, distances) of its pairs."""
    calls: list[tuple[float, np.ndarray, np.ndarray]] = []
    real = hgmds._sgd_epoch

    def spy(Y, first, second, dist, weight, eta, chunks, chunk):
        calls.append((eta, weight.copy(), dist.copy()))
        real(Y, first, second, dist, weight, eta, chunks, chunk)

    monkeypatch.setattr(hgmds, "_sgd_epoch", spy)
    return calls


def test_mds_paths_use_the_weights_and_step_sizes_they_say(roll500, monkeypatch):
    """reference: s_gd2.mds_direct(w=None): unit weights, default_schedule(w, 30, 0.01);
    weighted: 1/d^2 weights, steps 1 / w_min to 0.1 / w_max; 30 sweeps either way."""
    _X, _G, graph = roll500
    D = heat_geodesic_distances(graph, knn=10, tau=10.0, order=32).distances
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, 0.0)
    Y0 = hgmds.classical_mds(D, 2)
    calls = _record_sgd(monkeypatch)
    hgmds.sgd_mds(D, Y0, 0, lambda *a, **k: None, path="reference")
    assert len(calls) == 30
    np.testing.assert_array_equal(calls[0][1], 1.0)  # unit weights
    # s_gd2.default_schedule(np.ones(m), t_max=30, eps=0.01): 1 -> 0.01 geometrically
    np.testing.assert_allclose([c[0] for c in calls], np.geomspace(1.0, 0.01, 30), rtol=1e-12)
    sgd2 = pytest.importorskip("s_gd2")
    np.testing.assert_allclose(
        [c[0] for c in calls], sgd2.default_schedule(np.ones(10)), rtol=1e-12
    )
    calls.clear()
    hgmds.sgd_mds(D, Y0, 0, lambda *a, **k: None, path="weighted")
    eta, weight, dist = calls[0]
    np.testing.assert_allclose(weight, 1.0 / dist**2, rtol=1e-12)  # no zero distances here
    d_min, d_max = dist.min(), dist.max()
    np.testing.assert_allclose(
        [c[0] for c in calls], np.geomspace(d_max**2, 0.1 * d_min**2, 30), rtol=1e-9
    )
    with pytest.raises(ValueError):
        hgmds.sgd_mds(D, Y0, 0, lambda *a, **k: None, path="smacof")


def test_reference_path_matches_s_gd2_on_one_distance_matrix(roll500):
    """Same distances, same start: our reference path and s_gd2.mds_direct(w=None) reach the
    same quality (they differ only in the order pairs are visited)."""
    sgd2 = pytest.importorskip("s_gd2")
    _X, G, graph = roll500
    D = heat_geodesic_distances(graph, knn=10, tau=22.266666666666666, order=32).distances
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, 0.0)
    Y0 = hgmds.classical_mds(D, 2)
    ours = hgmds.sgd_mds(D, Y0, 0, lambda *a, **k: None, path="reference")
    theirs = sgd2.mds_direct(500, squareform(D, checks=False), w=None, init=Y0.copy(),
                             random_seed=2)  # fmt: skip

    def stress(Y):
        return float(((pdist(Y) - squareform(D, checks=False)) ** 2).sum())

    assert stress(ours) == pytest.approx(stress(theirs), rel=0.01)
    rho = [_row_corr(squareform(pdist(Y)), G, rank=True) for Y in (ours, theirs)]
    assert abs(rho[0] - rho[1]) < 0.002, rho


@pytest.fixture(scope="module")
def reference_layouts():
    """The reference package's own 2-D layouts of the 500- and 2,000-point rolls at the
    bench's settings: HeatGeo(knn=10, tau="auto", order=32, n_pca=None, filter_method="mar"),
    fit_transform (alpha graph, order-32 Chebyshev, entropy knee, classical MDS + s_gd2)."""
    embedding = pytest.importorskip("heatgeo.embedding")  # the optional bench extra
    out = {}
    for n in (500, 2000):
        X, U = swiss_roll_stretch(n)
        model = embedding.HeatGeo(knn=10, tau="auto", order=32, n_pca=None, filter_method="mar")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its tau and s_gd2 calls
            Y = model.fit_transform(X.astype(np.float64))
        G = squareform(pdist(U))
        out[n] = (float(np.ravel(model.opt_tau)[0]), _row_corr(squareform(pdist(Y)), G, rank=True))
    return out


@pytest.mark.parametrize("n", [500, 2000])
def test_reference_path_reproduces_the_reference_layout(n, reference_layouts, roll500, roll2000):
    """The reference-faithful path (mds="reference", complete=False) scores the reference
    package's 2-D geodesic Spearman within 0.02: with the reference's tau, order 32 and every
    point (its exact method), and with our own defaults (auto tau, order and landmarks)."""
    tau, ref = reference_layouts[n]
    assert abs(tau - 22.27) < 0.01  # its entropy knee on linspace(0.05, 200, 10)
    graph = roll500[2] if n == 500 else roll2000[2]
    G = roll500[1] if n == 500 else squareform(pdist(roll2000[1]))

    def rho(**kw):
        Y = heatgeo_layout(graph, knn=10, seed=0, complete=False, **kw)
        return _row_corr(squareform(pdist(Y)), G, rank=True)

    paper = {"tau": tau, "order": 32, "n_landmarks": n}
    faithful = rho(mds="reference", **paper)
    defaults = rho(mds="reference")
    weighted = rho(mds="weighted", **paper)
    assert abs(faithful - ref) <= 0.02, (faithful, ref)  # 0.9156 / 0.9155, 0.7967 / 0.7968
    assert abs(defaults - ref) <= 0.02, (defaults, ref)  # 0.908 / 0.9155, 0.7966 / 0.7968
    assert ref - weighted > 0.02, (weighted, ref)  # 0.879, 0.732: the test tells them apart


def test_embedding_records_mds_completion_and_departures(roll500):
    _X, _G, graph = roll500
    lay = hgm.heatgeo_embedding(graph, tau=10.0, n_landmarks=300, seed=1)
    chosen = lay.chosen()
    assert chosen["mds"] == "reference" and chosen["completed"] is True
    assert chosen["landmark_pairs"] == 300 * 299 // 2
    assert 0 < chosen["completed_pairs"] < chosen["landmark_pairs"]
    departures = chosen["differs_from_paper"]
    assert list(departures)[:2] == ["landmarks", "completion"]
    assert (
        f"{chosen['completed_pairs']:,} of {chosen['landmark_pairs']:,}" in departures["completion"]
    )
    assert ("order" in departures) == (lay.order != 32) and "τ grid" not in departures
    assert json.loads(json.dumps(chosen)) == chosen
    # the paper's method as its code runs it: nothing to disclose
    paper = hgm.heatgeo_embedding(
        graph, tau=10.0, order=32, n_landmarks=500, complete=False, mds="reference"
    )
    assert paper.chosen()["differs_from_paper"] == {}
    assert paper.completed is False and paper.completed_pairs == 0
    other = hgm.heatgeo_embedding(graph, dims=3, mds="weighted", n_landmarks=500, order=32)
    assert {"mds", "3-D SGD", "τ grid", "completion"} <= set(other.departures())
    assert "landmarks" not in other.departures() and other.chosen()["mds"] == "weighted"


# -- target 2: the 5,000-point roll, in a fresh process (time and peak memory) ----------------

_TARGET2 = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from tests.core.test_projections_heatgeo import _row_corr, swiss_roll_stretch
from embscope.core.graph import build_knn_graph
from embscope.core.projections.heatgeo import heatgeo_layout
X, U = swiss_roll_stretch(5000)
warm = build_knn_graph(X[:300], k=30, metric="l2", method="exact")
heatgeo_layout(warm, n_landmarks=100)  # numba's compile / cache load, not the method
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
graph = build_knn_graph(X, k=150, metric="l2", method="exact")
Y = heatgeo_layout(graph, seed=0)
seconds = time.perf_counter() - t
peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
rows = np.random.default_rng(0).choice(5000, 1000, replace=False)
G = np.sqrt(((U[rows, None, :] - U[None, :, :]) ** 2).sum(-1))
L = np.sqrt(((Y[rows, None, :].astype(float) - Y[None, :, :]) ** 2).sum(-1))
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "spearman": _row_corr(L, G, rank=True)}))
"""


@pytest.mark.slow
def test_target_5000_roll_quality_time_memory():
    out = subprocess.run(
        [sys.executable, "-c", _TARGET2, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # reference heatgeo 0.0.1: 2-D Spearman 0.795 in 114 s and ~4 GB
    assert res["spearman"] >= 0.90, res
    assert res["seconds"] <= 11.4, res
    assert res["peak_mb"] <= 500, res


# -- progress, cancellation, bad input -------------------------------------------------------


def test_progress_and_cancellation(roll2000):
    _X, _U, graph = roll2000
    calls: list[tuple[float, float, str]] = []

    def record(fraction, message):
        calls.append((time.perf_counter(), fraction, message))
        return False

    heatgeo_layout(graph, n_landmarks=400, progress=record)
    fractions = [f for _t, f, _m in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:], strict=False))
    assert np.diff([t for t, _f, _m in calls]).max() < 1.0  # a cancel is heard within a second
    stages = " ".join(m for _t, _f, m in calls)
    for word in ("diffusion time", "landmarks", "heat kernel", "MDS", "placing"):
        assert word in stages, word

    def cancel_in_heat(fraction, message):
        return "heat kernel" in message

    t = time.perf_counter()
    with pytest.raises(OperationCancelled):
        heatgeo_layout(graph, tau=20.0, progress=cancel_in_heat)
    assert time.perf_counter() - t < 5.0
    with pytest.raises(OperationCancelled):
        heat_geodesic_distances(graph, tau=20.0, landmarks=50, progress=lambda f, m: True)


def test_bad_input(roll500):
    _X, _G, graph = roll500
    bad = [
        {"knn": 0},
        {"knn": 31},  # wider than the graph
        {"tau": -1.0},
        {"tau": "fast"},
        {"tau": float("nan")},
        {"sigma": -0.5},
        {"order": 1},
        {"progress": "yes"},
        {"seed": -1},
    ]
    for kw in bad:
        with pytest.raises(InvalidInputError):
            heat_geodesic_distances(graph, **kw)
        with pytest.raises(InvalidInputError):
            heatgeo_layout(graph, **kw)
    for kw in (
        {"dims": 4},
        {"dims": 1},
        {"n_landmarks": 2},
        {"complete": "yes"},
        {"mds": "smacof"},
        {"mds": 1},
    ):
        with pytest.raises(InvalidInputError):
            heatgeo_layout(graph, **kw)
    for land in (np.array([0, 500]), np.array([1, 1]), np.array([0.5]), np.zeros((2, 2), int)):
        with pytest.raises(InvalidInputError):
            heat_geodesic_distances(graph, landmarks=land)
    with pytest.raises(InvalidInputError):
        heatgeo_layout(np.zeros((10, 3)))
    tiny = KnnGraph(np.array([[1], [0]]), np.array([[1.0], [1.0]], np.float32), "l2", "exact", 1.0)
    with pytest.raises(InvalidInputError):
        heatgeo_layout(tiny, knn=1)
    nan = KnnGraph(graph.indices, np.full(graph.distances.shape, np.nan, np.float32), "l2",
                   "exact", 1.0)  # fmt: skip
    with pytest.raises(InvalidInputError):
        heat_geodesic_distances(nan)
    with pytest.raises(InvalidInputError):  # the full matrix of a large graph is refused
        big = KnnGraph(np.zeros((20_000, 10), np.int32), np.ones((20_000, 10), np.float32),
                       "l2", "exact", 1.0)  # fmt: skip
        heat_geodesic_distances(big)
