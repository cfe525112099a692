"""The static sentence model (WordLlama) against the wordllama package's own embeddings, and the
registry of text models: both listed, names, what is said when something is missing."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from embscope.core.demo import stdlib_docstrings
from embscope.core.errors import InvalidInputError
from embscope.core.text_model import (
    SUPPORTED_MODELS,
    StaticTextEncoder,
    canonical_model_name,
    load_text_encoder,
    text_model_status,
)
from embscope.core.text_static import embedding_table, mean_pool
from tests.helpers import assert_same_from_threads

WORDLLAMA = "wordllama/l2_supercat_256"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# Texts beyond the docstrings: markup, code, numbers, accents, other scripts, emoji, inner
# runs of spaces, one character.
VARIED = [
    "<b>x</b>",
    "<script>alert('hi')</script> & &amp; &lt;tag&gt;",
    "SELECT * FROM users WHERE id = 42; -- comment",
    "def f(x):\n    return x ** 2  # square",
    "ünïcødé ✓ naïve café résumé",
    "Ελληνικά και русский текст",
    "日本語のテキストと中文文本",
    "emoji 🚀🔥 and ☃",
    "3.14159 2.71828 1e-12 -0 +inf NaN",
    "many     spaces\tand\ttabs",
    "a",
    "The cat sat on the mat.",
    "i went to the car",
    "i went to the pawn shop",
]


@pytest.fixture(scope="module")
def encoder() -> StaticTextEncoder:
    pytest.importorskip("tokenizers")
    if not text_model_status(WORDLLAMA)[0]:
        pytest.skip(text_model_status(WORDLLAMA)[1])
    enc = load_text_encoder(WORDLLAMA)
    assert isinstance(enc, StaticTextEncoder)
    return enc


@pytest.fixture(scope="module")
def reference(tmp_path_factory, encoder):
    """The package's own model, loaded offline: ``WordLlama.load()`` looks for its tokenizer in
    ``wordllama/tokenizer/`` while the wheel ships ``wordllama/tokenizers/``, and downloads it
    when it is not in its cache; so the shipped file is put in a private cache folder and
    downloads are disabled (and any HTTP request fails the test)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    wordllama = pytest.importorskip("wordllama")  # its import calls logging.basicConfig
    root.handlers[:], root.level = handlers, level
    import requests

    spec = SUPPORTED_MODELS[WORDLLAMA]
    package_dir = Path(wordllama.__file__).parent
    cache = tmp_path_factory.mktemp("wordllama_cache")
    (cache / "tokenizers").mkdir()
    shutil.copy(package_dir / spec.tokenizer, cache / "tokenizers")

    def no_network(*args, **kwargs):
        raise AssertionError(f"wordllama tried the network: {args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests, "get", no_network)
        model = wordllama.WordLlama.load(cache_dir=cache, disable_download=True)
    assert model.embedding.shape == (32000, 256)
    return model


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [t.strip() for t in stdlib_docstrings().metadata["text"].tolist()]
    long = " ".join(docs[:80])  # far past any truncation length
    return [*docs, *VARIED, long]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_equals_the_wordllama_package(encoder, reference, texts):
    assert len(texts) > 2000
    got = encoder.encode(texts)
    want = reference.embed(texts, norm=True)
    cos = _cosines(got, want)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} at {texts[int(cos.argmin())]!r}"
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The long text's tokens all count (WordLlama does not truncate).
    assert len(reference.tokenize([texts[-1]])[0].ids) > 1000


def test_markup_is_embedded_as_text(encoder, reference):
    got = encoder.encode(["<b>x</b>", "x"])
    np.testing.assert_allclose(got[0], reference.embed(["<b>x</b>"], norm=True)[0], atol=1e-5)
    assert _cosines(got[:1], got[1:])[0] < 0.99  # the tags are tokens too


