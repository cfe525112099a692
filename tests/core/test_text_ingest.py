"""A table of texts stored as a dataset: embedded at upload with the bundled model, equal to
sentence-transformers' vectors of the same texts; bad tables refused, the database unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import embscope
from embscope.core import text_ingest
from embscope.core.demo import STDLIB_NPZ
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.text_model import SUPPORTED_MODELS
from tests.helpers import snapshot

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module", autouse=True)
def _model_installed():
    for name in ("onnxruntime", "tokenizers", "onnx", SUPPORTED_MODELS[MODEL].package):
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def docs() -> tuple[pd.DataFrame, np.ndarray]:
    """300 stdlib docstrings and their vectors made by sentence-transformers (torch)."""
    with np.load(STDLIB_NPZ, allow_pickle=False) as z:
        pick = np.arange(0, 2098, 7)[:300]
        frame = pd.DataFrame(
            {
                "name": z["ids"].astype(str)[pick],
                "module": z["modules"].astype(str)[pick],
                "text": z["texts"].astype(str)[pick],
            }
        )
        return frame, z["vectors"].astype(np.float32)[pick]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".tsv"])
def test_texts_embedded_at_upload_equal_sentence_transformers(tmp_path, docs, suffix):
    frame, reference = docs
    path = tmp_path / f"docs{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    seen: list[float] = []
    with embscope.open(tmp_path / "t.duckdb") as db:
        ds = db.ingest(
            path, text_column="text", id_column="name",
            progress=lambda f, m: seen.append(f) or False,
        )  # fmt: skip
        assert (ds.n, ds.dim) == (300, 384)
        assert _cosines(ds.vectors(), reference).min() >= 0.999
        assert ds.info.info["model"] == MODEL and ds.info.info["text_column"] == "text"
        assert ds.info.metric == "cosine"
        assert list(ds.ids()[:2]) == frame["name"].tolist()[:2]
        assert ds.metadata()["module"].tolist() == frame["module"].tolist()
        # The text is searchable by meaning at once: the model is recorded.
        hits = ds.neighbours(text="open a socket connection", k=5)["neighbours"]
        found = set(ds.metadata().loc[[h["row"] for h in hits], "module"])
        assert found & {"socket", "ssl", "asyncio", "http", "smtplib", "ftplib", "imaplib"}
    assert seen == sorted(seen) and len(seen) >= 3  # progress moves forward


def test_a_one_column_file_of_texts_has_a_header_line(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text("sentence\nthe cat sat on the mat\na dog barked\nrain is falling\n")
    with embscope.open(tmp_path / "t.duckdb") as db:
        ds = db.ingest(path, text_column="sentence")
        assert ds.n == 3 and ds.metadata()["sentence"].tolist()[1] == "a dog barked"


@pytest.mark.parametrize(
    ("table", "column", "message"),
    [
        (pd.DataFrame({"text": ["a b", "c d"]}), "body", "has no column 'body'"),
        (pd.DataFrame({"text": ["a b", "c d"], "n": [1, 2]}), "n", "not text"),
        (pd.DataFrame({"text": ["a b", "  ", None, "x"]}), "text", "2 rows .* no text"),
        (pd.DataFrame({"text": pd.Series([], dtype=str)}), "text", "no rows|empty"),
    ],
)
def test_bad_tables_are_refused_and_nothing_is_stored(tmp_path, table, column, message):
    path = tmp_path / "bad.parquet"
    table.to_parquet(path)
    with embscope.open(tmp_path / "t.duckdb") as db:
        db.demo()
        before = snapshot(db.store)
        with pytest.raises(InvalidInputError, match=message):
            db.ingest(path, text_column=column)
        assert snapshot(db.store) == before


def test_bounds_options_and_cancel(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(40)]}).to_csv(path, index=False)
    with embscope.open(tmp_path / "t.duckdb") as db:
        monkeypatch.setattr(text_ingest, "MAX_TEXTS", 39)
        with pytest.raises(InvalidInputError, match="at most 39 texts"):
            db.ingest(path, text_column="text")
        monkeypatch.setattr(text_ingest, "MAX_TEXTS", 100_000)
        with pytest.raises(InvalidInputError, match="cannot embed"):
            db.ingest(path, text_column="text", model="openai/text-embedding-3-large")
        with pytest.raises(InvalidInputError, match="no metadata file or vector column"):
            db.ingest(path, text_column="text", metadata=path)
        with pytest.raises(OperationCancelled):
            db.ingest(path, text_column="text", progress=lambda f, m: f > 0.1)
        assert db.store.is_empty()


def test_the_command_line_embeds_a_table_of_texts(tmp_path, capsys, docs):
    from tests.helpers import run_cli

    frame, reference = docs
    path = tmp_path / "docs.csv"
    frame.head(50).to_csv(path, index=False)
    db = str(tmp_path / "cli.duckdb")
    code, out, err = run_cli(
        capsys, "--db", db, "ingest", str(path), "--text-column", "text", "--id-column", "name",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {
        "dataset": 1, "name": "docs", "n": 50, "dim": 384, "warnings": [], "model": MODEL
    }  # fmt: skip
    with embscope.open(db) as opened:
        assert _cosines(opened.dataset(1).vectors(), reference[:50]).min() >= 0.999
    for argv, message in (
        (["--text-column", "nope"], "has no column 'nope'"),
        (["--text-column", "text", "--metadata", str(path)], "no metadata file"),
        (["--text-column", "text", "--model", "nomic-embed"], "cannot embed"),
    ):
        code, out, err = run_cli(capsys, "--db", db, "ingest", str(path), *argv)
        assert code == 2 and out == "" and err.startswith("error: ") and message in err, err
    with embscope.open(db) as opened:
        assert len(opened.datasets()) == 1


def test_the_model_is_recognised_from_the_files_own_texts(docs):
    frame, reference = docs
    found = text_ingest.recognise_model(reference, frame)
    assert found is not None and found[:2] == (MODEL, "text") and found[2] >= 0.99
    # Other vectors of the same dimension (another model, or the rows out of order): no.
    shuffled = reference[np.random.default_rng(0).permutation(len(reference))]
    assert text_ingest.recognise_model(shuffled, frame) is None
    rng = np.random.default_rng(1)
    assert text_ingest.recognise_model(rng.standard_normal((300, 384)), frame) is None
    assert text_ingest.recognise_model(reference[:, :100], frame) is None  # another dimension
    assert text_ingest.recognise_model(reference, frame[["module"]].head(0)) is None
