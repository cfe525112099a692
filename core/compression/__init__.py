"""Embedding compression: codecs (float16, int8, LVQ, LeanVec, binary, PQ, PCA, random
projection, truncation, DCT) and their evaluation against exact float32 search.

Codecs are made from spec strings (:func:`parse_codec_spec`, a CLI contract) and evaluated
with :func:`evaluate_codecs` (docs/science.md §4).
"""

from embscope.core.compression.base import Codec, Codes, exact_scores, rerank_exact, search_rescored
from embscope.core.compression.codecs import (
    DEFAULT_CODECS,
    SPEC_GRAMMAR,
    as_codec,
    default_codecs,
    parse_codec_spec,
)
from embscope.core.compression.evaluate import (
    CodecResult,
    CompressionReport,
    compressed_vectors,
    evaluate_codecs,
    save_compressed_copy,
)
from embscope.core.compression.quantisers import (
    BinaryCodec,
    FloatCodec,
    Int8Codec,
    LeanVecCodec,
    LVQCodec,
    PQCodec,
)
from embscope.core.compression.reducers import (
    DCTCodec,
    PCACodec,
    RandomProjectionCodec,
    TruncationCodec,
)

__all__ = [
    "DEFAULT_CODECS",
    "SPEC_GRAMMAR",
    "BinaryCodec",
    "Codec",
    "CodecResult",
    "Codes",
    "CompressionReport",
    "DCTCodec",
    "FloatCodec",
    "Int8Codec",
    "LVQCodec",
    "LeanVecCodec",
    "PCACodec",
    "PQCodec",
    "RandomProjectionCodec",
    "TruncationCodec",
    "as_codec",
    "compressed_vectors",
    "default_codecs",
    "evaluate_codecs",
    "exact_scores",
    "parse_codec_spec",
    "rerank_exact",
    "save_compressed_copy",
    "search_rescored",
]
