"""Stored compression comparisons: evaluate a dataset's codecs once, keep the report.

A report is an artifact of kind ``compression`` keyed by the fingerprint of (dataset
vectors, codec specs, metric, queries, k, rescore, seed, code version); it holds each codec's
row and its per-query neighbourhood overlap (where compression hurts), so a page shows it
at once and every session sees it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from embscope.core.compression.codecs import as_codec, default_codecs
from embscope.core.compression.evaluate import CodecResult, CompressionReport, evaluate_codecs
from embscope.core.errors import InvalidInputError
from embscope.core.progress import ProgressFn
from embscope.core.store import Store, fingerprint_arrays
from embscope.core.validation import check_metric

__all__ = ["KIND", "compression_key", "get_or_evaluate", "load_report", "resolve_specs"]

KIND = "compression"
# 2: each codec's row carries the compressed copy's IsoScore and effective rank.
COMPRESSION_CODE_VERSION = 2


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


def compression_key(
    store: Store,
    dataset_id: int,
    *,
    codecs: Sequence[str] | None = None,
    metric: str = "cosine",
    n_queries: int = 1000,
    k: int = 10,
    rescore: int = 4,
    seed: int = 0,
) -> str:
    """The fingerprint of the report these settings ask for (its artifact and job key)."""
    info = store.get_dataset(dataset_id)
    specs = resolve_specs(codecs, dim=info.dim, n=info.n, metric=metric)
    return fingerprint_arrays(
        KIND, info.fingerprint, specs, check_metric(metric), int(n_queries), int(k),
        int(rescore), int(seed), COMPRESSION_CODE_VERSION,
    )  # fmt: skip


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def load_report(store: Store, key: str) -> CompressionReport | None:
    """A stored report (with every codec's per-query overlap), or None."""
    artifact = store.get_artifact(key)
    if artifact is None or artifact.kind != KIND:
        return None
    p = artifact.params
    results = []
    for i, fields in enumerate(p["results"]):
        fields = dict(fields)
        if fields.get("spearman") is None:
            fields["spearman"] = math.nan
        fields["warnings"] = tuple(fields.get("warnings", ()))
        results.append(CodecResult(overlap=artifact.arrays[f"overlap_{i}"], **fields))
    report = dict(p["report"])
    report["warnings"] = tuple(report.get("warnings", ()))
    return CompressionReport(
        results=tuple(results), query_rows=artifact.arrays["query_rows"], **report
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
    info = store.get_dataset(dataset_id)
    specs = resolve_specs(codecs, dim=info.dim, n=info.n, metric=metric)
    key = compression_key(
        store, info.id, codecs=specs, metric=metric, n_queries=n_queries, k=k,
        rescore=rescore, seed=seed,
    )  # fmt: skip
    found = load_report(store, key)
    if found is not None:
        return found
    if info.n < 3:
        raise InvalidInputError(f"dataset {info.name!r} has {info.n} items: too few to compress")
    report = evaluate_codecs(
        store.load_vectors(info.id), specs, metric=metric,
        n_queries=min(int(n_queries), info.n), k=k, rescore=rescore, seed=seed,
        progress=progress,
    )  # fmt: skip
    results = [
        {
            f.name: _json_value(getattr(r, f.name))
            for f in dataclasses.fields(CodecResult)
            if f.name != "overlap"
        }
        for r in report.results
    ]
    summary = {
        f.name: _json_value(getattr(report, f.name))
        for f in dataclasses.fields(CompressionReport)
        if f.name not in ("results", "query_rows")
    }
    arrays = {"query_rows": report.query_rows}
    arrays.update({f"overlap_{i}": r.overlap for i, r in enumerate(report.results)})
    store.put_artifact(
        kind=KIND,
        fingerprint=key,
        dataset_id=info.id,
        params={"results": results, "report": summary, "codecs": specs},
        arrays=arrays,
        duration_s=sum(r.encode_seconds + r.query_seconds for r in report.results),
        lineage={"dataset_fingerprint": info.fingerprint},
    )
    stored = load_report(store, key)
    assert stored is not None
    return stored
