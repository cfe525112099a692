"""Uncertainty of a mean over sampled units: one seeded percentile bootstrap for every score.

Recall, neighbour preservation and the like are means over queries (or sampled points). The
neighbours of one query are correlated, so the unit of resampling is the query, never the
single neighbour (a Wilson interval over k·n trials would be far too narrow). Every interval
embscope shows or prints comes from :func:`bootstrap_ci`, so they are all made the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CI_LEVEL",
    "bootstrap_ci",
    "ci_json",
    "finite_or_none",
    "format_ci",
]

BOOTSTRAP_RESAMPLES = 2_000
CI_LEVEL = 0.95
# Resamples are drawn in blocks so memory stays bounded for many units.
_BLOCK_CELLS = 4_000_000


def bootstrap_ci(
    values: Any,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = CI_LEVEL,
    population: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per unit).

    Parameters
    ----------
    values : array-like of shape (m,)
        One number per unit (e.g. recall@k of each query); NaN entries are dropped.
    seed : int
        Seeds the resampling, so the same values always give the same interval.
    resamples : int
        Bootstrap resamples, 100 to 100,000.
    level : float
        Coverage, in (0, 1).
    population : int, optional
        When the units are a sample drawn without replacement from a finite set of
        ``population`` units (the points of one dataset) and the quantity of interest is the
        mean over that set: the interval is shrunk about the sample mean by the finite
        population correction sqrt((N - m) / (N - 1)) (0 when every unit was drawn). Leave
        it out when the units stand for an unbounded supply (queries).

    Returns
    -------
    (lo, hi) : tuple of float
        NaN, NaN when no value is defined; (v, v) for a single value or constant values.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)):
        raise InvalidInputError(f"resamples must be a whole number, got {resamples!r}")
    if not 100 <= resamples <= 100_000:
        raise InvalidInputError(f"resamples must be between 100 and 100000, got {resamples}")
    if not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise InvalidInputError(f"level must be between 0 and 1, got {level!r}")
    x = x[~np.isnan(x)]
    m = x.shape[0]
    if m == 0:
        return float("nan"), float("nan")
    if m == 1 or np.ptp(x) == 0.0:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(int(resamples))
    block = max(1, _BLOCK_CELLS // m)
    for start in range(0, int(resamples), block):
        stop = min(int(resamples), start + block)
        picks = rng.integers(0, m, size=(stop - start, m))
        means[start:stop] = x[picks].mean(axis=1)
    tail = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    if population is not None:
        total = int(population)
        if total < m:
            raise InvalidInputError(f"population = {population} is below the {m} values given")
        shrink = np.sqrt((total - m) / (total - 1)) if total > 1 else 0.0
        centre = float(x.mean())
        lo, hi = centre - (centre - lo) * shrink, centre + (hi - centre) * shrink
    return float(lo), float(hi)


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float for ``--json``, or None when it is missing, NaN or infinite
    (strict JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def ci_json(interval: tuple[float, float]) -> list[float | None]:
    """``[lo, hi]`` for ``--json`` (None for an undefined end)."""
    return [finite_or_none(v) for v in interval]


def format_ci(value: float, interval: tuple[float, float], digits: int = 3) -> str:
    """``0.877 ± 0.012`` (half the interval's width), or ``0.877 (0.861–0.890)`` when the
    interval is lopsided by more than a third of its width."""
    lo, hi = interval
    if np.isnan(value):
        return "–"
    if np.isnan(lo) or np.isnan(hi):
        return f"{value:.{digits}f}"
    half = (hi - lo) / 2.0
    if abs((value - lo) - (hi - value)) > (hi - lo) / 3.0:
        return f"{value:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"
    return f"{value:.{digits}f} ± {half:.{digits}f}"
