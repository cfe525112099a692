"""Intrinsic dimension (TwoNN, MLE, DSE) and duplicates against docs/science.md §7 and skdim."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.intrinsic import (
    diffusion_spectral_entropy,
    dse_default_sigma,
    find_duplicates,
    lid_summary,
    limit_blas_threads,
    local_intrinsic_dimension,
    mle_dimension,
    twonn,
)
from embscope.core.graph import build_knn_graph


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Test data are made with BLAS too; on a busy 2-core machine two OpenBLAS threads can be
    # 10x slower than one (core.geometry.intrinsic.BLAS_THREADS).
    with limit_blas_threads():
        yield


def _rotated_into(Y: np.ndarray, ambient: int, seed: int) -> np.ndarray:
    """Rows of Y (n, m) placed in R^ambient by a random rotation, float32."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((ambient, ambient)))
    Z = np.zeros((len(Y), ambient))
    Z[:, : Y.shape[1]] = Y
    return (Z @ q).astype(np.float32)


def _cube(d: int, n: int = 5000, seed: int = 0) -> np.ndarray:
    return _rotated_into(np.random.default_rng(seed).uniform(size=(n, d)), 50, seed + 100)


def _sphere(d: int, n: int = 5000, seed: int = 0) -> np.ndarray:
    S = np.random.default_rng(seed).standard_normal((n, d + 1))
    return _rotated_into(S / np.linalg.norm(S, axis=1, keepdims=True), 50, seed + 200)


def _graph(X: np.ndarray, metric: str = "l2", k: int = 20):
    return build_knn_graph(X, k=k, metric=metric, method="exact")


@pytest.fixture(scope="module")
def cube2_graph():
    return _graph(_cube(2, seed=1))


@pytest.fixture(scope="module")
def cube5_graph():
    return _graph(_cube(5, seed=2))


@pytest.fixture(scope="module")
def sphere5_graph():
    return _graph(_sphere(5, seed=3))


# -- docs/science.md §7.6 reference values -------------------------------------------------------


def test_twonn_on_the_2_cube(cube2_graph):
    # §7.6 [C]: 2.03 / 2.03; TwoNN within ±10% for d <= 10.
    result = twonn(cube2_graph)
    assert result.dimension == pytest.approx(2.03, rel=0.1)
    assert result.dimension_mle == pytest.approx(2.03, rel=0.1)
    assert result.n_used == int(5000 * 0.9) and result.n_dropped == 0
    assert result.n_discarded == 500
    assert result.log_mu.shape == result.neg_log_survival.shape == (4500,)
    assert (np.diff(result.log_mu) >= 0).all()


def test_twonn_on_the_5_cube(cube5_graph):
    # §7.6 [C]: 4.61 / 4.63.
    result = twonn(cube5_graph)
    assert result.dimension == pytest.approx(4.6, rel=0.1)
    assert result.dimension_mle == pytest.approx(4.63, rel=0.1)


def test_mle_on_the_5_sphere(sphere5_graph):
    # §7.6 [C]: skdim MLE k = 20 (harmonic) 4.91; TwoNN 4.94 / 4.91.
    result = mle_dimension(sphere5_graph, k=20)
    assert result.dimension == pytest.approx(4.91, abs=0.3)
    assert result.k == 20 and result.n_undefined == 0
    assert result.pointwise.shape == (5000,) and result.pointwise.dtype == np.float64
    assert twonn(sphere5_graph).dimension == pytest.approx(4.94, rel=0.1)


@pytest.mark.parametrize(
    ("fixture", "mean", "median"), [("cube2_graph", 2.19, 2.11), ("cube5_graph", 5.08, 4.88)]
)
def test_lid_reference_values(request, fixture, mean, median):
    summary = lid_summary(local_intrinsic_dimension(request.getfixturevalue(fixture), k=20))
    assert summary["mean"] == pytest.approx(mean, rel=0.1)
    assert summary["median"] == pytest.approx(median, rel=0.1)


def test_mle_is_lid_times_k_minus_1_over_k(cube5_graph):
    mle = mle_dimension(cube5_graph, k=20, aggregate="mean")
    lid = local_intrinsic_dimension(cube5_graph, k=20)
    np.testing.assert_allclose(mle.pointwise, lid * 19 / 20, rtol=1e-12)
    assert mle.dimension == pytest.approx(np.mean(lid) * 19 / 20, rel=1e-12)


