"""The attacks of the serving audit, against a real `embscope serve --token` (HTTP and websocket
clients, no browser): each is refused at the gate, nothing reaches Streamlit, and the server's
memory and thread count stay steady."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator

import numpy as np
import pytest

from embscope.app.gate import COOKIE, cookie_value
from embscope.core.store import Store
from tests.e2e.server import Served, process_facts, running_server
from tests.helpers import make_parsed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "gate-e2e-token-9c1d7e2f4a"
SECRET = "payroll-embeddings"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("gate")
    db = tmp / "gate.duckdb"
    with Store(db) as store:
        X = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
        store.add_dataset(make_parsed(X), name=SECRET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    env["EMBSCOPE_WARM_UP"] = "0"
    with running_server(db, tmp / "server.log", "--token", TOKEN, "--max-upload-mb", "4",
                        env=env) as url:  # fmt: skip
        yield url
    assert TOKEN not in (tmp / "server.log").read_text()


def _request(
    url: str, method: str, path: str, *, headers: dict | None = None, body: bytes = b""
) -> tuple[int, bytes, dict]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def _raw_headers_only(url: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send a request's headers but none of the body it announces; what comes back."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
    return b"".join(chunks)


def test_nothing_of_the_app_before_the_token(server):
    status, body, _ = _request(server, "GET", "/")
    assert status == 401 and b"Access token" in body and SECRET.encode() not in body
    for path in ("/_stcore/host-config", "/_stcore/metrics", "/projections", "/static/x.js"):
        status, body, _ = _request(server, "GET", path)
        assert status == 401 and SECRET.encode() not in body, path
    assert _request(server, "GET", "/_stcore/health")[:2] == (200, b"ok")


def test_an_upload_before_the_token_is_refused_before_its_body(server):
    """The upload endpoint answers 401 after the headers: a 2 GB announced body is never read
    (before, Streamlit took it from any connected session, held in memory)."""
    before = process_facts(server.pid)
    request = (
        "PUT /_stcore/upload_file/some-session/some-file HTTP/1.1\r\n"
        f"Host: {urllib.parse.urlsplit(server).netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {2 * 1024**3}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answers = [_raw_headers_only(server, request) for _ in range(20)]
    assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers[0][:200]
    assert time.monotonic() - started < 10  # answered at once, body unread
    after = process_facts(server.pid)
    assert after[0] - before[0] < 50, (before, after)  # MB: no upload held


def test_a_websocket_without_the_token_is_refused_at_the_handshake(server):
    """No session without the token: Streamlit's ``clear_cache`` (or any message) cannot be
    sent, since the handshake itself is refused."""
    import websockets
    from websockets.exceptions import InvalidStatus

    ws_url = server.replace("http://", "ws://") + "/_stcore/stream"

    async def attempt(headers=None):
        async with websockets.connect(ws_url, subprotocols=["streamlit"],
                                      additional_headers=headers, open_timeout=20) as ws:  # fmt: skip
            return ws.state

    for headers in (None, {"Cookie": f"{COOKIE}=forged"}, {"Cookie": f"{COOKIE}="}):
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(attempt(headers))
        assert refused.value.response.status_code == 403
    # With the cookie the gate gives, the session opens.
    assert asyncio.run(attempt({"Cookie": f"{COOKIE}={cookie_value(TOKEN)}"})) is not None


def test_guessing_the_token_is_slow_and_bounded(server):
    """Every attempt waits a second, the right one too; one attempt per address at a time,
    so 300 parallel guesses get at most a handful of answers, and a person's typo right
    after is answered in about a second, not minutes behind a queue."""
    before = process_facts(server.pid)

    def guess(i: int) -> tuple[int, float]:
        started = time.monotonic()
        status, _, _ = _request(server, "GET", f"/?token=guess-{i:04d}-{'x' * 12}")
        return status, time.monotonic() - started

    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(guess, range(300)))
    elapsed = time.monotonic() - started
    judged = [t for s, t in results if s in (303, 401)]  # answered: wrong (to the login page)
    refused = [t for s, t in results if s == 429]  # too many at once: refused, not judged
    assert len(judged) + len(refused) == 300
    assert all(t >= 0.95 for t in judged)  # every judged attempt waited its second
    assert len(judged) <= elapsed + 2  # one at a time from this address
    assert not [s for s, _ in results if s == 200]
    # A typo, then the right token: each answered in about a second.
    t0 = time.monotonic()
    status, _, headers = _request(server, "GET", "/?token=" + TOKEN[:-1])
    assert status == 303 and "embscope_login=link" in headers.get("location", "")
    status, _, headers = _request(server, "GET", "/?token=" + TOKEN)
    waited = time.monotonic() - t0
    assert status == 303 and f"{COOKIE}=" in headers.get("set-cookie", "")
    assert 1.9 <= waited < 6, waited  # the right token waits too: its time tells nothing
    after = process_facts(server.pid)
    assert after[1] - before[1] <= 4, (before, after)  # threads steady
    assert after[0] - before[0] < 50, (before, after)


def test_a_foreign_host_name_is_refused(server):
    """DNS rebinding: a page under another domain that resolves to this server is refused."""
    cookie = {"Cookie": f"{COOKIE}={cookie_value(TOKEN)}"}
    for host in ("evil.example", "attacker.test:8501", "embscope.evil.example"):
        status, _, _ = _request(server, "GET", "/_stcore/health", headers={"Host": host})
        assert status == 421, host
        status, _, _ = _request(server, "GET", "/", headers={"Host": host, **cookie})
        assert status == 421, host
    port = urllib.parse.urlsplit(server).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, _, _ = _request(server, "GET", "/", headers={"Host": host, **cookie})
        assert status == 200, host


def test_uploads_are_bounded_in_size(server):
    """With the token: an upload must announce its size, at most --max-upload-mb (refused
    before its body is read)."""
    netloc = urllib.parse.urlsplit(server).netloc
    cookie = f"{COOKIE}={cookie_value(TOKEN)}"

    def put(length: str | None) -> bytes:
        size = "" if length is None else f"Content-Length: {length}\r\n"
        chunked = "Transfer-Encoding: chunked\r\n" if length is None else ""
        request = (f"PUT /_stcore/upload_file/s/f HTTP/1.1\r\nHost: {netloc}\r\n"
                   f"Cookie: {cookie}\r\n{size}{chunked}\r\n").encode()  # fmt: skip
        return _raw_headers_only(server, request)

    assert put(str(5 * 1024**2)).startswith(b"HTTP/1.1 413")  # over the 4 MB limit
    assert put(None).startswith(b"HTTP/1.1 400")  # chunked, no size announced
    # (At most two uploads at once: tests/app/test_gate.py, with a downstream that waits.)


def test_uploaded_files_held_by_streamlit_are_bounded(server):
    """Streamlit keeps a session's uploaded files in memory until the session ends, however
    many file ids it is sent: a session may hold 2 files, the server 2 x --max-upload-mb."""
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    from tests.e2e.load_helpers import StreamlitSession

    netloc = urllib.parse.urlsplit(server).netloc
    xsrf = generate_xsrf_token_string()
    cookie = f"{COOKIE}={cookie_value(TOKEN)}"

    def put(session_id: str, file_id: str, megabytes: float) -> int:
        payload = b"x" * int(megabytes * 1024 * 1024)
        body = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="v.npy"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--b--\r\n"
        )
        headers = {
            "Host": netloc,
            "Cookie": f"{cookie}; _streamlit_xsrf={xsrf}",
            "X-Xsrftoken": xsrf,
            "Content-Type": "multipart/form-data; boundary=b",
        }
        return _request(server, "PUT", f"/_stcore/upload_file/{session_id}/{file_id}",
                        headers=headers, body=body)[0]  # fmt: skip

    async def sessions(count: int) -> list[StreamlitSession]:
        out = []
        for _ in range(count):
            session = await StreamlitSession(server, cookie=cookie).connect()
            await session.run("datasets", "")
            out.append(session)
        return out

    async def scenario() -> tuple[list[int], list[int]]:
        first, second = await sessions(2)
        try:
            one = [put(first.session_id, f"f{i}", 1.0) for i in range(3)]  # 2 per session
            # The server holds at most 2 x 4 MB: 2 files of 1 MB plus 3 MB fit, 3 MB more do not.
            two = [put(second.session_id, "g0", 3.0), put(second.session_id, "g1", 3.0)]
            return one, two
        finally:
            await first.close()
            await second.close()

    one, two = asyncio.run(scenario())
    assert one[:2] == [204, 204] and one[2] == 429, one
    assert two == [204, 429], two


def test_the_login_form_returns_to_where_the_visitor_was_going(server):
    body = urllib.parse.urlencode({"token": TOKEN, "next": "/compare?dataset=1"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, got = _request(server, "POST", "/_embscope/login", headers=headers, body=body)
    assert status == 303 and got["location"] == "/compare?dataset=1"
    assert "HttpOnly" in got["set-cookie"] and "SameSite=Strict" in got["set-cookie"]
    for elsewhere in ("//evil.example/x", "https://evil.example", "\\\\evil"):
        body = urllib.parse.urlencode({"token": TOKEN, "next": elsewhere}).encode()
        status, _, got = _request(server, "POST", "/_embscope/login", headers=headers, body=body)
        assert status == 303 and got["location"] == "/", elsewhere  # never off-site


def test_clearing_streamlits_caches_makes_no_second_runner(server):
    """A session (with the token) sends Streamlit's clear_cache three times: the store, job
    runner and neighbour service are process singletons, not cache entries, so the server
    gains no threads (before, three clears grew it from 20 to 35 threads)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    from tests.e2e.load_helpers import StreamlitSession

    async def scenario():
        session = StreamlitSession(server, cookie=f"{COOKIE}={cookie_value(TOKEN)}")
        await session.connect()
        try:
            await session.run("neighbours", "dataset=1&find=row&row=3")
            before = process_facts(server.pid)
            for _ in range(3):
                back = BackMsg()
                back.clear_cache = True
                await session.send(back)
                run = await session.run("neighbours", "dataset=1&find=row&row=4")
                assert not run.errors(), run.errors()
            return before, process_facts(server.pid)
        finally:
            await session.close()

    before, after = asyncio.run(scenario())
    assert after[1] - before[1] <= 2, (before, after)


