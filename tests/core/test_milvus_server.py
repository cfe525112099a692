"""Datasets whose queries run on a Milvus server by URI (docs/SCALE.md, "Vectors in Milvus").

Every test here reaches Milvus as a cluster is reached: pymilvus over gRPC to an
``http://127.0.0.1:<port>`` URI, served by a ``milvus-lite server`` process (the session's
``milvus_server_uri``, tests/core/conftest.py), never the in-process path of a local ``.db``
URI. References: exact search (``backend="exact"``) over the same rows and filters.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.store import Store
from tests.helpers import make_parsed, run_cli

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from embscope.core.diagnostics import recall_vs_ef  # noqa: E402 - after the skips
from embscope.core.filters import matching_rows  # noqa: E402
from embscope.core.index_milvus import MilvusIndex  # noqa: E402
from embscope.core.neighbours import NeighbourService  # noqa: E402
from tests.milvus_server import free_port, start_milvus_lite_server  # noqa: E402

N, D = 2_000, 32


def _dataset(n: int = N, d: int = D):
    """Clustered unit vectors (sentence-embedding-like) with metadata to filter on."""
    from embscope.core.demo import gaussian_mixture

    demo = gaussian_mixture(n, d, 8, seed=0)
    rng = np.random.default_rng(1)
    meta = pd.DataFrame(
        {
            "cluster": demo.metadata["cluster"].astype(int),
            "score": rng.integers(0, 100, n),
            "name": [f"item {i}" for i in range(n)],
        }
    )
    return make_parsed(demo.vectors, meta)


@pytest.fixture(scope="module")
def served(tmp_path_factory, milvus_server_uri):
    """(service, dataset id) over a store whose Milvus is the server."""
    store = Store(tmp_path_factory.mktemp("served") / "db.duckdb")
    info = store.add_dataset(_dataset(), name="points")
    yield NeighbourService(store, milvus_uri=milvus_server_uri), info.id
    store.close()


def _collections(uri: str) -> set[str]:
    with MilvusIndex("cosine", uri=uri, collection="embscope_probe") as probe:
        return set(probe._client.list_collections())


def _recall(got: np.ndarray, truth: np.ndarray) -> float:
    return len(set(got.tolist()) & set(truth.tolist())) / max(len(truth), 1)


# -- a) neighbour queries ---------------------------------------------------------------------


def test_flat_collection_on_the_server_answers_like_exact_search(served, milvus_server_uri):
    service, ds = served
    index = service.get_index(ds, metric="cosine", backend="milvus", index_type="FLAT")
    assert isinstance(index, MilvusIndex)
    assert not index.is_local and index.uri == milvus_server_uri, "the client path of a cluster"
    assert index.stats()["index_type"] == "FLAT" and len(index) == N
    rng = np.random.default_rng(2)
    queries = [service.resolve(ds, row=r) for r in (0, 17, N - 1)]
    queries.append(service.resolve(ds, vector=rng.standard_normal(D).astype(np.float32)))
    for query in queries:
        got = service.search(ds, query, k=10, backend="milvus", index_type="FLAT")
        ref = service.search(ds, query, k=10, backend="exact")
        assert got.backend == "milvus"
        np.testing.assert_array_equal(got.rows, ref.rows)
        np.testing.assert_allclose(got.distances, ref.distances, atol=3e-5)
        assert query.exclude_row is None or query.exclude_row not in got.rows


def test_hnsw_collection_on_the_server_has_recall_at_least_095(served):
    service, ds = served
    recalls = []
    for row in range(0, N, 20):  # 100 queries
        query = service.resolve(ds, row=row)
        got = service.search(ds, query, k=10, metric="l2", backend="milvus")
        ref = service.search(ds, query, k=10, metric="l2", backend="exact")
        assert got.backend == "milvus" and row not in got.rows
        recalls.append(_recall(got.rows, ref.rows))
    assert np.mean(recalls) >= 0.95, np.mean(recalls)
    index = service.get_index(ds, metric="l2", backend="milvus")
    assert index.stats()["index_type"] == "HNSW" and not index.is_local


# -- b) filtered queries ----------------------------------------------------------------------


@pytest.fixture
def expressions(milvus_expressions):
    """The filter expressions the Milvus searches were sent."""
    return milvus_expressions


@pytest.mark.parametrize(
    ("where", "expression"),
    [
        (["cluster=3"], "id in ["),  # about an eighth of the rows: named
        (["score>=10"], "id not in ["),  # about nine tenths: the others named
        (['cluster@["1", "2"]', "score<50"], "id in ["),
        (["name~7"], "id in ["),
    ],
)
def test_filtered_queries_run_on_the_server_and_equal_exact_filtered_search(
    served, expressions, where, expression
):
    service, ds = served
    allowed = set(matching_rows(service.store, ds, where).tolist())
    for row in (0, 5, 1234):
        query = service.resolve(ds, row=row)
        got = service.search(ds, query, k=10, where=where, backend="milvus", index_type="FLAT")
        ref = service.search(ds, query, k=10, where=where, backend="exact")
        assert got.backend == "milvus" and got.filtered == len(allowed) == ref.filtered
        assert set(got.rows.tolist()) <= allowed and row not in got.rows
        np.testing.assert_array_equal(got.rows, ref.rows)
        np.testing.assert_allclose(got.distances, ref.distances, atol=3e-5)
    assert expressions and all(e.startswith(expression) for e in expressions)


def test_filtered_hnsw_queries_stay_inside_the_filter_with_high_recall(served):
    service, ds = served
    where = ["cluster=5"]
    allowed = set(matching_rows(service.store, ds, where).tolist())
    recalls = []
    for row in range(3, N, 50):
        query = service.resolve(ds, row=row)
        got = service.search(ds, query, k=10, where=where, backend="milvus")
        ref = service.search(ds, query, k=10, where=where, backend="exact")
        assert set(got.rows.tolist()) <= allowed and len(got.rows) == 10
        recalls.append(_recall(got.rows, ref.rows))
    assert np.mean(recalls) >= 0.95


def test_filters_matching_fewer_than_k_or_nothing(served):
    service, ds = served
    query = service.resolve(ds, row=0)
    few = ["score=7", "cluster=1"]
    allowed = matching_rows(service.store, ds, few)
    assert 0 < len(allowed) < 40
    got = service.search(ds, query, k=40, where=few, backend="milvus", index_type="FLAT")
    assert got.backend == "milvus"
    assert sorted(got.rows.tolist()) == sorted(set(allowed.tolist()) - {0})
    assert np.all(np.diff(got.distances) >= 0)
    nothing = service.search(ds, query, k=5, where=["score>1000"], backend="milvus")
    assert len(nothing.rows) == 0 and nothing.filtered == 0


# -- c) held-out diagnostics ------------------------------------------------------------------


def test_recall_vs_ef_in_a_temporary_milvus_collection(served, milvus_server_uri):
    service, ds = served
    X = service.vectors(ds)
    same = {"metric": "cosine", "k": 10, "efs": (10, 40, 160), "n_queries": 100, "seed": 0}
    milvus = recall_vs_ef(X, backend="milvus", milvus_uri=milvus_server_uri, **same)
    local = recall_vs_ef(X, num_threads=1, **same)
    np.testing.assert_array_equal(milvus.query_rows, local.query_rows)  # the same held-out rows
    assert milvus.n_points == N and milvus.params["backend"] == "milvus"
    assert milvus.params["uri"] == milvus_server_uri and "backend" not in local.params
    assert np.all(np.diff(milvus.recall) >= -0.01), milvus.recall  # recall grows with ef
    assert milvus.recall[-1] >= 0.95 and abs(milvus.recall[-1] - local.recall[-1]) <= 0.05
    assert np.all(milvus.p50_ms > 0) and np.all(milvus.qps > 0)
    assert not {c for c in _collections(milvus_server_uri) if "diagnostics" in c}, "dropped"


@pytest.fixture
def cli_db(tmp_path) -> str:
    path = tmp_path / "cli.duckdb"
    with Store(path) as store:
        store.add_dataset(_dataset(600, 16), name="small")
    return str(path)


def test_cli_diagnostics_backend_milvus_keeps_every_key_and_adds_backend(
    capsys, cli_db, milvus_server_uri
):
    common = ["--db", cli_db, "diagnostics", "small", "--queries", "60", "--ef", "10,40"]
    common += ["--seeds", "1", "--json"]
    code, out, err = run_cli(capsys, *common, "--backend", "milvus", "--milvus-uri",
                             milvus_server_uri)  # fmt: skip
    assert code == 0, err
    on_milvus = json.loads(out)
    code, out, err = run_cli(capsys, *common)
    assert code == 0, err
    local = json.loads(out)
    assert list(on_milvus) == list(local) and "backend" in local
    assert (on_milvus["backend"], local["backend"]) == ("milvus", "hnsw")
    assert on_milvus["n_indexed"] == local["n_indexed"] == 540
    assert [r["ef"] for r in on_milvus["recall_vs_ef"]] == [10, 40]
    assert on_milvus["recall_vs_ef"][-1]["recall"] >= 0.95
    assert on_milvus["insertion_order"] == local["insertion_order"]  # hnswlib, shared


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://somewhere", "unsupported Milvus uri"),
        ("http://127.0.0.1:{port}", "cannot reach a Milvus server at http://127.0.0.1:"),
    ],
)
def test_cli_diagnostics_bad_milvus_uri_is_one_error_line(capsys, cli_db, uri, message):
    uri = uri.format(port=free_port())
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, "--db", cli_db, "diagnostics", "small", "--backend",
                             "milvus", "--milvus-uri", uri)  # fmt: skip
    assert time.monotonic() - t0 < 20
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    code, _, err = run_cli(capsys, "--db", cli_db, "diagnostics", "small", "--milvus-uri", uri)
    assert code == 2 and "only goes with backend milvus" in err


# -- d) the CLI's neighbours on the server -----------------------------------------------------


def test_cli_neighbours_with_embscope_milvus_uri(capsys, cli_db, milvus_server_uri, monkeypatch):
    monkeypatch.setenv("EMBSCOPE_MILVUS_URI", milvus_server_uri)
    base = ["--db", cli_db, "neighbours", "small", "--row", "4", "-k", "5", "--backend", "milvus"]
    code, out, err = run_cli(capsys, *base, "--json", "--exact", "--filter", "cluster=2")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["backend"] == "milvus" and obj["recall"] >= 0.8
    with Store(cli_db, read_only=True) as store:
        info = store.get_dataset("small")
        inside = set(matching_rows(store, info.id, ["cluster=2"]).tolist())
    assert {n["row"] for n in obj["neighbours"]} <= inside and obj["filtered"] == len(inside)
    code, out, err = run_cli(capsys, *base)
    assert code == 0 and "(milvus, " in out, err
    assert not Path(cli_db + ".milvus.db").exists(), "the server was used, not Milvus Lite"
    monkeypatch.delenv("EMBSCOPE_MILVUS_URI")
    code, out, err = run_cli(capsys, *base, "--milvus-uri", milvus_server_uri, "--json")
    assert code == 0, err
    assert json.loads(out)["backend"] == "milvus"
    assert not Path(cli_db + ".milvus.db").exists()


# -- e) connection failures: clear errors, no hangs --------------------------------------------


def test_unreachable_server_is_a_clear_error_and_stores_nothing(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    with Store(tmp_path / "db.duckdb") as store:
        ds = store.add_dataset(_dataset(300, 8), name="p").id
        service = NeighbourService(store, milvus_uri=uri)
        query = service.resolve(ds, row=0)
        t0 = time.monotonic()
        with pytest.raises(InvalidInputError, match=f"cannot reach a Milvus server at {uri}"):
            service.search(ds, query, k=5, backend="milvus")
        with pytest.raises(InvalidInputError, match="cannot reach a Milvus server"):
            service.search(ds, query, k=5, backend="milvus", where=["cluster=1"])
        assert time.monotonic() - t0 < 20
        assert store.list_artifacts(kind="index") == []


def _wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Until every thread of ``pid`` is stopped (state T): SIGSTOP is delivered
    asynchronously, and a thread still running could answer one more request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except OSError:  # the thread ended meanwhile
                continue
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")


def test_a_server_that_stops_answering_or_goes_away_is_a_clear_error(tmp_path):
    server = start_milvus_lite_server(tmp_path / "own-server")
    try:
        X = _dataset(300, 8).vectors
        index = MilvusIndex("l2", uri=server.uri, request_timeout=2).build(X)
        assert index.query(X[:2], 3)[0].shape == (2, 3)
        os.kill(server.proc.pid, signal.SIGSTOP)  # alive, but silent
        try:
            _wait_stopped(server.proc.pid)  # every thread: a busy machine delivers it late
            t0 = time.monotonic()
            with pytest.raises(InvalidInputError, match="failed to search") as err:
                index.query(X[:2], 3)
            assert time.monotonic() - t0 < 10 and "request_timeout = 2 s" in str(err.value)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()  # gone
        t0 = time.monotonic()
        with pytest.raises(InvalidInputError, match=f"Milvus at {server.uri} failed to search"):
            index.query(X[:2], 3, among=np.arange(10))
        assert time.monotonic() - t0 < 10
        index.close()
    finally:
        server.stop()


def test_credentials_come_from_embscope_milvus_token_never_the_recorded_uri(
    tmp_path, milvus_server_uri, monkeypatch
):
    monkeypatch.setenv("EMBSCOPE_MILVUS_TOKEN", "alice:s3cret")
    with Store(tmp_path / "db.duckdb") as store:
        ds = store.add_dataset(_dataset(300, 8), name="p").id
        service = NeighbourService(store, milvus_uri=milvus_server_uri)
        query = service.resolve(ds, row=0)
        assert len(service.search(ds, query, k=5, backend="milvus").rows) == 5
        index = service.get_index(ds, backend="milvus")
        assert index._token == "alice:s3cret"  # reaches the server's client
        secret_uri = milvus_server_uri.replace("http://", "http://bob:hunter2@")
        with pytest.raises(InvalidInputError, match="EMBSCOPE_MILVUS_TOKEN"):
            service.search(ds, query, k=5, backend="milvus", uri=secret_uri)
        records = json.dumps([r.params for r in store.list_artifacts(kind="index")], default=str)
        assert milvus_server_uri in records, "the index is recorded with its uri"
        assert "s3cret" not in records and "hunter2" not in records
        service.delete_dataset(ds)
