"""The limits of one read: how much memory it may build and how far a file may expand.

:class:`ReadLimits` holds them as one frozen object that the public readers take as
``limits=`` (default :meth:`ReadLimits.from_environment`: ``$EMBSCOPE_MAX_READ_MB``, else
half the free memory). Each read makes one :class:`ReadBudget` from it and passes it down
to every format reader, which counts what it is about to allocate (``take``) or decode from
compressed storage (``inflate``) and stops with a message before the allocation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.memory import machine_memory
from embscope.core.validation import check_int, check_number

#: Environment variable: the most memory (MiB) one read may build; default half of the
#: memory available when the read starts (see :func:`read_budget_bytes`).
READ_BUDGET_ENV = "EMBSCOPE_MAX_READ_MB"
#: Compressed containers (npz entries, Parquet, HDF5 datasets) may expand to at most this
#: many times the file's size. Float32 embeddings compress ~1.1x, int8 or binary codes saved
#: as float32 ~5-20x; zeros deflate ~1000x. Files expanding less than the floor are allowed
#: whatever their ratio (they cannot hurt).
MAX_EXPANSION_RATIO = 100.0
EXPANSION_RATIO_FLOOR = 256 * 2**20
#: A sparse AnnData X is densified only up to this many float32 values (400 MB).
MAX_DENSIFIED_VALUES = 100_000_000
#: A query vector file (.npy) is one vector: never more than this.
MAX_QUERY_VECTOR_BYTES = 64 * 2**20
# The budget is never below this, however little memory the machine reports as free.
_MIN_READ_BUDGET = 256 * 2**20


def mib(nbytes: float) -> str:
    """A byte count for messages: ``'1.5 GiB'``, ``'300.0 MiB'``, ``'12.0 KiB'``, ``'80 bytes'``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:,.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:,.1f} MiB"
    if nbytes >= 2**10:
        return f"{nbytes / 2**10:,.1f} KiB"
    return f"{int(nbytes):,} bytes"


def available_memory() -> int | None:
    """Bytes of memory this process could still use: MemAvailable, within a cgroup limit
    (in a container MemAvailable describes the host; :func:`core.memory.machine_memory`)."""
    return machine_memory().available


