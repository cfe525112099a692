"""End to end: a real `embscope serve --token` and `--read-only` in headless Chromium.

Without the token a browser gets the gate's login page and nothing of the app (no dataset
name, no Streamlit at all); with ``?token=...`` or the form it gets the app and the token
leaves the address bar. A read-only server draws no upload widget, rename or delete.
"""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embscope.core.store import Store
from tests.e2e.server import running_server, screenshot, wait_for_app
from tests.helpers import make_parsed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "quarterly-revenue-embeddings"
TOKEN = "e2e-team-token-6f1c2a9b"  # at least 16 characters


@contextlib.contextmanager
def _serve(tmp: Path, *flags: str) -> Iterator[str]:
    """`embscope serve FLAGS` on a free loopback port over a database holding SECRET."""
    db = tmp / "serve.duckdb"
    with Store(db) as store:
        X = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
        store.add_dataset(make_parsed(X), name=SECRET)
    # None of the caller's EMBSCOPE_ settings (a token, read-only) leaks into the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    env["EMBSCOPE_WARM_UP"] = "0"
    with running_server(db, tmp / "server.log", *flags, env=env) as url:
        yield url
    assert TOKEN not in (tmp / "server.log").read_text()  # the token is never logged


@pytest.fixture
def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page
    context.close()


def _open(page, url: str) -> None:
    page.goto(url)
    wait_for_app(page)


def _shot(page, name: str) -> None:
    # The catalog table is drawn on a canvas a moment after the script run ends.
    if page.locator("[data-testid='stDataFrame']").count():
        page.locator("[data-testid='stDataFrame'] [role='grid']").first.wait_for(
            state="attached", timeout=10_000
        )
        page.wait_for_timeout(700)
    screenshot(page, name)


def test_token_form_then_link(tmp_path, browser, new_page):
    with _serve(tmp_path, "--token", TOKEN) as url:
        # The health check stays open (load balancers, the test fixtures); it says only "ok".
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.read() == b"ok"

        # Without the token: the gate's login page, before anything of the app loads.
        page = new_page()
        page.goto(url + "/projections")
        page.get_by_label("Access token").wait_for(timeout=30_000)
        html = page.content()  # the whole document, not only what is visible
        assert SECRET not in html and "quarterly" not in html
        assert "Projections" not in page.locator("body").inner_text()
        assert page.locator("[data-testid='stApp']").count() == 0  # Streamlit never loaded
        _shot(page, "serve-token-form")

        # A wrong token in a link: refused, and the address no longer carries it.
        page = new_page()
        page.goto(url + "/?token=not-" + TOKEN)
        page.get_by_text("The access token in the link is not right.").wait_for(timeout=30_000)
        assert SECRET not in page.content()
        assert "token=" not in page.url

        # The login form: the app opens where the visitor was going.
        page = new_page()
        page.goto(url + "/projections")
        page.get_by_label("Access token").fill(TOKEN)
        page.get_by_role("button", name="Open embscope").click()
        page.get_by_role("heading", name="Projections", exact=True).wait_for(timeout=60_000)
        assert "/projections" in page.url and TOKEN not in page.url

        # The right token in a link: the app, and the token leaves the address.
        page = new_page()
        _open(page, f"{url}/?token={TOKEN}")
        page.get_by_role("heading", name="Datasets", exact=True).wait_for(timeout=30_000)
        page.get_by_text(SECRET).first.wait_for(timeout=30_000)
        assert TOKEN not in page.url and "token=" not in page.url
        # Writable server: both uploaders are drawn.
        page.locator("[data-testid='stFileUploader']").nth(1).wait_for(timeout=30_000)
        assert page.locator("[data-testid='stFileUploader']").count() == 2
        assert page.get_by_label("Access token").count() == 0  # the app asks no second time
        _shot(page, "serve-token-accepted")


def test_read_only_server_has_no_upload_rename_or_delete(tmp_path, browser, new_page):
    with _serve(tmp_path, "--read-only") as url:
        page = new_page()
        _open(page, url)
        page.get_by_role("heading", name="Datasets", exact=True).wait_for(timeout=30_000)
        page.get_by_text(SECRET).first.wait_for(timeout=30_000)
        main = page.locator("[data-testid='stMain']")
        main.get_by_text("Read-only demo").wait_for(timeout=10_000)
        assert page.locator("[data-testid='stFileUploader']").count() == 0
        assert page.get_by_role("button", name="Rename").count() == 0
        assert page.get_by_role("button", name="Delete dataset…").count() == 0
        assert page.get_by_label("Access token").count() == 0  # no token asked for
        _shot(page, "serve-read-only")
