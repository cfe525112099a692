"""Intrinsic dimension estimators that read the shared k-NN graph (science.md §7).

Every estimator here takes neighbour distances from ``graph.head(k)`` of the one
:class:`core.graph.KnnGraph` (self excluded, rows sorted ascending, true distances); none of
them computes neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import InvalidInputError

__all__ = ["LID_K", "lid_summary", "local_intrinsic_dimension"]

# Neighbours per point for LID (science.md §0.1, §7.3).
LID_K = 20
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


def local_intrinsic_dimension(distances: Any, *, k: int = LID_K) -> np.ndarray:
    """Local intrinsic dimensionality of every point, the MLE of Amsaleg et al. (KDD 2015).

    ``LID(x) = -[(1/k) sum_{i=1..k} ln(r_i / r_k)]^{-1}``, where ``r_i`` is the distance from
    ``x`` to its i-th nearest other point (science.md §7.3). The divisor is k, not k - 1, so
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
        Neighbours per point, 2 <= k <= m. 20 is usual (science.md §0.1).

    Returns
    -------
    lid : float64 ndarray of shape (n,)
        LID per point, positive, NaN where undefined (see above).

    Raises
    ------
    InvalidInputError
        If ``distances`` is not a 2-D finite array, is not sorted, holds negative values, or
        has fewer than ``k`` columns.
    """
    D, k = _distance_matrix(distances, k)
    r_k = D[:, -1:]
    scale = np.median(r_k[r_k > 0]) if (r_k > 0).any() else np.inf
    positive = D > _DUPLICATE_RTOL * scale  # all False on rows whose r_k is a duplicate's
    used = positive.sum(axis=1)
    ratio = np.divide(D, r_k, out=np.ones_like(D), where=positive)
    log_sum = np.log(ratio).sum(axis=1)  # <= 0; unused terms have ratio 1, log 0
    lid = np.full(D.shape[0], np.nan)
    defined = (used >= 2) & (log_sum < 0.0)
    lid[defined] = -used[defined] / log_sum[defined]
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
