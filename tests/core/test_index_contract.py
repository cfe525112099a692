"""One contract suite for every NeighbourIndex backend (openTSNE's KNNIndexTestMixin is the model).

Each backend class below only says how to make and reload its index and whether it is
approximate; every test in :class:`IndexContract` runs against all of them.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from embscope.core.errors import InvalidInputError
from embscope.core.index import (
    ExactIndex,
    HnswIndex,
    NeighbourIndex,
    exact_knn,
    load_index,
    make_index,
)
from embscope.core.index_base import sidecar_path
from tests.helpers import assert_durable_rename, record_syncs

SK_METRIC = {"cosine": "cosine", "l2": "euclidean"}


def _data(n=600, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d)) * 3
    X = centres[rng.integers(0, 6, n)] + rng.standard_normal((n, d))
    return X.astype(np.float32)


def _recall(a, b):
    return np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)])


class IndexContract:
    """Tests every backend must pass. Subclasses define ``make`` and ``approximate``."""

    approximate = False
    min_recall = 0.95

    def make(self, metric: str, tmp_path) -> NeighbourIndex:
        raise NotImplementedError

    def reload(self, index: NeighbourIndex, tmp_path) -> NeighbourIndex:
        path = index.save(tmp_path / f"index.{index.backend}")
        return load_index(index.backend, path)

    @pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
    def test_shapes_dtypes_and_sorting(self, metric, tmp_path):
        X = _data()
        index = self.make(metric, tmp_path).build(X)
        assert isinstance(index, NeighbourIndex)
        assert len(index) == X.shape[0] and index.metric == metric and index.dim == X.shape[1]
        idx, dist = index.query(X[:20], 7)
        assert idx.shape == dist.shape == (20, 7)
        assert idx.dtype == np.int64 and dist.dtype == np.float32
        assert np.all(np.diff(dist, axis=1) >= -1e-6), "rows must be sorted by distance"
        assert ((idx >= 0) & (idx < X.shape[0])).all()
        assert all(len(set(row)) == 7 for row in idx)

    @pytest.mark.parametrize("metric", ["cosine", "l2"])
    def test_true_distances_and_neighbours_match_sklearn(self, metric, tmp_path):
        X = _data()
        index = self.make(metric, tmp_path).build(X)
        Q = _data(n=30, seed=1)
        idx, dist = index.query(Q, 10)
        nn = NearestNeighbors(n_neighbors=10, metric=SK_METRIC[metric], algorithm="brute").fit(X)
        ref_d, ref_i = nn.kneighbors(Q)
        if self.approximate:
            assert _recall(idx, ref_i) >= self.min_recall
        else:
            np.testing.assert_array_equal(idx, ref_i)
        # Whatever was returned, its distances are the true ones (not squared L2).
        if metric == "l2":
            true = np.linalg.norm(X[idx] - Q[:, None, :], axis=2)
        else:
            Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
            Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
            true = 1.0 - np.einsum("mkd,md->mk", Xn[idx], Qn)
        np.testing.assert_allclose(dist, true, atol=2e-5, rtol=1e-4)

    def test_inner_product_distance_is_one_minus_dot(self, tmp_path):
        X = _data()
        index = self.make("ip", tmp_path).build(X)
        Q = X[:5] * 0.5
        idx, dist = index.query(Q, 5)
        np.testing.assert_allclose(dist, 1.0 - np.einsum("mkd,md->mk", X[idx], Q), rtol=1e-4)
        assert np.all(np.diff(dist, axis=1) >= -1e-5)

    @pytest.mark.parametrize("metric", ["cosine", "l2"])
    def test_self_excluded_by_label_duplicates_kept(self, metric, tmp_path):
        X = _data(n=300)
        X[10] = X[3]  # an identical duplicate of row 3
        index = self.make(metric, tmp_path).build(X)
        rows = np.array([3, 10, 50])
        idx, dist = index.query(X[rows], 5, exclude=rows)
        for r, row in zip(rows, idx, strict=True):
            assert r not in row
        assert idx[0, 0] == 10 and idx[1, 0] == 3, "the duplicate is a neighbour at distance 0"
        assert dist[0, 0] == pytest.approx(0.0, abs=1e-5)

    def test_exclude_absent_label_keeps_k(self, tmp_path):
        X = _data(n=200)
        index = self.make("l2", tmp_path).build(X)
        far = X[:2] + 100.0
        idx, _ = index.query(far, 4, exclude=np.array([199, 198]))
        assert idx.shape == (2, 4)

    @pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
    def test_save_load_round_trip(self, metric, tmp_path):
        X = _data()
        index = self.make(metric, tmp_path).build(X)
        before = index.query(X[:25], 6)
        again = self.reload(index, tmp_path)
        assert len(again) == len(index) and again.metric == metric and again.dim == index.dim
        after = again.query(X[:25], 6)
        np.testing.assert_array_equal(before[0], after[0])
        # a few float32 ulps: Milvus computes a fresh collection's distances (growing
        # segments) and a reloaded one's (sealed) in another order (ip ~ 280: 1 ulp = 3e-5)
        np.testing.assert_allclose(before[1], after[1], rtol=1e-6, atol=1e-6)
        stats = again.stats()
        assert stats["backend"] == index.backend and stats["n"] == len(X)

    def test_save_is_durable(self, tmp_path, monkeypatch):
        """Each file save() writes is synced to the disk before it is renamed into place, and
        its folder after: a power loss cannot leave a renamed but empty index or sidecar."""
        X = _data(n=200)
        index = self.make("l2", tmp_path).build(X)
        folder = tmp_path / "saved"
        folder.mkdir()
        events = record_syncs(monkeypatch)
        path = index.save(folder / f"index.{index.backend}")
        monkeypatch.undo()
        for target in (path, sidecar_path(path)):
            assert_durable_rename(events, target)
        assert len(self.reload(index, folder)) == len(X)

    def test_add_appends_with_labels(self, tmp_path):
        X = _data(n=400)
        index = self.make("l2", tmp_path).build(X[:300])
        index.add(X[300:])
        assert len(index) == 400
        idx, dist = index.query(X[350:352], 1)
        np.testing.assert_array_equal(idx[:, 0], [350, 351])
        assert np.all(dist[:, 0] < 1e-3)

    def test_recall_against_exact(self, tmp_path):
        X = _data(n=1500, d=32)
        index = self.make("cosine", tmp_path).build(X)
        Q = X[:200]
        got, _ = index.query(Q, 10, exclude=np.arange(200))
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        ref, _ = exact_knn(Xn[:200], Xn, 10, metric="cosine", exclude=np.arange(200))
        recall = _recall(got, ref)
        assert recall >= (self.min_recall if self.approximate else 1.0), recall

    def test_bad_input_is_refused_clearly(self, tmp_path):
        X = _data(n=100)
        index = self.make("l2", tmp_path).build(X)
        with pytest.raises(InvalidInputError, match="dimension"):
            index.query(np.zeros((1, 5), np.float32), 3)
        with pytest.raises(InvalidInputError, match="NaN"):
            index.query(np.full((1, X.shape[1]), np.nan, np.float32), 3)
        with pytest.raises(InvalidInputError, match="k"):
            index.query(X[:1], 0)
        with pytest.raises(InvalidInputError, match="more neighbours"):
            index.query(X[:1], 100, exclude=np.array([0]))
        with pytest.raises(InvalidInputError, match="exclude"):
            index.query(X[:2], 3, exclude=np.array([0]))
        with pytest.raises(InvalidInputError, match="metric"):
            make_index(index.backend, "manhattan")


class TestExactIndex(IndexContract):
    def make(self, metric, tmp_path):
        return ExactIndex(metric)

    def test_ties_break_by_label(self, tmp_path):
        X = np.zeros((10, 3), np.float32)
        X[:, 0] = [0, 1, 1, 1, 1, 2, 2, 3, 4, 5]
        idx, _ = ExactIndex("l2").build(X).query(X[:1], 4, exclude=np.array([0]))
        np.testing.assert_array_equal(idx, [[1, 2, 3, 4]])


class TestHnswIndex(IndexContract):
    approximate = True

    def make(self, metric, tmp_path):
        # One build thread: hnswlib's graph then depends only on the seed. Built by several
        # threads the insertions interleave differently each run, and once in a while (one CI
        # run in many) row 3's exact duplicate was left where a search from it missed it.
        return HnswIndex(metric, M=16, ef_construction=100, ef=64, seed=1, num_threads=1)

    def test_ef_is_set_again_on_load(self, tmp_path):
        index = self.make("l2", tmp_path).build(_data())
        path = index.save(tmp_path / "x.hnsw")
        again = HnswIndex.load(path, ef=123)
        assert again.ef == 123 and again._index.ef == 123

    def test_concurrent_queries_with_different_ef_agree_with_serial(self, tmp_path):
        X = _data(n=2000, d=32)
        index = self.make("cosine", tmp_path).build(X)
        expected = {ef: index.query(X[:50], 10, ef=ef)[0] for ef in (10, 40, 200)}
        errors: list[BaseException] = []

        def worker(ef):
            try:
                for _ in range(20):
                    got, _ = index.query(X[:50], 10, ef=ef)
                    np.testing.assert_array_equal(got, expected[ef])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(ef,)) for ef in (10, 40, 200) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]

    def test_tiny_index_still_answers(self, tmp_path):
        X = _data(n=12)
        idx, _ = HnswIndex("l2", ef=1).build(X).query(X[:3], 11, exclude=np.arange(3))
        assert idx.shape == (3, 11)


class MilvusContractSetup:
    """What both Milvus classes share: opening indexes, closing them after each test.

    Milvus Lite builds its index asynchronously (and Milvus servers do too), so recall right
    after a build is not a property of this backend: the recall test below checks the
    answer's form only.
    """

    approximate = True
    min_recall = 0.0  # see above: neighbours are checked against sklearn, recall is not
    index_options: dict = {"M": 16, "ef_construction": 100, "ef": 64}

    def uri(self, tmp_path) -> str:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _close_indexes_after_each_test(self):
        pytest.importorskip("milvus_lite")
        self._opened = []
        yield
        for index in self._opened:
            if index._client is not None and not index.is_local:
                index.drop()  # keep the shared server small
            index.close()

    def make(self, metric, tmp_path):
        index = make_index("milvus", metric, uri=self.uri(tmp_path), **self.index_options)
        self._opened.append(index)
        return index

    def reload(self, index, tmp_path):
        again = super().reload(index, tmp_path)  # index.save, then load_index("milvus", path)
        self._opened.append(again)
        return again

    def test_recall_against_exact(self, tmp_path):
        # Milvus Lite builds its index asynchronously: recall is not asserted. What is checked
        # is the form of the answer: shapes, sorted rows, self excluded, true distances.
        X = _data(n=1500, d=32)
        index = self.make("cosine", tmp_path).build(X)
        got, dist = index.query(X[:200], 10, exclude=np.arange(200))
        assert got.shape == dist.shape == (200, 10)
        assert got.dtype == np.int64 and dist.dtype == np.float32
        assert np.all(np.diff(dist, axis=1) >= -1e-6)
        assert not (got == np.arange(200)[:, None]).any(), "self is excluded by label"
        assert all(len(set(row)) == 10 for row in got)
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        true = 1.0 - np.einsum("mkd,md->mk", Xn[got], Xn[:200])
        np.testing.assert_allclose(dist, true, atol=2e-5, rtol=1e-4)


class TestMilvusLiteIndex(MilvusContractSetup, IndexContract):
    """Milvus Lite in-process: each test its own database file under its tmp_path."""

    def uri(self, tmp_path):
        return str(tmp_path / "milvus.db")


class TestMilvusServerIndex(MilvusContractSetup, IndexContract):
    """A `milvus-lite server` process on 127.0.0.1 (the session's, tests/core/conftest.py);
    each index its own collection (the default, randomly named)."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _milvus_server(cls, milvus_server_uri):
        cls.server_uri = milvus_server_uri

    def uri(self, tmp_path):
        return self.server_uri


def test_exact_knn_in_small_blocks_gives_the_same_answer(monkeypatch):
    import embscope.core.index as index_mod
    from embscope.core.index import exact_knn

    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 8)).astype(np.float32)
    Q = rng.standard_normal((70, 8)).astype(np.float32)
    whole = exact_knn(Q, X, 5, metric="l2")
    monkeypatch.setattr(index_mod, "_EXACT_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(index_mod, "_EXACT_BLOCK_MIN", 1)
    blocked = exact_knn(Q, X, 5, metric="l2")
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])
