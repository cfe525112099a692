"""embscope.core.memory and the job runner's memory budget: the machine's memory, the budget
from the environment, the per-kind peak estimates, and admission (queue, run alone, refuse)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from embscope.core import memory
from embscope.core.errors import InvalidInputError
from embscope.core.jobs import JobRunner
from embscope.core.memory import (
    BUDGET_ENV,
    GIB,
    MIB,
    MachineMemory,
    budget_bytes,
    format_gib,
    graph_peak,
    job_peak,
    layout_peak,
    machine_memory,
    vectors_bytes,
)

# -- the machine --------------------------------------------------------------------------


def _meminfo(tmp_path, total_kb=16 * 2**20, available_kb=10 * 2**20):
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       {total_kb} kB\nMemFree:         1234 kB\n"
        f"MemAvailable:   {available_kb} kB\nHugePages_Total:       0\n"
    )
    return path


def test_machine_memory_reads_meminfo(tmp_path):
    got = machine_memory(meminfo=_meminfo(tmp_path), cgroup=tmp_path / "none")
    assert got == MachineMemory(total=16 * GIB, available=10 * GIB)


def test_a_lower_cgroup_v2_limit_wins_and_max_means_none(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{4 * GIB}\n")
    (cg / "memory.current").write_text(f"{3 * GIB}\n")
    got = machine_memory(meminfo=_meminfo(tmp_path), cgroup=cg)
    assert got == MachineMemory(total=4 * GIB, available=1 * GIB)
    (cg / "memory.max").write_text("max\n")
    assert machine_memory(meminfo=_meminfo(tmp_path), cgroup=cg).total == 16 * GIB


def test_cgroup_v1_unlimited_leaves_the_machine_figure(tmp_path):
    v1 = tmp_path / "cg" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    got = machine_memory(meminfo=_meminfo(tmp_path), cgroup=tmp_path / "cg")
    assert got == MachineMemory(total=16 * GIB, available=10 * GIB)
    (v1 / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    got = machine_memory(meminfo=_meminfo(tmp_path), cgroup=tmp_path / "cg")
    assert got == MachineMemory(total=2 * GIB, available=1 * GIB)


def test_this_machine_reports_something_plausible():
    got = machine_memory()
    assert got.total is not None and 256 * MIB < got.total < 2**50
    assert got.available is None or 0 <= got.available <= got.total


# -- the budget -------------------------------------------------------------------------------


def test_budget_is_three_quarters_of_the_machine_by_default():
    machine = MachineMemory(total=16 * GIB, available=None)
    assert budget_bytes({}, machine=machine) == 12 * GIB
    assert budget_bytes({BUDGET_ENV: "  "}, machine=machine) == 12 * GIB
    assert budget_bytes({}, machine=MachineMemory(None, None)) == 6 * GIB  # 8 GiB assumed


@pytest.mark.parametrize(("text", "gib"), [("12", 12.0), ("0.5", 0.5), (" 3.25 ", 3.25)])
def test_budget_from_the_environment(text, gib):
    machine = MachineMemory(total=16 * GIB, available=None)
    assert budget_bytes({BUDGET_ENV: text}, machine=machine) == int(gib * GIB)


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf", "1e-12", "12GiB", "1,5"])
def test_a_bad_budget_is_a_clear_error(text):
    with pytest.raises(InvalidInputError, match=BUDGET_ENV) as err:
        budget_bytes({BUDGET_ENV: text})
    assert repr(text) in str(err.value) and "e.g. 12" in str(err.value)


def test_a_bad_budget_stops_the_job_runner_at_start(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(InvalidInputError, match=BUDGET_ENV):
        JobRunner(workers=1)
    monkeypatch.setenv(BUDGET_ENV, "1.5")
    runner = JobRunner(workers=1)
    try:
        assert runner.memory_budget == int(1.5 * GIB)
    finally:
        runner.shutdown(wait=2)


def test_format_gib():
    assert format_gib(3.4 * GIB) == "3.4 GiB"
    assert format_gib(18 * GIB) == "18.0 GiB"
    assert format_gib(1536 * GIB) == "1,536.0 GiB"
    assert format_gib(50 * MIB) == "0.05 GiB"
    assert format_gib(1 * MIB) == "<0.01 GiB"


# -- the estimates ----------------------------------------------------------------------------


def test_estimates_scale_as_stated():
    n, d, k = 100_000, 384, 30  # 2n x d vectors: 293 MiB, DuckDB's buffers below 512 MiB
    fixed = memory.JOB_OVERHEAD + memory.GRAPH_CODE
    # linear in n while the read's buffers are below their cap: twice the points, twice what
    # is above the fixed part
    assert graph_peak(2 * n, d, k) - fixed == pytest.approx(2 * (graph_peak(n, d, k) - fixed), 1e-6)
    # the read: 2.4 V per dimension below the cap, V + 512 MiB above it (1M x 384)
    assert graph_peak(n, d + 1, k) - graph_peak(n, d, k) == pytest.approx(2.4 * 4 * n, abs=2)
    big = 1_000_000
    assert graph_peak(big, d + 1, k) - graph_peak(big, d, k) == pytest.approx(4 * big, abs=2)
    assert graph_peak(big, d, k) == pytest.approx(
        fixed + vectors_bytes(big, d) + 512 * MIB + big * (2000 + 24 * k), abs=2
    )
    # 24 bytes per point and neighbour
    assert graph_peak(n, d, k + 1) - graph_peak(n, d, k) == 24 * n
    # HNSW graphs add their links (M = 16: 8 M + 64 bytes a point)
    assert graph_peak(n, d, k, method="hnsw") - graph_peak(n, d, k) == n * (8 * 16 + 64)
    # layouts: 80 (LargeVis) and 120 (UMAP) bytes per point and neighbour
    assert (
        layout_peak(n, d, k + 1, method="largevis") - layout_peak(n, d, k, method="largevis")
        == 80 * n
    )
    assert layout_peak(n, d, k + 1, method="umap") - layout_peak(n, d, k, method="umap") == 120 * n
    # a stored graph wider than the layout's k is read whole: 24 bytes per extra column
    wide = layout_peak(n, d, 30, method="largevis", graph_k=150)
    assert wide - layout_peak(n, d, 30, method="largevis") == 24 * n * 120
    assert vectors_bytes(1_000_000, 384) == 1_536_000_000
    for fn in (lambda: graph_peak(-1, 3, 2), lambda: vectors_bytes(10, 2.5)):
        with pytest.raises(InvalidInputError):
            fn()
    with pytest.raises(InvalidInputError, match="unknown layout method"):
        layout_peak(n, d, k, method="tsne")


# Peaks measured in a fresh process (growth of VmHWM over the job, through the artifact layer,
# graph stored where the kind only reads it; the layouts' numba code compiled before; preview:
# no graph stored, 50,000 sampled), Gaussian mixtures, 2 cores, with the bounded store reads
# (caac2a6, 284d7a5) and the HNSW index built from the store's batches (67d00ae): MiB.
# Where a size was measured twice, the larger figure.
MEASURED_MIB = [
    ("graph", 100_000, 384, 30, 1072),
    ("graph", 200_000, 384, 30, 1600),
    ("graph", 200_000, 64, 30, 1062),
    ("graph", 50_000, 384, 150, 672),
    ("largevis", 100_000, 384, 30, 659),
    ("largevis", 200_000, 384, 30, 1036),
    ("largevis", 200_000, 64, 30, 504),
    ("umap", 200_000, 384, 15, 1041),
    ("umap", 200_000, 64, 15, 564),
    ("pca", 200_000, 384, 10, 1495),
    ("pca", 200_000, 64, 10, 507),
    ("heatgeo", 50_000, 384, 150, 578),
    ("clusters", 100_000, 384, 15, 570),
    ("clusters", 200_000, 384, 15, 1094),
    ("clusters", 200_000, 64, 15, 1114),
    ("scorecard", 200_000, 384, 20, 783),
    ("scorecard", 200_000, 64, 20, 297),
    ("compression", 200_000, 384, 0, 693),
    ("compression", 200_000, 64, 0, 384),
    ("index", 200_000, 384, 0, 773),
    ("index", 200_000, 64, 0, 163),
    ("preview", 200_000, 384, 30, 721),
]


def _estimate(kind, n, d, k):
    if kind == "graph":
        return graph_peak(n, d, k, method="exact" if n <= 50_000 else "nndescent")
    if kind in ("largevis", "umap", "pca", "heatgeo"):
        return layout_peak(n, d, k, method=kind, graph_k=150 if n <= 50_000 else 30)
    if kind == "clusters":
        return memory.clusters_peak(n, d, k)
    if kind == "scorecard":
        return memory.geometry_peak(n, d, k)
    if kind == "compression":
        return memory.compression_peak(n, d)
    if kind == "preview":
        return memory.preview_peak(n, d, k, method="largevis", sample=50_000)
    return memory.index_peak(n, d)


@pytest.mark.parametrize(("kind", "n", "d", "k", "measured"), MEASURED_MIB)
def test_estimates_cover_measured_peaks_without_overshooting_far(kind, n, d, k, measured):
    estimate = _estimate(kind, n, d, k) / MIB
    assert 0.95 * measured <= estimate <= 2 * measured, (estimate, measured)


# bench/bench_scale.py at 1M x 384 (docs/SCALE.md): each step's peak RSS in a fresh CLI
# process (graph stored where the step only reads it; the index built from the store's
# batches; the preview on a fresh dataset, 50,000 sampled, unscored), GiB.
MILLION_GIB = [
    ("graph", 30, 5.05),
    ("largevis", 30, 4.19),
    ("umap", 15, 4.13),
    ("index", 0, 2.71),
    ("scorecard", 20, 2.56),
    ("compression", 0, 2.35),
    ("clusters", 15, 4.36),
    ("preview", 30, 2.34),
]
INTERPRETER_GIB = 0.25  # a fresh CLI process's own resident set before the step's work


@pytest.mark.parametrize(("kind", "k", "measured"), MILLION_GIB)
def test_estimates_at_a_million_points_match_the_bench_scale_figures(kind, k, measured):
    """The job's own peak (the figure less the interpreter) to at most 1.5x: a 1M job is not
    kept waiting for memory it will not use."""
    estimate = _estimate(kind, 1_000_000, 384, k) / GIB
    assert 1.0 <= estimate / (measured - INTERPRETER_GIB) <= 1.5, (estimate, measured)


def test_graph_width_is_core_graphs_stored_width():
    from embscope.core.graph import stored_width

    for metric in ("cosine", "l2", "ip"):
        for n in (2, 5, 151, 20_000, 20_001, 50_000, 50_001, 1_000_000):
            for k in (1, 10, 30, 100, 150, 200):
                if k < n:
                    assert memory.graph_width(k, n, metric) == stored_width(k, n, metric)


def test_the_constants_repeated_in_memory_are_the_modules_own():
    """core/memory.py cannot import these modules (they import the job runner through the
    artifact layer): what it repeats must stay what they say."""
    from embscope.core import graph
    from embscope.core.clusters import GRAPH_NEIGHBOURS
    from embscope.core.compression.runs import COMPRESSION_SAMPLE
    from embscope.core.geometry.scorecard import ID_K
    from embscope.core.hubness_reduction import DEFAULT_NEIGHBOURS
    from embscope.core.neighbours import DEFAULT_HNSW
    from embscope.core.projections.heatgeo_kernel import (
        MAX_LANDMARKS,
        MIN_LANDMARKS,
        WORK_BUDGET,
    )
    from embscope.core.projections.runs import QUALITY_K

    assert memory._EXACT_MAX_N == {
        "cosine": graph.NNDESCENT_MIN_N, "l2": graph.NNDESCENT_MIN_N, "ip": graph.EXACT_MAX_N,
    }  # fmt: skip
    assert (memory._EXACT_WIDTH, memory._APPROX_MIN_WIDTH) == (graph.GRAPH_K, graph.GRAPH_MIN_K)
    assert memory._CLUSTER_K == GRAPH_NEIGHBOURS and memory._GEOMETRY_MIN_K == ID_K
    assert memory._QUALITY_K == QUALITY_K and memory._HUBNESS_K == max(DEFAULT_NEIGHBOURS.values())
    assert memory._HNSW_M == DEFAULT_HNSW["M"]
    assert memory._COMPRESSION_SAMPLE == COMPRESSION_SAMPLE
    assert memory._HEAT_WORK == WORK_BUDGET
    assert memory._HEAT_LANDMARKS == (MIN_LANDMARKS, MAX_LANDMARKS)
    assert memory._landmarks(10**7, None) == MIN_LANDMARKS
    assert memory._landmarks(100, None) == 100 and memory._landmarks(10**6, 5000) == 5000


def test_every_artifact_kind_has_an_estimate_of_its_own():
    import embscope.core.clusters
    import embscope.core.compare_runs
    import embscope.core.compression.runs
    import embscope.core.diagnostics_runs
    import embscope.core.geometry.scorecard
    import embscope.core.graph
    import embscope.core.hubness_runs
    import embscope.core.neighbours
    import embscope.core.projections.label_scores
    import embscope.core.projections.runs  # noqa: F401
    from embscope.core.artifacts import ArtifactSpec

    kinds = {spec.kind for spec in ArtifactSpec.__subclasses__() if spec.__module__.startswith(
        "embscope.core.")}  # fmt: skip
    assert len(kinds) >= 11
    assert kinds <= memory.ESTIMATED_KINDS, kinds - memory.ESTIMATED_KINDS


def _request(n=1_000_000, d=384, metric="cosine", **fields):
    return SimpleNamespace(dataset=SimpleNamespace(n=n, dim=d), metric=metric, **fields)


def test_job_peak_reads_the_request():
    n, d = 1_000_000, 384
    graph = job_peak("knn_graph", _request(k=30, method="auto"))
    assert graph == graph_peak(n, d, 30)
    # a layout counts the graph it may have to build first, and its own peak
    umap = job_peak("projection", _request(method="umap", params={"n_neighbors": 15}))
    assert umap == max(graph, layout_peak(n, d, 15, method="umap", graph_k=30))
    wide = job_peak("projection", _request(method="umap", params={"n_neighbors": 100}))
    assert wide == max(graph_peak(n, d, 100), layout_peak(n, d, 100, method="umap"))
    # a preview lays out a sample: no graph of all n points, every vector read
    preview = job_peak(
        "projection",
        _request(method="umap", params={"n_neighbors": 15, "preview": True,
                                        "preview_sample": 50_000}),
    )  # fmt: skip
    assert preview == memory.preview_peak(n, d, 15, method="umap", sample=50_000)
    assert vectors_bytes(n, d) + 512 * MIB < preview < umap
    off = _request(method="umap", params={"n_neighbors": 15, "preview": False})
    assert job_peak("projection", off) == umap
    # PCA reads a stored graph to score, never builds one
    pca = job_peak("projection", _request(method="pca", params={}))
    assert pca == layout_peak(n, d, 10, method="pca")
    assert job_peak("index", _request(backend="hnsw", params={"M": 32})) == memory.index_peak(
        n, d, M=32
    )
    # inner product above 20,000 points: the graph is built through HNSW
    ip = job_peak("knn_graph", _request(n=30_000, k=10, method="auto", metric=None))
    assert ip == graph_peak(30_000, d, 150)  # metric None reads as cosine: exact, 150 wide
    ip = job_peak("knn_graph", _request(n=30_000, k=10, method="auto", metric="ip"))
    assert ip == graph_peak(30_000, d, 30, method="hnsw")
    # an unknown kind gets the conservative default, a request without a dataset 1 GiB
    assert job_peak("something new", _request()) == memory.default_peak(n, d)
    assert memory.default_peak(n, d) > max(graph, umap)
    assert job_peak("knn_graph", SimpleNamespace(k=3)) == GIB
    # two datasets compared: both counted
    both = job_peak("comparison", _request(other=SimpleNamespace(n=n, dim=d), k=10))
    assert both > 2 * (vectors_bytes(n, d) + 512 * MIB)


def test_artifacts_submit_states_the_estimate(tmp_path):
    from embscope.core import artifacts
    from embscope.core.graph import GRAPHS, GraphRequest
    from embscope.core.store import Store
    from tests.helpers import make_parsed

    X = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    with Store(tmp_path / "m.duckdb") as store:
        info = store.add_dataset(make_parsed(X), name="small")
        runner = JobRunner(store, workers=1, memory_budget=GIB)
        try:
            request = GraphRequest(info, "cosine", 5)
            job = artifacts.submit(runner, store, GRAPHS, request)
            assert job.status().memory == job_peak("knn_graph", request) > 0
            assert job.wait(30) and job.status().state == "done"
            assert runner.memory_reserved == 0
        finally:
            runner.shutdown(wait=5)


# -- admission --------------------------------------------------------------------------------

BUDGET = 1 * GIB


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


class Gated:
    """Work that says when it started and holds until released."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, progress):
        self.started.set()
        assert self.release.wait(10)
        return "ok"


