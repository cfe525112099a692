"""PCA: the instant baseline projection (and the initialisation of the others)."""

from __future__ import annotations

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_vectors

__all__ = ["pca_layout"]


def pca_layout(X: np.ndarray, *, dims: int = 2) -> np.ndarray:
    """Project the rows of ``X`` on their first ``dims`` principal components.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    dims : {2, 3}

    Returns
    -------
    float32 ndarray of shape (n, dims)
        Centred coordinates. Each axis's sign is fixed so that its largest-magnitude loading
        is positive, so the same data always gives the same picture.
    """
    X = check_vectors(X)
    if dims not in (2, 3):
        raise InvalidInputError(f"a projection has 2 or 3 dimensions, got {dims!r}")
    n, d = X.shape
    if n < 2:
        raise InvalidInputError("a projection needs at least 2 points")
    centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    # Eigenvectors of the d x d covariance: cheap for the n >> d of embeddings.
    cov = centred.T @ centred
    values, vectors = np.linalg.eigh(cov)
    top = vectors[:, np.argsort(values)[::-1][: min(dims, d)]]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    coords = centred @ (top * np.where(signs == 0, 1.0, signs))
    if coords.shape[1] < dims:  # fewer dimensions than axes: pad with zeros
        coords = np.hstack([coords, np.zeros((n, dims - coords.shape[1]))])
    return np.asarray(coords, dtype=np.float32)
