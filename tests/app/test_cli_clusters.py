"""The `embscope clusters` contract: JSON keys, --out in row order, exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embscope.core.demo import stdlib_docstrings
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import run_cli, snapshot

run = run_cli
DOCS = "stdlib docstrings (all-MiniLM-L6-v2)"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clusters") / "clusters.duckdb"
    with Store(path) as s:
        store_demo_dataset(s, stdlib_docstrings())
    return str(path)


@pytest.fixture
def db(stored, tmp_path) -> str:
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(open(stored, "rb").read())
    return str(copy)


def test_clusters_json_contract_out_and_reuse(capsys, db, tmp_path):
    out_pq = tmp_path / "clusters.parquet"
    code, out, err = run(capsys, "--db", db, "clusters", DOCS, "--out", str(out_pq), "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert list(obj)[:5] == ["method", "n_clusters", "noise", "seconds", "clusters"]
    assert obj["method"] == "leiden" and obj["reused"] is False and obj["noise"] == 0
    assert obj["text_column"] == "text" and obj["resolution"] == 1.0 and obj["min_size"] == 5
    assert len(obj["clusters"]) == obj["n_clusters"] >= 10
    first = obj["clusters"][0]
    assert set(first) == {"cluster", "size", "label", "keywords"} and first["cluster"] == 0
    sizes = [c["size"] for c in obj["clusters"]]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 2098
    assert set(first["label"].split(", ")) <= set(first["keywords"][:4])
    frame = pd.read_parquet(out_pq)
    assert list(frame.columns) == ["id", "cluster", "label"] and len(frame) == 2098
    assert frame["cluster"].value_counts().iloc[0] == sizes[0]
    assert set(frame.loc[frame["cluster"] == 0, "label"]) == {first["label"]}

    out_npy = tmp_path / "labels.npy"
    code, out, err = run(capsys, "--db", db, "clusters", "1", "--out", str(out_npy), "--json")
    again = json.loads(out)
    assert code == 0 and again["reused"] is True and again["clusters"] == obj["clusters"]
    labels = np.load(out_npy)
    assert labels.dtype == np.int32 and np.array_equal(labels, frame["cluster"].to_numpy())

    code, out, _ = run(capsys, "--db", db, "clusters", DOCS, "--resolution", "3", "--json")
    assert json.loads(out)["n_clusters"] > obj["n_clusters"]


def test_clusters_human_output(capsys, db):
    code, out, _ = run(capsys, "--db", db, "clusters", DOCS, "--min-size", "100")
    assert code == 0 and "clusters in 'stdlib docstrings" in out
    assert out.splitlines()[1].split()[0] == "0"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["clusters", "nope"], "no dataset"),
        (["clusters", DOCS, "--method", "kmeans"], "invalid choice"),
        (["clusters", DOCS, "--resolution", "0"], "resolution"),
        (["clusters", DOCS, "--resolution", "10.5"], "resolution"),
        (["clusters", DOCS, "--resolution", "nan"], "resolution"),
        (["clusters", DOCS, "--min-size", "0"], "min_size"),
        (["clusters", DOCS, "--min-size", "100001"], "min_size"),
        (["clusters", DOCS, "--seed", "2147483648"], "seed"),
        (["clusters", DOCS, "--text-column", "<b>x</b>"], "has no column"),
        (["clusters", DOCS, "--out", "x.csv"], ".npy or .parquet"),
        (["clusters", DOCS, "--out", "/no/such/dir/x.npy"], "directory"),
        (["clusters", DOCS, "--metric", "hamming"], "invalid choice"),
    ],
)
def test_clusters_bad_input_exits_2_and_changes_nothing(capsys, db, argv, message):
    with Store(db) as s:
        before = snapshot(s)
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err.lower() and len(err.splitlines()) == 1
    with Store(db) as s:
        assert snapshot(s) == before