# -- agreement with scikit-dimension --------------------------------------------------------


@pytest.fixture(scope="module")
def skdim():
    return pytest.importorskip("skdim")


@pytest.fixture(scope="module", params=[("cube5_in_50", 50), ("gauss10_in_20", 20)])
def skdim_case(request):
    name, ambient = request.param
    rng = np.random.default_rng(21)
    if name.startswith("cube"):
        X = _rotated_into(rng.uniform(size=(2000, 5)), ambient, 22)
    else:
        X = _rotated_into(rng.standard_normal((2000, 10)), ambient, 23)
    return X, _graph(X)


def test_twonn_equals_skdim_on_the_same_distances(skdim, skdim_case):
    X, graph = skdim_case
    r = graph.distances[:, :2].astype(np.float64)
    ours = twonn(graph)
    linear = skdim.id.TwoNN(dist=True).fit(r)
    mle = skdim.id.TwoNN(dist=True, method="mle").fit(r)
    assert ours.dimension == pytest.approx(linear.dimension_, rel=1e-12)
    assert ours.dimension_mle == pytest.approx(mle.dimension_, rel=1e-12)
    np.testing.assert_allclose(ours.log_mu, linear.x_.ravel(), rtol=1e-12)
    np.testing.assert_allclose(ours.neg_log_survival, linear.y_.ravel(), rtol=1e-12)


@pytest.mark.parametrize("aggregate", ["harmonic", "mean", "median"])
def test_mle_equals_skdim_on_the_same_distances(skdim, skdim_case, aggregate):
    X, graph = skdim_case
    comb = {"harmonic": "mle"}.get(aggregate, aggregate)
    ref = skdim.id.MLE().fit(
        X, precomputed_knn_arrays=(graph.distances.astype(np.float64), graph.indices), comb=comb
    )
    ours = mle_dimension(graph, k=20, aggregate=aggregate)
    assert ours.dimension == pytest.approx(ref.dimension_, rel=1e-12)
    np.testing.assert_allclose(ours.pointwise, ref.dimension_pw_, rtol=1e-12)


def test_twonn_and_mle_match_skdim_finding_its_own_neighbours(skdim, skdim_case):
    # skdim searches in float64 (brute-force pairwise for d > 25, sklearn below); our graph
    # distances are float32. Measured differences: 2e-9 to 4e-8 relative.
    X, graph = skdim_case
    assert twonn(graph).dimension == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-6)
    assert twonn(graph).dimension_mle == pytest.approx(
        skdim.id.TwoNN(method="mle").fit(X).dimension_, rel=1e-6
    )
    assert mle_dimension(graph).dimension == pytest.approx(
        skdim.id.MLE().fit(X).dimension_, rel=1e-6
    )


# -- duplicates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_duplicates():
    """A 5-cube in R^50 (2,000 points) plus exact copies of 12 of them (3 twice)."""
    base = _cube(5, n=2000, seed=31)
    copies = np.vstack([base[:12], base[:3]])
    return base, np.vstack([base, copies])


def test_find_duplicates_counts_copies_and_groups(with_duplicates):
    base, X = with_duplicates
    dup = find_duplicates(X)
    assert dup.n_duplicates == 15 and dup.n_groups == 12
    np.testing.assert_array_equal(dup.rows, np.arange(2000, 2015))
    assert dup.rows.dtype == np.int64
    clean = find_duplicates(base)
    assert clean.n_duplicates == 0 and clean.rows.size == 0 and clean.n_groups == 0


def test_find_duplicates_is_exact():
    X = np.random.default_rng(32).standard_normal((50, 8)).astype(np.float32)
    X[10] = X[3]
    X[20] = np.nextafter(X[3], np.float32(np.inf))  # one ulp away: not a duplicate
    X[30] = 0.0
    X[31] = -0.0  # -0.0 equals 0.0
    X[40] = X[3]
    dup = find_duplicates(X)
    assert dup.rows.tolist() == [10, 31, 40] and dup.n_groups == 2


