"""The access gate in front of Streamlit: nothing reaches the app before the token.

``embscope serve`` runs the dashboard as an ``st.App`` (app/server.py) with this ASGI
middleware first in line. It sees every HTTP request and every websocket handshake before
Streamlit does, so a visitor without the token cannot upload a byte, open a session or send
a message (not even Streamlit's ``clear_cache``); the in-app token form of app/main.py is
only the fallback when the app is run some other way.

* **Login.** The token is given once, as ``?token=...`` in a link or in the gate's own form
  (``POST /_embscope/login``). A right token gets an HttpOnly, SameSite=Strict cookie (Secure
  over TLS) and a redirect to the same address without the token. The cookie holds an HMAC of
  a constant under the token, so it proves the token without containing it, and changing the
  token revokes every cookie.
* **Guessing is slow.** Every attempt, right or wrong, is answered after
  :data:`ATTEMPT_DELAY_S`; one attempt per client at a time; at most
  :data:`MAX_PENDING_ATTEMPTS` waiting server-wide; a client that keeps failing is refused for
  :data:`LOCKOUT_S`. Too many attempts get HTTP 429 at once, without a wait.
* **Uploads are bounded.** An upload must say its size (Content-Length) within the server's
  limit, and at most :data:`MAX_CONCURRENT_UPLOADS` run at once, so uploads can hold at most
  that many times ``--max-upload-mb`` of memory. Refused before any byte of the body is read.
* **Host check.** A request whose Host header names neither this machine nor an allowed host
  is refused (DNS rebinding: a hostile page whose domain resolves to the server).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from embscope.app import access

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "embscope_access"
LOGIN_PATH = "/_embscope/login"
TOKEN_PARAM = "token"
# Added to the address after a wrong token in a link, so the login page can say so.
WRONG_PARAM = "embscope_login"
# Requests answered without the token: the health check (says only "ok").
OPEN_PATHS = frozenset({"/_stcore/health"})
UPLOAD_PREFIX = "/_stcore/upload_file"

#: Every login attempt, right or wrong, is answered after this many seconds.
ATTEMPT_DELAY_S = 1.0
#: Attempts waiting for their answer, server-wide; more are refused at once (HTTP 429).
MAX_PENDING_ATTEMPTS = 32
#: A client that gets this many wrong answers in a row is refused for LOCKOUT_S.
MAX_FAILURES = 20
LOCKOUT_S = 600.0
#: Addresses the limiter remembers before it forgets finished lockouts and old failures.
MAX_TRACKED_CLIENTS = 10_000
#: Uploads in flight at once (one per client address); each is at most --max-upload-mb.
MAX_CONCURRENT_UPLOADS = 2
#: Files a session may hold (the Datasets page has two uploaders), and the bytes of uploaded
#: files the server holds in all, in units of --max-upload-mb.
FILES_PER_SESSION = 2
HELD_UPLOADS_FACTOR = 2
#: An upload whose body stops arriving for this long is dropped (its slot freed).
UPLOAD_IDLE_S = 30.0
#: The login form's body is small; anything larger is refused unread.
MAX_LOGIN_BODY = 4096

ALLOWED_HOSTS_ENV = "EMBSCOPE_ALLOWED_HOSTS"
BIND_ADDRESS_ENV = "EMBSCOPE_BIND_ADDRESS"
TLS_ENV = "EMBSCOPE_TLS"


def cookie_value(token: str) -> str:
    """The cookie that proves the token: an HMAC under the token (not the token itself)."""
    digest = hmac.new(token.encode("utf-8"), b"embscope access cookie v1", hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")


def cookie_is_valid(value: object, token: str | None = None) -> bool:
    """Whether ``value`` is the access cookie of the server's token."""
    token = access.access_token() if token is None else token
    if token is None or not isinstance(value, str) or not value:
        return False
    return hmac.compare_digest(value.encode("ascii", "replace"), cookie_value(token).encode())


