"""The `embscope` CLI contract: commands, flags, JSON keys, exit status 2 with `error:`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embscope.core.store import Store
from tests.helpers import run_cli, snapshot

ROOT = Path(__file__).resolve().parents[2]


run = run_cli


@pytest.fixture
def npy(tmp_path) -> Path:
    X = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    path = tmp_path / "vecs.npy"
    np.save(path, X)
    return path


def test_ingest_json_contract(capsys, tmp_path, npy):
    db = str(tmp_path / "c.duckdb")
    code, out, err = run(capsys, "--db", db, "ingest", str(npy), "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj) == {"dataset", "name", "n", "dim", "warnings"}
    assert obj["name"] == "vecs" and obj["n"] == 50 and obj["dim"] == 8
    assert isinstance(obj["dataset"], int) and obj["warnings"] == []


def test_datasets_json_and_db_after_command(capsys, tmp_path, npy):
    db = str(tmp_path / "c.duckdb")
    assert run(capsys, "ingest", str(npy), "--name", "first", "--db", db)[0] == 0
    code, out, _ = run(capsys, "datasets", "--json", "--db", db)
    assert code == 0
    rows = json.loads(out)
    # 8 features: l2 is guessed and recorded.
    assert rows == [{"dataset": 1, "name": "first", "n": 50, "dim": 8, "metric": "l2"}]


def test_the_metric_is_chosen_or_guessed_at_ingest_and_becomes_the_default(capsys, tmp_path):
    from embscope.core.store import Store

    rng = np.random.default_rng(0)
    db = str(tmp_path / "m.duckdb")
    files = {
        "cloud": rng.random((60, 3)),  # coordinates: l2
        "unit": (u := rng.standard_normal((60, 8))) / np.linalg.norm(u, axis=1, keepdims=True),
        "emb": rng.standard_normal((60, 32)),  # embedding-like: cosine
    }
    for name, X in files.items():
        np.save(tmp_path / f"{name}.npy", X.astype(np.float32))
        assert run(capsys, "ingest", str(tmp_path / f"{name}.npy"), "--db", db)[0] == 0
    np.save(tmp_path / "chosen.npy", files["emb"].astype(np.float32))
    code, _, err = run(capsys, "ingest", str(tmp_path / "chosen.npy"), "--metric", "ip", "--db", db)
    assert code == 0, err
    rows = {
        r["name"]: r["metric"] for r in json.loads(run(capsys, "datasets", "--json", "--db", db)[1])
    }
    assert rows == {"cloud": "l2", "unit": "cosine", "emb": "cosine", "chosen": "ip"}
    with Store(db) as s:
        reasons = {d.name: d.info["metric_reason"] for d in s.list_datasets()}
    assert "coordinates" in reasons["cloud"] and reasons["chosen"] == "chosen at upload"
    # Later commands default to it: the graph of the point cloud is l2, of "chosen" ip.
    for name, metric in (("cloud", "l2"), ("chosen", "ip")):
        code, out, err = run(capsys, "graph", name, "-k", "5", "--json", "--db", db)
        assert code == 0 and json.loads(out)["metric"] == metric, err
    code, out, _ = run(capsys, "neighbours", "cloud", "--row", "0", "--db", db)
    assert "l2" in out.splitlines()[0]
    # The scorecard is defined for cosine and l2: an ip dataset is scored with cosine.
    code, out, err = run(capsys, "geometry", "chosen", "--json", "--db", db)
    assert code == 0 and json.loads(out)["metric"] == "cosine", err
    code, _, err = run(capsys, "ingest", str(tmp_path / "emb.npy"), "--metric", "dot", "--db", db)
    assert code == 2 and "error" in err


def test_env_var_selects_database(capsys, tmp_path, npy, monkeypatch):
    monkeypatch.setenv("EMBSCOPE_DB", str(tmp_path / "env.duckdb"))
    assert run(capsys, "ingest", str(npy))[0] == 0
    assert (tmp_path / "env.duckdb").exists()


def test_ingest_with_metadata_and_id_column(capsys, tmp_path, npy):
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"key": [f"k{i}" for i in range(50)], "label": np.arange(50) % 3}).to_csv(
        meta, index=False
    )
    db = tmp_path / "c.duckdb"
    code, out, err = run(
        capsys,
        "--db",
        str(db),
        "ingest",
        str(npy),
        "--metadata",
        str(meta),
        "--id-column",
        "key",
        "--json",
    )
    assert code == 0, err
    with Store(db) as s:
        assert list(s.load_ids(1)[:2]) == ["k0", "k1"]
        assert list(s.load_metadata(1)["label"][:4]) == [0, 1, 2, 0]


def test_export_round_trips(capsys, tmp_path, npy):
    db = str(tmp_path / "c.duckdb")
    run(capsys, "--db", db, "ingest", str(npy), "--name", "x")
    out_npy = tmp_path / "out.npy"
    assert run(capsys, "--db", db, "export", "x", "--out", str(out_npy))[0] == 0
    np.testing.assert_array_equal(np.load(out_npy, allow_pickle=False), np.load(npy))
    out_pq = tmp_path / "out.parquet"
    assert run(capsys, "--db", db, "export", "1", "--out", str(out_pq))[0] == 0
    table = pq.read_table(out_pq)
    assert table.column_names[:2] == ["id", "vector"]
    np.testing.assert_array_equal(
        np.array(table.column("vector").to_pylist(), np.float32), np.load(npy)
    )
    # and the exported parquet ingests back to the same vectors
    code, out, err = run(capsys, "--db", db, "ingest", str(out_pq), "--name", "again", "--json")
    assert code == 0, err
    with Store(db) as s:
        np.testing.assert_array_equal(s.load_vectors(json.loads(out)["dataset"]), np.load(npy))


def test_delete(capsys, tmp_path, npy):
    db = str(tmp_path / "c.duckdb")
    run(capsys, "--db", db, "ingest", str(npy), "--name", "x")
    assert run(capsys, "--db", db, "delete", "x")[0] == 0
    assert json.loads(run(capsys, "--db", db, "datasets", "--json")[1]) == []


@pytest.mark.parametrize(
    "argv_tail, match",
    [
        (["ingest", "missing.npy"], "no such file"),
        (["ingest", "{bad}"], "NaN"),
        (["export", "nope", "--out", "x.npy"], "no dataset"),
        (["export", "1", "--out", "{tmp}/x.xlsx"], ".npy"),
        (["delete", "42"], "no dataset"),
        (["ingest"], "required"),
        (["frobnicate"], "invalid choice"),
        (["ingest", "{npy}", "--name", "taken"], "already exists"),
        (["diagnostics", "taken", "--ef", "10,x"], "whole numbers"),
        (["diagnostics", "taken", "--ef", "0"], "every ef"),
        (["diagnostics", "taken", "--seeds", "0"], "seeds must be"),
        (["diagnostics", "taken", "--queries", "50"], "fewer than k"),
        (["diagnostics", "taken", "-k", "201"], "k must be"),
        (["diagnostics", "taken", "--label-column", "nope"], "no metadata column"),
    ],
)
def test_bad_input_exit_2_one_error_line_db_unchanged(capsys, tmp_path, npy, argv_tail, match):
    db = tmp_path / "c.duckdb"
    run(capsys, "--db", str(db), "ingest", str(npy), "--name", "taken")
    bad = tmp_path / "bad.npy"
    X = np.ones((4, 3), np.float32)
    X[2, 1] = np.nan
    np.save(bad, X)
    with Store(db) as s:
        before = snapshot(s)
    argv = [a.format(bad=bad, npy=npy, tmp=tmp_path) for a in argv_tail]
    code, out, err = run(capsys, "--db", str(db), *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0]
    assert "Traceback" not in err
    with Store(db) as s:
        assert snapshot(s) == before


def test_console_script_subprocess(tmp_path, npy):
    """The installed console script behaves the same (exit status, stderr) as main()."""
    exe = Path(sys.executable).parent / "embscope"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embscope.app.cli"]
    db = str(tmp_path / "c.duckdb")
    ok = subprocess.run(
        [*cmd, "--db", db, "ingest", str(npy), "--json"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["n"] == 50
    bad = subprocess.run(
        [*cmd, "--db", db, "ingest", str(tmp_path / "nope.csv")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stdout == ""


def test_diagnostics_json_contract(capsys, tmp_path):
    """``embscope diagnostics --json`` keys (the issue's contract), held-out queries."""
    X = np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32)
    np.save(tmp_path / "d.npy", X)
    db = str(tmp_path / "d.duckdb")
    run(capsys, "--db", db, "ingest", str(tmp_path / "d.npy"), "--name", "d")
    argv = ["--db", db, "diagnostics", "d", "--ef", "10,40", "--queries", "50", "--seeds", "2"]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert {"queries", "n_queries", "k", "index", "recall_vs_ef", "recall_lid_spearman",
            "insertion_order"} <= set(obj)  # fmt: skip
    assert obj["queries"] == "held-out" and obj["n_queries"] == 50 and obj["k"] == 10
    assert obj["index"] == {"M": 16, "ef_construction": 200}
    assert [r["ef"] for r in obj["recall_vs_ef"]] == [10, 40]
    assert {"ef", "recall", "recall_ci", "p50_ms", "p99_ms"} <= set(obj["recall_vs_ef"][0])
    assert {"order", "recall_mean", "recall_sd", "seeds"} <= set(obj["insertion_order"][0])
    assert obj["insertion_order"][0]["seeds"] == 2
    # The text form reads the stored result back.
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "held-out queries" in out and "over 2 seeds" in out
