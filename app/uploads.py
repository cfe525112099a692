"""Uploaded files on disk: saved under names embscope makes, never the uploader's.

An upload is checked before anything is written: its name must end in a suffix embscope
reads (the name contributes nothing else: the file is stored as ``upload-<hash><suffix>``),
its size must be within this server's limit (``embscope serve --max-upload-mb``, passed to
the Streamlit process as ``$EMBSCOPE_MAX_UPLOAD_MB``; Streamlit's own
``server.maxUploadSize`` is set to the same number), and the disk must have room for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from embscope.app.access import MAX_UPLOAD_ENV
from embscope.core.errors import InvalidInputError
from embscope.core.ingest import SUPPORTED_SUFFIXES

# Suffixes a reader exists for; the uploaded name contributes nothing else to the path.
ALLOWED_SUFFIXES = tuple(SUPPORTED_SUFFIXES)
UPLOAD_DIR = Path(tempfile.gettempdir()) / "embscope-uploads"
#: The limit when the variable is unset or not a positive integer (as ``--max-upload-mb``).
DEFAULT_MAX_UPLOAD_MB = 2048
# Uploads never saved as a dataset (a preview, then the tab closed) are removed after this.
STALE_UPLOAD_SECONDS = 24 * 3600
# Room the disk must keep after an upload is written.
DISK_HEADROOM_BYTES = 512 * 2**20
_NAME_SHOWN = 80  # characters of a hostile (very long) file name repeated in a message
_CHUNK = 8 * 2**20


def max_upload_mb() -> int:
    """The most an uploaded file may hold on this server, in MiB.

    ``$EMBSCOPE_MAX_UPLOAD_MB`` when it is a positive integer, else
    :data:`DEFAULT_MAX_UPLOAD_MB`. MiB (2**20 bytes), as Streamlit counts
    ``server.maxUploadSize``.
    """
    raw = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    try:
        mb = int(raw)
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB
    return mb if mb > 0 else DEFAULT_MAX_UPLOAD_MB


def max_upload_bytes() -> int:
    """:func:`max_upload_mb` in bytes."""
    return max_upload_mb() * 2**20


def _shown(filename: object) -> str:
    text = str(filename)
    if len(text) > _NAME_SHOWN:
        text = text[: _NAME_SHOWN - 1] + "…"
    return repr(text)


def safe_suffix(filename: str) -> str:
    """The lower-cased suffix of an uploaded file name if embscope reads it, else an error."""
    name = filename if isinstance(filename, str) else ""
    suffix = Path(name).suffix.lower() if name else ""
    if suffix not in ALLOWED_SUFFIXES:
        raise InvalidInputError(
            f"{_shown(filename)} is not a format embscope reads; use one of "
            f"{', '.join(ALLOWED_SUFFIXES)}"
        )
    return suffix


def _size_of(data: Any) -> int | None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    size = getattr(data, "size", None)  # Streamlit's UploadedFile
    if isinstance(size, int):
        return size
    if hasattr(data, "getbuffer"):
        return data.getbuffer().nbytes
    return None


def _too_large(filename: str, size: int | None, limit: int) -> InvalidInputError:
    what = f"{size / 2**20:,.1f} MiB" if size is not None else "larger than that"
    return InvalidInputError(
        f"{_shown(filename)} is {what}; this server accepts uploads of at most "
        f"{limit / 2**20:,.0f} MiB. Upload a smaller file (split it, or save the vectors as "
        "float32 .npy or compressed Parquet), or ask whoever runs the server to start it with "
        "a larger `embscope serve --max-upload-mb`"
    )


def _upload_dir() -> Path:
    """The private upload folder: created 0700, refused if it is anyone else's or a link."""
    directory = UPLOAD_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise InvalidInputError(
            f"the upload folder {directory} is not a folder owned by this server's user (it "
            "may be a link someone else made); remove it and try again"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)
    return directory


# Uploads a background job is saving as a dataset (app/upload_panel.py): each with what says
# whether it is still needed (its job queued or running).
_HELD: dict[Path, Callable[[], bool]] = {}
_HELD_LOCK = threading.Lock()


def _in_upload_dir(paths: Iterable[Path]) -> list[Path]:
    out = []
    for path in paths:
        if not isinstance(path, Path) or path.parent != UPLOAD_DIR:
            raise InvalidInputError(f"{path!r} is not a file in the upload folder {UPLOAD_DIR}")
        out.append(path)
    return out