def test_duplicates_break_skdim_mle_but_not_ours(skdim, with_duplicates):
    base, X = with_duplicates
    graph = _graph(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skdim divides by zero
        naive = skdim.id.MLE().fit(X).dimension_
    assert naive == 0.0  # log(r_k / 0) = inf: pointwise 0, harmonic mean 0
    clean = mle_dimension(_graph(base)).dimension
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = mle_dimension(graph)
        two = twonn(graph)
        lid = local_intrinsic_dimension(graph)
    assert np.isfinite(ours.dimension) and ours.n_undefined == 0
    assert ours.dimension == pytest.approx(clean, rel=0.05)
    # The 12 originals and their 15 copies all have a nearest neighbour at distance 0.
    assert two.n_dropped == 27
    assert two.dimension == pytest.approx(twonn(_graph(base)).dimension, rel=0.05)
    assert np.isfinite(lid).all()


def test_mle_pointwise_on_hand_made_rows():
    rows = np.array(
        [
            [0.5, 1.0, 1.5, 2.0],  # no duplicates: (k - 1) / sum log(r_k / r_j)
            [0.0, 0.5, 1.0, 2.0],  # one duplicate: left out, divisor m - 1 = 2
            [0.0, 0.0, 0.0, 1.0],  # one positive distance: undefined
            [1.0, 1.0, 1.0, 1.0],  # all at r_k: unbounded, undefined
        ]
    )
    result = mle_dimension(rows, k=4)
    assert result.pointwise[0] == pytest.approx(3.0 / np.log(2.0 / rows[0]).sum(), rel=1e-12)
    assert result.pointwise[1] == pytest.approx(2.0 / (np.log(4.0) + np.log(2.0)), rel=1e-12)
    assert np.isnan(result.pointwise[2:]).all() and result.n_undefined == 2
    assert result.dimension == pytest.approx(
        2.0 / (1 / result.pointwise[0] + 1 / result.pointwise[1])
    )


def test_twonn_with_too_few_points_is_nan():
    result = twonn(np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 2.0]]))
    assert np.isnan(result.dimension) and np.isnan(result.dimension_mle)
    assert result.n_dropped == 2 and result.log_mu.size == 0


# -- metrics --------------------------------------------------------------------------------


def test_cosine_graphs_give_the_dimension_of_chord_distances():
    # 1 - cos = chord^2 / 2 on the unit sphere: taken as it is it would halve every estimate.
    X = _sphere(4, n=3000, seed=41)  # unit rows already
    l2, cos = _graph(X, "l2"), _graph(X, "cosine")
    assert twonn(cos).dimension == pytest.approx(twonn(l2).dimension, rel=1e-3)
    assert mle_dimension(cos).dimension == pytest.approx(mle_dimension(l2).dimension, rel=1e-3)
    np.testing.assert_allclose(
        local_intrinsic_dimension(cos), local_intrinsic_dimension(l2), rtol=1e-2
    )
    # Plain arrays are taken as Euclidean unless the metric is given.
    halved = mle_dimension(cos.distances).dimension
    assert mle_dimension(cos.distances, metric="cosine").dimension == pytest.approx(2 * halved)


