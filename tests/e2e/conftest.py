"""Browser tests: a real `embscope serve` on loopback driven by Playwright in Debian's Chromium.

Modelled on Streamlit's own e2e_playwright/conftest.py: a module-scoped server, a page per
test, and a wait for the script to finish running before looking at the page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, running_server, wait_for_app


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, request) -> Iterator[dict]:
    """Start `embscope serve` on a free loopback port with a fresh database.

    A test module may define ``prepare_db(path)`` to fill the database before the server
    opens it (the server holds the file, so nothing else can write to it afterwards).
    """
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian chromium is missing: run scripts/ensure-chromium.sh (make test does)")
    tmp = tmp_path_factory.mktemp("e2e")
    db = tmp / "e2e.duckdb"
    prepare = getattr(request.module, "prepare_db", None)
    if prepare is not None:
        prepare(db)
    with running_server(db, tmp / "server.log") as url:
        yield {"url": url, "db": db, "tmp": tmp}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    pg.goto(app_server["url"])
    wait_for_app(pg)
    yield pg
    context.close()