def hold_uploads(paths: Iterable[Path], *, needed: Callable[[], bool]) -> None:
    """Keep uploaded files (paths :func:`save_upload` returned) while ``needed()`` is true,
    however old they get: a background job reads them after the page that uploaded them has
    moved on (its uploader emptied, the session perhaps gone). Once ``needed()`` is false the
    next clean-up removes them, if :func:`release_uploads` has not already."""
    if not callable(needed):
        raise InvalidInputError("hold_uploads needs a callable that says whether they are needed")
    held = _in_upload_dir(paths)
    with _HELD_LOCK:
        for path in held:
            _HELD[path] = needed


def release_uploads(paths: Iterable[Path]) -> None:
    """Remove uploaded files that are no longer needed (the job saving them has ended, or a
    page saw it end); removing one already gone is not an error."""
    for path in _in_upload_dir(paths):
        with _HELD_LOCK:
            _HELD.pop(path, None)
        path.unlink(missing_ok=True)


def _prune(directory: Path, now: float) -> None:
    """Remove uploads older than a day (previews never saved) and stray partial writes; an
    upload a job holds stays until its job has ended, and goes then."""
    with _HELD_LOCK:
        held = dict(_HELD)
    for entry in directory.glob("*upload-*"):
        needed = held.get(entry)
        if needed is not None:
            if not needed():
                release_uploads([entry])
            continue
        try:
            if now - entry.lstat().st_mtime > STALE_UPLOAD_SECONDS:
                entry.unlink(missing_ok=True)
        except OSError:
            continue  # another session removed it first


def save_upload(
    data: BinaryIO | bytes | bytearray | memoryview, filename: str, *, max_bytes: int | None = None
) -> Path:
    """Write an upload to a private temporary file and return its path.

    The path is built from a hash and the checked suffix, so a file name such as
    ``../../etc/passwd.npy`` never reaches the file system. A Streamlit upload is named by its
    ``file_id`` (unique to one upload in one session): the script's reruns find it written
    already and copy nothing, and one session removing its copy after saving cannot take a
    file from another session that uploaded the same bytes. Plain bytes are named by their
    content. The same upload gives the same path (the upload page caches its inspection by
    path).

    Parameters
    ----------
    data : bytes-like or binary file object
        The upload (Streamlit's ``UploadedFile`` is read without another copy).
    filename : str
        The name the user's file had; only its suffix is used.
    max_bytes : int, optional
        The size limit; default :func:`max_upload_bytes`.

    Raises
    ------
    InvalidInputError
        Unsupported suffix, larger than the limit, or not enough disk space.
    """
    suffix = safe_suffix(filename)
    limit = max_upload_bytes() if max_bytes is None else int(max_bytes)
    size = _size_of(data)
    if size is not None and size > limit:
        raise _too_large(filename, size, limit)
    directory = _upload_dir()
    _prune(directory, time.time())
    file_id = getattr(data, "file_id", None)
    if isinstance(file_id, str) and file_id:
        key = hashlib.blake2b(f"{file_id}\0{size}".encode(), digest_size=16).hexdigest()
        path = directory / f"upload-{key}{suffix}"
        if path.exists():
            os.utime(path)  # in use again: not stale
            return path
    else:
        path = None
    if size is not None:
        free = shutil.disk_usage(directory).free
        if size + DISK_HEADROOM_BYTES > free:
            raise InvalidInputError(
                f"the server's temporary disk has {free / 2**20:,.0f} MiB free, too little for "
                f"{_shown(filename)} ({size / 2**20:,.1f} MiB); try again later or ask whoever "
                "runs the server to free space"
            )
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.blake2b(digest_size=16)
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(data):
                written += len(chunk)
                if written > limit:  # a stream whose size was not known up front
                    raise _too_large(filename, None, limit)
                digest.update(chunk)
                out.write(chunk)
        if path is None:
            path = directory / f"upload-{digest.hexdigest()}{suffix}"
        if path.exists():
            tmp.unlink()
            os.utime(path)  # in use again: not stale
        else:
            os.replace(tmp, path)  # whole or not at all, even with two sessions at once
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, quota...: a message, not a traceback
            raise InvalidInputError(
                f"{_shown(filename)} could not be stored on the server "
                f"({exc.strerror or exc}); try again later"
            ) from exc
        raise
    return path


def _chunks(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
    elif hasattr(data, "getbuffer"):
        view = data.getbuffer()
    else:
        view = None
    if view is not None:
        for start in range(0, view.nbytes, _CHUNK):
            yield view[start : start + _CHUNK]
        return
    while True:
        chunk = data.read(_CHUNK)
        if not chunk:
            return
        yield chunk
