"""Crashes lose nothing: processes working on a DuckDB file are SIGKILLed at random moments.

Three kinds of work are killed, many times each (``KILLS``), at seeded random moments of
their real work:

1. ``embscope ingest`` of a 30k-row Parquet file (typed metadata) or .npy file;
2. ``embscope graph`` building a dataset's shared neighbour graph;
3. a projection job (LargeVis) submitted to a :class:`core.jobs.JobRunner` the way the
   Projections page submits it;

and a real ``embscope serve`` is SIGKILLed while a projection job started from the page
(in headless Chromium) runs.

The work runs in processes forked from ``crash_driver.py forkserver`` (everything imported
once; each child opens the database itself, like a fresh process). A child says ``ready``
when its work starts; the kill comes a random fraction of the work's span later (the span is
what a completed run took), every other kill aimed at the last third of the span, where the
commit, the checkpoint and the close happen. A run that finishes first does not count.

After every kill the database must open, read-only (as ``embscope datasets`` would) and for
writing (as a server would), and both must list the same things; every catalog row,
artifact (parameters, lineage, creation time) and table committed before the kill must be
unchanged, and only the tables of catalogued datasets may exist; whatever appeared must be
complete and correct (a dataset identical to a complete ingest of the same file, a graph
with true sorted distances, a projection of the right shape with its scores). The bytes
(vectors, ids, metadata, artifact arrays) are compared for the base dataset and three more
things in turn after every kill, and for everything at the end of each phase. A job that
was running is ``interrupted`` once a new runner starts (``done`` if its result had been
committed), and when submitted again it completes and stores its projection.

A second process opening the file while another holds it must get one ``error:`` line and
status 2 from every command that opens the database, and the dashboard must show a plain
error instead of a traceback.

``EMBSCOPE_KILL_SEED`` replays another sequence of kill moments; ``-s`` prints the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embscope.core.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("crash_driver.py")
SEED = int(os.environ.get("EMBSCOPE_KILL_SEED", "20240607"))
FIXED_TABLES = {"artifacts", "datasets", "embscope_counters", "embscope_settings", "jobs"}
INGEST_ROWS = 30_000
GRAPH_ROWS = 8_000
PROJECTION_ROWS = 1_500
KILLS = {"ingest": 10, "graph": 7, "projection": 7}
LOCK_MESSAGE = "in use by another process"


# -- fingerprints ---------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _frame_digest(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Column names, dtypes and a hash of every value (NaN/None included) of a frame."""
    out = []
    for name in frame.columns:
        col = frame[name]
        values = pd.util.hash_pandas_object(col, index=False).to_numpy()
        out.append((str(name), str(col.dtype), _sha(values.tobytes())))
    return out


def _dataset_digest(store: Store, dataset_id: int) -> dict[str, Any]:
    ids = store.load_ids(dataset_id)
    return {
        "info": store.get_dataset(dataset_id),
        "vectors": _sha(store.load_vectors(dataset_id).tobytes()),
        "ids": _sha("\x1f".join(ids.tolist()).encode()),
        "metadata": _frame_digest(store.load_metadata(dataset_id)),
    }


def _artifact_digest(store: Store, fingerprint: str) -> dict[str, Any]:
    art = store.get_artifact(fingerprint)  # loads the arrays: a broken blob raises here
    assert art is not None, f"listed artifact {fingerprint} cannot be read"
    return {
        "id": art.id,
        "dataset_id": art.dataset_id,
        "kind": art.kind,
        "params": json.dumps(art.params, sort_keys=True),
        "lineage": json.dumps(art.lineage, sort_keys=True),
        "created": art.created,
        "duration_s": art.duration_s,
        "status": art.status,
        "arrays": {
            k: (str(v.dtype), v.shape, _sha(np.ascontiguousarray(v).tobytes()))
            for k, v in art.arrays.items()
        },
    }


def _artifact_summary(art) -> tuple:
    return (
        art.id, art.dataset_id, art.kind, json.dumps(art.params, sort_keys=True),
        json.dumps(art.lineage, sort_keys=True), art.created, art.duration_s, art.status,
    )  # fmt: skip


