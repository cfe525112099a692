"""Helpers of the load test (tests/e2e/test_load.py): the datasets it serves, a client of
Streamlit's websocket protocol (a session without a browser), and the figures it reports."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LoadDataset:
    """One dataset the load test serves: its name, id prefix, size, and its vectors."""

    name: str
    prefix: str  # every id of the dataset starts with it, so an answer names its dataset
    vectors: np.ndarray  # float32 (n, d)
    label: str  # the metadata column holding a label
    labels: Any  # one label per row
    pca: bool  # a PCA projection is stored before the server starts

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def item_id(self, row: int) -> str:
        return f"{self.prefix}{row:05d}"

    def metadata(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"item": [self.item_id(i) for i in range(self.n)], self.label: np.asarray(self.labels)}
        )


@functools.cache
def load_datasets() -> tuple[LoadDataset, ...]:
    """Three small datasets: two Gaussian mixtures (with a stored PCA projection) and a Swiss
    roll (none stored: the load test's projection job computes one)."""
    from embscope.core.demo import gaussian_mixture, swiss_roll

    alpha = gaussian_mixture(3000, 48, 8, seed=11)
    beta = gaussian_mixture(2000, 24, 5, seed=12)
    roll = swiss_roll(1500, noise=0.05, seed=13)
    turns = (roll.metadata["t"].to_numpy() // math.pi).astype(np.int64)
    return (
        LoadDataset("load alpha", "a-", alpha.vectors, "cluster", alpha.metadata["cluster"], True),
        LoadDataset("load beta", "b-", beta.vectors, "cluster", beta.metadata["cluster"], True),
        LoadDataset("load roll", "r-", roll.vectors, "turn", turns, False),
    )


@functools.cache
def upload_dataset(seed: int = 21, n: int = 8000, dim: int = 32) -> LoadDataset:
    """The dataset one session uploads through the page while the others work."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    return LoadDataset("uploaded under load", "u-", X, "group", rng.integers(0, 4, n), False)


def prepare_load_db(path: str | Path) -> dict[str, int]:
    """Store :func:`load_datasets` in a fresh database, with each dataset's cosine HNSW index
    built (so a query never waits for a build) and a PCA projection where asked.

    Returns the dataset ids by name.
    """
    from embscope.core.ingest import from_arrays
    from embscope.core.neighbours import NeighbourService
    from embscope.core.projections.runs import compute_projection
    from embscope.core.store import Store

    ids: dict[str, int] = {}
    with Store(path) as store:
        service = NeighbourService(store)
        for ds in load_datasets():
            parsed = from_arrays(
                ds.vectors, metadata=ds.metadata(), id_column="item", source="load test"
            )
            info = store.add_dataset(parsed, name=ds.name, info={"label_column": ds.label})
            ids[ds.name] = info.id
            service.get_index(info.id, metric="cosine")
            if ds.pca:
                compute_projection(store, info.id, method="pca", metric="cosine")
    return ids


def exact_cosine_neighbours(X: np.ndarray, row: int, k: int) -> np.ndarray:
    """The k exact cosine neighbours of ``row`` (itself left out), nearest first; ties by row."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    d = 1.0 - Xn @ Xn[row]
    d[row] = np.inf
    return np.lexsort((np.arange(len(d)), d))[:k]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank, as load tools report it): the smallest value with at
    least q % of the values at or below it. NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


# -- memory of processes (from /proc: psutil is not a dependency) ------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields after it are fixed
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    tree = _children_map()
    out, todo = [], list(tree.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def memory_mb(pids: Sequence[int]) -> float:
    """Proportional set size of the processes in MB (shared pages split between them, so
    a browser's many processes are not counted many times); RSS where PSS is unknown."""
    total_kb = 0
    for pid in pids:
        for name, prefix in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
            try:
                lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
            except OSError:
                continue
            found = [ln for ln in lines if ln.startswith(prefix)]
            if found:
                total_kb += int(found[0].split()[1])
                break
    return total_kb / 1024.0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


# -- Streamlit's websocket protocol, driven directly -------------------------------------------


def plain_markdown(body: str) -> str:
    """Markdown as the page shows it: ``**Query:** row 1 \\(id a\\-1\\)`` -> ``Query: row 1 (id a-1)``."""
    return re.sub(r"\\(.)", r"\1", body).replace("**", "")


@dataclass
class PageRun:
    """What one script run of a session sent: its elements in arrival order, with times."""

    started: float
    elements: list[tuple[float, Any]] = field(default_factory=list)  # (monotonic time, Element)
    query_string: str | None = None
    finished: float | None = None
    selects: dict[str, tuple[list[str], str | None]] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.elements if e.WhichOneof("type") == kind]

    def texts(self) -> list[str]:
        """Every markdown element's text, as shown."""
        return [plain_markdown(e.markdown.body) for _, e in self.of_type("markdown")]

    def errors(self) -> list[str]:
        """Exceptions and error boxes (``st.error``) the run drew."""
        out = []
        for _, e in self.elements:
            kind = e.WhichOneof("type")
            if kind == "exception":
                out.append(f"exception {e.exception.type}: {e.exception.message[:300]}")
            elif kind == "alert" and e.alert.format == 1:  # Alert.Format.ERROR
                out.append(f"error box: {plain_markdown(e.alert.body)[:300]}")
        return out

    def selectbox(self, label: str) -> tuple[list[str], str | None]:
        """(options, value a browser would show) of the last selectbox with this label."""
        return self.selects.get(label, ([], None))

    def answer(self, expect: str) -> tuple[float, list[pd.DataFrame]] | None:
        """When the markdown line containing ``expect`` and the two tables after it arrived
        (the time of the second table), and those tables; None if the run had no such line."""
        import pyarrow as pa

        at = None
        for i, (_, e) in enumerate(self.elements):
            if e.WhichOneof("type") == "markdown" and expect in plain_markdown(e.markdown.body):
                at = i
        if at is None:
            return None
        frames = [
            (t, e) for t, e in self.elements[at + 1 :] if e.WhichOneof("type") == "dataframe"
        ][:2]
        if len(frames) < 2:
            return None
        tables = [
            pa.ipc.open_stream(e.dataframe.arrow_data.data).read_all().to_pandas()
            for _, e in frames
        ]
        return frames[-1][0], tables


class StreamlitSession:
    """One Streamlit session over the websocket a browser tab would open
    (``/_stcore/stream``): it asks for page runs and collects what they draw.

    A run is asked for the way the browser asks when a link is opened: page name and query
    string (no widget states; links are how these sessions choose what they see).
    """

    def __init__(self, url: str, *, cookie: str | None = None):
        self.url = url.replace("http://", "ws://", 1) + "/_stcore/stream"
        self.http = url
        self.cookie = cookie  # "name=value" for a server behind the access gate
        self.session_id = ""  # Streamlit's id of this session, once a run has started
        self._ws: Any = None
        self._cache: dict[str, Any] = {}
        self._values: dict[str, str | None] = {}  # widget id -> the value a browser shows

    async def connect(self) -> StreamlitSession:
        import websockets

        headers = {"Cookie": self.cookie} if self.cookie else None
        self._ws = await websockets.connect(
            self.url, subprotocols=["streamlit"], max_size=None, open_timeout=60,
            additional_headers=headers,
        )  # fmt: skip
        return self

    async def send(self, back: Any) -> None:
        """Send a BackMsg as the browser would (e.g. ``clear_cache``)."""
        await self._ws.send(back.SerializeToString())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _receive(self) -> Any:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = ForwardMsg()
        msg.ParseFromString(await self._ws.recv())
        if msg.ref_hash:  # a message this session was sent before: the server sends its hash
            cached = self._cache.get(msg.ref_hash)
            if cached is None:
                cached = await asyncio.to_thread(self._fetch, msg.ref_hash)
            return cached
        if msg.hash:
            self._cache[msg.hash] = msg
        return msg

    def _fetch(self, ref: str) -> Any:
        import urllib.request

        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        with urllib.request.urlopen(f"{self.http}/_stcore/message?hash={ref}", timeout=30) as r:
            msg = ForwardMsg()
            msg.ParseFromString(r.read())
            return msg

    def _selectbox(self, box: Any, result: PageRun) -> None:
        """Keep a selectbox's value the way Streamlit's frontend does: the server's default
        the first time the widget is seen, then the browser's own value, replaced only when
        the app sets the widget's state (``set_value``)."""
        options = [" ".join(o.split()) for o in box.options]
        if box.set_value:
            self._values[box.id] = " ".join(box.raw_value.split()) or None
        elif box.id not in self._values:
            self._values[box.id] = options[box.default] if 0 <= box.default < len(options) else None
        result.selects[box.label] = (options, self._values[box.id])

    async def run(self, page: str, query: str, *, timeout: float = 60.0) -> PageRun:
        """Open ``/<page>?<query>`` in this session; returns the run once the script finished
        (after any reruns the app asked for itself)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        back = BackMsg()
        back.rerun_script.query_string = query
        back.rerun_script.page_name = page
        result = PageRun(started=time.monotonic())
        await self._ws.send(back.SerializeToString())
        async with asyncio.timeout(timeout):
            while True:
                msg = await self._receive()
                kind = msg.WhichOneof("type")
                if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    element = msg.delta.new_element
                    result.elements.append((time.monotonic(), element))
                    if element.WhichOneof("type") == "selectbox":
                        self._selectbox(element.selectbox, result)
                elif kind == "page_info_changed":
                    result.query_string = msg.page_info_changed.query_string
                elif kind == "new_session":
                    self.session_id = msg.new_session.initialize.session_id
                elif kind == "script_finished" and msg.script_finished in (0, 1):
                    # 0: finished; 1: compile error (shown as an exception element);
                    # 2 (stopped early for a rerun the app asked for) goes on
                    result.finished = time.monotonic()
                    return result
