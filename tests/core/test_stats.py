"""core/stats.bootstrap_ci: the one interval embscope shows, against scipy's bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap

from embscope.core.errors import InvalidInputError
from embscope.core.stats import bootstrap_ci, ci_json, format_ci


def test_matches_scipy_percentile_bootstrap():
    # Per-query recall@10 of 300 queries: values in {0, 0.1, ..., 1}, mean about 0.88.
    rng = np.random.default_rng(0)
    recall = rng.binomial(10, 0.88, size=300) / 10
    ours = bootstrap_ci(recall, seed=1, resamples=10_000)
    ref = bootstrap(
        (recall,), np.mean, method="percentile", n_resamples=10_000, random_state=2
    ).confidence_interval
    assert ours[0] == pytest.approx(ref.low, abs=0.003)
    assert ours[1] == pytest.approx(ref.high, abs=0.003)
    # The normal approximation agrees too: mean ± 1.96 sd / sqrt(m).
    half = 1.96 * recall.std(ddof=1) / np.sqrt(recall.size)
    assert (ours[1] - ours[0]) / 2 == pytest.approx(half, rel=0.08)


def test_seeded_nan_dropped_and_degenerate_cases():
    x = np.random.default_rng(3).random(50)
    assert bootstrap_ci(x, seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x, seed=4) != bootstrap_ci(x, seed=5)
    assert bootstrap_ci(np.r_[x, np.nan], seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci(np.ones(20)) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    assert ci_json((np.nan, 0.5)) == [None, 0.5]


def test_coverage_of_a_known_mean():
    # 95 % intervals from 200 samples of Bernoulli(0.3) hold 0.3 about 95 times in 100.
    rng = np.random.default_rng(7)
    held = sum(
        lo <= 0.3 <= hi
        for lo, hi in (
            bootstrap_ci(rng.random(200) < 0.3, seed=i, resamples=500) for i in range(200)
        )
    )
    assert 180 <= held <= 198, held


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resamples": 10}, "resamples"),
        ({"resamples": 1.5}, "resamples"),
        ({"level": 1.0}, "level"),
    ],
)
def test_refuses_bad_settings(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        bootstrap_ci([0.1, 0.2], **kwargs)


def test_format_ci():
    assert format_ci(0.877, (0.861, 0.893)) == "0.877 ± 0.016"
    assert format_ci(0.99, (0.95, 1.0)) == "0.990 (0.950–1.000)"
    assert format_ci(float("nan"), (0.1, 0.2)) == "–"


def test_finite_population_correction():
    # A sample of m from N, the mean over all N wanted: the interval shrinks by
    # sqrt((N - m) / (N - 1)) about the sample mean, to nothing when every unit was drawn.
    x = np.random.default_rng(11).random(400)
    lo, hi = bootstrap_ci(x, seed=2)
    flo, fhi = bootstrap_ci(x, seed=2, population=500)
    shrink = np.sqrt(100 / 499)
    assert fhi - flo == pytest.approx((hi - lo) * shrink)
    assert (x.mean() - flo) == pytest.approx((x.mean() - lo) * shrink)
    assert bootstrap_ci(x, seed=2, population=400) == (pytest.approx(x.mean()),) * 2
    assert bootstrap_ci(x, seed=2, population=10**9)[1] == pytest.approx(hi)
    with pytest.raises(InvalidInputError, match="population"):
        bootstrap_ci(x, population=100)
