"""Many people at once: one ``embscope serve``, fourteen sessions working side by side.

A team demo is one server and several browsers. This test opens, against one server:

* ten sessions that speak Streamlit's own websocket protocol (``/_stcore/stream``, what a
  browser tab opens; ``load_helpers.StreamlitSession``): each, for a few rounds, opens a
  stored PCA projection from a share link that selects one item, runs a neighbour query
  from a Neighbours link, and switches to another dataset with a link and queries again;
* two headless-Chromium sessions (a browser context each; the first is the idle probe
  going on) doing the same by hand: the sidebar dataset picker, the query form and its
  "Find neighbours" button, a projection link and its "Open in Neighbours" button;
* one Chromium session that uploads a dataset through the Datasets page meanwhile, and one
  that starts a LargeVis job from the Projections page;
* afterwards every browsing session finds the uploaded dataset and queries its last row.

Why not twelve Chromium tabs: tried first, twelve contexts took 4.4-4.9 GB and Chromium
used 126-141 CPU seconds of a ~2-minute load phase against the server's 16-26, so on two
cores the latency measured was the browsers' wait for a core, not the server's. The
websocket sessions make the server do everything a browser's requests cause (every page
run, figure and table) at a fraction of the cost; the browsers check what only a browser
can.

The browsers run at a lower CPU priority than the server (``nice`` 10, :func:`_nice_chromium`).
At a demo they run on the audience's machines; here they share two cores with the server.
Left alone (and run as root, as on this machine), Chromium puts seven of its threads at -8,
above the server, and the four contexts' page rendering (WebGL in software) took the whole
machine for a second at a time: /proc showed the server's threads runnable but without a
core (Chromium at 1.5-2 cores, the server at 0-0.2) while the websocket sessions' queries
waited a second or more. The server's own jobs run at the same lower priority, so a
projection competes with the browsers, not with the sessions.

Every answer is checked against the session's own request: the query line names the row
and id it asked for, the exact-neighbour table holds the neighbours numpy finds for that
row of that dataset, the sidebar picker shows the session's own dataset, and the selected
item and figure title are the session's own, so an answer meant for another session (or
another dataset, or stale) fails. No session may get a Streamlit exception or an error box
(browsers: a page observer records even ones a rerun removes), and every dataset list any
session receives holds the uploaded dataset with its full row count or not at all.

Latency of a neighbour query: in the browser, from the click on "Find neighbours"
(``performance.now()`` in a capturing click listener) to the first moment the fresh "Query:
row R (id X)" line and both result tables after it are on the page (MutationObserver); in
a websocket session, from sending the link's page run to receiving the second result
table. Each kind is measured first alone on a quiet server (idle: once the server has
compiled its projection code, as ``embscope serve`` does when its first session opens, and
after one warm-up query per dataset), then under load; queries that had to build the
uploaded dataset's index are reported apart. Percentiles are nearest-rank. The test asserts,
for both kinds, p99 under load <= 10 x the idle p99 (the issue's criterion: the browser's as
a person sees it, the websocket sessions' as the server answers them) and the websocket
sessions' p50 under load <= 10 x their idle p50. It prints both kinds' p50 and p99 and their
ratios with the rest of the summary (the slowest queries with when they ran, and when the
upload and the job ran, say where a tail comes from) and writes it to test-results/load.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.e2e import load_helpers as lh
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Sessions and rounds (the environment may lower them to debug); the load phase is bounded
# in count (rounds) and in time (no round starts after LOAD_BUDGET_S).
WS_SESSIONS = int(os.environ.get("EMBSCOPE_LOAD_WS_SESSIONS", "10"))
BROWSER_SESSIONS = int(os.environ.get("EMBSCOPE_LOAD_BROWSER_SESSIONS", "2"))
# Each websocket round: a projection link, a query, a dataset switch and a query. Six rounds
# of ten sessions time about 110 queries under load, enough that their p99 (nearest rank) is
# not simply the slowest one (with 70, the 99th percentile is the maximum).
WS_ROUNDS = 6
BROWSER_ROUNDS = 3
LOAD_BUDGET_S = 60.0
THINK_S = (1.0, 3.0)  # a person's look at one answer before the next click
IDLE_QUERIES = 8  # timed, after one warm-up query per dataset
K = 10
LATENCY_FACTOR = 10.0
UPLOAD_AFTER_S = 4.0  # the upload and the job start while the sessions are busy
JOB_AFTER_S = 2.0
STEP_MS = 60_000  # a generous ceiling for any one step on two shared cores
TABLE_SETTLE_S = 15.0
VIEWPORT = {"width": 1400, "height": 1100}
IDS: dict[str, int] = {}

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

# The "id" column of each fresh result table, read from the grid's accessibility table.
TABLE_IDS = """() => [...document.querySelectorAll(
    "[data-testid='stElementContainer'][data-stale='false'] [data-testid='stDataFrame']")]
  .map(df => {
    const t = df.querySelector('canvas table');
    if (!t) return null;
    const heads = [...t.querySelectorAll('thead th')].map(th => (th.textContent || '').trim());
    const col = heads.indexOf('id') + 1;
    if (col < 1) return null;
    return [...t.querySelectorAll('tbody tr')].map(tr => {
      const td = tr.querySelector(`td[aria-colindex='${col}']`);
      return td ? td.textContent.trim() : null;
    });
  })"""


def prepare_db(path) -> None:
    IDS.update(lh.prepare_load_db(path))


READY_LINE = "embscope: projection methods ready"
READY_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The server as a team runs it: unlike the other e2e servers (``EMBSCOPE_WARM_UP=0``),
    it compiles the projection methods' code when its first session opens, as
    ``embscope serve`` does, and the test measures once that is done (:func:`_wait_ready`)."""
    tmp = tmp_path_factory.mktemp("load")
    db = tmp / "load.duckdb"
    prepare_db(db)
    log = tmp / "server.log"
    with running_server(db, log, env=dict(os.environ, EMBSCOPE_WARM_UP="1")) as url:
        yield {"url": url, "db": db, "tmp": tmp, "log": log}


