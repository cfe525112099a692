"""Dimension reducers: PCA-k, Gaussian random projection, Matryoshka truncation, DCT-k.

Each keeps ``k`` float32 numbers per vector (``4k`` bytes, docs/science.md §4.1) and scores the
float query in the reduced space:

* **PCA-k** scores the *uncentred* query against the projected centred database,
  ``(P q)·(P(x − μ)) + q·μ`` = ``q · x̂`` with the reconstruction ``x̂ = μ + Pᵀ P(x − μ)``.
  Centring the query as well drops a per-item term and costs recall (docs/science.md §4.2:
  0.675 instead of 0.833 at k = 192). For ``l2`` it is minus ``‖q − x̂‖²``.
* **Random projection** (Gaussian, N(0, 1/k) entries, seeded) and **truncation** (first k
  coordinates) re-normalise the reduced vectors for ``cosine`` (docs/science.md §4.2: recall@10
  0.667 with, 0.390 without at k = 192).
* **DCT-k** keeps the first k coefficients of the orthonormal DCT-II (``scipy.fft.dct``,
  ``norm="ortho"``); not re-normalised unless asked (the reference table does not). With
  k = d it is lossless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft

from embscope.core.compression.base import (
    Codec,
    dense_pair_similarity,
    dense_similarity,
)
from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_int, normalise_rows

__all__ = [
    "DCTCodec",
    "PCACodec",
    "RandomProjectionCodec",
    "TruncationCodec",
    "principal_basis",
]


def principal_basis(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top-``k`` principal directions and all covariance eigenvalues of ``X``.

    Accumulated in float64 blocks (memory O(d²)). Each direction's sign is fixed so that its
    largest-magnitude loading is positive, so the same data always give the same basis.

    Returns
    -------
    mean : float64 ndarray of shape (d,)
    basis : float64 ndarray of shape (d, k)
        Orthonormal columns, by decreasing variance.
    eigenvalues : float64 ndarray of shape (d,)
        Descending, clipped at 0.
    """
    n, d = X.shape
    total = np.zeros(d)
    gram = np.zeros((d, d))
    for start in range(0, n, 8192):
        block = X[start : start + 8192].astype(np.float64)
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / n
    cov = gram - n * np.outer(mean, mean)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 0.0) / max(n - 1, 1), vectors[:, order]
    top = vectors[:, :k]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(k)])
    return mean, top * np.where(signs == 0, 1.0, signs), values


