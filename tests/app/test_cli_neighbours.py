"""The `embscope graph` and `embscope neighbours` contracts: JSON keys, self left out, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embscope.core.store import Store
from tests.helpers import make_parsed, run_cli, snapshot

run = run_cli


@pytest.fixture
def db(tmp_path) -> str:
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((400, 12)) + rng.integers(0, 4, 400)[:, None] * 3).astype(np.float32)
    ids = np.array([f"p{i}" for i in range(400)], dtype=object)
    path = tmp_path / "cli.duckdb"
    with Store(path) as s:
        s.add_dataset(make_parsed(X, ids=ids), name="points")
    np.save(tmp_path / "q.npy", X[7])
    np.save(tmp_path / "q2.npy", X[:2])
    np.save(tmp_path / "short.npy", X[7, :5])
    np.save(tmp_path / "huge.npy", X[7] * np.float32(1e30))  # finite, but its square is not
    return str(path)


def test_graph_json_contract_and_reuse(capsys, db):
    code, out, err = run(capsys, "--db", db, "graph", "points", "-k", "15", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert {"k", "metric", "method", "recall", "seconds"} <= set(obj)
    assert obj["k"] == 15 and obj["metric"] == "cosine" and obj["method"] == "exact"
    assert obj["recall"] == 1.0 and obj["seconds"] >= 0 and obj["reused"] is False
    assert obj["stored_k"] == 150
    code, out, _ = run(capsys, "--db", db, "graph", "points", "-k", "30", "--json")
    assert json.loads(out)["reused"] is True and json.loads(out)["k"] == 30
    code, out, _ = run(capsys, "--db", db, "graph", "1", "--metric", "l2", "--json")
    obj = json.loads(out)
    assert obj["metric"] == "l2" and obj["reused"] is False and obj["k"] == 150


def test_graph_human_output(capsys, db):
    code, out, _ = run(capsys, "--db", db, "graph", "points", "-k", "5")
    assert code == 0 and "150-NN cosine graph of 'points'" in out


@pytest.mark.parametrize(
    "query",
    [["--row", "7"], ["--id", "p7"]],
)
def test_neighbours_json_contract_self_left_out(capsys, db, query):
    code, out, err = run(capsys, "--db", db, "neighbours", "points", *query, "-k", "6", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj) == {"neighbours", "latency_ms", "backend"}
    assert obj["backend"] == "hnsw" and obj["latency_ms"] > 0
    assert len(obj["neighbours"]) == 6
    assert all(set(n) == {"row", "id", "distance"} for n in obj["neighbours"])
    assert 7 not in [n["row"] for n in obj["neighbours"]]
    distances = [n["distance"] for n in obj["neighbours"]]
    assert distances == sorted(distances)
    assert all(n["id"] == f"p{n['row']}" for n in obj["neighbours"])


def test_neighbours_vector_file_and_exact(capsys, db, tmp_path):
    code, out, err = run(
        capsys, "--db", db, "neighbours", "points", "--vector-file", str(tmp_path / "q.npy"),
        "--backend", "exact", "--metric", "l2", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    assert obj["backend"] == "exact" and obj["neighbours"][0]["row"] == 7
    assert obj["neighbours"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    code, out, err = run(
        capsys, "--db", db, "neighbours", "points", "--row", "3", "--exact", "--ef", "5", "--json"
    )
    obj = json.loads(out)
    assert {"neighbours", "latency_ms", "backend", "exact", "recall"} <= set(obj)
    assert 0 <= obj["recall"] <= 1 and len(obj["exact"]) == 10
    assert 3 not in [n["row"] for n in obj["exact"]]


def test_neighbours_human_output(capsys, db):
    code, out, _ = run(
        capsys, "--db", db, "neighbours", "points", "--id", "p1", "-k", "3", "--exact"
    )
    assert code == 0
    assert "3 nearest neighbours of row 1 (id p1)" in out and "recall@3" in out


@pytest.mark.parametrize("method", ["csls", "mp"])
def test_neighbours_with_hubness_reduction(capsys, db, method):
    """Each neighbour gains its score, the distance stays the true one, the top level names
    the reduction; the exact answer is re-ranked the same way."""
    code, out, err = run(
        capsys, "--db", db, "neighbours", "points", "--row", "7", "-k", "5", "--metric", "l2",
        "--hubness-reduction", method, "--exact", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    assert obj["hubness_reduction"] == method and len(obj["neighbours"]) == 5
    assert all(set(n) == {"row", "id", "distance", "score"} for n in obj["neighbours"])
    assert all(set(n) == {"row", "id", "distance", "score"} for n in obj["exact"])
    with Store(db) as s:
        X = s.load_vectors(1).astype(np.float64)
    for n in obj["neighbours"]:
        assert n["distance"] == pytest.approx(np.linalg.norm(X[7] - X[n["row"]]), rel=1e-5)
    scores = [n["score"] for n in obj["neighbours"]]
    assert scores == sorted(scores, reverse=True) and 7 not in [n["row"] for n in obj["exact"]]
    code, out, _ = run(
        capsys, "--db", db, "neighbours", "points", "--row", "7", "-k", "3",
        "--hubness-reduction", method,
    )  # fmt: skip
    assert code == 0 and f"hubs reduced: {method}" in out and "score" in out
    code, out, _ = run(
        capsys, "--db", db, "neighbours", "points", "--row", "7", "--hubness-reduction", "none",
        "--json",
    )  # fmt: skip
    assert set(json.loads(out)) == {"neighbours", "latency_ms", "backend"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["neighbours", "points"], "one of the arguments"),
        (["neighbours", "points", "--row", "1", "--id", "p1"], "not allowed with"),
        (["neighbours", "points", "--row", "400"], "outside the dataset"),
        (["neighbours", "points", "--id", "nope"], "no item with id"),
        (["neighbours", "points", "--row", "1", "-k", "400"], "more neighbours"),
        (["neighbours", "points", "--row", "1", "-k", "0"], "at least 1"),
        (["neighbours", "points", "--vector-file", "missing.npy"], "no such vector file"),
        (["neighbours", "points", "--vector-file", "{tmp}/short.npy"], "dimension"),
        (["neighbours", "points", "--vector-file", "{tmp}/q2.npy"], "one vector"),
        (["neighbours", "points", "--text", "hello"], "does not record which model"),
        (["neighbours", "points", "--row", "1", "--metric", "dot"], "invalid choice"),
        (["neighbours", "nope", "--row", "1"], "no dataset"),
        (["neighbours", "points", "--row", "1", "--ef", "0"], "ef must be"),
        (["neighbours", "points", "--row", "1", "--ef", "4097"], "ef must be between 1 and 4096"),
        (["neighbours", "points", "--row", "1", "--ef", "1" + "0" * 30], "ef must be"),
        (["neighbours", "points", "--vector-file", "{tmp}/huge.npy"], "too large"),
        (["neighbours", "points", "--row", "1", "--hubness-reduction", "qbnorm"], "csls"),
        (["neighbours", "points", "--row", "1", "--hubness-reduction", ""], "invalid choice"),
        (["neighbours", "points", "--row", "1", "--hubness-reduction", "mp", "--ef", "0"], "ef"),
        (["graph", "points", "-k", "400"], "more neighbours"),
        (["graph", "nope"], "no dataset"),
    ],
)
def test_bad_input_exits_2_with_one_error_line_and_changes_nothing(
    capsys, db, tmp_path, args, message
):
    with Store(db) as s:
        before = snapshot(s)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = run(capsys, "--db", db, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    with Store(db) as s:
        assert snapshot(s) == before


def test_ingest_with_model_enables_text_queries(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    from embscope.core.demo import stdlib_docstrings

    demo = stdlib_docstrings()
    path = tmp_path / "minilm.npy"
    np.save(path, demo.vectors)
    db = str(tmp_path / "text.duckdb")
    code, out, err = run(
        capsys, "--db", db, "ingest", str(path), "--model", "all-MiniLM-L6-v2", "--json"
    )
    assert code == 0, err
    code, out, err = run(
        capsys, "--db", db, "neighbours", "minilm", "--text", "Serialize obj to a JSON formatted str",
        "-k", "3", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = [n["row"] for n in json.loads(out)["neighbours"]]
    assert demo.metadata["module"].iloc[rows[0]] == "json"
    with Store(db) as s:
        assert s.get_dataset("minilm").info["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_filter_nothing_matches_with_exact_answers_empty_and_distances_are_never_negative(
    capsys, tmp_path
):
    """An empty filter with --exact is an empty answer (recall null), not an error; a vector
    and its duplicate are at distance 0, never -1.2e-7 (float32 rounding of 1 - cos)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    X[1] = X[0]
    path = tmp_path / "dup.duckdb"
    meta = pd.DataFrame({"group": ["a"] * 300})
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="dup")
    args = ["--db", str(path), "neighbours", "dup", "--row", "0", "--exact", "--json"]
    code, out, err = run(capsys, *args, "--filter", "group=b")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["neighbours"] == [] and obj["exact"] == [] and obj["recall"] is None
    for backend in ("hnsw", "exact"):
        code, out, err = run(capsys, *args, "--backend", backend)
        obj = json.loads(out)
        assert obj["neighbours"][0]["row"] == 1 and obj["neighbours"][0]["distance"] == 0.0
        assert min(n["distance"] for n in obj["neighbours"] + obj["exact"]) >= 0.0