@dataclass
class LoginLimiter:
    """Slows every token attempt down, bounds how many wait, and locks out persistent guessers."""

    delay_s: float = ATTEMPT_DELAY_S
    max_pending: int = MAX_PENDING_ATTEMPTS
    max_failures: int = MAX_FAILURES
    lockout_s: float = LOCKOUT_S
    pending: int = 0
    clients: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)

    def admit(self, client: str) -> str | None:
        """Take a slot for ``client``'s attempt; the reason it is refused, or None."""
        now = time.monotonic()
        if len(self.locked_until) > MAX_TRACKED_CLIENTS:  # forget lockouts that ended
            self.locked_until = {c: t for c, t in self.locked_until.items() if t > now}
        if len(self.failures) > MAX_TRACKED_CLIENTS:
            self.failures.clear()
        if self.locked_until.get(client, 0.0) > now:
            return "too many wrong tokens from this address: try again later"
        if client in self.clients:
            return "one attempt at a time: wait for the answer to the last one"
        if self.pending >= self.max_pending:
            return "too many attempts at once: try again in a few seconds"
        self.pending += 1
        self.clients.add(client)
        return None

    def release(self, client: str, *, right: bool) -> None:
        """Free ``client``'s slot and count its answer."""
        self.pending -= 1
        self.clients.discard(client)
        if right:
            self.failures.pop(client, None)
            return
        count = self.failures.get(client, 0) + 1
        self.failures[client] = count
        if count >= self.max_failures:
            self.locked_until[client] = time.monotonic() + self.lockout_s
            self.failures.pop(client, None)


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return True


def allowed_host_names(bind_address: str, extra: list[str]) -> frozenset[str]:
    """The host names (besides IP literals) a request may name in its Host header.

    A server bound to loopback answers only to loopback names. A server reachable from other
    machines also answers to this machine's own names and to the hosts the operator allowed
    (``--allow-host``): a DNS-rebinding page reaches it under a domain of the attacker's.
    """
    names = {"localhost"}
    if not _is_loopback(bind_address):
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
    names.update(h.strip().lower() for h in extra if h.strip())
    return frozenset(names)


