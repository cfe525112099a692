"""Quantisers: float16, scalar int8, LVQ, LeanVec-ID, binary and product quantisation.

Definitions follow docs/science.md §4.2:

* **int8** (per-dimension min/max from the fitted data): ``step = (max − min)/255``,
  ``code = clip(round((x − min)/step), 0, 255)``, scored dequantised ``x̂ = min + code·step``
  (rounded and clipped, unlike sentence-transformers' truncating, wrapping cast). Variant
  ``absmax``: one global ``amax``, ``code = clip(round(127·x/amax), −127, 127)``.
* **LVQ-B** (Aguerrebere et al., VLDB 2023): centre by the dataset mean, then per vector
  ``l = min z``, ``Δ = (max z − l)/(2^B − 1)``, ``c = clip(round((z − l)/Δ), 0, 2^B − 1)``;
  ``l`` and ``Δ`` are stored as float16 and the decoder uses exactly those values. ``l`` is
  rounded down and ``Δ`` up to the next float16, so no coordinate is ever clipped. Two-level
  **LVQ-B1×B2** adds a B2-bit code of the residual ``r = z − ẑ`` as the paper defines it,
  ``Q(r; B2, −Δ/2, Δ/2)``: the 2^B2 levels ``−Δ/2 + j·Δ₂``, ``Δ₂ = Δ/(2^B2 − 1)``, span the
  whole range a residual can take, so nothing is clipped and the error is at most ``Δ₂/2``.
  Codes are bit-packed: ``ceil(d·B/8) + 4`` bytes per vector.
* **LeanVec-ID**: PCA to ``d'`` dims, LVQ-B1 of the reduced vectors for the search (scored
  with the uncentred query, as PCA), and LVQ-B2 of the full vectors for re-ranking.

Both two-level codecs search as SVS runs them (docs/science.md §4.2): the **first level**
alone (LVQ-B1 codes; LeanVec's reduced primary) scores every vector, and the **second level**
(LVQ-B1 plus the residual; LeanVec's full-dimensional secondary) re-ranks the shortlist
(:meth:`Codec.rerank`). ``score``, ``search`` and ``pair_scores`` are the first level's;
``decode`` (the compressed copy) uses every level.
* **binary**: ``b = x > 0`` (optionally after subtracting the mean), packed with
  ``np.packbits``; Hamming distance by popcount of XORed 64-bit words, or asymmetric
  ``q·(2b − 1)``.
* **PQ** (Jégou et al. 2011): ``m`` sub-spaces, 256 k-means centroids each, one byte per
  sub-space; asymmetric distance computation with per-query lookup tables of ``m × 256``
  partial inner products (``ip``/``cosine``) or squared distances (``l2``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from embscope.core.compression.base import (
    Codec,
    dense_pair_similarity,
    dense_similarity,
    score_candidates,
)
from embscope.core.compression.reducers import principal_basis, subspace_query
from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_int, check_vectors

__all__ = [
    "BinaryCodec",
    "FloatCodec",
    "Int8Codec",
    "LVQCodec",
    "LeanVecCodec",
    "PQCodec",
    "lvq_decode",
    "lvq_encode",
    "pack_bits",
    "unpack_bits",
]

_FLOAT16_MAX = float(np.finfo(np.float16).max)


# -- bit packing ----------------------------------------------------------------------------


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``bits``-bit unsigned codes, row by row, into bytes.

    Parameters
    ----------
    codes : uint8 ndarray of shape (n, d), values < 2**bits
    bits : int in [1, 8]

    Returns
    -------
    uint8 ndarray of shape (n, ceil(d * bits / 8))
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if bits == 8:
        return codes
    n, d = codes.shape
    if 8 % bits == 0:
        per = 8 // bits
        pad = (-d) % per
        if pad:
            codes = np.pad(codes, ((0, 0), (0, pad)))
        grouped = codes.reshape(n, -1, per)
        out = np.zeros(grouped.shape[:2], dtype=np.uint8)
        for i in range(per):
            out |= grouped[:, :, i] << np.uint8(bits * i)
        return out
    flat = np.unpackbits(codes[:, :, None], axis=2, count=bits, bitorder="little")
    return np.packbits(flat.reshape(n, d * bits), axis=1, bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, d: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: uint8 (n, d) codes."""
    if bits == 8:
        return packed
    n = packed.shape[0]
    if 8 % bits == 0:
        per = 8 // bits
        mask = np.uint8((1 << bits) - 1)
        out = np.empty((n, packed.shape[1], per), dtype=np.uint8)
        for i in range(per):
            out[:, :, i] = (packed >> np.uint8(bits * i)) & mask
        return out.reshape(n, -1)[:, :d]
    flat = np.unpackbits(packed, axis=1, count=d * bits, bitorder="little")
    return np.packbits(flat.reshape(n, d, bits), axis=2, bitorder="little")[:, :, 0]


