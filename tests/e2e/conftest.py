"""Browser tests: a real `embscope serve` on loopback driven by Playwright in Debian's Chromium.

Modelled on Streamlit's own e2e_playwright/conftest.py: a module-scoped server, a page per
test, and a wait for the script to finish running before looking at the page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("EMBSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"server at {url} did not answer within {timeout} s")


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


@contextlib.contextmanager
def running_server(
    db: Path, log_path: Path, *flags: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`embscope serve FLAGS` over ``db`` on a free loopback port; yields its URL and stops
    it afterwards (its output goes to ``log_path``; ``env`` replaces the environment)."""
    port = _free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embscope.app.cli", "--db", str(db), "serve", "--port", str(port),
             *flags],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


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


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_function(
        "() => { const a = document.querySelector(\"[data-testid='stApp']\");"
        " return a && a.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=timeout,
    )
    page.wait_for_timeout(300)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
