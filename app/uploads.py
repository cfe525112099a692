"""Uploaded files on disk: saved under names embscope makes, never the uploader's."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import BinaryIO

from core.errors import InvalidInputError
from core.ingest import SUPPORTED_SUFFIXES

# Suffixes a reader exists for; the uploaded name contributes nothing else to the path.
ALLOWED_SUFFIXES = tuple(SUPPORTED_SUFFIXES)
UPLOAD_DIR = Path(tempfile.gettempdir()) / "embscope-uploads"


def safe_suffix(filename: str) -> str:
    """The lower-cased suffix of an uploaded file name if embscope reads it, else an error."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise InvalidInputError(
            f"{filename!r} is not a format embscope reads; use one of {', '.join(ALLOWED_SUFFIXES)}"
        )
    return suffix


def save_upload(data: BinaryIO | bytes, filename: str) -> Path:
    """Write an upload to a private temporary file and return its path.

    The path is built from a hash of the content and the checked suffix, so a file name
    such as ``../../etc/passwd.npy`` never reaches the file system.
    """
    payload = data if isinstance(data, bytes) else data.getvalue()
    suffix = safe_suffix(filename)
    UPLOAD_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
    path = UPLOAD_DIR / f"upload-{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(payload)
        tmp.replace(path)
    return path
