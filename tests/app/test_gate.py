"""app.gate: the ASGI middleware in front of Streamlit, driven directly (no server)."""

from __future__ import annotations

import asyncio

import pytest

from embscope.app import access, gate

TOKEN = "unit-gate-token-0123456789"


def _scope(path="/", *, method="GET", kind="http", query=b"", headers=None, client="10.0.0.5"):
    base = [(b"host", b"127.0.0.1:8501")]
    return {
        "type": kind,
        "path": path,
        "method": method,
        "query_string": query,
        "headers": base + [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 40000),
    }


class Downstream:
    """Stands for Streamlit: records what reached it; optionally holds a request."""

    def __init__(self, hold: asyncio.Event | None = None):
        self.seen: list[str] = []
        self.hold = hold

    async def __call__(self, scope, receive, send):
        self.seen.append(scope["path"])
        if self.hold is not None:
            await self.hold.wait()
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"app"})


async def _call(app, scope, body=b""):
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _status(sent):
    starts = [m for m in sent if m["type"] in ("http.response.start", "websocket.close")]
    return starts[0].get("status", starts[0].get("code"))


@pytest.fixture
def gated(monkeypatch):
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    monkeypatch.setenv(access.MAX_UPLOAD_ENV, "1")
    monkeypatch.setenv(gate.BIND_ADDRESS_ENV, "127.0.0.1")
    monkeypatch.setattr(gate, "ATTEMPT_DELAY_S", 0.01)

    def make(downstream=None):
        app = gate.AccessGate(downstream or Downstream())
        app.limiter.delay_s = 0.01
        return app

    return make


def test_without_the_cookie_nothing_reaches_the_app(gated):
    down = Downstream()
    app = gated(down)
    assert _status(asyncio.run(_call(app, _scope("/")))) == 401
    assert _status(asyncio.run(_call(app, _scope("/_stcore/stream", kind="websocket")))) == 1008
    upload = _scope("/_stcore/upload_file/s/f", method="PUT", headers={"content-length": "10"})
    assert _status(asyncio.run(_call(app, upload))) == 401
    assert down.seen == []
    assert _status(asyncio.run(_call(app, _scope("/_stcore/health")))) == 200
    cookie = {"cookie": f"{gate.COOKIE}={gate.cookie_value(TOKEN)}"}
    assert _status(asyncio.run(_call(app, _scope("/", headers=cookie)))) == 200
    assert down.seen == ["/_stcore/health", "/"]


def test_the_cookie_proves_the_token_without_holding_it():
    value = gate.cookie_value(TOKEN)
    assert TOKEN not in value and gate.cookie_is_valid(value, TOKEN)
    assert not gate.cookie_is_valid(value, TOKEN + "x")  # a new token revokes every cookie
    assert not gate.cookie_is_valid("", TOKEN) and not gate.cookie_is_valid(None, TOKEN)


def test_a_right_link_sets_the_cookie_and_drops_the_token(gated):
    app = gated()
    sent = asyncio.run(_call(app, _scope("/compare", query=f"token={TOKEN}&k=5".encode())))
    start = sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 303 and headers[b"location"] == b"/compare?k=5"
    assert headers[b"set-cookie"].startswith(f"{gate.COOKIE}=".encode())
    wrong = asyncio.run(_call(app, _scope("/compare", query=b"token=nope&k=5")))
    assert dict(wrong[0]["headers"])[b"location"] == b"/compare?k=5&embscope_login=link"


def test_uploads_at_once_are_bounded(gated):
    """At most MAX_CONCURRENT_UPLOADS reach Streamlit together; more get 429 unread, and an
    upload must announce a size within the limit."""

    async def scenario():
        hold = asyncio.Event()
        down = Downstream(hold)
        app = gated(down)
        cookie = {"cookie": f"{gate.COOKIE}={gate.cookie_value(TOKEN)}"}

        def upload(length, client="10.0.0.9", **extra):
            headers = dict(cookie, **({"content-length": length} if length else {}), **extra)
            return _scope("/_stcore/upload_file/s/f", method="PUT", headers=headers,
                          client=client)  # fmt: skip

        running = [asyncio.create_task(_call(app, upload("100", client=f"10.0.0.{i}")))
                   for i in range(gate.MAX_CONCURRENT_UPLOADS)]  # fmt: skip
        await asyncio.sleep(0.05)
        extra = await _call(app, upload("100"))
        same_client = await _call(app, upload("100", client="10.0.0.0"))
        too_big = await _call(app, upload(str(2 * 1024 * 1024)))
        no_size = await _call(app, upload(None))
        chunked = await _call(app, upload("100", **{"transfer-encoding": "chunked"}))
        hold.set()
        done = await asyncio.gather(*running)
        after = await _call(app, upload("100"))
        return extra, same_client, too_big, no_size, chunked, done, after

    extra, same_client, too_big, no_size, chunked, done, after = asyncio.run(scenario())
    assert _status(extra) == 429 and _status(same_client) == 429
    assert _status(too_big) == 413 and _status(no_size) == 411 and _status(chunked) == 400
    assert all(_status(d) == 200 for d in done) and _status(after) == 200


def test_login_attempts_wait_one_at_a_time_per_client_and_lock_out(gated):
    limiter = gate.LoginLimiter(delay_s=0.0, max_pending=3, max_failures=3, lockout_s=60)
    assert limiter.admit("a") is None
    assert "one attempt at a time" in limiter.admit("a")
    assert limiter.admit("b") is None and limiter.admit("c") is None
    assert "too many attempts" in limiter.admit("d")  # three pending server-wide
    for client in "abc":
        limiter.release(client, right=False)
    for _ in range(2):
        assert limiter.admit("a") is None
        limiter.release("a", right=False)
    assert "try again later" in limiter.admit("a")  # three wrong in a row: locked out
    assert limiter.admit("b") is None  # others are not


