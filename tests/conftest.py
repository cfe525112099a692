"""Shared fixtures: a fresh database per test (helpers the tests share are in tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Servers the tests start skip compiling every projection method at start-up (`embscope
# serve` does it by default): ~10 s of CPU per server that most tests never use.
os.environ.setdefault("EMBSCOPE_WARM_UP", "0")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def store(db_path: Path):
    from embscope.core.store import Store

    s = Store(db_path)
    yield s
    s.close()
