"""A Parquet file's footer, read by embscope before pyarrow looks at any column chunk.

Two things in a footer must be refused before pyarrow reads it: a column chunk that says its
data lives in another file (``ColumnChunk.file_path``, as a dataset's ``_metadata`` summary
has), and encryption. pyarrow (26) ignores ``file_path`` when it reads one file, but a file
naming another file is not a file of data. Encryption is worse: with a plaintext footer,
pyarrow opens the file, then *aborts the process* (an uncaught C++ exception, "Cannot
decrypt ColumnMetadata") as soon as a column chunk's metadata is touched, so one upload could
stop the server. The footer is therefore parsed here (Thrift compact protocol, every length
checked against the bytes there are, nesting bounded) and such a file refused with a message,
as is a footer this parser cannot read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from embscope.core.errors import InvalidInputError

_MAGIC, _ENCRYPTED_MAGIC = b"PAR1", b"PARE"
_MAX_DEPTH = 64  # Thrift structs nest a few levels in a real footer

# Thrift compact protocol types.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12

# Field ids of parquet.thrift.
_FILE_ROW_GROUPS, _FILE_ENCRYPTION, _FILE_SIGNING_KEY = 4, 8, 9
_ROW_GROUP_COLUMNS = 1
_CHUNK_FILE_PATH, _CHUNK_CRYPTO, _CHUNK_ENCRYPTED_META = 1, 8, 9


class _Corrupt(Exception):
    """The footer is not valid Thrift; pyarrow's own reading reports it."""


class _Compact:
    """A reader of Thrift's compact protocol over ``data`` that never reads past its end."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Corrupt
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        try:
            b = self.data[self.pos]
        except IndexError:
            raise _Corrupt from None
        self.pos += 1
        return b

    def varint(self) -> int:
        result = shift = 0
        while shift < 70:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise _Corrupt

    def binary(self) -> bytes:
        return self._take(self.varint())

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, type) of each field of a struct, up to its stop byte."""
        last = 0
        while True:
            b = self.byte()
            if b == 0:
                return
            delta, kind = b >> 4, b & 0x0F
            if delta:
                last += delta
            else:
                raw = self.varint()
                last = (raw >> 1) ^ -(raw & 1)
            yield last, kind

    def list_header(self) -> tuple[int, int]:
        b = self.byte()
        size, kind = b >> 4, b & 0x0F
        if size == 15:
            size = self.varint()
        if size > len(self.data) - self.pos:  # every element takes at least a byte
            raise _Corrupt
        return size, kind

    def skip(self, kind: int, depth: int, *, element: bool = False) -> None:
        """Step over one value of ``kind`` (a bool in a list or map takes a byte of its own)."""
        if depth > _MAX_DEPTH:
            raise _Corrupt
        if kind in (_TRUE, _FALSE):
            if element:
                self.byte()
        elif kind == _BYTE:
            self.byte()
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self._take(8)
        elif kind == _BINARY:
            self.binary()
        elif kind in (_LIST, _SET):
            size, inner = self.list_header()
            for _ in range(size):
                self.skip(inner, depth + 1, element=True)
        elif kind == _MAP:
            size = self.varint()
            if size > len(self.data) - self.pos:
                raise _Corrupt
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4, depth + 1, element=True)
                    self.skip(types & 0x0F, depth + 1, element=True)
        elif kind == _STRUCT:
            for _fid, inner in self.fields():
                self.skip(inner, depth + 1)
        else:
            raise _Corrupt

    def struct_list(self, kind: int, depth: int) -> int:
        """How many structs follow, if the field is a list of structs (the caller reads them);
        else the field's value is stepped over and 0 returned."""
        if kind != _LIST:
            self.skip(kind, depth)
            return 0
        size, inner = self.list_header()
        if inner == _STRUCT:
            return size
        for _ in range(size):
            self.skip(inner, depth + 1, element=True)
        return 0


def encrypted_error(label: str) -> InvalidInputError:
    """The message for an encrypted Parquet file."""
    return InvalidInputError(
        f"{label} is an encrypted Parquet file: embscope reads only unencrypted files and "
        "never fetches keys (no key server, no key material); write it without encryption "
        "(no encryption_properties)"
    )


def footer_problem(footer: bytes, label: str) -> InvalidInputError | None:
    """The error for a footer (Thrift ``FileMetaData``) that is encrypted, names another file
    or cannot be parsed (refused rather than handed to pyarrow, so a footer crafted to
    confuse this parser cannot hide a field from it), else None."""
    reader = _Compact(footer)
    try:
        for fid, kind in reader.fields():
            if fid in (_FILE_ENCRYPTION, _FILE_SIGNING_KEY):
                return encrypted_error(label)
            if fid != _FILE_ROW_GROUPS:
                reader.skip(kind, 1)
                continue
            for _group in range(reader.struct_list(kind, 1)):
                for gfid, gkind in reader.fields():
                    if gfid != _ROW_GROUP_COLUMNS:
                        reader.skip(gkind, 2)
                        continue
                    for _chunk in range(reader.struct_list(gkind, 2)):
                        problem = _chunk_problem(reader, label)
                        if problem is not None:
                            return problem
    except _Corrupt:
        return InvalidInputError(
            f"{label} is not a readable Parquet file (its footer is not valid Thrift); it may "
            "be truncated, corrupt or of another format: re-export it, e.g. with "
            "DataFrame.to_parquet"
        )
    return None


def _chunk_problem(reader: _Compact, label: str) -> InvalidInputError | None:
    for fid, kind in reader.fields():
        if fid in (_CHUNK_CRYPTO, _CHUNK_ENCRYPTED_META):
            return encrypted_error(label)
        if fid == _CHUNK_FILE_PATH and kind == _BINARY:
            if reader.binary():
                return InvalidInputError(
                    f"{label}: its footer says a column is stored in another file (a column "
                    "chunk's file_path, as in a dataset's _metadata summary): embscope reads "
                    "only what is inside the uploaded file; upload the data file itself "
                    "(e.g. DataFrame.to_parquet)"
                )
            continue
        reader.skip(kind, 3)
    return None


def check_footer(fh: Any, label: str) -> None:
    """Refuse a Parquet file whose footer is encrypted or names another file.

    ``fh`` is the open file (a pyarrow ``NativeFile``); only its last 8 bytes and its
    footer are read. A file too short or without the Parquet magic is left to pyarrow,
    which refuses it with its own message.
    """
    size = int(fh.size())
    if size < 12:
        return
    fh.seek(size - 8)
    tail = fh.read(8)
    if tail[4:] == _ENCRYPTED_MAGIC:
        raise encrypted_error(label)
    (length,) = struct.unpack("<i", tail[:4])
    if tail[4:] != _MAGIC or not 0 < length <= size - 12:
        return
    fh.seek(size - 8 - length)
    problem = footer_problem(fh.read(length), label)
    fh.seek(0)
    if problem is not None:
        raise problem
