"""Isotropy scores and post-processing against docs/science.md §6 and the isoscore package."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.geometry.isotropy import (
    average_cosine,
    effective_rank,
    isoscore,
    isotropic_gaussian_eigenvalues,
    isotropic_reference,
    moments,
    partition_isotropy,
    pca_spectrum,
)
from embscope.core.geometry.postprocess import (
    POSTPROCESSORS,
    all_but_the_top,
    default_n_components,
    mean_centre,
    whiten,
)

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "geometry"


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Test data are made with BLAS too; on a busy 2-core machine two OpenBLAS threads can be
    # 10x slower than one (core.geometry.intrinsic.BLAS_THREADS).
    with limit_blas_threads():
        yield


def _rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _plus_minus_axes(k: int, d: int) -> np.ndarray:
    """Rows +e_i and -e_i for i < k: mean 0, k equal covariance eigenvalues, the rest 0."""
    E = np.zeros((2 * k, d), dtype=np.float32)
    E[np.arange(k), np.arange(k)] = 1.0
    E[k + np.arange(k), np.arange(k)] = -1.0
    return E


def _gaussian(n: int, d: int, seed: int, scale=1.0, offset=0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (offset + rng.standard_normal((n, d)) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def offset_gaussian() -> np.ndarray:
    """N(3 * 1, I_50), N = 10,000 (docs/science.md §6.1-6.3)."""
    return _gaussian(10_000, 50, seed=11, offset=3.0)


# -- IsoScore -------------------------------------------------------------------------------


def test_isoscore_of_a_line_is_zero():
    rng = np.random.default_rng(0)
    line = (rng.standard_normal((1000, 1)) * rng.standard_normal((1, 50))).astype(np.float32)
    assert isoscore(line) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 25, 50])
def test_isoscore_of_k_equal_eigenvalues_is_k_minus_1_over_n_minus_1(k):
    E = _plus_minus_axes(k, 50)
    assert isoscore(E) == pytest.approx((k - 1) / 49, abs=1e-12)
    # The same spectrum in a random orientation (and offset: IsoScore is mean-invariant).
    rotated = (E.astype(np.float64) @ _rotation(50, k) + 0.5).astype(np.float32)
    assert isoscore(rotated) == pytest.approx((k - 1) / 49, abs=1e-6)


@pytest.mark.parametrize(("d", "expected", "tol"), [(50, 0.995, 0.01), (384, 0.963, 0.02)])
def test_isoscore_of_an_isotropic_gaussian(d, expected, tol):
    # docs/science.md §6.1 [C]: N = 10,000 gives 0.9951 (d = 50) and 0.9626 (d = 384).
    assert isoscore(_gaussian(10_000, d, seed=d)) == pytest.approx(expected, abs=tol)


def test_isoscore_is_mean_invariant_but_average_cosine_is_not(offset_gaussian):
    centred = offset_gaussian - np.float32(3.0)
    assert isoscore(offset_gaussian) == pytest.approx(isoscore(centred), abs=1e-9)
    # §6.1: N(3 * 1, I_50) has IsoScore 0.9947 while its average cosine is 0.902.
    assert isoscore(offset_gaussian) == pytest.approx(0.9947, abs=0.005)
    assert average_cosine(offset_gaussian) == pytest.approx(0.902, abs=0.005)
    assert abs(average_cosine(centred)) < 1e-3


def test_isoscore_of_decaying_variances():
    # §6.1 [C]: variances proportional to 1/i in 50 dimensions give 0.2353.
    X = (_gaussian(10_000, 50, seed=5) / np.sqrt(np.arange(1, 51))).astype(np.float32)
    assert isoscore(X) == pytest.approx(0.2353, abs=0.01)


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "make_isoscore_reference", REFERENCE / "make_isoscore_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ISOSCORE_CASES = json.loads((REFERENCE / "isoscore_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", _ISOSCORE_CASES, ids=[c["name"] for c in _ISOSCORE_CASES])
def test_isoscore_agrees_with_the_isoscore_package(case):
    # Values from isoscore 2.0.1 (torch), made by tests/data/geometry/make_isoscore_reference.py.
    maker = _reference_module()
    X = maker.make_input(case)
    assert maker.digest(X) == case["sha256"], (
        "the regenerated input differs from the one the package saw (numpy's random stream "
        "changed?): regenerate the reference as make_isoscore_reference.py says"
    )
    assert isoscore(X) == pytest.approx(case["isoscore"], abs=1e-6)


def test_isoscore_undefined_cases_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(isoscore(np.ones((10, 5), np.float32)))  # no variance
        assert np.isnan(isoscore(np.arange(10, dtype=np.float32)[:, None]))  # d == 1
    with pytest.raises(InvalidInputError, match="at least 2 vectors"):
        isoscore(np.ones((1, 5), np.float32))


# -- average cosine -------------------------------------------------------------------------


def _brute_average_cosine(X: np.ndarray) -> float:
    X = X.astype(np.float64)
    X = X[np.linalg.norm(X, axis=1) > 0]
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = U @ U.T
    n = len(U)
    return float((C.sum() - np.trace(C)) / (n * (n - 1)))


@pytest.mark.parametrize("offset", [0.0, 0.3, 3.0])
def test_average_cosine_equals_the_brute_force_mean_over_pairs(offset):
    X = _gaussian(400, 20, seed=3, offset=offset)
    assert average_cosine(X) == pytest.approx(_brute_average_cosine(X), rel=1e-9)


def test_average_cosine_leaves_zero_vectors_out_without_warnings():
    X = _gaussian(300, 10, seed=4, offset=1.0)
    X[[5, 17, 200]] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = average_cosine(X)
        assert np.isnan(average_cosine(np.zeros((5, 3), np.float32)))
        assert np.isnan(average_cosine(np.eye(1, 3, dtype=np.float32)))
    assert value == pytest.approx(_brute_average_cosine(X), rel=1e-9)


def test_average_cosine_of_an_isotropic_gaussian_is_near_zero():
    # §6.2 [C]: |A| < 1e-4 at N = 10k.
    assert abs(average_cosine(_gaussian(10_000, 50, seed=6))) < 1e-4


# -- partition isotropy ---------------------------------------------------------------------


@pytest.mark.parametrize(("d", "expected"), [(10, 0.9455), (50, 0.8699), (384, 0.6658)])
def test_partition_isotropy_of_isotropic_gaussians(d, expected):
    # §6.3 [C] (uncentred, c = eigenvectors of W^T W, one sign): falls with d at fixed N.
    assert partition_isotropy(_gaussian(10_000, d, seed=d + 1)) == pytest.approx(expected, abs=0.02)


def test_partition_isotropy_sees_the_offset(offset_gaussian):
    # §6.3 [C]: 5.5e-10 for N(3 * 1, I_50).
    value = partition_isotropy(offset_gaussian)
    assert 1e-10 < value < 3e-9


def test_partition_isotropy_depends_on_scale_unless_normalised():
    X = _gaussian(2000, 20, seed=7, offset=0.2)
    raw, doubled = partition_isotropy(X), partition_isotropy(2 * X)
    assert doubled < raw
    assert partition_isotropy(2 * X, normalise=True) == pytest.approx(
        partition_isotropy(X, normalise=True), rel=1e-9
    )


def test_partition_isotropy_is_rotation_invariant():
    X = _gaussian(2000, 16, seed=8, scale=np.linspace(0.5, 2.0, 16), offset=0.3)
    rotated = (X.astype(np.float64) @ _rotation(16, 1)).astype(np.float32)
    assert partition_isotropy(rotated) == pytest.approx(partition_isotropy(X), rel=1e-5)


def test_partition_isotropy_with_zero_vectors_does_not_warn():
    X = _gaussian(500, 8, seed=9)
    X[:7] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for normalise in (False, True):
            value = partition_isotropy(X, normalise=normalise)
            assert 0.0 < value <= 1.0
        assert partition_isotropy(np.zeros((4, 3), np.float32), normalise=True) == 1.0
    with pytest.raises(InvalidInputError, match="True or False"):
        partition_isotropy(X, normalise="yes")


# -- effective rank and PCA spectrum --------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 10, 25])
def test_effective_rank_of_k_equal_singular_values_is_k(k):
    E = _plus_minus_axes(k, 50)
    assert effective_rank(E) == pytest.approx(k, abs=1e-6)
    assert effective_rank(E, values="eigen") == pytest.approx(k, abs=1e-6)
    rotated = (E.astype(np.float64) @ _rotation(50, k)).astype(np.float32)
    assert effective_rank(rotated) == pytest.approx(k, abs=1e-6)


def test_effective_rank_reference_values():
    # §6.4 [C]: isotropic N = 10k: d = 10 -> 10.00, d = 50 -> 49.97; variances 1/i -> 43.38.
    assert effective_rank(_gaussian(10_000, 10, seed=12)) == pytest.approx(10.0, abs=0.02)
    assert effective_rank(_gaussian(10_000, 50, seed=13)) == pytest.approx(49.97, abs=0.03)
    decaying = (_gaussian(10_000, 50, seed=14) / np.sqrt(np.arange(1, 51))).astype(np.float32)
    singular = effective_rank(decaying)
    assert singular == pytest.approx(43.38, abs=0.3)
    assert effective_rank(decaying, values="eigen") < singular - 10  # squares: much smaller
    with pytest.raises(InvalidInputError, match="singular"):
        effective_rank(decaying, values="svd")


@pytest.mark.parametrize("k", [1, 4, 10, 20])
def test_pca_spectrum_of_k_equal_variances(k):
    spectrum = pca_spectrum(_plus_minus_axes(k, 50))
    assert spectrum.variance_ratio.shape == (min(2 * k - 1, 50),)
    assert spectrum.variance_ratio.dtype == np.float64
    np.testing.assert_allclose(spectrum.variance_ratio[:k], 1.0 / k)
    assert spectrum.cumulative[-1] == pytest.approx(1.0)
    # n_alpha = min{m : m/k >= alpha}: exactly 9 of 10 reach 90%, despite rounding.
    assert spectrum.n90 == int(np.ceil(0.9 * k - 1e-9))
    assert spectrum.n95 == int(np.ceil(0.95 * k - 1e-9))
    assert spectrum.n99 == int(np.ceil(0.99 * k - 1e-9))
    assert spectrum.participation_ratio == pytest.approx(k, rel=1e-12)


def test_pca_spectrum_counts_the_linear_span_of_a_sphere():
    # §7.6: S^5 in R^50 has PR 6.00 and n90 = 6 (PCA sees the 6-dim span, not the 5-manifold).
    rng = np.random.default_rng(15)
    S = rng.standard_normal((5000, 6))
    S /= np.linalg.norm(S, axis=1, keepdims=True)
    X = (np.hstack([S, np.zeros((5000, 44))]) @ _rotation(50, 2)).astype(np.float32)
    spectrum = pca_spectrum(X)
    assert spectrum.n90 == 6 and spectrum.n99 == 6
    assert spectrum.participation_ratio == pytest.approx(6.0, abs=0.05)


def test_spectra_of_constant_data_are_undefined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spectrum = pca_spectrum(np.zeros((6, 4), np.float32))
        assert spectrum.n90 == spectrum.n95 == spectrum.n99 == 0
        assert np.isnan(spectrum.participation_ratio)
        assert np.isnan(effective_rank(np.ones((6, 4), np.float32)))


@pytest.mark.parametrize("fn", [isoscore, average_cosine, partition_isotropy, pca_spectrum])
def test_isotropy_functions_reject_bad_input(fn):
    with pytest.raises(InvalidInputError):
        fn(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(InvalidInputError):
        fn(np.array([["a", "b"]]))


# -- finite-sample references (docs/science.md §6.7) ----------------------------------------


@pytest.mark.parametrize(
    ("n", "d"), [(100, 384), (385, 384), (500, 384), (5000, 384), (2000, 50)]
)  # fmt: skip
def test_isotropic_reference_matches_a_direct_gaussian(n, d):
    """The Wishart (bidiagonal Bartlett) draw gives what N(0, I) data of the same n and d
    score: IsoScore within 0.01 (issue 17), effective rank within 0.5 % (one direct draw's
    effective rank varies by about 0.1 % at these sizes)."""
    iso_ref, rank_ref = isotropic_reference(n, d, seed=0)
    X = _gaussian(n, d, seed=n + d)
    assert iso_ref == pytest.approx(isoscore(X), abs=0.01)
    assert rank_ref == pytest.approx(effective_rank(X), rel=0.005)
    assert rank_ref <= min(n - 1, d)


def test_isotropic_reference_at_small_d_is_an_average():
    # One draw's IsoScore varies by ~0.02 at (100, 10): the reference averages 64 draws, so
    # it is compared with the mean over 32 direct draws.
    iso_ref, rank_ref = isotropic_reference(100, 10, seed=0)
    direct = [_gaussian(100, 10, seed=s) for s in range(32)]
    assert iso_ref == pytest.approx(np.mean([isoscore(X) for X in direct]), abs=0.01)
    assert rank_ref == pytest.approx(np.mean([effective_rank(X) for X in direct]), rel=0.005)


@pytest.mark.parametrize(("n", "expected"), [(500, 0.56), (1000, 0.72), (12_000, 0.97)])
def test_isotropic_reference_reproduces_the_issue_figures(n, expected):
    # Issue 17: an isotropic Gaussian in 384 dims scores 0.56 at n = 500, 0.72 at 1,000 and
    # 0.97 at 12,000 (and §6.1 [C]: 0.9626 at 10,000).
    assert isotropic_reference(n, 384)[0] == pytest.approx(expected, abs=0.01)


def test_isotropic_gaussian_eigenvalues_have_the_sample_covariance_spectrum():
    rng = np.random.default_rng(0)
    drawn = isotropic_gaussian_eigenvalues(5000, 384, rng)
    direct = moments(_gaussian(5000, 384, seed=1)).covariance_eigenvalues()
    assert drawn.shape == (384,) and np.all(np.diff(drawn) <= 0)
    assert np.abs(drawn - direct).max() < 0.05  # the same Marchenko-Pastur spectrum
    assert drawn.mean() == pytest.approx(1.0, abs=0.01)  # divisor n - 1: unit variances
    # n <= d: rank n - 1, the rest exactly 0 (direct: rounding noise).
    small = isotropic_gaussian_eigenvalues(20, 50, rng)
    assert np.count_nonzero(small) == 19 and np.all(small[:19] > 0)
    direct = moments(_gaussian(20, 50, seed=2)).covariance_eigenvalues()
    assert np.abs(np.sort(small)[::-1] - direct)[:19].max() < 1.5
    assert isotropic_gaussian_eigenvalues(2, 5, rng)[1:].tolist() == [0.0] * 4


def test_isotropic_reference_edge_cases_and_seeding():
    assert isotropic_reference(2, 8) == pytest.approx((0.0, 1.0), abs=1e-12)  # a line
    iso, rank = isotropic_reference(50, 1)
    assert np.isnan(iso) and rank == 1.0  # as isoscore and effective_rank of 1-d data
    assert isotropic_reference(300, 20, seed=3) == isotropic_reference(300, 20, seed=3)
    assert isotropic_reference(300, 20, seed=3) != isotropic_reference(300, 20, seed=4)
    with pytest.raises(InvalidInputError, match="n must be"):
        isotropic_reference(1, 8)
    with pytest.raises(InvalidInputError, match="d must be"):
        isotropic_reference(10, 0)


# -- post-processing ------------------------------------------------------------------------


def test_mean_centre_removes_the_common_direction(offset_gaussian):
    assert average_cosine(offset_gaussian) > 0.9
    centred = mean_centre(offset_gaussian)
    assert centred.dtype == np.float32 and centred.shape == offset_gaussian.shape
    assert abs(average_cosine(centred)) < 1e-3
    np.testing.assert_allclose(centred.mean(axis=0), 0.0, atol=1e-5)


def test_whiten_makes_isoscore_one():
    X = _gaussian(5000, 30, seed=16, scale=np.geomspace(5.0, 0.05, 30), offset=1.0)
    X = (X.astype(np.float64) @ _rotation(30, 3)).astype(np.float32)
    assert isoscore(X) < 0.2
    W = whiten(X)
    assert W.dtype == np.float32 and W.shape == X.shape
    assert isoscore(W) == pytest.approx(1.0, abs=1e-4)
    # Covariance diag(lambda / (lambda + eps * mean(lambda))), eps = 1e-5: 1 where the variance
    # is well above 1e-5 of the average (down to 0.988 for the smallest one here).
    lam = np.linalg.eigvalsh(np.cov(X.astype(np.float64).T))[::-1]
    expected = lam / (lam + 1e-5 * lam.mean())
    np.testing.assert_allclose(np.cov(W.astype(np.float64).T), np.diag(expected), atol=1e-5)
    # eps is relative to the mean variance: scaling X does not change the result.
    np.testing.assert_allclose(whiten(100 * X), W, atol=1e-4)


def test_whiten_keeps_directions_without_variance_at_zero():
    X = np.hstack([_gaussian(200, 3, seed=17), np.zeros((200, 2), np.float32)])
    W = whiten(X)
    assert np.isfinite(W).all() and np.abs(W[:, 3:]).max() < 1e-2
    with pytest.raises(InvalidInputError, match="eps"):
        whiten(X, eps=-1.0)


def test_all_but_the_top_raises_isoscore_on_anisotropic_data():
    # A few dominant directions on top of an isotropic floor, d = 384 (default D = 4).
    scale = np.ones(384)
    scale[:4] = [12.0, 9.0, 7.0, 5.0]
    X = _gaussian(3000, 384, seed=18, scale=scale, offset=0.5)
    X = (X.astype(np.float64) @ _rotation(384, 4)).astype(np.float32)
    before = isoscore(X)
    Y = all_but_the_top(X)
    assert Y.dtype == np.float32 and Y.shape == X.shape
    assert isoscore(Y) > before + 0.3
    assert abs(average_cosine(Y)) < 1e-2
    # The removed directions are gone: the top PCs of X carry no variance in Y.
    _, _, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    assert np.abs(Y @ vt[:4].T).max() < 1e-3
    np.testing.assert_allclose(all_but_the_top(X, n_components=0), X - X.mean(axis=0), atol=1e-5)


def test_all_but_the_top_default_and_validation():
    assert [default_n_components(d) for d in (20, 50, 100, 384, 768, 1000)] == [1, 1, 1, 4, 8, 10]
    X = _gaussian(50, 10, seed=19)
    for bad in (10, -1, 2.0, True):
        with pytest.raises(InvalidInputError, match="n_components"):
            all_but_the_top(X, n_components=bad)


def test_postprocessors_do_not_modify_their_input():
    X = _gaussian(300, 12, seed=20, offset=2.0)
    before = X.copy()
    assert set(POSTPROCESSORS) == {"mean_centre", "whiten", "all_but_the_top"}
    for name, fn in POSTPROCESSORS.items():
        out = fn(X)
        assert out.shape == X.shape and out.dtype == np.float32, name
        np.testing.assert_array_equal(X, before)
