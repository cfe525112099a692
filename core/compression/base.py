"""The codec contract shared by every compression method, and the blocked search on codes.

A codec is fitted on a database, encodes vectors into :class:`Codes`, and scores float
queries against codes. Every ``score`` is a **similarity: larger is nearer**:

* ``cosine`` / ``ip``: the estimated inner product of the query with the database vector
  (for ``cosine`` both sides are unit-normalised first, as in :func:`core.index.prepare_for_metric`);
* ``l2``: minus the estimated **squared** Euclidean distance;
* Hamming codes (``binary``): minus the Hamming distance between the sign codes.

Scoring is asymmetric wherever the method is: the float query meets the compressed database
(dequantised scalar/LVQ codes, PQ lookup tables, projected databases); only the Hamming
variant encodes the query too. :meth:`Codec.search` keeps memory bounded by scoring the
database in row chunks and merging running top-k lists, with ties broken by the smaller
row number (docs/science.md §0.2), so results never depend on the chunking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index_base import check_exclude
from embscope.core.progress import ProgressFn
from embscope.core.validation import (
    METRICS,
    check_int,
    check_metric,
    check_vectors,
    normalise_rows,
    prepare_for_metric,
)

__all__ = [
    "Codec",
    "Codes",
    "exact_scores",
    "rerank_exact",
    "search_rescored",
]


# Rows encoded/decoded at once: a 16384 x 384 float32 block is 25 MB.
ENCODE_BLOCK = 16_384
# Scores held at once during a search: (queries x database rows) floats, 32 MB.
_SCORE_BUDGET = 1 << 23
# Queries prepared at once (a PQ lookup table is 256 * m floats per query).
_QUERY_BLOCK = 1024


@dataclass(frozen=True)
class Codes:
    """The compressed form of ``n`` vectors: named arrays whose first axis is the row.

    Attributes
    ----------
    spec : str
        The spec of the codec that made them (scoring them with another codec is refused).
    dim : int
        Dimension of the vectors they encode.
    arrays : mapping of str to ndarray
        Per-vector data only (codes and per-vector constants); shared data such as
        codebooks live in the codec. ``nbytes`` is therefore the true stored size.
    """

    spec: str
    dim: int
    arrays: Mapping[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of all per-vector arrays together."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    def rows(self, index: slice | np.ndarray) -> Codes:
        """The codes of the selected rows (a slice or an integer array)."""
        return Codes(self.spec, self.dim, {k: v[index] for k, v in self.arrays.items()})

    @staticmethod
    def concatenate(parts: list[Codes]) -> Codes:
        first = parts[0]
        if len(parts) == 1:
            return first
        return Codes(
            first.spec,
            first.dim,
            {k: np.concatenate([p.arrays[k] for p in parts]) for k in first.arrays},
        )


class Codec:
    """Base class: fit on a database, encode, decode, score float queries against codes.

    Subclasses implement ``_fit``, ``_encode``, ``_decode`` (where meaningful), and either
    rely on the decoding scorer (score against the dequantised vectors) or override
    ``_prepare``/``_score``/``_pairs``; ``_bytes_per_vector`` and ``_shared_bytes`` give the
    sizes.

    Attributes
    ----------
    family : str
        Method family ("float", "int8", "lvq", "leanvec", "binary", "pq", "pca", "rp",
        "truncate", "dct").
    metrics : tuple of str
        Metrics the codec supports; fitting with another raises InvalidInputError.
    reduces_dimension : bool
        True when the codes are lower-dimensional float vectors (PCA, RP, truncation, DCT):
        :meth:`compressed_vectors` then returns those instead of a reconstruction.
    has_reranker : bool
        True when the codes carry their own second stage for re-ranking (two-level LVQ's
        residual, LeanVec's secondary LVQ of the full vectors), used by :meth:`rerank`; the
        search and scores are then the first stage's alone.
    """

    family: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = METRICS
    reduces_dimension: ClassVar[bool] = False
    has_reranker: ClassVar[bool] = False
    can_decode: ClassVar[bool] = True

    def __init__(self) -> None:
        self._metric: str | None = None
        self._dim: int | None = None
        self.warnings: tuple[str, ...] = ()

    # -- identity -----------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """The canonical spec string (``parse_codec_spec(codec.spec)`` makes the same codec)."""
        raise NotImplementedError

    @property
    def first_stage(self) -> str | None:
        """What the search scores with when the codes have two stages (e.g. ``"lvq:4 (first
        level)"``); None for one-stage codecs."""
        return None

    @property
    def reranker(self) -> str | None:
        """The codes' own second stage that :meth:`rerank` uses (e.g. ``"secondary lvq:8"``);
        None when re-ranking needs the float vectors."""
        return None

    def __repr__(self) -> str:
        state = f"fitted, metric={self._metric}, d={self._dim}" if self.is_fitted else "unfitted"
        return f"<{type(self).__name__} {self.spec!r} ({state})>"

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def is_fitted(self) -> bool:
        return self._metric is not None

    # -- sizes ----------------------------------------------------------------------------

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector: the code plus its per-vector constants."""
        return self._bytes_per_vector(self._require_fit())

    @property
    def shared_bytes(self) -> int:
        """Bytes stored once per dataset: codebooks, ranges, projection matrices, means."""
        return self._shared_bytes(self._require_fit())

    def _bytes_per_vector(self, d: int) -> int:
        raise NotImplementedError

    def _shared_bytes(self, d: int) -> int:
        return 0

    # -- the public operations -----------------------------------------------------------

    def fit(self, X: Any, *, metric: str = "cosine") -> Codec:
        """Learn whatever the codec needs (ranges, means, codebooks, projections) from ``X``.

        Parameters
        ----------
        X : float32 ndarray of shape (n, d)
            The database (or a calibration sample of it).
        metric : {"cosine", "ip", "l2"}
            For ``cosine`` the rows are unit-normalised before anything is learnt, and every
            later input is normalised the same way.

        Returns
        -------
        self
        """
        metric = check_metric(metric)
        if metric not in self.metrics:
            raise InvalidInputError(
                f"{self.spec} does not support metric {metric!r}: {self._metric_reason()} "
                f"(supported: {', '.join(self.metrics)})"
            )
        X = check_vectors(X, name="vectors to fit the codec on")
        self._check_data(X.shape[0], X.shape[1])
        self.warnings = ()
        self._fit(self._prepare_input(X, metric))
        self._metric, self._dim = metric, int(X.shape[1])
        return self

    def encode(self, X: Any) -> Codes:
        """Compress the rows of ``X``.

        Parameters
        ----------
        X : float32 ndarray of shape (n, d)

        Returns
        -------
        Codes
            ``n`` codes; ``codes.nbytes == n * bytes_per_vector``.
        """
        d = self._require_fit()
        X = check_vectors(X, dim=d, name="vectors to encode")
        parts = []
        for start in range(0, X.shape[0], ENCODE_BLOCK):
            block = self._prepare_input(X[start : start + ENCODE_BLOCK], self._metric)
            parts.append(Codes(self.spec, d, self._encode(block)))
        return Codes.concatenate(parts)

    def decode(self, codes: Codes) -> np.ndarray:
        """Reconstruct vectors from codes, in the original space.

        For ``cosine`` the reconstruction approximates the unit-normalised vectors.

        Returns
        -------
        float32 ndarray of shape (n, d)
        """
        self._check_codes(codes)
        if not self.can_decode:
            raise InvalidInputError(
                f"{self.spec} has no decoder: {self._no_decoder_reason()}; "
                "use compressed_vectors() for the compressed vectors themselves"
            )
        n, d = len(codes), self._require_fit()
        out = np.empty((n, d), dtype=np.float32)
        for start in range(0, n, ENCODE_BLOCK):
            stop = min(start + ENCODE_BLOCK, n)
            out[start:stop] = self._decode(codes.rows(slice(start, stop)).arrays)
        return out

    def compressed_vectors(self, codes: Codes) -> np.ndarray:
        """Float32 vectors that stand for the codes, for saving as a derived dataset.

        The reduced vectors for dimension reducers (PCA, RP, truncation, DCT), the decoded
        vectors otherwise (for binary: the +/-1 sign vectors, whose cosine ranks like Hamming).

        Returns
        -------
        float32 ndarray of shape (n, d) or (n, k)
        """
        return self.decode(codes)

    def prepare_query(self, Q: Any) -> Any:
        """Validate and transform float queries once (normalise, project, lookup tables)."""
        d = self._require_fit()
        Q = check_vectors(Q, dim=d, name="queries")
        return self._prepare(self._prepare_input(Q, self._metric))

    def score(self, Q: Any, codes: Codes) -> np.ndarray:
        """Similarity of every query with every code (larger is nearer; module docstring).

        Parameters
        ----------
        Q : float32 ndarray of shape (m, d)
            Float queries (never compressed, except for Hamming scoring).
        codes : Codes of n vectors

        Returns
        -------
        float32 ndarray of shape (m, n)
        """
        self._check_codes(codes)
        state = self.prepare_query(Q)
        return np.ascontiguousarray(self._score(state, codes.arrays), dtype=np.float32)

    def pair_scores(self, Q: Any, codes: Codes) -> np.ndarray:
        """Similarity of query ``i`` with code ``i`` for every ``i`` (for rank correlations).

        Returns
        -------
        float32 ndarray of shape (n,)
        """
        self._check_codes(codes)
        d = self._require_fit()
        Q = check_vectors(Q, dim=d, name="queries")
        if Q.shape[0] != len(codes):
            raise InvalidInputError(
                f"pair_scores needs one query per code, got {Q.shape[0]} queries and "
                f"{len(codes)} codes"
            )
        out = np.empty(Q.shape[0], dtype=np.float32)
        for start in range(0, Q.shape[0], ENCODE_BLOCK):
            stop = min(start + ENCODE_BLOCK, Q.shape[0])
            state = self._prepare_pairs(self._prepare_input(Q[start:stop], self._metric))
            out[start:stop] = self._pairs(state, codes.rows(slice(start, stop)).arrays)
        return out

    def search(
        self,
        Q: Any,
        codes: Codes,
        k: int,
        *,
        exclude: Any = None,
        progress: ProgressFn | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k codes for each query by the compressed score, in bounded memory.

        Parameters
        ----------
        Q : float32 ndarray of shape (m, d)
        codes : Codes of n vectors
        k : int
            1 <= k <= n (n - 1 with ``exclude``).
        exclude : int ndarray of shape (m,), optional
            A row dropped from each query's answer (the query itself when it is a database row).
        progress : callable(fraction, message) -> bool, optional
            Returning True stops the search with OperationCancelled.

        Returns
        -------
        indices : int64 ndarray of shape (m, k)
            Code rows, by decreasing score, ties by the smaller row.
        scores : float32 ndarray of shape (m, k)
        """
        self._check_codes(codes)
        d = self._require_fit()
        Q = check_vectors(Q, dim=d, name="queries")
        n, m = len(codes), Q.shape[0]
        ex = check_exclude(exclude, m)
        k = check_int(k, "k", low=1, high=n - (1 if ex is not None else 0))
        chunk = int(np.clip(_SCORE_BUDGET // min(m, _QUERY_BLOCK), 1024, ENCODE_BLOCK))
        out_i = np.empty((m, k), dtype=np.int64)
        out_s = np.empty((m, k), dtype=np.float32)
        steps = -(-m // _QUERY_BLOCK) * -(-n // chunk)
        done = 0
        for q0 in range(0, m, _QUERY_BLOCK):
            q1 = min(q0 + _QUERY_BLOCK, m)
            state = self._prepare(self._prepare_input(Q[q0:q1], self._metric))
            best_i = np.full((q1 - q0, 0), 0, dtype=np.int64)
            best_s = np.full((q1 - q0, 0), 0, dtype=np.float32)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                S = np.asarray(
                    self._score(state, codes.rows(slice(start, stop)).arrays), dtype=np.float32
                )
                if ex is not None:
                    rows = np.flatnonzero((ex[q0:q1] >= start) & (ex[q0:q1] < stop))
                    S[rows, ex[q0:q1][rows] - start] = -np.inf
                if best_i.shape[1] < k:
                    cols = top_columns(S, min(k, stop - start))
                    best_i, best_s = _merge(
                        best_i, best_s, cols + start, np.take_along_axis(S, cols, axis=1), k
                    )
                else:
                    best_i, best_s = _merge_above(best_i, best_s, S, start)
                done += 1
                if progress is not None and progress(
                    done / steps, f"{self.spec}: searching with the compressed vectors"
                ):
                    raise OperationCancelled(f"search with {self.spec} was cancelled")
            out_i[q0:q1], out_s[q0:q1] = best_i, best_s
        return out_i, out_s

    def rerank(self, Q: Any, codes: Codes, candidates: np.ndarray) -> np.ndarray:
        """Second-stage similarities of each query with its candidate rows (two-level LVQ and
        LeanVec with a secondary: ``has_reranker``).

        Parameters
        ----------
        Q : float32 ndarray of shape (m, d)
        codes : Codes
        candidates : int ndarray of shape (m, c)
            Code rows per query.

        Returns
        -------
        float32 ndarray of shape (m, c)
        """
        raise InvalidInputError(
            f"{self.spec} has no second stage of its own; re-rank with the float vectors "
            "(core.compression.rerank_exact)"
        )

    # -- hooks for subclasses ------------------------------------------------------------

    def _check_data(self, n: int, d: int) -> None:
        """Raise InvalidInputError when (n, d) cannot be fitted (e.g. k > d)."""

    def _metric_reason(self) -> str:
        return "the method does not estimate that similarity"

    def _no_decoder_reason(self) -> str:
        return "the method cannot reconstruct vectors"

    def _prepare_input(self, X: np.ndarray, metric: str | None) -> np.ndarray:
        return normalise_rows(X) if metric == "cosine" else X

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _encode(self, X: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _decode(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    # The default scorer: the float query against the dequantised database.
    def _prepare(self, Q: np.ndarray) -> Any:
        return Q

    def _score(self, state: Any, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_similarity(state, self._decode(arrays), self._metric)

    def _prepare_pairs(self, Q: np.ndarray) -> Any:
        return self._prepare(Q)

    def _pairs(self, state: Any, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return dense_pair_similarity(state, self._decode(arrays), self._metric)

    # -- checks -----------------------------------------------------------------------------

    def _require_fit(self) -> int:
        if self._dim is None:
            raise InvalidInputError(f"codec {self.spec} is not fitted yet: call fit(X) first")
        return self._dim

    def _require_metric(self) -> str:
        if self._metric is None:
            raise InvalidInputError(f"codec {self.spec} is not fitted yet: call fit(X) first")
        return self._metric

    def _check_codes(self, codes: Any) -> None:
        d = self._require_fit()
        if not isinstance(codes, Codes):
            raise InvalidInputError(
                f"expected Codes made by {self.spec}.encode(), got {type(codes).__name__}"
            )
        if codes.spec != self.spec or codes.dim != d:
            raise InvalidInputError(
                f"these codes were made by {codes.spec} (d = {codes.dim}), not by this "
                f"{self.spec} codec (d = {d}); encode the vectors with this codec"
            )


# -- scoring helpers ------------------------------------------------------------------------


def dense_similarity(Q: np.ndarray, D: np.ndarray, metric: str | None) -> np.ndarray:
    """Similarity of float queries with float rows: dot, or minus the squared distance (l2).

    Returns
    -------
    float32 ndarray of shape (m, n)
    """
    S: np.ndarray = Q @ D.T
    if metric == "l2":
        S *= 2.0
        S -= np.einsum("ij,ij->i", Q, Q)[:, None]
        S -= np.einsum("ij,ij->i", D, D)[None, :]
        np.minimum(S, 0.0, out=S)
    return S


def dense_pair_similarity(Q: np.ndarray, D: np.ndarray, metric: str | None) -> np.ndarray:
    """Row-wise similarity of ``Q[i]`` with ``D[i]`` (same conventions as dense_similarity)."""
    if metric == "l2":
        diff = Q - D
        distances: np.ndarray = np.einsum("ij,ij->i", diff, diff)
        return -distances
    similarities: np.ndarray = np.einsum("ij,ij->i", Q, D)
    return similarities


def exact_scores(Q: np.ndarray, X: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Full-precision similarities of each query with its candidate rows of ``X``.

    Parameters
    ----------
    Q : float32 ndarray of shape (m, d)
        Prepared for the metric (unit rows for cosine).
    X : float32 ndarray of shape (n, d)
        Prepared the same way.
    rows : int ndarray of shape (m, c)

    Returns
    -------
    float32 ndarray of shape (m, c)
        Dot products, or minus squared Euclidean distances for ``l2``.
    """
    out = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, rows.shape[0], 256):
        stop = start + 256
        G = X[rows[start:stop]]  # (b, c, d)
        q = Q[start:stop, None, :]
        if metric == "l2":
            diff = G - q
            out[start:stop] = -np.einsum("mcd,mcd->mc", diff, diff)
        else:
            out[start:stop] = np.einsum("mcd,mcd->mc", G, q)
    return out


def rerank_exact(
    Q: np.ndarray, X: np.ndarray, candidates: np.ndarray, k: int, *, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate rows with full-precision vectors and keep the best ``k``.

    The second stage of two-stage search (docs/science.md §4.1): candidates come from the
    compressed score, their order from float32.

    Parameters
    ----------
    Q : float32 ndarray of shape (m, d)
        Prepared for the metric (unit rows for cosine; :func:`core.index.prepare_for_metric`).
    X : float32 ndarray of shape (n, d)
        The database, prepared the same way.
    candidates : int ndarray of shape (m, c), c >= k
    k : int
    metric : {"cosine", "ip", "l2"}

    Returns
    -------
    indices : int64 ndarray of shape (m, k)
    scores : float32 ndarray of shape (m, k)
        Exact similarities (dot, or minus squared distance), decreasing; ties by row.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    return sort_by_score(candidates, exact_scores(Q, X, candidates, metric), k)


def search_rescored(
    codec: Codec,
    Q: Any,
    codes: Codes,
    X: Any,
    k: int,
    *,
    multiplier: int = 4,
    exclude: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-stage search: the top ``multiplier·k`` by the compressed score, re-ranked exactly.

    Parameters
    ----------
    codec : Codec
        Fitted; ``codes`` are its codes of the rows of ``X``.
    Q : float32 ndarray of shape (m, d)
    codes : Codes of n vectors
    X : float32 ndarray of shape (n, d)
        The full-precision database (raw: it is prepared for the codec's metric here).
    k, multiplier : int
        ``multiplier`` is sentence-transformers' ``rescore_multiplier`` (4 in the HF study).
    exclude : int ndarray of shape (m,), optional

    Returns
    -------
    indices : int64 ndarray of shape (m, k)
    scores : float32 ndarray of shape (m, k)
        Exact similarities (dot, or minus squared distance for ``l2``).
    """
    d, metric = codec._require_fit(), codec._require_metric()
    X = check_vectors(X, dim=d, name="full-precision vectors")
    if X.shape[0] != len(codes):
        raise InvalidInputError(
            f"the full-precision vectors ({X.shape[0]}) must be the {len(codes)} encoded ones"
        )
    multiplier = check_int(multiplier, "multiplier", low=1)
    k = check_int(k, "k", low=1, high=len(codes) - (0 if exclude is None else 1))
    depth = min(multiplier * k, len(codes) - (0 if exclude is None else 1))
    candidates, _ = codec.search(Q, codes, depth, exclude=exclude)
    queries = prepare_for_metric(check_vectors(Q, dim=d, name="queries"), metric)
    scores = score_candidates(
        queries, candidates, lambda rows: prepare_for_metric(X[rows], metric), metric
    )
    return sort_by_score(candidates, scores, k)


def score_candidates(
    queries: np.ndarray,
    candidates: np.ndarray,
    vectors_of: Callable[[np.ndarray], np.ndarray],
    metric: str,
) -> np.ndarray:
    """Similarity of each query with each of its candidate rows (dot, or minus the squared
    distance for ``l2``), float32 (m, c); ``vectors_of(rows)`` gives the rows' vectors as
    they are compared (full precision, or a codec's decoded second stage). Blocks of 256
    queries keep memory bounded."""
    scores = np.empty(candidates.shape, dtype=np.float32)
    for start in range(0, candidates.shape[0], 256):
        rows = candidates[start : start + 256]
        block = vectors_of(rows.ravel()).reshape(rows.shape[0], rows.shape[1], -1)
        q = queries[start : start + 256, None, :]
        if metric == "l2":
            diff = block - q
            scores[start : start + 256] = -np.einsum("mcd,mcd->mc", diff, diff)
        else:
            scores[start : start + 256] = np.einsum("mcd,mcd->mc", block, q)
    return scores


def sort_by_score(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best (row, score) pairs: decreasing score, then increasing row."""
    order = np.lexsort((rows, -scores), axis=-1)[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)


def top_columns(S: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of each row's ``kk`` largest scores; ties broken by the smaller column.

    Returns
    -------
    int64 ndarray of shape (m, kk), in no particular order.
    """
    m, c = S.shape
    if kk >= c:
        return np.broadcast_to(np.arange(c, dtype=np.int64), (m, c)).copy()
    part = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
    kth = np.take_along_axis(S, part, axis=1).min(axis=1)
    # Rows where more columns tie at the boundary than fit: argpartition's choice among the
    # tied ones is arbitrary, so take the smallest columns (Hamming scores tie massively).
    ties = np.flatnonzero((S >= kth[:, None]).sum(axis=1) > kk)
    for r in ties:
        above = np.flatnonzero(S[r] > kth[r])
        equal = np.flatnonzero(S[r] == kth[r])
        part[r] = np.concatenate([above, equal[: kk - above.size]])
    return part.astype(np.int64, copy=False)


def _merge(
    best_i: np.ndarray, best_s: np.ndarray, new_i: np.ndarray, new_s: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([best_i, new_i], axis=1)
    scores = np.concatenate([best_s, new_s], axis=1)
    return sort_by_score(rows, scores, min(k, rows.shape[1]))


def _merge_above(
    best_i: np.ndarray, best_s: np.ndarray, S: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a score block into full running top-k lists, looking only at the entries that
    can enter them (score >= the row's current k-th best): far cheaper than a partition of
    every row once the lists are full."""
    m, k = best_i.shape
    rows, cols = np.nonzero(S >= best_s[:, -1:])
    if rows.size == 0:
        return best_i, best_s
    all_rows = np.concatenate([np.repeat(np.arange(m), k), rows])
    labels = np.concatenate([best_i.ravel(), cols + offset])
    scores = np.concatenate([best_s.ravel(), S[rows, cols]])
    order = np.lexsort((labels, -scores, all_rows))
    counts = np.bincount(all_rows, minlength=m)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = order[(first[:, None] + np.arange(k)).ravel()]
    return labels[take].reshape(m, k), scores[take].reshape(m, k)
