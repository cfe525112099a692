"""Linear CKA of two representations of the same items, debiased, and its chance level.

* **Linear CKA** (Kornblith, Norouzi, Lee, Hinton, ICML 2019): the similarity of the two
  centred linear kernels ``K = A A^T`` and ``L = B B^T``, in [0, 1], invariant to rotations,
  isotropic scalings and shifts of either space, defined for different dimensions. The
  usual (biased) estimate has a positive floor that grows as n shrinks towards the
  dimensions: two unrelated Gaussian spaces of 768 and 384 dimensions score about
  ``sqrt(d_a d_b / ((n + d_a)(n + d_b)))``, 0.72 at n = 200 and 0.35 at n = 1,000.
* **Debiased linear CKA**: the same ratio with the unbiased HSIC estimator of Song, Smola,
  Gretton, Bedo, Borgwardt (JMLR 2012), as in Kornblith et al. 2019 and Nguyen, Raghu,
  Kornblith ("Do wide and deep networks learn the same things?", ICLR 2021)::

      HSIC_1(K, L) = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))
      CKA_debiased = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))

  with ``K~``, ``L~`` the kernels with zeroed diagonals. Unrelated spaces score about 0 at
  any n (slightly negative values happen); it needs n >= 4.
* **Chance level** (:func:`linear_cka_null`): the 95th percentile of biased CKA over 100
  seeded shuffles of B's rows against A, i.e. what CKA reads when the pairing of items
  carries no information. A CKA below it says nothing about the two spaces.

Everything is computed in feature space (``d x d`` matrices, never ``n x n`` kernels above
small n): after centring the columns, ``K 1 = 0``, so with ``k = diag(K)``, ``l = diag(L)``
(the rows' squared norms) ``n(n-3) HSIC_1(K, L) = ||A^T B||^2 - n/(n-2) k.l
+ tr K tr L / ((n-1)(n-2))``, and a shuffle P of B's rows changes only ``||A^T P B||^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.progress import ProgressFn, check_cancel
from embscope.core.validation import check_int, check_matrix, check_seed

__all__ = [
    "CKA_NULL_QUANTILE",
    "CKA_PERMUTATIONS",
    "DEBIASED_MIN_ITEMS",
    "CkaScores",
    "linear_cka",
    "linear_cka_null",
    "linear_cka_scores",
]

# The chance level: this quantile of CKA over this many seeded shuffles of B's rows. Each
# shuffle costs one (d_a x n) @ (n x d_b) product in float32: 100 of them took 1.6-4 s at
# 10,000 items x 768 vs 384 dimensions on one thread of a busy 2-core machine (the cost
# grows with n * d_a * d_b).
CKA_PERMUTATIONS = 100
CKA_NULL_QUANTILE = 0.95
# The unbiased HSIC estimator divides by n(n - 3) and (n - 1)(n - 2).
DEBIASED_MIN_ITEMS = 4
# A debiased self-similarity this small next to the biased one counts as zero: the space's
# spread is carried by too few items for the unbiased estimate to be positive.
_DEGENERATE = 1e-10
# What the permutations measure, in words (the progress message).
CHANCE_MESSAGE = "CKA of unrelated spaces (the chance level): items shuffled"


@dataclass(frozen=True)
class CkaScores:
    """Linear CKA of two representations, debiased, and its chance level.

    Attributes
    ----------
    cka : float
        Biased linear CKA, in [0, 1].
    debiased : float
        Debiased linear CKA, in [-1, 1] (about 0 for unrelated spaces); NaN when undefined
        (``note`` says why).
    null : float
        The chance level: the :data:`CKA_NULL_QUANTILE` quantile of biased CKA over
        ``permutations`` seeded shuffles of B's rows.
    permutations : int
    note : str
        Why ``debiased`` is NaN; empty when it is defined.
    """

    cka: float
    debiased: float
    null: float
    permutations: int
    note: str = ""


def _centred_unit(A: Any, B: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of A and B, columns centred, each of unit Frobenius norm."""
    A = np.array(check_matrix(A, name="A", dtype=np.float64, one_row=False))  # a copy
    B = np.array(check_matrix(B, name="B", dtype=np.float64, one_row=False))
    n = A.shape[0]
    if B.shape[0] != n:
        raise InvalidInputError(
            f"CKA needs the same items in the same order: A has {n} rows, B has {B.shape[0]}"
        )
    if n < 2:
        raise InvalidInputError("CKA needs at least 2 items")
    A -= A.mean(axis=0)
    B -= B.mean(axis=0)
    norm_a, norm_b = np.linalg.norm(A), np.linalg.norm(B)
    if norm_a == 0.0 or norm_b == 0.0:
        which = "A" if norm_a == 0.0 else "B"
        raise InvalidInputError(
            f"every item of {which} is the same point: CKA is undefined for a constant space"
        )
    # CKA ignores scale; unit Frobenius norms keep the fourth powers far from overflow.
    A /= norm_a
    B /= norm_b
    return A, B


