"""Fixtures of the page tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(autouse=True)
def fresh_runtime():
    """Each test gets its own store, neighbour service and job runner (app.runtime keeps
    them for the process): those a test made are shut down and closed after it."""
    yield
    from embscope.app import runtime

    runtime.reset()


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    """A fresh database file that the app under test (AppTest) opens through $EMBSCOPE_DB."""
    path = tmp_path / "page.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    return path


def assert_index_built_in_background(dataset_id: int, *, metric: str = "cosine") -> None:
    """A dataset saved from a page gets its default index from a background job (so its first
    query does not build it): the job exists, finishes, and the index is there."""
    from embscope.app.runtime import get_job_runner, get_neighbour_service

    service = get_neighbour_service()
    job = get_job_runner().get(service.index_fingerprint(dataset_id, metric=metric))
    assert job is not None and job.kind == "index", job
    assert job.wait(60), job.status()
    assert job.status().state == "done", job.status()
    assert service.has_index(dataset_id, metric=metric)