@pytest.fixture
def runner():
    r = JobRunner(workers=3, memory_budget=BUDGET)
    yield r
    r.shutdown(wait=2)


def test_two_jobs_over_the_budget_run_one_after_the_other(runner):
    first, second = Gated(), Gated()
    big = int(0.6 * BUDGET)
    a = runner.submit("a", first, kind="t", label="a", memory=big, serial=True)
    assert first.started.wait(5)
    b = runner.submit("b", second, kind="t", label="b", memory=big)  # the other lane
    assert _wait_for(lambda: b.status().message.startswith("waiting for memory"))
    status = b.status()
    assert status.state == "queued" and not second.started.is_set()
    assert status.message == "waiting for memory: needs 0.6 GiB, 0.4 GiB of the 1.0 GiB budget free"
    assert status.memory == big and status.to_json()["memory"] == big
    assert runner.memory_reserved == big
    first.release.set()
    assert second.started.wait(5) and a.wait(5)
    assert b.status().state == "running" and runner.memory_reserved == big
    second.release.set()
    assert b.wait(5) and b.status().state == "done"
    assert runner.memory_reserved == 0


def test_small_jobs_run_together(runner):
    works = [Gated() for _ in range(3)]
    jobs = [
        runner.submit(f"s{i}", w, kind="t", label=f"s{i}", memory=int(0.3 * BUDGET))
        for i, w in enumerate(works)
    ]
    assert all(w.started.wait(5) for w in works)
    assert all(j.status().state == "running" for j in jobs)
    assert runner.memory_reserved == 3 * int(0.3 * BUDGET)
    for w in works:
        w.release.set()
    assert all(j.wait(5) for j in jobs) and runner.memory_reserved == 0


