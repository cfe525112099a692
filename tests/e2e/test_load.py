"""Many people at once: one ``embscope serve``, fourteen sessions working side by side.

Ten Streamlit-websocket sessions and two headless-Chromium sessions browse (a projection
link selecting one item, neighbour queries, a switch to another dataset) while one Chromium
session uploads a dataset and one starts a LargeVis job; afterwards every browsing session
queries the upload. It must hold that no session sees an exception or error box, every
answer is the session's own and correct, the upload is listed whole or not at all, and
neighbour queries under load stay within 10 x their idle latency. The summary is printed
and written to test-results/load.json.

How the test works and why it is built this way: bench/LOAD_TEST.md. The harness (the
sessions, their checks and timing, the summary) is in tests/e2e/load_run.py.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

from tests.e2e import load_helpers as lh
from tests.e2e.load_run import LoadPlan, Run, Session, button_matching, heading, report
from tests.e2e.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The environment may lower the session counts to debug. The load phase is bounded in count
# (rounds) and in time (no round starts after the budget): six websocket rounds of ten
# sessions time about 110 queries under load, so their p99 is not simply the slowest one.
PLAN = LoadPlan(
    ws_sessions=int(os.environ.get("EMBSCOPE_LOAD_WS_SESSIONS", "10")),
    browser_sessions=int(os.environ.get("EMBSCOPE_LOAD_BROWSER_SESSIONS", "2")),
    ws_rounds=6,
    browser_rounds=3,
    load_budget_s=60.0,
    think_s=(1.0, 3.0),
    idle_queries=8,
    upload_after_s=4.0,
    job_after_s=2.0,
)
LATENCY_FACTOR = 10.0


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The server as a team runs it: unlike the other e2e servers (``EMBSCOPE_WARM_UP=0``),
    it compiles the projection methods' code when its first session opens, as
    ``embscope serve`` does, and the test measures once that is done."""
    tmp = tmp_path_factory.mktemp("load")
    db = tmp / "load.duckdb"
    ids = lh.prepare_load_db(db)
    log = tmp / "server.log"
    with running_server(db, log, env=dict(os.environ, EMBSCOPE_WARM_UP="1")) as url:
        yield {"url": url, "db": db, "tmp": tmp, "log": log, "ids": ids}


async def apply_load(server: dict[str, Any]) -> dict[str, Any]:
    """Time queries on the quiet server, then apply the load, then query the upload."""
    ids = server["ids"]
    async with Run.start(server["url"], server["log"], server["tmp"], ids, PLAN) as run:
        # Idle: a websocket session alone, then a browser session alone (after the server's
        # warm-up and one warm-up query per dataset).
        idle_browser = await run.open("browser-idle", seed=1)
        idle_ws = Session("ws-idle", rng=random.Random(2))
        await run.measure_idle(idle_browser, idle_ws)
        await run.close(idle_ws)
        run.mark("idle")

        # The browser sessions open their first page, one after the other (people have the
        # app open); the idle browser session's tab goes on as browser0.
        await run.collect_errors(idle_browser)
        browsers = [
            Session(
                "browser0",
                page=idle_browser.page,
                context=idle_browser.context,
                rng=random.Random(200),
            )
            if i == 0
            else await run.open(f"browser{i}", seed=200 + i)
            for i in range(PLAN.browser_sessions)
        ]
        first = next(d for d in run.datasets.values() if d.pca)
        for s in browsers[1:]:
            await run.ready(s, f"/neighbours?dataset={ids[first.name]}", heading("Neighbours"))
        uploader = await run.open("upload", seed=3)
        # A link to the Datasets page (the bare front page opens the map once a layout exists).
        await run.ready(uploader, f"/?dataset={ids[first.name]}", heading("Datasets"))
        jobber = await run.open("job", seed=4)
        await run.ready(
            jobber,
            f"/projections?dataset={ids['load roll']}&method=largevis",
            button_matching("Compute the LargeVis"),
        )
        run.mark("ready")

        # Load: everyone at once. The websocket and browser sessions browse for their rounds
        # (projection link, queries, dataset switch); the upload and the job start a few
        # seconds in, while they are busy.
        wss = [Session(f"ws{i:02d}", rng=random.Random(100 + i)) for i in range(PLAN.ws_sessions)]
        async with run.load_phase() as deadline:
            await asyncio.gather(
                *(run.ws_browse(s, i, deadline) for i, s in enumerate(wss)),
                *(run.browse(s, i, deadline) for i, s in enumerate(browsers)),
                run.do_upload(uploader),
                run.projection_job(jobber),
            )

        # After: every browsing session finds the upload whole and queries its last row
        # (a session that failed already is not asked again).
        if run.upload_id is not None:
            await asyncio.gather(
                *(run.ws_after_upload(s) for s in wss if not s.failures),
                *(run.after_upload(s) for s in browsers if not s.failures),
            )
        for s in [*wss, *browsers, uploader, jobber]:
            await run.close(s)
        if not browsers:
            await run.close(idle_browser)
    return run.summary(idle_browser, idle_ws, wss, browsers, uploader, jobber)


@pytest.mark.timeout(400)
def test_many_sessions_at_once(app_server):
    summary = asyncio.run(apply_load(app_server))
    report(summary)

    # No session saw an exception, an error box, a dialog or a page error, and every answer
    # was the session's own and right (the checks record failures as they go).
    assert summary["failures"] == [], "\n".join(summary["failures"])
    assert summary["dialogs"] == [], summary["dialogs"]
    assert summary["page_errors"] == [], summary["page_errors"]

    # Every session got through at least one round; the upload and the job happened; every
    # browsing session found the upload (whole: a partial listing is a failure) and queried it.
    requests, browsing = summary["requests"], PLAN.ws_sessions + PLAN.browser_sessions
    assert summary["rounds"]["ws"] >= PLAN.ws_sessions, summary["rounds"]
    assert summary["rounds"]["browser"] >= PLAN.browser_sessions, summary["rounds"]
    assert requests["uploads"] == 1 and requests["projection_jobs"] == 1, requests
    assert requests["queried_upload"] == browsing, requests
    assert requests["dataset_lists_with_upload"] >= browsing, requests

    # Latency: enough queries timed, and under load within LATENCY_FACTOR x idle (p99 for
    # both kinds, p50 too for the websocket sessions).
    browser, ws = summary["latency_ms"]["browser"], summary["latency_ms"]["ws"]
    assert browser["idle"]["n"] == ws["idle"]["n"] == PLAN.idle_queries, (browser, ws)
    assert browser["loaded"]["n"] >= 2 * PLAN.browser_sessions, browser
    assert ws["loaded"]["n"] >= 2 * PLAN.ws_sessions, ws
    assert browser["loaded"]["p99"] <= LATENCY_FACTOR * browser["idle"]["p99"], browser
    assert ws["loaded"]["p99"] <= LATENCY_FACTOR * ws["idle"]["p99"], ws
    assert ws["loaded"]["p50"] <= LATENCY_FACTOR * ws["idle"]["p50"], ws
