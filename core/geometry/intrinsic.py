"""Intrinsic dimension estimators (docs/science.md §7) and exact duplicate detection.

The distance-ratio estimators here (:func:`twonn`, :func:`mle_dimension`,
:func:`local_intrinsic_dimension`) take neighbour distances from ``graph.head(k)`` of the one
:class:`core.graph.KnnGraph` (self excluded, rows sorted ascending, true distances); none of
them computes neighbours. :func:`diffusion_spectral_entropy` works on the vectors themselves
(a seeded sample of them), and :func:`find_duplicates` finds identical rows.

Duplicates are common in real embedding sets (the same text embedded twice) and break the
distance-ratio estimators: a zero distance makes ``log(r_k / r_1)`` infinite and the
scikit-dimension MLE collapses to 0. All three estimators here leave zero distances out
(one shared rule, :func:`_log_ratio_sums`), and :func:`twonn` drops the points whose nearest
neighbour is at distance 0, as scikit-dimension does.

Cosine graphs hold ``1 - cos``, which on the unit sphere is half the *squared* chord
distance: ratios of it are squared ratios of Euclidean distances, and an estimate computed
from them is half the true dimension. Every estimator here therefore takes the graph's
metric (read from a :class:`~core.graph.KnnGraph`, or given as ``metric=``) and works on the
chord distance ``sqrt(2 (1 - cos))`` for ``cosine``. The ``ip`` "distance" ``1 - <a, b>`` is
not a metric (it can be negative and does not scale with the radius), so the estimators
refuse it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_int, check_vectors

__all__ = [
    "BLAS_THREADS",
    "DSE_MAX_N",
    "LID_K",
    "MLE_K",
    "Duplicates",
    "MLEDimension",
    "TwoNN",
    "diffusion_spectral_entropy",
    "dse_default_sigma",
    "find_duplicates",
    "lid_summary",
    "limit_blas_threads",
    "local_intrinsic_dimension",
    "mle_dimension",
    "twonn",
]

# Neighbours per point for LID (docs/science.md §0.1, §7.3).
LID_K = 20
# Neighbours per point for the Levina–Bickel MLE: scikit-dimension's ``MLE._N_NEIGHBORS``.
MLE_K = 20
# Points DSE uses at most (a seeded sample above): its cost is O(N^2 d + N^3).
DSE_MAX_N = 2000
# The default DSE bandwidth is this fraction of the median pairwise distance in the sample.
# Measured (N = 1000, Gaussian of std 3 in k of 64 dims, k = 1..64): DSE 3.4 -> 8.6, monotone
# in k and below log2 N = 9.97; a local scale (the median 10th-neighbour distance) made it fall
# with k (7.5 -> 5.1) instead, and the reference's fixed 10 gives ~0.1 on unit-norm embeddings.
DSE_SIGMA_FRACTION = 0.5
# BLAS threads for the dense linear algebra of core.geometry (moments, partition function, DSE
# eigenvalues, the whole scorecard). Measured on the 2-core machine while other processes kept
# the cores busy: OpenBLAS with 2 threads took 6-14 s for eigvalsh of a 2000 x 2000 matrix and
# 1.9 s for X.T @ X (100k x 384), one thread 0.5 s and 0.17 s; the whole 100k x 384 scorecard
# took 5-23 s with the default threads and 2.1-2.4 s with one (bench/bench_geometry.py). When
# the machine is idle one thread loses at most 2x on those steps. None leaves the default.
BLAS_THREADS: int | None = 1
# Each estimate from a metric's distances is this multiple of the estimate from the
# distances themselves: cosine distance = chord^2 / 2 on the unit sphere (module docstring).
_METRIC_POWER = {"l2": 1.0, "cosine": 2.0}
# A distance at most this fraction of the typical k-th neighbour distance (the median r_k over
# the points given) counts as zero, i.e. a duplicate: float32 gives identical vectors a cosine
# distance of up to a few 1e-6 (measured up to 3e-6 at d = 4096), not 0, and such a log ratio
# would swamp the other k - 1 terms.
_DUPLICATE_RTOL = 1e-4
# Negative distances down to this are rounding (1 - cos of a vector with itself); below it the
# "distances" are not a metric's (inner product) and LID is meaningless.
_NEGATIVE_TOL = 1e-5


def _distance_matrix(distances: Any, k: Any) -> tuple[np.ndarray, int]:
    """The first k columns of ``distances`` (or of a KnnGraph's) as float64, validated."""
    raw = getattr(distances, "distances", distances)  # a KnnGraph or an array
    try:
        D = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"neighbour distances must be a numeric array: {exc}") from exc
    if D.dtype == object or not np.issubdtype(D.dtype, np.number) or np.iscomplexobj(D):
        raise InvalidInputError(f"neighbour distances must be real numbers, got dtype {D.dtype}")
    if D.ndim != 2 or D.shape[0] == 0:
        raise InvalidInputError(
            f"neighbour distances must be a non-empty 2-D array (n points, neighbours), got "
            f"shape {D.shape}: pass graph.distances of a KnnGraph"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise InvalidInputError(f"k must be a whole number >= 2 (20 is usual), got {k!r}")
    if k > D.shape[1]:
        raise InvalidInputError(
            f"k = {k} but the distances hold only {D.shape[1]} neighbours per point: "
            f"lower k or use a graph built with at least {k} neighbours"
        )
    k = int(k)
    D = D[:, :k].astype(np.float64)
    if not np.isfinite(D).all():
        bad = int(np.argwhere(~np.isfinite(D))[0][0])
        raise InvalidInputError(f"neighbour distances contain NaN or infinity (first in row {bad})")
    if (D < -_NEGATIVE_TOL).any():
        bad = int(np.argwhere(D < -_NEGATIVE_TOL)[0][0])
        raise InvalidInputError(
            f"neighbour distances are negative (first in row {bad}): LID needs a true metric, "
            "so use a graph built with metric 'l2' or 'cosine', not 'ip'"
        )
    if (np.diff(D, axis=1) < 0).any():
        bad = int(np.argwhere(np.diff(D, axis=1) < 0)[0][0])
        raise InvalidInputError(
            f"neighbour distances must be sorted ascending along each row (row {bad} is not), "
            "as KnnGraph.distances are"
        )
    return np.maximum(D, 0.0), k


def limit_blas_threads() -> AbstractContextManager[Any]:
    """A context in which BLAS/LAPACK use at most :data:`BLAS_THREADS` threads."""
    if BLAS_THREADS is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    # threadpoolctl is untyped here; threadpool_limits is a context manager
    return cast(
        AbstractContextManager[Any], threadpool_limits(limits=BLAS_THREADS, user_api="blas")
    )


def _metric_power(distances: Any, metric: Any) -> float:
    """The factor from estimates on ``distances`` to estimates on Euclidean distances."""
    if metric is None:
        metric = getattr(distances, "metric", "l2")  # a KnnGraph knows its metric
    if metric == "ip":
        raise InvalidInputError(
            "intrinsic dimension needs true distances, and an inner-product graph's "
            "1 - <a, b> is not one (it can be negative): use a graph built with metric "
            "'cosine' (or 'l2')"
        )
    if metric not in _METRIC_POWER:
        raise InvalidInputError(f"unknown metric {metric!r}: use 'l2' or 'cosine'")
    return _METRIC_POWER[metric]


def _log_ratio_sums(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the number ``m`` of positive distances and ``sum log(r_i / r_k)`` over them.

    ``D`` is a validated (n, k) float64 matrix from :func:`_distance_matrix`. A distance
    counts as zero (a duplicate) when it is at most ``_DUPLICATE_RTOL`` times the median
    positive ``r_k``; zero terms are left out of the sum. Rows whose ``r_k`` is zero get
    ``m = 0`` and a sum of 0.
    """
    r_k = D[:, -1:]
    scale = np.median(r_k[r_k > 0]) if (r_k > 0).any() else np.inf
    positive = D > _DUPLICATE_RTOL * scale  # all False on rows whose r_k is a duplicate's
    used = positive.sum(axis=1)
    ratio = np.divide(D, r_k, out=np.ones_like(D), where=positive)
    log_sum = np.log(ratio).sum(axis=1)  # <= 0; unused terms have ratio 1, log 0
    return used, log_sum


def local_intrinsic_dimension(
    distances: Any, *, k: int = LID_K, metric: str | None = None
) -> np.ndarray:
    """Local intrinsic dimensionality of every point, the MLE of Amsaleg et al. (KDD 2015).

    ``LID(x) = -[(1/k) sum_{i=1..k} ln(r_i / r_k)]^{-1}``, where ``r_i`` is the distance from
    ``x`` to its i-th nearest other point (docs/science.md §7.3). The divisor is k, not k - 1, so
    the value is k/(k-1) times the Levina–Bickel pointwise MLE.

    Duplicates are handled per point: zero distances are left out of the sum, and the divisor
    is the number of distances used, ``m``:
    ``LID(x) = -m / sum ln(r_i / r_k)`` over the positive ``r_i``. The result is NaN (the
    estimate is undefined) where ``r_k`` is zero (k or more duplicates), where fewer than 2
    positive distances remain, or where every positive distance equals ``r_k`` (the estimate
    is unbounded). No warning is raised; :func:`lid_summary` counts the NaNs.

    A distance counts as zero when it is at most ``1e-4`` times the median ``r_k`` of the
    points given: float32 arithmetic gives identical vectors a cosine distance of about
    ``1e-7`` to ``3e-6`` rather than 0, and one such term would swamp the sum.

    Parameters
    ----------
    distances : float ndarray of shape (n, m) with m >= k, or a KnnGraph
        Distances to each point's nearest other points, sorted ascending along each row,
        self excluded: ``graph.distances`` or ``graph.head(k)`` (the graph itself works too).
        Only the first ``k`` columns are read. They must be true metric distances
        (``l2`` or ``cosine``); tiny negative rounding errors are taken as 0.
    k : int
        Neighbours per point, 2 <= k <= m. 20 is usual (docs/science.md §0.1).
    metric : {"l2", "cosine"}, optional
        What the distances are. Default: a KnnGraph's own metric, else ``"l2"`` (distances
        taken as Euclidean). For ``"cosine"`` (``1 - cos``) the estimate is computed on the
        chord distance ``sqrt(2 (1 - cos))``, which doubles it (module docstring).

    Returns
    -------
    lid : float64 ndarray of shape (n,)
        LID per point, positive, NaN where undefined (see above).

    Raises
    ------
    InvalidInputError
        If ``distances`` is not a 2-D finite array, is not sorted, holds negative values, or
        has fewer than ``k`` columns; or if the metric is ``"ip"``.
    """
    power = _metric_power(distances, metric)
    D, k = _distance_matrix(distances, k)
    used, log_sum = _log_ratio_sums(D)
    lid = np.full(D.shape[0], np.nan)
    defined = (used >= 2) & (log_sum < 0.0)
    lid[defined] = -power * used[defined] / log_sum[defined]
    return lid


def lid_summary(lid: Any) -> dict[str, float | int]:
    """Distribution of per-point LID values, NaNs (undefined points) left out.

    Parameters
    ----------
    lid : float ndarray of shape (n,)
        From :func:`local_intrinsic_dimension`.

    Returns
    -------
    dict
        ``mean``, ``median``, ``q10``, ``q90`` (floats, NaN if no point is defined) and
        ``n_undefined`` (int, the number of NaN values).
    """
    arr = np.asarray(lid)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu" or np.isinf(arr).any():
        raise InvalidInputError(
            "lid must be a 1-D array of finite per-point values (NaN where undefined), as "
            f"local_intrinsic_dimension returns; got {arr.dtype} {arr.shape}"
        )
    arr = arr.astype(np.float64, copy=False)
    defined = arr[~np.isnan(arr)]
    if defined.size == 0:
        mean = median = q10 = q90 = float("nan")
    else:
        mean = float(defined.mean())
        q10, median, q90 = (float(v) for v in np.quantile(defined, [0.1, 0.5, 0.9]))
    return {
        "mean": mean,
        "median": median,
        "q10": q10,
        "q90": q90,
        "n_undefined": int(arr.size - defined.size),
    }


# -- duplicates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Duplicates:
    """Rows of a matrix that are exact copies of an earlier row.

    Attributes
    ----------
    n_duplicates : int
        Rows equal to an earlier row (a vector present 3 times counts 2).
    rows : int64 ndarray of shape (n_duplicates,)
        Those rows, ascending. The first copy of each vector is not listed.
    n_groups : int
        Distinct vectors that occur more than once.
    """

    n_duplicates: int
    rows: np.ndarray
    n_groups: int


# Rows hashed per block: the uint64 temporary is rows x d x 8 bytes.
_HASH_BLOCK = 4096


def find_duplicates(X: Any) -> Duplicates:
    """Find the rows of ``X`` that repeat an earlier row exactly.

    Rows are compared by value bit for bit (``-0.0`` counts as ``0.0``): a 64-bit hash of each
    row finds the candidates in one linear pass, and the candidates are then compared in full,
    so hash collisions cannot produce false duplicates. Cost O(n d), about 0.1 s for
    100,000 x 384.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)

    Returns
    -------
    Duplicates

    Raises
    ------
    InvalidInputError
        If ``X`` is not a finite numeric 2-D array.
    """
    X = check_vectors(X)
    n, d = X.shape
    coef = np.random.default_rng(0x5EED).integers(1, 2**63, size=d, dtype=np.uint64)
    coef |= np.uint64(1)  # odd multipliers: every bit of every word reaches the hash
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _HASH_BLOCK):
        block = X[start : start + _HASH_BLOCK] + np.float32(0.0)  # -0.0 + 0.0 = +0.0
        words = block.view(np.uint32).astype(np.uint64)
        hashes[start : start + _HASH_BLOCK] = (words * coef).sum(axis=1)  # wraps mod 2^64
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    if candidates.size == 0:
        return Duplicates(0, np.empty(0, dtype=np.int64), 0)
    rows = np.ascontiguousarray(X[candidates] + np.float32(0.0))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * d))).ravel()
    _, first, group, group_counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    # np.unique's first index is the first occurrence among the (ascending) candidates.
    is_copy = np.ones(candidates.size, dtype=bool)
    is_copy[first] = False
    dup_rows = candidates[is_copy].astype(np.int64)
    return Duplicates(int(dup_rows.size), dup_rows, int((group_counts > 1).sum()))


# -- TwoNN ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoNN:
    """The TwoNN intrinsic dimension (Facco et al. 2017) and the points of its fit.

    Attributes
    ----------
    dimension : float
        Slope of the least-squares line through the origin of ``neg_log_survival`` against
        ``log_mu`` (scikit-dimension's default ``method="linear"``). NaN if undefined.
    dimension_mle : float
        The censored maximum-likelihood estimate
        ``(m - 1) / (sum log mu_(i) + (N - m) log mu_(m))`` over the same points
        (scikit-dimension's ``method="mle"``). NaN if undefined.
    log_mu : float64 ndarray of shape (m,)
        ``log(r2 / r1)`` of the points kept, ascending (Euclidean/chord distances).
    neg_log_survival : float64 ndarray of shape (m,)
        ``-log(1 - i / N)``, i = 1..m, the empirical ``-log(1 - F(mu))``.
    n_used : int
        ``m``: points in the fit, ``int(N (1 - discard_fraction))``.
    n_dropped : int
        Points left out because their nearest neighbour is at distance 0 (duplicates).
    n_discarded : int
        Points with the largest ratios left out of the fit (``N - m``).
    """

    dimension: float
    dimension_mle: float
    log_mu: np.ndarray
    neg_log_survival: np.ndarray
    n_used: int
    n_dropped: int
    n_discarded: int = 0


def twonn(distances: Any, *, discard_fraction: float = 0.1, metric: str | None = None) -> TwoNN:
    """TwoNN intrinsic dimension from each point's two nearest-neighbour distances.

    ``mu = r2 / r1`` follows a Pareto(1, d) law on a locally uniform d-dimensional manifold,
    so ``-log(1 - F(mu)) = d log(mu)``. As scikit-dimension 0.5.0 ``TwoNN()`` (docs/science.md
    §7.1): the N ratios are sorted, the largest ``discard_fraction`` of them discarded, the
    empirical ``F`` is ``i / N``, and the line is fitted through the origin. On the same
    distances the result equals ``skdim.id.TwoNN(dist=True)`` (and ``method="mle"`` for
    ``dimension_mle``).

    Points whose nearest neighbour is at distance 0 (duplicates; a distance at most 1e-4
    times the median ``r2`` counts as 0, see :func:`local_intrinsic_dimension`) have no
    ratio and are dropped, as scikit-dimension drops them, but without a warning: the count
    is ``n_dropped``.

    Parameters
    ----------
    distances : float ndarray of shape (n, m) with m >= 2, or a KnnGraph
        Sorted distances to each point's nearest other points (``graph.distances``); only
        the first two columns are read.
    discard_fraction : float
        Fraction of the largest ratios left out of the fit, in [0, 1). The paper's 0.1.
        With 0 the last point (``F = 1``) has an infinite ordinate and is left out of the
        linear fit only.
    metric : {"l2", "cosine"}, optional
        As in :func:`local_intrinsic_dimension`: default from a KnnGraph, else ``"l2"``.

    Returns
    -------
    TwoNN
        NaN dimensions (and empty arrays) when fewer than 2 points remain.

    Raises
    ------
    InvalidInputError
        On distances that are not a sorted, finite, non-negative 2-D array with 2 columns,
        a ``discard_fraction`` outside [0, 1), or the ``ip`` metric.
    """
    power = _metric_power(distances, metric)
    if isinstance(discard_fraction, bool) or not isinstance(
        discard_fraction, (int, float, np.integer, np.floating)
    ):
        raise InvalidInputError(f"discard_fraction must be a number, got {discard_fraction!r}")
    if not 0.0 <= float(discard_fraction) < 1.0:
        raise InvalidInputError(
            f"discard_fraction must be in [0, 1) (0.1 is usual), got {discard_fraction}"
        )
    D, _ = _distance_matrix(distances, 2)
    r1, r2 = D[:, 0], D[:, 1]
    scale = np.median(r2[r2 > 0]) if (r2 > 0).any() else np.inf
    keep = r1 > _DUPLICATE_RTOL * scale
    n_dropped = int(D.shape[0] - keep.sum())
    mu = np.sort(r2[keep] / r1[keep])
    N = int(mu.size)
    n_keep = int(N * (1 - discard_fraction))  # scikit-dimension's expression, bit for bit
    empty = np.empty(0, dtype=np.float64)
    if n_keep < 2:
        return TwoNN(float("nan"), float("nan"), empty, empty, 0, n_dropped, N)
    x = np.log(mu[:n_keep]) / power  # log of the ratio of Euclidean (chord) distances
    F = np.arange(1, n_keep + 1) / N
    y = np.full(n_keep, np.inf)  # F = 1 (only with discard_fraction 0): left out of the fit
    below = F < 1.0
    y[below] = -np.log(1.0 - F[below])
    fit = np.isfinite(y)
    sxx = float(np.dot(x[fit], x[fit]))
    dimension = float(np.dot(x[fit], y[fit]) / sxx) if sxx > 0 else float("nan")
    denominator = float(x.sum() + (N - n_keep) * x[-1])
    dimension_mle = (n_keep - 1) / denominator if denominator > 0 else float("nan")
    return TwoNN(dimension, float(dimension_mle), x, y, n_keep, n_dropped, N - n_keep)


# -- Levina–Bickel MLE ----------------------------------------------------------------------


@dataclass(frozen=True)
class MLEDimension:
    """The Levina–Bickel maximum-likelihood intrinsic dimension, pointwise and aggregated.

    Attributes
    ----------
    dimension : float
        Aggregate of the defined pointwise values (harmonic mean by default). NaN if none.
    pointwise : float64 ndarray of shape (n,)
        ``(m - 1) / sum_j log(r_k / r_j)`` per point over its ``m`` positive distances
        (``m = k`` without duplicates); NaN where undefined.
    k : int
        Neighbours per point.
    n_undefined : int
        Points whose estimate is undefined (NaN).
    """

    dimension: float
    pointwise: np.ndarray
    k: int
    n_undefined: int


_AGGREGATES = ("harmonic", "mean", "median")


def mle_dimension(
    distances: Any, *, k: int = MLE_K, aggregate: str = "harmonic", metric: str | None = None
) -> MLEDimension:
    """Levina–Bickel MLE of the intrinsic dimension, as scikit-dimension 0.5.0 ``MLE()``.

    Pointwise ``m_k(x) = (k - 1) / sum_{j=1..k} log(r_k / r_j)`` over the first ``k``
    neighbour distances (the j = k term is 0), aggregated with the harmonic mean
    ``1 / mean(1 / m_k(x))`` (MacKay–Ghahramani; skdim's ``comb="mle"``), the mean or the
    median (docs/science.md §7.2). On duplicate-free distances it equals
    ``skdim.id.MLE().fit(X, precomputed_knn_arrays=(distances, indices))``.

    Duplicates: skdim takes ``log(r_k / 0) = inf``, so a single duplicate pair gives two
    pointwise zeros and a harmonic mean of exactly 0. Here zero distances are left out (the
    rule of :func:`local_intrinsic_dimension`, which this shares) and the divisor becomes
    ``m - 1`` for the ``m`` positive distances, so ``m_k = LID * (m - 1) / m``. The pointwise
    value is NaN where fewer than 2 positive distances remain, where ``r_k`` is 0, or where
    all positive distances equal ``r_k``; NaNs are left out of the aggregate.

    Parameters
    ----------
    distances : float ndarray of shape (n, m) with m >= k, or a KnnGraph
        Sorted neighbour distances, self excluded (``graph.distances``).
    k : int
        Neighbours per point, 2 <= k <= m. skdim's default is 20.
    aggregate : {"harmonic", "mean", "median"}
    metric : {"l2", "cosine"}, optional
        As in :func:`local_intrinsic_dimension`: default from a KnnGraph, else ``"l2"``.

    Returns
    -------
    MLEDimension

    Raises
    ------
    InvalidInputError
        On bad distances (see :func:`local_intrinsic_dimension`), an unknown ``aggregate``,
        or the ``ip`` metric.
    """
    if aggregate not in _AGGREGATES:
        raise InvalidInputError(
            f"unknown aggregate {aggregate!r}: use one of {', '.join(_AGGREGATES)}"
        )
    power = _metric_power(distances, metric)
    D, k = _distance_matrix(distances, k)
    used, log_sum = _log_ratio_sums(D)
    pointwise = np.full(D.shape[0], np.nan)
    defined = (used >= 2) & (log_sum < 0.0)
    pointwise[defined] = -power * (used[defined] - 1) / log_sum[defined]
    values = pointwise[defined]
    if values.size == 0:
        dimension = float("nan")
    elif aggregate == "harmonic":
        dimension = float(1.0 / np.mean(1.0 / values))
    elif aggregate == "mean":
        dimension = float(np.mean(values))
    else:
        dimension = float(np.median(values))
    return MLEDimension(dimension, pointwise, k, int(D.shape[0] - values.size))


# -- diffusion spectral entropy -------------------------------------------------------------


def sample_rows(n: int, max_n: int, seed: int) -> np.ndarray:
    """Rows 0..n-1 if n <= max_n, else a seeded sorted sample of max_n of them."""
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def _squared_distances(P: np.ndarray) -> np.ndarray:
    sq: np.ndarray = np.einsum("ij,ij->i", P, P)
    D2: np.ndarray = sq[:, None] + sq[None, :] - 2.0 * (P @ P.T)
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    return D2


def dse_default_sigma(X: Any, *, max_n: int = DSE_MAX_N, seed: int = 0) -> float:
    """The default DSE bandwidth: half the median pairwise distance.

    Computed among the same seeded sample of at most ``max_n`` rows that
    :func:`diffusion_spectral_entropy` uses. It follows the data's own scale, so DSE does not
    change when the vectors are scaled: the reference's fixed ``sigma = 10`` is far too wide
    for unit-norm embeddings (distances at most 2) and gives a DSE near 0 whatever their
    shape. Half the median keeps DSE monotone in the intrinsic dimension of Gaussian data and
    below its ceiling log2 N (see ``DSE_SIGMA_FRACTION``).

    Returns
    -------
    float
        Positive; NaN if all sampled points are identical.
    """
    X = check_vectors(X)
    max_n = check_int(max_n, "max_n", low=2)
    P = X[sample_rows(X.shape[0], max_n, seed)].astype(np.float64)
    return _default_sigma(_squared_distances(P))


def _default_sigma(D2: np.ndarray) -> float:
    pairs = D2[np.triu_indices(D2.shape[0], 1)]
    median = float(np.sqrt(np.median(pairs))) if pairs.size else 0.0
    return DSE_SIGMA_FRACTION * median if median > 0 else float("nan")


def diffusion_spectral_entropy(
    X: Any,
    *,
    sigma: float | None = None,
    t: int = 1,
    max_n: int = DSE_MAX_N,
    seed: int = 0,
) -> float:
    """Diffusion spectral entropy (Liao, Liu et al. 2023), exact eigenvalues.

    As the reference ``dse.diffusion_spectral_entropy`` (docs/science.md §7.5): Gaussian kernel
    ``G = exp(-D^2 / (2 sigma^2))`` on Euclidean distances, symmetric degree normalisation
    ``K = Deg^{-1/2} G Deg^{-1/2}`` (the spectrum of the diffusion operator
    ``P = Deg^{-1} G``), ``lambda = |eig(K)|^t``, ``p = lambda / sum(lambda) + eps`` and
    ``DSE = -sum p log2 p``. The reference's factor ``1 / (sigma sqrt(2 pi))`` cancels in
    ``K`` and is left out. DSE lies in [0, log2 N]; as ``t`` grows it tends to
    log2(number of connected components).

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    sigma : float, optional
        Kernel bandwidth, in the units of ``X``. Default: :func:`dse_default_sigma` (half
        the median pairwise distance within the sample), because DSE depends strongly on
        sigma relative to the data scale. The reference's default is a fixed 10.
    t : int
        Diffusion time, >= 1 (the reference's default 1).
    max_n : int
        At most this many rows are used: a seeded uniform sample without replacement when
        ``n > max_n``. Cost O(max_n^2 d + max_n^3): about 0.5 s at 2,000.
    seed : int
        Seeds the sample.

    Returns
    -------
    float
        DSE in bits; NaN when the default sigma is undefined (all sampled points identical:
        the median pairwise distance is 0).

    Raises
    ------
    InvalidInputError
        On bad ``X``, a non-positive ``sigma``, ``t < 1`` or ``max_n < 2``.
    """
    X = check_vectors(X)
    t = check_int(t, "t", low=1)
    max_n = check_int(max_n, "max_n", low=2)
    if sigma is not None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
            raise InvalidInputError(f"sigma must be a positive number, got {sigma!r}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise InvalidInputError(f"sigma must be a positive number, got {sigma!r}")
    P = X[sample_rows(X.shape[0], max_n, seed)].astype(np.float64)
    return dse_of_sample(P, sigma=sigma, t=t)[0]


def dse_of_sample(P: np.ndarray, *, sigma: float | None, t: int) -> tuple[float, float]:
    """DSE of all rows of ``P`` (float64 (m, d)) and the sigma used (default if None)."""
    D2 = _squared_distances(P)
    if sigma is None:
        sigma = _default_sigma(D2)
        if not np.isfinite(sigma):
            return float("nan"), float("nan")
    G = np.exp(D2 / (-2.0 * float(sigma) ** 2))
    inv_sqrt_deg = 1.0 / np.sqrt(G.sum(axis=1))  # >= 1 per row: the diagonal is exp(0)
    K = G * inv_sqrt_deg[:, None] * inv_sqrt_deg[None, :]
    with limit_blas_threads():
        eigenvalues = np.abs(np.linalg.eigvalsh(K)) ** t
    p = eigenvalues / eigenvalues.sum() + np.finfo(float).eps
    return float(-np.sum(p * np.log2(p))), float(sigma)
