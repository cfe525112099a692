"""PCA layout agrees with scikit-learn up to the sign of each axis."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from embscope.core.errors import InvalidInputError
from embscope.core.projections.pca import pca_layout


@pytest.mark.parametrize("dims", [2, 3])
def test_matches_sklearn_up_to_sign(dims):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((500, 20)) * np.linspace(5, 0.1, 20)).astype(np.float32)
    ours = pca_layout(X, dims=dims)
    ref = PCA(n_components=dims).fit_transform(X)
    for j in range(dims):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], atol=1e-3, rtol=1e-3)
    assert ours.dtype == np.float32 and ours.shape == (500, dims)
    np.testing.assert_array_equal(pca_layout(X, dims=dims), ours)  # deterministic


def test_small_and_bad_inputs():
    assert pca_layout(np.eye(3, 2, dtype=np.float32), dims=3).shape == (3, 3)
    with pytest.raises(InvalidInputError):
        pca_layout(np.zeros((5, 3), np.float32), dims=4)
    with pytest.raises(InvalidInputError):
        pca_layout(np.zeros((1, 3), np.float32))
