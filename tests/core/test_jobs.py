"""embscope.core.jobs: background work with progress, cancel, sharing, serialisation and a record."""

from __future__ import annotations

import os
import threading
import time

import pytest

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.jobs import JOB_NICENESS, JobRunner
from embscope.core.store import Store


@pytest.fixture
def runner():
    r = JobRunner(workers=2)
    yield r
    r.shutdown(wait=2)


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_runs_in_background_and_reports_progress(runner):
    gate = threading.Event()
    seen = []

    def work(progress):
        progress(0.25, "a quarter")
        seen.append(threading.current_thread().name)
        gate.wait(5)
        progress(0.75, "three quarters")
        return 42

    job = runner.submit("k1", work, kind="test", label="test job")
    assert _wait_for(lambda: job.status().message == "a quarter")
    status = job.status()
    assert status.state == "running" and status.fraction == pytest.approx(0.25)
    assert seen and seen[0] != threading.current_thread().name  # not the caller's thread
    gate.set()
    assert job.wait(5)
    assert job.result == 42
    status = runner.status("k1")
    assert status.state == "done" and status.fraction == 1.0 and status.seconds >= 0


def test_live_lists_only_queued_and_running_jobs_newest_first(tmp_path):
    gates = [threading.Event(), threading.Event()]

    def work(i):
        def run(progress):
            progress(0.1 * (i + 1), "started")
            gates[i].wait(5)

        return run

    with Store(tmp_path / "jobs.duckdb") as store:
        r = JobRunner(store, workers=2)
        try:
            assert r.live() == []
            r.submit("done", lambda p: 1, kind="test", label="quick").wait(5)
            first = r.submit("a", work(0), kind="test", label="a")
            time.sleep(0.01)  # created times differ
            r.submit("b", work(1), kind="test", label="b")
            assert _wait_for(lambda: [s.fraction for s in r.live()] == [0.2, 0.1])
            assert [s.key for s in r.live()] == ["b", "a"]  # the finished one is left out
            assert {s.key for s in r.jobs()} == {"done", "a", "b"}
            gates[0].set()
            assert first.wait(5)
            assert [s.key for s in r.live()] == ["b"]
        finally:
            for g in gates:
                g.set()
            r.shutdown(wait=2)


def test_same_key_shares_one_computation(runner):
    calls = []
    gate = threading.Event()

    def work(progress):
        calls.append(1)
        gate.wait(5)
        return "x"

    a = runner.submit("same", work, kind="t", label="a")
    b = runner.submit("same", work, kind="t", label="b")
    assert a is b
    gate.set()
    assert a.wait(5)
    assert calls == [1]
    # a finished key runs again when submitted again
    c = runner.submit("same", work, kind="t", label="c")
    assert c is not a and c.wait(5) and calls == [1, 1]


def test_cancel_stops_work_at_next_progress_report(runner):
    started = threading.Event()

    def work(progress):
        started.set()
        for i in range(1000):
            if progress(i / 1000, "looping"):
                raise OperationCancelled("stopped")
            time.sleep(0.005)
        return "finished"

    job = runner.submit("c", work, kind="t", label="cancel me")
    assert started.wait(5)
    t0 = time.monotonic()
    assert runner.cancel("c")
    assert job.wait(5)
    assert time.monotonic() - t0 < 1.0
    assert job.status().state == "cancelled" and job.result is None
    assert not runner.cancel("c")  # nothing active any more


def test_queued_job_cancelled_before_it_starts_never_runs(runner):
    gate = threading.Event()
    ran = []
    first = runner.submit("s1", lambda p: gate.wait(5), kind="t", label="1", serial=True)
    second = runner.submit("s2", lambda p: ran.append(1), kind="t", label="2", serial=True)
    assert second.status().state == "queued"
    runner.cancel("s2")
    gate.set()
    assert first.wait(5) and second.wait(5)
    assert ran == [] and second.status().state == "cancelled"


def test_serial_jobs_never_overlap(runner):
    active = []
    overlaps = []
    lock = threading.Lock()

    def work(progress):
        with lock:
            active.append(1)
            if len(active) > 1:
                overlaps.append(len(active))
        time.sleep(0.05)
        with lock:
            active.pop()

    jobs = [runner.submit(f"n{i}", work, kind="t", label="", serial=True) for i in range(4)]
    assert all(j.wait(5) for j in jobs)
    assert overlaps == []


def test_warm_up_runs_first_on_the_serial_lane_and_may_fail():
    order = []
    gate = threading.Event()

    def slow_warm_up():
        gate.wait(5)
        order.append("warm-up")

    def broken_warm_up():
        raise RuntimeError("no compiler")

    runner = JobRunner(warm_up=(slow_warm_up, broken_warm_up))
    try:
        serial = runner.submit(
            "s", lambda p: order.append("serial"), kind="t", label="", serial=True
        )
        pool = runner.submit("p", lambda p: order.append("pool"), kind="t", label="")
        assert pool.wait(5) and order == ["pool"]  # the pool does not wait for the warm-up
        time.sleep(0.1)
        assert serial.status().state == "queued"
        gate.set()
        assert serial.wait(5) and order == ["pool", "warm-up", "serial"]
        assert serial.status().state == "done"  # a failed warm-up leaves the lane working
    finally:
        runner.shutdown()
    with pytest.raises(InvalidInputError):
        JobRunner(warm_up=("not callable",))


