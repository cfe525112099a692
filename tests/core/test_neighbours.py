"""NeighbourService: queries by row, id, vector and text; the index built once and reused."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import embscope.core.index as index_mod
from embscope.core.demo import stdlib_docstrings
from embscope.core.demo_store import store_demo_dataset
from embscope.core.errors import InvalidInputError
from embscope.core.graph import build_knn_graph
from embscope.core.ingest import from_arrays
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store
from tests.helpers import make_parsed


def _blobs(n=1200, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d)) * 4
    return (centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture
def blobs(store):
    X = _blobs()
    ids = np.array([f"item-{i}" for i in range(len(X))], dtype=object)
    info = store.add_dataset(make_parsed(X, ids=ids), name="blobs")
    return store, info, X


@pytest.fixture
def counted_hnsw_builds(monkeypatch):
    calls = []
    real, real_from = index_mod.HnswIndex.build, index_mod.HnswIndex.build_from

    def counting(self, X, **kwargs):
        calls.append(len(X))
        return real(self, X, **kwargs)

    def counting_from(self, batches, n, **kwargs):
        calls.append(n)
        return real_from(self, batches, n, **kwargs)

    monkeypatch.setattr(index_mod.HnswIndex, "build", counting)
    monkeypatch.setattr(index_mod.HnswIndex, "build_from", counting_from)
    return calls


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_row_query_matches_exact_graph_and_leaves_itself_out(blobs, metric):
    store, info, X = blobs
    service = NeighbourService(store)
    graph = build_knn_graph(X, k=10, metric=metric, method="exact")
    for row in (0, 17, 1199):
        q = service.resolve(info.id, row=row)
        answer = service.search(info.id, q, k=10, metric=metric, backend="exact")
        assert row not in answer.rows
        np.testing.assert_array_equal(answer.rows, graph.indices[row])
        np.testing.assert_allclose(answer.distances, graph.distances[row], atol=1e-5)
        assert list(answer.ids) == [f"item-{r}" for r in answer.rows]
        comparison = service.compare(info.id, q, k=10, metric=metric, ef=100)
        assert comparison.recall >= 0.9 and row not in comparison.approximate.rows
        assert comparison.approximate.backend == "hnsw" and comparison.exact.backend == "exact"


def test_id_and_vector_queries(blobs):
    store, info, X = blobs
    service = NeighbourService(store)
    by_id = service.search(info.id, service.resolve(info.id, item_id="item-42"), k=5)
    by_row = service.search(info.id, service.resolve(info.id, row=42), k=5)
    np.testing.assert_array_equal(by_id.rows, by_row.rows)
    # A vector query is not an item: the item with that very vector is its nearest neighbour.
    by_vec = service.search(info.id, service.resolve(info.id, vector=X[42]), k=5)
    assert by_vec.rows[0] == 42 and by_vec.distances[0] == pytest.approx(0, abs=1e-5)
    assert by_vec.to_json()["neighbours"][0] == {
        "row": 42,
        "id": "item-42",
        "distance": pytest.approx(0, abs=1e-5),
    }
    assert by_id.latency_ms > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"row": 1, "item_id": "item-1"}, "exactly one"),
        ({"row": 5000}, "outside the dataset"),
        ({"row": -1}, "outside the dataset"),
        ({"item_id": "nope"}, "no item with id"),
        ({"vector": np.zeros(3)}, "dimension"),
        ({"vector": np.zeros((2, 24))}, "one query vector"),
        ({"vector": np.full(24, np.nan)}, "NaN"),
        ({"text": "anything"}, "does not record which model"),
    ],
)
def test_bad_queries_are_refused_clearly(blobs, kwargs, message):
    store, info, _ = blobs
    with pytest.raises(InvalidInputError, match=message):
        NeighbourService(store).resolve(info.id, **kwargs)


def test_k_and_backend_are_validated(blobs):
    store, info, _ = blobs
    service = NeighbourService(store)
    q = service.resolve(info.id, row=0)
    with pytest.raises(InvalidInputError, match="more neighbours"):
        service.search(info.id, q, k=1200)
    with pytest.raises(InvalidInputError, match="backend"):
        service.search(info.id, q, backend="faiss")
    with pytest.raises(InvalidInputError, match="metric"):
        service.search(info.id, q, metric="hamming")


def test_index_is_saved_beside_the_database_and_reused(db_path, counted_hnsw_builds):
    X = _blobs(n=600)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(X), name="blobs")
        service = NeighbourService(store)
        first = service.search(info.id, service.resolve(info.id, row=3), k=8)
        service.search(info.id, service.resolve(info.id, row=4), k=8)
        files = sorted(p.name for p in (db_path.parent / "test.duckdb.indexes").iterdir())
        assert len(files) == 2 and files[0].endswith(".hnsw") and files[1].endswith(".json")
        assert [a.kind for a in store.list_artifacts(info.id)] == ["index"]
    assert counted_hnsw_builds == [600]
    with Store(db_path) as store:  # a restart: read from disk, not rebuilt
        service = NeighbourService(store)
        again = service.search(info.id, service.resolve(info.id, row=3), k=8)
    assert counted_hnsw_builds == [600]
    np.testing.assert_array_equal(first.rows, again.rows)


def test_damaged_index_file_is_rebuilt(db_path, counted_hnsw_builds):
    X = _blobs(n=300)
    with Store(db_path) as store:
        info = store.add_dataset(make_parsed(X), name="blobs")
        NeighbourService(store).get_index(info.id)
    for path in (db_path.parent / "test.duckdb.indexes").glob("*.hnsw"):
        path.write_bytes(b"not an index")
    with Store(db_path) as store:
        service = NeighbourService(store)
        answer = service.search(info.id, service.resolve(info.id, row=1), k=3)
    assert len(answer.rows) == 3 and counted_hnsw_builds == [300, 300]


def test_concurrent_first_queries_share_one_build(blobs, counted_hnsw_builds):
    store, info, _ = blobs
    service = NeighbourService(store)
    results, errors = [], []

    def ask(row):
        try:
            results.append(service.search(info.id, service.resolve(info.id, row=row), k=5).rows)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(r,)) for r in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6
    assert counted_hnsw_builds == [len(_blobs())]


def test_text_query_uses_the_datasets_model(store):
    pytest.importorskip("onnxruntime")
    info = store_demo_dataset(store, stdlib_docstrings())
    service = NeighbourService(store)
    ok, reason = service.text_status(info.id)
    assert ok, reason
    q = service.resolve(info.id, text="Serialize obj to a JSON formatted str")
    answer = service.search(info.id, q, k=5, backend="exact")
    modules = store.load_rows(info.id, answer.rows)["module"].tolist()
    assert modules[0] == "json" and modules.count("json") >= 3, modules


def test_deleting_a_dataset_removes_its_index_files_and_cache(db_path):
    with Store(db_path) as store:
        keep = store.add_dataset(make_parsed(_blobs(n=200, seed=1)), name="keep")
        gone = store.add_dataset(make_parsed(_blobs(n=200, seed=2)), name="gone")
        service = NeighbourService(store)
        service.get_index(keep.id)
        service.get_index(gone.id, metric="l2")
        folder = db_path.parent / "test.duckdb.indexes"
        assert len(list(folder.iterdir())) == 4
        store.delete_dataset(gone.id)
        service.forget(gone.id)
        assert len(list(folder.iterdir())) == 2
        assert service.has_index(keep.id, metric="cosine")
        with pytest.raises(InvalidInputError, match="no dataset"):
            service.resolve(gone.id, row=0)


def test_an_index_being_saved_is_not_pruned(tmp_path):
    """A delete elsewhere (prune_files) between an index's save and its artifact being
    recorded must not remove the freshly saved file."""
    store = Store(tmp_path / "db.duckdb")
    X = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    info = store.add_dataset(from_arrays(X), name="a")
    service = NeighbourService(store)
    real_put = store.put_artifact
    pruned = []

    def put_after_a_prune(**kwargs):
        pruned.extend(service.prune_files())  # what a concurrent delete does in this window
        return real_put(**kwargs)

    store.put_artifact = put_after_a_prune
    service.get_index(info.id, metric="cosine")
    fp = service.index_fingerprint(info.id, metric="cosine")
    assert pruned == []
    assert (service.index_dir / f"{fp}.hnsw").exists()
    store.close()


def test_temp_files_of_a_killed_index_save_are_pruned(tmp_path):
    import os
    import subprocess
    import sys

    store = Store(tmp_path / "db.duckdb")
    service = NeighbourService(store)
    service.index_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    fp = "a" * 40
    orphan = service.index_dir / f".{fp}.hnsw.{int(dead.stdout)}.1234.tmp"
    ours = service.index_dir / f".{fp}.hnsw.{os.getpid()}.1234.tmp"  # a save in progress
    alive = service.index_dir / f".{fp}.hnsw.1.1234.tmp"  # pid 1 is always running
    odd = service.index_dir / ".notes.tmp"
    for path in (orphan, ours, alive, odd):
        path.write_bytes(b"x")
    assert service.prune_files() == [orphan]
    assert not orphan.exists() and ours.exists() and alive.exists() and odd.exists()
    store.close()


def test_index_built_from_the_stores_batches_answers_as_one_built_from_the_matrix(blobs):
    """A first query by row builds the index from the store's batches and reads the row alone:
    the vectors are never loaded whole, and the answer is the one the matrix-built index
    (same settings, one thread: deterministic) gives."""
    from embscope.core.index import HnswIndex

    store, info, X = blobs
    service = NeighbourService(store)
    got = service.search(info.id, service.resolve(info.id, row=7), k=10, metric="cosine")
    assert not service.has_vectors(info.id)
    streamed = HnswIndex("cosine", ef=200, num_threads=1).build_from(
        store.iter_vectors(info.id), len(X)
    )
    whole = HnswIndex("cosine", ef=200, num_threads=1).build(X)
    for index in (streamed, whole):
        rows, _ = index.query(X[7:8], 10, exclude=np.array([7]))
        np.testing.assert_array_equal(rows[0], got.rows)
    np.testing.assert_array_equal(store.load_vector_rows(info.id, [7, 3, 7]), X[[7, 3, 7]])
    with pytest.raises(InvalidInputError, match="rows must be between"):
        store.load_vector_rows(info.id, [len(X)])
    batches = list(store.iter_vectors(info.id))
    with pytest.raises(InvalidInputError, match="not 1,201"):
        HnswIndex("cosine").build_from(batches, len(X) + 1)