def read_budget_bytes() -> int:
    """The most memory one read of an upload may build, in bytes.

    ``$EMBSCOPE_MAX_READ_MB`` (MiB) when set to a positive integer, else half of the memory
    available right now (``MemAvailable``, within a cgroup limit), and never less than
    256 MiB. Half, because the caller (the store, the page) copies what was read once more.

    Returns
    -------
    int
        Bytes.
    """
    raw = os.environ.get(READ_BUDGET_ENV, "").strip()
    if raw:
        try:
            mb = int(raw)
        except ValueError:
            mb = 0
        if mb > 0:
            return mb * 2**20
    avail = available_memory()
    if avail is None:
        avail = 8 * 2**30
    return max(avail // 2, _MIN_READ_BUDGET)


@dataclass(frozen=True)
class ReadLimits:
    """The limits one read of a file works within.

    Attributes
    ----------
    max_read_bytes : int
        The most memory the read may build (vectors, metadata, ids, decoded tables), in
        bytes; positive.
    max_expansion_ratio : float
        Compressed containers (npz entries, Parquet, HDF5 datasets) may expand to at most
        this many times their size on disk.
    expansion_ratio_floor : int
        Bytes a file may always expand to, whatever its ratio (small files cannot hurt).
    max_densified_values : int
        A sparse AnnData matrix is made dense only up to this many values.

    Raises
    ------
    InvalidInputError
        A limit that is not a positive number (``max_read_bytes`` must be a whole number).
    """

    max_read_bytes: int
    max_expansion_ratio: float = MAX_EXPANSION_RATIO
    expansion_ratio_floor: int = EXPANSION_RATIO_FLOOR
    max_densified_values: int = MAX_DENSIFIED_VALUES

    def __post_init__(self) -> None:
        limit = self.max_read_bytes
        if not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit <= 0:
            raise InvalidInputError(f"max_read_bytes must be a positive integer, got {limit!r}")
        ratio = check_number(
            self.max_expansion_ratio, "max_expansion_ratio", low=0.0, low_open=True
        )
        floor = check_int(self.expansion_ratio_floor, "expansion_ratio_floor", low=0)
        dense = check_int(self.max_densified_values, "max_densified_values", low=0)
        object.__setattr__(self, "max_read_bytes", int(limit))
        object.__setattr__(self, "max_expansion_ratio", ratio)
        object.__setattr__(self, "expansion_ratio_floor", floor)
        object.__setattr__(self, "max_densified_values", dense)

    @classmethod
    def from_environment(cls, **changes: Any) -> ReadLimits:
        """The limits of a read on this server: the budget from :func:`read_budget_bytes`.

        Parameters
        ----------
        **changes
            Other fields to set (``max_expansion_ratio``, ``expansion_ratio_floor``,
            ``max_densified_values``); the rest keep their defaults.

        Returns
        -------
        ReadLimits
        """
        return cls(max_read_bytes=read_budget_bytes(), **changes)


def resolve_limits(limits: ReadLimits | None, max_read_bytes: int | None) -> ReadLimits:
    """The limits of one read: ``limits`` (default from the environment), ``max_read_bytes`` set."""
    if max_read_bytes is None:
        return limits if limits is not None else ReadLimits.from_environment()
    if limits is None:
        return ReadLimits(max_read_bytes=max_read_bytes)
    return replace(limits, max_read_bytes=max_read_bytes)


class ReadBudget:
    """Memory one read may build, and how far the current file may expand.

    ``take`` counts memory for something about to be built (an array, a table); ``inflate``
    counts bytes decoded from compressed storage, which must also stay within
    ``limits.max_expansion_ratio`` times the file's size. Both raise before the allocation.

    Parameters
    ----------
    limits : ReadLimits
        The limits of the read.
    """

    def __init__(self, limits: ReadLimits):
        self.limits = limits
        self.used = 0
        self.label = "the file"
        self.file_size = 0
        self.expanded = 0

    @contextlib.contextmanager
    def file(self, label: str, size: int) -> Iterator[None]:
        """Within the block, messages name ``label`` and expansion is measured against ``size``."""
        saved = (self.label, self.file_size, self.expanded)
        self.label, self.file_size, self.expanded = label, int(size), 0
        try:
            yield
        finally:
            self.label, self.file_size, self.expanded = saved

    def take(self, nbytes: float, what: str) -> None:
        """Count ``nbytes`` of memory for ``what``, about to be built; raise past the limit."""
        nbytes = max(int(nbytes), 0)
        limit = self.limits.max_read_bytes
        if self.used + nbytes > limit:
            raise InvalidInputError(
                f"{self.label} is too large to read here: {what} would need about "
                f"{mib(self.used + nbytes)} of memory, and this server lets one file use at "
                f"most {mib(limit)}. Split the file into smaller ones, reduce the "
                "dimension, or save the vectors as float32 .npy; whoever runs the server can "
                f"raise the limit with ${READ_BUDGET_ENV}"
            )
        self.used += nbytes

    def inflate(
        self, nbytes: float, what: str, *, stored: float | None = None, commit: bool = True
    ) -> None:
        """Count ``nbytes`` decoded from compressed storage, before decoding them.

        ``stored``: the compressed size of this part (a zip entry, an HDF5 dataset), checked
        on its own; the file as a whole is checked against its size on disk as well.
        ``commit=False`` only checks (a declared size, counted again as it is read).
        """
        nbytes = max(int(nbytes), 0)
        ratio = self.limits.max_expansion_ratio
        floor = self.limits.expansion_ratio_floor
        for base, amount in ((stored, nbytes), (self.file_size, self.expanded + nbytes)):
            if base is None:
                continue
            base = max(int(base), 0)
            if amount > max(ratio * base, floor):
                raise InvalidInputError(
                    f"{self.label} expands far beyond its size: {what} would take "
                    f"{mib(amount)} in memory from {mib(base)} on disk "
                    f"({amount / max(base, 1):,.0f}x; embscope allows "
                    f"{ratio:.0f}x). "
                    "It looks like a decompression bomb and was not read. If it is a real "
                    "dataset, save it uncompressed (np.save, or np.savez rather than "
                    "savez_compressed; Parquet with compression=None and use_dictionary=False; "
                    "write_h5ad without compression)"
                )
        if not commit:
            if self.used + nbytes > self.limits.max_read_bytes:
                self.take(nbytes, what)  # raises with the budget message
            return
        self.take(nbytes, what)
        self.expanded += nbytes