def test_pool_jobs_run_concurrently(runner):
    barrier = threading.Barrier(2, timeout=5)
    jobs = [runner.submit(f"p{i}", lambda p: barrier.wait(), kind="t", label="") for i in range(2)]
    assert all(j.wait(5) for j in jobs)
    assert all(j.status().state == "done" for j in jobs)  # a broken barrier would have failed


def test_failures_are_reported_not_raised(runner):
    def bad_input(progress):
        raise InvalidInputError("k must be positive")

    def crash(progress):
        raise RuntimeError("boom")

    a = runner.submit("f1", bad_input, kind="t", label="")
    b = runner.submit("f2", crash, kind="t", label="")
    assert a.wait(5) and b.wait(5)
    assert a.status().state == "failed" and a.status().error == "k must be positive"
    assert b.status().state == "failed" and "RuntimeError: boom" in b.status().error


def test_bad_submissions_are_refused(runner):
    with pytest.raises(InvalidInputError):
        runner.submit("", lambda p: None, kind="t", label="")
    with pytest.raises(InvalidInputError):
        runner.submit("x", "not callable", kind="t", label="")
    with pytest.raises(InvalidInputError):
        JobRunner(workers=0)


def test_states_are_recorded_and_a_dead_process_leaves_interrupted_jobs(tmp_path):
    path = tmp_path / "jobs.duckdb"
    store = Store(path)
    runner = JobRunner(store)
    job = runner.submit("rec", lambda p: 1, kind="projection", label="L", params={"a": 1})
    assert job.wait(5)
    assert _wait_for(lambda: store.list_jobs()[0]["state"] == "done")
    record = store.list_jobs()[0]
    assert (
        record["key"] == "rec" and record["params"] == {"a": 1} and record["kind"] == "projection"
    )
    # A process that died mid-job left a "running" row behind.
    store.put_job(
        key="dead", kind="projection", dataset_id=None, label="D", params={}, state="running"
    )
    runner.shutdown(wait=2)
    store.close()

    store = Store(path)
    runner = JobRunner(store)  # a new server process
    try:
        status = runner.status("dead")
        assert status.state == "interrupted" and not status.active
        assert {s.key for s in runner.jobs()} == {"rec", "dead"}
        again = runner.submit("dead", lambda p: "ok", kind="projection", label="D")
        assert again.wait(5) and runner.status("dead").state == "done"
    finally:
        runner.shutdown(wait=2)
        store.close()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
def test_jobs_run_at_a_lower_priority_than_requests(runner):
    def niceness(progress=None):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def from_a_child_thread(progress):
        out = []
        t = threading.Thread(target=lambda: out.append(niceness()))
        t.start()
        t.join()
        return out[0]

    before = niceness()
    pool = runner.submit("nice-pool", niceness, kind="t", label="")
    child = runner.submit("nice-child", from_a_child_thread, kind="t", label="", serial=True)
    assert pool.wait(5) and child.wait(5)
    assert pool.result >= JOB_NICENESS and child.result >= JOB_NICENESS  # numba's threads too
    assert niceness() == before  # the caller's thread is left alone


def test_the_jobs_table_keeps_the_newest_finished_jobs_and_every_live_one(tmp_path):
    from embscope.core import jobs as jobs_module

    keep = jobs_module._KEEP_FINISHED
    with Store(tmp_path / "many.duckdb") as store:
        for i in range(keep + 60):  # an older server that finished many jobs
            store.put_job(key=f"old{i:04d}", kind="projection", dataset_id=None, label=str(i),
                          params={}, state="done")  # fmt: skip
        store.put_job(key="left", kind="index", dataset_id=None, label="L", params={},
                      state="running")  # fmt: skip
        runner = JobRunner(store)  # a new server process prunes as it opens
        try:
            keys = {r["key"] for r in store.list_jobs()}
            assert len(keys) == keep and "left" in keys  # interrupted, newest: kept
            assert runner.status("left").state == "interrupted"
            assert "old0000" not in keys and f"old{keep + 59:04d}" in keys
            # A running server prunes as jobs finish, never a live one.
            gate = threading.Event()
            live = runner.submit("live", lambda p: gate.wait(10), kind="projection", label="x")
            for i in range(keep // 4):
                assert runner.submit(f"new{i}", lambda p: 1, kind="projection", label="y").wait(5)
            assert _wait_for(lambda: len(store.list_jobs()) <= keep + 1)
            assert "live" in {r["key"] for r in store.list_jobs()} and live.status().active
            gate.set()
            assert live.wait(5)
        finally:
            runner.shutdown(wait=2)
        with pytest.raises(InvalidInputError, match="keep"):
            store.prune_jobs(-1)
        recorded = len(store.list_jobs())
        assert store.prune_jobs(0) == recorded  # nothing live is left
        assert store.list_jobs() == []
