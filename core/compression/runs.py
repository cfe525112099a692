"""Stored compression comparisons: evaluate a dataset's codecs once, keep the report.

A report is an artifact of kind ``compression`` (:class:`CompressionSpec`, through
:mod:`core.artifacts`) keyed by the fingerprint of (dataset vectors, codec specs, metric,
queries, k, rescore, seed, code version); it holds each codec's row and its per-query
neighbourhood overlap (where compression hurts), so a page shows it at once and every
session sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from embscope.core.artifacts import ArtifactSpec, get_or_compute
from embscope.core.compression.codecs import as_codec, default_codecs
from embscope.core.compression.evaluate import CompressionReport, evaluate_codecs
from embscope.core.errors import InvalidInputError
from embscope.core.geometry.intrinsic import sample_rows
from embscope.core.progress import ProgressFn
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import Metric, check_int, check_metric, check_seed

__all__ = [
    "COMPRESSION",
    "KIND",
    "CompressionRequest",
    "CompressionSpec",
    "compression_request",
    "get_or_evaluate",
    "resolve_specs",
]

KIND = "compression"
# The largest k and re-ranking multiplier a report may ask for (the page's bounds).
MAX_K = 100
MAX_RESCORE = 50
# 2: each codec's row carries the compressed copy's IsoScore and effective rank.
# 3: 95 % intervals of every recall; two-level LVQ searches with its first level and re-ranks
#    with both (as LeanVec), its residual on the paper's grid; re-ranking bytes; geometry
#    compared with the float32 vectors at the copy's dimension.
# 4: above COMPRESSION_SAMPLE rows the codecs are compared on a seeded sample (stated).
COMPRESSION_CODE_VERSION = 4
# Rows the codecs are compared on: fitting, encoding and searching each codec grows with n,
# and recall against exact search on a 100k-row sample reads the same (bench_scale.py).
COMPRESSION_SAMPLE = 100_000


def resolve_specs(
    specs: Sequence[str] | None, *, dim: int, n: int, metric: str | None = None
) -> list[str]:
    """Canonical spec strings (validated), or the default set for this dimension (without
    the codecs that cannot serve ``metric``, e.g. binary codes for l2)."""
    if not specs:
        defaults = default_codecs(dim, n=n)
        if metric is None:
            return defaults
        return [s for s in defaults if check_metric(metric) in as_codec(s).metrics]
    out = []
    for spec in specs:
        canonical = as_codec(spec).spec
        if canonical not in out:
            out.append(canonical)
    return out


@dataclass(frozen=True)
class CompressionRequest:
    """Codecs to evaluate on a stored dataset, and how."""

    dataset: DatasetInfo
    codecs: tuple[str, ...]
    metric: Metric
    n_queries: int
    k: int
    rescore: int
    seed: int


class CompressionSpec(ArtifactSpec[CompressionRequest, CompressionReport]):
    """Stored compression reports."""

    kind = KIND
    result_type = CompressionReport
    code_version = COMPRESSION_CODE_VERSION

    def key(self, request: CompressionRequest) -> tuple[Any, ...]:
        return (
            request.dataset.fingerprint,
            list(request.codecs),
            request.metric,
            request.n_queries,
            request.k,
            request.rescore,
            request.seed,
        )

    def describe(self, request: CompressionRequest) -> dict[str, Any]:
        return {
            "codecs": list(request.codecs),
            "metric": request.metric,
            "n_queries": request.n_queries,
            "k": request.k,
            "rescore": request.rescore,
            "seed": request.seed,
        }

    def compute(
        self, store: Store, request: CompressionRequest, progress: ProgressFn | None
    ) -> CompressionReport:
        info = request.dataset
        if info.n < 3:
            raise InvalidInputError(
                f"dataset {info.name!r} has {info.n} items: too few to compress"
            )
        X = store.load_vectors(info.id)
        rows = sample_rows(info.n, COMPRESSION_SAMPLE, request.seed)
        if rows.size < info.n:
            X = X[rows]  # the codecs are compared on a seeded sample of the rows
        report = evaluate_codecs(
            X, list(request.codecs), metric=request.metric,
            n_queries=min(request.n_queries, rows.size), k=request.k, rescore=request.rescore,
            seed=request.seed, progress=progress,
        )  # fmt: skip
        if rows.size == info.n:
            return report
        return replace(report, query_rows=rows[report.query_rows], sampled_from=info.n)

    def label(self, request: CompressionRequest) -> str:
        return f"compression of {request.dataset.name} ({len(request.codecs)} codecs)"


COMPRESSION = CompressionSpec()


def compression_request(
    store: Store,
    dataset_id: int,
    *,
    codecs: Sequence[str] | None = None,
    metric: str = "cosine",
    n_queries: int = 1000,
    k: int = 10,
    rescore: int = 4,
    seed: int = 0,
) -> CompressionRequest:
    """The request these settings make (codec specs canonical, the default set if none)."""
    info = store.get_dataset(dataset_id)
    metric = check_metric(metric)
    specs = resolve_specs(codecs, dim=info.dim, n=info.n, metric=metric)
    return CompressionRequest(
        info,
        tuple(specs),
        metric,
        check_int(n_queries, "queries", low=1),
        check_int(k, "k", low=1, high=MAX_K),
        check_int(rescore, "rescore", low=1, high=MAX_RESCORE),
        check_seed(seed),
    )


def get_or_evaluate(
    store: Store,
    dataset_id: int,
    *,
    codecs: Sequence[str] | None = None,
    metric: str = "cosine",
    n_queries: int = 1000,
    k: int = 10,
    rescore: int = 4,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> CompressionReport:
    """:func:`core.compression.evaluate_codecs` on a stored dataset, stored and reused."""
    request = compression_request(
        store, dataset_id, codecs=codecs, metric=metric, n_queries=n_queries, k=k,
        rescore=rescore, seed=seed,
    )  # fmt: skip
    report = get_or_compute(store, COMPRESSION, request, progress=progress)
    assert report is not None
    return report
