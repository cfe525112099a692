"""The checks every file goes through before and while a reader opens it.

Its suffix must be one the registry knows, it must be a regular file (not a symbolic link,
a directory, a device or a pipe) and not be empty, and any error a library raises on a corrupt
or unexpected file becomes an :class:`~embscope.core.errors.InvalidInputError` naming the file
and its expected format.
"""

from __future__ import annotations

import contextlib
import csv
import stat
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from embscope.core.errors import InvalidInputError

#: Library errors a corrupt or unexpected file can raise. They are re-raised as
#: InvalidInputError with the file's name, so no library traceback reaches the user.
LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OSError,
    EOFError,
    OverflowError,
    NotImplementedError,  # zipfile: unknown compression or flags in a damaged .npz
    RuntimeError,  # h5py: damaged group or link structures in an .h5ad
    MemoryError,
    UnicodeError,
    struct.error,
    tokenize.TokenError,
    zlib.error,
    zipfile.BadZipFile,
    csv.Error,
    pa.ArrowException,
)

#: How messages name the format each suffix promises.
FORMAT_NAMES = {
    ".npy": "a NumPy .npy file",
    ".npz": "a NumPy .npz archive",
    ".parquet": "a Parquet file",
    ".csv": "CSV text",
    ".tsv": "tab-separated text",
    ".txt": "delimited text",
    ".jsonl": "JSON Lines",
    ".json": "JSON",
    ".h5ad": "an AnnData .h5ad (HDF5) file",
}


def check_suffix(label: str, path: Path, allowed: Sequence[str], role: str) -> str:
    """The file's suffix (the user's name first, else the path's), if it is in ``allowed``."""
    suffix = Path(label).suffix.lower() or path.suffix.lower()
    if suffix not in allowed:
        raise InvalidInputError(
            f"{label!r}: {role} files must end in one of {', '.join(allowed)} "
            f"(got {suffix or 'no suffix'}); rename or convert the file"
        )
    return suffix


def check_regular(path: Path, label: str) -> int:
    """The size of ``path`` in bytes, if it is a regular file and not a symbolic link.

    A link is refused even when it points at a regular file: embscope reads only the file it
    was given, never the file a link (made by whoever prepared the upload or the folder)
    points to, such as ``vectors.npy -> ~/.ssh/id_rsa``. Only the last part of the path is
    checked: folders above it may be links (``/home -> /data/home``) because they cannot
    rename the file at its end.
    """
    try:
        info = path.lstat()
    except OSError as exc:
        raise InvalidInputError(f"{label}: cannot be opened ({exc.strerror or exc})") from exc
    if stat.S_ISLNK(info.st_mode):
        raise InvalidInputError(
            f"{label} is a symbolic link: embscope reads only the file it is given, never what "
            "a link points to; pass the file itself"
        )
    if stat.S_ISDIR(info.st_mode):
        raise InvalidInputError(f"{label} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(
            f"{label} is not a regular file (a device, pipe or socket); save the data to a "
            "file and pass that"
        )
    return int(info.st_size)


def check_file(path: Path, label: str) -> int:
    """The size of ``path`` in bytes, if it is a regular file (not a link) and not empty."""
    size = check_regular(path, label)
    if size == 0:
        raise InvalidInputError(
            f"{label} is empty (0 bytes): upload the file that holds the vectors"
        )
    return size


@contextlib.contextmanager
def library_errors(label: str, path: Path) -> Iterator[None]:
    """Re-raise a library's error as InvalidInputError naming the file."""
    try:
        yield
    except InvalidInputError:
        raise
    except LIBRARY_ERRORS as exc:
        raise unreadable(label, Path(label).suffix.lower() or path.suffix.lower(), exc) from exc


def unreadable(label: str, suffix: str, exc: BaseException) -> InvalidInputError:
    """The message for a library's error on ``label``: corrupt, truncated or another format."""
    if isinstance(exc, MemoryError):
        return InvalidInputError(
            f"{label} is too large to load into memory: split it or reduce its dimension first"
        )
    kind = FORMAT_NAMES.get(suffix, "a supported file")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInputError(
        f"{label} could not be read as {kind} ({detail}). The file may be truncated, "
        f"corrupt or of another format: re-export it and check that its suffix is {suffix}"
    )
