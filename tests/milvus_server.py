"""A standalone ``milvus-lite server`` on loopback, for tests that reach Milvus by URI.

``milvus-lite server`` is Milvus Lite behind the gRPC API a Milvus server or cluster speaks,
so an ``http://127.0.0.1:<port>`` URI to it goes through exactly the client path a cluster
uses (pymilvus over gRPC), not the in-process path of a local ``.db`` URI.

:func:`milvus_lite_server` runs one for a ``with`` block; the session-scoped fixture
``milvus_server_uri`` (``tests/core/conftest.py``) shares one with every test that asks.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MilvusLiteServer", "free_port", "milvus_lite_server", "start_milvus_lite_server"]


def free_port() -> int:
    """A loopback port nobody listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _grpc_answers(uri: str) -> bool:
    """True when the server answers a gRPC request (not only accepts TCP connections)."""
    import pymilvus

    client = None
    try:
        client = pymilvus.MilvusClient(uri=uri, timeout=2.0, dedicated=True)
        client.get_server_version()
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    finally:
        if client is not None:
            client.close()


@dataclass
class MilvusLiteServer:
    """A running ``milvus-lite server`` process bound to 127.0.0.1."""

    uri: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """SIGINT (the server closes its database), then SIGTERM, then SIGKILL."""
        _stop(self.proc)
        assert self.proc.poll() is not None, "the milvus-lite server is still running"


def start_milvus_lite_server(data_dir: Path, *, startup_timeout: float = 30.0) -> MilvusLiteServer:
    """Start ``milvus-lite server --data-dir DIR --host 127.0.0.1 --port PORT`` on a free
    port (run as ``python -m milvus_lite``, so it is this virtualenv's copy) and wait until it
    answers gRPC. Stop it with :meth:`MilvusLiteServer.stop`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    for _attempt in range(3):
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "milvus_lite", "server",
            "--data-dir", str(data_dir / "milvus_data"),
            "--host", "127.0.0.1", "--port", str(port), "--max-workers", "8",
        ]  # fmt: skip
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while proc.poll() is None and not _port_answers(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _port_answers(port) and _grpc_answers(uri):
            return MilvusLiteServer(uri, port, proc, log_path)
        _stop(proc)  # died (the port was taken meanwhile?) or too slow: try another port
    raise RuntimeError(f"milvus-lite server did not start: {log_path.read_text()[-2000:]}")


@contextmanager
def milvus_lite_server(data_dir: Path, *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run a ``milvus-lite server`` on 127.0.0.1 for the block; yield its ``http://`` URI."""
    server = start_milvus_lite_server(data_dir, startup_timeout=startup_timeout)
    try:
        yield server.uri
    finally:
        server.stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 8.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
