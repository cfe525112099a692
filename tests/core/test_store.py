"""The DuckDB store: round trips, transactions, parameterised SQL, threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import embscope.core.store
from embscope.core.errors import DatabaseBusyError, DatasetNotFoundError, InvalidInputError
from embscope.core.store import Store, resolve_db_path
from tests.helpers import make_parsed, snapshot

HOSTILE = [
    "'; DROP TABLE datasets; --",
    "<img src=x onerror=alert(1)>",
    "<script>alert('x')</script>",
    "quote \" and ' and `",
    "Ünïcødé ✓ 😀 שלום",
    "line\nbreak",
    "",
]


def test_resolve_db_path_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBSCOPE_DB", raising=False)
    assert (
        resolve_db_path() == resolve_db_path(None) and resolve_db_path().name == "embscope.duckdb"
    )
    monkeypatch.setenv("EMBSCOPE_DB", str(tmp_path / "env.duckdb"))
    assert resolve_db_path() == tmp_path / "env.duckdb"
    assert resolve_db_path(tmp_path / "arg.duckdb") == tmp_path / "arg.duckdb"


def test_round_trip_vectors_ids_metadata(store):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 33)).astype(np.float32)
    meta = pd.DataFrame(
        {
            "label": np.arange(500) % 7,
            "score": rng.random(500),
            "flag": np.arange(500) % 2 == 0,
            "text": [HOSTILE[i % len(HOSTILE)] for i in range(500)],
        }
    )
    ids = np.array([f"item-{i}" for i in range(500)], dtype=object)
    info = store.add_dataset(make_parsed(X, meta, ids=ids), name="round trip")
    assert (info.n, info.dim) == (500, 33)
    np.testing.assert_array_equal(store.load_vectors(info.id), X)
    assert store.load_vectors(info.id).dtype == np.float32
    assert list(store.load_ids(info.id)) == list(ids)
    back = store.load_metadata(info.id)
    assert list(back.columns) == ["label", "score", "flag", "text"]
    np.testing.assert_array_equal(back["label"].to_numpy(), meta["label"].to_numpy())
    np.testing.assert_array_equal(back["score"].to_numpy(), meta["score"].to_numpy())
    np.testing.assert_array_equal(back["flag"].to_numpy(), meta["flag"].to_numpy())
    assert list(back["text"]) == list(meta["text"])
    assert back["label"].dtype.kind == "i" and back["flag"].dtype == bool
    assert store.load_metadata(info.id, limit=3).shape == (3, 4)


def test_metadata_columns_are_typed_in_duckdb(store):
    meta = pd.DataFrame({"label": [1, 2], "name": ["a", "b"], "w": [0.5, 1.5]})
    info = store.add_dataset(make_parsed(np.ones((2, 3)), meta), name="typed")
    types = dict(
        store._cursor()
        .execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            [f"meta_{info.id}"],
        )
        .fetchall()
    )
    assert types["label"] == "BIGINT" and types["name"] == "VARCHAR" and types["w"] == "DOUBLE"
    vec_type = (
        store._cursor().execute(f"SELECT typeof(vec) FROM vectors_{info.id} LIMIT 1").fetchall()
    )
    assert vec_type == [("FLOAT[3]",)]
    # Metadata can be filtered with (parameterised) SQL.
    hits = (
        store._cursor().execute(f"SELECT name FROM meta_{info.id} WHERE label = ?", [2]).fetchall()
    )
    assert hits == [("b",)]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    X=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 20)),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    texts=st.lists(st.text(max_size=30), min_size=1, max_size=1),
    name=st.text(st.characters(min_codepoint=32, exclude_categories=("Cs", "Cc")), max_size=30),
)
def test_property_round_trip_bit_identical(tmp_path_factory, X, texts, name):
    """Whatever float32 matrix and text go in come back bit for bit."""
    path = tmp_path_factory.mktemp("prop") / "p.duckdb"
    n = X.shape[0]
    meta = pd.DataFrame({"t": [texts[0]] * n, "i": np.arange(n)})
    with Store(path) as s:
        info = s.add_dataset(make_parsed(X, meta), name="d " + name)
    with Store(path) as s:  # and survive closing and reopening the file
        back = s.load_vectors(info.id)
        assert back.tobytes() == np.ascontiguousarray(X).tobytes()
        m = s.load_metadata(info.id)
        assert list(m["t"]) == [texts[0]] * n
        assert s.get_dataset(info.id).name == ("d " + name).strip()


@pytest.mark.parametrize("name", [n for n in HOSTILE if n.strip() and "\n" not in n])
def test_names_are_stored_verbatim_never_executed(store, name):
    info = store.add_dataset(make_parsed(np.eye(3)), name=name)
    assert store.get_dataset(name).id == info.id
    assert store.get_dataset(info.id).name == name
    assert "datasets" in store.table_names()


def test_bad_names_rejected(store):
    for bad in ["", "   ", "a\nb", "x" * 201]:
        with pytest.raises(InvalidInputError):
            store.add_dataset(make_parsed(np.eye(2)), name=bad)
    assert store.list_datasets() == []


def test_duplicate_name_rejected_and_database_unchanged(store):
    store.add_dataset(make_parsed(np.eye(3)), name="a")
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="already exists"):
        store.add_dataset(make_parsed(np.eye(4)), name="a")
    assert snapshot(store) == before


def test_failure_inside_transaction_rolls_back_everything(store, monkeypatch):
    store.add_dataset(make_parsed(np.eye(3)), name="keep")
    before = snapshot(store)

    class Boom:
        @staticmethod
        def now(*a, **k):
            raise InvalidInputError("simulated failure after the tables were created")

    # datetime.now is called for the catalog row, after vectors_N and meta_N exist.
    monkeypatch.setattr(embscope.core.store, "datetime", Boom)
    with pytest.raises(InvalidInputError, match="simulated"):
        store.add_dataset(make_parsed(np.ones((5, 2))), name="lost")
    monkeypatch.setattr(embscope.core.store, "datetime", datetime)
    assert snapshot(store) == before
    # The next dataset gets the next id: nothing of the failed one is left behind.
    info = store.add_dataset(make_parsed(np.ones((5, 2))), name="next")
    assert info.id == 2


def test_a_disk_error_while_writing_is_an_oserror_and_changes_nothing(store, monkeypatch):
    import duckdb

    store.add_dataset(make_parsed(np.eye(3)), name="kept")
    before = snapshot(store)

    def full_disk(*args, **kwargs):
        raise duckdb.IOException("could not write file: No space left on device")

    monkeypatch.setattr(Store, "_next_id", full_disk)  # inside the transaction
    with pytest.raises(OSError, match=r"No space left on device\); nothing was changed"):
        store.add_dataset(make_parsed(np.eye(4)), name="lost")
    monkeypatch.undo()
    assert snapshot(store) == before
    assert [d.name for d in store.list_datasets()] == ["kept"]


def test_case_insensitive_column_clash_is_a_clear_error(store):
    meta = pd.DataFrame({"Label": [1, 2], "label": [3, 4]})
    with pytest.raises(InvalidInputError, match="letter case"):
        store.add_dataset(make_parsed(np.eye(2), meta), name="clash")
    assert store.list_datasets() == []


def test_metadata_named_like_a_key_column_is_kept(store):
    meta = pd.DataFrame({"row": ["a", "b", "c"], "id": ["x", "y", "z"], "n": [1, 2, 3]})
    # ids taken from the metadata's own `id` column: that column is not shown twice.
    info = store.add_dataset(make_parsed(np.eye(3), meta, ids=["x", "y", "z"]), name="keys")
    rows = store.load_rows(info.id, [2, 0])
    assert list(rows.columns) == ["row", "id", "row (metadata)", "n"]
    assert rows["row"].tolist() == [2, 0] and rows["row (metadata)"].tolist() == ["c", "a"]
    found = store.search_rows(info.id, "b")
    assert list(found.columns) == ["row", "id", "row (metadata)", "n"]
    assert found["id"].tolist() == ["y"]
    assert store.search_row_numbers(info.id, "B").tolist() == [1]  # the row numbers alone
    assert store.search_row_numbers(info.id, "x", limit=0).tolist() == []
    bare = store.add_dataset(make_parsed(np.eye(3), ids=["ab", "b", "c"]), name="bare")
    assert store.search_row_numbers(bare.id, "b").tolist() == [0, 1]
    with pytest.raises(InvalidInputError):
        store.search_row_numbers(bare.id, "  ")
    # Other ids: the metadata `id` column differs from the ids and is kept too.
    other = store.add_dataset(make_parsed(np.eye(3), meta, ids=["p", "q", "r"]), name="keys2")
    rows = store.load_rows(other.id, [1])
    assert rows.iloc[0].to_dict() == {
        "row": 1,
        "id": "q",
        "row (metadata)": "b",
        "id (metadata)": "y",
        "n": 2,
    }


def test_mismatched_rows_and_duplicate_ids(store):
    with pytest.raises(InvalidInputError, match="rows"):
        store.add_dataset(make_parsed(np.eye(3), pd.DataFrame({"a": [1, 2]})), name="x")
    with pytest.raises(InvalidInputError, match="unique"):
        store.add_dataset(make_parsed(np.eye(2), ids=["a", "a"]), name="x")
    assert store.is_empty()


def test_get_dataset_by_id_or_name_and_not_found(store):
    a = store.add_dataset(make_parsed(np.eye(2)), name="alpha")
    b = store.add_dataset(make_parsed(np.eye(2)), name="7")
    assert store.get_dataset(a.id).name == "alpha"
    assert store.get_dataset(str(a.id)).name == "alpha"
    assert store.get_dataset("7").id == b.id  # no dataset has id 7, so the name matches
    with pytest.raises(DatasetNotFoundError, match="alpha"):
        store.get_dataset("nope")
    with pytest.raises(DatasetNotFoundError):
        store.get_dataset(999)


def test_rename_and_delete(store):
    a = store.add_dataset(make_parsed(np.eye(2)), name="a")
    b = store.add_dataset(make_parsed(np.eye(2)), name="b")
    with pytest.raises(InvalidInputError, match="already exists"):
        store.rename_dataset(a.id, "b")
    assert store.rename_dataset(a.id, "c").name == "c"
    store.put_artifact(kind="knn", fingerprint="fp", dataset_id=a.id, arrays={"i": np.arange(3)})
    store.delete_dataset(a.id)
    assert [d.name for d in store.list_datasets()] == ["b"]
    assert (
        f"vectors_{a.id}" not in store.table_names() and f"meta_{a.id}" not in store.table_names()
    )
    assert store.list_artifacts() == []
    # ids are never reused
    assert store.add_dataset(make_parsed(np.eye(2)), name="d").id == b.id + 1


def test_artifacts_round_trip_and_replace(store):
    a = store.add_dataset(make_parsed(np.eye(2)), name="a")
    idx = np.arange(12, dtype=np.int32).reshape(3, 4)
    art = store.put_artifact(
        kind="knn_graph",
        fingerprint="abc",
        dataset_id=a.id,
        params={"k": 4, "metric": "cosine"},
        arrays={"indices": idx},
        duration_s=1.5,
        lineage={"dataset": a.fingerprint},
    )
    assert art.params == {"k": 4, "metric": "cosine"} and art.duration_s == 1.5
    np.testing.assert_array_equal(store.get_artifact("abc").arrays["indices"], idx)
    store.put_artifact(
        kind="knn_graph", fingerprint="abc", dataset_id=a.id, arrays={"indices": idx + 1}
    )
    assert len(store.list_artifacts(a.id)) == 1
    np.testing.assert_array_equal(store.get_artifact("abc").arrays["indices"], idx + 1)
    assert store.get_artifact("missing") is None


def test_fingerprint_depends_on_content():
    X = np.ones((3, 2), np.float32)
    f = embscope.core.store.fingerprint_arrays
    assert f(X, {"k": 1}) == f(X.copy(), {"k": 1})
    assert f(X, {"k": 1}) != f(X, {"k": 2})
    assert f(X) != f(X.astype(np.float64))
    Y = X.copy()
    Y[0, 0] = np.nextafter(np.float32(1), np.float32(2))
    assert f(X) != f(Y)


def test_threads_share_one_database_with_own_cursors(store):
    X = np.random.default_rng(1).standard_normal((200, 8)).astype(np.float32)
    info = store.add_dataset(make_parsed(X), name="t")
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(20):
                np.testing.assert_array_equal(store.load_vectors(info.id), X)
                store.list_datasets()
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    def writer(k):
        try:
            store.add_dataset(make_parsed(X[:10]), name=f"w{k}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    threads += [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list_datasets()) == 5


def test_second_process_gets_a_clear_busy_error(db_path):
    with Store(db_path) as s:
        s.add_dataset(make_parsed(np.eye(2)), name="a")
        code = (
            "import sys\n"
            "from embscope.core.store import Store\n"
            "from embscope.core.errors import DatabaseBusyError\n"
            "try:\n"
            f"    Store({str(db_path)!r})\n"
            "except DatabaseBusyError as e:\n"
            "    print('BUSY', e); sys.exit(0)\n"
            "sys.exit(1)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert "in use by another process" in out.stdout
    assert DatabaseBusyError.__mro__[1] is InvalidInputError


def test_read_only_store_refuses_writes(db_path):
    with Store(db_path) as s:
        s.add_dataset(make_parsed(np.eye(2)), name="a")
    with Store(db_path, read_only=True) as s:
        assert [d.name for d in s.list_datasets()] == ["a"]
        with pytest.raises(InvalidInputError, match="read-only"):
            s.rename_dataset(1, "b")


def test_not_a_database_file(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidInputError, match="cannot open database"):
        Store(bad)


def test_whole_numbers_with_missing_values_stay_whole(tmp_path):
    n = 6
    meta = pd.DataFrame(
        {
            "year": pd.array([2019, None, 2020, 2021, None, 2022], dtype="Int64"),
            "count": np.arange(n, dtype=np.int32),  # no gaps: a plain numpy integer column
            "small": pd.array([1, 2, None, 4, 5, 6], dtype="UInt8"),
            "score": [0.5, np.nan, 1.0, 1.5, 2.0, 2.5],
        }
    )
    X = np.random.default_rng(0).standard_normal((n, 3)).astype(np.float32)
    with Store(tmp_path / "ints.duckdb") as store:
        info = store.add_dataset(make_parsed(X, meta), name="ints")
        back = store.load_metadata(info.id)
        assert str(back["year"].dtype) == "Int64" and back["year"].isna().tolist() == [
            False, True, False, False, True, False
        ]  # fmt: skip
        assert back["year"].dropna().tolist() == [2019, 2020, 2021, 2022]
        assert back["count"].dtype == np.int32 and back["score"].dtype == np.float64
        assert str(back["small"].dtype) == "UInt8"
        rows = store.load_rows(info.id, [1, 0])
        assert str(rows["year"].dtype) == "Int64" and rows["year"].iloc[1] == 2019
        assert pd.isna(rows["year"].iloc[0])


def test_bulk_reads_and_writes_bound_duckdb_memory_only_while_they_run(tmp_path):
    """Storing and reading vectors hold DuckDB to the bulk limit; the default comes back
    after, also when sections overlap across threads."""
    from embscope.core.store import _BULK_MEMORY_LIMIT

    store = Store(tmp_path / "bulk.duckdb")

    def limit() -> str:
        return str(store._cursor().execute("SELECT current_setting('memory_limit')").fetchone()[0])

    default = limit()
    X = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    info = store.add_dataset(make_parsed(X), name="v")
    assert limit() == default
    inside = []
    with store._bulk():
        inside.append(limit())
        threads = [threading.Thread(target=store.load_vectors, args=(info.id,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        inside.append(limit())  # the others ended; this section still holds the limit
    assert inside[0] == inside[1] != default
    assert inside[0] == "488.2 MiB" and _BULK_MEMORY_LIMIT == "512MB"  # DuckDB says MiB
    assert limit() == default
    np.testing.assert_array_equal(store.load_vectors(info.id), X)
