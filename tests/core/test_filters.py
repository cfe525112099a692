"""Metadata filters (core/filters.py): parsing, type checks, NULLs, hostile column names and
values, and the rows DuckDB returns against the same filter evaluated in pandas."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.filters import (
    Condition,
    column_kind,
    compile_filter,
    matching_rows,
    one_of,
    parse_condition,
    parse_filter,
)
from tests.helpers import make_parsed

# A column name with an operator in it cannot be written as COLUMN OP VALUE (the contract splits
# at the first operator); the page passes a Condition instead.
HOSTILE = 'x"; DROP TABLE datasets; -- &amp; \\'


@pytest.fixture
def dataset(store):
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.choice(["cat", "dog", "Catfish", "50%_off", None], n).astype(object)
    year = rng.integers(1990, 2030, n).astype(float)
    year[::17] = np.nan
    meta = pd.DataFrame(
        {
            "label": pd.array(labels, dtype="string"),
            "year": pd.array(year, dtype="Float64").astype("Int64"),
            "score": rng.random(n),
            "flag": rng.random(n) < 0.3,
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 9, n)],
            HOSTILE: rng.choice(["a", "b"], n),
        }
    )
    info = store.add_dataset(make_parsed(rng.random((n, 4)), meta), name="filtered")
    return info, store.load_metadata(info.id)


@pytest.mark.parametrize(
    ("expr", "parsed"),
    [
        ("a<=3", ("a", "<=", "3")),
        ("a>=3", ("a", ">=", "3")),
        ("a!=b", ("a", "!=", "b")),
        ("note~x=y", ("note", "~", "x=y")),
        (" year = 2020 ", ("year", "=", "2020")),
        ("a=", ("a", "=", "")),
        ("a<b>c", ("a", "<", "b>c")),
        ('m@["a=b", "c"]', ("m", "@", '["a=b", "c"]')),
        ("mail=a@b.org", ("mail", "=", "a@b.org")),
        ("recall@10>=0.5", ("recall@10", ">=", "0.5")),  # "@" only before a list
        ("m @ [1]", ("m", "@", "[1]")),
    ],
)
def test_split_at_the_first_operator_two_characters_first(expr, parsed):
    assert parse_condition(expr) == Condition(*parsed)


@pytest.mark.parametrize("expr", ["=x", "  ~x", "no operator here", 3, None, "a" * 10_001 + "=1"])
def test_expressions_without_a_column_or_operator_are_refused(expr):
    with pytest.raises(InvalidInputError):
        parse_condition(expr)


def test_the_rows_are_pandas_rows_for_every_operator_and_kind(store, dataset):
    info, meta = dataset
    cases = {
        "label=cat": meta["label"] == "cat",
        "label!=cat": meta["label"].notna() & (meta["label"] != "cat"),  # NULL: no match
        "label~CAT": meta["label"].str.lower().str.contains("cat", regex=False),
        "label~%_": meta["label"].str.contains("%_", regex=False),  # literal, no wildcards
        "year>=2020": meta["year"] >= 2020,
        "year<2000": meta["year"] < 2000,
        "year!=2001": meta["year"].notna() & (meta["year"] != 2001),
        "score<=0.25": meta["score"] <= 0.25,
        "flag=true": meta["flag"],
        "flag!=1": ~meta["flag"],
        "day=2024-01-03": meta["day"].astype(str) == "2024-01-03",
        "day~-01-0": meta["day"].astype(str).str.contains("-01-0", regex=False),
        f"{HOSTILE}=a": meta[HOSTILE] == "a",
        'label@["cat", "Catfish"]': meta["label"].isin(["cat", "Catfish"]),
        'label@["50%_off"]': meta["label"] == "50%_off",
        "year@[1999, 2020.0]": meta["year"].isin([1999, 2020]),
        'day@["2024-01-03", "2024-01-05"]': meta["day"]
        .astype(str)
        .isin(["2024-01-03", "2024-01-05"]),
        one_of("label", ["dog", 'x"]; DROP']): meta["label"] == "dog",
    }
    for expr, mask in cases.items():
        expected = np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool))
        got = matching_rows(store, info.id, [expr])
        np.testing.assert_array_equal(got, expected, err_msg=expr)
    # AND of several; no filter: every row.
    both = matching_rows(store, info.id, ["label~cat", "year>=2000", "flag=false"])
    mask = (
        meta["label"].str.lower().str.contains("cat", regex=False).fillna(False)
        & (meta["year"] >= 2000).fillna(False)
        & ~meta["flag"]
    )
    np.testing.assert_array_equal(both, np.flatnonzero(mask.to_numpy(dtype=bool)))
    np.testing.assert_array_equal(matching_rows(store, info.id, []), np.arange(info.n))
    assert matching_rows(store, info.id, ["label=" + HOSTILE]).size == 0


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("colour=red", "no column 'colour'"),
        ("__row=3", "no column '__row'"),
        ("year~20", "'~' does not fit column 'year' (numbers)"),
        ("year=twenty", "holds numbers"),
        ("year>nan", "holds numbers"),
        ("label<m", "'<' does not fit column 'label' (text)"),
        ("flag=maybe", "true/false"),
        ("flag<1", "does not fit"),
        ("label~", "give some text"),
        ("label@cat", "no operator"),  # "@" is an operator only before a list
        ("label@[]", "JSON list"),
        ('label@["a", true]', "JSON list"),
        ('label@{"a": 1}', "no operator"),
        ('label@["a", [1]]', "JSON list"),
        ('year@["x"]', "holds numbers"),
        ("flag@[1]", "does not fit"),
        ("label@" + str(list(range(501))), "at most 500"),
    ],
)
def test_a_filter_that_does_not_fit_the_columns_says_why(store, dataset, expr, message):
    info, _ = dataset
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        matching_rows(store, info.id, [expr])


def test_nothing_typed_reaches_the_statement(store, dataset):
    info, _ = dataset
    compiled = compile_filter(
        parse_filter([f"{HOSTILE}=a", "label~'; DROP TABLE x; --"]), store.metadata_schema(info.id)
    )
    assert "DROP" not in compiled.where and "'" not in compiled.where
    assert compiled.params == ("a", "'; DROP TABLE x; --")
    for hostile in (
        "1=1; DROP TABLE datasets",
        "TRUE UNION SELECT row FROM vectors_1",
        "(SELECT count(id) FROM datasets) > 100",
        "(#2 = ?) OR TRUE",
        "(#2 = 'x')",
    ):
        with pytest.raises(ValueError):
            store.rows_where(info.id, hostile, ())
    # Clauses compile_filter writes pass the guard (the test above runs every kind of them).
    ok = compile_filter(parse_filter(["day~-01", "year>=2000"]), store.metadata_schema(info.id))
    assert store.rows_where(info.id, ok.where, ok.params).size > 0
    assert store.list_datasets()  # still there


def test_limits_and_kinds():
    with pytest.raises(InvalidInputError, match="at most 32"):
        parse_filter(["a=1"] * 33)
    assert [column_kind(t) for t in ("BIGINT", "DECIMAL(9,2)", "VARCHAR", "BOOLEAN", "DATE")] == [
        "number",
        "number",
        "text",
        "bool",
        "other",
    ]


def test_a_dataset_without_metadata(store):
    info = store.add_dataset(make_parsed(np.zeros((5, 2))), name="bare")
    np.testing.assert_array_equal(matching_rows(store, info.id, None), np.arange(5))
    with pytest.raises(InvalidInputError, match="columns are none"):
        matching_rows(store, info.id, ["a=1"])


def test_conditions_are_never_reparsed_and_big_integers_stay_exact(store):
    from embscope.core.derive import save_subset

    meta = pd.DataFrame(
        {
            "x!": ["u", "u", "u", "v", "v", "v"],
            "x": ["w", "w", "w", "w", "w", "u"],
            "big": np.array([2**53, 2**53 + 1, 5, 6, 7, 8], dtype=np.int64),
        }
    )
    info = store.add_dataset(make_parsed(np.random.default_rng(0).random((6, 3)), meta), name="t")
    # "x! =u" is column "x!" = "u"; printed back it would read "x!=u" (x != u).
    np.testing.assert_array_equal(matching_rows(store, info.id, ["x! =u"]), [0, 1, 2])
    sub, _ = save_subset(store, info.id, ["x! =u"], name="s")
    assert sub.n == 3 and sub.info["transform_params"]["filter"] == ["x! =u"]
    np.testing.assert_array_equal(matching_rows(store, info.id, [f"big={2**53 + 1}"]), [1])
    np.testing.assert_array_equal(matching_rows(store, info.id, ["big>=5.5"]), [0, 1, 3, 4, 5])
    # One expression given as a string is one expression.
    np.testing.assert_array_equal(matching_rows(store, info.id, "x=u"), [5])
