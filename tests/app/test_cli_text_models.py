"""The second text model from the command line: a table of texts embedded with WordLlama
(``ingest --text-column --model``), searched by text with the same model, and the same table
embedded by both models compared item for item."""

from __future__ import annotations

import json

import numpy as np
import pytest

import embscope
from embscope.core.demo import stdlib_docstrings
from embscope.core.store import Store
from embscope.core.text_model import load_text_encoder, text_model_status
from tests.helpers import run_cli, snapshot

WORDLLAMA = "wordllama/l2_supercat_256"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MARKUP = "<b>bold</b> & <i>italic</i> <script>alert(1)</script>"


def _need(model: str) -> None:
    ok, reason = text_model_status(model)
    if not ok:
        pytest.skip(reason)


@pytest.fixture
def table(tmp_path):
    """Every json docstring and 100 others (seeded), and one text of markup, as a CSV."""
    docs = stdlib_docstrings().metadata
    rng = np.random.default_rng(20261208)
    others = rng.choice(np.flatnonzero(docs["module"] != "json"), 100, replace=False)
    rows = np.concatenate([np.flatnonzero(docs["module"] == "json"), others])
    frame = docs.iloc[np.sort(rows)][["id", "module", "text"]].reset_index(drop=True)
    frame.loc[len(frame)] = ["markup.example", "markup", MARKUP]
    path = tmp_path / "docs.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_ingest_with_wordllama_records_it_and_text_queries_use_it(capsys, tmp_path, table):
    _need(WORDLLAMA)
    path, frame = table
    db = str(tmp_path / "wl.duckdb")
    code, out, err = run_cli(
        capsys, "--db", db, "ingest", str(path), "--text-column", "text", "--id-column", "id",
        "--model", "l2_supercat_256", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {
        "dataset": 1, "name": "docs", "n": len(frame), "dim": 256, "warnings": [],
        "model": WORDLLAMA,
    }  # fmt: skip
    encoder = load_text_encoder(WORDLLAMA)
    with embscope.open(db) as opened:
        ds = opened.dataset("docs")
        assert ds.info.info["model"] == WORDLLAMA and ds.info.info["text_column"] == "text"
        stored = ds.vectors()
        np.testing.assert_allclose(stored, encoder.encode(frame["text"].tolist()), atol=1e-6)
        assert ds.metadata()["text"].tolist() == frame["text"].tolist()  # markup kept as is

    # A text query is embedded by the dataset's own model (256-d): json docstrings first.
    code, out, err = run_cli(
        capsys, "--db", db, "neighbours", "docs", "--text",
        "Serialize obj to a JSON formatted str", "-k", "5", "--exact", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = [n["row"] for n in json.loads(out)["neighbours"]]
    assert (frame["module"].iloc[rows] == "json").sum() >= 3, frame["module"].iloc[rows]
    q = encoder.encode(["Serialize obj to a JSON formatted str"])[0]
    assert rows == np.argsort(-(stored @ q))[:5].tolist()

    # Markup in a query is text: it finds the row holding the same markup, whose id and text
    # come back verbatim.
    code, out, err = run_cli(
        capsys, "--db", db, "neighbours", "docs", "--text", MARKUP, "-k", "1", "--json"
    )
    assert code == 0, err
    [hit] = json.loads(out)["neighbours"]
    assert hit["id"] == "markup.example" and hit["distance"] == pytest.approx(0, abs=1e-5)
    with embscope.open(db) as opened:
        assert opened.dataset("docs").metadata()["text"].iloc[hit["row"]] == MARKUP


def test_an_unknown_model_name_is_refused_and_nothing_is_stored(capsys, tmp_path, table):
    path, _ = table
    db = str(tmp_path / "none.duckdb")
    with Store(db) as s:
        before = snapshot(s)
    code, out, err = run_cli(
        capsys, "--db", db, "ingest", str(path), "--text-column", "text", "--model", "wordllama"
    )
    assert code == 2 and out == "" and err.startswith("error: cannot embed"), err
    assert MINILM in err and WORDLLAMA in err  # the names that would work
    with Store(db) as s:
        assert snapshot(s) == before


def test_the_same_texts_embedded_by_both_models_compare(capsys, tmp_path, table):
    _need(WORDLLAMA)
    _need(MINILM)
    path, frame = table
    db = str(tmp_path / "both.duckdb")
    for name, model in (("by minilm", MINILM), ("by wordllama", WORDLLAMA)):
        code, _, err = run_cli(
            capsys, "--db", db, "ingest", str(path), "--text-column", "text", "--id-column", "id",
            "--model", model, "--name", name,
        )  # fmt: skip
        assert code == 0, err
    code, out, err = run_cli(
        capsys, "--db", db, "compare", "by minilm", "by wordllama", "-k", "10", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["matched"] == len(frame) and result["only_a"] == result["only_b"] == 0
    # Two different models over the same texts: related (well above chance), not the same.
    assert result["chance_overlap@10"] < result["knn_overlap@10"] < 0.9
    assert 0 < result["cka"] < 1
    with embscope.open(db) as opened:
        dims = {d["name"]: d["dim"] for d in opened.datasets()}
    assert dims == {"by minilm": 384, "by wordllama": 256}
