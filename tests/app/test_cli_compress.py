"""The `embscope compress` and `embscope compare` contracts: JSON keys, saved copies, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embscope.core.demo import gaussian_mixture
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import run_cli, snapshot

run = run_cli
ROW_KEYS = {
    "codec", "bytes_per_vector", "shared_bytes", "recall@10", "recall@10_rescored", "spearman",
    "encode_seconds",
}  # fmt: skip


@pytest.fixture
def db(tmp_path) -> str:
    path = tmp_path / "compress.duckdb"
    with Store(path) as s:
        store_demo_dataset(s, gaussian_mixture(1500, 48, 6, seed=0), name="gm")
    return str(path)


def test_compress_default_set_json_contract(capsys, db):
    code, out, err = run(capsys, "--db", db, "compress", "gm", "--queries", "100", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) >= 9
    assert all(ROW_KEYS <= set(r) for r in rows)
    by = {r["codec"]: r for r in rows}
    assert {"float16", "int8", "binary"} <= set(by)
    assert by["float16"]["bytes_per_vector"] == 2 * 48 and by["binary"]["bytes_per_vector"] == 6
    assert by["int8"]["bytes_per_vector"] == 48 and by["int8"]["shared_bytes"] == 2 * 48 * 4
    assert by["float16"]["recall@10"] > 0.98 and by["int8"]["recall@10"] > 0.9
    assert by["binary"]["recall@10_rescored"] >= by["binary"]["recall@10"]
    # each recall's 95 % interval beside it, under its own key + "_ci"
    for row in rows:
        for key in ("recall@10", "recall@10_rescored", "recall@100"):  # 1,499 candidates
            lo, hi = row[f"{key}_ci"]
            assert lo <= row[key] <= hi
    # re-ranked: the bytes held, code + float32 (4·48) or the codec's own second level
    assert by["int8"]["bytes_per_vector_rescored"] == 48 + 4 * 48
    assert by["int8"]["rerank_bytes_per_vector"] == 4 * 48
    lvq = by["lvq:4x8"]
    assert lvq["first_stage"] == "lvq:4 (first level)"
    assert lvq["rescored_with"] == "two-level lvq:4x8"
    assert lvq["bytes_per_vector_rescored"] == lvq["bytes_per_vector"] == 24 + 48 + 4
    # geometry of a reduced copy beside the float32 top-k principal components
    pca = by["pca:16"]
    assert pca["geometry_reference"] == "float32, top 16 principal components"
    assert pca["effective_rank"] <= 16 and pca["reference_effective_rank"] <= 16
    assert by["int8"]["geometry_reference"] == "float32"


def test_compress_chosen_codecs_save_copies_and_compare_them(capsys, db):
    code, out, err = run(
        capsys, "--db", db, "compress", "gm", "--codec", "int8", "--codec", "pca:12",
        "--queries", "50", "-k", "5", "--rescore", "2", "--save", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert [r["codec"] for r in rows] == ["int8", "pca:12"]
    assert "recall@5" in rows[0] and "recall@5_rescored" in rows[0]
    # the geometry of each compressed copy: PCA-12 keeps 12 dimensions, so a rank of <= 12
    assert [r["dim"] for r in rows] == [48, 12]
    assert all(0.0 <= r["isoscore"] <= 1.0 for r in rows)
    assert rows[1]["effective_rank"] <= 12 < rows[0]["effective_rank"]
    with Store(db) as s:
        pca_copy = s.get_dataset(rows[1]["saved_dataset"])
        assert pca_copy.dim == 12 and pca_copy.n == 1500
        int8_copy = s.get_dataset(rows[0]["saved_dataset"])
        assert int8_copy.dim == 48
    code, out, err = run(
        capsys, "--db", db, "compare", "gm", str(int8_copy.id), "--json"
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    assert {"matched", "knn_overlap@10", "cka", "cka_debiased", "cka_null"} <= set(obj)
    assert obj["matched"] == 1500 and obj["knn_overlap@10"] > 0.85 and obj["cka"] > 0.99
    assert obj["cka_debiased"] >= 0.98 and obj["cka"] > obj["cka_null"] + 0.5
    code, out, err = run(capsys, "--db", db, "compare", "gm", str(int8_copy.id))
    assert code == 0, err
    line = next(x for x in out.splitlines() if "linear CKA" in x)
    assert f"linear CKA      {obj['cka']:.4f}   (debiased {obj['cka_debiased']:.4f}, " in line
    assert f"chance 95% {obj['cka_null']:.4f}; on 1500 items)" in line


def test_compare_with_itself_is_identical(capsys, db):
    code, out, err = run(capsys, "--db", db, "compare", "gm", "gm", "-k", "7", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["knn_overlap@7"] == 1.0 and obj["cka"] == pytest.approx(1.0)
    assert obj["cka_debiased"] == pytest.approx(1.0) and obj["cka_null"] < 0.5


def test_compress_human_output(capsys, db):
    code, out, _ = run(capsys, "--db", db, "compress", "gm", "--codec", "lvq:8", "--queries", "20")
    assert code == 0 and "lvq:8" in out and "recall@10" in out
    assert "isoscore" in out and "(float32: isoscore 0." in out
    assert "± half its 95 % interval" in out and " ± " in out.splitlines()[3]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compress", "gm", "--codec", "bogus"], "bad codec spec"),
        (["compress", "gm", "--codec", "pq:7"], "not divisible"),
        (["compress", "nope"], "no dataset"),
        (["compress", "gm", "--queries", "0"], "queries"),
        (["compress", "gm", "-k", "0"], "k"),
        (["compare", "gm", "nope"], "no dataset"),
        (["compare", "gm"], "required"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(capsys, db, argv, message):
    with Store(db) as s:
        before = snapshot(s)
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err.lower() and len(err.splitlines()) == 1
    with Store(db) as s:
        assert snapshot(s) == before


def test_compare_unmatched_ids_exits_2(capsys, db, tmp_path):
    from tests.helpers import make_parsed

    with Store(db) as s:
        rng = np.random.default_rng(0)
        ids = np.array([f"other{i}" for i in range(50)], dtype=object)
        s.add_dataset(make_parsed(rng.standard_normal((50, 4)).astype(np.float32), ids=ids),
                      name="strangers")  # fmt: skip
    code, _, err = run(capsys, "--db", db, "compare", "gm", "strangers")
    assert code == 2 and "occur among" in err


def test_default_set_leaves_out_codecs_that_cannot_serve_the_metric(capsys, db):
    code, out, err = run(
        capsys, "--db", db, "compress", "gm", "--metric", "l2", "--queries", "30", "--json"
    )
    assert code == 0, err
    codecs = [r["codec"] for r in json.loads(out)]
    assert "binary" not in codecs and "int8" in codecs
    code, _, err = run(capsys, "--db", db, "compress", "gm", "--metric", "l2", "--codec", "binary")
    assert code == 2 and "does not support metric 'l2'" in err