def test_shape_dtype_unit_norm_and_no_truncation(encoder, texts):
    out = encoder.encode(VARIED)
    assert out.shape == (len(VARIED), 256) and encoder.dim == 256
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert encoder.name == WORDLLAMA and encoder.max_seq_length is None
    long = texts[-1]
    a, b = encoder.encode([long, long + " and then something entirely different"])
    tokens = [
        e.ids for e in encoder._tokenizer.encode_batch([long, *VARIED], add_special_tokens=False)
    ]
    np.testing.assert_allclose(  # blocks of 7 token rows: the same vectors
        mean_pool(encoder._table, tokens, block=7), encoder.encode([long, *VARIED]), atol=1e-6
    )
    assert float(a @ b) < 1 - 1e-6  # the words past 1,000 tokens change the vector


def test_batch_size_order_strip_and_threads(encoder, texts):
    sample = texts[::97]
    by_one = encoder.encode(sample, batch_size=1)
    np.testing.assert_allclose(encoder.encode(sample, batch_size=64), by_one, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(sample[::-1])[::-1], by_one, atol=1e-6)
    np.testing.assert_allclose(
        encoder.encode(["  open a file \n"]), encoder.encode(["open a file"])
    )
    assert_same_from_threads(encoder.encode, sample, by_one, atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ("just one string", r"\[text\]"),
        (["ok", 3], r"texts\[1\] is int"),
        (["   \t"], r"texts\[0\] is empty or blank"),
    ],
)
def test_bad_texts_raise_as_for_every_model(encoder, texts, message):
    with pytest.raises(InvalidInputError, match=message):
        encoder.encode(texts)
    with pytest.raises(InvalidInputError, match="batch_size"):
        encoder.encode(["fine"], batch_size=0)


def test_a_json_query_finds_json_docstrings(encoder):
    d = stdlib_docstrings()
    vectors = encoder.encode(d.metadata["text"].tolist())
    q = encoder.encode(["Serialize obj to a JSON formatted str"])[0]
    top = np.argsort(-(vectors @ q))[:5]
    assert (d.metadata["module"].iloc[top] == "json").sum() >= 3


def test_mean_pool_against_a_hand_computed_mean():
    table = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3], [4, 4, 0]], dtype=np.float32)
    got = mean_pool(table, [[0, 1], [2], [3, 3, 0], [99, -5]])
    means = np.array([[0.5, 1, 0], [0, 0, 3], [3, 8 / 3, 0], [2.5, 2, 0]])  # 99 -> 3, -5 -> 0
    np.testing.assert_allclose(got, means / np.linalg.norm(means, axis=1, keepdims=True), 1e-6)
    assert got.dtype == np.float32
    for block in (1, 2, 3, 5):  # texts split across blocks of token rows: the same means
        np.testing.assert_allclose(
            mean_pool(table, [[0, 1], [2], [3, 3, 0], [99, -5]], block=block), got, atol=1e-7
        )
    for block in (0, -1, 2.5, True):
        with pytest.raises(InvalidInputError, match="block must be a positive integer"):
            mean_pool(table, [[0]], block=block)
    with pytest.raises(InvalidInputError, match="text 1 gives no tokens"):
        mean_pool(table, [[0], []])
    with pytest.raises(InvalidInputError, match="no texts"):
        mean_pool(table, [])


def test_embedding_table_checks_the_tensor():
    ok = {"embedding.weight": np.ones((5, 4), dtype=np.float16)}
    table = embedding_table(ok, "embedding.weight", dim=4)
    assert table.dtype == np.float32 and table.shape == (5, 4)
    with pytest.raises(InvalidInputError, match="no tensor 'emb'"):
        embedding_table(ok, "emb", dim=4)
    with pytest.raises(InvalidInputError, match="4-dimensional, not 8"):
        embedding_table(ok, "embedding.weight", dim=8)
    with pytest.raises(InvalidInputError, match="not a table"):
        embedding_table({"t": np.ones(4, np.float32)}, "t", dim=4)
    with pytest.raises(InvalidInputError, match="NaN"):
        embedding_table({"t": np.full((2, 4), np.nan, np.float32)}, "t", dim=4)