def test_the_message_states_the_expected_peak_before_a_worker_takes_it():
    r = JobRunner(workers=1, memory_budget=BUDGET)
    try:
        hold = Gated()
        r.submit("busy", hold, kind="t", label="busy")
        assert hold.started.wait(5)
        queued = r.submit("next", lambda p: 1, kind="t", label="next", memory=int(0.9 * GIB))
        assert queued.status().message == "waiting for a worker (expected peak 0.9 GiB)"
        hold.release.set()
        assert queued.wait(5) and queued.result == 1
    finally:
        r.shutdown(wait=2)


def test_a_big_job_is_not_starved_by_small_ones(runner):
    """First come, first served: a small job that would fit waits behind a big one that
    does not, and then runs beside it."""
    running, big, small = Gated(), Gated(), Gated()
    a = runner.submit("a", running, kind="t", label="a", memory=int(0.6 * BUDGET))
    assert running.started.wait(5)
    b = runner.submit("b", big, kind="t", label="b", memory=int(0.6 * BUDGET))
    assert _wait_for(lambda: b.status().message.startswith("waiting for memory"))
    c = runner.submit("c", small, kind="t", label="c", memory=int(0.1 * BUDGET))
    assert _wait_for(lambda: "after 1 job waiting before it" in c.status().message)
    assert not small.started.is_set() and c.status().state == "queued"
    running.release.set()
    assert big.started.wait(5) and small.started.wait(5)  # 0.6 + 0.1 fit together
    big.release.set()
    small.release.set()
    assert a.wait(5) and b.wait(5) and c.wait(5)
    assert runner.memory_reserved == 0