async def _wait_ready(log) -> float:
    """Seconds waited until the server says its projection code is compiled."""
    start = time.monotonic()
    while READY_LINE not in log.read_text(errors="replace"):
        if time.monotonic() - start > READY_TIMEOUT_S:
            raise TimeoutError(f"no {READY_LINE!r} in the server log after {READY_TIMEOUT_S} s")
        await asyncio.sleep(0.25)
    return time.monotonic() - start


@dataclass
class Session:
    """One person (a browser context, or a websocket): what they did, what went wrong."""

    name: str
    page: Any = None  # a Playwright page (browser sessions)
    context: Any = None
    ws: lh.StreamlitSession | None = None  # websocket sessions
    rng: random.Random = field(default_factory=random.Random)
    latencies: list[float] = field(default_factory=list)
    upload_latencies: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    queried_upload: bool = False
    options: list[str] = field(default_factory=list)  # the dataset list last seen


class Run:
    """The server, the browser and the expected answers shared by every session."""

    def __init__(self, url: str, browser: Any, log: Any):
        self.url = url
        self.browser = browser
        self.log = log  # the server's output
        self.warm_up_s: float | None = None
        self.datasets = {d.name: d for d in lh.load_datasets()}
        self.upload = lh.upload_dataset()
        self.upload_id: int | None = None
        self._unit: dict[str, np.ndarray] = {}
        # (when, latency ms, session, dataset) of every query, and when things happened
        self.timeline: list[tuple[float, float, str, str]] = []
        self.events: dict[str, float] = {}

    def dataset_id(self, ds: lh.LoadDataset) -> int:
        if ds is self.upload:
            assert self.upload_id is not None
            return self.upload_id
        return IDS[ds.name]

    def expected(self, ds: lh.LoadDataset, row: int) -> tuple[set[str], set[str]]:
        """(ids that must be among the exact k, ids that may be): ties and float rounding at
        the k-th distance may go either way, anything clearly nearer or farther may not."""
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
        """Record a failure unless the two answers are this query's; True when they are."""
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
        """The uploaded dataset is listed whole (its full row count) or not at all."""
        s.options = options
        want = f"{self.upload.name} ({self.upload.n:,} × {self.upload.dim})"
        listed = [o for o in options if o.startswith(self.upload.name)]
        s.counts["dataset_lists_with_upload" if listed else "dataset_lists_without_upload"] += 1
        for label in listed:
            if label != want:
                s.failures.append(f"{s.name}: the upload is listed as {label!r}, not {want!r}")

    def upload_listed(self, s: Session) -> bool:
        return any(o.startswith(self.upload.name) for o in s.options)

    def row(self, s: Session, ds: lh.LoadDataset, *avoid: int) -> int:
        while True:
            row = s.rng.randrange(ds.n)
            if row not in avoid:
                return row

    async def think(self, s: Session) -> None:
        await asyncio.sleep(s.rng.uniform(*THINK_S))

    # -- websocket sessions -----------------------------------------------------------------

    def ws_checked(self, s: Session, run: lh.PageRun, ds: lh.LoadDataset) -> None:
        """What every page run must show: no error, the session's own dataset picked, and
        a dataset list holding the upload whole or not at all."""
        s.failures.extend(f"{s.name}: {e}" for e in run.errors())
        size = f"{ds.n:,} items × {ds.dim} dimensions"
        if not any(size in t for t in run.texts()):
            s.failures.append(f"{s.name}: the page does not work on {ds.name} ({size})")
        options, value = run.selectbox("Dataset")
        if value is None or not value.startswith(ds.name):
            s.failures.append(f"{s.name}: the picker shows {value!r}, not its own {ds.name!r}")
        self.check_options(s, options)

    async def ws_projection(self, s: Session, ds: lh.LoadDataset, row: int) -> None:
        """A link to the stored PCA projection with one item selected."""
        item = ds.item_id(row)
        run = await s.ws.run("projections", f"dataset={IDS[ds.name]}&method=pca&item={item}")
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
        """A link to the Neighbours page asking for the neighbours of ``row``; checks the
        answer and returns its latency in ms (request sent to second table received)."""
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
        """The rounds of one websocket session."""
        with_pca = [d for d in self.datasets.values() if d.pca]
        try:
            s.ws = await lh.StreamlitSession(self.url).connect()
            await asyncio.sleep(0.3 * index)  # people open the link within seconds
            for r in range(WS_ROUNDS):
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
        try:
            if not s.queried_upload:
                s.queried_upload = True
                last = self.upload.n - 1
                s.upload_latencies.append(await self.ws_query(s, self.upload, last))
            if not self.upload_listed(s):
                s.failures.append(f"{s.name}: the uploaded dataset is not listed: {s.options}")
        except Exception as exc:  # noqa: BLE001
            s.failures.append(f"{s.name}: {type(exc).__name__}: {str(exc)[:400]}")

    # -- browser sessions ---------------------------------------------------------------------

    async def open(self, name: str, seed: int) -> Session:
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
        if s.ws is not None:
            await s.ws.close()
        if s.context is not None:
            await self.collect_errors(s)
            await s.context.close()

    async def collect_errors(self, s: Session) -> None:
        """Record every exception/error box this page has shown so far."""
        texts = await s.page.evaluate(
            "() => { if (window.__embScan) window.__embScan();"
            " const e = (window.__embErrors || []).map(x => (x.textContent || '')"
            ".slice(0, 300)); window.__embErrors = []; return e; }"
        )
        s.failures.extend(f"{s.name}: Streamlit error on the page: {t!r}" for t in texts)

    async def goto(self, s: Session, path: str) -> None:
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
        """Wait until the rerun caused after ``runs_before`` was read has finished."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await s.page.wait_for_function(
                "b => window.__embRuns > b", arg=runs_before, timeout=5_000, polling=50
            )
        except PlaywrightTimeout:
            s.counts["rerun_not_seen"] += 1  # too quick to be seen running: it is done
        await s.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)

    async def runs(self, s: Session) -> int:
        return await s.page.evaluate("() => window.__embRuns")

    def _picker(self, s: Session) -> Any:
        return s.page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first

    async def check_picker(self, s: Session, ds: lh.LoadDataset) -> None:
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
        """Look at the picker's list without choosing."""
        await self._open_picker(s)
        await s.page.keyboard.press("Escape")

    async def query(self, s: Session, ds: lh.LoadDataset, row: int) -> float:
        """A neighbour query by row through the form; returns its latency in ms."""
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
        """The page answers this session's own query: its row, its dataset, right neighbours."""
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
                f"() => {{ const t = ({TABLE_IDS})(); return t.length >= 2 && t[0] && t[1]"
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
        path = f"/projections?dataset={IDS[ds.name]}&method=pca&item={item}"
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
        through the form, another dataset in the picker, a query."""
        with_pca = [d for d in self.datasets.values() if d.pca]
        try:
            for r in range(BROWSER_ROUNDS):
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
        """The browser session lists the uploaded dataset whole and can query its last row."""
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
        s.failures.append(f"{s.name}: {type(exc).__name__}: {str(exc)[:400]}")
        try:
            ARTIFACTS.mkdir(exist_ok=True)
            await s.page.screenshot(path=str(ARTIFACTS / f"load-{s.name}.png"), full_page=True)
            await self.collect_errors(s)
        except Exception:  # noqa: BLE001, S110 - the page may be gone; the failure is kept
            pass

    async def ready(self, s: Session, path: str, wait_for: Any) -> None:
        """Load the session's first page before the load starts (people have the app open)."""
        try:
            await self.goto(s, path)
            await wait_for(s.page).wait_for()
            await s.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
        except Exception as exc:  # noqa: BLE001
            await self.fail(s, exc)

    async def do_upload(self, s: Session, tmp, result: dict) -> None:
        """Upload vectors + metadata through the Datasets page while the others browse."""
        ds = self.upload
        vec, meta = tmp / "uploaded.npy", tmp / "uploaded-metadata.csv"
        np.save(vec, ds.vectors)
        pd.DataFrame(ds.metadata()).to_csv(meta, index=False)
        try:
            page = s.page
            await asyncio.sleep(UPLOAD_AFTER_S)
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

    async def projection_job(self, s: Session, result: dict) -> None:
        """Start a LargeVis job on the dataset without a stored layout; wait for its result."""
        try:
            page = s.page
            button = page.get_by_role("button", name=re.compile("Compute the LargeVis"))
            await asyncio.sleep(JOB_AFTER_S)
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