def catalog(store: Store) -> dict[str, Any]:
    """What the database lists: catalog rows, artifact summaries and tables (cheap)."""
    return {
        "datasets": {d.id: d for d in store.list_datasets()},
        "artifacts": {a.fingerprint: _artifact_summary(a) for a in store.list_artifacts()},
        "tables": set(store.table_names()),
    }


def deep_digest(store: Store, what: tuple[str, Any]) -> dict[str, Any]:
    kind, key = what
    return _dataset_digest(store, key) if kind == "dataset" else _artifact_digest(store, key)


# -- the shared database ----------------------------------------------------------------------


@dataclass
class World:
    db: Path
    tmp: Path
    expected: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    kills: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    # Byte-level fingerprints of everything committed, taken when it first appeared.
    deep: dict[tuple[str, Any], dict[str, Any]] = field(default_factory=dict)
    checks: int = 0
    deep_checks: int = 0
    # Kills that landed after the commit (the new thing was there, complete, afterwards).
    committed: dict[str, int] = field(default_factory=dict)

    def note(self, phase: str, what: str, delay: float, run: Run, new: list) -> None:
        self.log.append(
            f"{phase}: {what}: kill after {delay:.3f} s: "
            + ("killed" if run.killed else f"finished first (status {run.status})")
            + (f", {len(new)} new thing(s) complete" if new else ", nothing new")
        )
        self.kills[phase] = self.kills.get(phase, 0) + run.killed
        self.completed[phase] = self.completed.get(phase, 0) + (not run.killed)
        self.committed[phase] = self.committed.get(phase, 0) + (run.killed and bool(new))


def _everything(cat: dict[str, Any]) -> list[tuple[str, Any]]:
    return [("dataset", i) for i in sorted(cat["datasets"])] + [
        ("artifact", fp) for fp in sorted(cat["artifacts"])
    ]


def _embscope() -> list[str]:
    script = Path(sys.executable).with_name("embscope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "embscope.app.cli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from embscope.core.demo import gaussian_mixture
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.graph import get_or_build_graph
    from embscope.core.ingest import from_arrays

    tmp = tmp_path_factory.mktemp("crash")
    db = tmp / "crash.duckdb"
    rng = np.random.default_rng(SEED)
    # The files the ingest phase reads: vectors with typed metadata (text, integers with
    # nulls, floats, booleans, timestamps, unicode), and a bare .npy.
    X = rng.standard_normal((INGEST_ROWS, 32)).astype(np.float32)
    frame = pd.DataFrame(
        {
            "item": [f"doc-{i:06d}" for i in range(INGEST_ROWS)],
            "label": pd.array(rng.integers(0, 12, INGEST_ROWS), dtype="Int64"),
            "score": rng.random(INGEST_ROWS),
            "flag": rng.random(INGEST_ROWS) < 0.5,
            "title": [f"titre n°{i} — ünïcode" for i in range(INGEST_ROWS)],
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(INGEST_ROWS), "s"),
            "vec": list(X),
        }
    )
    frame.loc[::97, "label"] = pd.NA
    frame.to_parquet(tmp / "ingest.parquet", index=False)
    np.save(tmp / "ingest.npy", rng.standard_normal((INGEST_ROWS, 64)).astype(np.float32))
    with Store(db) as store:
        meta = pd.DataFrame(
            {"label": rng.integers(0, 5, 500), "note": [f"<b>{i}</b> ' OR 1=1" for i in range(500)]}
        )
        store.add_dataset(
            from_arrays(rng.standard_normal((500, 16)).astype(np.float32), metadata=meta),
            name="base small",
        )
        store_demo_dataset(store, gaussian_mixture(GRAPH_ROWS, 32, 8, seed=1), name="graph target")
        proj = store_demo_dataset(
            store, gaussian_mixture(PROJECTION_ROWS, 24, 6, seed=2), name="projection target"
        )
        get_or_build_graph(store, proj.id, k=150, metric="cosine")  # a committed artifact
        world = World(db=db, tmp=tmp, expected=catalog(store))
        world.deep = {w: deep_digest(store, w) for w in _everything(world.expected)}
    return world


# -- running and killing ----------------------------------------------------------------------


@dataclass
class Run:
    killed: bool
    status: int
    work_seconds: float
    stdout: str
    stderr: str