@pytest.mark.parametrize(
    ("bind", "host", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1:8501", True),
        ("127.0.0.1", "localhost:8501", True),
        ("127.0.0.1", "[::1]:8501", True),
        ("127.0.0.1", "evil.example", False),  # DNS rebinding to a loopback server
        ("127.0.0.1", "192.168.1.20:8501", False),
        ("0.0.0.0", "192.168.1.20:8501", True),  # an address of the machine
        ("0.0.0.0", "evil.example:8501", False),
        ("0.0.0.0", "embscope.lab", True),  # allowed by --allow-host
    ],
)
def test_host_names(gated, monkeypatch, bind, host, allowed):
    monkeypatch.setenv(gate.BIND_ADDRESS_ENV, bind)
    monkeypatch.setenv(gate.ALLOWED_HOSTS_ENV, "embscope.lab")
    app = gated()
    scope = _scope("/_stcore/health")
    scope["headers"] = [(b"host", host.encode())]
    assert app.host_allowed(scope) is allowed


def test_the_return_address_stays_on_the_server():
    for target, safe in [("/projections?x=1", "/projections?x=1"), ("//evil.example", "/"),
                         ("https://evil.example/", "/"), ("/\\\\evil", "/"), ("", "/"),
                         ("/\t/evil.example/", "/"), ("/\n/evil", "/"), ("/ /evil", "/"),
                         ("/\x7f/evil", "/"), ("/caf\u00e9", "/")]:  # fmt: skip
        assert gate.safe_next(target) == safe


def test_without_a_token_the_gate_only_checks_hosts_and_uploads(monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    monkeypatch.setenv(gate.BIND_ADDRESS_ENV, "127.0.0.1")
    down = Downstream()
    app = gate.AccessGate(down)
    assert _status(asyncio.run(_call(app, _scope("/")))) == 200
    scope = _scope("/")
    scope["headers"] = [(b"host", b"evil.example")]
    assert _status(asyncio.run(_call(app, scope))) == 421


def test_a_read_only_server_takes_no_upload(gated, monkeypatch):
    monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    cookie = {"cookie": f"{gate.COOKIE}={gate.cookie_value(TOKEN)}", "content-length": "10"}
    sent = asyncio.run(_call(gated(), _scope("/_stcore/upload_file/s/f", method="PUT",
                                             headers=cookie)))  # fmt: skip
    assert _status(sent) == 403


def test_two_access_cookies_are_not_one(gated):
    """The gate and Streamlit could read different ones of two: neither is taken."""
    down = Downstream()
    app = gated(down)
    valid = gate.cookie_value(TOKEN)
    for cookie in (
        f"{gate.COOKIE}={valid}; {gate.COOKIE}=x",
        f"{gate.COOKIE}=x; {gate.COOKIE}={valid}",
    ):
        assert _status(asyncio.run(_call(app, _scope("/", headers={"cookie": cookie})))) == 401
    assert down.seen == []


def test_another_sites_page_cannot_use_a_visitors_cookie(gated):
    """Cookies ignore ports: a page on another port of this host would send the cookie. A
    websocket or a state-changing request naming another origin is refused."""
    down = Downstream()
    app = gated(down)
    cookie = f"{gate.COOKIE}={gate.cookie_value(TOKEN)}"
    for origin in ("http://127.0.0.1:9998", "http://evil.example", "null"):
        headers = {"cookie": cookie, "origin": origin}
        ws = _scope("/_stcore/stream", kind="websocket", headers=headers)
        assert _status(asyncio.run(_call(app, ws))) == 1008, origin
        put = _scope("/_stcore/upload_file/s/f", method="PUT",
                     headers=dict(headers, **{"content-length": "10"}))  # fmt: skip
        assert _status(asyncio.run(_call(app, put))) == 403, origin
    own = _scope("/_stcore/stream", kind="websocket",
                 headers={"cookie": cookie, "origin": "http://127.0.0.1:8501"})  # fmt: skip
    asyncio.run(_call(app, own))
    assert down.seen == ["/_stcore/stream"]


def test_an_image_of_another_site_cannot_spend_a_visitors_attempts(gated):
    """Only a page the browser opens counts as an attempt: 25 image loads of ?token=bad
    leave the visitor's address unlocked."""
    app = gated()
    for i in range(25):
        scope = _scope("/", query=f"token=bad-{i}".encode(), headers={"sec-fetch-dest": "image"})
        assert _status(asyncio.run(_call(app, scope))) == 429
    link = _scope("/", query=f"token={TOKEN}".encode(), headers={"sec-fetch-dest": "document"})
    assert _status(asyncio.run(_call(app, link))) == 303


def test_the_limiter_forgets_finished_lockouts(monkeypatch):
    monkeypatch.setattr(gate, "MAX_TRACKED_CLIENTS", 10)
    limiter = gate.LoginLimiter(delay_s=0.0, max_failures=1, lockout_s=0.0)
    for i in range(50):
        assert limiter.admit(f"10.1.0.{i}") is None
        limiter.release(f"10.1.0.{i}", right=False)
    assert len(limiter.locked_until) <= 11


def test_serve_trusts_no_forwarded_address(capsys, tmp_path, monkeypatch):
    """uvicorn believes X-Forwarded-For from loopback by default; serve turns that off, so a
    local process cannot pose as other addresses to the token limiter."""
    import os

    from tests.helpers import run_cli

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append(env))
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    assert code == 0, err
    assert calls[0]["FORWARDED_ALLOW_IPS"] == ""
