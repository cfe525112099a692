"""Static token-embedding sentence models (WordLlama): a table of token vectors averaged.

A static model has no network layers: a text is tokenised, each token's row of the embedding
table is looked up, the rows are averaged and the mean is L2-normalised. This is how the PyPI
package ``wordllama`` (0.4.0.post1, ``WordLlamaInference.embed(texts, norm=True)``) embeds,
reproduced here with numpy so that embscope loads nothing but the package's two files (the
``.safetensors`` table, read by :func:`core.text_model.read_safetensors`, and the Hugging Face
``tokenizers`` JSON) and never runs the package's own code. Its recipe, read from its source:

- tokenised with the package's tokenizer, no special tokens (``add_special_tokens=False``) and
  no truncation (``no_truncation()``): every token of the text counts;
- token ids clipped to the table's rows (``np.clip(ids, 0, n_vocab - 1)``);
- the mean over the text's tokens (padding excluded; the token count clamped at 1);
- divided by its Euclidean norm.

Sums are accumulated in float64 here (the package sums float32), which changes the result by
a few float32 ulps. The quality is below a transformer such as all-MiniLM-L6-v2, since word
order and context are lost: WordLlama's own MTEB table (its README, l2_supercat at 256
dimensions against all-MiniLM-L6-v2) gives clustering 33.3 vs 42.4, STS 67.9 vs 78.9,
reranking 52.0 vs 58.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embscope.core.errors import InvalidInputError

__all__ = ["MODULES", "TOKEN_BLOCK", "embedding_table", "mean_pool"]

#: The optional modules a static model needs at run time (onnx and onnxruntime are not).
MODULES = ("tokenizers",)
#: Token rows gathered at once by :func:`mean_pool` (64 Ki rows of 256 float32: 64 MiB).
TOKEN_BLOCK = 65_536


def embedding_table(weights: dict[str, np.ndarray], tensor: str, *, dim: int) -> np.ndarray:
    """The token table of a static model's weights, checked.

    Parameters
    ----------
    weights : dict of str to numpy.ndarray
        The tensors of its ``.safetensors`` file.
    tensor : str
        The name of the table, e.g. ``"embedding.weight"``.
    dim : int
        The dimension the registry promises.

    Returns
    -------
    numpy.ndarray
        float32, C-contiguous, shape ``(n_tokens, dim)``.

    Raises
    ------
    InvalidInputError
        The tensor is missing, not a finite 2-D float table, or of another dimension.
    """
    if tensor not in weights:
        raise InvalidInputError(
            f"the model weights have no tensor {tensor!r} (they hold {', '.join(weights)}): "
            "reinstall the model with `make install-text`"
        )
    table = weights[tensor]
    if table.ndim != 2 or table.dtype.kind != "f" or table.shape[0] < 1:
        raise InvalidInputError(
            f"the model's tensor {tensor!r} is not a table of token vectors (shape "
            f"{table.shape}, {table.dtype}): reinstall the model with `make install-text`"
        )
    if table.shape[1] != dim:
        raise InvalidInputError(
            f"the model's token vectors are {table.shape[1]}-dimensional, not {dim}: "
            "reinstall the model with `make install-text`"
        )
    table = np.ascontiguousarray(table, dtype=np.float32)
    if not np.isfinite(table).all():
        raise InvalidInputError(
            f"the model's tensor {tensor!r} holds NaN or infinite values: reinstall the model "
            "with `make install-text`"
        )
    return table


def mean_pool(
    table: np.ndarray, token_ids: Sequence[Sequence[int]], *, block: int = TOKEN_BLOCK
) -> np.ndarray:
    """Each text's token vectors averaged and L2-normalised, as WordLlama embeds.

    Parameters
    ----------
    table : numpy.ndarray
        float32 ``(n_tokens, dim)``, from :func:`embedding_table`.
    token_ids : sequence of sequences of int
        One list of token ids per text (no special tokens, not truncated).
    block : int
        Token rows gathered at once, which bounds the memory however long the texts are;
        the result does not depend on it beyond float rounding.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(len(token_ids), dim)``, unit-norm rows.

    Raises
    ------
    InvalidInputError
        A text has no token (the mean of nothing), no text is given, or ``block`` is not a
        positive integer.
    """
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise InvalidInputError(f"block must be a positive integer, got {block!r}")
    if len(token_ids) == 0:
        raise InvalidInputError("no texts to pool: give at least one text's tokens")
    lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
    if (lengths == 0).any():
        i = int(np.flatnonzero(lengths == 0)[0])
        raise InvalidInputError(
            f"text {i} gives no tokens, so it has no vector: give it some words"
        )
    ids = np.concatenate([np.asarray(t, dtype=np.int64) for t in token_ids])
    np.clip(ids, 0, table.shape[0] - 1, out=ids)  # as wordllama clamps out-of-range ids
    owner = np.repeat(np.arange(len(lengths)), lengths)  # the text of each token, ascending
    sums = np.zeros((len(lengths), table.shape[1]), dtype=np.float64)
    for start in range(0, ids.size, block):
        who = owner[start : start + block]
        first = np.concatenate([[0], np.flatnonzero(np.diff(who)) + 1])  # each text's first
        rows = table[ids[start : start + block]]
        sums[who[first]] += np.add.reduceat(rows, first, axis=0, dtype=np.float64)
    means = sums / lengths[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return np.ascontiguousarray(means / np.maximum(norms, 1e-12), dtype=np.float32)