def subspace_query(
    Q: np.ndarray, mean: np.ndarray, components: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Queries against vectors kept as coordinates ``(x - mean) @ components``: the projected
    queries and a per-query constant, so that similarity to a stored row's reconstruction is
    ``sim(proj, coords) - const`` (l2) or ``+ const`` (dot products)."""
    if metric == "l2":
        centred = Q - mean
        proj = centred @ components
        # The part of q - mean outside the kept subspace: a per-query constant that makes
        # the score the distance to the reconstruction.
        rest = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", proj, proj)
        return proj, np.maximum(rest, 0.0)
    # The uncentred query: (P q).(P(x - mean)) + q.mean = q . reconstruction.
    return Q @ components, Q @ mean


class _Reducer(Codec):
    """Codes are ``k`` float32 numbers per vector (array ``"y"``)."""

    reduces_dimension = True
    renormalise_cosine = False

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = check_int(k, "the number of kept dimensions", low=1)

    def _check_data(self, n: int, d: int) -> None:
        if self.k > d:
            raise InvalidInputError(
                f"{self.spec} keeps {self.k} dimensions but the vectors have only {d}: "
                f"choose k <= {d}"
            )

    def _bytes_per_vector(self, d: int) -> int:
        return 4 * self.k

    def compressed_vectors(self, codes: Any) -> np.ndarray:
        self._check_codes(codes)
        return np.ascontiguousarray(codes.arrays["y"], dtype=np.float32)


class _ReducedSpaceReducer(_Reducer):
    """A reducer whose codes are ``_reduce(x)`` and whose queries are reduced the same way
    (random projection, truncation, DCT); PCA scores with a per-query constant instead."""

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _renormalise(self) -> bool:
        return self.renormalise_cosine and self._metric == "cosine"

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": self._prepare(X)}

    def _prepare(self, Q: np.ndarray) -> np.ndarray:
        Y = np.ascontiguousarray(self._reduce(Q), dtype=np.float32)
        return normalise_rows(Y) if self._renormalise() else Y

    def _score(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_similarity(state, arrays["y"], self._metric)

    def _pairs(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_pair_similarity(state, arrays["y"], self._metric)


class PCACodec(_Reducer):
    """PCA-k: project the centred database on its top ``k`` principal directions.

    Attributes (after fit)
    ----------------------
    mean : float32 ndarray (d,)
    components : float32 ndarray (d, k)
    explained_variance : float
        Fraction of the total variance the ``k`` directions keep.
    """

    family = "pca"

    @property
    def spec(self) -> str:
        return f"pca:{self.k}"

    def _shared_bytes(self, d: int) -> int:
        return 4 * d * self.k + 4 * d  # projection matrix and mean

    def _check_data(self, n: int, d: int) -> None:
        super()._check_data(n, d)
        if n < 2:
            raise InvalidInputError("PCA needs at least 2 vectors to fit")

    def _fit(self, X: np.ndarray) -> None:
        mean, basis, values = principal_basis(X, self.k)
        self.mean = mean.astype(np.float32)
        self.components = np.ascontiguousarray(basis, dtype=np.float32)
        total = values.sum()
        self.explained_variance = float(values[: self.k].sum() / total) if total > 0 else 1.0

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": np.ascontiguousarray((X - self.mean) @ self.components, dtype=np.float32)}

    def _prepare(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return subspace_query(Q, self.mean, self.components, self._require_metric())

    def _score(
        self, state: tuple[np.ndarray, np.ndarray], arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        proj, const = state
        S = dense_similarity(proj, arrays["y"], self._metric)
        scores: np.ndarray = S - const[:, None] if self._metric == "l2" else S + const[:, None]
        return scores

    def _pairs(
        self, state: tuple[np.ndarray, np.ndarray], arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        proj, const = state
        s = dense_pair_similarity(proj, arrays["y"], self._metric)
        scores: np.ndarray = s - const if self._metric == "l2" else s + const
        return scores

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        decoded: np.ndarray = arrays["y"] @ self.components.T + self.mean
        return decoded


class RandomProjectionCodec(_ReducedSpaceReducer):
    """Gaussian random projection to ``k`` dims (entries N(0, 1/k), seeded).

    Re-normalised for ``cosine``. There is no decoder (the projection is not invertible);
    :meth:`compressed_vectors` gives the projected vectors.
    """

    family = "rp"
    renormalise_cosine = True
    can_decode = False

    def __init__(self, k: int, *, seed: int = 0) -> None:
        super().__init__(k)
        self.seed = check_int(seed, "seed", low=0)

    @property
    def spec(self) -> str:
        return f"rp:{self.k}"

    def _shared_bytes(self, d: int) -> int:
        return 4 * d * self.k  # the matrix (it could be regenerated from the seed)

    def _no_decoder_reason(self) -> str:
        return "a random projection is not invertible"

    def _fit(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        d = X.shape[1]
        self.matrix = (rng.standard_normal((d, self.k)) / np.sqrt(self.k)).astype(np.float32)

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        projected: np.ndarray = X @ self.matrix
        return projected


class TruncationCodec(_ReducedSpaceReducer):
    """Matryoshka truncation: the first ``k`` coordinates, re-normalised for ``cosine``.

    Only meaningful for models trained with Matryoshka representation learning; for others
    it is an arbitrary coordinate subset. Decoding pads with zeros.
    """

    family = "truncate"
    renormalise_cosine = True

    @property
    def spec(self) -> str:
        return f"truncate:{self.k}"

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        return X[:, : self.k]

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        y = arrays["y"]
        out = np.zeros((y.shape[0], self._require_fit()), dtype=np.float32)
        out[:, : self.k] = y
        return out


class DCTCodec(_ReducedSpaceReducer):
    """DCT-k: the first ``k`` coefficients of the orthonormal DCT-II of each vector.

    Embedding coordinates have no natural order, so this is one fixed orthogonal projection
    (expect about random-projection quality, never better than PCA). Decoding (inverse DCT of
    the zero-padded coefficients) is exact at k = d.

    Parameters
    ----------
    k : int
    renormalise : bool
        Re-normalise the coefficients for ``cosine`` (the reference table does not).
    """

    family = "dct"

    def __init__(self, k: int, *, renormalise: bool = False) -> None:
        super().__init__(k)
        self.renormalise_cosine = bool(renormalise)

    @property
    def spec(self) -> str:
        return f"dct:{self.k}" + (":renorm" if self.renormalise_cosine else "")

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        coefficients = np.asarray(scipy.fft.dct(X, type=2, norm="ortho", axis=1))
        return coefficients[:, : self.k]

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        y = arrays["y"]
        full = np.zeros((y.shape[0], self._require_fit()), dtype=np.float32)
        full[:, : self.k] = y
        return np.asarray(scipy.fft.idct(full, type=2, norm="ortho", axis=1), dtype=np.float32)
