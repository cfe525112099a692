"""The store's SQL: the schema and every statement on a dataset's own tables.

Every statement on a dataset's tables is one of the literal ``SQL_*`` templates here;
:func:`on_dataset` puts in the only things ever substituted into SQL: the table names, built
from the integer dataset id, and the vector dimension, an integer. Nothing a user typed or
uploaded can reach a statement; values always travel as bound parameters or inside Arrow
tables. (Split from :mod:`core.store`, which runs them.)
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS embscope_settings (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL)""",
    # Ids come from a counter row updated in the same transaction as the insert, so a
    # rolled-back ingest leaves the counter (and so the database) exactly as it was;
    # a DuckDB SEQUENCE would not roll back. Ids are never reused after a delete.
    """CREATE TABLE IF NOT EXISTS embscope_counters (
        name VARCHAR PRIMARY KEY,
        value BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS datasets (
        id INTEGER PRIMARY KEY,
        name VARCHAR NOT NULL,
        n BIGINT NOT NULL,
        dim INTEGER NOT NULL,
        created TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        format VARCHAR NOT NULL,
        id_column VARCHAR,
        vector_column VARCHAR,
        metadata_columns VARCHAR NOT NULL,
        warnings VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        info VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER,
        kind VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        created TIMESTAMP NOT NULL,
        duration_s DOUBLE,
        lineage VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        payload BLOB)""",
    # Background jobs (core/jobs.py): one row per job key, its last known state. Rows left
    # "queued" or "running" by a process that died are marked "interrupted" on the next start.
    """CREATE TABLE IF NOT EXISTS jobs (
        key VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        dataset_id INTEGER,
        label VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        error VARCHAR,
        created TIMESTAMP NOT NULL,
        updated TIMESTAMP NOT NULL)""",
]


# Every statement on a dataset's own tables is one of these literal templates. on_dataset
# puts in the only things ever substituted into SQL: the table names, built from the integer
# dataset id, and the vector dimension, an integer. Nothing a user typed or uploaded can
# reach a statement; values always travel as bound parameters or inside Arrow tables.
SQL_CREATE_VECTORS = (
    "CREATE TABLE $vectors (row BIGINT NOT NULL, id VARCHAR NOT NULL, vec FLOAT[$dim] NOT NULL)"
)
SQL_INSERT_VECTORS = "INSERT INTO $vectors SELECT row, id, vec FROM embscope_vec_in"
SQL_CREATE_META = "CREATE TABLE $meta AS SELECT * FROM embscope_meta_in"
SQL_LOAD_VECTORS = "SELECT row, vec FROM $vectors"
SQL_LOAD_IDS = "SELECT id FROM $vectors ORDER BY row"
SQL_LOAD_META = "SELECT * EXCLUDE (__row) FROM $meta ORDER BY __row"
SQL_ROWS_WITH_META = (
    "SELECT v.row AS row, v.id AS id, m.* EXCLUDE (__row) "
    "FROM $vectors v JOIN $meta m ON m.__row = v.row WHERE list_contains(?, v.row)"
)
SQL_ROWS = "SELECT row, id FROM $vectors WHERE list_contains(?, row)"
SQL_ROW_VECTORS = "SELECT row, vec FROM $vectors WHERE list_contains(?, row)"
SQL_SEARCH_WITH_META = (
    "SELECT v.row AS row, v.id AS id, m.* EXCLUDE (__row) "
    "FROM $vectors v JOIN $meta m ON m.__row = v.row "
    "WHERE contains(lower(v.id), lower(?)) OR contains(lower(concat_ws(chr(31), "
    "*COLUMNS(m.* EXCLUDE (__row)))), lower(?)) ORDER BY v.row LIMIT ?"
)
SQL_SEARCH = "SELECT row, id FROM $vectors WHERE contains(lower(id), lower(?)) ORDER BY row LIMIT ?"
SQL_SEARCH_ROWS_WITH_META = "SELECT row FROM (" + SQL_SEARCH_WITH_META + ") ORDER BY row"
SQL_SEARCH_ROWS = "SELECT row FROM (" + SQL_SEARCH + ") ORDER BY row"
SQL_DESCRIBE_META = "DESCRIBE $meta"
# $where: a CompiledFilter's clause (column positions and ? only, core/filters.py), checked
# against exactly the grammar compile_filter writes before it is put in.
SQL_META_WHERE = "SELECT __row FROM $meta WHERE $where ORDER BY __row"
_FILTER_COLUMN = r"(?:#\d+|CAST\(#\d+ AS VARCHAR\))"
_FILTER_TERM = (
    rf"\((?:{_FILTER_COLUMN} (?:=|<>|<|<=|>|>=) \?"
    rf"|{_FILTER_COLUMN} IN \(\?(?:, \?)*\)"
    rf"|strpos\(lower\({_FILTER_COLUMN}\), lower\(\?\)\) > 0)\)"
)
FILTER_CLAUSE = re.compile(rf"TRUE|{_FILTER_TERM}(?: AND {_FILTER_TERM})*")
SQL_DROP_VECTORS = "DROP TABLE IF EXISTS $vectors"
SQL_DROP_META = "DROP TABLE IF EXISTS $meta"
# The highest id of each table with an id column (see Store._next_id).
SQL_MAX_ID = {
    "datasets": "SELECT COALESCE(MAX(id), 0) FROM datasets",
    "artifacts": "SELECT COALESCE(MAX(id), 0) FROM artifacts",
}


def _table_id(dataset_id: Any) -> int:
    if type(dataset_id) is not int and not isinstance(dataset_id, np.integer):
        raise TypeError(f"table names are built from integer ids only, got {dataset_id!r}")
    return int(dataset_id)


def _vectors(dataset_id: int) -> str:
    """The name of a dataset's vectors table, ``vectors_<id>``."""
    return f"vectors_{_table_id(dataset_id)}"


def _meta(dataset_id: int) -> str:
    """The name of a dataset's metadata table, ``meta_<id>``."""
    return f"meta_{_table_id(dataset_id)}"


def on_dataset(template: str, dataset_id: int, *, dim: int | None = None) -> str:
    """A ``SQL_*`` template with dataset ``dataset_id``'s table names (and ``dim``) put in."""
    sql = template.replace("$vectors", _vectors(dataset_id)).replace("$meta", _meta(dataset_id))
    if "$dim" in sql:
        sql = sql.replace("$dim", str(_table_id(dim)))
    return sql
