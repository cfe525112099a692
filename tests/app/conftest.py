"""Fixtures of the page tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    """A fresh database file that the app under test (AppTest) opens through $EMBSCOPE_DB."""
    path = tmp_path / "page.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    return path