class ForkServer:
    """``crash_driver.py forkserver``: runs each piece of work in a fresh forked child with
    everything already imported, so a run costs its work, not an interpreter start-up."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), "forkserver"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(120)
        assert first.startswith("ready"), first

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def _next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the fork server said nothing for {timeout} s") from None

    def _send(self, request: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def run(self, argv: list[str], *, kill_after: float | None, timeout: float = 120) -> Run:
        """Run ``crash_driver.py ARGV`` in a child; SIGKILL it ``kill_after`` s after its
        ``ready`` line, or let it finish (None)."""
        self.count += 1
        out, err = self.tmp / f"run{self.count}.out", self.tmp / f"run{self.count}.err"
        self._send({"op": "run", "argv": argv, "out": str(out), "err": str(err)})
        ready = self._next(60)
        word, pid = ready.split()[:2]
        started = time.monotonic()
        assert word == "ready", f"{argv}: {ready} {err.read_text()}"
        pid = int(pid)
        done = None
        if kill_after is None:
            done = self._next(timeout)
            assert done.split()[:2] == ["done", str(pid)], f"{argv}: {done} {err.read_text()}"
        else:
            time.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)  # the child is not reaped yet: the pid is still its
        seconds = time.monotonic() - started
        self._send({"op": "wait", "pid": pid})
        while True:
            line = self._next(timeout)
            if line.startswith("status"):
                break
        code = int(line.split()[2])
        return Run(code == -signal.SIGKILL, code, seconds, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def forks(world: World):
    server = ForkServer(world.tmp)
    yield server
    server.close()


def kill_moments(rng: random.Random, world: World, phase: str) -> Iterator[tuple[int, float]]:
    """(attempt, moment) pairs until ``KILLS[phase]`` kills have been done (at most three
    times as many attempts: a run can finish before its kill, more often on a busy machine).
    A moment is a fraction of the work's span: every other one anywhere in it, the others in
    its last third (the commit, the checkpoint and the close), a little past its end
    included."""
    target = KILLS[phase]
    for attempt in range(3 * target):
        if world.kills.get(phase, 0) >= target:
            return
        late = attempt % 2 == 1
        yield attempt, rng.uniform(2 / 3, 1.05) if late else rng.uniform(0.0, 1.0)


def verify(world: World, *, new_ok, deep: str = "rotate") -> list[tuple[str, Any]]:
    """Open the database after a kill and compare it with what was committed before.

    The catalog (every dataset's catalog row, every artifact's parameters, lineage and
    creation time, the list of tables) is compared in full after every kill; the bytes
    (vectors, ids, metadata, artifact arrays) of the small base dataset and of three more
    stored things in turn after every kill, and of everything with ``deep="all"`` (at the
    end of each phase). ``new_ok(kind, key, store, digest)`` vets anything that was not
    there before (the killed process may have committed it just before it died): it must
    be complete and correct. Updates ``world.expected`` and ``world.deep``.
    """
    # Read-only first, as `embscope datasets` after a crash would open it, then for writing.
    with Store(world.db, read_only=True) as store:
        seen_ro = catalog(store)
    with Store(world.db) as store:
        seen = catalog(store)
        assert seen_ro == seen, "a read-only open sees another database than a writable open"
        before = world.expected
        for did, info in before["datasets"].items():
            assert did in seen["datasets"], f"dataset {did} committed before the kill is gone"
            assert seen["datasets"][did] == info, f"dataset {did}'s catalog row changed"
        for fp, summary in before["artifacts"].items():
            assert fp in seen["artifacts"], f"artifact {fp} committed before the kill is gone"
            assert seen["artifacts"][fp] == summary, f"artifact {fp} changed across the kill"
        # No half-written table: exactly the catalog's tables and each dataset's two.
        wanted = FIXED_TABLES | {f"{t}_{i}" for i in seen["datasets"] for t in ("vectors", "meta")}
        assert seen["tables"] == wanted, (
            f"tables {seen['tables'] ^ wanted} do not match the catalog"
        )
        # What appeared must be complete (and is fingerprinted from now on).
        new = []
        for what in _everything(seen):
            if what not in world.deep:
                new.append(what)
                digest = deep_digest(store, what)
                assert new_ok(*what, store, digest), f"an unexpected or incomplete {what} appeared"
                world.deep[what] = digest
        # The bytes of what was there before.
        old = list(_everything(before))
        if deep == "all":
            chosen = old
        else:
            start = (3 * world.checks) % max(len(old), 1)
            chosen = {old[0], *(old + old)[start : start + 3]} if old else set()
        for what in chosen:
            assert deep_digest(store, what) == world.deep[what], f"{what} changed across the kill"
        world.deep_checks += len(chosen)
    world.checks += 1
    world.expected = seen
    return new


# -- 1. ingest ----------------------------------------------------------------------------------


def _matches_file(path: Path, digest: dict[str, Any]) -> bool:
    """A stored dataset holds exactly the vectors and ids of its source file."""
    if path.suffix == ".npy":
        X, ids = np.load(path), [str(i) for i in range(digest["info"].n)]
    else:
        frame = pd.read_parquet(path)
        X, ids = np.stack(frame["vec"].to_numpy()), frame["item"].tolist()
    return (
        digest["vectors"] == _sha(np.ascontiguousarray(X, dtype=np.float32).tobytes())
        and digest["ids"] == _sha("\x1f".join(ids).encode())
        and digest["info"].n == len(X)
    )


def test_kill_during_ingest(world: World, forks: ForkServer) -> None:
    rng = random.Random(SEED + 1)
    sources = {
        "parquet": ["ingest.parquet", "--id-column", "item", "--vector-column", "vec"],
        "npy": ["ingest.npy"],
    }
    # What a complete ingest of each file stores: the calibration run's dataset.
    complete: dict[str, dict[str, Any]] = {}

    def ingest_args(kind: str, name: str) -> list[str]:
        args = sources[kind]
        return ["cli", "--db", str(world.db), "ingest", str(world.tmp / args[0]), *args[1:],
                "--name", name]  # fmt: skip

    def accept(kind: str, name: str):
        def new_ok(what, key, store, digest):
            if what != "dataset" or digest["info"].name != name:
                return False
            if kind not in complete:  # the calibration run itself: check it against the file
                complete[kind] = digest
                return _matches_file(world.tmp / sources[kind][0], digest)
            ref = complete[kind]
            same = ("n", "dim", "source", "format", "id_column", "vector_column",
                    "metadata_columns", "warnings", "fingerprint", "info")  # fmt: skip
            return all(getattr(digest["info"], f) == getattr(ref["info"], f) for f in same) and all(
                digest[p] == ref[p] for p in ("vectors", "ids", "metadata")
            )

        return new_ok

    # A run to completion: how long the work takes, and one more committed dataset.
    spans = {}
    for kind in sources:
        run = forks.run(ingest_args(kind, f"calibration {kind}"), kill_after=None)
        assert run.status == 0, run.stderr
        spans[kind] = run.work_seconds
        verify(world, new_ok=accept(kind, f"calibration {kind}"))
    lost = []
    for i, moment in kill_moments(rng, world, "ingest"):
        kind = ("parquet", "npy")[i % 2]
        name = f"ingest {i}"
        run = forks.run(ingest_args(kind, name), kill_after=moment * spans[kind])
        if not run.killed:
            assert run.status == 0, run.stderr
            spans[kind] = min(spans[kind], run.work_seconds)  # the first run is the slowest
        new = verify(world, new_ok=accept(kind, name))
        world.note("ingest", f"{kind} {name!r}", moment * spans[kind], run, new)
        if run.killed and not new:
            lost.append((kind, name))
    assert world.kills["ingest"] == KILLS["ingest"], world.log
    # An ingest a kill stopped runs again in full under the same name (a fresh `embscope`).
    kind, name = lost[0]
    done = _run_cli(world, ingest_args(kind, name)[1:])
    assert done.returncode == 0, done.stderr
    verify(world, new_ok=accept(kind, name), deep="all")


# -- 2. graph build -------------------------------------------------------------------------------


def _graph_is_complete(store: Store, fp: str, *, dataset_id: int, metric: str) -> bool:
    from embscope.core.artifacts import load
    from embscope.core.graph import GRAPHS, KIND

    art = store.get_artifact(fp, with_arrays=False)
    if art is None or art.kind != KIND or art.dataset_id != dataset_id or art.status != "done":
        return False
    graph = load(store, GRAPHS, fp)  # read through the artifact layer, as every consumer does
    if graph is None or graph.metric != metric:
        return False
    info = store.get_dataset(dataset_id)
    idx, dist = graph.indices, graph.distances
    k = int(graph.params["k"])
    if idx.shape != (info.n, k) or dist.shape != (info.n, k):
        return False
    if not np.isfinite(dist).all() or (np.diff(dist, axis=1) < -1e-6).any():
        return False
    if (idx < 0).any() or (idx >= info.n).any() or (idx == np.arange(info.n)[:, None]).any():
        return False
    # The stored distances are the true ones for a sample of rows.
    X = store.load_vectors(dataset_id)
    rows = np.random.default_rng(0).choice(info.n, 50, replace=False)
    a, b = X[rows][:, None, :], X[idx[rows]]
    if metric == "l2":
        true = np.linalg.norm(a - b, axis=2)
    else:
        an = a / np.linalg.norm(a, axis=2, keepdims=True)
        bn = b / np.linalg.norm(b, axis=2, keepdims=True)
        true = 1.0 - (an * bn).sum(axis=2)
    return bool(np.allclose(true, dist[rows], atol=1e-4))


def test_kill_during_graph_build(world: World, forks: ForkServer) -> None:
    rng = random.Random(SEED + 2)
    with Store(world.db, read_only=True) as store:
        target = store.get_dataset("graph target").id
    # Each (metric, k) is a different graph; one that completes is done, the next is killed.
    todo = [("cosine", 150), ("l2", 150), ("cosine", 160), ("l2", 160), ("cosine", 170),
            ("l2", 170), ("cosine", 180), ("l2", 180), ("cosine", 190), ("l2", 190)]  # fmt: skip

    def args(metric: str, k: int) -> list[str]:
        return ["cli", "--db", str(world.db), "graph", str(target), "--metric", metric,
                "-k", str(k), "--json"]  # fmt: skip

    def accept(metric: str):
        def new_ok(what, key, store, digest):
            return what == "artifact" and _graph_is_complete(
                store, key, dataset_id=target, metric=metric
            )

        return new_ok

    metric, k = todo.pop(0)
    run = forks.run(args(metric, k), kill_after=None)
    assert run.status == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0])["reused"] is False
    span = run.work_seconds
    verify(world, new_ok=accept(metric))
    metric, k = todo.pop(0)
    for _, moment in kill_moments(rng, world, "graph"):
        run = forks.run(args(metric, k), kill_after=moment * span)
        if not run.killed:
            assert run.status == 0, run.stderr
            span = min(span, run.work_seconds)
        new = verify(world, new_ok=accept(metric))
        world.note("graph", f"{metric} k={k}", moment * span, run, new)
        if new:  # this graph is stored: kill the building of the next one
            metric, k = todo.pop(0)
    assert world.kills["graph"] == KILLS["graph"], world.log
    # The graph a kill interrupted is built in full by the next run (a fresh `embscope`).
    done = _run_cli(world, args(metric, k)[1:])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reused"] is False
    verify(world, new_ok=accept(metric), deep="all")


# -- 3. projection job ----------------------------------------------------------------------------


def _clusters_are_complete(store: Store, fp: str, *, dataset_id: int) -> bool:
    from embscope.core.artifacts import load
    from embscope.core.clusters import CLUSTERINGS

    result = load(store, CLUSTERINGS, fp)
    if result is None or store.get_artifact(fp).dataset_id != dataset_id:
        return False
    labels = result.labels
    n = store.get_dataset(dataset_id).n
    return labels.shape == (n,) and int((labels >= 0).sum()) == int(result.sizes.sum())


def _projection_is_complete(store: Store, fp: str, *, key: str, dataset_id: int) -> bool:
    from embscope.core.graph import KIND as GRAPH_KIND
    from embscope.core.projections import runs

    art = store.get_artifact(fp)
    if art is None:
        return False
    if art.kind == GRAPH_KIND:  # the job's first step: the shared graph
        return _graph_is_complete(store, fp, dataset_id=dataset_id, metric="cosine")
    if art.kind == "clusters":  # the map's clusters, found by themselves beside the layout
        return _clusters_are_complete(store, fp, dataset_id=dataset_id)
    if fp != key or art.kind != runs.KIND or art.status != "done":
        return False
    projection = runs.load_projection(store, fp)  # through the artifact layer
    if projection is None or projection.coords is None:
        return False
    coords = projection.coords
    info = store.get_dataset(dataset_id)
    if coords.shape != (info.n, 2) or coords.dtype != np.float32:
        return False
    quality = projection.quality
    return bool(np.isfinite(coords).all()) and quality.get("trustworthiness@10", 0) > 0.5


def _restart(
    world: World, key: str, dataset_id: int, method: str, seed: int, *, rerun: bool
) -> str:
    """What a new server does: its runner marks the dead job interrupted (done, when the job
    had stored its projection before the kill); submitted again (the page's Compute button),
    an interrupted job completes and stores its projection. Returns the state found."""
    from embscope.core.jobs import JobRunner
    from embscope.core.projections import runs

    with Store(world.db) as store:
        runner = JobRunner(store, workers=1)
        try:
            status = runner.status(key)
            stored = runs.load_projection(store, key, with_coords=False) is not None
            if status is None:  # killed before the job was submitted: nothing ran
                assert not stored
                return "never started"
            recorded = {j["key"]: j["state"] for j in store.list_jobs()}
            assert recorded[key] == status.state
            if stored:
                assert status.state == "done", status
                return "done"
            assert status.state == "interrupted", status
            assert key in {s.key for s in runner.jobs(dataset_id) if s.state == "interrupted"}
            if not rerun:
                return "interrupted"

            def work(progress):
                return runs.compute_projection(
                    store, dataset_id, method=method, dims=2, seed=seed, metric=None,
                    params={}, progress=progress,
                ).fingerprint  # fmt: skip

            job = runner.submit(
                key, work, kind="projection", label="restarted", dataset_id=dataset_id,
                params={"method": method, "seed": seed}, serial=True,
            )  # fmt: skip
            assert job.wait(120), "the restarted job did not finish"
            assert job.status().state == "done", job.status()
            assert runs.load_projection(store, key) is not None
        finally:
            runner.shutdown()
        assert {j["key"]: j["state"] for j in store.list_jobs()}[key] == "done"
    return "interrupted"


def test_kill_during_projection_job(world: World, forks: ForkServer) -> None:
    from embscope.core.projections import runs

    rng = random.Random(SEED + 3)
    method = "largevis"
    with Store(world.db, read_only=True) as store:
        target = store.get_dataset("projection target").id
        keys = [
            runs.projection_key(store, target, method=method, dims=2, seed=seed, metric=None)
            for seed in range(3 * KILLS["projection"] + 1)
        ]

    def args(seed: int) -> list[str]:
        return ["project", str(world.db), str(target), method, str(seed)]

    def accept(key: str):
        def new_ok(what, fp, store, digest):
            return what == "artifact" and _projection_is_complete(
                store, fp, key=key, dataset_id=target
            )

        return new_ok

    run = forks.run(args(0), kill_after=None)
    assert run.status == 0, run.stderr
    span = run.work_seconds
    verify(world, new_ok=accept(keys[0]))
    found = []
    for attempt, moment in kill_moments(rng, world, "projection"):
        seed = attempt + 1
        # a new projection each time (its own seed): the kill lands in work, not a lookup
        run = forks.run(args(seed), kill_after=moment * span)
        if not run.killed:
            assert run.status == 0, run.stderr
            span = min(span, run.work_seconds)
        new = verify(world, new_ok=accept(keys[seed]))
        world.note("projection", f"seed {seed}", moment * span, run, new)
        # Every interrupted job shows as such; the first is also run again in full (and the
        # server test reruns one from the page).
        state = _restart(world, keys[seed], target, method, seed, rerun="interrupted" not in found)
        world.log[-1] += f"; the next runner found the job {state}"
        found.append(state)
        verify(world, new_ok=accept(keys[seed]))
    assert world.kills["projection"] == KILLS["projection"], world.log
    assert "interrupted" in found, world.log  # at least one job was restarted
    verify(world, new_ok=lambda *a: False, deep="all")


# -- a second process -----------------------------------------------------------------------------


def _lock_commands(world: World) -> list[list[str]]:
    out = str(world.tmp / "export.npy")
    return [
        ["ingest", str(world.tmp / "ingest.npy"), "--name", "never stored"],
        ["datasets"],
        ["datasets", "--json"],
        ["export", "1", "--out", out],
        ["delete", "1"],
        ["demo"],
        ["generate", "swiss-roll", "--n", "200"],
        ["graph", "1"],
        ["neighbours", "1", "--row", "0"],
        ["geometry", "1"],
        ["project", "1", "--method", "pca"],
        ["compress", "1", "--codec", "int8"],
        ["compare", "1", "1"],
    ]


def _run_cli(world: World, command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_embscope(), "--db", str(world.db), *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_clear_lock_error(
    command: list[str], done: subprocess.CompletedProcess | Run, holder: int | None = None
) -> None:
    lines = done.stderr.splitlines()
    code = done.returncode if isinstance(done, subprocess.CompletedProcess) else done.status
    assert code == 2, (command, code, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (command, done.stderr)
    assert LOCK_MESSAGE in lines[0] and "Traceback" not in done.stderr, (command, lines)
    assert done.stdout == "", (command, done.stdout)
    if holder is not None:  # the message names the process to stop
        assert f"{LOCK_MESSAGE} {holder} " in lines[0], (command, holder, lines)


def _hold(world: World, *, read_only: bool) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), "hold", str(world.db), *(["ro"] if read_only else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _forked_cli(world: World, forks: ForkServer, command: list[str]) -> Run:
    return forks.run(["cli", "--db", str(world.db), *command], kill_after=None)


def test_second_process_gets_a_clear_error(world: World, forks: ForkServer) -> None:
    """Every command that opens the database, run while another process holds it: one
    ``error:`` line, status 2, nothing on stdout, the database unchanged. The console script
    `embscope` itself runs the first three (in parallel with the rest); the others run
    app.cli.main in forked processes, which saves an interpreter start-up each."""
    commands = _lock_commands(world)
    holder = _hold(world, read_only=False)
    try:
        with ThreadPoolExecutor(3) as pool:
            real = list(pool.map(lambda c: _run_cli(world, c), commands[:3]))
            forked = [_forked_cli(world, forks, c) for c in commands[3:]]
        for command, done in zip(commands, real + forked, strict=True):
            _assert_clear_lock_error(command, done, holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # A read-only holder (a long `embscope export`, say) shuts out writers but not readers.
    holder = _hold(world, read_only=True)
    try:
        for command in (commands[0], commands[4]):
            _assert_clear_lock_error(command, _forked_cli(world, forks, command), holder.pid)
        done = _run_cli(world, ["datasets", "--json"])
        assert done.returncode == 0, done.stderr
        assert {d["dataset"] for d in json.loads(done.stdout)} == set(world.expected["datasets"])
    finally:
        holder.kill()
        holder.wait()
    verify(world, new_ok=lambda *a: False, deep="all")  # nothing was changed


# -- the server --------------------------------------------------------------------------------


class Server:
    """`embscope serve` on a free loopback port (its pid is Streamlit's: serve execs it)."""

    def __init__(self, world: World, name: str):
        from tests.e2e.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(world.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*_embscope(), "--db", str(world.db), "serve", "--port", str(self.port)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def wait(self) -> Server:
        from tests.e2e.server import wait_http

        wait_http(self.url, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.e2e
def test_server_killed_during_a_projection_job(world: World, browser) -> None:
    """The dashboard: `serve` refuses a database another process holds, in one line; a server
    SIGKILLed while its projection job runs loses nothing, and the next server shows the job
    as interrupted and runs it again from the page."""
    from embscope.core.projections import runs
    from tests.e2e.server import screenshot, wait_for_app

    rng = random.Random(SEED + 4)
    seed = 1000 + rng.randrange(1000)  # a projection no other test computed
    with Store(world.db, read_only=True) as store:
        target = store.get_dataset("projection target").id
        key = runs.projection_key(store, target, method="largevis", dims=2, seed=seed)
    link = f"/projections?dataset={target}&method=largevis&seed={seed}"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    server = None
    try:
        # 1. Another process holds the database: `embscope serve` says so and does not start.
        holder = _hold(world, read_only=False)
        try:
            command = ["serve", "--port", "1"]
            _assert_clear_lock_error(command, _run_cli(world, command), holder.pid)
        finally:
            holder.kill()
            holder.wait()
        # 2. Once it is free the server starts; then `embscope` gets the clear error.
        server = Server(world, "serve").wait()
        page.goto(server.url + link)
        wait_for_app(page)
        button = page.get_by_role("button", name="Compute the LargeVis projection")
        button.wait_for(timeout=30_000)
        for command in (["ingest", str(world.tmp / "ingest.npy")], ["datasets"]):
            _assert_clear_lock_error(command, _run_cli(world, command))
        # 3. Start the job from the page and SIGKILL the server while it runs.
        button.click()
        page.get_by_role("button", name="Cancel").wait_for(timeout=30_000)
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        server.stop(signal.SIGKILL)
        assert server.proc.returncode == -signal.SIGKILL
        server = None

        def accept(what, fp, store, digest):
            return what == "artifact" and _projection_is_complete(
                store, fp, key=key, dataset_id=target
            )

        new = verify(world, new_ok=accept)
        world.log.append(
            f"serve: largevis seed {seed}: SIGKILL {delay:.3f} s into the job"
            + (", its projection had been stored" if new else ", nothing new")
        )
        world.kills["serve"] = world.kills.get("serve", 0) + 1
        # 4. The next server shows the job as interrupted; the page's button runs it again.
        server = Server(world, "serve-after").wait()
        page.goto(server.url + link)
        wait_for_app(page)
        if not new:
            page.get_by_text("The last run was interrupted").wait_for(timeout=30_000)
            sidebar = page.locator("[data-testid='stSidebar']").inner_text()
            assert "interrupted" in sidebar, sidebar
            screenshot(page, "crash-job-interrupted")
            page.get_by_role("button", name="Compute the LargeVis projection").click()
        page.get_by_text("Trustworthiness@10").wait_for(timeout=120_000)
        wait_for_app(page)
        assert page.locator("[data-testid='stException']").count() == 0
        assert dialogs == []
        server.stop()
        server = None
        verify(world, new_ok=accept)
        with Store(world.db, read_only=True) as store:
            assert runs.load_projection(store, key) is not None
            assert {j["key"]: j["state"] for j in store.list_jobs()}[key] == "done"
    finally:
        context.close()
        if server is not None:
            server.stop()


# -- what the kills taught the store ----------------------------------------------------------


def test_a_job_whose_result_was_stored_is_done_not_interrupted() -> None:
    """Killed after its projection was committed but before it recorded itself as done, a
    job is not offered for a rerun: the next runner marks it done."""
    from embscope.core.jobs import JobRunner

    with Store(":memory:") as store:
        for key in ("a" * 40, "b" * 40):
            store.put_job(key=key, kind="projection", dataset_id=None, label=key[:1],
                          params={}, state="running")  # fmt: skip
        store.put_artifact(kind="projection", fingerprint="a" * 40, arrays={"x": np.ones(3)})
        runner = JobRunner(store, workers=1)
        try:
            assert runner.status("a" * 40).state == "done"
            assert runner.status("b" * 40).state == "interrupted"
        finally:
            runner.shutdown()


def test_an_empty_database_file_gets_a_clear_message(tmp_path) -> None:
    """A process killed between creating the file and writing DuckDB's header leaves an empty
    file: opening it says so (and that it holds nothing) instead of DuckDB's bare error."""
    from embscope.core.errors import InvalidInputError

    empty = tmp_path / "empty.duckdb"
    empty.touch()
    for read_only in (False, True):
        with pytest.raises(InvalidInputError, match="is an empty file"):
            Store(empty, read_only=read_only)
    assert empty.stat().st_size == 0  # left alone


def test_report(world: World) -> None:
    """Print what the kill tests did (visible with -s or in the -ra summary on failure)."""
    sys.stdout.write(
        f"\nkills per phase: {world.kills}; of them after the commit: {world.committed}; "
        f"runs that finished before the kill: {world.completed}; "
        f"checks {world.checks} (byte-level {world.deep_checks}); finally "
        f"{len(world.expected['datasets'])} datasets and {len(world.expected['artifacts'])} "
        "artifacts intact\n" + "\n".join(world.log) + "\n"
    )
    assert sum(world.kills.values()) >= 20 or len(world.kills) < 3
