"""Codec spec strings (a public CLI contract), the parser, and the default codec set.

Grammar (case-insensitive; ``B`` are bits 1-8, ``K``/``D``/``M`` positive integers)::

    float32 | float16
    int8 | int8:minmax | int8:absmax
    binary[:centred][:asym]            ("centered" is accepted too)
    pq:M                               M sub-spaces of 256 centroids (M must divide d)
    lvq:B | lvq:B1xB2                  one- or two-level LVQ
    leanvec:D[:B1[xB2]]                PCA to D dims + LVQ-B1; LVQ-B2 of the full vectors
                                       for re-ranking (default 4x8; ``leanvec:D:B1`` = primary only)
    pca:K | rp:K | truncate:K | dct:K[:renorm]

``parse_codec_spec(spec).spec`` is the canonical form of ``spec``.
"""

from __future__ import annotations

import re
from typing import Any

from embscope.core.compression.base import Codec
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
from embscope.core.errors import InvalidInputError

__all__ = ["DEFAULT_CODECS", "SPEC_GRAMMAR", "as_codec", "default_codecs", "parse_codec_spec"]

SPEC_GRAMMAR = (
    "float32 | float16 | int8 | int8:absmax | binary[:centred][:asym] | pq:M | lvq:B | "
    "lvq:B1xB2 | leanvec:D[:B1[xB2]] | pca:K | rp:K | truncate:K | dct:K[:renorm]"
)

# The default set for 384-d embeddings, one or two per family (see default_codecs(d)).
DEFAULT_CODECS: tuple[str, ...] = (
    "float16",
    "int8",
    "lvq:8",
    "lvq:4x8",
    "leanvec:192:4x8",
    "binary",
    "pq:48",
    "pca:128",
    "rp:128",
    "truncate:128",
    "dct:128",
)

_BITS = re.compile(r"^([1-8])(?:x([1-8]))?$")


def _bad(spec: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"bad codec spec {spec!r}: {why}. Specs: {SPEC_GRAMMAR}")


def _positive(spec: str, text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise _bad(spec, f"{what} must be a positive whole number, got {text!r}")
    return int(text)


def _bits(spec: str, text: str) -> tuple[int, int | None]:
    match = _BITS.match(text)
    if not match:
        raise _bad(spec, f"bits must look like 8 or 4x8 (each 1-8), got {text!r}")
    return int(match.group(1)), (int(match.group(2)) if match.group(2) else None)


def parse_codec_spec(spec: Any, *, seed: int = 0) -> Codec:
    """A new, unfitted codec from its spec string.

    Parameters
    ----------
    spec : str
        See the module docstring, e.g. ``"int8"``, ``"pq:48"``, ``"lvq:4x8"``, ``"pca:128"``.
    seed : int
        Seed for codecs with randomness (random projection, PQ training).

    Returns
    -------
    Codec

    Raises
    ------
    InvalidInputError
        For anything that is not a valid spec.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"a codec spec must be a non-empty string; specs: {SPEC_GRAMMAR}")
    text = spec.strip().lower().replace(" ", "")
    name, *args = text.split(":")
    if name in ("float32", "float16"):
        if args:
            raise _bad(spec, f"{name} takes no options")
        return FloatCodec(name)
    if name == "int8":
        if not args:
            return Int8Codec("minmax")
        if len(args) == 1 and args[0] in ("minmax", "absmax"):
            return Int8Codec(args[0])
        raise _bad(spec, "int8 takes no option, or minmax, or absmax")
    if name == "binary":
        options = {"centered": "centred"}
        flags = [options.get(a, a) for a in args]
        unknown = sorted(set(flags) - {"centred", "asym"})
        if unknown or len(set(flags)) != len(flags):
            raise _bad(spec, "binary takes the options centred and/or asym, each once")
        return BinaryCodec(centred="centred" in flags, asymmetric="asym" in flags)
    if name == "pq":
        if len(args) != 1:
            raise _bad(spec, "pq needs the number of sub-spaces, e.g. pq:48")
        return PQCodec(_positive(spec, args[0], "the number of sub-spaces"), seed=seed)
    if name == "lvq":
        if len(args) != 1:
            raise _bad(spec, "lvq needs bits, e.g. lvq:8 or lvq:4x8")
        return LVQCodec(*_bits(spec, args[0]))
    if name == "leanvec":
        if not 1 <= len(args) <= 2:
            raise _bad(spec, "leanvec needs the reduced dimension, e.g. leanvec:192:4x8")
        dims = _positive(spec, args[0], "the reduced dimension")
        primary, secondary = _bits(spec, args[1]) if len(args) == 2 else (4, 8)
        return LeanVecCodec(dims, primary, secondary)
    if name in ("pca", "rp", "truncate", "dct"):
        if not args:
            raise _bad(spec, f"{name} needs the number of kept dimensions, e.g. {name}:128")
        k = _positive(spec, args[0], "the number of kept dimensions")
        if name == "dct" and args[1:] == ["renorm"]:
            return DCTCodec(k, renormalise=True)
        if len(args) > 1:
            raise _bad(spec, f"{name} takes only the number of kept dimensions")
        if name == "pca":
            return PCACodec(k)
        if name == "rp":
            return RandomProjectionCodec(k, seed=seed)
        if name == "truncate":
            return TruncationCodec(k)
        return DCTCodec(k)
    raise _bad(spec, f"unknown codec {name!r}")


def as_codec(codec: Any, *, seed: int = 0) -> Codec:
    """A Codec from a spec string, or the codec itself."""
    return codec if isinstance(codec, Codec) else parse_codec_spec(codec, seed=seed)


def _pq_subspaces(d: int) -> int:
    """The number of PQ sub-spaces for ``d``: sub-vectors of 8 dims (48 for 384-d), else the
    divisor of d giving sub-vectors closest to 8 dims."""
    return min((m for m in range(1, d + 1) if d % m == 0), key=lambda m: (abs(d // m - 8), m))


def default_codecs(dim: int, *, n: int | None = None) -> list[str]:
    """The default codec set adapted to dimension ``dim`` (and ``n`` database vectors).

    :data:`DEFAULT_CODECS` for d = 384: reducers keep d // 3 dims, LeanVec d // 2, PQ uses
    8-dim sub-vectors; PQ is left out when there are fewer than 256 vectors to train on.

    Returns
    -------
    list of str
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InvalidInputError(f"dim must be a positive whole number, got {dim!r}")
    k = max(1, dim // 3)
    specs = [
        "float16",
        "int8",
        "lvq:8",
        "lvq:4x8",
        f"leanvec:{max(1, dim // 2)}:4x8",
        "binary",
        f"pq:{_pq_subspaces(dim)}",
        f"pca:{k}",
        f"rp:{k}",
        f"truncate:{k}",
        f"dct:{k}",
    ]
    if n is not None and n < 256:
        specs = [s for s in specs if not s.startswith("pq:")]
    return specs
