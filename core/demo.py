"""Bundled demo datasets and synthetic generators (numpy and pandas only).

* ``digits``: scikit-learn's handwritten digits (1,797 x 64, real, labelled), shipped inside
  scikit-learn, so nothing is downloaded.
* ``stdlib_docstrings``: first paragraphs of Python standard-library docstrings embedded with
  all-MiniLM-L6-v2, stored in ``assets/`` by ``assets/make_text_embeddings.py``.
* ``gaussian_mixture``: an anisotropic mixture that looks like sentence embeddings (a shared
  mean direction gives a positive mean cosine; a decaying spectrum; unit-norm rows).
* ``swiss_roll``: a 3-D Swiss roll whose metadata holds the true manifold coordinates, so
  geodesic distances are known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_int

__all__ = [
    "ASSETS",
    "GENERATORS",
    "DemoDataset",
    "demo_datasets",
    "digits",
    "gaussian_mixture",
    "stdlib_docstrings",
    "swiss_roll",
    "swiss_roll_arc_length",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
STDLIB_NPZ = ASSETS / "stdlib_docstrings_minilm.npz"
STDLIB_JSON = ASSETS / "stdlib_docstrings_minilm.json"


@dataclass(frozen=True)
class DemoDataset:
    """A dataset made in memory: vectors, metadata and where they came from."""

    name: str
    description: str
    vectors: np.ndarray  # float32 (n, d), C-contiguous
    metadata: pd.DataFrame  # n rows, RangeIndex
    id_column: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


def digits() -> DemoDataset:
    """scikit-learn's 8x8 handwritten digits: 1,797 x 64, pixel values 0-16, labels 0-9."""
    from sklearn.datasets import load_digits

    data = load_digits()
    n = data.data.shape[0]
    meta = pd.DataFrame(
        {"id": [f"digit-{i}" for i in range(n)], "label": data.target.astype(np.int64)}
    )
    return DemoDataset(
        name="digits",
        description="scikit-learn's handwritten digits (UCI optical recognition), 8x8 pixels",
        vectors=np.ascontiguousarray(data.data, dtype=np.float32),
        metadata=meta,
        id_column="id",
        info={"origin": "sklearn.datasets.load_digits", "label_column": "label", "metric": "l2"},
    )


def stdlib_docstrings() -> DemoDataset:
    """Python standard-library docstrings embedded with all-MiniLM-L6-v2 (384-D, unit norm).

    Metadata: ``id`` (qualified name), ``module`` (top-level module, the label) and ``text``.
    ``info`` records the model that made the vectors, so queries can be embedded the same way.

    Raises
    ------
    InvalidInputError
        The asset file is missing (regenerate it with ``assets/make_text_embeddings.py``).
    """
    if not STDLIB_NPZ.exists():
        raise InvalidInputError(
            f"{STDLIB_NPZ.name} is missing from {ASSETS}: regenerate it with "
            "assets/make_text_embeddings.py"
        )
    with np.load(STDLIB_NPZ, allow_pickle=False) as z:
        vectors = np.ascontiguousarray(z["vectors"], dtype=np.float32)
        meta = pd.DataFrame(
            {
                "id": z["ids"].astype(str),
                "module": z["modules"].astype(str),
                "text": z["texts"].astype(str),
            }
        )
    info = json.loads(STDLIB_JSON.read_text(encoding="utf-8")) if STDLIB_JSON.exists() else {}
    return DemoDataset(
        name="stdlib docstrings (all-MiniLM-L6-v2)",
        description="First paragraphs of Python standard-library docstrings, labelled by module, "
        "embedded with sentence-transformers/all-MiniLM-L6-v2",
        vectors=vectors,
        metadata=meta,
        id_column="id",
        info={**info, "label_column": "module", "text_column": "text"},
    )