def test_inner_product_graphs_are_refused():
    X = np.random.default_rng(42).standard_normal((200, 8)).astype(np.float32)
    graph = _graph(X, "ip")
    for fn in (twonn, mle_dimension, local_intrinsic_dimension):
        with pytest.raises(InvalidInputError, match="inner-product"):
            fn(graph)
    with pytest.raises(InvalidInputError, match="unknown metric"):
        twonn(np.ones((5, 2)), metric="manhattan")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: twonn(np.ones((5, 2)), discard_fraction=1.0), r"\[0, 1\)"),
        (lambda: twonn(np.ones((5, 2)), discard_fraction="a"), "number"),
        (lambda: twonn(np.ones((5, 1))), "only 1 neighbours"),
        (lambda: twonn(-np.ones((5, 2))), "negative"),
        (lambda: mle_dimension(np.ones((5, 30)), aggregate="max"), "aggregate"),
        (lambda: mle_dimension(np.ones((5, 10)), k=20), "only 10 neighbours"),
        (lambda: find_duplicates(np.array([[np.inf, 1.0]])), "NaN or infinite"),
        (lambda: diffusion_spectral_entropy(np.ones((5, 2)), sigma=0.0), "sigma"),
        (lambda: diffusion_spectral_entropy(np.ones((5, 2)), t=0), "t must"),
        (lambda: diffusion_spectral_entropy(np.ones((5, 2)), max_n=1), "max_n"),
    ],
)
def test_bad_input_is_refused(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


# -- diffusion spectral entropy -------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """4 well-separated 2-D blobs (std 0.5, centres 100 apart), 250 points each."""
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    rng = np.random.default_rng(51)
    return (np.repeat(centres, 250, axis=0) + 0.5 * rng.standard_normal((1000, 2))).astype(
        np.float32
    )


def test_dse_of_separated_blobs_tends_to_log2_of_the_blob_count(blobs):
    # §7.5 [C]: t >= 20 -> 2.000 = log2(4); DSE falls with t and stays below log2 N.
    values = [diffusion_spectral_entropy(blobs, sigma=1.0, t=t) for t in (1, 2, 5, 20)]
    assert values[-1] == pytest.approx(2.0, abs=0.01)
    assert values == sorted(values, reverse=True)
    assert values[0] <= np.log2(1000)


def test_dse_of_uniform_data_matches_the_reference():
    # §7.5 [C]: uniform[0, 1]^256, N = 1000, sigma = 10, t = 1 -> 2.3049.
    U = np.random.default_rng(52).uniform(size=(1000, 256)).astype(np.float32)
    assert diffusion_spectral_entropy(U, sigma=10.0) == pytest.approx(2.3049, abs=0.01)


@pytest.fixture(scope="module")
def gaussian_table():
    """Gaussian (std 3) in k of 64 dims, N = 1000: DSE at sigma = 10 and sigma = 1."""
    out = {}
    for k in (1, 2, 4, 8, 16, 32, 64):
        X = np.zeros((1000, 64), np.float32)
        X[:, :k] = 3.0 * np.random.default_rng(60 + k).standard_normal((1000, k))
        out[k] = (
            diffusion_spectral_entropy(X, sigma=10.0),
            diffusion_spectral_entropy(X, sigma=1.0),
        )
    return out


def test_dse_is_monotone_in_the_intrinsic_dimension(gaussian_table):
    # §7.5 [C], sigma = 10: 0.47, 0.90, 1.80, 3.55, 6.42, 9.15, 9.84.
    reference = {1: 0.47, 2: 0.90, 4: 1.80, 8: 3.55, 16: 6.42, 32: 9.15, 64: 9.84}
    wide = [gaussian_table[k][0] for k in reference]
    assert wide == sorted(wide) and len(set(wide)) == len(wide)
    for k, expected in reference.items():
        assert gaussian_table[k][0] == pytest.approx(expected, abs=0.15), k
    # sigma = 1 saturates at log2(1000) = 9.97 from k >= 8.
    for k in (8, 16, 32, 64):
        assert gaussian_table[k][1] == pytest.approx(np.log2(1000), abs=0.02)


def test_dse_default_sigma_follows_the_data_scale(blobs):
    X = np.random.default_rng(53).standard_normal((600, 10)).astype(np.float32)
    assert diffusion_spectral_entropy(10 * X) == pytest.approx(
        diffusion_spectral_entropy(X), rel=1e-6
    )
    assert dse_default_sigma(10 * X) == pytest.approx(10 * dse_default_sigma(X), rel=1e-6)
    assert diffusion_spectral_entropy(blobs) == pytest.approx(
        2.0, abs=0.2
    )  # clusters show at the default scale too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(diffusion_spectral_entropy(np.ones((20, 3), np.float32)))


def test_dse_samples_with_its_seed():
    X = np.random.default_rng(54).standard_normal((700, 6)).astype(np.float32)
    a = diffusion_spectral_entropy(X, max_n=300, seed=1)
    assert a == diffusion_spectral_entropy(X, max_n=300, seed=1)
    assert a != diffusion_spectral_entropy(X, max_n=300, seed=2)
    # max_n >= n uses every row, whatever the seed.
    assert diffusion_spectral_entropy(X, seed=1) == diffusion_spectral_entropy(X, seed=2)
