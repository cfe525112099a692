"""The load test's harness (tests/e2e/test_load.py): its sessions, what they do, how their
answers are checked and timed, and the summary it reports.

A :class:`Run` holds the server under test, the headless Chromium (started at a lower CPU
priority than the server) and the expected answers; each :class:`Session` is one person, a
browser context or a websocket session (``load_helpers.StreamlitSession``), with what it
did and what went wrong. The test decides which sessions do what and when (a
:class:`LoadPlan`), and asserts on the dict :meth:`Run.summary` returns. Why it is built
this way: bench/LOAD_TEST.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.e2e import load_helpers as lh
from tests.e2e.server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

K = 10  # neighbours per query, as the Neighbours page shows them by default
STEP_MS = 60_000  # a generous ceiling for any one step on two shared cores
TABLE_SETTLE_S = 15.0  # how long a result grid's accessibility table may lag its canvas
VIEWPORT = {"width": 1400, "height": 1100}
BROWSER_NICENESS = 10  # Chromium's nice value; the server runs at 0
READY_LINE = "embscope: projection methods ready"
READY_TIMEOUT_S = 180.0
LATENCY_DEFINITION = (
    "browser: performance.now() from the click on 'Find neighbours' to "
    "the fresh 'Query: row R (id X)' line and both result tables on the page; ws: "
    "from sending the Neighbours link's page run to receiving its second result "
    "table; nearest-rank percentiles"
)

# -- JavaScript run in the browser sessions' pages ---------------------------------------------

SCRIPT_DONE = """() => { const a = document.querySelector("[data-testid='stApp']");
    return !!a && a.getAttribute('data-test-script-state') !== 'running'; }"""

# In every page of every session: count script runs, and keep every exception or error box
# that ever appears (even one a later rerun removes; the scan runs 100 ms after a change).
INIT_SCRIPT = """(() => {
  window.__embRuns = 0;
  window.__embErrors = [];
  const seen = new WeakSet();
  const SEL = "[data-testid='stException'], [data-testid='stAlertContentError']";
  let queued = false;
  const scan = () => {
    queued = false;
    for (const el of document.querySelectorAll(SEL)) {
      if (!seen.has(el)) { seen.add(el); window.__embErrors.push(el); }
    }
  };
  window.__embScan = scan;
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' &&
          r.target.getAttribute('data-test-script-state') === 'running') window.__embRuns += 1;
    }
    // at most every 100 ms: the browser shares two cores with the server
    if (!queued) { queued = true; setTimeout(scan, 100); }
  }).observe(document, {childList: true, subtree: true, attributes: true,
                        attributeFilter: ['data-test-script-state']});
})();"""

# Arm the latency probe for one query: t0 at the click on "Find neighbours", t1 when the
# fresh answer to `expect` and both tables below it are on the page.
ARM_LATENCY = """(expect) => {
  const rec = {t0: null, t1: null};
  window.__embLat = rec;
  const answered = () => {
    const fresh = [...document.querySelectorAll(
      "[data-testid='stElementContainer'][data-stale='false']")];
    const at = fresh.findIndex(c => c.querySelector("[data-testid='stMarkdown']")
      && (c.textContent || '').includes(expect));
    if (at < 0) return false;
    return fresh.slice(at).filter(c => c.querySelector("[data-testid='stDataFrame']"))
      .length >= 2;
  };
  const onClick = (e) => {
    const b = e.target instanceof Element ? e.target.closest('button') : null;
    if (rec.t0 === null && b && (b.textContent || '').includes('Find neighbours')) {
      rec.t0 = performance.now();
    }
  };
  document.addEventListener('click', onClick, true);
  const obs = new MutationObserver(() => {
    if (rec.t0 !== null && rec.t1 === null && answered()) {
      rec.t1 = performance.now();
      obs.disconnect();
      document.removeEventListener('click', onClick, true);
    }
  });
  obs.observe(document.body, {childList: true, subtree: true, characterData: true,
                              attributes: true, attributeFilter: ['data-stale']});
}"""

# The two answers of the fresh result table, read from the grid's accessibility table: the
# page shows one table, the index's answer with the exact neighbours it missed put in at
# their place ("vs exact" marks ✓ found, ✕ missed, – not in the exact top k; a missed row has
# no rank). [index's ids, exact ids], each in the table's order, or null.
TABLE_IDS = """() => {
  const df = [...document.querySelectorAll(
      "[data-testid='stElementContainer'][data-stale='false'] [data-testid='stDataFrame']")]
    .find(d => [...d.querySelectorAll('canvas table thead th')]
      .some(th => (th.textContent || '').trim() === 'vs exact'));
  const t = df ? df.querySelector('canvas table') : null;
  if (!t) return null;
  const heads = [...t.querySelectorAll('thead th')].map(th => (th.textContent || '').trim());
  const at = name => heads.indexOf(name) + 1;
  const cell = (tr, name) => {
    const td = tr.querySelector(`td[aria-colindex='${at(name)}']`);
    return td ? td.textContent.trim() : '';
  };
  const rows = [...t.querySelectorAll('tbody tr')];
  return [
    rows.filter(tr => cell(tr, 'rank') !== '').map(tr => cell(tr, 'id')),
    rows.filter(tr => !cell(tr, 'vs exact').startsWith('–')).map(tr => cell(tr, 'id')),
  ];
}"""

# Record and clear the exceptions and error boxes INIT_SCRIPT has kept.
TAKE_ERRORS = (
    "() => { if (window.__embScan) window.__embScan();"
    " const e = (window.__embErrors || []).map(x => (x.textContent || '')"
    ".slice(0, 300)); window.__embErrors = []; return e; }"
)


@dataclass(frozen=True)
class LoadPlan:
    """The load a run applies: how many sessions, how many rounds, and when.

    Attributes
    ----------
    ws_sessions : int
        Websocket sessions browsing at once.
    browser_sessions : int
        Headless-Chromium sessions browsing at once (the first is the idle browser probe
        going on).
    ws_rounds : int
        Rounds of each websocket session: a projection link, a query, a dataset switch and
        a query.
    browser_rounds : int
        Rounds of each browser session: a projection link, "Open in Neighbours", a query
        through the form, another dataset in the picker, a query.
    load_budget_s : float
        No round starts after this many seconds of load.
    think_s : tuple of float
        A person's look at one answer before the next request: uniform in this range, in
        seconds (websocket sessions).
    idle_queries : int
        Timed queries of each idle probe, after one warm-up query per dataset.
    upload_after_s : float
        The upload starts this long after the load does, while the sessions are busy.
    job_after_s : float
        The LargeVis job starts this long after the load does.
    """

    ws_sessions: int
    browser_sessions: int
    ws_rounds: int
    browser_rounds: int
    load_budget_s: float
    think_s: tuple[float, float]
    idle_queries: int
    upload_after_s: float
    job_after_s: float


@dataclass
class Session:
    """One person (a browser context, or a websocket): what they did, what went wrong.

    Attributes
    ----------
    name : str
        How failures and the summary name the session.
    page, context : Any
        The Playwright page and browser context (browser sessions; None otherwise).
    ws : load_helpers.StreamlitSession or None
        The websocket session (websocket sessions; None otherwise).
    rng : random.Random
        Chooses rows and think times, seeded per session so a run can be repeated.
    latencies : list of float
        Neighbour-query latencies in ms (NaN for a query that got no answer).
    upload_latencies : list of float
        Latencies of queries on the uploaded dataset (they may build its index first).
    counts : collections.Counter
        What the session did (rounds, queries, answers checked, ...).
    failures : list of str
        Everything that went wrong; the test asserts there is nothing.
    dialogs, page_errors : list of str
        Browser dialogs and uncaught page errors; the test asserts there are none.
    queried_upload : bool
        The session has queried the uploaded dataset.
    options : list of str
        The dataset list the session last saw.
    """

    name: str
    page: Any = None
    context: Any = None
    ws: lh.StreamlitSession | None = None
    rng: random.Random = field(default_factory=random.Random)
    latencies: list[float] = field(default_factory=list)
    upload_latencies: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    queried_upload: bool = False
    options: list[str] = field(default_factory=list)


def heading(name: str) -> Callable[[Any], Any]:
    """What :meth:`Run.ready` waits for on a page: its heading ``name``.

    Parameters
    ----------
    name : str
        The heading's exact text.

    Returns
    -------
    callable
        From a Playwright page to the heading's locator.
    """
    return lambda page: page.get_by_role("heading", name=name, exact=True)


def button_matching(pattern: str) -> Callable[[Any], Any]:
    """What :meth:`Run.ready` waits for on a page: a button whose name matches ``pattern``.

    Parameters
    ----------
    pattern : str
        A regular expression searched for in the button's name.

    Returns
    -------
    callable
        From a Playwright page to the button's locator.
    """
    return lambda page: page.get_by_role("button", name=re.compile(pattern))


class Run:
    """The server, the browser and the expected answers shared by every session.

    Made by :meth:`start`, which also launches the browser; the sessions' coroutines are
    its methods (``ws_*`` for websocket sessions, the others for browser sessions), and
    :meth:`summary` reports what they did.

    Parameters
    ----------
    url : str
        The server's address.
    log : pathlib.Path
        The server's output (read for the end of its warm-up).
    tmp : pathlib.Path
        A scratch folder (the Chromium launcher, the files to upload).
    ids : mapping of str to int
        The served datasets' ids by name.
    plan : LoadPlan
        The load applied.
    started : float
        ``time.monotonic()`` when the run began (the idle phase counts from it).
    """

    def __init__(
        self,
        url: str,
        log: Path,
        tmp: Path,
        ids: Mapping[str, int],
        plan: LoadPlan,
        started: float,
    ):
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.browser: Any = None
        self.log = log
        self.tmp = tmp
        self.ids = dict(ids)
        self.plan = plan
        self.warm_up_s: float | None = None
        self.datasets = {d.name: d for d in lh.load_datasets()}
        self.upload = lh.upload_dataset()
        self.upload_id: int | None = None
        self._unit: dict[str, np.ndarray] = {}
        # (when, latency ms, session, dataset) of every query, and when things happened
        self.timeline: list[tuple[float, float, str, str]] = []
        self.events: dict[str, float] = {}
        self.marks: dict[str, float] = {"start": started}  # the ends of the phases
        self.upload_result: dict[str, float] = {}
        self.job_result: dict[str, float] = {}
        self.memory_peaks: dict[str, float] = {}
        self.cpu_before: dict[str, float] = {}
        self.cpu_after: dict[str, float] = {}
        self.load_started = float("nan")
        self.load_started_epoch = float("nan")

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, url: str, log: Path, tmp: Path, ids: Mapping[str, int], plan: LoadPlan
    ) -> AsyncIterator[Run]:
        """Launch headless Chromium at a lower CPU priority than the server; yield the run.

        Parameters
        ----------
        url, log, tmp, ids, plan
            As for :class:`Run`.

        Yields
        ------
        Run
            With its browser; the browser is closed, and the run's end marked, on exit.
        """
        from playwright.async_api import async_playwright

        started = time.monotonic()
        async with async_playwright() as pw:
            run = cls(url, log, tmp, ids, plan, started)
            run.browser = await pw.chromium.launch(
                executable_path=nice_chromium(tmp), headless=True, args=CHROMIUM_ARGS
            )
            yield run
            await run.browser.close()
        run.mark("end")

    def mark(self, phase: str) -> None:
        """Record that ``phase`` ("idle", "ready", "load", "end") has ended now."""
        self.marks[phase] = time.monotonic()

    def dataset_id(self, ds: lh.LoadDataset) -> int:
        """The server's id of ``ds`` (the upload's once it is saved)."""
        if ds is self.upload:
            assert self.upload_id is not None
            return self.upload_id
        return self.ids[ds.name]

    # -- checking answers ----------------------------------------------------------------------

    def expected(self, ds: lh.LoadDataset, row: int) -> tuple[set[str], set[str]]:
        """The exact cosine neighbours of a row, computed with numpy.

        Parameters
        ----------
        ds : load_helpers.LoadDataset
            The dataset asked.
        row : int
            The row asked about.

        Returns
        -------
        must, may : set of str
            Ids that must be among the exact k, and ids that may be: ties and float rounding
            at the k-th distance may go either way, anything clearly nearer or farther may
            not.
        """
        if ds.name not in self._unit:
            X = ds.vectors.astype(np.float64)
            self._unit[ds.name] = X / np.linalg.norm(X, axis=1, keepdims=True)
        Xn = self._unit[ds.name]
        d = 1.0 - Xn @ Xn[row]
        d[row] = np.inf
        kth = np.sort(d)[K - 1]
        must = {ds.item_id(i) for i in np.flatnonzero(d < kth - 1e-5)}
        may = {ds.item_id(i) for i in np.flatnonzero(d <= kth + 1e-5)}
        return must, may

    def check_neighbours(
        self, s: Session, ds: lh.LoadDataset, row: int, approx: list[str], exact: list[str]
    ) -> bool:
        """Record a failure unless the two answers shown are this query's.

        Parameters
        ----------
        s : Session
            The session that asked.
        ds : load_helpers.LoadDataset
            The dataset it asked.
        row : int
            The row it asked about.
        approx, exact : list of str
            The ids of the HNSW and the exact result tables, in order.

        Returns
        -------
        bool
            True when both answers are right: the exact table holds numpy's k nearest (up to
            ties), and the HNSW table only ids of this dataset, at least half of them right.
        """
        must, may = self.expected(ds, row)
        ok = True
        if not (must <= set(exact[:K]) <= may) or len(exact) < K:
            s.failures.append(
                f"{s.name}: exact neighbours of {ds.name} row {row} shown as "
                f"{sorted(exact)}, expected {sorted(must)} (+ ties {sorted(may - must)})"
            )
            ok = False
        foreign = [i for i in approx if not str(i).startswith(ds.prefix)]
        if foreign or len(set(approx[:K]) & may) < K // 2:
            s.failures.append(f"{s.name}: HNSW answer {sorted(approx)} for {ds.name} row {row}")
            ok = False
        s.counts["answers_checked"] += 1
        return ok

    def check_options(self, s: Session, options: list[str]) -> None:
        """Record a failure unless the uploaded dataset is listed whole (its full row count)
        or not at all in ``options``, the dataset list the session was shown."""
        s.options = options
        want = f"{self.upload.name} ({self.upload.n:,} × {self.upload.dim})"
        listed = [o for o in options if o.startswith(self.upload.name)]
        s.counts["dataset_lists_with_upload" if listed else "dataset_lists_without_upload"] += 1
        for label in listed:
            if label != want:
                s.failures.append(f"{s.name}: the upload is listed as {label!r}, not {want!r}")

    def upload_listed(self, s: Session) -> bool:
        """Whether the dataset list the session last saw holds the upload."""
        return any(o.startswith(self.upload.name) for o in s.options)

    def row(self, s: Session, ds: lh.LoadDataset, *avoid: int) -> int:
        """A random row of ``ds`` (the session's own random numbers), none of ``avoid``."""
        while True:
            row = s.rng.randrange(ds.n)
            if row not in avoid:
                return row

    async def think(self, s: Session) -> None:
        """A person's look at one answer before the next request."""
        await asyncio.sleep(s.rng.uniform(*self.plan.think_s))

    # -- idle ------------------------------------------------------------------------------------

    async def wait_ready(self) -> float:
        """Wait until the server says its projection code is compiled.

        Returns
        -------
        float
            Seconds waited.

        Raises
        ------
        TimeoutError
            After :data:`READY_TIMEOUT_S` without :data:`READY_LINE` in the server's log.
        """
        start = time.monotonic()
        while READY_LINE not in self.log.read_text(errors="replace"):
            if time.monotonic() - start > READY_TIMEOUT_S:
                raise TimeoutError(f"no {READY_LINE!r} in the server log after {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.25)
        return time.monotonic() - start

    async def measure_idle(self, probe: Session, ws_probe: Session) -> None:
        """Time each kind of session alone on the quiet server: the websocket probe, then the
        browser probe.

        Each makes one warm-up query per dataset (the first query of a dataset loads its
        vectors and index into the server), then :attr:`LoadPlan.idle_queries` timed ones,
        going round the datasets. The websocket probe's first session starts the server's
        warm-up; its timed queries wait for the warm-up to end.

        Parameters
        ----------
        probe : Session
            A browser session (:meth:`open`), on no page yet.
        ws_probe : Session
            A websocket session, not connected yet.
        """
        names = list(self.datasets)
        try:
            ws_probe.ws = await lh.StreamlitSession(self.url).connect()
            for i in range(len(names) + self.plan.idle_queries):
                if i == len(names):  # the first session started the server's warm-up
                    self.warm_up_s = await self.wait_ready()
                ds = self.datasets[names[i % len(names)]]
                latency = await self.ws_query(ws_probe, ds, self.row(ws_probe, ds))
                if i >= len(names):
                    ws_probe.latencies.append(latency)
        except Exception as exc:  # noqa: BLE001
            ws_probe.failures.append(f"{ws_probe.name}: {type(exc).__name__}: {str(exc)[:400]}")
        try:
            await probe.page.goto(self.url + f"/neighbours?dataset={self.ids[names[0]]}")
            await probe.page.get_by_role("heading", name="Neighbours", exact=True).wait_for()
            await probe.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
            for i in range(len(names) + self.plan.idle_queries):
                ds = self.datasets[names[i % len(names)]]
                if i:
                    await self.pick(probe, ds)
                latency = await self.query(probe, ds, self.row(probe, ds))
                if i >= len(names):
                    probe.latencies.append(latency)
        except Exception as exc:  # noqa: BLE001
            await self.fail(probe, exc)

    # -- load ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def load_phase(self) -> AsyncIterator[float]:
        """Measure the load phase: its start and end, the server's and the browser's peak
        memory (sampled every 2 s), and the CPU time used meanwhile.

        Yields
        ------
        float
            The deadline (``time.monotonic()``) after which no round starts.
        """
        stop = asyncio.Event()
        sampler = asyncio.create_task(self._sample_memory(stop))
        try:
            self.cpu_before = self._cpu()
            self.load_started = time.monotonic()
            self.load_started_epoch = time.time()  # to line up a profile of the server
            yield self.load_started + self.plan.load_budget_s
            self.mark("load")
            self.cpu_after = self._cpu()
        finally:
            stop.set()
            await sampler

    def _server_pids(self) -> list[int]:
        return [
            pid
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())
            if "streamlit" in " ".join(lh.cmdline(pid)) and str(self.port) in lh.cmdline(pid)
        ]

    def _cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the server, the browser, this test process, the
        machine."""
        return {
            "server": lh.cpu_seconds(self._server_pids()),
            "browser": lh.cpu_seconds(_browser_pids()),
            "test_process": lh.cpu_seconds([os.getpid()]),
            "machine": _machine_cpu(),
        }

    async def _sample_memory(self, stop: asyncio.Event) -> None:
        server = self._server_pids()
        peaks = self.memory_peaks
        while not stop.is_set():
            for key, pids in (("server", server), ("browser", _browser_pids())):
                peaks[key] = max(peaks.get(key, 0.0), lh.memory_mb(pids))
            try:
                await asyncio.wait_for(stop.wait(), timeout=2.0)
            except TimeoutError:
                pass

    # -- websocket sessions ----------------------------------------------------------------------

    def ws_checked(self, s: Session, run: lh.PageRun, ds: lh.LoadDataset) -> None:
        """Check what every page run must show: no error, the session's own dataset picked,
        and a dataset list holding the upload whole or not at all."""
        s.failures.extend(f"{s.name}: {e}" for e in run.errors())
        size = f"{ds.n:,} items × {ds.dim} dimensions"
        if not any(size in t for t in run.texts()):
            s.failures.append(f"{s.name}: the page does not work on {ds.name} ({size})")
        options, value = run.selectbox("Dataset")
        if value is None or not value.startswith(ds.name):
            s.failures.append(f"{s.name}: the picker shows {value!r}, not its own {ds.name!r}")
        self.check_options(s, options)

    async def ws_projection(self, s: Session, ds: lh.LoadDataset, row: int) -> None:
        """Open a link to the stored PCA projection of ``ds`` with ``row`` selected; check the
        selection, its neighbours' heading and the figure's title."""
        item = ds.item_id(row)
        run = await s.ws.run("projections", f"dataset={self.ids[ds.name]}&method=pca&item={item}")
        self.ws_checked(s, run, ds)
        texts = run.texts()
        wanted = (f"Nearest neighbours of row {row} (id {item})", "1 selected point(s)")
        for text in wanted:
            if not any(text in t for t in texts):
                s.failures.append(f"{s.name}: the projection link shows no {text!r}")
        specs = [e.plotly_chart.spec for _, e in run.of_type("plotly_chart")]
        if not any(f"PCA 2-D of {ds.name}" in spec for spec in specs):
            s.failures.append(f"{s.name}: no figure titled 'PCA 2-D of {ds.name}'")
        s.counts["projection_pages"] += 1

    async def ws_query(self, s: Session, ds: lh.LoadDataset, row: int) -> float:
        """Open a link to the Neighbours page asking for the neighbours of ``row``; check the
        answer.

        Returns
        -------
        float
            The latency in ms, from sending the page run to receiving its second result
            table; NaN (and a failure recorded) when no answer came.
        """
        query = f"dataset={self.dataset_id(ds)}&find=row&row={row}"
        run = await s.ws.run("neighbours", query)
        self.ws_checked(s, run, ds)
        expect = f"Query: row {row} (id {ds.item_id(row)})"
        answer = run.answer(expect)
        if answer is None:
            s.failures.append(f"{s.name}: no answer {expect!r} to {query}: {run.texts()[:8]}")
            return float("nan")
        arrived, (approx, exact) = answer
        self.check_neighbours(s, ds, row, list(approx["id"]), list(exact["id"]))
        s.counts["neighbour_queries"] += 1
        latency = (arrived - run.started) * 1000.0
        self.timeline.append((run.started, latency, s.name, ds.name))
        return latency

    async def ws_browse(self, s: Session, index: int, deadline: float) -> None:
        """The rounds of one websocket session: a projection link, a query on that dataset,
        then a query on another dataset (the upload, the first time it is listed).

        Parameters
        ----------
        s : Session
            A websocket session, not connected yet.
        index : int
            The session's number: staggers its start and which datasets it visits.
        deadline : float
            No round starts after it (``time.monotonic()``).
        """
        with_pca = [d for d in self.datasets.values() if d.pca]
        try:
            s.ws = await lh.StreamlitSession(self.url).connect()
            await asyncio.sleep(0.3 * index)  # people open the link within seconds
            for r in range(self.plan.ws_rounds):
                if time.monotonic() > deadline:
                    break
                first = with_pca[(index + r) % len(with_pca)]
                row_a = self.row(s, first)
                await self.ws_projection(s, first, row_a)
                await self.think(s)
                s.latencies.append(await self.ws_query(s, first, self.row(s, first, row_a)))
                await self.think(s)
                if not s.queried_upload and self.upload_listed(s) and self.upload_id:
                    s.queried_upload = True
                    last = self.upload.n - 1
                    s.upload_latencies.append(await self.ws_query(s, self.upload, last))
                else:
                    others = [d for d in self.datasets.values() if d is not first]
                    second = others[(index + r) % len(others)]
                    s.latencies.append(await self.ws_query(s, second, self.row(s, second)))
                await self.think(s)
                s.counts["rounds"] += 1
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on at the end
            s.failures.append(f"{s.name}: {type(exc).__name__}: {str(exc)[:400]}")

    async def ws_after_upload(self, s: Session) -> None:
        """After the load: the websocket session queries the upload's last row (unless it
        already queried the upload) and must find the upload listed."""
        try:
            if not s.queried_upload:
                s.queried_upload = True
                last = self.upload.n - 1
                s.upload_latencies.append(await self.ws_query(s, self.upload, last))
            if not self.upload_listed(s):
                s.failures.append(f"{s.name}: the uploaded dataset is not listed: {s.options}")
        except Exception as exc:  # noqa: BLE001
            s.failures.append(f"{s.name}: {type(exc).__name__}: {str(exc)[:400]}")

    # -- browser sessions ------------------------------------------------------------------------

    async def open(self, name: str, seed: int) -> Session:
        """A browser session: a fresh context and page that record errors and dialogs.

        Parameters
        ----------
        name : str
            The session's name.
        seed : int
            Seeds its random numbers.

        Returns
        -------
        Session
            On no page yet.
        """
        s = Session(name, rng=random.Random(seed))
        s.context = await self.browser.new_context(viewport=VIEWPORT)
        await s.context.add_init_script(INIT_SCRIPT)
        s.page = await s.context.new_page()
        s.page.set_default_timeout(STEP_MS)

        async def on_dialog(dialog: Any) -> None:
            s.dialogs.append(dialog.message)
            await dialog.dismiss()

        s.page.on("dialog", on_dialog)
        s.page.on("pageerror", lambda e: s.page_errors.append(str(e)[:300]))
        return s

    async def close(self, s: Session) -> None:
        """Close the session's websocket or browser context (recording its errors first)."""
        if s.ws is not None:
            await s.ws.close()
        if s.context is not None:
            await self.collect_errors(s)
            await s.context.close()

    async def collect_errors(self, s: Session) -> None:
        """Record every exception and error box this page has shown so far."""
        texts = await s.page.evaluate(TAKE_ERRORS)
        s.failures.extend(f"{s.name}: Streamlit error on the page: {t!r}" for t in texts)

    async def goto(self, s: Session, path: str) -> None:
        """Load ``path`` in the session's tab (a full page load)."""
        if s.page.url.startswith(self.url):
            await self.collect_errors(s)
        await s.page.goto(self.url + path)
        await s.page.wait_for_selector("[data-testid='stApp']")

    async def follow(self, s: Session, path: str) -> None:
        """Open a link in the same tab without reloading: the browser's history moves and
        Streamlit reruns this session on that page with those query parameters (what the
        back and forward buttons do). Only the first page of a session is a full load."""
        await self.collect_errors(s)
        await s.page.evaluate(
            "p => { history.pushState(null, '', p);"
            " window.dispatchEvent(new PopStateEvent('popstate')); }",
            path,
        )

    async def settle(self, s: Session, runs_before: int) -> None:
        """Wait until the rerun caused after ``runs_before`` (:meth:`runs`) was read has
        finished."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await s.page.wait_for_function(
                "b => window.__embRuns > b", arg=runs_before, timeout=5_000, polling=50
            )
        except PlaywrightTimeout:
            s.counts["rerun_not_seen"] += 1  # too quick to be seen running: it is done
        await s.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)

    async def runs(self, s: Session) -> int:
        """How many script runs the session's page has started so far."""
        return await s.page.evaluate("() => window.__embRuns")

    def _picker(self, s: Session) -> Any:
        return s.page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first

    async def check_picker(self, s: Session, ds: lh.LoadDataset) -> None:
        """Record a failure unless the sidebar picker shows ``ds``, the session's own."""
        picker = self._picker(s)
        shown = " ".join((await picker.text_content() or "").split())
        if ds.name not in shown and await picker.locator("input").count():
            shown = await picker.locator("input").first.input_value()
        if ds.name not in shown:
            s.failures.append(f"{s.name}: the picker shows {shown!r}, not its own {ds.name!r}")

    async def _open_picker(self, s: Session) -> Any:
        await self._picker(s).click()
        options = s.page.get_by_role("option")
        await options.first.wait_for()
        self.check_options(s, [" ".join(t.split()) for t in await options.all_inner_texts()])
        return options

    async def pick(self, s: Session, ds: lh.LoadDataset) -> None:
        """Choose ``ds`` in the sidebar picker (after checking what it lists)."""
        options = await self._open_picker(s)
        before = await self.runs(s)
        await options.filter(has_text=ds.name).first.click()
        await self.settle(s, before)
        s.counts["dataset_switches"] += 1
        await self.check_picker(s, ds)

    async def peek(self, s: Session) -> None:
        """Look at (and check) the picker's list without choosing."""
        await self._open_picker(s)
        await s.page.keyboard.press("Escape")

    async def query(self, s: Session, ds: lh.LoadDataset, row: int) -> float:
        """A neighbour query by row through the Neighbours page's form; checks the answer.

        Returns
        -------
        float
            The latency in ms, from the click on "Find neighbours" to the fresh answer and
            both its tables on the page.
        """
        page = s.page
        box = page.get_by_label("Row number")
        if not await box.is_visible():
            before = await self.runs(s)
            await page.get_by_text("its row", exact=True).click()
            await self.settle(s, before)
        before = await self.runs(s)
        await box.fill(str(row))
        await box.press("Enter")
        await self.settle(s, before)
        expect = f"Query: row {row} (id {ds.item_id(row)})"
        await page.evaluate(ARM_LATENCY, expect)
        await page.get_by_role("button", name="Find neighbours").filter(visible=True).click()
        await page.wait_for_function(
            "() => window.__embLat && window.__embLat.t1 !== null", timeout=STEP_MS, polling=100
        )
        latency = await page.evaluate("() => window.__embLat.t1 - window.__embLat.t0")
        self.timeline.append((time.monotonic() - latency / 1000.0, latency, s.name, ds.name))
        await page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
        await self.check_answer(s, ds, row)
        s.counts["neighbour_queries"] += 1
        return float(latency)

    async def check_answer(self, s: Session, ds: lh.LoadDataset, row: int) -> None:
        """Check that the page answers this session's own query: its row, its dataset, the
        right neighbours."""
        page = s.page
        expect = f"Query: row {row} (id {ds.item_id(row)})"
        shown = await page.locator(
            "[data-testid='stMarkdown']", has_text="Query:"
        ).last.inner_text()
        if expect not in " ".join(shown.split()):
            s.failures.append(f"{s.name}: asked {expect!r}, the page says {shown!r}")
            return
        must, may = self.expected(ds, row)
        # The grid's accessibility table (what is read here) follows its canvas after a
        # debounce: read until it holds this answer, or until it has had ample time.
        give_up = time.monotonic() + TABLE_SETTLE_S
        while True:
            handle = await page.wait_for_function(
                f"() => {{ const t = ({TABLE_IDS})(); return t"
                f" && t[0].length >= {K} && t[1].length >= {K} ? t : null; }}",
                timeout=STEP_MS,
                polling=200,
            )
            tables = await handle.json_value()
            if must <= set(tables[1][:K]) <= may or time.monotonic() > give_up:
                break
            s.counts["table_rereads"] += 1
            await asyncio.sleep(0.25)
        self.check_neighbours(s, ds, row, tables[0][:K], tables[1][:K])
        await self.check_picker(s, ds)

    async def projection(self, s: Session, ds: lh.LoadDataset, row: int) -> None:
        """Open the stored PCA projection from a link that selects one item; check it."""
        item = ds.item_id(row)
        path = f"/projections?dataset={self.ids[ds.name]}&method=pca&item={item}"
        if s.page.url.startswith(self.url):
            await self.follow(s, path)
        else:
            await self.goto(s, path)
        page = s.page
        await page.get_by_text(f"Nearest neighbours of row {row} (id {item})").wait_for()
        await page.get_by_text("1 selected point(s)").wait_for()
        await page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
        await page.locator(".js-plotly-plot").first.wait_for()
        title = f"PCA 2-D of {ds.name}"
        if not await page.locator(".js-plotly-plot", has_text=title).count():
            s.failures.append(f"{s.name}: the Projections page does not show {title!r}")
        await self.check_picker(s, ds)
        s.counts["projection_pages"] += 1

    async def open_in_neighbours(self, s: Session, ds: lh.LoadDataset, row: int) -> None:
        """Follow the selected point to the Neighbours page (same session) and check it."""
        page = s.page
        button = page.get_by_role("button", name=re.compile("Open in Neighbours"))
        before = await self.runs(s)
        if await button.count():
            await button.first.click()
            expect = f"Query: row {row} (id {ds.item_id(row)})"
            await page.locator("[data-testid='stMarkdown']", has_text=expect).wait_for()
            await self.settle(s, before)
            await self.check_answer(s, ds, row)
            s.counts["neighbour_queries_from_projection"] += 1
        else:  # the button moved: go there through the page list
            await page.locator("[data-testid='stSidebarNav'] a", has_text="Neighbours").click()
            await self.settle(s, before)
        await page.get_by_role("heading", name="Neighbours", exact=True).wait_for()

    async def browse(self, s: Session, index: int, deadline: float) -> None:
        """The rounds of one browser session: projection link, Open in Neighbours, a query
        through the form, another dataset in the picker (the upload, the first time it is
        listed), a query.

        Parameters
        ----------
        s : Session
            A browser session on its first page (:meth:`ready`).
        index : int
            The session's number: which datasets it visits.
        deadline : float
            No round starts after it (``time.monotonic()``).
        """
        with_pca = [d for d in self.datasets.values() if d.pca]
        try:
            for r in range(self.plan.browser_rounds):
                if time.monotonic() > deadline:
                    break
                first = with_pca[(index + r) % len(with_pca)]
                row_a = self.row(s, first)
                await self.projection(s, first, row_a)
                await self.open_in_neighbours(s, first, row_a)
                s.latencies.append(await self.query(s, first, self.row(s, first, row_a)))
                await self._switch_and_query(s, first, index + r)
                s.counts["rounds"] += 1
                await self.collect_errors(s)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on at the end
            await self.fail(s, exc)

    async def _switch_and_query(self, s: Session, current: lh.LoadDataset, turn: int) -> None:
        await self._open_picker(s)
        await s.page.keyboard.press("Escape")
        if not s.queried_upload and self.upload_listed(s) and self.upload_id:
            s.queried_upload = True
            await self.pick(s, self.upload)
            last = self.upload.n - 1
            s.upload_latencies.append(await self.query(s, self.upload, last))
            return
        others = [d for d in self.datasets.values() if d is not current]
        second = others[turn % len(others)]
        await self.pick(s, second)
        s.latencies.append(await self.query(s, second, self.row(s, second)))

    async def after_upload(self, s: Session) -> None:
        """After the load: the browser session lists the uploaded dataset whole and queries
        its last row (unless it already queried the upload)."""
        try:
            if s.queried_upload:
                await self.peek(s)
            else:
                s.queried_upload = True
                await self.pick(s, self.upload)
                last = self.upload.n - 1
                s.upload_latencies.append(await self.query(s, self.upload, last))
            if not self.upload_listed(s):
                s.failures.append(f"{s.name}: the uploaded dataset is not listed: {s.options}")
            await self.collect_errors(s)
        except Exception as exc:  # noqa: BLE001
            await self.fail(s, exc)

    async def fail(self, s: Session, exc: BaseException) -> None:
        """Record ``exc`` as the session's failure, with a screenshot of its page in
        test-results/ when the page is still there."""
        s.failures.append(f"{s.name}: {type(exc).__name__}: {str(exc)[:400]}")
        try:
            ARTIFACTS.mkdir(exist_ok=True)
            await s.page.screenshot(path=str(ARTIFACTS / f"load-{s.name}.png"), full_page=True)
            await self.collect_errors(s)
        except Exception:  # noqa: BLE001, S110 - the page may be gone; the failure is kept
            pass

    async def ready(self, s: Session, path: str, wait_for: Callable[[Any], Any]) -> None:
        """Load the session's first page before the load starts (people have the app open).

        Parameters
        ----------
        s : Session
            A browser session.
        path : str
            The page and its query string, e.g. ``/neighbours?dataset=1``.
        wait_for : callable
            From the page to a locator that shows the page is there (:func:`heading`,
            :func:`button_matching`).
        """
        try:
            await self.goto(s, path)
            await wait_for(s.page).wait_for()
            await s.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
        except Exception as exc:  # noqa: BLE001
            await self.fail(s, exc)

    async def do_upload(self, s: Session) -> None:
        """Upload vectors + metadata through the Datasets page while the others browse.

        Starts :attr:`LoadPlan.upload_after_s` after it is called; sets :attr:`upload_id`
        once the page says the dataset is saved, and records in :attr:`upload_result` how
        long saving took.
        """
        ds = self.upload
        vec, meta = self.tmp / "uploaded.npy", self.tmp / "uploaded-metadata.csv"
        np.save(vec, ds.vectors)
        pd.DataFrame(ds.metadata()).to_csv(meta, index=False)
        result = self.upload_result
        try:
            page = s.page
            await asyncio.sleep(self.plan.upload_after_s)
            inputs = page.locator("[data-testid='stFileUploaderDropzoneInput']")
            before = await self.runs(s)
            await inputs.nth(0).set_input_files(str(vec))
            await self.settle(s, before)
            before = await self.runs(s)
            await inputs.nth(1).set_input_files(str(meta))
            await self.settle(s, before)
            await page.get_by_text("Preview (first rows)").wait_for()
            await page.get_by_label("Name", exact=True).fill(ds.name)
            await page.locator("[data-testid='stSelectbox']", has_text="Id column").click()
            await page.get_by_role("option", name="item", exact=True).click()
            started = time.monotonic()
            self.events["upload saved (clicked)"] = started
            await page.get_by_role("button", name="Save dataset").click()
            await page.get_by_text("Saved dataset").wait_for()
            result["seconds"] = time.monotonic() - started
            result["finished_at"] = time.monotonic()
            self.events["upload saved (shown)"] = result["finished_at"]
            await page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
            saved = await page.get_by_text("Saved dataset").inner_text()
            found = re.search(r"Saved dataset (\d+)", saved)
            if found is None or f"{ds.n:,} vectors" not in saved:
                s.failures.append(f"{s.name}: unexpected save message {saved!r}")
            else:
                self.upload_id = int(found.group(1))
            await self.peek(s)  # listed whole in the uploader's own picker too
            s.counts["uploads"] += 1
            await self.collect_errors(s)
        except Exception as exc:  # noqa: BLE001
            await self.fail(s, exc)

    async def projection_job(self, s: Session) -> None:
        """Start a LargeVis job on the dataset without a stored layout; wait for its result.

        Starts :attr:`LoadPlan.job_after_s` after it is called; records in
        :attr:`job_result` how long the job took and the layout's trustworthiness@10, which
        must be at least 0.9.
        """
        result = self.job_result
        try:
            page = s.page
            button = page.get_by_role("button", name=re.compile("Compute the LargeVis"))
            await asyncio.sleep(self.plan.job_after_s)
            started = time.monotonic()
            self.events["job started"] = started
            await button.click()
            await page.get_by_text("Trustworthiness@10").wait_for(timeout=150_000)
            result["seconds"] = time.monotonic() - started
            self.events["job result shown"] = time.monotonic()
            await page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
            metric = page.locator("[data-testid='stMetric']", has_text="Trustworthiness@10")
            value = float((await metric.inner_text()).split()[-1])
            result["trustworthiness@10"] = value
            if value < 0.9:
                s.failures.append(f"{s.name}: LargeVis of the roll scored trustworthiness {value}")
            s.counts["projection_jobs"] += 1
            await self.collect_errors(s)
        except Exception as exc:  # noqa: BLE001
            await self.fail(s, exc)

    # -- the summary -----------------------------------------------------------------------------

    def summary(
        self,
        idle_browser: Session,
        idle_ws: Session,
        wss: list[Session],
        browsers: list[Session],
        uploader: Session,
        jobber: Session,
    ) -> dict[str, Any]:
        """What the run did, how fast, and everything that went wrong.

        Parameters
        ----------
        idle_browser, idle_ws : Session
            The idle probes (:meth:`measure_idle`).
        wss, browsers : list of Session
            The websocket and browser sessions that browsed under load.
        uploader, jobber : Session
            The sessions that uploaded a dataset and ran a projection job.

        Returns
        -------
        dict
            JSON-ready: the sessions, rounds and requests counted; ``latency_ms`` with, for
            each kind (``browser``, ``ws``), the ``idle`` and ``loaded`` figures (``n``,
            ``p50``, ``p99``, ``max``; nearest rank), the queries on the upload apart and
            the loaded-over-idle ratios; the upload and the job; the slowest loaded queries
            and when things happened (seconds from the start of the load); peak memory and
            CPU seconds during the load; each phase's wall time; and every failure, dialog
            and page error.
        """
        everyone = [idle_browser, idle_ws, *wss, *browsers, uploader, jobber]
        plan, marks, upload, job = self.plan, self.marks, self.upload_result, self.job_result
        load_started = self.load_started
        totals: Counter = Counter()
        for s in everyone:
            totals.update(s.counts)
        figures = {
            kind: {
                "idle": _stats(idle.latencies),
                "loaded": _stats([v for s in group for v in s.latencies]),
                "first_queries_on_upload": _stats([v for s in group for v in s.upload_latencies]),
            }
            for kind, idle, group in (("browser", idle_browser, browsers), ("ws", idle_ws, wss))
        }
        for f in figures.values():
            f["loaded_p99_over_idle_p99"] = round(f["loaded"]["p99"] / f["idle"]["p99"], 2)
            f["loaded_p99_over_idle_p50"] = round(f["loaded"]["p99"] / f["idle"]["p50"], 2)
        return {
            "sessions": {
                "websocket_browsing": plan.ws_sessions,
                "browser_browsing": plan.browser_sessions,
                "browser_uploading": 1,
                "browser_projection_job": 1,
                "idle_probes": 2,
            },
            "rounds": {
                "ws": sum(s.counts["rounds"] for s in wss),
                "browser": sum(s.counts["rounds"] for s in browsers),
            },
            "requests": {
                "projection_links_with_selection": totals["projection_pages"],
                "neighbour_queries": totals["neighbour_queries"],
                "neighbour_queries_from_projection": totals["neighbour_queries_from_projection"],
                "answers_checked": totals["answers_checked"],
                "browser_dataset_switches": totals["dataset_switches"],
                "dataset_lists_with_upload": totals["dataset_lists_with_upload"],
                "dataset_lists_without_upload": totals["dataset_lists_without_upload"],
                "uploads": totals["uploads"],
                "projection_jobs": totals["projection_jobs"],
                "queried_upload": sum(s.queried_upload for s in [*wss, *browsers]),
                "browser_reruns_too_quick_to_see": totals["rerun_not_seen"],
                "browser_table_rereads": totals["table_rereads"],
            },
            "latency_ms": {"definition": LATENCY_DEFINITION, **figures},
            "upload": {
                "rows": self.upload.n,
                "dim": self.upload.dim,
                "save_seconds": round(upload.get("seconds", float("nan")), 2),
                "saved_after_load_start_s": round(
                    upload.get("finished_at", float("nan")) - load_started, 1
                ),
            },
            "projection_job": {
                "method": "largevis",
                "rows": self.datasets["load roll"].n,
                **{k: round(v, 3) for k, v in job.items()},
            },
            "slowest_loaded_queries": [
                {"at_s": round(t - load_started, 1), "ms": round(ms), "session": who, "dataset": ds}
                for t, ms, who, ds in sorted(
                    (x for x in self.timeline if x[0] >= load_started), key=lambda x: -x[1]
                )[:8]
            ],
            "events_at_s": {k: round(v - load_started, 1) for k, v in self.events.items()},
            "load_started_unix_s": round(self.load_started_epoch, 3),
            "memory_peak_mb": {k: round(v) for k, v in self.memory_peaks.items()},
            "cpu_s_during_load": {
                k: round(self.cpu_after[k] - self.cpu_before[k], 1) for k in self.cpu_before
            },
            "wall_s": {
                "idle_phase": round(marks["idle"] - marks["start"], 1),
                "of_which_server_warm_up": self.warm_up_s and round(self.warm_up_s, 1),
                "opening_pages": round(marks["ready"] - marks["idle"], 1),
                "load_phase": round(marks["load"] - marks["ready"], 1),
                "after_upload_phase": round(marks["end"] - marks["load"], 1),
                "total_in_browser_and_sessions": round(marks["end"] - marks["start"], 1),
            },
            "failures": [f for s in everyone for f in s.failures],
            "dialogs": [d for s in everyone for d in s.dialogs],
            "page_errors": [e for s in everyone for e in s.page_errors],
        }