def gaussian_mixture(
    n: int = 5000,
    dim: int = 384,
    n_clusters: int = 12,
    *,
    seed: int,
    mean_strength: float = 0.6,
    decay: float = 0.9,
) -> DemoDataset:
    """An anisotropic Gaussian mixture with unit-norm rows, shaped like sentence embeddings.

    Real sentence embeddings share a common mean direction (mean pairwise cosine well above
    0) and have a fast-decaying spectrum (few dominant directions). Each cluster centre is
    ``mean_strength * m + random`` for one shared unit direction ``m``; points add noise whose
    standard deviation decays as ``decay**(j / 8)`` over a random rotation of the axes.

    Parameters
    ----------
    n, dim, n_clusters : int
        Points, dimension and clusters.
    seed : int
        Random seed; the same seed gives the same data.
    mean_strength : float
        Weight of the shared direction (0 gives a mean cosine near 0).
    decay : float
        Spectral decay of the within-cluster noise, in (0, 1].

    Returns
    -------
    DemoDataset
        vectors float32 (n, dim); metadata ``cluster`` (int).
    """
    n = check_int(n, "n", low=2, high=10_000_000)
    dim = check_int(dim, "dim", low=2, high=65_536)
    n_clusters = check_int(n_clusters, "n_clusters", low=1, high=n)
    seed = check_int(seed, "seed", low=0)
    if not 0 < decay <= 1:
        raise InvalidInputError(f"decay must be in (0, 1], got {decay}")
    if mean_strength < 0:
        raise InvalidInputError(f"mean_strength must be >= 0, got {mean_strength}")
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(dim)
    shared /= np.linalg.norm(shared)
    centres = rng.standard_normal((n_clusters, dim)) / np.sqrt(dim)
    centres += mean_strength * shared
    labels = rng.integers(0, n_clusters, size=n)
    scales = 0.35 * decay ** (np.arange(dim) / 8.0) / np.sqrt(dim) * np.sqrt(dim / 16)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    noise = (rng.standard_normal((n, dim)) * scales) @ rotation.T
    X = centres[labels] + noise
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    meta = pd.DataFrame({"cluster": labels.astype(np.int64)})
    return DemoDataset(
        name=f"gaussian mixture {n}x{dim}",
        description=f"{n_clusters}-cluster anisotropic Gaussian mixture in {dim}-D with a shared "
        "mean direction, unit-norm rows (synthetic, sentence-embedding-like)",
        vectors=np.ascontiguousarray(X, dtype=np.float32),
        metadata=meta,
        info={
            "generator": "gaussian-mixture",
            "seed": seed,
            "n_clusters": n_clusters,
            "mean_strength": mean_strength,
            "decay": decay,
            "label_column": "cluster",
        },
    )


def swiss_roll_arc_length(t: np.ndarray) -> np.ndarray:
    """Arc length of the spiral (t cos t, t sin t) from 0 to t: (t*sqrt(1+t^2) + asinh t) / 2."""
    tt = np.asarray(t, dtype=np.float64)
    return 0.5 * (tt * np.sqrt(1.0 + tt * tt) + np.arcsinh(tt))


def swiss_roll(
    n: int = 2000, *, noise: float = 0.0, seed: int, height: float = 21.0
) -> DemoDataset:
    """A 3-D Swiss roll with its true manifold coordinates, as scikit-learn parameterises it.

    ``t ~ 1.5 pi (1 + 2 U)``, points ``(t cos t, h, t sin t)`` with ``h ~ U(0, height)``, plus
    optional Gaussian noise. The roll unrolls isometrically to ``(arc_length(t), h)``, so the
    geodesic distance between two points is the Euclidean distance between their
    ``(arc_length, height)`` metadata (exact when ``noise`` is 0).

    Returns
    -------
    DemoDataset
        vectors float32 (n, 3); metadata ``t``, ``height``, ``arc_length`` (float64).
    """
    n = check_int(n, "n", low=2, high=10_000_000)
    seed = check_int(seed, "seed", low=0)
    if noise < 0:
        raise InvalidInputError(f"noise must be >= 0, got {noise}")
    if height <= 0:
        raise InvalidInputError(f"height must be > 0, got {height}")
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    h = height * rng.random(n)
    X = np.column_stack([t * np.cos(t), h, t * np.sin(t)])
    if noise:
        X = X + noise * rng.standard_normal(X.shape)
    meta = pd.DataFrame({"t": t, "height": h, "arc_length": swiss_roll_arc_length(t)})
    return DemoDataset(
        name=f"swiss roll {n}",
        description="3-D Swiss roll; metadata holds the unrolled coordinates (arc_length, height), "
        "whose Euclidean distances are the true geodesic distances",
        vectors=np.ascontiguousarray(X, dtype=np.float32),
        metadata=meta,
        info={
            "generator": "swiss-roll",
            "seed": seed,
            "noise": noise,
            "geodesic_columns": ["arc_length", "height"],
            "label_column": "t",
            "metric": "l2",
        },
    )


GENERATORS: dict[str, Callable[..., DemoDataset]] = {
    "gaussian-mixture": gaussian_mixture,
    "swiss-roll": swiss_roll,
}


def demo_datasets() -> list[DemoDataset]:
    """What ``embscope demo`` loads: digits, stdlib docstrings (if bundled), a mixture, a roll."""
    out = [digits()]
    if STDLIB_NPZ.exists():
        out.append(stdlib_docstrings())
    out.append(gaussian_mixture(5000, 384, seed=0))
    out.append(swiss_roll(2000, seed=0))
    return out
