"""Helpers the tests share (fixtures stay in the conftest files)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def make_parsed(
    vectors: np.ndarray,
    metadata: pd.DataFrame | None = None,
    *,
    ids=None,
    source: str = "test.npy",
    id_column: str | None = None,
    warnings: tuple[str, ...] = (),
):
    """A ParsedDataset built directly (bypassing the readers) for store tests."""
    from embscope.core.ingest import ParsedDataset

    n = vectors.shape[0]
    return ParsedDataset(
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        ids=np.asarray([str(i) for i in range(n)] if ids is None else ids, dtype=object),
        metadata=pd.DataFrame(index=range(n)) if metadata is None else metadata,
        warnings=warnings,
        source=source,
        format="npy",
        id_column=id_column,
        vector_column=None,
    )


def snapshot(store) -> dict:
    """Everything a user could see in a database, to compare before and after a failed write."""
    out: dict = {"tables": store.table_names(), "datasets": []}
    cur = store._cursor()
    out["counters"] = cur.execute("SELECT * FROM embscope_counters ORDER BY name").fetchall()
    out["artifacts"] = cur.execute("SELECT id, fingerprint FROM artifacts ORDER BY id").fetchall()
    for d in store.list_datasets():
        vec = store.load_vectors(d.id)
        out["datasets"].append(
            (
                d.to_json(),
                vec.tobytes(),
                list(store.load_ids(d.id)),
                store.load_metadata(d.id).to_json(),
            )
        )
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``embscope`` in process: (exit status, stdout, stderr)."""
    from embscope.app.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def until(at: Any, predicate: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    """Rerun the AppTest ``at`` until ``predicate(at)`` holds: a page whose result comes from a
    background job shows it on a run after the job has finished."""
    deadline = time.monotonic() + timeout
    while not predicate(at):
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.3)
        at.run()
    return at


# The app's entry point, as `embscope serve` runs it (AppTest opens it in process).
MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def by_key(elements: Any, key: str) -> Any:
    """The AppTest element of ``elements`` with widget key ``key``."""
    return next(e for e in elements if e.key == key)


def open_page(name: str, query: dict | None = None, *, timeout: float = 120) -> Any:
    """An AppTest on page ``name`` (``pages/<name>.py``): from a link with ``query``, or with
    the first dataset chosen in the sidebar."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.run()
    at.switch_page(f"../pages/{name}.py")
    # A link opens on its own page: the address holds only the link's parameters.
    if query:
        at.query_params = dict(query)
    at.run()
    if not query:
        at.sidebar.selectbox[0].set_value(1)
        at.run()
    return at


def assert_index_built_in_background(dataset_id: int, *, metric: str | None = None) -> None:
    """A dataset saved from a page gets its default index, for its own metric, from a
    background job (so its first query does not build it): the job exists, finishes, and the
    index is there."""
    from embscope.app.runtime import get_job_runner, get_neighbour_service

    service = get_neighbour_service()
    metric = metric or service.dataset(dataset_id).metric
    job = get_job_runner().get(service.index_fingerprint(dataset_id, metric=metric))
    assert job is not None and job.kind == "index", job
    assert job.wait(60), job.status()
    assert job.status().state == "done", job.status()
    assert service.has_index(dataset_id, metric=metric)


def record_syncs(monkeypatch) -> list[tuple[str, ...]]:
    """Record, in order, every ``os.fsync`` (as ``("fsync", path of the descriptor)``) and
    ``os.replace`` (``("replace", src, dst)``) of this test, paths resolved. Linux only (the
    descriptor's path is read from /proc)."""
    import os

    import pytest

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("reads the path of a file descriptor from /proc")
    events: list[tuple[str, ...]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def recording_replace(src, dst, **kwargs):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return events


def assert_durable_rename(events: list[tuple[str, ...]], target: Path) -> None:
    """``target`` was written durably (:func:`core.index_base.atomic_write`): its temporary
    file synced, then renamed onto it, then its folder synced, one right after the other
    (among the events under that folder)."""
    import os

    folder = os.path.realpath(Path(target).parent)
    mine = [e for e in events if all(p == folder or p.startswith(folder + os.sep) for p in e[1:])]
    renames = [
        i for i, e in enumerate(mine) if e[0] == "replace" and e[2] == os.path.realpath(target)
    ]
    assert len(renames) == 1, (target, mine)
    i = renames[0]
    tmp = mine[i][1]
    assert i > 0 and mine[i - 1] == ("fsync", tmp), ("the file is synced before its rename", mine)
    assert i + 1 < len(mine) and mine[i + 1] == ("fsync", folder), ("then its folder", mine)


def folder_snapshot(folder: Path) -> dict[str, tuple[str, int] | None]:
    """Every path under ``folder`` (hidden ones too: ``.indexes/``, ``.wal``, temporary
    files), with a digest and the modification time of each file: equal snapshots mean
    nothing in the folder was written."""
    out: dict[str, tuple[str, int] | None] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder) + "/"] = None
        for name in files:
            path = os.path.join(root, name)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            out[os.path.relpath(path, folder)] = (digest, os.stat(path).st_mtime_ns)
    return out


def spec_strings(spec: Any) -> list[str]:
    """Every string value in a plotly figure's JSON (decoded: the raw JSON writes ``<`` as
    ``\\u003c``, so a search of the raw text for markup finds nothing either way)."""
    import json

    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(spec) if isinstance(spec, str) else spec)
    return out


def lasso_middle(page: Any, share: float = 0.3) -> None:
    """Lasso the middle of the page's first map with the mode bar's lasso tool (the map opens
    panning, so that a click selects one point): a square of ``share`` of the plot's size."""
    page.locator(".js-plotly-plot").first.hover()
    page.locator(".modebar-btn[data-val='lasso']").first.click()
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * share
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def assert_same_from_threads(
    encode: Callable[..., np.ndarray], texts: list[str], expected: np.ndarray, *, atol: float
) -> None:
    """``encode(texts, batch_size=2)`` from four threads at once gives ``expected`` in each (a
    text encoder shared by a server's sessions)."""
    import threading

    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = encode(texts, batch_size=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2, 3]
    for i in range(4):
        np.testing.assert_allclose(results[i], expected, atol=atol)