def _products(A: np.ndarray, B: np.ndarray) -> tuple[float, float, float]:
    """``(||A^T B||^2, ||A^T A||^2, ||B^T B||^2)``, with the n x n kernels when n is smaller."""
    n, da, db = A.shape[0], A.shape[1], B.shape[1]
    if n * n * (da + db + 1) < n * (da * da + db * db + da * db):
        K, L = A @ A.T, B @ B.T
        return float(np.vdot(K, L)), float(np.vdot(K, K)), float(np.vdot(L, L))
    ab, aa, bb = A.T @ B, A.T @ A, B.T @ B
    return float(np.vdot(ab, ab)), float(np.vdot(aa, aa)), float(np.vdot(bb, bb))


def _biased(cross: float, self_a: float, self_b: float) -> float:
    return float(min(max(cross / np.sqrt(self_a * self_b), 0.0), 1.0))


def _debiased(
    A: np.ndarray, B: np.ndarray, cross: float, self_a: float, self_b: float
) -> tuple[float, str]:
    """Debiased CKA of centred A and B from their products, or (NaN, why)."""
    n = int(A.shape[0])
    if n < DEBIASED_MIN_ITEMS:
        return float("nan"), f"debiased CKA needs at least {DEBIASED_MIN_ITEMS} items, got {n}"
    sq_a, sq_b = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)  # diag(K), diag(L)

    def hsic(product: float, x: np.ndarray, y: np.ndarray) -> float:  # times n(n - 3)
        return product - n / (n - 2) * float(x @ y) + float(x.sum() * y.sum()) / ((n - 1) * (n - 2))

    ab, aa, bb = hsic(cross, sq_a, sq_b), hsic(self_a, sq_a, sq_a), hsic(self_b, sq_b, sq_b)
    for name, value, biased in (("A", aa, self_a), ("B", bb, self_b)):
        if not value > _DEGENERATE * biased:
            return float("nan"), (
                f"debiased CKA is undefined: the unbiased self-similarity of {name} is not "
                "positive (its spread rests on very few items, e.g. all but one at one point)"
            )
    return float(min(max(ab / np.sqrt(aa * bb), -1.0), 1.0)), ""


def linear_cka(A: Any, B: Any, *, debiased: bool = False) -> float:
    """Centred linear CKA of two representations of the same n items (Kornblith et al. 2019).

    ``CKA = ||A^T B||_F^2 / (||A^T A||_F ||B^T B||_F)`` after centring the columns, which
    equals ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with the linear kernels
    ``K = A A^T``, ``L = B B^T``. Computed in float64 in feature space (``d x d`` Grams), or
    with the ``n x n`` kernels when n is the smaller size. The inputs are not changed.

    Parameters
    ----------
    A : ndarray of shape (n, d_a)
    B : ndarray of shape (n, d_b)
        Row i of both is the same item; the dimensions may differ.
    debiased : bool
        False: the usual (biased) estimate. True: with the unbiased HSIC estimator (module
        docstring); needs n >= 4.

    Returns
    -------
    float
        Biased: in [0, 1]; 1 when B is A up to a rotation/reflection, an isotropic scaling
        and a shift. Independent Gaussian matrices give about
        ``sqrt(d_a d_b / ((n + d_a)(n + d_b)))``, so CKA has a positive floor when n is not
        much larger than the dimensions. Debiased: in [-1, 1], about 0 for independent
        matrices at any n; NaN when a space's unbiased self-similarity is not positive
        (its spread rests on one or two items: see :func:`linear_cka_scores` for the reason).

    Raises
    ------
    InvalidInputError
        Different numbers of rows, fewer than 2 rows (4 debiased), NaN/inf, or a space whose
        points all coincide (CKA is undefined).
    """
    A, B = _centred_unit(A, B)
    products = _products(A, B)
    if not debiased:
        return _biased(*products)
    if A.shape[0] < DEBIASED_MIN_ITEMS:
        raise InvalidInputError(
            f"debiased CKA needs at least {DEBIASED_MIN_ITEMS} items, got {A.shape[0]}"
        )
    return _debiased(A, B, *products)[0]