def report(summary: dict[str, Any]) -> None:
    """Write the summary to test-results/load.json and print it.

    Parameters
    ----------
    summary : dict
        What :meth:`Run.summary` returned.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\nload test summary:\n" + json.dumps(summary, indent=2, default=str))  # noqa: T201


def nice_chromium(tmp: Path) -> str:
    """Write a launcher that starts Chromium below the server's CPU priority.

    Chromium (and so every process it forks) runs at ``nice`` :data:`BROWSER_NICENESS`; the
    launcher execs, so Playwright talks to Chromium itself. It also lowers its session's
    autogroup weight (``/proc/self/autogroup``: Playwright starts Chromium in a session of
    its own, and with ``kernel.sched_autogroup_enabled`` Linux shares the CPU between
    sessions first, whatever their processes' nice values), and, run as root, drops
    ``CAP_SYS_NICE`` from the bounding set (``setpriv``) so Chromium cannot raise its own
    threads above the server. Why: bench/LOAD_TEST.md.

    Parameters
    ----------
    tmp : pathlib.Path
        Where to write the launcher.

    Returns
    -------
    str
        The launcher's path, for Playwright's ``executable_path``.
    """
    chromium = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    assert chromium, "Debian chromium is missing: run scripts/ensure-chromium.sh"
    nice = f'nice -n {BROWSER_NICENESS} "{chromium}" "$@"'
    drop = ""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        drop = "setpriv --bounding-set=-sys_nice "
    launcher = tmp / "chromium-at-lower-priority"
    autogroup = f"echo {BROWSER_NICENESS} > /proc/self/autogroup 2>/dev/null\n"
    launcher.write_text(f"#!/bin/sh\n{autogroup}exec {drop}{nice}\n")
    launcher.chmod(0o755)
    return str(launcher)


def _stats(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v == v]  # a failed query (NaN) is a failure, not a time
    return {
        "n": len(values),
        "p50": round(lh.percentile(values, 50), 1),
        "p99": round(lh.percentile(values, 99), 1),
        "max": round(max(values), 1) if values else float("nan"),
    }


def _browser_pids() -> list[int]:
    return [p for p in lh.descendants(os.getpid()) if "chrom" in " ".join(lh.cmdline(p)[:1])]


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (every process, other workers too)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
