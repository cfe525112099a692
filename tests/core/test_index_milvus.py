"""MilvusIndex beyond the shared contract: connecting, naming, save/load, threads, cleanup.

The contract itself (shapes, true distances, self exclusion, round trips...) runs against
Milvus Lite and a Milvus Lite server in ``test_index_contract.py``; the server
(``milvus-lite server`` on loopback) is ``tests/milvus_server.py``.
"""

from __future__ import annotations

import gc
import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index import ExactIndex, load_index, make_index

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from embscope.core.index_milvus import MilvusIndex  # noqa: E402 - after the skips
from tests.milvus_server import free_port  # noqa: E402


def _data(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d)) * 3
    return (centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture
def server_uri(milvus_server_uri: str) -> str:
    """The session's ``milvus-lite server`` (tests/milvus_server.py, tests/core/conftest.py)."""
    return milvus_server_uri


@pytest.fixture
def opened():
    """Indexes a test opens, closed (and their collections dropped) after it."""
    made: list[MilvusIndex] = []
    yield made
    for index in made:
        if index._client is not None:
            index.drop()
        index.close()


def _local_servers() -> dict:
    from milvus_lite.server_manager import server_manager_instance

    return dict(server_manager_instance._servers)


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- refusing bad configuration clearly -----------------------------------------------------


def test_missing_pymilvus_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(InvalidInputError, match=r"pip install 'embscope\[milvus\]'"):
        make_index("milvus", "cosine", uri=tmp_path / "m.db")


def test_missing_milvus_lite_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "milvus_lite", None)
    with pytest.raises(InvalidInputError, match=r"Milvus Lite.*pip install 'embscope\[milvus\]'"):
        MilvusIndex("cosine", uri=tmp_path / "m.db")
    assert not (tmp_path / "m.db").exists()


def test_unreachable_server_fails_fast_with_the_uri():
    uri = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(InvalidInputError, match="cannot reach a Milvus server at " + uri) as err:
        MilvusIndex("l2", uri=uri, connect_timeout=3)
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in str(err.value)


def test_silent_server_gives_up_after_connect_timeout():
    # Accepts TCP connections but never speaks gRPC: the bounded wait must end it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(InvalidInputError, match="cannot reach a Milvus server"):
            MilvusIndex("l2", uri=uri, connect_timeout=1)
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a uri"),
        ({"uri": ""}, "non-empty"),
        ({"uri": "ftp://host/x"}, "unsupported Milvus uri"),
        ({"uri": "vectors.sqlite"}, r"must end in \.db"),
        ({"uri": "x.db", "collection": "bad-name"}, "invalid Milvus collection name"),
        ({"uri": "x.db", "collection": "1abc"}, "invalid Milvus collection name"),
        ({"uri": "x.db", "collection": "a" * 201}, "invalid Milvus collection name"),
        ({"uri": "x.db", "index_type": "DISKANN"}, "unknown Milvus index_type"),
        ({"uri": "x.db", "M": 1}, "M must be"),
        ({"uri": "x.db", "ef": 0}, "ef must be"),
        ({"uri": "x.db", "connect_timeout": 0}, "connect_timeout"),
        ({"uri": "x.db", "dim": 0}, "dim must be"),
    ],
)
def test_bad_options_are_refused_before_connecting(options, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match=message):
        MilvusIndex("cosine", **options)
    assert list(tmp_path.iterdir()) == [], "nothing is created for refused options"


def test_uri_credentials_are_never_saved_or_shown(server_uri, opened, tmp_path):
    secret_uri = server_uri.replace("http://", "http://alice:s3cret@")
    index = MilvusIndex("l2", uri=secret_uri)
    opened.append(index)
    index.build(_data(n=50))
    path = index.save(tmp_path / "index.milvus")
    for text in (path.read_text(), Path(f"{path}.json").read_text(), json.dumps(index.stats())):
        assert "s3cret" not in text and "alice" not in text
    assert json.loads(path.read_text())["uri"] == server_uri
    assert "s3cret" not in repr(index)


# -- collection names -----------------------------------------------------------------------


