"""Demo datasets and generators: against scikit-learn, analytic geometry, and seeds."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from scipy import integrate

from embscope.core.demo import (
    GENERATORS,
    demo_datasets,
    digits,
    gaussian_mixture,
    stdlib_docstrings,
    swiss_roll,
    swiss_roll_arc_length,
)
from embscope.core.demo_store import load_demo_datasets, store_demo_dataset
from embscope.core.errors import InvalidInputError


def test_digits_is_sklearn_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    d = digits()
    assert d.vectors.shape == (1797, 64) and d.vectors.dtype == np.float32
    np.testing.assert_array_equal(d.vectors, ref.data.astype(np.float32))
    np.testing.assert_array_equal(d.metadata["label"].to_numpy(), ref.target)
    assert d.metadata["id"].is_unique


def test_stdlib_docstrings_are_real_embeddings_with_semantic_structure():
    d = stdlib_docstrings()
    X = d.vectors.astype(np.float64)
    assert 2000 <= X.shape[0] <= 5000 and X.shape[1] == 384
    assert np.abs(np.linalg.norm(X, axis=1) - 1).max() < 1e-2  # unit norm, float16 storage
    assert d.metadata["id"].is_unique and d.metadata["text"].str.len().min() >= 40
    assert d.info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    ids = list(d.metadata["id"])

    def v(name):
        return X[ids.index(name)]

    assert v("json.dumps") @ v("json.loads") > v("json.dumps") @ v("socket.create_connection") + 0.2
    # 10-NN module agreement: measured 0.557 against a chance level of 0.036.
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    nn = np.argsort(-S, axis=1)[:, :10]
    labels = d.metadata["module"].to_numpy()
    agreement = (labels[nn] == labels[:, None]).mean()
    counts = collections.Counter(labels)
    chance = sum((c / len(labels)) ** 2 for c in counts.values())
    assert agreement > 0.45 and agreement > 10 * chance


def test_gaussian_mixture_looks_like_sentence_embeddings():
    d = gaussian_mixture(2000, 384, seed=0)
    X = d.vectors.astype(np.float64)
    assert X.shape == (2000, 384) and d.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    n = len(X)
    s = X.sum(0)
    mean_cos = (s @ s - n) / (n * (n - 1))  # exact mean over pairs i != j
    assert mean_cos > 0.15  # measured 0.270
    labels = d.metadata["cluster"].to_numpy()
    S = X @ X.T
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None, :]
    assert S[same].mean() > S[other].mean() + 0.4  # measured 0.82 vs 0.22
    ev = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    assert ev[0] / ev.sum() > 5 / 384  # anisotropic: far above an isotropic 1/384


def test_generators_are_seeded():
    a, b, c = (gaussian_mixture(300, 32, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)
    r1, r2 = swiss_roll(300, seed=5), swiss_roll(300, seed=5)
    np.testing.assert_array_equal(r1.vectors, r2.vectors)
    assert set(GENERATORS) == {"gaussian-mixture", "swiss-roll"}


def test_swiss_roll_geodesic_metadata_matches_geometry():
    d = swiss_roll(500, seed=0)
    X = d.vectors.astype(np.float64)
    t = d.metadata["t"].to_numpy()
    np.testing.assert_allclose(X[:, 0], t * np.cos(t), atol=1e-4)
    np.testing.assert_allclose(X[:, 2], t * np.sin(t), atol=1e-4)
    np.testing.assert_allclose(X[:, 1], d.metadata["height"], atol=1e-4)
    # arc length formula against numerical integration of |d/dt (t cos t, t sin t)| = sqrt(1+t^2)
    for ti in t[:5]:
        num, _ = integrate.quad(lambda u: np.sqrt(1 + u * u), 0, ti)
        assert swiss_roll_arc_length(ti) == pytest.approx(num, rel=1e-9)
    # neighbouring points along the roll: geodesic ~ Euclidean for tiny separations
    u = np.column_stack([d.metadata["arc_length"], d.metadata["height"]])
    i, j = np.unravel_index(
        np.argmin(np.where(np.eye(500, dtype=bool), np.inf, ((X[:, None] - X[None]) ** 2).sum(-1))),
        (500, 500),
    )
    assert np.linalg.norm(u[i] - u[j]) == pytest.approx(np.linalg.norm(X[i] - X[j]), rel=0.05)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gaussian_mixture(1, 8, seed=0),
        lambda: gaussian_mixture(10, 0, seed=0),
        lambda: gaussian_mixture(10, 8, seed=-1),
        lambda: gaussian_mixture(10, 8, n_clusters=0, seed=0),
        lambda: gaussian_mixture(10.5, 8, seed=0),
        lambda: swiss_roll(1, seed=0),
        lambda: swiss_roll(10, noise=-1, seed=0),
    ],
)
def test_bad_arguments_are_clear_errors(call):
    with pytest.raises(InvalidInputError):
        call()


def test_demo_datasets_load_into_the_store_once(store):
    added = load_demo_datasets(store)
    names = [d.name for d in added]
    assert names == [d.name for d in demo_datasets()]
    assert "digits" in names and "stdlib docstrings (all-MiniLM-L6-v2)" in names
    assert load_demo_datasets(store) == []  # a second call adds nothing
    info = store.get_dataset("digits")
    assert (info.n, info.dim, info.id_column) == (1797, 64, "id")
    assert (
        store.get_dataset("stdlib docstrings (all-MiniLM-L6-v2)")
        .info["model"]
        .endswith("MiniLM-L6-v2")
    )
    with pytest.raises(InvalidInputError, match="already exists"):
        store_demo_dataset(store, digits())


def test_the_demo_with_its_map_lays_out_and_clusters_the_text_set(tmp_path, capsys):
    """`embscope demo --with-map` (what `make run` does): the text demo has a stored LargeVis
    layout and named clusters, so the first page shows a named map at once."""
    import json

    import embscope
    from tests.helpers import run_cli

    db = str(tmp_path / "demo.duckdb")
    code, out, err = run_cli(capsys, "--db", db, "demo", "--with-map", "--json")
    assert code == 0, err
    added = {d["name"]: d["dataset"] for d in json.loads(out)}
    with embscope.open(db) as opened:
        kinds = {(a.kind, a.dataset_id) for a in opened.store.list_artifacts()}
        docs = added["stdlib docstrings (all-MiniLM-L6-v2)"]
        assert {("projection", docs), ("clusters", docs)} <= kinds
        assert not {a for a in kinds if a[1] != docs}  # only the text set: a few seconds
        projection = opened.dataset(docs).projection("largevis")
        assert projection.quality["trustworthiness@10"] > 0.9
        clusters = opened.dataset(docs).clusters()
        assert clusters["reused"] and clusters["n_clusters"] >= 10
    # Again on a database that holds the demo: nothing added, nothing computed.
    code, out, _ = run_cli(capsys, "--db", db, "demo", "--if-empty", "--with-map")
    assert code == 0 and "already holds datasets" in out