def _stats(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v == v]  # a failed query (NaN) is a failure, not a time
    return {
        "n": len(values),
        "p50": round(lh.percentile(values, 50), 1),
        "p99": round(lh.percentile(values, 99), 1),
        "max": round(max(values), 1) if values else float("nan"),
    }


def _server_pids(port: int) -> list[int]:
    return [
        pid
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())
        if "streamlit" in " ".join(lh.cmdline(pid)) and str(port) in lh.cmdline(pid)
    ]


def _browser_pids() -> list[int]:
    return [p for p in lh.descendants(os.getpid()) if "chrom" in " ".join(lh.cmdline(p)[:1])]


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (every process, other workers too)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu(port: int) -> dict[str, float]:
    """CPU seconds used so far by the server, the browser, this test process, the machine."""
    return {
        "server": lh.cpu_seconds(_server_pids(port)),
        "browser": lh.cpu_seconds(_browser_pids()),
        "test_process": lh.cpu_seconds([os.getpid()]),
        "machine": _machine_cpu(),
    }


async def _sample_memory(port: int, peaks: dict[str, float], stop: asyncio.Event) -> None:
    server = _server_pids(port)
    while not stop.is_set():
        for key, pids in (("server", server), ("browser", _browser_pids())):
            peaks[key] = max(peaks.get(key, 0.0), lh.memory_mb(pids))
        try:
            await asyncio.wait_for(stop.wait(), timeout=2.0)
        except TimeoutError:
            pass