def test_default_collection_names_are_valid_unique_and_kept(tmp_path, opened):
    a = MilvusIndex("cosine", uri=tmp_path / "m.db")
    b = MilvusIndex("cosine", uri=tmp_path / "m.db")
    opened += [a, b]
    assert a.collection != b.collection
    for index in (a, b):
        assert index.collection.startswith("embscope_cosine_")
        assert len(index.collection) == len("embscope_cosine_") + 12
    a.build(_data())
    name = a.collection
    a.build(_data(seed=1))  # rebuilding keeps the name and leaves no staging collection
    assert a.collection == name
    assert a._client.list_collections() == [name]
    assert json.loads(a.save(tmp_path / "i.milvus").read_text())["collection"] == name


def test_existing_collection_is_adopted_if_it_fits(tmp_path, opened):
    X = _data()
    first = MilvusIndex("l2", uri=tmp_path / "m.db", collection="shared_vectors").build(X)
    again = MilvusIndex("l2", uri=tmp_path / "m.db", collection="shared_vectors")
    opened += [first, again]
    assert len(again) == len(X) and again.dim == X.shape[1]
    np.testing.assert_array_equal(again.query(X[:5], 4)[0], first.query(X[:5], 4)[0])
    again.add(X[:3])  # labels continue after the adopted ones
    assert len(again) == len(X) + 3
    np.testing.assert_array_equal(again.query(X[:1], 2)[0][0], [0, len(X)])
    with pytest.raises(InvalidInputError, match="metric L2, not COSINE"):
        MilvusIndex("cosine", uri=tmp_path / "m.db", collection="shared_vectors")
    with pytest.raises(InvalidInputError, match="16-dimensional vectors, not 8"):
        MilvusIndex("l2", 8, uri=tmp_path / "m.db", collection="shared_vectors")


# -- build, add, cancel ---------------------------------------------------------------------


def test_build_reports_progress_and_cancel_keeps_previous_content(tmp_path, opened, monkeypatch):
    import embscope.core.index_milvus as mod

    monkeypatch.setattr(mod, "_INSERT_MAX_ROWS", 100)  # several batches for 350 rows
    index = MilvusIndex("l2", uri=tmp_path / "m.db")
    opened.append(index)
    seen: list[float] = []
    X = _data(n=350)
    index.build(X, progress=lambda f, msg: seen.append(f))
    assert seen == pytest.approx([100 / 350, 200 / 350, 300 / 350, 1.0])
    before = index.query(X[:5], 3)
    with pytest.raises(OperationCancelled):
        index.build(_data(n=350, seed=9), progress=lambda f, msg: f > 0.5)
    assert len(index) == 350
    np.testing.assert_array_equal(index.query(X[:5], 3)[0], before[0])
    assert index._client.list_collections() == [index.collection]


def test_add_before_build_and_label_checks(tmp_path, opened):
    X = _data(n=40)
    index = MilvusIndex("cosine", uri=tmp_path / "m.db")
    opened.append(index)
    index.add(X[:20], labels=np.arange(100, 120))
    assert len(index) == 20 and index.dim == X.shape[1]
    with pytest.raises(InvalidInputError, match="already in the index"):
        index.add(X[20:22], labels=np.array([119, 500]))
    with pytest.raises(InvalidInputError, match="labels must be"):
        index.add(X[20:22], labels=np.array([-1, 3]))
    with pytest.raises(InvalidInputError, match="dimension"):
        index.add(np.ones((2, 3), np.float32))
    assert len(index) == 20, "a refused add changes nothing"
    index.add(X[20:22])  # next labels follow the largest one
    idx, dist = index.query(X[20:22], 1)
    np.testing.assert_array_equal(idx[:, 0], [120, 121])
    assert np.all(dist < 1e-5)


def test_empty_index_is_refused_clearly(tmp_path, opened):
    index = MilvusIndex("l2", uri=tmp_path / "m.db")
    opened.append(index)
    with pytest.raises(InvalidInputError, match="empty"):
        index.query(np.zeros((1, 4), np.float32), 1)
    with pytest.raises(InvalidInputError, match="empty"):
        index.save(tmp_path / "x.milvus")


@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "AUTOINDEX"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_other_index_types_return_true_distances(index_type, metric, tmp_path, opened):
    X = _data(n=200)
    index = MilvusIndex(metric, uri=tmp_path / "m.db", index_type=index_type, nlist=8, nprobe=8)
    opened.append(index)
    index.build(X)
    Q = _data(n=10, seed=3)
    idx, dist = index.query(Q, 5)
    ref_idx, ref_dist = ExactIndex(metric).build(X).query(Q, 5)
    if index_type != "AUTOINDEX":  # FLAT is exact; IVF_FLAT searches every cell here
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(dist, ref_dist, atol=2e-5, rtol=1e-4)
    stats = json.loads(json.dumps(index.stats()))
    assert stats["index_type"] == index_type and stats["milvus_metric"] == metric.upper()