def _host_of(header: str) -> str:
    """The host part of a Host header (``[::1]:8501`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AccessGate:
    """ASGI middleware: the token, the host check and the upload budget, before Streamlit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.token = access.access_token()
        self.bind_address = os.environ.get(BIND_ADDRESS_ENV, "127.0.0.1")
        extra = [h for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h]
        self.host_names = allowed_host_names(self.bind_address, extra)
        self.secure = os.environ.get(TLS_ENV) == "1"
        self.limiter = LoginLimiter()
        self.uploads = 0
        self.uploading: set[str] = set()
        self.max_upload_bytes = _max_upload_bytes()

    # -- the checks ---------------------------------------------------------------------------

    def host_allowed(self, scope: Scope) -> bool:
        """Whether the request names this server: an IP literal (loopback ones only for a
        loopback server) or an allowed host name."""
        header = _header(scope, b"host")
        if header is None:
            return False
        host = _host_of(header)
        if _is_ip(host):
            return _is_loopback(host) or not _is_loopback(self.bind_address)
        return host in self.host_names or (
            host.endswith(".localhost") and _is_loopback(self.bind_address)
        )

    def authorised(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        values = _cookie_values(scope, COOKIE)
        # One access cookie: with two, the gate and Streamlit could read different ones.
        return len(values) == 1 and cookie_is_valid(values[0], self.token)

    def same_origin(self, scope: Scope) -> bool:
        """Whether a websocket or a state-changing request comes from this server's own pages:
        a browser names the page's origin, and a page of another site, or of another port of
        this host (cookies ignore ports), is refused. Clients that name no origin (scripts,
        the tests) are not browsers carrying someone else's cookie."""
        origin = _header(scope, b"origin")
        if origin is None:
            return True
        host = _header(scope, b"host") or ""
        scheme = "https" if self.secure else "http"
        return origin.lower().rstrip("/") == f"{scheme}://{host.lower()}"

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.host_allowed(scope):
            await _refuse(scope, send, 421, "this server does not answer to that host name")
            return
        path = scope.get("path", "")
        if kind == "http" and path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if kind == "http" and path == LOGIN_PATH and scope.get("method") == "POST":
            await self._login_form(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if kind == "http" and self.token is not None and TOKEN_PARAM in query:
            await self._login_link(scope, send, query)
            return
        if not self.authorised(scope):
            if kind == "http" and scope.get("method") == "GET" and _wants_page(scope):
                wrong = query.pop(WRONG_PARAM, None) == "link"
                target = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
                await self._login_page(
                    send, status=401, next_path=target,
                    error="The access token in the link is not right." if wrong else "",
                )  # fmt: skip
            else:
                await _refuse(scope, send, 401, "give the access token first")
            return
        unsafe = kind == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        if unsafe and not self.same_origin(scope):
            await _refuse(scope, send, 403, "requests from another site are refused")
            return
        if kind == "http" and path.startswith(UPLOAD_PREFIX) and scope.get("method") == "PUT":
            await self._upload(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        if access.read_only():
            await _refuse(scope, send, 403, "this read-only server accepts no uploads")
            return
        if _header(scope, b"transfer-encoding") is not None:
            await _refuse(scope, send, 400, "send the upload with a Content-Length, not chunked")
            return
        size = _header(scope, b"content-length")
        if size is None or not size.isdigit():
            await _refuse(scope, send, 411, "an upload must say its size (Content-Length)")
            return
        if int(size) > self.max_upload_bytes:
            await _refuse(scope, send, 413, "the file is larger than this server accepts")
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.uploads >= MAX_CONCURRENT_UPLOADS or client in self.uploading:
            await _refuse(scope, send, 429, "other uploads are in progress: try again shortly")
            return
        refusal = _held_uploads_refusal(scope.get("path", ""), int(size), self.max_upload_bytes)
        if refusal is not None:
            await _refuse(scope, send, 429, refusal)
            return
        self.uploads += 1
        self.uploading.add(client)
        try:
            await self.app(scope, _with_idle_timeout(receive, UPLOAD_IDLE_S), send)
        finally:
            self.uploads -= 1
            self.uploading.discard(client)

    # -- login ----------------------------------------------------------------------------------

    async def _check(self, scope: Scope, given: str) -> tuple[bool, str | None]:
        """(right, refusal): every attempt waits its turn; a refused one is not judged.

        Only a page the browser opens (a link followed, the form sent) counts as an attempt:
        an image or a script of another site pointing at ``?token=`` could otherwise spend a
        visitor's attempts and lock the visitor out.
        """
        destination = _header(scope, b"sec-fetch-dest")
        if destination is not None and destination not in ("document", "empty"):
            return False, "a token is taken only from a page the browser opens"
        client = (scope.get("client") or ("unknown", 0))[0]
        refusal = self.limiter.admit(client)
        if refusal is not None:
            return False, refusal
        right = False
        try:
            await asyncio.sleep(self.limiter.delay_s)
            right = self.token is not None and hmac.compare_digest(
                given.encode("utf-8", "replace"), self.token.encode("utf-8")
            )
        finally:
            self.limiter.release(client, right=right)
        return right, None

    async def _login_link(self, scope: Scope, send: Send, query: dict[str, str]) -> None:
        """A link carrying the token: in with a cookie, or back to the login page; either
        way to an address without the token (a copied link never carries it along)."""
        given = query.pop(TOKEN_PARAM, "")
        query.pop(WRONG_PARAM, None)
        right, refusal = await self._check(scope, given)
        target = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
        if refusal is not None:
            await self._login_page(send, status=429, error=refusal, next_path=target)
        elif right:
            await self._enter(send, target)
        else:
            query[WRONG_PARAM] = "link"
            await _redirect(send, scope.get("path", "/") + f"?{urlencode(query)}")

    async def _login_form(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_LOGIN_BODY)
        if body is None:
            await _refuse(scope, send, 413, "the login form is too large")
            return
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        target = safe_next(form.get("next", "/"))
        right, refusal = await self._check(scope, form.get(TOKEN_PARAM, ""))
        if refusal is not None:
            await self._login_page(send, status=429, error=refusal, next_path=target)
        elif right:
            await self._enter(send, target)
        else:
            await self._login_page(
                send, status=401, error="That access token is not right.", next_path=target
            )

    async def _enter(self, send: Send, target: str) -> None:
        assert self.token is not None
        attributes = "Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.secure else "")
        await _respond(
            send,
            303,
            b"",
            headers=[
                (b"location", safe_next(target).encode("latin-1", "replace")),
                (b"set-cookie", f"{COOKIE}={cookie_value(self.token)}; {attributes}".encode()),
                (b"cache-control", b"no-store"),
            ],
        )

    async def _login_page(
        self, send: Send, *, status: int, error: str = "", next_path: str = "/"
    ) -> None:
        message = f'<p class="error">{html.escape(error)}</p>' if error else ""
        page = LOGIN_PAGE.format(
            message=message,
            action=LOGIN_PATH,
            next=html.escape(safe_next(next_path), quote=True),
        )
        await _respond(
            send,
            status,
            page.encode("utf-8"),
            headers=[
                (b"content-type", b"text/html; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-frame-options", b"DENY"),
                (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
            ],
        )


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>embscope</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: sans-serif; max-width: 28rem; margin: 12vh auto; padding: 0 1rem;
       color: #262730; }}
h1 {{ font-size: 2rem; margin-bottom: .5rem; }}
input {{ width: 100%; padding: .6rem; font-size: 1rem; margin: .5rem 0 1rem;
        box-sizing: border-box; }}
button {{ padding: .6rem 1.2rem; font-size: 1rem; background: #ff4b4b; color: white;
         border: 0; border-radius: .4rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><h1>embscope</h1>
<p>This server is shared with a team: enter its access token to continue.</p>
{message}
<form method="post" action="{action}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Open embscope</button>
</form></body></html>
"""


# -- small ASGI helpers --------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie_values(scope: Scope, name: str) -> list[str]:
    """Every value the request's cookies give ``name`` (a forged duplicate shows as two)."""
    out: list[str] = []
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            key_name, sep, val = part.strip().partition("=")
            if sep and key_name == name:
                out.append(val)
    return out


def _wants_page(scope: Scope) -> bool:
    path = scope.get("path", "/")
    return not path.startswith(("/_stcore/", "/static/", "/media/", "/component/"))


def safe_next(target: str) -> str:
    """A local path to return to after login, never another site.

    Only printable ASCII without spaces or backslashes is kept: browsers drop tabs and line
    breaks from an address and read a backslash as a slash, so ``/\\t/evil.example`` or
    ``/\\evil`` would become ``//evil.example``, another site. Anything else is ``/``.
    """
    if (
        not target.startswith("/")
        or target.startswith("//")
        or any(not ("!" <= c <= "~") or c == "\\" for c in target)
    ):
        return "/"
    return target


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _redirect(send: Send, target: str) -> None:
    await _respond(
        send,
        303,
        b"",
        headers=[(b"location", safe_next(target).encode("latin-1", "replace")),
                 (b"cache-control", b"no-store")],
    )  # fmt: skip


async def _respond(
    send: Send, status: int, body: bytes, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Refuse a request (HTTP: ``status`` with ``reason``; websocket: close the handshake)."""
    if scope["type"] == "websocket":
        # Before accept: the client's handshake fails (HTTP 403); nothing reaches Streamlit.
        await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        return
    await _respond(send, status, reason.encode("utf-8"), headers=[(b"content-type", b"text/plain")])


def _max_upload_bytes() -> int:
    try:
        megabytes = int(os.environ.get(access.MAX_UPLOAD_ENV, "2048"))
    except ValueError:
        megabytes = 2048
    return max(megabytes, 1) * 1024 * 1024


def _held_uploads_refusal(path: str, size: int, max_upload_bytes: int) -> str | None:
    """Why Streamlit may not take another uploaded file now, or None: a session holds at
    most :data:`FILES_PER_SESSION` files, and the server at most
    :data:`HELD_UPLOADS_FACTOR` times ``--max-upload-mb`` of them (Streamlit keeps a session's
    files in memory until the session ends, however many its page asked for)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return None
    manager = Runtime.instance().uploaded_file_mgr
    held = sum(
        getattr(s, "byte_length", 0) for stats in manager.get_stats().values() for s in stats
    )
    if held + size > HELD_UPLOADS_FACTOR * max_upload_bytes:
        return "the server holds too many uploaded files now: try again in a few minutes"
    session = path.removeprefix(UPLOAD_PREFIX + "/").split("/", 1)[0]
    storage = getattr(manager, "file_storage", {})
    if len(storage.get(session, {})) >= FILES_PER_SESSION:
        return "this page already holds its files: remove one before uploading another"
    return None


def _with_idle_timeout(receive: Receive, seconds: float) -> Receive:
    """``receive`` that gives up when the next part of the body takes more than ``seconds``."""

    async def timed() -> Message:
        return await asyncio.wait_for(receive(), timeout=seconds)

    return timed
