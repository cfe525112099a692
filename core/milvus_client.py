"""Connections to Milvus for :mod:`core.index_milvus`: URIs, clients, dropping collections.

A URI is either a local path ending in ``.db``, which runs **Milvus Lite** in-process
(pymilvus starts a gRPC server on a free loopback port for that path, shared by every client
of the process that uses the same path and stopped when the last one closes; a Milvus Lite
database is used by one process at a time), or ``http(s)://host:port``, a Milvus server or
cluster. Credentials in a URI are never shown (:func:`public_uri`).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from embscope.core.errors import InvalidInputError

__all__ = [
    "INSTALL_HINT",
    "check_collection",
    "disconnect",
    "drop_collections",
    "error_text",
    "import_pymilvus",
    "is_milvus_failure",
    "open_client",
    "public_uri",
    "resolve_uri",
]

INSTALL_HINT = "install the milvus extra: pip install 'embscope[milvus]'"
# Milvus names: a letter or underscore, then letters, digits and underscores, at most 255
# characters; a rebuild stages into "<name>_build_<8 hex>", hence the lower limit here.
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_NAME = 200
# Seconds one request of drop_collections may take (a server that stops answering).
_REQUEST_TIMEOUT = 60.0


# -- Milvus Lite servers shared per database path -------------------------------------------

# Re-entrant: a garbage-collected index's finaliser may run while this thread holds it.
_local_lock = threading.RLock()
_local_users: dict[str, int] = {}


def _release_local(path: str) -> None:
    with _local_lock:
        _release_local_locked(path)


def _release_local_locked(path: str) -> None:
    left = _local_users.get(path, 0) - 1
    if left > 0:
        _local_users[path] = left
        return
    _local_users.pop(path, None)
    try:
        from milvus_lite.server_manager import (
            server_manager_instance,
        )
    except ImportError:  # pragma: no cover - the server could not have started
        return
    # Stops the in-process gRPC server and closes the database (releasing its lock file).
    server_manager_instance.release_server(path)


def disconnect(client: Any, local_path: str | None) -> None:
    """Close a client and, for Milvus Lite, release its server (also run by the finaliser)."""
    try:
        client.close()
    finally:
        if local_path is not None:
            _release_local(local_path)


# -- boundary checks ------------------------------------------------------------------------


def import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise InvalidInputError(f"the milvus index backend needs pymilvus: {INSTALL_HINT}") from exc
    # pymilvus prints every failed request with its traceback on stderr; each one reaches
    # the caller here as an InvalidInputError with the same text (the CLI's one error line).
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    return pymilvus


def resolve_uri(uri: Any) -> tuple[str, str | None]:
    """(uri for pymilvus, absolute local database path or None for a server)."""
    if uri is None:
        raise InvalidInputError(
            "the milvus backend needs a uri: a local path ending in .db runs Milvus Lite "
            "in-process, http://host:19530 reaches a Milvus server"
        )
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"the Milvus uri must be a non-empty string, got {uri!r}")
    uri = uri.strip()
    if uri.lower().startswith(("http://", "https://", "tcp://", "unix:")):
        return uri, None
    if "://" in uri:
        raise InvalidInputError(
            f"unsupported Milvus uri {public_uri(uri)!r}: use http://host:port or "
            "https://host:port for a server, or a local path ending in .db for Milvus Lite"
        )
    if not uri.endswith(".db"):
        raise InvalidInputError(
            f"a Milvus Lite database path must end in .db, got {uri!r} "
            "(or give http://host:port for a Milvus server)"
        )
    # Absolute at once, so that a later change of working directory changes nothing.
    path = os.path.abspath(os.path.expanduser(uri))
    return path, path


def public_uri(uri: str) -> str:
    """``uri`` without user name or password (for messages, stats and saved descriptions)."""
    try:
        parts = urlsplit(uri)
        if parts.username is None and parts.password is None:
            return uri
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable uri>"


def check_collection(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > _MAX_NAME:
        raise InvalidInputError(
            f"invalid Milvus collection name {name!r}: use letters, digits and underscores, "
            f"starting with a letter or underscore, at most {_MAX_NAME} characters"
        )
    return name


def error_text(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc).strip() or type(exc).__name__


def is_milvus_failure(exc: BaseException) -> bool:
    """A pymilvus or gRPC error: Milvus refused or did not answer (server down, timeout)."""
    from pymilvus.exceptions import MilvusException

    grpc = importlib.import_module("grpc")  # pymilvus's transport (no type stubs)
    return isinstance(exc, (MilvusException, grpc.RpcError))


# -- connections and collections -----------------------------------------------------------


def open_client(
    uri: str, local_path: str | None, token: str | None, timeout: float
) -> tuple[Any, str]:
    """A client of its own (and the server's version) for ``uri`` from :func:`resolve_uri`;
    for Milvus Lite it counts as a user of the path's in-process server: close it with
    :func:`disconnect`."""
    pymilvus = import_pymilvus()
    if local_path is None:
        return _new_client(pymilvus, uri, None, token, timeout)
    try:
        # pymilvus starts it for .db uris
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        raise InvalidInputError(
            f"a local .db uri runs Milvus Lite, which is not installed: {INSTALL_HINT}"
        ) from exc
    parent = Path(local_path).parent
    if parent.exists() and not parent.is_dir():
        raise InvalidInputError(f"cannot put a Milvus Lite database in {parent}: not a folder")
    parent.mkdir(parents=True, exist_ok=True)
    # Counted under the lock, so a server being stopped by the last user of a path is never
    # handed to a new one.
    with _local_lock:
        _local_users[local_path] = _local_users.get(local_path, 0) + 1
        try:
            return _new_client(pymilvus, uri, local_path, token, timeout)
        except BaseException:
            _release_local_locked(local_path)
            raise


def _new_client(
    pymilvus: Any, uri: str, local_path: str | None, token: str | None, timeout: float
) -> tuple[Any, str]:
    shown = public_uri(uri)
    t0 = time.perf_counter()
    client = None
    try:
        client = pymilvus.MilvusClient(
            uri=uri,
            token=token or "",
            timeout=timeout,
            # Its own channel, so that close() really closes it.
            dedicated=True,
        )
        version = str(client.get_server_version())
    except Exception as exc:
        if client is not None:
            client.close()
        if local_path is not None:
            raise InvalidInputError(
                f"could not open the Milvus Lite database {local_path}: "
                f"{error_text(exc)} (a Milvus Lite database is used by one process at "
                "a time; close the other one or use another path)"
            ) from exc
        waited = time.perf_counter() - t0
        raise InvalidInputError(
            f"cannot reach a Milvus server at {shown}: is it running? Check the host, port "
            f"and token (failed after {waited:.1f} s, connect_timeout = "
            f"{timeout:g} s) [{error_text(exc)}]"
        ) from exc
    return client, version


def drop_collections(
    uri: str | os.PathLike[str],
    names: Iterable[str],
    *,
    token: str | None = None,
    connect_timeout: float = 5.0,
) -> list[str]:
    """Delete the collections ``names`` from the Milvus at ``uri``, with the staging
    collections an interrupted build of them left (``<name>_build_<hex>``); returns the names
    dropped. Names that are not there are skipped; a Milvus Lite database that does not
    exist is not created (nothing is in it).

    Raises InvalidInputError when Milvus cannot be reached (a server down, a Lite database
    that another process holds).
    """
    wanted = [check_collection(n) for n in dict.fromkeys(names)]
    target, local = resolve_uri(uri)
    if not wanted or (local is not None and not os.path.exists(local)):
        return []
    client, _ = open_client(target, local, token, connect_timeout)
    dropped = []
    try:
        present = set(client.list_collections(timeout=_REQUEST_TIMEOUT))
        for name in wanted:
            found = [name] if name in present else []
            found += sorted(p for p in present if p.startswith(f"{name}_build_"))
            for each in found:
                client.drop_collection(each, timeout=_REQUEST_TIMEOUT)
                dropped.append(each)
    except Exception as exc:
        raise InvalidInputError(
            f"could not drop Milvus collections at {public_uri(target)}: {error_text(exc)}"
        ) from exc
    finally:
        disconnect(client, local)
    return dropped
