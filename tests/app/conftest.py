"""Fixtures of the page tests."""

from __future__ import annotations

from pathlib import Path

import pytest


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