def test_a_job_above_the_budget_runs_alone(runner):
    small, alone, later = Gated(), Gated(), Gated()
    a = runner.submit("a", small, kind="t", label="a", memory=int(0.2 * BUDGET))
    assert small.started.wait(5)
    huge = runner.submit("huge", alone, kind="t", label="huge", memory=2 * BUDGET)
    assert _wait_for(lambda: "runs alone" in huge.status().message)
    assert huge.status().message == (
        "waiting for memory: needs 2.0 GiB, 0.8 GiB of the 1.0 GiB budget free; more than "
        "the whole budget, it runs alone when the others finish"
    )
    small.release.set()
    assert alone.started.wait(5) and a.wait(5)
    # while it runs, nothing else that counts its memory starts
    c = runner.submit("c", later, kind="t", label="c", memory=int(0.1 * BUDGET))
    assert _wait_for(lambda: c.status().message.startswith("waiting for memory"))
    assert not later.started.is_set()
    # work that states no memory is not held back
    assert runner.submit("free", lambda p: 7, kind="t", label="free").wait(5)
    alone.release.set()
    assert later.started.wait(5)
    later.release.set()
    assert huge.wait(5) and c.wait(5) and runner.memory_reserved == 0


def test_a_job_above_the_machine_is_refused_at_once(runner):
    ran = []
    too_big = 2 * max(runner.memory_limit, BUDGET)
    job = runner.submit("x", lambda p: ran.append(1), kind="t", label="x", memory=too_big)
    assert job.wait(1)
    status = job.status()
    assert status.state == "failed" and status.memory == too_big
    assert format_gib(too_big) in status.error and "machine" in status.error
    assert BUDGET_ENV in status.error
    time.sleep(0.05)
    assert ran == [] and runner.memory_reserved == 0
    # submitted again it is refused again (a failed job is not active)
    assert runner.submit("x", lambda p: 1, kind="t", label="x", memory=too_big) is not job