# -- save and load --------------------------------------------------------------------------


def test_relative_local_uri_reloads_from_another_directory(tmp_path, monkeypatch, opened):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    X = _data()
    index = MilvusIndex("cosine", uri="data/milvus.db", ef=77).build(X)
    opened.append(index)
    path = index.save("saved/index.milvus")
    meta = json.loads(path.read_text())
    assert meta["uri"] == str(work / "data" / "milvus.db") and meta["n"] == len(X)
    monkeypatch.chdir(tmp_path)
    again = load_index("milvus", work / "saved" / "index.milvus")
    opened.append(again)
    assert again.uri == index.uri and again.ef == 77 and len(again) == len(X)
    np.testing.assert_array_equal(again.query(X[:5], 4)[0], index.query(X[:5], 4)[0])
    assert load_index("milvus", work / "saved" / "index.milvus", ef=9).ef == 9


def test_moved_database_is_found_beside_its_description(tmp_path, opened):
    X = _data()
    project = tmp_path / "project"
    with MilvusIndex("l2", uri=project / "milvus.db") as index:
        index.build(X)
        expected = index.query(X[:5], 4)
        index.save(project / "index.milvus")
    shutil.move(project, tmp_path / "moved")
    again = MilvusIndex.load(tmp_path / "moved" / "index.milvus")
    opened.append(again)
    assert again.uri == str(tmp_path / "moved" / "milvus.db")
    np.testing.assert_array_equal(again.query(X[:5], 4)[0], expected[0])
    again.add(X[:1])  # next_label came from the description
    assert again.query(X[:1], 2)[0].tolist() == [[0, len(X)]]