BROWSER_NICENESS = 10


def _nice_chromium(tmp) -> str:
    """A launcher that starts Chromium (and so every process it forks) at ``nice``
    :data:`BROWSER_NICENESS`, below the server under test; the launcher execs, so Playwright
    talks to Chromium itself.

    Two things would undo a plain ``nice``. Playwright starts Chromium in a session of its
    own, and with ``kernel.sched_autogroup_enabled`` (the default on desktop and many server
    kernels) Linux shares the CPU fairly between sessions first, whatever their processes'
    nice values: the launcher lowers its session's weight (``/proc/self/autogroup``). And run
    as root, Chromium raises some of its own threads to nice -8 (display and input threads),
    above the server; without ``CAP_SYS_NICE`` (``setpriv`` drops it from the bounding set)
    it cannot, and every thread stays at the launcher's niceness.
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


async def _idle(run: Run, probe: Session, ws_probe: Session) -> None:
    """Each kind of session alone on the quiet server: one warm-up query per dataset (the
    first query of a dataset loads its vectors and index into the server), then the timed
    ones, going round the datasets."""
    names = list(run.datasets)
    try:
        ws_probe.ws = await lh.StreamlitSession(run.url).connect()
        for i in range(len(names) + IDLE_QUERIES):
            if i == len(names):  # the first session started the server's warm-up
                run.warm_up_s = await _wait_ready(run.log)
            ds = run.datasets[names[i % len(names)]]
            latency = await run.ws_query(ws_probe, ds, run.row(ws_probe, ds))
            if i >= len(names):
                ws_probe.latencies.append(latency)
    except Exception as exc:  # noqa: BLE001
        ws_probe.failures.append(f"{ws_probe.name}: {type(exc).__name__}: {str(exc)[:400]}")
    try:
        await probe.page.goto(run.url + f"/neighbours?dataset={IDS[names[0]]}")
        await probe.page.get_by_role("heading", name="Neighbours", exact=True).wait_for()
        await probe.page.wait_for_function(SCRIPT_DONE, timeout=STEP_MS, polling=100)
        for i in range(len(names) + IDLE_QUERIES):
            ds = run.datasets[names[i % len(names)]]
            if i:
                await run.pick(probe, ds)
            latency = await run.query(probe, ds, run.row(probe, ds))
            if i >= len(names):
                probe.latencies.append(latency)
    except Exception as exc:  # noqa: BLE001
        await run.fail(probe, exc)


async def _scenario(url: str, tmp, log) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    port = int(url.rsplit(":", 1)[1])
    t_start = time.monotonic()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=_nice_chromium(tmp), headless=True, args=CHROMIUM_ARGS
        )
        run = Run(url, browser, log)

        # -- idle: one browser session alone, one websocket session alone --
        idle_browser = await run.open("browser-idle", seed=1)
        idle_ws = Session("ws-idle", rng=random.Random(2))
        await _idle(run, idle_browser, idle_ws)
        await run.close(idle_ws)
        t_idle = time.monotonic()

        # -- the other browser sessions open their first page (one after the other) --
        await run.collect_errors(idle_browser)
        # the idle session's tab goes on as the first browsing session
        browsers = [
            Session(
                "browser0",
                page=idle_browser.page,
                context=idle_browser.context,
                rng=random.Random(200),
            )
            if i == 0
            else await run.open(f"browser{i}", seed=200 + i)
            for i in range(BROWSER_SESSIONS)
        ]
        first = next(d for d in run.datasets.values() if d.pca)
        for s in browsers[1:]:
            await run.ready(
                s,
                f"/neighbours?dataset={IDS[first.name]}",
                lambda page: page.get_by_role("heading", name="Neighbours", exact=True),
            )
        uploader = await run.open("upload", seed=3)
        await run.ready(
            uploader, "/", lambda page: page.get_by_role("heading", name="Datasets", exact=True)
        )
        jobber = await run.open("job", seed=4)
        await run.ready(
            jobber,
            f"/projections?dataset={IDS['load roll']}&method=largevis",
            lambda page: page.get_by_role("button", name=re.compile("Compute the LargeVis")),
        )
        t_ready = time.monotonic()

        # -- load: everyone at once --
        peaks: dict[str, float] = {}
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_memory(port, peaks, stop))
        wss = [Session(f"ws{i:02d}", rng=random.Random(100 + i)) for i in range(WS_SESSIONS)]
        upload: dict[str, Any] = {}
        job: dict[str, Any] = {}
        cpu_before = _cpu(port)
        load_started = time.monotonic()
        load_started_epoch = time.time()  # to line up a profile of the server taken meanwhile
        deadline = load_started + LOAD_BUDGET_S
        await asyncio.gather(
            *(run.ws_browse(s, i, deadline) for i, s in enumerate(wss)),
            *(run.browse(s, i, deadline) for i, s in enumerate(browsers)),
            run.do_upload(uploader, tmp, upload),
            run.projection_job(jobber, job),
        )
        t_load = time.monotonic()
        cpu_after = _cpu(port)
        stop.set()
        await sampler

        # -- after: every browsing session finds the upload whole and queries it --
        if run.upload_id is not None:  # (a session that failed already is not asked again)
            await asyncio.gather(
                *(run.ws_after_upload(s) for s in wss if not s.failures),
                *(run.after_upload(s) for s in browsers if not s.failures),
            )
        everyone = [idle_browser, idle_ws, *wss, *browsers, uploader, jobber]
        for s in [*wss, *browsers, uploader, jobber]:
            await run.close(s)
        if not browsers:
            await run.close(idle_browser)
        await browser.close()
    t_end = time.monotonic()

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
            "websocket_browsing": WS_SESSIONS,
            "browser_browsing": BROWSER_SESSIONS,
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
        "latency_ms": {
            "definition": "browser: performance.now() from the click on 'Find neighbours' to "
            "the fresh 'Query: row R (id X)' line and both result tables on the page; ws: "
            "from sending the Neighbours link's page run to receiving its second result "
            "table; nearest-rank percentiles",
            **figures,
        },
        "upload": {
            "rows": run.upload.n,
            "dim": run.upload.dim,
            "save_seconds": round(upload.get("seconds", float("nan")), 2),
            "saved_after_load_start_s": round(
                upload.get("finished_at", float("nan")) - load_started, 1
            ),
        },
        "projection_job": {
            "method": "largevis",
            "rows": run.datasets["load roll"].n,
            **{k: round(v, 3) for k, v in job.items()},
        },
        "slowest_loaded_queries": [
            {"at_s": round(t - load_started, 1), "ms": round(ms), "session": who, "dataset": ds}
            for t, ms, who, ds in sorted(
                (x for x in run.timeline if x[0] >= load_started), key=lambda x: -x[1]
            )[:8]
        ],
        "events_at_s": {k: round(v - load_started, 1) for k, v in run.events.items()},
        "load_started_unix_s": round(load_started_epoch, 3),
        "memory_peak_mb": {k: round(v) for k, v in peaks.items()},
        "cpu_s_during_load": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_before},
        "wall_s": {
            "idle_phase": round(t_idle - t_start, 1),
            "of_which_server_warm_up": run.warm_up_s and round(run.warm_up_s, 1),
            "opening_pages": round(t_ready - t_idle, 1),
            "load_phase": round(t_load - t_ready, 1),
            "after_upload_phase": round(t_end - t_load, 1),
            "total_in_browser_and_sessions": round(t_end - t_start, 1),
        },
        "failures": [f for s in everyone for f in s.failures],
        "dialogs": [d for s in everyone for d in s.dialogs],
        "page_errors": [e for s in everyone for e in s.page_errors],
    }


@pytest.mark.timeout(400)
def test_many_sessions_at_once(app_server):
    summary = asyncio.run(_scenario(app_server["url"], app_server["tmp"], app_server["log"]))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\nload test summary:\n" + json.dumps(summary, indent=2, default=str))  # noqa: T201

    assert summary["failures"] == [], "\n".join(summary["failures"])
    assert summary["dialogs"] == [], summary["dialogs"]
    assert summary["page_errors"] == [], summary["page_errors"]
    requests = summary["requests"]
    # every session got through at least one round; the upload and the job happened; every
    # browsing session found the upload and queried it
    assert summary["rounds"]["ws"] >= WS_SESSIONS, summary["rounds"]
    assert summary["rounds"]["browser"] >= BROWSER_SESSIONS, summary["rounds"]
    assert requests["uploads"] == 1 and requests["projection_jobs"] == 1, requests
    assert requests["queried_upload"] == WS_SESSIONS + BROWSER_SESSIONS, requests
    assert requests["dataset_lists_with_upload"] >= WS_SESSIONS + BROWSER_SESSIONS, requests
    browser, ws = summary["latency_ms"]["browser"], summary["latency_ms"]["ws"]
    assert browser["idle"]["n"] == ws["idle"]["n"] == IDLE_QUERIES, (browser, ws)
    assert browser["loaded"]["n"] >= 2 * BROWSER_SESSIONS, browser
    assert ws["loaded"]["n"] >= 2 * WS_SESSIONS, ws
    assert browser["loaded"]["p99"] <= LATENCY_FACTOR * browser["idle"]["p99"], browser
    assert ws["loaded"]["p99"] <= LATENCY_FACTOR * ws["idle"]["p99"], ws
    assert ws["loaded"]["p50"] <= LATENCY_FACTOR * ws["idle"]["p50"], ws
