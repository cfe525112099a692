"""`embscope project --preview [--sample N]`: the preview through the CLI, labelled in its
JSON and its text, refused with one error line where it cannot run."""

from __future__ import annotations

import json

import pytest

from embscope.core.demo import digits
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import run_cli, snapshot

N = 1797  # digits


@pytest.fixture
def db(tmp_path) -> str:
    path = tmp_path / "preview.duckdb"
    with Store(path) as s:
        store_demo_dataset(s, digits())
    return str(path)


def test_project_preview_json_and_text(capsys, db):
    argv = [
        "--db",
        db,
        "project",
        "digits",
        "--method",
        "largevis",
        "--preview",
        "--sample",
        "1000",
    ]
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    obj = json.loads(out)
    # The keys every projection has, in their order, then the preview's record.
    assert list(obj) == ["method", "dims", "seconds", "quality", "metric", "seed", "params",
                         "chosen", "reused", "dataset", "preview"]  # fmt: skip
    assert obj["preview"] == {"sample": 1000, "placed": N - 1000, "neighbours": 10,
                              "epochs": 30, "search": "exact"}  # fmt: skip
    assert obj["params"]["preview"] is True and obj["params"]["preview_sample"] == 1000
    assert obj["reused"] is False and "knn_preservation@10" in obj["quality"]

    code, out, err = run_cli(capsys, *argv)  # the same request: reused, labelled in words
    assert code == 0, err
    assert out.startswith("reused the stored LargeVis 2-D (")
    assert (
        "Preview: layout of a 1,000-point sample, the other 797 placed by their neighbours" in out
    )

    # Without --preview: the full layout, no preview record.
    code, out, err = run_cli(capsys, "--db", db, "project", "digits", "--method", "umap", "--json")
    assert code == 0, err
    full = json.loads(out)
    assert full["preview"] is None and "preview" not in full["params"]


def test_a_sample_of_every_point_is_the_full_layout(capsys, db):
    code, out, err = run_cli(
        capsys, "--db", db, "project", "digits", "--method", "umap", "--preview", "--sample",
        "5000", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    assert obj["preview"] is None and "preview" not in obj["params"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "largevis", "--sample", "1000"], "add --preview"),
        (["--method", "pca", "--preview"], "largevis or umap, not pca"),
        (["--method", "heatgeo", "--preview"], "largevis or umap, not heatgeo"),
        (["--method", "largevis", "--preview", "--sample", "10"], "preview_sample"),
        (["--method", "umap", "--preview", "--sample", "300000"], "preview_sample"),
        (["--method", "umap", "--preview", "--sample", "x"], "invalid int"),
        (["--method", "umap", "--param", "preview=maybe"], "true or false"),
    ],
)
def test_bad_preview_input_exits_2_and_changes_nothing(capsys, db, argv, message):
    with Store(db) as s:
        before = snapshot(s)
    code, out, err = run_cli(capsys, "--db", db, "project", "digits", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    with Store(db) as s:
        assert snapshot(s) == before
