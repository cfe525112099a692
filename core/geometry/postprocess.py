"""Post-processing that makes an embedding space more isotropic (the "fix anisotropy" toggle).

Each function takes ``X: float32[n, d]`` and returns a new float32 ``(n, d)`` matrix; the
input is never modified. :data:`POSTPROCESSORS` maps their names to them for the page and the
CLI. Statistics (mean, covariance) are computed in float64 from ``X`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.isotropy import moments
from embscope.core.validation import check_vectors

__all__ = ["POSTPROCESSORS", "all_but_the_top", "mean_centre", "whiten"]


def _check(X: Any, what: str) -> np.ndarray:
    arr = check_vectors(X)
    if arr.shape[0] < 2:
        raise InvalidInputError(f"{what} needs at least 2 vectors, got {arr.shape[0]}")
    return arr


def _principal_axes(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, covariance eigenvalues (descending, >= 0) and eigenvectors (columns) of X."""
    m = moments(X)
    eigenvalues, vectors = np.linalg.eigh(m.covariance())
    return m.mean, np.maximum(eigenvalues[::-1], 0.0), vectors[:, ::-1]


def mean_centre(X: Any) -> np.ndarray:
    """Subtract the mean vector from every row.

    Removes the common direction that makes raw sentence embeddings anisotropic (average
    cosine 0.3-0.9); the average cosine of the result is near 0. IsoScore is unchanged (it is
    mean-invariant).

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)

    Returns
    -------
    float32 ndarray of shape (n, d)
    """
    arr = check_vectors(X)
    return np.asarray(arr - moments(arr).mean, dtype=np.float32)


def whiten(X: Any, *, eps: float = 1e-5) -> np.ndarray:
    """PCA whitening: centre, rotate onto the principal axes, scale each to unit variance.

    ``Y = (X - mean) V diag(1 / sqrt(lambda + eps * mean(lambda)))``, with ``V`` the
    eigenvectors of the covariance (descending variance ``lambda``). The columns of the
    result are the principal components, so its covariance is diagonal with entries
    ``lambda / (lambda + eps * mean(lambda))``: 1 up to ``eps`` wherever there is variance,
    and IsoScore close to 1. ``eps`` is relative to the average variance, so the result does
    not depend on the scale of ``X``, and directions with no variance (n <= d, or data in a
    subspace) stay at 0 instead of being blown up. Distances change: whitening equalises
    every direction, noise included.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d), n >= 2
    eps : float
        Regulariser, relative to the mean eigenvalue, >= 0.

    Returns
    -------
    float32 ndarray of shape (n, d)
        Column j is the j-th principal component, scaled.
    """
    arr = _check(X, "whitening")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"eps must be a number >= 0, got {eps!r}")
    if not (np.isfinite(eps) and eps >= 0):
        raise InvalidInputError(f"eps must be a number >= 0, got {eps!r}")
    mean, eigenvalues, vectors = _principal_axes(arr)
    floor = float(eps) * float(eigenvalues.mean())
    scale = np.zeros_like(eigenvalues)
    positive = eigenvalues + floor > 0
    scale[positive] = 1.0 / np.sqrt(eigenvalues[positive] + floor)
    return np.asarray((arr - mean) @ (vectors * scale), dtype=np.float32)


def default_n_components(d: int) -> int:
    """Mu & Viswanath's D ~ d / 100, at least 1: ``max(1, round(d / 100))``."""
    return max(1, int(round(d / 100)))


def all_but_the_top(X: Any, *, n_components: int | None = None) -> np.ndarray:
    """ "All-but-the-top" (Mu & Viswanath, ICLR 2018): centre, then remove the top D PCs.

    ``Y = Xc - (Xc U) U^T`` with ``Xc = X - mean`` and ``U`` the top ``D`` principal
    directions of ``Xc``. The few dominant directions that carry a common, mostly
    frequency-related component are removed, which raises IsoScore and brings the average
    cosine to 0 (docs/science.md §6.3).

    Parameters
    ----------
    X : float32 ndarray of shape (n, d), n >= 2
    n_components : int, optional
        ``D``, 0 <= D < d. Default ``max(1, round(d / 100))`` (4 for d = 384).

    Returns
    -------
    float32 ndarray of shape (n, d)
    """
    arr = _check(X, "all-but-the-top")
    d = arr.shape[1]
    if n_components is None:
        n_components = default_n_components(d)
    if (
        isinstance(n_components, bool)
        or not isinstance(n_components, (int, np.integer))
        or not 0 <= n_components < d
    ):
        raise InvalidInputError(
            f"n_components must be a whole number from 0 to {d - 1} (the dimension less one), "
            f"got {n_components!r}"
        )
    mean, _, vectors = _principal_axes(arr)
    centred = arr - mean
    top = vectors[:, : int(n_components)]
    return np.asarray(centred - (centred @ top) @ top.T, dtype=np.float32)


POSTPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean_centre": mean_centre,
    "whiten": whiten,
    "all_but_the_top": all_but_the_top,
}
