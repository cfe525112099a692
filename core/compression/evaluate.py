"""What each compression costs: recall against exact search, rank fidelity, size and time.

Protocol (docs/science.md §4.1). A seeded sample of rows of ``X`` are the queries.

* ``held_out=False`` (default): the database is all of ``X``; each query is excluded from
  its own results (by row: an identical duplicate elsewhere stays a neighbour). Codecs are
  fitted on everything, as they would be when the dataset is compressed.
* ``held_out=True``: the query rows are removed from the database, and codecs never see
  them (the protocol of docs/science.md §4.3's synthetic table).

Ground truth is exact float32 search (:func:`core.index.exact_knn`, ties by row). For each
codec: ``recall@k`` of the compressed top-k; ``recall@100`` when the database has at least
1000 candidates; ``recall@k`` after re-ranking the top ``rescore·k`` compressed candidates
(with float32 vectors, or with the codec's own second stage); Spearman's ρ between original
and compressed similarities of random database pairs (query side float, database side
compressed, as in search); and per query the neighbourhood overlap
``|kNN_compressed ∩ kNN_exact| / k`` — the query's own recall, i.e. where compression hurts,
for the rows ``CompressionReport.query_rows`` of ``X`` (colour those points of a projection).

Two-level codecs (LVQ-B1×B2, LeanVec with a secondary) are scored alike, as SVS runs them:
``recall@k`` (and Spearman's ρ) is their **first stage alone** (the LVQ-B1 codes; LeanVec's
reduced primary), and ``recall@k`` re-ranked is the first stage's top ``rescore·k`` re-ranked
with their own second level (``rescored_with``), which is already in their bytes.

Every recall is a mean over the queries and carries a 95 % interval: the percentile bootstrap
over queries of :func:`core.stats.bootstrap_ci` (seeded with ``seed``), as every interval in
embscope is made.

Bytes of two-stage search: re-ranking with float32 holds the float32 vectors beside the codes,
so a re-ranked figure costs ``bytes_per_vector + 4·d`` (``bytes_per_vector_rescored``); a
codec re-ranked by its own second level costs its code bytes alone (plain float32 too).

Geometry: IsoScore and effective rank (docs/science.md §6.1, §6.4) of the compressed copy — the
vectors a saved copy holds (:func:`compressed_vectors`) — on a seeded sample of database rows,
beside the float32 vectors' own scores **at the same dimension** on the same rows (see
:func:`geometry_reference`). A codec can keep recall and still change the space's shape:
binary codes spread the variance, and the Geometry page would then score a saved copy
differently.

Memory stays bounded at 100k × 384: one prepared copy of the database, codes, and scores in
blocks (:meth:`core.compression.Codec.search`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embscope.core.compression.base import (
    ENCODE_BLOCK,
    Codec,
    rerank_exact,
    sort_by_score,
)
from embscope.core.compression.codecs import as_codec, default_codecs
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.geometry.intrinsic import limit_blas_threads
from embscope.core.geometry.isotropy import (
    effective_rank_from_eigenvalues,
    isoscore_from_eigenvalues,
    moments,
)
from embscope.core.index import exact_knn
from embscope.core.progress import ProgressFn
from embscope.core.stats import bootstrap_ci, ci_json, finite_or_none, format_ci
from embscope.core.validation import check_int, check_metric, check_vectors, prepare_for_metric

__all__ = [
    "CodecResult",
    "CompressionReport",
    "compressed_vectors",
    "evaluate_codecs",
    "format_report",
    "geometry_reference",
    "save_compressed_copy",
    "space_geometry",
]

# recall@100 is reported when the database offers at least this many candidates per query
# (below it the top 100 is too large a share of the database to mean much).
_RECALL_100_MIN = 1000
# Database rows the geometry scores are computed on. On 100k x 384 (12-cluster mixture, cosine)
# a 5,000-row sample gives IsoScore within 3e-4 and effective rank within 1 % of the full data's.
GEOMETRY_SAMPLE = 5000
# Queries per exact-search call: it holds (block x n) float32 distances and int64 indices,
# 77 MB at n = 100k.
_TRUTH_BLOCK = 64
_NO_CI = (float("nan"), float("nan"))


@dataclass(frozen=True)
class CodecResult:
    """One codec's row of the comparison.

    Attributes
    ----------
    spec, family : str
    bytes_per_vector : int
        Code plus per-vector constants.
    shared_bytes : int
        Stored once: codebooks, ranges, projection matrices, means.
    compression_ratio : float
        ``4 d / bytes_per_vector`` (float32 = 1).
    recall : float
        Mean recall@k of the compressed top-k (k = ``CompressionReport.k``); for two-level
        codecs, of the first stage alone (``first_stage``).
    recall_100 : float or None
        Mean recall@100, when the database is large enough (>= 1000 candidates).
    recall_rescored : float
        Mean recall@k after re-ranking the compressed top ``rescore·k``.
    rescored_with : str
        ``"float32"``, or the codec's own second stage (e.g. ``"secondary lvq:8"``).
    spearman : float
        Spearman's ρ between original and compressed similarities of random pairs (NaN if
        the compressed scores are constant); the first stage's for two-level codecs.
    overlap : float32 ndarray of shape (n_queries,)
        Per query row (``CompressionReport.query_rows``): ``|kNN_compressed ∩ kNN_exact| / k``.
    encode_seconds : float
        Fitting the codec and encoding the database.
    query_seconds : float
        Compressed search of all queries (before re-ranking).
    explained_variance : float or None
        PCA only: the variance fraction the kept components hold.
    warnings : tuple of str
    compressed_dim : int or None
        Dimension of the compressed copy's vectors (``d`` for quantisers, ``k`` for PCA-k,
        random projection, truncation and DCT).
    isoscore, effective_rank : float or None
        IsoScore and effective rank (singular values) of the compressed copy on the
        geometry sample (``CompressionReport.geometry_rows``); None when not measured.
    recall_ci, recall_rescored_ci : (float, float)
        95 % intervals of ``recall`` and ``recall_rescored`` (bootstrap over queries).
    recall_100_ci : (float, float) or None
        The same for ``recall_100``.
    overlap_rescored : float32 ndarray of shape (n_queries,) or None
        Per query row, recall@k after re-ranking (``recall_rescored`` is its mean).
    first_stage : str or None
        Two-level codecs: what ``recall`` searched with (e.g. ``"lvq:4 (first level)"``).
    rerank_bytes : int
        Bytes per vector the re-ranking representation adds to the code: ``4·d`` for float32
        re-ranking, 0 for a codec's own second stage (already in ``bytes_per_vector``) and for
        float32 itself.
    reference_isoscore, reference_effective_rank : float or None
        The float32 vectors' scores at the copy's dimension on the same rows
        (:func:`geometry_reference`): the original itself for codecs that keep every
        dimension, its top-``compressed_dim`` principal components for dimension reducers.
    geometry_reference : str
        What those reference scores were computed on, e.g. ``"float32"`` or
        ``"float32, top 128 principal components"``.
    """

    spec: str
    family: str
    bytes_per_vector: int
    shared_bytes: int
    compression_ratio: float
    recall: float
    recall_100: float | None
    recall_rescored: float
    rescored_with: str
    spearman: float
    overlap: np.ndarray = field(repr=False)
    encode_seconds: float
    query_seconds: float
    explained_variance: float | None = None
    warnings: tuple[str, ...] = ()
    compressed_dim: int | None = None
    isoscore: float | None = None
    effective_rank: float | None = None
    recall_ci: tuple[float, float] = _NO_CI
    recall_100_ci: tuple[float, float] | None = None
    recall_rescored_ci: tuple[float, float] = _NO_CI
    overlap_rescored: np.ndarray | None = field(default=None, repr=False)
    first_stage: str | None = None
    rerank_bytes: int = 0
    reference_isoscore: float | None = None
    reference_effective_rank: float | None = None
    geometry_reference: str = "float32"

    @property
    def bytes_per_vector_rescored(self) -> int:
        """Bytes per vector two-stage search holds: the code plus the re-ranking vectors."""
        return self.bytes_per_vector + self.rerank_bytes


@dataclass(frozen=True)
class CompressionReport:
    """The result of :func:`evaluate_codecs`.

    Attributes
    ----------
    results : tuple of CodecResult
        In the order the codecs were given.
    metric : str
    k, rescore : int
    n : int
        Rows of ``X``.
    n_database : int
        Rows searched (``n`` minus the held-out queries).
    dim : int
    query_rows : int64 ndarray of shape (n_queries,)
        Rows of ``X`` used as queries (the rows ``CodecResult.overlap`` refers to).
    held_out : bool
    n_pairs, seed : int
    ground_truth_seconds : float
        Exact float32 search of the queries (the baseline's query time).
    warnings : tuple of str
    geometry_rows : int
        Database rows the geometry scores are computed on (a seeded sample).
    original_isoscore, original_effective_rank : float or None
        The same scores of the float32 vectors (prepared for the metric) on those rows.
    sampled_from : int or None
        The dataset's rows when ``X`` was a seeded sample of them (``n`` of ``sampled_from``;
        ``query_rows`` are then dataset rows); None when every row was used.
    """

    results: tuple[CodecResult, ...]
    metric: str
    k: int
    rescore: int
    n: int
    n_database: int
    dim: int
    query_rows: np.ndarray = field(repr=False)
    held_out: bool
    n_pairs: int
    seed: int
    ground_truth_seconds: float
    warnings: tuple[str, ...] = ()
    geometry_rows: int = 0
    original_isoscore: float | None = None
    original_effective_rank: float | None = None
    sampled_from: int | None = None

    def result(self, spec: str) -> CodecResult:
        """The result of the codec with canonical spec ``spec``."""
        for r in self.results:
            if r.spec == spec:
                return r
        raise InvalidInputError(
            f"no codec {spec!r} in this report; it has {', '.join(r.spec for r in self.results)}"
        )

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per codec.

        Keys: ``codec``, ``family``, ``bytes_per_vector``, ``shared_bytes``,
        ``compression_ratio``, ``recall@{k}`` (two-level codecs: the first stage, named in
        ``first_stage``, else None), ``recall@{k}_rescored``, ``rescored_with``,
        ``rerank_bytes_per_vector`` and ``bytes_per_vector_rescored`` (the code plus the
        re-ranking representation), ``recall@100`` (None when not measured), each recall's
        95 % interval beside it as ``<key>_ci: [lo, hi]``, ``spearman`` (None if undefined),
        ``encode_seconds``, ``query_seconds``, ``explained_variance`` (PCA, else None),
        ``dim`` (of the compressed copy's vectors), ``isoscore`` and ``effective_rank`` (of
        the compressed copy) beside ``reference_isoscore`` and ``reference_effective_rank``
        (the float32 vectors at the same dimension, described by ``geometry_reference``).
        """
        out = []
        k = self.k
        for r in self.results:
            out.append(
                {
                    "codec": r.spec,
                    "family": r.family,
                    "bytes_per_vector": r.bytes_per_vector,
                    "shared_bytes": r.shared_bytes,
                    "compression_ratio": r.compression_ratio,
                    f"recall@{k}": r.recall,
                    f"recall@{k}_ci": ci_json(r.recall_ci),
                    "first_stage": r.first_stage,
                    f"recall@{k}_rescored": r.recall_rescored,
                    f"recall@{k}_rescored_ci": ci_json(r.recall_rescored_ci),
                    "rescored_with": r.rescored_with,
                    "rerank_bytes_per_vector": r.rerank_bytes,
                    "bytes_per_vector_rescored": r.bytes_per_vector_rescored,
                    "recall@100": r.recall_100,
                    "recall@100_ci": None if r.recall_100_ci is None else ci_json(r.recall_100_ci),
                    "spearman": None if math.isnan(r.spearman) else r.spearman,
                    "encode_seconds": r.encode_seconds,
                    "query_seconds": r.query_seconds,
                    "explained_variance": r.explained_variance,
                    "dim": r.compressed_dim,
                    "isoscore": finite_or_none(r.isoscore),
                    "effective_rank": finite_or_none(r.effective_rank),
                    "reference_isoscore": finite_or_none(r.reference_isoscore),
                    "reference_effective_rank": finite_or_none(r.reference_effective_rank),
                    "geometry_reference": r.geometry_reference,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """Settings and rows: ``{"metric", "k", "rescore", "n", "n_database", "dim",
        "n_queries", "held_out", "n_pairs", "seed", "ground_truth_seconds", "warnings",
        "geometry_rows", "original_isoscore", "original_effective_rank", "sampled_from",
        "rows": [...]}`` (rows as :meth:`rows`; ``sampled_from``: the dataset's size when ``n``
        rows were a sample of it, else null)."""
        return {
            "metric": self.metric,
            "k": self.k,
            "rescore": self.rescore,
            "n": self.n,
            "n_database": self.n_database,
            "dim": self.dim,
            "n_queries": int(self.query_rows.shape[0]),
            "held_out": self.held_out,
            "n_pairs": self.n_pairs,
            "seed": self.seed,
            "ground_truth_seconds": self.ground_truth_seconds,
            "warnings": list(self.warnings),
            "geometry_rows": self.geometry_rows,
            "original_isoscore": finite_or_none(self.original_isoscore),
            "original_effective_rank": finite_or_none(self.original_effective_rank),
            "sampled_from": self.sampled_from,
            "rows": self.rows(),
        }

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (one row per codec)."""
        import pandas as pd

        return pd.DataFrame(self.rows())


def format_report(
    report: CompressionReport, rows: list[dict[str, Any]] | None = None, *, name: str = ""
) -> str:
    """The report as a plain-text table (``embscope compress`` without ``--json``): each
    recall ± half its 95 % interval, the re-ranked recall with the bytes two-stage search
    holds, and each copy's IsoScore beside the float32 vectors' at the same dimension.

    ``rows``: :meth:`CompressionReport.rows`, possibly with ``"saved_dataset"`` added.
    """
    rows = report.rows() if rows is None else rows
    k = report.k

    def recall(row: dict[str, Any], key: str) -> str:
        lo, hi = (float("nan") if c is None else float(c) for c in row[f"{key}_ci"])
        return format_ci(row[key], (lo, hi))

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [
        f"compression of {name!r} ({report.n} x {report.dim}"
        + (f", a seeded sample of its {report.sampled_from}" if report.sampled_from else "")
        + f", {report.metric}, "
        f"{report.query_rows.shape[0]} queries, recall@{k} against exact float32 search, "
        "± half its 95 % interval):",
        f"  {'codec':<18} {'bytes/vec':>9} {'shared':>10} {f'recall@{k}':>15} "
        f"{f'x{report.rescore} re-ranked':>15} {'bytes':>6} {'spearman':>9} {'isoscore':>9} "
        f"{'float32':>8} {'encode s':>9}",
    ]
    if report.original_isoscore is not None:
        lines.append(
            f"  (float32: isoscore {report.original_isoscore:.4f}, effective rank "
            f"{report.original_effective_rank:.1f}, on {report.geometry_rows} sampled rows; "
            "a copy of k < d dims is set beside the float32 top-k principal components)"
        )
    for row in rows:
        saved = row.get("saved_dataset")
        lines.append(
            f"  {row['codec']:<18} {row['bytes_per_vector']:>9} {row['shared_bytes']:>10} "
            f"{recall(row, f'recall@{k}'):>15} {recall(row, f'recall@{k}_rescored'):>15} "
            f"{row['bytes_per_vector_rescored']:>6} {number(row['spearman']):>9} "
            f"{number(row['isoscore']):>9} {number(row['reference_isoscore']):>8} "
            f"{row['encode_seconds']:>9.2f}"
            + ("" if saved is None else f"  saved as dataset {saved}")
        )
    lines.append(
        f"  re-ranked: the top {report.rescore}*{k} re-ranked with float32 vectors (bytes: code "
        f"+ 4*d = {4 * report.dim}), or by a two-level codec's own second level (lvq:B1xB2, "
        f"leanvec: bytes = the code alone, and recall@{k} is their first stage alone)"
    )
    return "\n".join(lines) + "\n"


def space_geometry(V: np.ndarray) -> tuple[float, float]:
    """(IsoScore, effective rank) of the rows of ``V`` (float, shape (m, d'), m >= 2), from
    one covariance spectrum; NaN where undefined (one dimension, no variance)."""
    return _spectrum_geometry(moments(V).covariance_eigenvalues())


def _spectrum_geometry(eigenvalues: np.ndarray) -> tuple[float, float]:
    return isoscore_from_eigenvalues(eigenvalues), effective_rank_from_eigenvalues(eigenvalues)


def geometry_reference(eigenvalues: np.ndarray, dim: int) -> tuple[float, float, str]:
    """The float32 vectors' (IsoScore, effective rank) at dimension ``dim``, and what they are.

    IsoScore and effective rank depend on the dimension they are measured in: k equal
    variances score ``(k − 1)/(n − 1)`` in n dimensions, and the effective rank of k-dim
    vectors is at most k. A k-dim copy set beside the d-dim original therefore compares
    unlike things (PCA-128 of a 384-d space reads "more isotropic" only because it has fewer
    dimensions). So a compressed copy of ``dim < d`` dimensions is compared with the
    original's own **top-``dim`` principal projection** on the same rows: the ``dim``-dim view
    of the original that keeps the most variance, and exactly what PCA-``dim`` keeps. Both
    scores are rotation-invariant, so that projection's scores are those of the top ``dim``
    eigenvalues of the rows' covariance. PCA-k then matches its reference (up to the basis
    being fitted on the whole database, not the sample), and what another reducer shows beside
    it is its own doing (which directions it kept), not the dimension. Reconstructed vectors
    were not used instead: random projection has no decoder, and a rank-k reconstruction
    scored in d dimensions is a degenerate d-dim space, unlike the k-dim copy a user saves.

    Parameters
    ----------
    eigenvalues : float ndarray of shape (d,)
        Covariance eigenvalues of the float32 rows (prepared for the metric), descending.
    dim : int
        The compressed copy's dimension.

    Returns
    -------
    (isoscore, effective_rank, description)
    """
    d = eigenvalues.shape[0]
    if dim >= d:
        return (*_spectrum_geometry(eigenvalues), "float32")
    top = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1][:dim]
    return (*_spectrum_geometry(top), f"float32, top {dim} principal components")


def _interval(per_query: np.ndarray | None, seed: int) -> tuple[float, float] | None:
    """95 % interval of a mean recall from its per-query values (None when not measured)."""
    return None if per_query is None else bootstrap_ci(per_query, seed=seed)


def _stage(progress: ProgressFn | None, low: float, high: float) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda f, m: progress(low + (high - low) * f, m)


def _tick(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None and progress(fraction, message):
        raise OperationCancelled("the compression comparison was cancelled")


def _hits(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row, how many of ``found``'s labels are in ``truth`` (both (m, k), unique rows)."""
    out = np.empty(found.shape[0], dtype=np.int64)
    for start in range(0, found.shape[0], 512):
        f, t = found[start : start + 512], truth[start : start + 512]
        out[start : start + 512] = (f[:, :, None] == t[:, None, :]).any(axis=2).sum(axis=1)
    return out


def _pair_similarity(X: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str) -> np.ndarray:
    out = np.empty(i.shape[0], dtype=np.float32)
    for start in range(0, i.shape[0], ENCODE_BLOCK):
        a, b = X[i[start : start + ENCODE_BLOCK]], X[j[start : start + ENCODE_BLOCK]]
        if metric == "l2":
            diff = a - b
            out[start : start + ENCODE_BLOCK] = -np.einsum("ij,ij->i", diff, diff)
        else:
            out[start : start + ENCODE_BLOCK] = np.einsum("ij,ij->i", a, b)
    return out


def _prepared(X: np.ndarray, rows: np.ndarray | None, metric: str) -> np.ndarray:
    """Rows of ``X`` prepared for the metric, copied block by block (no full-size temporaries);
    ``X`` itself when nothing needs to change."""
    if rows is None and metric != "cosine":
        return X
    n = X.shape[0] if rows is None else rows.shape[0]
    out = np.empty((n, X.shape[1]), dtype=np.float32)
    for start in range(0, n, ENCODE_BLOCK):
        stop = min(start + ENCODE_BLOCK, n)
        block = X[start:stop] if rows is None else X[rows[start:stop]]
        out[start:stop] = prepare_for_metric(block, metric)
    return out


def evaluate_codecs(
    X: Any,
    codecs: Any = None,
    *,
    metric: str = "cosine",
    n_queries: int = 1000,
    k: int = 10,
    rescore: int = 4,
    held_out: bool = False,
    n_pairs: int = 100_000,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> CompressionReport:
    """Compare codecs on ``X``: recall against exact search, rank fidelity, size, time.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    codecs : sequence of (str or Codec), optional
        Spec strings (:func:`core.compression.parse_codec_spec`) or codecs (fitted here, in
        place). Default: :func:`core.compression.default_codecs` for ``d``.
    metric : {"cosine", "ip", "l2"}
        Codecs that do not support it (binary with l2) raise InvalidInputError.
    n_queries : int
        Query rows sampled from ``X`` (at most n, or n // 2 when held out; a warning says so).
    k : int
        Neighbours for recall and for the overlap.
    rescore : int
        Re-rank multiplier r >= 1: the compressed top ``r·k`` are re-ranked.
    held_out : bool
        Remove the query rows from the database (see the module docstring).
    n_pairs : int
        Random database pairs for Spearman's ρ.
    seed : int
        Seeds the query and pair samples, and the codecs made from spec strings.
    progress : callable(fraction, message) -> bool, optional
        Returning True stops the comparison with OperationCancelled.

    Returns
    -------
    CompressionReport
    """
    # BLAS threads as the geometry scores use them (core.geometry.intrinsic.BLAS_THREADS, 1
    # by default): measured on the busy 2-core machine, bench_compression took 48 s with one
    # OpenBLAS thread and 79 s with two.
    with limit_blas_threads():
        return _evaluate(
            X,
            codecs,
            metric=metric,
            n_queries=n_queries,
            k=k,
            rescore=rescore,
            held_out=held_out,
            n_pairs=n_pairs,
            seed=seed,
            progress=progress,
        )


def _evaluate(
    X: Any,
    codecs: Any,
    *,
    metric: str,
    n_queries: int,
    k: int,
    rescore: int,
    held_out: bool,
    n_pairs: int,
    seed: int,
    progress: ProgressFn | None,
) -> CompressionReport:
    from scipy.stats import spearmanr  # 0.8 s to import: only when comparing

    X = check_vectors(X)
    metric = check_metric(metric)
    n, d = X.shape
    n_queries = check_int(n_queries, "n_queries", low=1)
    k = check_int(k, "k", low=1)
    rescore = check_int(rescore, "rescore", low=1)
    n_pairs = check_int(n_pairs, "n_pairs", low=10)
    seed = check_int(seed, "seed", low=0)
    if n < (4 if held_out else 3):
        raise InvalidInputError(f"comparing codecs needs at least a few vectors, got {n}")
    warnings: list[str] = []

    rng = np.random.default_rng(seed)
    max_queries = n // 2 if held_out else n
    if n_queries > max_queries:
        warnings.append(
            f"{max_queries} queries instead of {n_queries}: the dataset has {n} vectors"
            + (" and half of them stay in the database" if held_out else "")
        )
        n_queries = max_queries
    query_rows = np.sort(rng.choice(n, size=n_queries, replace=False)).astype(np.int64)
    if held_out:
        keep = np.ones(n, dtype=bool)
        keep[query_rows] = False
        database = _prepared(X, np.flatnonzero(keep), metric)
        exclude = None
    else:
        database = _prepared(X, None, metric)
        exclude = query_rows
    queries = _prepared(X, query_rows, metric)
    n_db = database.shape[0]
    available = n_db - (0 if held_out else 1)
    if k > available:
        raise InvalidInputError(
            f"k = {k} asks for more neighbours than the {available} database vectors per query"
        )
    with_100 = k < 100 <= available and available >= _RECALL_100_MIN
    depth = max(k, 100 if with_100 else 0)
    candidates = min(max(depth, rescore * k), available)

    if codecs is None:
        codecs = default_codecs(d, n=n_db)
    if isinstance(codecs, (str, Codec)):
        codecs = [codecs]
    codecs = [as_codec(c, seed=seed) for c in codecs]
    if not codecs:
        raise InvalidInputError("no codecs to compare: give at least one spec, e.g. int8")

    _tick(progress, 0.0, "finding the true nearest neighbours of the queries (exact search)")
    start = time.perf_counter()
    truth = np.empty((n_queries, depth), dtype=np.int64)
    for q0 in range(0, n_queries, _TRUTH_BLOCK):  # exact_knn holds (block x n) distances
        q1 = min(q0 + _TRUTH_BLOCK, n_queries)
        truth[q0:q1] = exact_knn(
            queries[q0:q1],
            database,
            depth,
            metric=metric,
            exclude=None if exclude is None else exclude[q0:q1],
        )[0]
        _tick(progress, 0.05 * q1 / n_queries, "finding the true nearest neighbours (exact search)")
    gt_seconds = time.perf_counter() - start

    i = rng.integers(0, n_db, size=n_pairs)
    j = (i + 1 + rng.integers(0, n_db - 1, size=n_pairs)) % n_db  # never i itself
    original_pairs = _pair_similarity(database, i, j, metric)
    # Its own stream, so the query and pair samples stay those of earlier versions.
    geometry_rows = np.sort(
        np.random.default_rng([seed, 1]).choice(
            n_db, size=min(GEOMETRY_SAMPLE, n_db), replace=False
        )
    )
    original_eigenvalues = moments(database[geometry_rows]).covariance_eigenvalues()
    original_geometry = _spectrum_geometry(original_eigenvalues)

    results = []
    share = 0.95 / len(codecs)
    for c_index, codec in enumerate(codecs):
        low = 0.05 + share * c_index
        _tick(progress, low, f"{codec.spec}: learning the codec and compressing the vectors")
        t0 = time.perf_counter()
        codec.fit(database, metric=metric)
        codes = codec.encode(database)
        encode_seconds = time.perf_counter() - t0
        _tick(progress, low + 0.3 * share, f"{codec.spec}: searching with the compressed vectors")
        t0 = time.perf_counter()
        found, _ = codec.search(
            queries,
            codes,
            candidates,
            exclude=exclude,
            progress=_stage(progress, low + 0.3 * share, low + 0.8 * share),
        )
        query_seconds = time.perf_counter() - t0
        hits = _hits(found[:, :k], truth[:, :k])
        per_query_100 = _hits(found[:, :100], truth) / 100 if with_100 else None

        shortlist = found[:, : min(rescore * k, candidates)]
        if codec.has_reranker:
            second = codec.rerank(queries, codes, shortlist)
            rescored, _ = sort_by_score(shortlist, second, k)
            rescored_with = codec.reranker or "its own second stage"
            rerank_bytes = 0  # the second level is part of the code
        else:
            rescored, _ = rerank_exact(queries, database, shortlist, k, metric=metric)
            rescored_with = "float32"
            rerank_bytes = 0 if codec.spec == "float32" else 4 * d
        per_query_rescored = _hits(rescored, truth[:, :k]) / k

        _tick(progress, low + 0.9 * share, f"{codec.spec}: do similarities keep their order?")
        compressed_pairs = np.empty(n_pairs, dtype=np.float32)
        for p in range(0, n_pairs, ENCODE_BLOCK):
            rows = slice(p, p + ENCODE_BLOCK)
            compressed_pairs[rows] = codec.pair_scores(database[i[rows]], codes.rows(j[rows]))
        if np.ptp(compressed_pairs) == 0 or np.ptp(original_pairs) == 0:
            rho = float("nan")
        else:
            rho = float(spearmanr(original_pairs, compressed_pairs).statistic)
        compressed = codec.compressed_vectors(codes.rows(geometry_rows))
        iso, erank = space_geometry(compressed)
        ref_iso, ref_erank, reference = geometry_reference(
            original_eigenvalues, int(compressed.shape[1])
        )

        bpv = codec.bytes_per_vector
        results.append(
            CodecResult(
                spec=codec.spec,
                family=codec.family,
                bytes_per_vector=bpv,
                shared_bytes=codec.shared_bytes,
                compression_ratio=4.0 * d / bpv,
                recall=float(hits.mean() / k),
                recall_100=None if per_query_100 is None else float(per_query_100.mean()),
                recall_rescored=float(per_query_rescored.mean()),
                rescored_with=rescored_with,
                spearman=rho,
                overlap=(hits / k).astype(np.float32),
                encode_seconds=encode_seconds,
                query_seconds=query_seconds,
                explained_variance=getattr(codec, "explained_variance", None),
                warnings=tuple(codec.warnings),
                compressed_dim=int(compressed.shape[1]),
                isoscore=iso,
                effective_rank=erank,
                recall_ci=bootstrap_ci(hits / k, seed=seed),
                recall_100_ci=_interval(per_query_100, seed),
                recall_rescored_ci=bootstrap_ci(per_query_rescored, seed=seed),
                overlap_rescored=per_query_rescored.astype(np.float32),
                first_stage=codec.first_stage,
                rerank_bytes=rerank_bytes,
                reference_isoscore=ref_iso,
                reference_effective_rank=ref_erank,
                geometry_reference=reference,
            )
        )
        warnings.extend(codec.warnings)
        del codes
    _tick(progress, 1.0, "compression comparison done")
    return CompressionReport(
        results=tuple(results),
        metric=metric,
        k=k,
        rescore=rescore,
        n=n,
        n_database=n_db,
        dim=d,
        query_rows=query_rows,
        held_out=bool(held_out),
        n_pairs=n_pairs,
        seed=seed,
        ground_truth_seconds=gt_seconds,
        warnings=tuple(warnings),
        geometry_rows=int(geometry_rows.size),
        original_isoscore=original_geometry[0],
        original_effective_rank=original_geometry[1],
    )


def compressed_vectors(
    codec: str | Codec, X: Any, *, metric: str = "cosine", seed: int = 0
) -> np.ndarray:
    """The compressed copy of ``X`` as float32 vectors, for saving as a derived dataset.

    Decoded vectors for quantisers (binary: the ±1 sign vectors; LeanVec: its secondary
    LVQ vectors, or the PCA reconstruction without one); the reduced vectors for PCA, random
    projection, truncation and DCT.

    Parameters
    ----------
    codec : str or Codec
        A spec or a codec; an unfitted codec is fitted on ``X`` with ``metric``.
    X : float32 ndarray of shape (n, d)
    metric : {"cosine", "ip", "l2"}
    seed : int
        For codecs made from a spec.

    Returns
    -------
    float32 ndarray of shape (n, d) or (n, k)
    """
    codec = as_codec(codec, seed=seed)
    X = check_vectors(X)
    if not codec.is_fitted:
        codec.fit(X, metric=metric)
    return codec.compressed_vectors(codec.encode(X))


def save_compressed_copy(
    store: Any,
    dataset_id: int,
    codec: Any,
    *,
    name: str | None = None,
    metric: str = "cosine",
    seed: int = 0,
) -> Any:
    """Store the compressed copy of a dataset as a new derived dataset (same items).

    Parameters
    ----------
    store : core.store.Store
    dataset_id : int
    codec : str or Codec
    name : str, optional
        Default ``"<original name> [<spec>]"``.
    metric : {"cosine", "ip", "l2"}
    seed : int

    Returns
    -------
    core.store.DatasetInfo
        Its ``info`` records ``transform="compress"`` and the codec's spec and sizes.
    """
    from embscope.core.derive import save_derived_dataset

    codec = as_codec(codec, seed=seed)
    info = store.get_dataset(dataset_id)
    vectors = compressed_vectors(codec, store.load_vectors(info.id), metric=metric, seed=seed)
    return save_derived_dataset(
        store,
        info.id,
        vectors,
        name=name or f"{info.name} [{codec.spec}]",
        transform="compress",
        params={
            "codec": codec.spec,
            "metric": codec.metric,
            "bytes_per_vector": codec.bytes_per_vector,
            "shared_bytes": codec.shared_bytes,
            "reduced": codec.reduces_dimension,
            "seed": seed,
        },
    )