def _packed_bytes(d: int, bits: int) -> int:
    return -(-d * bits // 8)


# -- float and int8 -------------------------------------------------------------------------


class FloatCodec(Codec):
    """Plain floats: ``float32`` (the uncompressed baseline) or ``float16``."""

    family = "float"

    def __init__(self, dtype: str = "float16") -> None:
        super().__init__()
        if dtype not in ("float16", "float32"):
            raise InvalidInputError(f"FloatCodec dtype must be float16 or float32, got {dtype!r}")
        self.dtype = dtype

    @property
    def spec(self) -> str:
        return self.dtype

    def _bytes_per_vector(self, d: int) -> int:
        return d * np.dtype(self.dtype).itemsize

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if self.dtype == "float16" and np.abs(X).max(initial=0.0) > _FLOAT16_MAX:
            raise InvalidInputError(
                f"values beyond ±{_FLOAT16_MAX:g} do not fit float16: rescale the vectors "
                "or use int8/lvq, which keep their own ranges"
            )
        return {"v": X.astype(self.dtype)}

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return arrays["v"].astype(np.float32)


class Int8Codec(Codec):
    """Scalar 8-bit quantisation, rounded and clipped, scored dequantised.

    Parameters
    ----------
    mode : {"minmax", "absmax"}
        ``minmax``: per-dimension ranges from the fitted data (uint8 codes); ``absmax``: one
        global symmetric range (int8 codes in [-127, 127]).
    """

    family = "int8"

    def __init__(self, mode: str = "minmax") -> None:
        super().__init__()
        if mode not in ("minmax", "absmax"):
            raise InvalidInputError(f"int8 mode must be minmax or absmax, got {mode!r}")
        self.mode = mode

    @property
    def spec(self) -> str:
        return "int8" if self.mode == "minmax" else "int8:absmax"

    def _bytes_per_vector(self, d: int) -> int:
        return d

    def _shared_bytes(self, d: int) -> int:
        return 2 * 4 * d if self.mode == "minmax" else 4

    def _fit(self, X: np.ndarray) -> None:
        if self.mode == "minmax":
            self.lower = X.min(axis=0).astype(np.float32)
            self.step = ((X.max(axis=0) - self.lower) / 255.0).astype(np.float32)
        else:
            amax = float(np.abs(X).max())
            self.amax = np.float32(amax if amax > 0 else 1.0)

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if self.mode == "minmax":
            # A constant dimension (step 0) gets code 0 and decodes to its value.
            safe = np.where(self.step > 0, self.step, np.float32(1.0))
            codes = np.rint((X - self.lower) / safe)
            codes[:, self.step == 0] = 0
            return {"codes": np.clip(codes, 0, 255).astype(np.uint8)}
        codes = np.clip(np.rint(X * (127.0 / self.amax)), -127, 127)
        return {"codes": codes.astype(np.int8)}

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        codes = arrays["codes"].astype(np.float32)
        if self.mode == "minmax":
            codes *= self.step
            codes += self.lower
            return codes
        codes *= self.amax / np.float32(127.0)
        return codes


# -- LVQ ------------------------------------------------------------------------------------


def lvq_encode(Z: np.ndarray, bits: int, residual_bits: int | None = None) -> dict[str, np.ndarray]:
    """LVQ codes of (already centred) rows ``Z``.

    Parameters
    ----------
    Z : float32 ndarray of shape (n, d)
    bits : int in [1, 8]
    residual_bits : int in [1, 8], optional
        Two-level LVQ: the residual quantised as ``Q(r; B2, −Δ/2, Δ/2)`` (Aguerrebere et al.
        2023): levels ``−Δ/2 + j·Δ/(2**B2 − 1)``, ``j = 0 … 2**B2 − 1``, with ``Δ`` the stored
        (float16) step of the first level.

    Returns
    -------
    dict
        ``codes`` packed uint8 (n, ceil(d*bits/8)); ``lower`` and ``step`` float16 (n,);
        ``residual`` packed uint8 (n, ceil(d*residual_bits/8)) of the level indices ``j``
        when two-level.
    """
    levels = (1 << bits) - 1
    lo, hi = Z.min(axis=1), Z.max(axis=1)
    if max(float(np.abs(lo).max(initial=0)), float(np.abs(hi).max(initial=0))) > _FLOAT16_MAX / 2:
        raise InvalidInputError(
            "LVQ stores each vector's minimum and step as float16, which holds values up to "
            f"±{_FLOAT16_MAX:g}: these (centred) vectors have larger coordinates; rescale them"
        )
    # l rounded down and Δ up to float16, so lo16 + levels * Δ16 >= max: nothing is clipped.
    lo16 = lo.astype(np.float16)
    over = lo16.astype(np.float32) > lo
    lo16[over] = np.nextafter(lo16[over], np.float16(-np.inf))
    lo32 = lo16.astype(np.float32)
    step = (hi - lo32) / np.float32(levels)
    step16 = step.astype(np.float16)
    under = step16.astype(np.float32) < step
    step16[under] = np.nextafter(step16[under], np.float16(np.inf))
    step32 = step16.astype(np.float32)
    safe = np.where(step32 > 0, step32, np.float32(1.0))[:, None]
    codes = np.clip(np.rint((Z - lo32[:, None]) / safe), 0, levels)
    out = {"codes": pack_bits(codes.astype(np.uint8), bits), "lower": lo16, "step": step16}
    if residual_bits:
        levels2 = (1 << residual_bits) - 1
        residual = Z - (codes * step32[:, None] + lo32[:, None])
        step2 = (step32 / np.float32(levels2))[:, None]
        safe2 = np.where(step2 > 0, step2, np.float32(1.0))
        c2 = np.clip(np.rint((residual + step32[:, None] / 2) / safe2), 0, levels2)
        out["residual"] = pack_bits(c2.astype(np.uint8), residual_bits)
    return out


def lvq_decode(
    arrays: Mapping[str, np.ndarray], bits: int, residual_bits: int | None, d: int
) -> np.ndarray:
    """Reconstruct centred rows from :func:`lvq_encode`'s arrays (float16 constants as stored).

    Returns
    -------
    float32 ndarray of shape (n, d)
    """
    step = arrays["step"].astype(np.float32)[:, None]
    out = unpack_bits(arrays["codes"], bits, d).astype(np.float32)
    out *= step
    out += arrays["lower"].astype(np.float32)[:, None]
    if residual_bits:
        c2 = unpack_bits(arrays["residual"], residual_bits, d).astype(np.float32)
        c2 *= step / np.float32((1 << residual_bits) - 1)
        c2 -= step / 2
        out += c2
    return out


def _check_bits(bits: Any, what: str) -> int:
    return check_int(bits, f"{what} bits", low=1, high=8)


class LVQCodec(Codec):
    """Locally-adaptive vector quantisation, one level (LVQ-B) or two (LVQ-B1xB2).

    Parameters
    ----------
    bits : int in [1, 8]
    residual_bits : int in [1, 8], optional
        Second level (LVQ-4x8 = ``bits=4, residual_bits=8``). Two-level LVQ searches with the
        first level alone and re-ranks with both (:meth:`rerank`), as SVS does and as
        :class:`LeanVecCodec` does with its secondary; :meth:`decode` uses both levels.
    """

    family = "lvq"

    def __init__(self, bits: int = 8, residual_bits: int | None = None) -> None:
        super().__init__()
        self.bits = _check_bits(bits, "LVQ")
        self.residual_bits = (
            None if residual_bits is None else _check_bits(residual_bits, "LVQ residual")
        )

    @property
    def has_reranker(self) -> bool:  # type: ignore[override]  # per codec, not per class
        return self.residual_bits is not None

    @property
    def spec(self) -> str:
        rb = f"x{self.residual_bits}" if self.residual_bits else ""
        return f"lvq:{self.bits}{rb}"

    @property
    def first_stage(self) -> str | None:
        return f"lvq:{self.bits} (first level)" if self.residual_bits else None

    @property
    def reranker(self) -> str | None:
        if not self.residual_bits:
            return None
        return f"two-level lvq:{self.bits}x{self.residual_bits}"

    def _bytes_per_vector(self, d: int) -> int:
        extra = _packed_bytes(d, self.residual_bits) if self.residual_bits else 0
        return _packed_bytes(d, self.bits) + extra + 4  # two float16 constants

    def _shared_bytes(self, d: int) -> int:
        return 4 * d  # the mean

    def _fit(self, X: np.ndarray) -> None:
        self.mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return lvq_encode(X - self.mean, self.bits, self.residual_bits)

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        out = lvq_decode(arrays, self.bits, self.residual_bits, self._require_fit())
        out += self.mean
        return out

    def _first_level(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        out = lvq_decode(arrays, self.bits, None, self._require_fit())
        out += self.mean
        return out

    # The search (and pair scores) with the first level alone; one-level LVQ: all there is.
    def _score(self, state: Any, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_similarity(state, self._first_level(arrays), self._metric)

    def _pairs(self, state: Any, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_pair_similarity(state, self._first_level(arrays), self._metric)

    def rerank(self, Q: Any, codes: Any, candidates: np.ndarray) -> np.ndarray:
        """Similarities of each query with its candidates from both levels (two-level only).

        Returns
        -------
        float32 ndarray of shape (m, c)
        """
        if not self.residual_bits:
            return super().rerank(Q, codes, candidates)
        return _rerank_decoded(self, Q, codes, candidates, self._decode)


class LeanVecCodec(Codec):
    """LeanVec-ID: PCA to ``dims`` then LVQ-B1 (search); LVQ-B2 of the full vectors (re-rank).

    Parameters
    ----------
    dims : int
        Reduced dimension d' (faiss-SVS default d // 2).
    primary_bits : int in [1, 8]
    secondary_bits : int in [1, 8], optional
        LVQ bits of the full-dimensional secondary used by :meth:`rerank`. None: primary only
        (re-rank with float vectors instead).
    """

    family = "leanvec"

    def __init__(self, dims: int, primary_bits: int = 4, secondary_bits: int | None = 8) -> None:
        super().__init__()
        self.dims = check_int(dims, "LeanVec dimensions", low=1)
        self.primary_bits = _check_bits(primary_bits, "LeanVec primary")
        self.secondary_bits = (
            None if secondary_bits is None else _check_bits(secondary_bits, "LeanVec secondary")
        )

    @property
    def has_reranker(self) -> bool:  # type: ignore[override]  # per codec, not per class
        return self.secondary_bits is not None

    @property
    def spec(self) -> str:
        second = f"x{self.secondary_bits}" if self.secondary_bits else ""
        return f"leanvec:{self.dims}:{self.primary_bits}{second}"

    @property
    def first_stage(self) -> str | None:
        if not self.secondary_bits:
            return None
        return f"primary lvq:{self.primary_bits} of {self.dims} PCA dims"

    @property
    def reranker(self) -> str | None:
        return f"secondary lvq:{self.secondary_bits}" if self.secondary_bits else None

    def _check_data(self, n: int, d: int) -> None:
        if self.dims > d:
            raise InvalidInputError(
                f"{self.spec} reduces to {self.dims} dimensions but the vectors have only {d}"
            )
        if n < 2:
            raise InvalidInputError("LeanVec needs at least 2 vectors to fit its PCA")

    def _bytes_per_vector(self, d: int) -> int:
        primary = _packed_bytes(self.dims, self.primary_bits) + 4
        if self.secondary_bits:
            return primary + _packed_bytes(d, self.secondary_bits) + 4
        return primary

    def _shared_bytes(self, d: int) -> int:
        return 4 * d * self.dims + 4 * d  # projection and mean

    def _fit(self, X: np.ndarray) -> None:
        mean, basis, _ = principal_basis(X, self.dims)
        self.mean = mean.astype(np.float32)
        self.components = np.ascontiguousarray(basis, dtype=np.float32)

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        centred = X - self.mean
        # The reduced vectors are centred already: no second mean.
        primary = lvq_encode(
            np.ascontiguousarray(centred @ self.components), self.primary_bits, None
        )
        out = {f"p_{k}": v for k, v in primary.items()}
        if self.secondary_bits:
            out.update({f"s_{k}": v for k, v in lvq_encode(centred, self.secondary_bits).items()})
        return out

    def _reduced(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        primary = {k[2:]: v for k, v in arrays.items() if k.startswith("p_")}
        return lvq_decode(primary, self.primary_bits, None, self.dims)

    def _secondary(self, arrays: Mapping[str, np.ndarray], bits: int) -> np.ndarray:
        """The full vectors from the secondary LVQ codes (``bits``: ``secondary_bits``)."""
        second = {k[2:]: v for k, v in arrays.items() if k.startswith("s_")}
        out = lvq_decode(second, bits, None, self._require_fit())
        out += self.mean
        return out

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.secondary_bits:
            return self._secondary(arrays, self.secondary_bits)
        decoded: np.ndarray = self._reduced(arrays) @ self.components.T + self.mean
        return decoded

    # Scoring as PCA does, with the LVQ-decoded reduced vectors.
    def _prepare(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return subspace_query(Q, self.mean, self.components, self._require_metric())

    def _score(
        self, state: tuple[np.ndarray, np.ndarray], arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        proj, const = state
        S = dense_similarity(proj, self._reduced(arrays), self._metric)
        scores: np.ndarray = S - const[:, None] if self._metric == "l2" else S + const[:, None]
        return scores

    def _pairs(
        self, state: tuple[np.ndarray, np.ndarray], arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        proj, const = state
        s = dense_pair_similarity(proj, self._reduced(arrays), self._metric)
        scores: np.ndarray = s - const if self._metric == "l2" else s + const
        return scores

    def rerank(self, Q: Any, codes: Any, candidates: np.ndarray) -> np.ndarray:
        """Similarities of each query with its candidates from the secondary LVQ vectors.

        Parameters
        ----------
        Q : float32 ndarray of shape (m, d)
        codes : Codes
        candidates : int ndarray of shape (m, c)

        Returns
        -------
        float32 ndarray of shape (m, c)
        """
        bits = self.secondary_bits
        if not bits:
            return super().rerank(Q, codes, candidates)
        return _rerank_decoded(
            self, Q, codes, candidates, lambda arrays: self._secondary(arrays, bits)
        )


def _rerank_decoded(
    codec: Codec,
    Q: Any,
    codes: Any,
    candidates: np.ndarray,
    decode: Callable[[Mapping[str, np.ndarray]], np.ndarray],
) -> np.ndarray:
    """Similarities of each query with its candidate rows decoded by ``decode`` (a codec's own
    second stage), in blocks of 256 queries."""
    codec._check_codes(codes)
    metric = codec._require_metric()
    Q = codec._prepare_input(check_vectors(Q, dim=codec.dim, name="queries"), metric)
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2 or candidates.shape[0] != Q.shape[0]:
        raise InvalidInputError(
            f"candidates must have one row per query ({Q.shape[0]}), got {candidates.shape}"
        )
    return score_candidates(Q, candidates, lambda rows: decode(codes.rows(rows).arrays), metric)


# -- binary ---------------------------------------------------------------------------------


def _words(packed: np.ndarray) -> np.ndarray:
    """Packed bit rows (n, b) as uint64 words (n, ceil(b / 8)), zero-padded."""
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


class BinaryCodec(Codec):
    """Sign bits, one per dimension, scored by Hamming distance or asymmetrically.

    Parameters
    ----------
    centred : bool
        Subtract the database mean before taking signs (helps anisotropic embeddings).
    asymmetric : bool
        Score the float query against ``2b − 1`` instead of the Hamming distance between codes.
    """

    family = "binary"
    metrics = ("cosine", "ip")

    def __init__(self, *, centred: bool = False, asymmetric: bool = False) -> None:
        super().__init__()
        self.centred = bool(centred)
        self.asymmetric = bool(asymmetric)

    @property
    def spec(self) -> str:
        return (
            "binary" + (":centred" if self.centred else "") + (":asym" if self.asymmetric else "")
        )

    def _metric_reason(self) -> str:
        return "sign codes keep directions, not lengths, so they estimate angles only"

    def _bytes_per_vector(self, d: int) -> int:
        return _packed_bytes(d, 1)

    def _shared_bytes(self, d: int) -> int:
        return 4 * d if self.centred else 0

    def _fit(self, X: np.ndarray) -> None:
        self.mean = X.mean(axis=0, dtype=np.float64).astype(np.float32) if self.centred else None

    def _bits(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) > 0 if self.centred else X > 0

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {"bits": np.packbits(self._bits(X), axis=1)}

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        signs = np.unpackbits(arrays["bits"], axis=1, count=self._require_fit()).astype(np.float32)
        signs *= 2.0
        signs -= 1.0
        return signs

    def _prepare(self, Q: np.ndarray) -> np.ndarray:
        if self.asymmetric:
            return Q
        return _words(np.packbits(self._bits(Q), axis=1))

    def _score(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.asymmetric:
            dots: np.ndarray = state @ self._decode(arrays).T
            return dots
        X = _words(arrays["bits"])
        out = np.empty((state.shape[0], X.shape[0]), dtype=np.float32)
        for start in range(0, X.shape[0], 2048):  # keeps the uint64 XOR block small
            block = X[start : start + 2048]
            dist = np.zeros((state.shape[0], block.shape[0]), dtype=np.int32)
            for w in range(X.shape[1]):
                dist += np.bitwise_count(state[:, w, None] ^ block[None, :, w])
            np.negative(dist, out=out[:, start : start + 2048], casting="unsafe")
        return out

    def _pairs(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.asymmetric:
            pair_dots: np.ndarray = np.einsum("ij,ij->i", state, self._decode(arrays))
            return pair_dots
        dist = np.bitwise_count(state ^ _words(arrays["bits"])).sum(axis=1)
        return -np.asarray(dist, dtype=np.float32)


# -- product quantisation -------------------------------------------------------------------

_PQ_CENTROIDS = 256
# Threads for PQ training, encoding and lookup-table scoring (numpy's products and the
# numba kernel run without the GIL; BLAS itself is kept to one thread meanwhile).
_PQ_THREADS = max(1, min(4, os.cpu_count() or 1))
# faiss warns below 39 training points per centroid.
_PQ_MIN_ADVISED = 39 * _PQ_CENTROIDS


def _in_threads(work: Any, count: int) -> None:
    """Run ``work(0..count-1)`` on up to _PQ_THREADS threads, re-raising the first error."""
    if _PQ_THREADS == 1 or count == 1:
        for j in range(count):
            work(j)
        return
    with ThreadPoolExecutor(min(_PQ_THREADS, count)) as pool:
        for job in [pool.submit(work, j) for j in range(count)]:
            job.result()


def _one_blas_thread() -> threadpool_limits:
    """BLAS on one thread: PQ's products have an inner dimension of d / m (8 for pq:48), where
    OpenBLAS threads cost far more than they give (10x slower on a busy 2-core machine)."""
    return threadpool_limits(1, user_api="blas")


def _assign(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row (ties: the smaller index) and its squared distance."""
    c2 = np.einsum("ij,ij->i", C, C)
    labels = np.empty(X.shape[0], dtype=np.int64)
    best = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], 4096):
        block = X[start : start + 4096]
        D = block @ C.T
        D *= -2.0
        D += c2
        labels[start : start + 4096] = D.argmin(axis=1)
        best[start : start + 4096] = np.take_along_axis(
            D, labels[start : start + 4096, None], axis=1
        )[:, 0] + np.einsum("ij,ij->i", block, block)
    return labels, best


def _kmeans(X: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means from k distinct random rows (faiss's default initialisation).

    An empty cluster takes the row farthest from its centroid, as a new centroid.
    """
    n, d = X.shape
    C = X[rng.choice(n, size=k, replace=False)].astype(np.float32)
    for _ in range(iterations):
        labels, dist = _assign(X, C)
        counts = np.bincount(labels, minlength=k)
        sums = np.empty((k, d))
        for j in range(d):
            sums[:, j] = np.bincount(labels, weights=X[:, j], minlength=k)
        full = counts > 0
        C[full] = (sums[full] / counts[full, None]).astype(np.float32)
        empty = np.flatnonzero(~full)
        if empty.size:
            far = np.argsort(-dist, kind="stable")[: empty.size]
            C[empty] = X[far]
    return C


class PQCodec(Codec):
    """Product quantisation with ``m`` sub-spaces of 256 centroids (8-bit codes, m bytes).

    Parameters
    ----------
    m : int
        Sub-spaces; the dimension must be divisible by ``m``.
    iterations : int
        Lloyd iterations per sub-space.
    max_train : int
        At most this many (seeded, random) rows train the codebooks.
    seed : int
    """

    family = "pq"

    def __init__(
        self, m: int, *, iterations: int = 12, max_train: int = 12_800, seed: int = 0
    ) -> None:
        super().__init__()
        self.m = check_int(m, "PQ sub-spaces m", low=1)
        self.iterations = check_int(iterations, "PQ iterations", low=1)
        self.max_train = check_int(max_train, "PQ max_train", low=_PQ_CENTROIDS)
        self.seed = check_int(seed, "seed", low=0)

    @property
    def spec(self) -> str:
        return f"pq:{self.m}"

    def _check_data(self, n: int, d: int) -> None:
        if d % self.m:
            divisors = [v for v in range(1, d + 1) if d % v == 0 and v <= 256]
            raise InvalidInputError(
                f"pq:{self.m} splits each vector into {self.m} equal sub-vectors, but the "
                f"dimension {d} is not divisible by {self.m}; choose m among "
                f"{', '.join(map(str, divisors))}"
            )
        if n < _PQ_CENTROIDS:
            raise InvalidInputError(
                f"pq:{self.m} trains {_PQ_CENTROIDS} centroids per sub-space and needs at least "
                f"{_PQ_CENTROIDS} training vectors (faiss advises {_PQ_MIN_ADVISED}); got {n}"
            )

    def _bytes_per_vector(self, d: int) -> int:
        return self.m

    def _shared_bytes(self, d: int) -> int:
        return 4 * _PQ_CENTROIDS * d  # codebooks

    def _fit(self, X: np.ndarray) -> None:
        with _one_blas_thread():
            self._train(X)

    def _train(self, X: np.ndarray) -> None:
        n, d = X.shape
        if n < _PQ_MIN_ADVISED:
            self.warnings = (
                f"pq:{self.m}: {n} training vectors for {_PQ_CENTROIDS} centroids per "
                f"sub-space; faiss advises at least {_PQ_MIN_ADVISED}, so codebooks are rough",
            )
        rng = np.random.default_rng(self.seed)
        train = (
            X[np.sort(rng.choice(n, size=self.max_train, replace=False))]
            if n > self.max_train
            else X
        )
        sub = d // self.m
        self.codebooks = np.empty((self.m, _PQ_CENTROIDS, sub), dtype=np.float32)
        # One seed per sub-space, so the codebooks do not depend on the thread schedule.
        seeds = rng.integers(0, 2**63, size=self.m)

        def train_one(j: int) -> None:
            part = np.ascontiguousarray(train[:, j * sub : (j + 1) * sub])
            self.codebooks[j] = _kmeans(
                part, _PQ_CENTROIDS, self.iterations, np.random.default_rng(seeds[j])
            )

        _in_threads(train_one, self.m)

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        sub = X.shape[1] // self.m
        codes = np.empty((X.shape[0], self.m), dtype=np.uint8)

        def encode_one(j: int) -> None:
            part = np.ascontiguousarray(X[:, j * sub : (j + 1) * sub])
            codes[:, j] = _assign(part, self.codebooks[j])[0]

        with _one_blas_thread():
            _in_threads(encode_one, self.m)
        return {"codes": codes}

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        codes = arrays["codes"]
        parts = [self.codebooks[j][codes[:, j]] for j in range(self.m)]
        return np.concatenate(parts, axis=1)

    def _tables_are_distances(self) -> bool:
        # Cosine uses squared-distance tables too: with unit database vectors,
        # cos = 1 - |q - x|^2 / 2, and the distance to the reconstruction ranks better than
        # the dot product with it (§4.3 data: recall@10 0.47 vs 0.38 at m = 48; faiss's
        # default IndexPQ on normalised vectors, which the reference table used).
        return self._metric in ("l2", "cosine")

    def _from_distance(self, dist: np.ndarray) -> np.ndarray:
        """Similarity from squared distances, in place."""
        if self._metric == "cosine":
            dist *= -0.5
            dist += 1.0
        else:
            np.negative(dist, out=dist)
        return dist

    def _prepare(self, Q: np.ndarray) -> np.ndarray:
        """Lookup tables (m_queries, m, 256): partial dot products, or squared distances."""
        sub = Q.shape[1] // self.m
        Qs = Q.reshape(Q.shape[0], self.m, sub)
        lut = np.empty((Q.shape[0], self.m, _PQ_CENTROIDS), dtype=np.float32)
        with _one_blas_thread():
            for j in range(self.m):
                lut[:, j, :] = np.ascontiguousarray(Qs[:, j, :]) @ self.codebooks[j].T
        if self._tables_are_distances():
            lut *= -2.0
            lut += np.einsum("jct,jct->jc", self.codebooks, self.codebooks)[None]
            lut += np.einsum("qjt,qjt->qj", Qs, Qs)[:, :, None]
        return lut

    def _score(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        from embscope.core.compression.kernels import adc_scores

        codes = np.ascontiguousarray(arrays["codes"])
        out = np.empty((state.shape[0], codes.shape[0]), dtype=np.float32)
        # The kernel releases the GIL: split the queries over a few threads.
        parts = np.array_split(np.arange(state.shape[0]), _PQ_THREADS)
        parts = [p for p in parts if p.size]
        if len(parts) == 1:
            adc_scores(state, codes, out)
        else:
            with ThreadPoolExecutor(len(parts)) as pool:
                jobs = [
                    pool.submit(adc_scores, state[p[0] : p[-1] + 1], codes, out[p[0] : p[-1] + 1])
                    for p in parts
                ]
                for job in jobs:
                    job.result()
        return self._from_distance(out) if self._tables_are_distances() else out

    def _prepare_pairs(self, Q: np.ndarray) -> np.ndarray:
        return Q  # one table per pair would be m * 256 floats per pair: decode instead

    def _pairs(self, state: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        # The same sums as the tables give, from the reconstruction.
        decoded = self._decode(arrays)
        if self._tables_are_distances():
            diff = state - decoded
            return self._from_distance(np.einsum("ij,ij->i", diff, diff).astype(np.float32))
        pair_dots: np.ndarray = np.einsum("ij,ij->i", state, decoded)
        return pair_dots