def test_tls_serves_https_and_marks_the_cookie_secure(tmp_path):
    """--tls-cert/--tls-key: the gate and the app over HTTPS; the access cookie is Secure."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    db = tmp_path / "tls.duckdb"
    Store(db).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    env["EMBSCOPE_WARM_UP"] = "0"
    flags = ("--token", TOKEN, "--tls-cert", str(cert), "--tls-key", str(key))
    with running_server(db, tmp_path / "server.log", *flags, env=env) as url:
        assert url.startswith("https://")
        parts = urllib.parse.urlsplit(url)
        context = ssl._create_unverified_context()

        def get(path: str) -> tuple[int, dict]:
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30,
                                               context=context)  # fmt: skip
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                return response.status, dict(response.getheaders())
            finally:
                conn.close()

        assert get("/")[0] == 401
        status, headers = get("/?token=" + TOKEN)
        assert status == 303 and "Secure" in headers["set-cookie"]
        # Plain HTTP to the TLS port gets no page.
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            plain.request("GET", "/")
            assert plain.getresponse().status >= 400


def test_a_read_only_server_writes_nothing_while_visitors_compute(tmp_path):
    """`serve --read-only`: a visitor (a websocket session, as a browser) computes a PCA layout
    with its scores (and so the dataset's neighbour graph); a second visitor sees it at once;
    the database file's bytes and the listing of its folder are the same afterwards. (The
    scorecard through the pages: tests/app/test_read_only_server.py.)"""
    from tests.e2e.load_helpers import StreamlitSession

    db = tmp_path / "demo" / "ro.duckdb"
    db.parent.mkdir()
    with Store(db) as store:
        X = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
        store.add_dataset(make_parsed(X), name="demo")
    before = {p.name: p.read_bytes() for p in db.parent.iterdir()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    env["EMBSCOPE_WARM_UP"] = "0"
    cookie = f"{COOKIE}={cookie_value(TOKEN)}"

    def pca_drawn(run) -> bool:
        specs = [e.plotly_chart.spec for _, e in run.of_type("plotly_chart")]
        return any("PCA 2-D of demo" in spec for spec in specs)

    async def visit(session: StreamlitSession) -> bool:
        for _ in range(60):  # the page starts the job, then draws the layout once it is done
            run = await session.run("projections", "dataset=1&method=pca")
            assert not run.errors(), run.errors()
            if pca_drawn(run):
                return True
            await asyncio.sleep(1.0)
        return False

    async def scenario(url: str) -> tuple[bool, bool]:
        first = await StreamlitSession(url, cookie=cookie).connect()
        second = await StreamlitSession(url, cookie=cookie).connect()
        try:
            computed = await visit(first)
            shown = pca_drawn(await second.run("projections", "dataset=1&method=pca"))
            return computed, shown
        finally:
            await first.close()
            await second.close()

    with running_server(db, tmp_path / "server.log", "--read-only", "--token", TOKEN,
                        env=env) as url:  # fmt: skip
        computed, shown = asyncio.run(scenario(url))
    assert computed and shown  # the second visitor sees the first one's layout at once
    after = {p.name: p.read_bytes() for p in db.parent.iterdir()}
    assert sorted(after) == sorted(before)  # nothing beside the database (.indexes, .wal, tmp)
    assert after == before  # and the database's bytes are the same


def test_links_cannot_ask_for_unbounded_work(tmp_path):
    """Against a real server: a link asking for a 2,999-wide UMAP graph is refused with a
    toast (no job), and links opening PCA with five different seeds store one layout (PCA
    ignores the seed) instead of five."""
    from tests.e2e.load_helpers import StreamlitSession, plain_markdown

    db = tmp_path / "bounds.duckdb"
    with Store(db) as store:
        X = np.random.default_rng(2).standard_normal((3000, 8)).astype(np.float32)
        store.add_dataset(make_parsed(X), name="big enough")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    env["EMBSCOPE_WARM_UP"] = "0"
    cookie = f"{COOKIE}={cookie_value(TOKEN)}"

    async def scenario(url: str) -> list[str]:
        session = await StreamlitSession(url, cookie=cookie).connect()
        try:
            run = await session.run("projections", "dataset=1&method=umap&p.n_neighbors=2999")
            toasts = [plain_markdown(e.toast.body) for _, e in run.of_type("toast")]
            for seed in range(5):
                for _ in range(30):
                    run = await session.run("projections", f"dataset=1&method=pca&seed={seed}")
                    specs = [e.plotly_chart.spec for _, e in run.of_type("plotly_chart")]
                    if any("PCA 2-D" in s for s in specs):
                        break
                    await asyncio.sleep(1.0)
            return toasts
        finally:
            await session.close()

    with running_server(db, tmp_path / "server.log", "--token", TOKEN, env=env) as url:
        toasts = asyncio.run(scenario(url))
    assert any("n_neighbors" in t and "2999" in t for t in toasts), toasts
    with Store(db, read_only=True) as store:
        kinds = [a.kind for a in store.list_artifacts()]
        methods = [a.params["request"]["method"] for a in store.list_artifacts(kind="projection")]
    assert methods == ["pca"], kinds  # one PCA layout for five seeds, no UMAP job