def test_load_refuses_missing_database_or_collection(tmp_path):
    X = _data(n=50)
    with MilvusIndex("l2", uri=tmp_path / "a" / "milvus.db") as index:
        index.build(X)
        path = index.save(tmp_path / "index.milvus")
        index.drop()
    with pytest.raises(InvalidInputError, match="is gone from"):
        MilvusIndex.load(path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        MilvusIndex.load(path, uri=tmp_path / "elsewhere" / "milvus.db")
    assert not (tmp_path / "elsewhere").exists(), "loading never creates an empty database"
    with pytest.raises(InvalidInputError, match="no milvus index"):
        MilvusIndex.load(tmp_path / "nothing.milvus")


def test_save_load_reconnects_to_a_server(server_uri, opened, tmp_path):
    X = _data()
    index = make_index("milvus", "ip", uri=server_uri, index_type="FLAT")
    opened.append(index)
    index.build(X)
    path = index.save(tmp_path / "index.milvus")
    again = load_index("milvus", path)
    opened.append(again)
    assert (again.uri, again.collection, again.index_type) == (server_uri, index.collection, "FLAT")
    a, b = index.query(X[:8], 5, exclude=np.arange(8)), again.query(X[:8], 5, exclude=np.arange(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# -- threads --------------------------------------------------------------------------------


def _hammer(index, Q, expected, *, rounds=15, threads=6, writer=None) -> list[BaseException]:
    errors: list[BaseException] = []

    def reader(ef):
        try:
            for _ in range(rounds):
                got, _ = index.query(Q, 5, exclude=np.arange(len(Q)), ef=ef)
                np.testing.assert_array_equal(got, expected)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=reader, args=(ef,)) for ef in [64, 200] * (threads // 2)]
    if writer is not None:
        workers.append(threading.Thread(target=writer))
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors


@pytest.mark.parametrize("where", ["lite", "server"])
def test_concurrent_queries_agree_with_serial(where, request, tmp_path, opened):
    uri = tmp_path / "m.db" if where == "lite" else request.getfixturevalue("server_uri")
    X = _data(n=500)
    index = MilvusIndex("cosine", uri=uri, index_type="FLAT")
    opened.append(index)
    index.build(X)
    Q = X[:20]
    expected = index.query(Q, 5, exclude=np.arange(20))[0]
    far = X[:30] + 1000.0  # added while the readers run, never among their neighbours

    def writer():
        for start in range(0, 30, 10):
            index.add(far[start : start + 10])

    errors = _hammer(index, Q, expected, writer=writer)
    assert not errors, errors[0]
    assert len(index) == len(X) + 30


# -- closing and cleaning up ----------------------------------------------------------------


def test_close_releases_the_local_server_when_the_last_user_closes(tmp_path):
    baseline = threading.active_count()
    db = str(tmp_path / "m.db")
    a = MilvusIndex("l2", uri=db).build(_data(n=30))
    b = MilvusIndex.load(a.save(tmp_path / "i.milvus"))
    assert db in _local_servers()
    a.close()
    a.close()  # twice is harmless
    assert db in _local_servers() and len(b.query(_data(n=1), 2)[0]) == 1, "b still works"
    with pytest.raises(InvalidInputError, match="closed"):
        a.query(_data(n=1), 2)
    with b:
        pass
    assert db not in _local_servers()
    assert json.loads(json.dumps(b.stats()))["closed"] is True
    assert _wait_for(lambda: threading.active_count() <= baseline), threading.enumerate()
    # The database lock is released: it opens again at once.
    with MilvusIndex.load(tmp_path / "i.milvus") as c:
        assert len(c) == 30


def test_forgotten_index_is_closed_when_collected(tmp_path):
    db = str(tmp_path / "m.db")
    index = MilvusIndex("l2", uri=db).build(_data(n=30))
    assert db in _local_servers()
    del index
    gc.collect()
    assert db not in _local_servers()


def test_failed_open_leaves_no_server_running(tmp_path, monkeypatch):
    import pymilvus

    def refuse(*args, **kwargs):
        raise pymilvus.exceptions.MilvusException(message="boom")

    db = str(tmp_path / "m.db")
    monkeypatch.setattr(pymilvus.MilvusClient, "get_server_version", refuse)
    with pytest.raises(InvalidInputError, match="could not open the Milvus Lite database"):
        MilvusIndex("l2", uri=db)
    assert db not in _local_servers()


@pytest.mark.parametrize("where", ["lite", "server"])
def test_added_rows_survive_close_and_reload(where, request, tmp_path, opened):
    # add() does not flush (Milvus rate-limits flushes): the rows must still be kept.
    uri = tmp_path / "m.db" if where == "lite" else request.getfixturevalue("server_uri")
    X = _data(n=120)
    with MilvusIndex("l2", uri=uri) as index:
        index.build(X[:100])
        index.add(X[100:], labels=np.arange(500, 520))
        path = index.save(tmp_path / "index.milvus")
    again = MilvusIndex.load(path)
    opened.append(again)
    assert len(again) == 120
    idx, dist = again.query(X[110:112], 1)
    np.testing.assert_array_equal(idx[:, 0], [510, 511])
    again.add(X[:1])  # the next default label follows the largest one, 519
    assert again.query(X[:1], 2)[0].tolist() == [[0, 520]]


# -- deleting a dataset drops its collections -------------------------------------------------


def _collections(uri) -> set[str]:
    """The collections in the Milvus at ``uri`` (a probe index shares the Lite server)."""
    with MilvusIndex("cosine", uri=uri, collection="embscope_probe") as probe:
        return set(probe._client.list_collections())


def _two_datasets(store, *, same: bool = False):
    from tests.helpers import make_parsed

    X = _data(n=200, seed=1)
    keep = store.add_dataset(make_parsed(X), name="keep")
    gone = store.add_dataset(make_parsed(X if same else _data(n=200, seed=2)), name="gone")
    return keep, gone


@pytest.mark.parametrize("where", ["lite", "server"])
def test_deleting_a_dataset_drops_its_milvus_collections(where, request, tmp_path):
    from embscope.core.neighbours import NeighbourService, milvus_collection
    from embscope.core.store import Store

    uri = str(tmp_path / "m.db") if where == "lite" else request.getfixturevalue("server_uri")
    with Store(tmp_path / "db.duckdb") as store:
        keep, gone = _two_datasets(store)
        service = NeighbourService(store, milvus_uri=uri)
        service.get_index(keep.id, backend="milvus")
        for metric in ("cosine", "l2"):
            service.get_index(gone.id, metric=metric, backend="milvus")
        names = {
            m: milvus_collection(service.index_fingerprint(gone.id, metric=m, backend="milvus"))
            for m in ("cosine", "l2")
        }
        kept = milvus_collection(
            service.index_fingerprint(keep.id, metric="cosine", backend="milvus")
        )
        assert {kept, *names.values()} <= _collections(uri)
        service.get_index(gone.id, backend="milvus")  # loaded in this process, and in use
        dropped = service.delete_dataset(gone.id)
        assert sorted(dropped) == sorted(names.values())
        left = _collections(uri)
        assert kept in left and not set(names.values()) & left
        assert sorted(p.suffix for p in service.index_dir.iterdir()) == [".json", ".milvus"]
        # the other dataset's index still answers, from its own collection
        q = service.resolve(keep.id, row=0)
        assert len(service.search(keep.id, q, k=5, backend="milvus").rows) == 5
        # renaming (which also forgets what is cached) drops nothing
        store.rename_dataset(keep.id, "kept")
        service.forget(keep.id)
        assert kept in _collections(uri)


def test_deleting_through_the_api_drops_the_collection(tmp_path):
    """`embscope delete` and the Python API's db.delete: the default Milvus Lite database
    beside the database file loses the deleted dataset's collection."""
    from embscope.core.api import Database
    from embscope.core.neighbours import milvus_collection

    db = Database(tmp_path / "db.duckdb")
    try:
        keep, gone = _two_datasets(db.store)
        service = db.neighbour_service
        for info in (keep, gone):
            service.get_index(info.id, backend="milvus")
        uri = service.milvus_uri
        assert uri == str(tmp_path / "db.duckdb.milvus.db")
        name = milvus_collection(
            service.index_fingerprint(gone.id, metric="cosine", backend="milvus")
        )
        kept = milvus_collection(
            service.index_fingerprint(keep.id, metric="cosine", backend="milvus")
        )
        assert {name, kept} <= _collections(uri)
        db.delete("gone")
        assert [d.name for d in db.store.list_datasets()] == ["keep"]
        left = _collections(uri)
        assert name not in left and kept in left
    finally:
        db.close()


@pytest.mark.parametrize("built_by", ["keep", "gone"])
def test_an_index_shared_by_datasets_of_the_same_vectors(built_by, tmp_path):
    """Two datasets with the same vectors and ids share one index (fingerprint, file and
    collection), recorded under the dataset that built it. Deleting the other one leaves the
    collection; deleting that one drops it with its record, and the survivor's next query
    builds the index again."""
    from embscope.core.neighbours import NeighbourService, milvus_collection
    from embscope.core.store import Store

    uri = str(tmp_path / "m.db")
    with Store(tmp_path / "db.duckdb") as store:
        keep, gone = _two_datasets(store, same=True)
        service = NeighbourService(store, milvus_uri=uri)
        fp = service.index_fingerprint(gone.id, metric="cosine", backend="milvus")
        assert fp == service.index_fingerprint(keep.id, metric="cosine", backend="milvus")
        first, second = (keep, gone) if built_by == "keep" else (gone, keep)
        service.get_index(first.id, backend="milvus")
        service.get_index(second.id, backend="milvus")
        dropped = service.delete_dataset(gone.id)
        assert dropped == ([] if built_by == "keep" else [milvus_collection(fp)])
        q = service.resolve(keep.id, row=0)
        assert len(service.search(keep.id, q, k=5, backend="milvus").rows) == 5
        assert milvus_collection(fp) in _collections(uri)


def test_a_collection_that_cannot_be_dropped_does_not_stop_the_delete(
    tmp_path, monkeypatch, caplog
):
    import embscope.core.neighbours as neighbours
    from embscope.core.neighbours import NeighbourService
    from embscope.core.store import Store

    def unreachable(uri, names, **_):
        raise InvalidInputError(f"cannot reach a Milvus server at {uri}")

    with Store(tmp_path / "db.duckdb") as store:
        _, gone = _two_datasets(store)
        service = NeighbourService(store, milvus_uri=str(tmp_path / "m.db"))
        service.get_index(gone.id, backend="milvus")
        monkeypatch.setattr(neighbours, "drop_collections", unreachable)
        with caplog.at_level("WARNING", logger="embscope.core.neighbours"):
            assert service.delete_dataset(gone.id) == []
        assert [d.name for d in store.list_datasets()] == ["keep"]
        assert "were not dropped" in caplog.text and "cannot reach" in caplog.text


def test_drop_collections_takes_staging_leftovers_and_creates_nothing(tmp_path):
    from embscope.core.index_milvus import drop_collections

    uri = str(tmp_path / "m.db")
    with MilvusIndex("l2", uri=uri, collection="embscope_a") as a:
        a.build(_data(n=30))
        client = a._client
        a._create_collection(client, "embscope_a_build_0123abcd", a.dim)  # a killed rebuild
        a._create_collection(client, "embscope_b", a.dim)
        dropped = drop_collections(uri, ["embscope_a", "embscope_missing"])
        assert dropped == ["embscope_a", "embscope_a_build_0123abcd"]
        assert set(client.list_collections()) == {"embscope_b"}
    nowhere = tmp_path / "none" / "m.db"
    assert drop_collections(nowhere, ["embscope_a"]) == []
    assert not nowhere.exists() and not nowhere.parent.exists()
    with pytest.raises(InvalidInputError, match="invalid Milvus collection name"):
        drop_collections(uri, ["no-such name"])


# -- filtered queries (among), waiting for the index, timeouts -----------------------------------


def test_query_among_names_the_shorter_label_set_and_pads_what_it_cannot_fill(
    tmp_path, opened, monkeypatch, milvus_expressions
):
    import embscope.core.index_milvus as mod

    X = _data(n=200)
    index = MilvusIndex("l2", uri=tmp_path / "m.db", index_type="FLAT").build(X)
    opened.append(index)
    sent = milvus_expressions
    for among in (np.arange(0, 200, 7), np.setdiff1d(np.arange(200), [3, 50, 51])):
        idx, dist = index.query(X[:4], 5, exclude=np.arange(4), among=among)
        assert np.isin(idx, among).all()
        # the reference: exact search among the same labels
        sub = ExactIndex("l2").build(X[among])
        sub_idx, sub_dist = sub.query(X[:4], 6)
        for r in range(4):
            keep = among[sub_idx[r]] != r
            np.testing.assert_array_equal(idx[r], among[sub_idx[r]][keep][:5])
            np.testing.assert_allclose(dist[r], sub_dist[r][keep][:5], atol=2e-5)
    assert sent[0].startswith("id in [0, 7, 14") and sent[1] == "id not in [3, 50, 51]"
    # fewer labels than k: the rest is label -1 at distance inf, nearest first
    idx, dist = index.query(X[:1], 4, among=np.array([10, 20]))
    assert idx[0, 2:].tolist() == [-1, -1] and np.isinf(dist[0, 2:]).all()
    assert sorted(idx[0, :2].tolist()) == [10, 20] and np.isfinite(dist[0, :2]).all()
    idx, dist = index.query(X[:1], 3, among=np.array([], dtype=np.int64))  # nothing matches
    assert idx.tolist() == [[-1, -1, -1]] and np.isinf(dist).all()
    assert index.query(X[:1], 3, among=np.arange(500))[0].min() >= 0  # labels past n ignored
    with pytest.raises(InvalidInputError, match="whole numbers >= 0"):
        index.query(X[:1], 3, among=np.array([-1, 2]))
    monkeypatch.setattr(mod, "MAX_FILTER_IDS", 10)
    with pytest.raises(InvalidInputError, match="too long for one Milvus expression"):
        index.query(X[:1], 3, among=np.arange(0, 200, 2))


def test_query_among_after_custom_labels_names_them(tmp_path, opened):
    X = _data(n=60)
    index = MilvusIndex("cosine", uri=tmp_path / "m.db", index_type="FLAT")
    opened.append(index)
    index.add(X, labels=np.arange(1000, 1060))  # not 0..n-1: no complement can be formed
    idx, _ = index.query(X[:2], 3, among=np.arange(1000, 1050))
    assert ((idx >= 1000) & (idx < 1050)).all()


def test_wait_for_index_returns_once_indexed_and_timeouts_are_checked(tmp_path, opened):
    index = MilvusIndex("l2", uri=tmp_path / "m.db").build(_data(n=100))
    opened.append(index)
    t0 = time.monotonic()
    index.wait_for_index(timeout=30)
    assert time.monotonic() - t0 < 5
    with pytest.raises(InvalidInputError, match="request_timeout must be a positive"):
        MilvusIndex("l2", uri=tmp_path / "m.db", request_timeout=0)
