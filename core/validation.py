"""Checks every public core function runs on its input, written once.

Each check returns the value in the form the code uses (an ``int``, a float32 matrix) or
raises :class:`core.errors.InvalidInputError` with a message that says what was wrong and
how to fix it. The metric helpers at the end give the vectors as a metric sees them.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar, cast, get_args

import numpy as np

from embscope.core.errors import InvalidInputError

__all__ = [
    "guess_metric",
    "metric_record",
    "MAX_SEED",
    "METRICS",
    "Metric",
    "check_int",
    "check_k",
    "check_matrix",
    "check_metric",
    "check_number",
    "check_seed",
    "check_vectors",
    "normalise_rows",
    "prepare_for_metric",
]

Metric = Literal["cosine", "l2", "ip"]
METRICS: tuple[Metric, ...] = get_args(Metric)
# What each metric is for, said when an unknown one is given.
_METRIC_HINT = "cosine for sentence embeddings, l2 for raw features, ip for inner product"

C = TypeVar("C")
# The largest seed: every random generator embscope seeds (numpy, umap-learn's RandomState,
# hnswlib) takes it, and so does a page's number box.
MAX_SEED = 2**31 - 1


def check_metric(metric: Any) -> Metric:
    """``metric`` if it is one of :data:`METRICS`, else InvalidInputError."""
    if metric not in METRICS:
        raise InvalidInputError(
            f"unknown metric {metric!r}: use one of {', '.join(METRICS)} ({_METRIC_HINT})"
        )
    return cast(Metric, str(metric))


def guess_metric(X: Any) -> tuple[Metric, str]:
    """The metric a set of vectors most likely wants, and why (shown at upload):

    * up to 3 dimensions: ``l2``, coordinates (a point cloud, a map), where lengths and
      directions both matter;
    * rows of length 1: ``cosine`` (normalised embeddings; l2 would rank the same);
    * 4 to 15 dimensions: ``l2``, features whose distances mean something as they are;
    * more: ``cosine``, as embedding models are trained and compared.
    """
    arr = np.asarray(X)
    d = int(arr.shape[1]) if arr.ndim == 2 else 0
    if d <= 3:
        return "l2", f"{d}-D coordinates: straight-line distances"
    sample = arr[:: max(1, arr.shape[0] // 10_000)].astype(np.float64)
    norms = np.linalg.norm(sample, axis=1)
    if norms.size and np.all(np.abs(norms - 1.0) < 1e-3):
        return "cosine", "every vector has length 1 (normalised embeddings)"
    if d < 16:
        return "l2", f"{d} dimensions: features whose distances mean something as they are"
    return "cosine", f"{d}-dimensional embedding-like vectors: cosine, as models compare them"


def metric_record(X: Any, metric: str | None) -> dict[str, str]:
    """What a new dataset's catalog info records about its metric: ``metric`` (checked) if
    chosen, else :func:`guess_metric`'s, with the reason (``metric_reason``)."""
    if metric is not None:
        return {"metric": check_metric(metric), "metric_reason": "chosen at upload"}
    guessed, reason = guess_metric(X)
    return {"metric": guessed, "metric_reason": reason}


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound optional).

    Booleans and floats are refused, even 3.0: a parameter that counts things is a whole
    number, and a float there is usually a mistake.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInputError(f"{name} must be {_bounds(low, high)}, got {value}")
    return int(value)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        if low_open and low is not None:
            bound = f"above {_num(low)}" + (
                f" and at most {_num(high)}" if high is not None else ""
            )
        else:
            bound = _bounds(low, high)
        raise InvalidInputError(f"{name} must be {bound}, got {value!r}")
    return number


def _num(x: float) -> str:
    """A bound as a person writes it: whole numbers in full (2147483647, not 2.14748e+09)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    if low is not None:
        return f"at least {_num(low)}"
    assert high is not None
    return f"at most {_num(high)}"


def check_seed(seed: Any) -> int:
    """A seed: a whole number from 0 to :data:`MAX_SEED`."""
    return check_int(seed, "seed", low=0, high=MAX_SEED)


def check_k(k: Any, available: int) -> int:
    """``k`` as an int in [1, available]; raise InvalidInputError otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be a whole number, got {k!r}")
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    if k > available:
        raise InvalidInputError(
            f"k = {k} asks for more neighbours than the {available} other items available"
        )
    return int(k)


def check_matrix(
    X: Any,
    *,
    name: str = "vectors",
    dtype: type[np.floating[Any]] = np.float32,
    one_row: bool = True,
) -> np.ndarray:
    """``X`` as a C-contiguous 2-D finite array of ``dtype``; raise InvalidInputError for
    anything else (text, complex numbers, NaN, an empty array). With ``one_row`` a 1-D array
    is taken as one row; without, it is refused."""
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a numeric array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InvalidInputError(f"{name} must be real numbers, got complex values")
    if arr.ndim == 1 and one_row:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (n, d), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape})")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        bad = int(np.argwhere(~np.isfinite(out))[0][0])
        raise InvalidInputError(
            f"{name} contain NaN or infinite values (first in row {bad})"
            + (", or values too large for float32" if dtype is np.float32 else "")
        )
    return out


def check_vectors(X: Any, *, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    """A C-contiguous float32 2-D finite copy-or-view of ``X``; raise InvalidInputError otherwise.

    A 1-D array is taken as one vector; ``dim`` requires that many columns.
    """
    out = check_matrix(X, name=name, dtype=np.float32)
    if dim is not None and out.shape[1] != dim:
        raise InvalidInputError(
            f"{name}: dimension {out.shape[1]}, but the index holds {dim}-dimensional vectors"
        )
    return out


# -- the vectors as a metric sees them ------------------------------------------------------


def normalise_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero (hnswlib does the same)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    out = np.zeros_like(X)
    np.divide(X, norms, out=out, where=norms > 0)
    return out.astype(np.float32, copy=False)


def prepare_for_metric(X: np.ndarray, metric: str) -> np.ndarray:
    """The rows the BLAS search works on: unit-normalised for cosine, as they are otherwise."""
    return normalise_rows(X) if metric == "cosine" else X
