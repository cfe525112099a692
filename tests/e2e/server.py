"""The real server and browser the e2e tests drive: start `embscope serve`, wait for a page,
take a screenshot (the fixtures that use these are in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

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


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until the server at ``url`` answers its health check (or its process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            # A test server's certificate is self-signed: not verified here.
            context = ssl._create_unverified_context() if url.startswith("https") else None
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"server at {url} did not answer within {timeout} s")


class Served(str):
    """The URL of a running test server (a str), with the server's process id."""

    pid: int


@contextlib.contextmanager
def running_server(
    db: Path, log_path: Path, *flags: str, env: Mapping[str, str] | None = None
) -> Iterator[Served]:
    """`embscope serve FLAGS` over ``db`` on a free loopback port; yields its URL (with
    ``.pid``) and stops it afterwards (its output goes to ``log_path``; ``env`` replaces the
    environment)."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embscope.app.cli", "--db", str(db), "serve", "--port", str(port),
             *flags],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        scheme = "https" if "--tls-cert" in flags else "http"
        url = Served(f"{scheme}://127.0.0.1:{port}")
        url.pid = proc.pid  # `embscope serve` execs the server: the same process
        try:
            wait_http(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def process_facts(pid: int) -> tuple[int, int]:
    """(resident memory in MB, thread count) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["Threads"])


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_function(
        "() => { const a = document.querySelector(\"[data-testid='stApp']\");"
        " return a && a.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=timeout,
    )
    page.wait_for_timeout(300)


def upload_input(page, label: str = "Vectors file"):
    """The file input of the uploader labelled ``label``, found by its label: by position
    (``.nth(0)``) a file could land in the metadata uploader while the page was still
    settling (seen on a slow machine, at every commit)."""
    box = page.locator("[data-testid='stFileUploader']").filter(has_text=label)
    return box.locator("[data-testid='stFileUploaderDropzoneInput']")


def screenshot(page, name: str) -> Path:
    """A full-page screenshot in test-results/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
