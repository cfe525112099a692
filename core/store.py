"""The DuckDB store: runs the schema and every SQL statement of :mod:`core.store_sql`.

One database file holds a catalog of datasets, per dataset its vectors (a ``FLOAT[d]``
array column) and its metadata (real typed columns, filterable with SQL), and an
``artifacts`` table for everything computed from a dataset (graphs, projections,
scores), keyed by a fingerprint of (vectors, parameters, code version).

Rules kept here:

* Every user string reaches DuckDB as a bound parameter or inside an Arrow table.
  Table names are built from integer ids only (``vectors_7``, ``meta_7``).
* One ``duckdb`` database object per process and path; each thread gets its own
  cursor (``duckdb`` connections are not safe to share between threads).
* Writes are one transaction: a failed or interrupted ingest leaves the database
  exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embscope.core.errors import DatabaseBusyError, DatasetNotFoundError, InvalidInputError
from embscope.core.store_sql import (
    FILTER_CLAUSE,
    SCHEMA,
    SQL_CREATE_META,
    SQL_CREATE_VECTORS,
    SQL_DESCRIBE_META,
    SQL_DROP_META,
    SQL_DROP_VECTORS,
    SQL_INSERT_VECTORS,
    SQL_LOAD_IDS,
    SQL_LOAD_META,
    SQL_LOAD_VECTORS,
    SQL_MAX_ID,
    SQL_META_WHERE,
    SQL_ROW_VECTORS,
    SQL_ROWS,
    SQL_ROWS_WITH_META,
    SQL_SEARCH,
    SQL_SEARCH_ROWS,
    SQL_SEARCH_ROWS_WITH_META,
    SQL_SEARCH_WITH_META,
    on_dataset,
)
from embscope.core.tables import (
    arrow_to_frame,
    key_columns_first,
    metadata_table,
    validate_name,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from embscope.core.ingest import ParsedDataset

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "DatasetInfo",
    "Store",
    "fingerprint_arrays",
    "resolve_db_path",
]

SCHEMA_VERSION = 1
DEFAULT_DB = "embscope.duckdb"

# Rows per batch when a dataset's vectors are read (~100 MB at 384-d).
_LOAD_ROWS = 65_536
# DuckDB's memory limit while vectors are appended or read (a constant, never user input).
_BULK_MEMORY_LIMIT = "512MB"
# Set for a moment when the last bulk section ends: DuckDB evicts down to it (-0.45 GiB after
# reading 1M x 384), then the default limit returns.
_BULK_EVICT_LIMIT = "32MB"
_Drop = Sequence[str] | Callable[[], Sequence[str]]  # what Store.set_info deletes


def _vector_block(col: pa.Array, dim: int) -> np.ndarray:
    """A FLOAT[dim] column (fixed-size list) as a float32 (m, dim) array."""
    flat = col.values.to_numpy(zero_copy_only=False)
    if col.offset or len(flat) != len(col) * dim:
        flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(col), dim)


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the database path: ``path`` if given, else ``$EMBSCOPE_DB``, else ``./embscope.duckdb``."""
    chosen = path if path not in (None, "") else os.environ.get("EMBSCOPE_DB") or DEFAULT_DB
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class DatasetInfo:
    """One row of the dataset catalog."""

    id: int
    name: str
    n: int
    dim: int
    created: datetime
    source: str
    format: str
    id_column: str | None
    vector_column: str | None
    metadata_columns: tuple[str, ...]
    warnings: tuple[str, ...]
    fingerprint: str
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The metric recorded at upload (guessed from the vectors unless chosen), else
        ``cosine`` (datasets stored before metrics were recorded)."""
        metric = (self.info or {}).get("metric")
        return str(metric) if metric in ("cosine", "l2", "ip") else "cosine"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the CLI's ``datasets --json`` row and more)."""
        return {
            "dataset": self.id,
            "name": self.name,
            "n": self.n,
            "dim": self.dim,
            "created": self.created.isoformat(timespec="seconds"),
            "source": self.source,
            "format": self.format,
            "id_column": self.id_column,
            "vector_column": self.vector_column,
            "metadata_columns": list(self.metadata_columns),
            "warnings": list(self.warnings),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Artifact:
    """Something computed from a dataset and persisted: a graph, a projection, a scorecard."""

    id: int
    dataset_id: int | None
    kind: str
    params: Mapping[str, Any]
    fingerprint: str
    created: datetime
    duration_s: float | None
    lineage: Mapping[str, Any]
    status: str
    arrays: Mapping[str, np.ndarray]


def fingerprint_arrays(*parts: Any) -> str:
    """A hex digest over numpy arrays (dtype, shape and bytes) and JSON-able values.

    Used to key datasets and artifacts: the same vectors with the same parameters and
    code version give the same fingerprint in any process.
    """
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            if arr.dtype == object:
                h.update(b"O")
                h.update(json.dumps([str(v) for v in arr.ravel()], ensure_ascii=False).encode())
            else:
                h.update(str(arr.dtype).encode() + str(arr.shape).encode())
                h.update(arr.data.cast("B"))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str, ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _one(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    # DuckDB 2 refuses new work on a connection whose last result is unfinished, so a
    # single-row read drains the whole result instead of calling fetchone().
    rows = result.fetchall()
    return rows[0] if rows else None


def _aggregate(result: duckdb.DuckDBPyConnection) -> Any:
    """The value of a one-column aggregate query (COUNT, MAX: always exactly one row)."""
    row = _one(result)
    if row is None:
        raise RuntimeError("an aggregate query returned no row")
    return row[0]


def _arrays_to_blob(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = BytesIO()
    # Given by name, so that no array can be called allow_pickle; False: never pickle (object
    # arrays are refused before this)
    np.savez(buf, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _blob_to_arrays(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_failed(path: Any, exc: BaseException) -> OSError:
    """A disk error while writing (disk full, I/O error) as an OSError the CLI and pages show
    in one line; the transaction was rolled back, so nothing was changed."""
    return OSError(
        errno.EIO,
        f"the database could not be written ({str(exc).splitlines()[0]}); nothing was changed. "
        "Free some disk space and try again",
        str(path),
    )


def _read_only_config(path: Path) -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB settings of a read-only open: a large sort or join spills to a folder in the
    system's temporary directory (DuckDB makes it when needed and removes it on close)
    instead of ``<db>.tmp`` beside the database. The same for every open of one file in a
    process: DuckDB refuses a second connection to a file with other settings."""
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    spill = Path(tempfile.gettempdir()) / f"embscope-{os.getpid()}-{digest}.tmp"
    return {"temp_directory": str(spill)}


class Store:
    """The embscope database: datasets, their vectors and metadata, and artifacts.

    Parameters
    ----------
    path : str or Path, optional
        Database file; see :func:`resolve_db_path`. ``":memory:"`` gives a private
        in-memory database (tests).
    read_only : bool
        Open without write access (several read-only processes may share a file; none can
        while a writer holds it). Nothing is written beside the file then: DuckDB's spill
        files (``<db>.tmp/``) go to a private folder in the system's temporary directory.

    Raises
    ------
    DatabaseBusyError
        Another process holds the database open for writing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False):
        self.path = Path(":memory:") if str(path) == ":memory:" else resolve_db_path(path)
        self.read_only = read_only
        if str(self.path) != ":memory:":
            if self.path.exists() and self.path.is_dir():
                raise InvalidInputError(
                    f"database path {self.path} is a directory: give a file path"
                )
            if read_only and not self.path.exists():
                raise InvalidInputError(f"database {self.path} does not exist")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            config = _read_only_config(self.path) if read_only else {}
            self._db = duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                # DuckDB names the holder ("Conflicting lock is held in ... (PID 123)").
                pid = re.search(r"\(PID (\d+)\)", str(exc))
                holder = f"process {pid.group(1)}" if pid else "process"
                raise DatabaseBusyError(
                    f"database {self.path} is in use by another {holder} (for example a "
                    "running `embscope serve`); stop it, or use another file with --db"
                ) from exc
            if self._is_empty_file():
                # DuckDB writes its header right after creating the file; a process killed
                # in between leaves an empty file, which DuckDB will not open. It holds
                # nothing, but removing it is left to the user: another process may be
                # creating it at this very moment.
                raise InvalidInputError(
                    f"database {self.path} is an empty file (a process was stopped while "
                    "creating it?): it holds no data; delete it and try again"
                ) from exc
            raise InvalidInputError(f"cannot open database {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise InvalidInputError(
                f"cannot open database {self.path}: {exc}. Is it a DuckDB file?"
            ) from exc
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._bulk_lock = threading.Lock()
        self._bulk_sections = 0
        if not read_only:
            self._create_schema()

    def _is_empty_file(self) -> bool:
        try:
            return self.path.is_file() and self.path.stat().st_size == 0
        except OSError:
            return False

    # -- connection handling -------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._db.cursor()
            self._local.cursor = cur
        return cur

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.read_only:
            raise InvalidInputError("the database is open read-only: changes are not allowed")
        cur = self._cursor()
        with self._write_lock:
            cur.begin()
            try:
                yield cur
            except BaseException as exc:
                try:
                    cur.rollback()
                except duckdb.Error:  # a failed disk can fail the rollback too
                    log.warning("rollback failed", exc_info=True)
                if isinstance(exc, duckdb.IOException):
                    raise _write_failed(self.path, exc) from exc
                raise
            else:
                try:
                    cur.commit()
                except duckdb.IOException as exc:
                    raise _write_failed(self.path, exc) from exc

    @contextmanager
    def _bulk(self) -> Iterator[None]:
        """DuckDB's memory held to :data:`_BULK_MEMORY_LIMIT` while vectors are stored or read.

        Unbounded, DuckDB keeps what a transaction appends in memory until it commits (a
        second copy of the vectors: +2.5 GiB at 1M x 384), and keeps every block a scan read
        cached (+1.8 GiB after reading them). Bounded, it writes as it goes and evicts what it
        read; at the end what is still cached is evicted too. Sections nest and overlap across threads: the default returns when the last
        one ends. (A query beside one that needs more than the limit at once, such as a
        stored array over 512 MB, does not wait: it fails and can be tried again.)
        """
        if str(self.path) == ":memory:":
            yield
            return
        cur = self._cursor()
        with self._bulk_lock:
            if self._bulk_sections == 0:
                cur.execute("SET memory_limit = ?", [_BULK_MEMORY_LIMIT])
            self._bulk_sections += 1
        try:
            yield
        finally:
            with self._bulk_lock:
                self._bulk_sections -= 1
                if self._bulk_sections == 0:
                    try:  # a small limit evicts the blocks the scan or append left cached
                        cur.execute("SET memory_limit = ?", [_BULK_EVICT_LIMIT])
                    except duckdb.Error:  # pinned by a query running beside: left cached
                        pass
                    try:
                        cur.execute("RESET memory_limit")
                    except duckdb.ConnectionException:  # closed (a read abandoned at close)
                        pass

    def _create_schema(self) -> None:
        with self._transaction() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
            cur.execute(
                "INSERT INTO embscope_settings VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )
        version = _one(
            self._cursor().execute(
                "SELECT value FROM embscope_settings WHERE key = 'schema_version'"
            )
        )
        if version and int(version[0]) > SCHEMA_VERSION:
            raise InvalidInputError(
                f"database {self.path} was written by a newer embscope (schema {version[0]}); "
                "upgrade embscope to open it"
            )

    def close(self) -> None:
        """Close the database. The store cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _next_id(cur: duckdb.DuckDBPyConnection, counter: str, table: str) -> int:
        row = _one(cur.execute("SELECT value FROM embscope_counters WHERE name = ?", [counter]))
        # The MAX() covers databases whose counter row is missing (never the case when
        # written by this module, but cheap insurance against reusing an id).
        top = _aggregate(cur.execute(SQL_MAX_ID[table]))
        new_id = max(int(row[0]) if row else 0, int(top)) + 1
        if row:
            cur.execute("UPDATE embscope_counters SET value = ? WHERE name = ?", [new_id, counter])
        else:
            cur.execute("INSERT INTO embscope_counters VALUES (?, ?)", [counter, new_id])
        return new_id

    # -- datasets --------------------------------------------------------------------------

    def add_dataset(
        self,
        parsed: ParsedDataset,
        *,
        name: str,
        info: Mapping[str, Any] | None = None,
    ) -> DatasetInfo:
        """Store a parsed dataset in one transaction and return its catalog entry.

        Parameters
        ----------
        parsed : ParsedDataset
            Output of :func:`core.ingest.read_dataset` (vectors float32 (n, d), ids str (n,),
            metadata with n rows).
        name : str
            Unique display name.
        info : mapping, optional
            JSON-serialisable provenance (for example the model that made the vectors).

        Raises
        ------
        InvalidInputError
            The name is empty or taken, or the data cannot be stored. Nothing is written.
        """
        name = validate_name(name)
        vectors = np.ascontiguousarray(parsed.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
            raise InvalidInputError(
                f"vectors must be a non-empty 2-D array, got shape {vectors.shape}"
            )
        n, d = vectors.shape
        ids = np.asarray(parsed.ids, dtype=object)
        if ids.shape != (n,):
            raise InvalidInputError(
                f"{ids.shape[0]} ids for {n} vectors: they must match row for row"
            )
        id_strings = pa.array([str(v) for v in ids], type=pa.string())
        if len(pc.unique(id_strings)) != n:
            raise InvalidInputError("ids are not unique: every row needs its own id")
        meta = metadata_table(parsed.metadata, n)
        info_json = json.dumps(dict(info or {}), sort_keys=True, default=str, ensure_ascii=False)
        vec_table = pa.table(
            {
                "row": pa.array(np.arange(n, dtype=np.int64)),
                "id": id_strings,
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d),
            }
        )
        fingerprint = fingerprint_arrays(vectors, ids)
        with self._bulk(), self._transaction() as cur:
            taken = _one(cur.execute("SELECT id FROM datasets WHERE name = ?", [name]))
            if taken:
                raise InvalidInputError(
                    f"a dataset named {name!r} already exists (id {taken[0]}): choose another name"
                )
            new_id = self._next_id(cur, "dataset", "datasets")
            cur.register("embscope_vec_in", vec_table)
            cur.register("embscope_meta_in", meta)
            try:
                cur.execute(on_dataset(SQL_CREATE_VECTORS, new_id, dim=int(d)))
                cur.execute(on_dataset(SQL_INSERT_VECTORS, new_id))
                cur.execute(on_dataset(SQL_CREATE_META, new_id))
            except duckdb.Error as exc:
                raise InvalidInputError(f"the dataset could not be stored: {exc}") from exc
            finally:
                cur.unregister("embscope_vec_in")
                cur.unregister("embscope_meta_in")
            cur.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    new_id,
                    name,
                    n,
                    d,
                    datetime.now(UTC).replace(tzinfo=None),
                    str(parsed.source),
                    str(parsed.format),
                    parsed.id_column,
                    parsed.vector_column,
                    json.dumps([str(c) for c in parsed.metadata.columns], ensure_ascii=False),
                    json.dumps(list(parsed.warnings), ensure_ascii=False),
                    fingerprint,
                    info_json,
                ],
            )
        return self.get_dataset(new_id)

    _DATASET_COLUMNS = (
        "id, name, n, dim, created, source, format, id_column, vector_column, "
        "metadata_columns, warnings, fingerprint, info"
    )
    _SELECT_DATASETS = "SELECT " + _DATASET_COLUMNS + " FROM datasets"

    @staticmethod
    def _info_from_row(row: tuple[Any, ...]) -> DatasetInfo:
        return DatasetInfo(
            id=int(row[0]),
            name=row[1],
            n=int(row[2]),
            dim=int(row[3]),
            created=row[4],
            source=row[5],
            format=row[6],
            id_column=row[7],
            vector_column=row[8],
            metadata_columns=tuple(json.loads(row[9])),
            warnings=tuple(json.loads(row[10])),
            fingerprint=row[11],
            info=json.loads(row[12]),
        )

    def list_datasets(self) -> list[DatasetInfo]:
        """Every stored dataset, oldest first."""
        rows = self._cursor().execute(self._SELECT_DATASETS + " ORDER BY id").fetchall()
        return [self._info_from_row(r) for r in rows]

    def get_dataset(self, ref: int | str) -> DatasetInfo:
        """Look a dataset up by integer id or exact name.

        A string of digits is tried as an id first, then as a name.

        Raises
        ------
        DatasetNotFoundError
            No dataset has that id or name; the message lists what exists.
        """
        cur = self._cursor()
        row = None
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            row = _one(cur.execute(self._SELECT_DATASETS + " WHERE id = ?", [int(ref)]))
        elif isinstance(ref, str):
            if ref.strip().isdigit():
                row = _one(cur.execute(self._SELECT_DATASETS + " WHERE id = ?", [int(ref)]))
            if row is None:
                row = _one(cur.execute(self._SELECT_DATASETS + " WHERE name = ?", [ref]))
        else:
            raise InvalidInputError(
                f"a dataset is named by its integer id or its name, not {ref!r}"
            )
        if row is None:
            known = ", ".join(f"{d.id}: {d.name}" for d in self.list_datasets()[:20]) or "none yet"
            raise DatasetNotFoundError(
                f"no dataset with id or name {ref!r}; stored datasets are: {known}"
            )
        return self._info_from_row(row)

    def _require(self, dataset_id: int) -> DatasetInfo:
        if not isinstance(dataset_id, (int, np.integer)) or isinstance(dataset_id, bool):
            raise InvalidInputError(f"dataset id must be an integer, got {dataset_id!r}")
        return self.get_dataset(int(dataset_id))

    def load_vectors(self, dataset_id: int) -> np.ndarray:
        """The vectors of a dataset, float32 of shape (n, d), in ingest row order.

        Read in batches straight into one array, so the vectors are held once (not as a
        query result, its concatenation and a copy: 4.3 GiB at 1M x 384 against 1.4 GiB).
        """
        ds = self._require(dataset_id)
        out = np.empty((ds.n, ds.dim), dtype=np.float32)
        seen = np.zeros(ds.n, dtype=bool)
        for rows, block in self.iter_vectors(ds.id):
            out[rows] = block  # the row column places each vector: no scan order assumed
            seen[rows] = True
        if not seen.all():
            raise InvalidInputError(
                f"dataset {ds.name!r} is damaged: {int((~seen).sum()):,} of its {ds.n:,} "
                "vectors are missing; ingest the file again"
            )
        return out

    def iter_vectors(self, dataset_id: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The vectors of a dataset in batches of at most 65,536: ``(rows, vectors)``, int64
        row numbers and float32 (m, d), in no promised order; each batch is its own array."""
        ds = self._require(dataset_id)
        with self._bulk():
            sql = self._cursor().sql(on_dataset(SQL_LOAD_VECTORS, ds.id))
            for batch in sql.to_arrow_reader(_LOAD_ROWS):
                yield batch.column(0).to_numpy(), _vector_block(batch.column(1), ds.dim)

    def load_vector_rows(self, dataset_id: int, rows: Any) -> np.ndarray:
        """The vectors of the given rows (in that order), float32 (len(rows), d): a few rows
        read without loading the whole dataset."""
        ds = self._require(dataset_id)
        wanted = np.asarray(rows, dtype=np.int64).reshape(-1)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= ds.n):
            raise InvalidInputError(f"rows must be between 0 and {ds.n - 1}")
        table = (
            self._cursor()
            .sql(on_dataset(SQL_ROW_VECTORS, ds.id), params=[np.unique(wanted).tolist()])
            .to_arrow_table()
        )
        found = table.column("row").to_numpy()
        block = _vector_block(table.column("vec").combine_chunks(), ds.dim)
        where = {int(r): i for i, r in enumerate(found)}
        return np.ascontiguousarray(block[[where[int(r)] for r in wanted]], dtype=np.float32)

    def load_ids(self, dataset_id: int) -> np.ndarray:
        """The ids of a dataset, an object array of str of shape (n,), in row order."""
        ds = self._require(dataset_id)
        table = self._cursor().sql(on_dataset(SQL_LOAD_IDS, ds.id)).to_arrow_table()
        return np.asarray(table.column("id").to_pylist(), dtype=object)

    def load_metadata(
        self, dataset_id: int, *, columns: list[str] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """The metadata of a dataset as a typed DataFrame in row order (RangeIndex).

        Parameters
        ----------
        columns : list of str, optional
            Only these columns (must exist).
        limit : int, optional
            Only the first ``limit`` rows.
        """
        ds = self._require(dataset_id)
        if not ds.metadata_columns:
            if columns:
                raise InvalidInputError(
                    f"no metadata column(s) {list(columns)}; the dataset has none"
                )
            rows = ds.n if limit is None else min(ds.n, max(int(limit), 0))
            return pd.DataFrame(index=pd.RangeIndex(rows))
        params: list[Any] = []
        sql = on_dataset(SQL_LOAD_META, ds.id)
        if limit is not None:
            if int(limit) < 0:
                raise InvalidInputError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(int(limit))
        frame = arrow_to_frame(self._cursor().sql(sql, params=params).to_arrow_table())
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise InvalidInputError(
                    f"no metadata column(s) {missing}; the dataset has {list(frame.columns)}"
                )
            frame = frame[list(columns)]
        return frame.reset_index(drop=True)

    def load_rows(self, dataset_id: int, rows: Any) -> pd.DataFrame:
        """``row``, ``id`` and the metadata of the given rows, in the order the rows are given."""
        ds = self._require(dataset_id)
        wanted = np.asarray(rows, dtype=np.int64).reshape(-1)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= ds.n):
            raise InvalidInputError(f"rows must be between 0 and {ds.n - 1}")
        if ds.metadata_columns:
            sql = on_dataset(SQL_ROWS_WITH_META, ds.id)
        else:
            sql = on_dataset(SQL_ROWS, ds.id)
        frame = key_columns_first(
            self._cursor().sql(sql, params=[wanted.tolist()]).to_arrow_table()
        )
        frame = frame.set_index("row", drop=False)
        return frame.loc[wanted].reset_index(drop=True)

    def metadata_schema(self, dataset_id: int) -> list[tuple[str, str]]:
        """The metadata table's columns in order, as (name, DuckDB type), ``__row`` included
        (core/filters.py names columns by position)."""
        ds = self._require(dataset_id)
        if not ds.metadata_columns:
            return []
        rows = self._cursor().sql(on_dataset(SQL_DESCRIBE_META, ds.id)).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def rows_where(self, dataset_id: int, where: str, params: Sequence[Any]) -> np.ndarray:
        """Row numbers (sorted int64) whose metadata satisfies ``where``, a clause made by
        ``core.filters.compile_filter`` (column positions, functions and ``?`` only; values in
        ``params``)."""
        ds = self._require(dataset_id)
        if not FILTER_CLAUSE.fullmatch(where):
            raise ValueError("a filter clause is compile_filter's grammar: positions and ? only")
        if not ds.metadata_columns:
            return np.arange(ds.n, dtype=np.int64)
        sql = on_dataset(SQL_META_WHERE, ds.id).replace("$where", where)
        table = self._cursor().sql(sql, params=list(params)).to_arrow_table()
        return np.asarray(table.column("__row").to_numpy(), dtype=np.int64)

    def search_rows(self, dataset_id: int, text: str, *, limit: int = 50) -> pd.DataFrame:
        """Rows whose id or any metadata value contains ``text`` (case-insensitive, literal).

        Returns a frame with ``row``, ``id`` and every metadata column, in row order, at most
        ``limit`` rows. The text is matched as a plain substring: ``%``, ``_`` and quotes
        have no special meaning.
        """
        sql, params = self._search(dataset_id, text, limit, rows_only=False)
        frame = key_columns_first(self._cursor().sql(sql, params=params).to_arrow_table())
        return frame.reset_index(drop=True)

    def search_row_numbers(self, dataset_id: int, text: str, *, limit: int = 10**6) -> np.ndarray:
        """:meth:`search_rows`' rows as sorted int64 row numbers only (the map lights up every
        match; at most ``limit``)."""
        sql, params = self._search(dataset_id, text, limit, rows_only=True)
        table = self._cursor().sql(sql, params=params).to_arrow_table()
        return np.asarray(table.column("row").to_numpy(), dtype=np.int64)

    def _search(
        self, dataset_id: int, text: str, limit: int, *, rows_only: bool
    ) -> tuple[str, list[Any]]:
        ds = self._require(dataset_id)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("type some text to search the ids and metadata for")
        needle, limit = text.strip(), max(int(limit), 0)
        if ds.metadata_columns and rows_only:
            return on_dataset(SQL_SEARCH_ROWS_WITH_META, ds.id), [needle, needle, limit]
        if ds.metadata_columns:
            return on_dataset(SQL_SEARCH_WITH_META, ds.id), [needle, needle, limit]
        if rows_only:
            return on_dataset(SQL_SEARCH_ROWS, ds.id), [needle, limit]
        return on_dataset(SQL_SEARCH, ds.id), [needle, limit]

    def rename_dataset(self, dataset_id: int, name: str) -> DatasetInfo:
        """Give a dataset a new unique name."""
        name = validate_name(name)
        ds = self._require(dataset_id)
        with self._transaction() as cur:
            taken = _one(
                cur.execute("SELECT id FROM datasets WHERE name = ? AND id <> ?", [name, ds.id])
            )
            if taken:
                raise InvalidInputError(
                    f"a dataset named {name!r} already exists (id {taken[0]}): choose another name"
                )
            cur.execute("UPDATE datasets SET name = ? WHERE id = ?", [name, ds.id])
        return self.get_dataset(ds.id)

    def set_info(
        self, dataset_id: int, info: Mapping[str, Any], *, drop: _Drop = ()
    ) -> DatasetInfo:
        """Replace a dataset's info and delete its artifacts with a fingerprint in ``drop`` (or
        that ``drop()`` gives, called in the transaction: what it reads here, the write sees;
        what it raises undoes all), in one transaction (a metric change: core/metric_change.py)."""
        if not isinstance(info, Mapping) or not (callable(drop) or isinstance(drop, list | tuple)):
            raise InvalidInputError("info must be a mapping and drop a list of fingerprints")
        ds = self._require(dataset_id)
        text = json.dumps(dict(info), sort_keys=True, default=str, ensure_ascii=False)
        with self._transaction() as cur:
            fps = [str(fp) for fp in (drop() if callable(drop) else drop)]
            sql = "DELETE FROM artifacts WHERE dataset_id = ? AND list_contains(?, fingerprint)"
            cur.execute(sql, [ds.id, fps])
            cur.execute("UPDATE datasets SET info = ? WHERE id = ?", [text, ds.id])
        return self.get_dataset(ds.id)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset, its tables and its artifacts, in one transaction."""
        ds = self._require(dataset_id)
        with self._transaction() as cur:
            cur.execute(on_dataset(SQL_DROP_VECTORS, ds.id))
            cur.execute(on_dataset(SQL_DROP_META, ds.id))
            cur.execute("DELETE FROM artifacts WHERE dataset_id = ?", [ds.id])
            cur.execute("DELETE FROM jobs WHERE dataset_id = ?", [ds.id])
            cur.execute("DELETE FROM datasets WHERE id = ?", [ds.id])

    # -- artifacts ---------------------------------------------------------------------------

    def put_artifact(
        self,
        *,
        kind: str,
        fingerprint: str,
        dataset_id: int | None = None,
        params: Mapping[str, Any] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
        duration_s: float | None = None,
        lineage: Mapping[str, Any] | None = None,
        status: str = "done",
        check: Callable[[], object] = lambda: None,
    ) -> Artifact:
        """Store (or replace) the artifact with this fingerprint, in one transaction; ``check()``
        runs first in it (what it raises stores nothing). ``arrays``: a ``.npz`` blob, no pickle."""
        if not kind or not isinstance(kind, str):
            raise InvalidInputError("artifact kind must be a non-empty string")
        if not fingerprint or not isinstance(fingerprint, str):
            raise InvalidInputError("artifact fingerprint must be a non-empty string")
        if dataset_id is not None:
            self._require(dataset_id)
        for name, value in (arrays or {}).items():
            if np.asarray(value).dtype.hasobject:
                # np.savez would pickle it, and artifacts are read back without pickle.
                raise InvalidInputError(
                    f"artifact array {name!r} holds Python objects: store text as a str array "
                    "(np.asarray(values, dtype=str))"
                )
        blob = _arrays_to_blob(arrays or {})
        with self._transaction() as cur:
            check()
            cur.execute("DELETE FROM artifacts WHERE fingerprint = ?", [fingerprint])
            new_id = self._next_id(cur, "artifact", "artifacts")
            cur.execute(
                "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    new_id,
                    dataset_id,
                    kind,
                    json.dumps(dict(params or {}), default=str),  # order kept: read back alike
                    fingerprint,
                    datetime.now(UTC).replace(tzinfo=None),
                    duration_s,
                    json.dumps(dict(lineage or {}), sort_keys=True, default=str),
                    status,
                    blob,
                ],
            )
        found = self.get_artifact(fingerprint)
        assert found is not None
        return found

    _ARTIFACT_COLUMNS = (
        "id, dataset_id, kind, params, fingerprint, created, duration_s, lineage, status, payload"
    )
    _ARTIFACT_SUMMARY_COLUMNS = _ARTIFACT_COLUMNS.replace("payload", "NULL")
    _SELECT_ARTIFACTS = "SELECT " + _ARTIFACT_COLUMNS + " FROM artifacts"
    _SELECT_ARTIFACT_SUMMARIES = "SELECT " + _ARTIFACT_SUMMARY_COLUMNS + " FROM artifacts"

    @staticmethod
    def _artifact_from_row(row: tuple[Any, ...], *, with_arrays: bool = True) -> Artifact:
        return Artifact(
            id=int(row[0]),
            dataset_id=None if row[1] is None else int(row[1]),
            kind=row[2],
            params=json.loads(row[3]),
            fingerprint=row[4],
            created=row[5],
            duration_s=row[6],
            lineage=json.loads(row[7]),
            status=row[8],
            arrays=_blob_to_arrays(row[9]) if with_arrays else {},
        )

    def get_artifact(self, fingerprint: str, *, with_arrays: bool = True) -> Artifact | None:
        """The artifact with this fingerprint, or None (``with_arrays=False``: without
        reading its arrays, for a page that only needs to know it exists)."""
        sql = (self._SELECT_ARTIFACTS if with_arrays else self._SELECT_ARTIFACT_SUMMARIES) + (
            " WHERE fingerprint = ?"
        )
        row = _one(self._cursor().execute(sql, [fingerprint]))
        return None if row is None else self._artifact_from_row(row, with_arrays=with_arrays)

    def list_artifacts(
        self, dataset_id: int | None = None, *, kind: str | None = None
    ) -> list[Artifact]:
        """Artifacts (without their arrays), newest first, optionally of one dataset or kind."""
        # The summaries leave the payload column out: a listing must not read every blob.
        sql = self._SELECT_ARTIFACT_SUMMARIES + " WHERE 1 = 1"
        params: list[Any] = []
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params.append(int(dataset_id))
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        rows = self._cursor().execute(sql + " ORDER BY id DESC", params).fetchall()
        return [self._artifact_from_row(r, with_arrays=False) for r in rows]

    # -- jobs -----------------------------------------------------------------------------------

    _JOB_COLUMNS = "key, kind, dataset_id, label, params, state, message, error, created, updated"
    _SELECT_JOBS = "SELECT " + _JOB_COLUMNS + " FROM jobs"

    def put_job(
        self,
        *,
        key: str,
        kind: str,
        dataset_id: int | None,
        label: str,
        params: Mapping[str, Any],
        state: str,
        message: str = "",
        error: str | None = None,
    ) -> None:
        """Record (or replace) the state of the background job ``key``."""
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._transaction() as cur:
            old = _one(cur.execute("SELECT created FROM jobs WHERE key = ?", [key]))
            created = now if old is None or state == "queued" else old[0]
            cur.execute("DELETE FROM jobs WHERE key = ?", [key])
            cur.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    key,
                    kind,
                    dataset_id,
                    label,
                    json.dumps(dict(params), sort_keys=True, default=str),
                    state,
                    message,
                    error,
                    created,
                    now,
                ],
            )

    def list_jobs(self, dataset_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded jobs, newest first, optionally of one dataset."""
        sql = self._SELECT_JOBS
        params: list[Any] = []
        if dataset_id is not None:
            sql += " WHERE dataset_id = ?"
            params.append(int(dataset_id))
        rows = self._cursor().execute(sql + " ORDER BY updated DESC, key", params).fetchall()
        names = [c.strip() for c in self._JOB_COLUMNS.split(",")]
        out = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            record["params"] = json.loads(record["params"])
            out.append(record)
        return out

    def prune_jobs(self, keep: int) -> int:
        """Forget all but the ``keep`` most recently updated finished jobs; how many went.

        Queued and running jobs are always kept. Every page lists the recorded jobs, so a
        server that has run thousands of them would read them all on every rerun.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise InvalidInputError(f"keep must be a whole number >= 0, got {keep!r}")
        if self.read_only:
            return 0
        with self._transaction() as cur:
            before = int(_aggregate(cur.execute("SELECT COUNT(*) FROM jobs")))
            cur.execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND key NOT IN "
                "(SELECT key FROM jobs WHERE state NOT IN ('queued', 'running') "
                "ORDER BY updated DESC, key LIMIT ?)",
                [keep],
            )
            after = int(_aggregate(cur.execute("SELECT COUNT(*) FROM jobs")))
        return before - after

    def mark_interrupted_jobs(self) -> int:
        """Mark jobs a dead process left queued or running as "interrupted"; how many.

        A job keyed by the fingerprint of an artifact that is stored (the process died after
        the job's result was committed, before it recorded the job as done) is marked
        "done" instead: its result is there, and it must not be offered for a restart.
        """
        if self.read_only:
            return 0
        with self._transaction() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'done', message = 'done (its result was stored before "
                "the server stopped)', updated = ? WHERE state IN ('queued', 'running') "
                "AND key IN (SELECT fingerprint FROM artifacts WHERE status = 'done')",
                [datetime.now(UTC).replace(tzinfo=None)],
            )
            n = int(
                _aggregate(
                    cur.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
                )
            )
            cur.execute(
                "UPDATE jobs SET state = 'interrupted', message = 'the server stopped while this "
                "job ran', updated = ? WHERE state IN ('queued', 'running')",
                [datetime.now(UTC).replace(tzinfo=None)],
            )
        return n

    # -- whole-database facts -------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no dataset is stored."""
        return int(_aggregate(self._cursor().execute("SELECT COUNT(*) FROM datasets"))) == 0

    def table_names(self) -> list[str]:
        """Every table in the database (used by tests to check nothing half-written is left)."""
        rows = (
            self._cursor()
            .execute("SELECT table_name FROM information_schema.tables ORDER BY table_name")
            .fetchall()
        )
        return [r[0] for r in rows]
