"""A read-only store writes nothing: what it computes is kept in the process's memory
(core.artifacts.ReadOnlyCache), read back as from DuckDB, shared, bounded and evicted."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embscope.core import artifacts
from embscope.core.artifacts import ArtifactSpec, get_or_compute, read_only_cache
from embscope.core.clusters import ClusterSpec, get_or_cluster
from embscope.core.compare_runs import ComparisonSpec, get_or_compare_datasets
from embscope.core.compression.runs import CompressionSpec, get_or_evaluate
from embscope.core.diagnostics_runs import EfDiagnosticsSpec, ef_diagnostics
from embscope.core.errors import DatabaseBusyError, InvalidInputError
from embscope.core.geometry.scorecard import ScorecardSpec, get_or_compute_scorecard
from embscope.core.graph import GraphSpec, find_graph
from embscope.core.jobs import JobRunner
from embscope.core.neighbours import IndexSpec, NeighbourService
from embscope.core.projections import runs
from embscope.core.projections.runs import ProjectionSpec
from embscope.core.store import Store
from tests.helpers import folder_snapshot, make_parsed

SPECS = (
    GraphSpec, IndexSpec, ProjectionSpec, ScorecardSpec, EfDiagnosticsSpec, CompressionSpec,
    ComparisonSpec, ClusterSpec,
)  # fmt: skip


def _data(n: int = 300, d: int = 16, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, d)) + 4 * rng.standard_normal((3, d))[labels]).astype(np.float32)
    return X, pd.DataFrame({"label": [f"c{v}" for v in labels]})


def _make_db(path: Path) -> None:
    """Two datasets over the same items (ids "0".."299"): one and a noisy copy."""
    X, meta = _data()
    noise = np.random.default_rng(1).standard_normal(X.shape).astype(np.float32)
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        s.add_dataset(make_parsed(X + 0.3 * noise), name="noisy")


@pytest.fixture
def counted(monkeypatch) -> Counter[str]:
    """How many times each kind of result was computed (every spec's compute, counted)."""
    calls: Counter[str] = Counter()
    for cls in SPECS:

        def compute(self, store, request, progress, _original=cls.compute, _kind=cls.kind):
            calls[_kind] += 1
            return _original(self, store, request, progress)

        monkeypatch.setattr(cls, "compute", compute)
    return calls


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder holding only the database (the tests check its whole listing)."""
    path = tmp_path / "served"
    path.mkdir()
    _make_db(path / "db.duckdb")
    yield path
    read_only_cache().forget(path / "db.duckdb")


def _compute_everything(store: Store) -> dict[str, object]:
    """A projection, a scorecard, recall vs ef, a compression report, a comparison and a
    clustering, through the public functions the CLI, the API and the pages call."""
    service = NeighbourService(store)
    return {
        "projection": runs.compute_projection(store, 1, method="pca", metric="l2"),
        "scorecard": get_or_compute_scorecard(store, 1, k=10, metric="l2"),
        "ef": ef_diagnostics(service, 1, metric="l2", k=10),
        "compression": get_or_evaluate(
            store, 1, codecs=["int8", "pq:4"], metric="l2", n_queries=50, k=5
        ),
        "comparison": get_or_compare_datasets(store, 1, 2, k=5, metric="l2"),
        "clusters": get_or_cluster(store, 1, metric="l2"),
    }


# Wall times differ from run to run; everything else must be equal.
TIMINGS = {"seconds", "created", "qps", "duration_s"}


# What depends on how a multi-threaded HNSW build went (recall vs ef): close, not equal,
# between two builds (never between a result and its record).
BUILT = {"recall", "recall_ci", "per_query_recall", "spearman_rho", "spearman_p"}


def _timing(name: object) -> bool:
    return isinstance(name, str) and (name in TIMINGS or name.endswith(("_seconds", "_ms")))


def _same(a: object, b: object, path: str = "", *, built_apart: bool = False) -> None:
    """Assert equal field by field (NaN equal to NaN, arrays by dtype, shape and values),
    leaving wall times out (``built_apart``: and HNSW recalls only close)."""
    name = path.rsplit(".", 1)[-1]
    if built_apart and name in BUILT:
        assert type(a) is type(b), path
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, path
            assert abs(float(np.mean(a)) - float(np.mean(b))) < 0.05, path
        return
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), path
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == b, (path, a, b)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]", built_apart=built_apart)
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and list(a) == list(b), path
        for key in a:
            if not _timing(key):
                _same(a[key], b[key], f"{path}.{key}", built_apart=built_apart)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            if not _timing(f.name) and f.name != "fingerprint":
                _same(
                    getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}",
                    built_apart=built_apart,
                )  # fmt: skip
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


def test_a_read_only_store_keeps_its_results_in_memory_and_writes_nothing(folder, counted):
    db = folder / "db.duckdb"
    before = folder_snapshot(folder)
    ro = Store(db, read_only=True)
    first = _compute_everything(ro)
    computed = dict(counted)
    assert computed == {
        # one l2 graph per dataset: the first shared by every result, the second's for the
        # comparison
        "knn_graph": 2,
        "projection": 1,
        "scorecard": 1,
        "ef_diagnostics": 1,
        "compression": 1,
        "comparison": 1,
        "clusters": 1,
    }
    # A second request, on this store or on another read-only open of the same file (another
    # session of the server), is answered from memory: nothing is computed again.
    again = _compute_everything(ro)
    with Store(db, read_only=True) as other:
        elsewhere = _compute_everything(other)
        assert counted == computed
        # Listings see them too: the gallery, and the graph's search for a wide enough one.
        [listed] = runs.list_projections(other, 1)
        assert listed.fingerprint == first["projection"].fingerprint and listed.coords is None
        graph = find_graph(other, 1, metric="l2", k=10)
        assert graph is not None and graph.k >= 150
        assert get_or_compute_scorecard(other, 1, k=10, metric="l2", run=False) is not None
    for name in first:
        # Read back exactly as computed, wall times included (the record's, not new ones).
        _same(again[name], first[name], name)
        _same(elsewhere[name], first[name], name)
    assert again["projection"].created == first["projection"].created is not None
    assert again["projection"].seconds == first["projection"].seconds
    ro.close()
    # Nothing was written: not the database, nor anything beside it (no .indexes/, no .wal,
    # no temporary files), and the database holds no artifact.
    assert folder_snapshot(folder) == before
    with Store(db, read_only=True) as check:
        assert check.list_artifacts() == [] and check.list_jobs() == []
    # The same requests on a writable copy give the same results, field by field.
    copy = folder.parent / "writable.duckdb"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as w:
        written = _compute_everything(w)
        assert counted["projection"] == 2
        stored_kinds = Counter(a.kind for a in w.list_artifacts())
    for name in first:
        _same(first[name], written[name], name, built_apart=name == "ef")
        assert first[name] is not None
    # The writable store stored what memory keeps for the read-only file.
    kept = read_only_cache().records(os.path.realpath(db))
    assert stored_kinds == Counter(r.kind for r in kept) == computed


def test_memory_records_read_back_exactly_as_duckdb_records(folder):
    """The codec's document and arrays of each result, kept in memory and written to
    DuckDB, read back identical: the same JSON, the same arrays (dtype, shape, values)."""
    db = folder / "db.duckdb"
    copy = folder.parent / "writable.duckdb"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as w:
        results = _compute_everything(w)
        for record in w.list_artifacts():
            disk = w.get_artifact(record.fingerprint)
            assert disk is not None
            cache = artifacts.ReadOnlyCache()
            cache.put(
                "x", kind=disk.kind, fingerprint=disk.fingerprint, dataset_id=disk.dataset_id,
                params=disk.params, arrays=disk.arrays, duration_s=disk.duration_s,
                lineage=disk.lineage,
            )  # fmt: skip
            kept = cache.get("x", disk.fingerprint)
            assert kept is not None
            assert kept.params == disk.params and list(kept.params) == list(disk.params)
            assert kept.lineage == disk.lineage and kept.status == disk.status == "done"
            assert kept.arrays.keys() == disk.arrays.keys()
            for name, arr in disk.arrays.items():
                assert kept.arrays[name].dtype == arr.dtype
                assert np.array_equal(kept.arrays[name], arr, equal_nan=arr.dtype.kind == "f")
                assert kept.arrays[name].flags.writeable  # a copy the reader owns
    assert results["projection"].coords is not None


@dataclass(frozen=True)
class BlockRequest:
    name: str
    mib: float


@dataclass(frozen=True)
class Block:
    values: np.ndarray


class BlockSpec(ArtifactSpec[BlockRequest, Block]):
    """A result of a chosen size (float64 zeros), counting its computations."""

    kind = "test_block"
    result_type = Block

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def key(self, request: BlockRequest) -> tuple[object, ...]:
        return (request.name, request.mib)

    def describe(self, request: BlockRequest) -> dict[str, object]:
        return {"name": request.name}

    def compute(self, store, request: BlockRequest, progress) -> Block:
        self.calls[request.name] += 1
        return Block(np.zeros(int(request.mib * 2**20) // 8))


def _ask(store: Store, spec: BlockSpec, name: str, mib: float = 1.0) -> Block:
    result = get_or_compute(store, spec, BlockRequest(name, mib))
    assert result is not None
    return result


def test_the_bound_evicts_the_least_recently_used(folder, monkeypatch):
    db = folder / "db.duckdb"
    before = folder_snapshot(folder)
    monkeypatch.setenv(artifacts.READ_ONLY_CACHE_ENV, "2.5")  # MiB: two 1-MiB results fit
    cache = read_only_cache()
    spec = BlockSpec()
    with Store(db, read_only=True) as ro:
        held = cache.nbytes
        _ask(ro, spec, "a")
        _ask(ro, spec, "b")
        assert cache.nbytes - held > 2 * 2**20
        _ask(ro, spec, "a")  # read: now the most recently used
        evicted = cache.evicted
        _ask(ro, spec, "c")  # evicts b, the least recently used
        assert cache.evicted == evicted + 1
        assert cache.nbytes <= 2.5 * 2**20
        assert spec.calls == {"a": 1, "b": 1, "c": 1}
        assert [s.request["name"] for s in artifacts.stored(ro, spec)] == ["c", "a"]
        _ask(ro, spec, "a")
        _ask(ro, spec, "c")
        assert spec.calls == {"a": 1, "b": 1, "c": 1}
        _ask(ro, spec, "b")  # gone: computed again (and evicts a)
        assert spec.calls == {"a": 1, "b": 2, "c": 1}
        assert artifacts.load(ro, spec, artifacts.fingerprint(spec, BlockRequest("a", 1))) is None
        # A result larger than the whole bound is returned, and not kept.
        assert _ask(ro, spec, "huge", 3.0).values.nbytes == 3 * 2**20
        _ask(ro, spec, "huge", 3.0)
        assert spec.calls["huge"] == 2
        # 0 keeps nothing: every request computes (the behaviour before the cache).
        monkeypatch.setenv(artifacts.READ_ONLY_CACHE_ENV, "0")
        _ask(ro, spec, "d")
        _ask(ro, spec, "d")
        assert spec.calls["d"] == 2
    assert folder_snapshot(folder) == before


def test_the_bound_setting(monkeypatch, caplog):
    cache = read_only_cache()
    monkeypatch.delenv(artifacts.READ_ONLY_CACHE_ENV, raising=False)
    assert cache.limit_bytes == 2**30  # 1 GiB by default
    monkeypatch.setenv(artifacts.READ_ONLY_CACHE_ENV, "64")
    assert cache.limit_bytes == 64 * 2**20
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv(artifacts.READ_ONLY_CACHE_ENV, bad)
        assert cache.limit_bytes == 2**30, bad
    assert "EMBSCOPE_READ_ONLY_CACHE_MB" in caplog.text


def test_readers_get_their_own_arrays(folder):
    spec = BlockSpec()
    with Store(folder / "db.duckdb", read_only=True) as ro:
        first = _ask(ro, spec, "a", 0.01)
        first.values[:] = 7.0  # the computed result belongs to its caller
        again = _ask(ro, spec, "a", 0.01)
        assert not again.values.any()
        again.values[:] = 9.0  # and so does each result read back
        assert not _ask(ro, spec, "a", 0.01).values.any()


def test_results_are_kept_per_database_file(folder, tmp_path):
    other = tmp_path / "other.duckdb"
    other.write_bytes((folder / "db.duckdb").read_bytes())
    spec = BlockSpec()
    try:
        with Store(folder / "db.duckdb", read_only=True) as a:
            _ask(a, spec, "x", 0.01)
        with Store(other, read_only=True) as b:
            _ask(b, spec, "x", 0.01)
            assert artifacts.stored(b, spec)[0].request == {"name": "x"}
        with Store(folder / "db.duckdb", read_only=True) as a:
            _ask(a, spec, "x", 0.01)
        assert spec.calls["x"] == 2
        # A writable store of the same file never reads them.
        with Store(folder / "db.duckdb") as w:
            assert artifacts.stored(w, spec) == []
    finally:
        read_only_cache().forget(other)


def test_jobs_on_a_read_only_store_live_in_memory(folder):
    db = folder / "db.duckdb"
    with Store(db) as s:  # a job a dead writable server left running
        s.put_job(
            key="old", kind="projection", dataset_id=1, label="UMAP of points", params={},
            state="running",
        )  # fmt: skip
    before = folder_snapshot(folder)
    with Store(db, read_only=True) as ro:
        runner = JobRunner(ro, workers=1)
        try:
            request = runs.projection_request(ro, 1, method="pca")
            job = artifacts.submit(runner, ro, runs.PROJECTIONS, request)
            assert job.wait(60) and job.status().state == "done", job.status()
            assert job.result == artifacts.fingerprint(runs.PROJECTIONS, request)
            assert runs.load_projection(ro, job.result) is not None
            states = {s.key: s.state for s in runner.jobs()}
            # The recorded one cannot be running (no writer can hold the file): interrupted.
            assert states == {job.key: "done", "old": "interrupted"}
            assert not runner.active()
            assert [r["key"] for r in ro.list_jobs()] == ["old"]  # nothing recorded
        finally:
            runner.shutdown()
    assert folder_snapshot(folder) == before


def test_milvus_is_refused_on_a_read_only_store(folder):
    before = folder_snapshot(folder)
    with Store(folder / "db.duckdb", read_only=True) as ro:
        service = NeighbourService(ro)
        with pytest.raises(InvalidInputError, match="Milvus backend is not available on a read"):
            service.get_index(1, metric="cosine", backend="milvus")
        query = service.resolve(1, row=0)
        with pytest.raises(InvalidInputError, match="would create collections"):
            service.search(1, query, k=5, backend="milvus")
        # hnsw and exact answer, from memory
        assert len(service.search(1, query, k=5, backend="hnsw").rows) == 5
        assert service.has_index(1, metric="cosine")
    assert folder_snapshot(folder) == before


HOLD = textwrap.dedent(
    """
    import sys, time
    from embscope.core.store import Store
    store = Store(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("holding", flush=True)
    time.sleep(60)
    """
)


def _hold(db: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_read_only_opens_share_the_file_and_shut_writers_out(folder):
    """What DuckDB allows: read-only opens in several processes at once (a read-only server
    and `embscope datasets`), none while a writer holds the file, no writer while they do."""
    db = folder / "db.duckdb"
    before = folder_snapshot(folder)
    reader = _hold(db, "ro")  # say, `embscope serve --read-only`
    try:
        with Store(db, read_only=True) as ro:  # `embscope datasets` beside it
            assert [d.name for d in ro.list_datasets()] == ["points", "noisy"]
        with pytest.raises(DatabaseBusyError, match=f"process {reader.pid}"):
            Store(db)  # `embscope ingest`: refused, the holder named
    finally:
        reader.kill()
        reader.wait()
    assert folder_snapshot(folder) == before
    writer = _hold(db, "rw")  # say, a writable `embscope serve`
    try:
        with pytest.raises(DatabaseBusyError, match=f"process {writer.pid}"):
            Store(db, read_only=True)
    finally:
        writer.kill()
        writer.wait()
