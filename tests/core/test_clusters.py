"""Clusters: Leiden on the shared graph, keyword labels, the stored kind and its bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from embscope.core import demo
from embscope.core.clusters import (
    CLUSTERINGS,
    cluster_keywords,
    cluster_request,
    get_or_cluster,
    guess_text_column,
    leiden_clusters,
)
from embscope.core.errors import InvalidInputError
from embscope.core.index import exact_knn
from embscope.core.store import Store
from tests.helpers import make_parsed

WORDS = {
    0: "socket connection port host network address",
    1: "date time datetime timezone calendar seconds",
    2: "logger logging handler level message record",
}


def _blobs(n: int = 600, d: int = 16, centres: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, centres, n)
    X = rng.standard_normal((n, d)) + 6.0 * rng.standard_normal((centres, d))[truth]
    return X.astype(np.float32), truth


def _store(tmp_path, X, meta=None, **info) -> Store:
    store = Store(tmp_path / "c.duckdb")
    store.add_dataset(make_parsed(X, meta), name="points", info=info or None)
    return store


def _neighbours(X: np.ndarray, k: int = 15):
    idx, dist = exact_knn(X, X, k + 1, metric="l2")
    return idx[:, 1:], dist[:, 1:]


def test_leiden_finds_separated_blobs_deterministically():
    X, truth = _blobs()
    idx, dist = _neighbours(X)
    labels, sizes, quality = leiden_clusters(idx, dist, seed=3)
    assert adjusted_rand_score(truth, labels) > 0.99
    assert sizes.sum() == (labels >= 0).sum() == X.shape[0]
    assert np.all(np.diff(sizes) <= 0), "cluster ids run in decreasing size"
    assert np.array_equal(np.bincount(labels, minlength=sizes.size), sizes)
    assert 0.5 < quality < 1.0
    again, _, q2 = leiden_clusters(idx, dist, seed=3)
    assert np.array_equal(again, labels) and q2 == quality


def test_small_communities_become_noise():
    X, _ = _blobs(n=400)
    far = (X[:6] + 300.0).astype(np.float32)  # six points far from the rest, close together
    Y = np.vstack([X, far])
    idx, dist = _neighbours(Y, k=10)
    labels, sizes, _ = leiden_clusters(idx, dist, min_size=7)
    assert np.all(labels[-6:] == -1)
    assert (labels >= 0).sum() == sizes.sum()
    kept, _, _ = leiden_clusters(idx, dist, min_size=1)
    assert np.all(kept[-6:] >= 0) and np.unique(kept[-6:]).size == 1


def test_higher_resolution_finds_more_clusters():
    X, _ = _blobs(n=800, centres=3)
    idx, dist = _neighbours(X)
    few = leiden_clusters(idx, dist, resolution=0.2)[1].size
    many = leiden_clusters(idx, dist, resolution=5.0)[1].size
    assert many > few


def test_keywords_name_what_each_cluster_is_about():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], 50)
    filler = "the value returns object given".split()
    texts = []
    for c in labels:
        own = WORDS[int(c)].split() if c >= 0 else filler
        words = list(rng.choice(own, 3, replace=False)) + list(rng.choice(filler, 3))
        texts.append(" ".join(words))
    keywords = cluster_keywords(texts, labels, 3)
    for c in range(3):
        assert len(keywords[c]) >= 3
        assert set(keywords[c][:3]) <= set(WORDS[c].split()), (c, keywords[c])
    # No text, or nothing shared by two texts: no keywords, not an error.
    assert cluster_keywords([None] * 200, labels, 3) == ((), (), ())
    assert cluster_keywords([f"w{i}x" for i in range(200)], labels, 3) == ((), (), ())


def test_stdlib_demo_clusters_beat_kmeans_and_get_telling_keywords(tmp_path):
    data = demo.stdlib_docstrings()
    store = Store(tmp_path / "d.duckdb")
    store.add_dataset(make_parsed(data.vectors, data.metadata), name="docs", info=dict(data.info))
    result = get_or_cluster(store, "docs", seed=0)
    modules = data.metadata["module"].to_numpy()
    assert result.text_column == "text" and result.noise == 0
    assert 10 <= result.n_clusters <= 40
    ours = normalized_mutual_info_score(modules, result.labels)
    kmeans = KMeans(result.n_clusters, n_init=4, random_state=0).fit_predict(data.vectors)
    theirs = normalized_mutual_info_score(modules, kmeans)
    assert ours > theirs + 0.05, (ours, theirs)
    # The label's first word is in at least 20 % of most clusters' texts and at least twice
    # as common there as in the whole set.
    texts = data.metadata["text"].str.lower()
    telling = 0
    for c in range(result.n_clusters):
        word = result.keywords[c][0]
        inside = texts[result.labels == c].str.contains(word, regex=False).mean()
        overall = texts.str.contains(word, regex=False).mean()
        telling += inside >= 0.2 and inside >= 2 * overall
        assert result.names[c].startswith(word)
    assert telling >= 0.75 * result.n_clusters
    # Examples are members; centres are unit-norm means' directions of members.
    for c in range(result.n_clusters):
        rows = result.examples[c][result.examples[c] >= 0]
        assert rows.size == 3 and np.all(result.labels[rows] == c)
    store.close()


def test_stored_and_read_back_identical(tmp_path):
    X, _ = _blobs(n=300)
    meta = pd.DataFrame({"note": [WORDS[i % 3] for i in range(300)], "n": np.arange(300)})
    store = _store(tmp_path, X, meta, metric="l2")
    first = get_or_cluster(store, "points", seed=1)
    assert sorted(a.kind for a in store.list_artifacts()) == ["clusters", "knn_graph"]
    again = get_or_cluster(store, "points", seed=1)
    assert np.array_equal(first.labels, again.labels) and again.keywords == first.keywords
    assert again.names == first.names and again.seconds == first.seconds
    request = cluster_request(store, "points", seed=1)
    assert CLUSTERINGS.find(store, request) is not None
    assert first.metric == "l2" and first.text_column == "note"
    assert first.summary()[0] == {
        "cluster": 0, "size": int(first.sizes[0]), "label": first.names[0],
        "keywords": list(first.keywords[0]),
    }  # fmt: skip
    store.close()


def test_text_column_guess_and_bad_options(tmp_path):
    X, _ = _blobs(n=120)
    meta = pd.DataFrame(
        {
            "tag": ["a"] * 120,  # one word: not text
            "body": [WORDS[i % 3] for i in range(120)],
            "size": np.arange(120),
        }
    )
    store = _store(tmp_path, X, meta)
    info = store.get_dataset("points")
    assert guess_text_column(store, info) == "body"
    assert cluster_request(store, "points", text_column="tag").text_column == "tag"
    for column, message in (("size", "not text"), ("<b>nope</b>", "has no column")):
        with pytest.raises(InvalidInputError, match=message):
            cluster_request(store, "points", text_column=column)
    bad = (
        {"resolution": 0.0}, {"resolution": 11.0}, {"resolution": float("nan")},
        {"min_size": 0}, {"min_size": 100_001}, {"min_size": 2.5}, {"seed": -1},
        {"method": "kmeans"}, {"metric": "hamming"},
    )  # fmt: skip
    for options in bad:
        with pytest.raises(InvalidInputError):
            cluster_request(store, "points", **options)
    at_bounds = cluster_request(store, "points", resolution=10.0, min_size=100_000)
    assert at_bounds.resolution == 10.0 and at_bounds.min_size == 100_000
    everything_noise = get_or_cluster(store, "points", min_size=100_000)
    assert everything_noise.n_clusters == 0 and everything_noise.noise == 120
    store.close()


def test_no_text_column_gives_numbered_names(tmp_path):
    X, _ = _blobs(n=200)
    store = _store(tmp_path, X)
    result = get_or_cluster(store, "points")
    assert get_or_cluster(store, "points", seed=5, run=False) is None
    assert result.text_column is None and result.names[0] == "cluster 0"
    assert all(k == () for k in result.keywords)
    store.close()
