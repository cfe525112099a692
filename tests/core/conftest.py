"""Fixtures of the core tests: a Milvus server reached by URI (tests/milvus_server.py), and the
filter expressions Milvus searches were sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a ``milvus-lite server`` with a temporary data folder,
    shared by the session's tests (each uses collections of its own) and stopped at its end.
    Skipped when pymilvus or milvus-lite is not installed (the ``milvus`` extra)."""
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pymilvus)")
    pytest.importorskip("milvus_lite", reason="the milvus extra is not installed (milvus-lite)")
    from tests.milvus_server import milvus_lite_server

    with milvus_lite_server(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri


@pytest.fixture
def milvus_expressions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The filter expressions the Milvus searches of the test were sent (``""``: none)."""
    from embscope.core.index_milvus import MilvusIndex

    sent: list[str] = []
    original = MilvusIndex._search_rows

    def spy(self, client, Q, want, ef, expr, *, exhaustive):  # type: ignore[no-untyped-def]
        sent.append(expr)
        return original(self, client, Q, want, ef, expr, exhaustive=exhaustive)

    monkeypatch.setattr(MilvusIndex, "_search_rows", spy)
    return sent