def test_cancelling_a_job_waiting_for_memory(runner):
    first, second, third = Gated(), Gated(), Gated()
    a = runner.submit("a", first, kind="t", label="a", memory=int(0.6 * BUDGET))
    assert first.started.wait(5)
    b = runner.submit("b", second, kind="t", label="b", memory=int(0.6 * BUDGET))
    c = runner.submit("c", third, kind="t", label="c", memory=int(0.3 * BUDGET))
    assert _wait_for(lambda: "after 1 job" in c.status().message)
    t0 = time.monotonic()
    assert runner.cancel("b")
    assert b.wait(2) and time.monotonic() - t0 < 1.0
    assert b.status().state == "cancelled" and not second.started.is_set()
    # the job behind it moves up and fits beside the running one
    assert third.started.wait(5)
    assert runner.memory_reserved == int(0.6 * BUDGET) + int(0.3 * BUDGET)
    first.release.set()
    third.release.set()
    assert a.wait(5) and c.wait(5) and runner.memory_reserved == 0


def test_submit_and_the_runner_check_their_memory_arguments(runner):
    for bad in (-1, True, 1.5, "1"):
        with pytest.raises(InvalidInputError, match="memory"):
            runner.submit("k", lambda p: 1, kind="t", label="k", memory=bad)
    for bad in (0, -5, 2.0, True):
        with pytest.raises(InvalidInputError, match="memory_budget"):
            JobRunner(workers=1, memory_budget=bad)
