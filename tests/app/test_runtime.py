"""The process-wide store, neighbour service and job runner (app.runtime): made once, under a
lock, and not lost when a browser clears Streamlit's caches."""

from __future__ import annotations

import threading

import pytest
import streamlit as st

from embscope.app import runtime
from embscope.core.errors import InvalidInputError


def test_one_of_each_per_database_even_after_streamlit_caches_are_cleared(db):
    store, service, runner = (
        runtime.get_store(), runtime.get_neighbour_service(), runtime.get_job_runner(),
    )  # fmt: skip
    assert service.store is store and runner.store is store
    st.cache_data.clear()  # what a browser's "Clear cache" does
    st.cache_resource.clear()
    assert runtime.get_store() is store
    assert runtime.get_neighbour_service() is service
    assert runtime.get_job_runner() is runner
    assert runtime.get_store(str(db.resolve())) is store  # keyed by the resolved path


def test_sessions_starting_at_once_share_one_runner(db):
    start = threading.Barrier(8)
    got: list[object] = []

    def session() -> None:
        start.wait()
        got.append(runtime.get_job_runner())

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len({id(r) for r in got}) == 1


def test_reset_shuts_down_and_forgets(db):
    store, runner = runtime.get_store(), runtime.get_job_runner()
    runtime.reset()
    assert runtime.get_store() is not store and runtime.get_job_runner() is not runner
    with pytest.raises(InvalidInputError, match="shut down"):
        runner.submit("after-reset", lambda progress: None, kind="test", label="late")


def test_the_runner_warms_up_the_projection_methods_when_asked(db, monkeypatch):
    ran = threading.Event()
    monkeypatch.setattr(runtime, "warm_up_projections", ran.set)
    monkeypatch.setenv("EMBSCOPE_WARM_UP", "0")
    runtime.get_job_runner()
    assert not ran.wait(0.5)
    runtime.reset()
    monkeypatch.setenv("EMBSCOPE_WARM_UP", "1")
    runtime.get_job_runner()
    assert ran.wait(10)
