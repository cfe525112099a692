"""The `embscope project` contract: JSON keys, --out in row order, exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embscope.core.demo import digits
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import run_cli, snapshot

run = run_cli


@pytest.fixture
def db(tmp_path) -> str:
    path = tmp_path / "project.duckdb"
    with Store(path) as s:
        store_demo_dataset(s, digits())
    return str(path)


def test_project_json_contract_out_and_reuse(capsys, db, tmp_path):
    out_npy = tmp_path / "xy.npy"
    code, out, err = run(
        capsys, "--db", db, "project", "digits", "--method", "pca", "--out", str(out_npy), "--json"
    )
    assert code == 0, err
    obj = json.loads(out)
    assert {"method", "dims", "seconds", "quality"} <= set(obj)
    assert obj["method"] == "pca" and obj["dims"] == 2 and obj["reused"] is False
    assert obj["chosen"] == {}  # PCA chooses nothing (heat-geodesic records its tau)
    assert {"trustworthiness@10", "continuity@10", "knn_preservation@10"} <= set(obj["quality"])
    assert "knn_accuracy@10" in obj["quality"]  # digits records its label column
    coords = np.load(out_npy)
    assert coords.shape == (1797, 2) and coords.dtype == np.float32

    out_pq = tmp_path / "xyz.parquet"
    code, out, err = run(
        capsys, "--db", db, "project", "1", "--method", "pca", "--dims", "3",
        "--out", str(out_pq), "--json",
    )  # fmt: skip
    assert code == 0, err
    frame = pd.read_parquet(out_pq)
    assert list(frame.columns) == ["id", "x", "y", "z"]
    assert frame["id"].tolist()[:2] == ["digit-0", "digit-1"]  # row order

    code, out, _ = run(capsys, "--db", db, "project", "digits", "--method", "pca", "--json")
    again = json.loads(out)
    assert again["reused"] is True and again["quality"] == obj["quality"]


def test_project_label_column_scores_that_column(capsys, db):
    code, out, err = run(
        capsys, "--db", db, "project", "digits", "--method", "pca",
        "--label-column", "label", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert 0.5 < json.loads(out)["quality"]["knn_accuracy@10"] < 0.72


def test_project_human_output(capsys, db):
    code, out, _ = run(capsys, "--db", db, "project", "digits", "--method", "pca")
    assert code == 0 and "PCA 2-D of 'digits'" in out and "trustworthiness@10" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["project", "digits", "--method", "tsne"], "invalid choice"),
        (["project", "digits", "--method", "pca", "--dims", "4"], "invalid choice"),
        (["project", "nope", "--method", "pca"], "no dataset"),
        (["project", "digits", "--method", "pca", "--out", "x.csv"], ".npy or .parquet"),
        (["project", "digits", "--method", "pca", "--out", "/no/such/dir/x.npy"], "directory"),
        (["project", "digits", "--method", "pca", "--label-column", "nope"], "no metadata column"),
        (["project", "digits", "--method", "umap", "--param", "perplexity=3"], "no parameter"),
        (["project", "digits", "--method", "umap", "--param", "oops"], "name=value"),
        (["project", "digits", "--method", "pca", "--seed", "-1"], "seed"),
        # Bounded work: the method's parameter table (digits has 1,797 items).
        (["project", "digits", "--method", "umap", "--param", "n_neighbors=1796"], "n_neighbors"),
        (["project", "digits", "--method", "largevis", "--param", "negatives=21"], "negatives"),
        (["project", "digits", "--method", "largevis", "--param", "gamma=nan"], "gamma"),
        (["project", "digits", "--method", "umap", "--param", "n_epochs=5000"], "n_epochs"),
        (["project", "digits", "--method", "heatgeo", "--param", "knn=auto"], "knn"),
        (["project", "digits", "--method", "pca", "--seed", "2147483648"], "seed"),
        (["project", "digits", "--method", "umap", "--param", "n_neighbors=" + "5" * 5000], "n_n"),
        (["project", "digits", "--method", "umap", "--param", "n_neighbors=" + "[" * 999], "n_n"),
    ],
)
def test_project_bad_input_exits_2_and_changes_nothing(capsys, db, argv, message):
    with Store(db) as s:
        before = snapshot(s)
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err.lower() and len(err.splitlines()) == 1
    with Store(db) as s:
        assert snapshot(s) == before