def _null(
    A: np.ndarray,
    B: np.ndarray,
    self_a: float,
    self_b: float,
    *,
    permutations: int,
    quantile: float,
    seed: int,
    progress: ProgressFn | None,
) -> float:
    """The quantile of biased CKA of centred unit A against shuffles of B's rows."""
    n = A.shape[0]
    a32, b32 = A.astype(np.float32), B.astype(np.float32)
    scale = np.sqrt(self_a * self_b)
    rng = np.random.default_rng(seed)
    values = np.empty(permutations)
    # One BLAS thread: on a busy 2-core machine the threaded sgemm of these (d_a x d_b)
    # products ran up to 6x slower (core.geometry.intrinsic.BLAS_THREADS).
    with limit_blas_threads():
        for i in range(permutations):
            check_cancel(progress, i / permutations, CHANCE_MESSAGE, "the CKA chance level")
            cross = a32.T @ b32[rng.permutation(n)]
            squares = float(np.einsum("ij,ij->", cross, cross, dtype=np.float64))
            values[i] = min(max(squares / scale, 0.0), 1.0)
    check_cancel(progress, 1.0, CHANCE_MESSAGE, "the CKA chance level")
    return float(np.quantile(values, quantile))


def _check_null_args(permutations: Any, quantile: Any, seed: Any) -> tuple[int, float, int]:
    permutations = check_int(permutations, "permutations", low=1, high=100_000)
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, (int, float, np.number))
        or not (0.0 <= float(quantile) <= 1.0)
    ):
        raise InvalidInputError(f"quantile must be a number from 0 to 1, got {quantile!r}")
    return permutations, float(quantile), check_seed(seed)


def linear_cka_null(
    A: Any,
    B: Any,
    *,
    permutations: int = CKA_PERMUTATIONS,
    quantile: float = CKA_NULL_QUANTILE,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> float:
    """The chance level of linear CKA: a quantile of CKA with B's rows shuffled against A.

    Shuffling breaks the pairing of items and keeps each space's own geometry, so the
    values are what biased CKA reads for these two spaces by chance at this n. The
    permutations are ``rng.permutation(n)`` drawn in turn from
    ``rng = np.random.default_rng(seed)``; row i of A meets row ``perm[i]`` of B. Centred
    once; only ``||A^T P B||^2`` changes per shuffle (computed in float32, about 1e-6
    relative).

    Parameters
    ----------
    A : ndarray of shape (n, d_a)
    B : ndarray of shape (n, d_b)
    permutations : int
        Shuffles, 1 to 100,000.
    quantile : float
        In [0, 1]; ``np.quantile``'s linear interpolation.
    seed : int
    progress : callable(fraction, message) -> bool, optional
        Called before every shuffle; returning True cancels
        (:class:`core.errors.OperationCancelled`).

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    InvalidInputError
        As :func:`linear_cka`, or a bad count, quantile or seed.
    """
    permutations, quantile, seed = _check_null_args(permutations, quantile, seed)
    A, B = _centred_unit(A, B)
    _, self_a, self_b = _products(A, B)
    return _null(A, B, self_a, self_b, permutations=permutations, quantile=quantile,
                 seed=seed, progress=progress)  # fmt: skip


def linear_cka_scores(
    A: Any,
    B: Any,
    *,
    permutations: int = CKA_PERMUTATIONS,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> CkaScores:
    """Biased and debiased linear CKA and the chance level, centring the inputs once.

    The same numbers as ``linear_cka(A, B)``, ``linear_cka(A, B, debiased=True)`` and
    ``linear_cka_null(A, B, permutations=permutations, seed=seed)``, except that an
    undefined debiased CKA (fewer than 4 items, or a degenerate space) is NaN with the
    reason in ``note`` instead of an error.

    Raises
    ------
    InvalidInputError
        As :func:`linear_cka` (biased).
    """
    permutations, _, seed = _check_null_args(permutations, CKA_NULL_QUANTILE, seed)
    A, B = _centred_unit(A, B)
    cross, self_a, self_b = _products(A, B)
    debiased, note = _debiased(A, B, cross, self_a, self_b)
    null = _null(A, B, self_a, self_b, permutations=permutations, quantile=CKA_NULL_QUANTILE,
                 seed=seed, progress=progress)  # fmt: skip
    return CkaScores(_biased(cross, self_a, self_b), debiased, null, permutations, note)