# --------------------------------------------------------------------------- the registry


def test_the_registry_lists_both_models():
    assert list(SUPPORTED_MODELS)[:2] == [MINILM, WORDLLAMA]
    bert, static = SUPPORTED_MODELS[MINILM], SUPPORTED_MODELS[WORDLLAMA]
    assert (bert.architecture, bert.dim, bert.max_seq_length) == ("bert", 384, 256)
    assert (static.architecture, static.dim, static.max_seq_length) == ("static", 256, None)
    assert static.files == (
        "weights/l2_supercat_256.safetensors",
        "tokenizers/l2_supercat_tokenizer_config.json",
    )
    assert bert.files == ("model.safetensors", "config.json", "tokenizer.json")
    for spec in SUPPORTED_MODELS.values():
        assert spec.about and "make install-text" in spec.install


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (WORDLLAMA, WORDLLAMA),
        ("l2_supercat_256", WORDLLAMA),
        ("  WordLlama/L2_Supercat_256 ", WORDLLAMA),
        ("all-minilm-l6-v2", MINILM),
        (MINILM.upper(), MINILM),
        ("wordllama/l2_supercat_1024", None),
        ("l2_supercat", None),
        ("", None),
        (None, None),
        (256, None),
    ],
)
def test_canonical_names(given, canonical):
    assert canonical_model_name(given) == canonical


def test_an_unknown_model_gives_the_same_clear_error_naming_both():
    ok, reason = text_model_status("openai/text-embedding-3-small")
    assert not ok and "not one embscope can run offline" in reason
    assert MINILM in reason and WORDLLAMA in reason
    with pytest.raises(InvalidInputError, match="not one embscope can run offline"):
        load_text_encoder("openai/text-embedding-3-small")


def test_status_says_the_package_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name in ("wordllama", "onnxruntime") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    ok, reason = text_model_status(WORDLLAMA)
    assert not ok and "(wordllama)" in reason and "make install-text" in reason
    assert "onnxruntime" not in reason  # a static model does not need it
    with pytest.raises(InvalidInputError, match="wordllama"):
        load_text_encoder("l2_supercat_256")
    ok, reason = text_model_status(MINILM)
    assert not ok and "onnxruntime" in reason and "--no-deps" in reason


def test_status_says_which_file_is_missing(monkeypatch, encoder):
    assert text_model_status(WORDLLAMA) == (True, "")
    spec = SUPPORTED_MODELS[WORDLLAMA]
    gone = dataclasses.replace(spec, weights="weights/l2_supercat_4096.safetensors")
    monkeypatch.setitem(SUPPORTED_MODELS, WORDLLAMA, gone)
    ok, reason = text_model_status(WORDLLAMA)
    assert not ok and "weights/l2_supercat_4096.safetensors is missing" in reason
    assert "package wordllama is installed" in reason
    with pytest.raises(InvalidInputError, match="is missing"):
        load_text_encoder(WORDLLAMA)


def test_256_d_vectors_are_recognised_as_wordllama_from_their_own_texts(encoder):
    import pandas as pd

    from embscope.core.text_ingest import recognise_model

    docs = stdlib_docstrings().metadata.iloc[::9].reset_index(drop=True)
    frame = pd.DataFrame({"module": docs["module"], "text": docs["text"]})
    vectors = encoder.encode(frame["text"].tolist())
    found = recognise_model(vectors, frame)
    assert found is not None and found[:2] == (WORDLLAMA, "text") and found[2] >= 0.9999
    shuffled = vectors[np.random.default_rng(0).permutation(len(vectors))]
    assert recognise_model(shuffled, frame) is None  # same dimension, not these texts' vectors
    assert recognise_model(vectors[:, :128], frame) is None
