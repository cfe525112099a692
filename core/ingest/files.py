"""The checks every file goes through before and while a reader opens it.

Its suffix must be one the registry knows, it must exist and not be empty, and any error a
library raises on a corrupt or unexpected file becomes an
:class:`~embscope.core.errors.InvalidInputError` naming the file and its expected format.
"""

from __future__ import annotations

import contextlib
import csv
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


def check_file(path: Path, label: str) -> int:
    """The size of ``path`` in bytes, if it is a file that exists and is not empty."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInputError(f"{label}: cannot be opened ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise InvalidInputError(f"{label} is a directory, not a file")
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
