"""The names core accepts, as the pages and the command line offer them: the metric and index
backend labels, and the metrics the geometry scorecard is offered for.

The names themselves come from core (:data:`core.validation.METRICS`,
:data:`core.index.BACKENDS`); only how they are shown is said here.
"""

from __future__ import annotations

from embscope.core.validation import METRICS

METRIC_LABELS = {"cosine": "cosine", "l2": "Euclidean (l2)", "ip": "inner product"}
BACKEND_LABELS = {
    "hnsw": "HNSW (hnswlib)",
    "exact": "Exact (brute force)",
    "milvus": "Milvus (scale-out)",
}
# The scorecard's intrinsic-dimension estimates (TwoNN, MLE, LID) need true distances, which
# the inner product is not: the Geometry page and `embscope geometry` offer the others.
GEOMETRY_METRICS = tuple(m for m in METRICS if m != "ip")


def metric_label(metric: str) -> str:
    """How a metric is named on a page ("Euclidean (l2)")."""
    return METRIC_LABELS.get(metric, metric)


def backend_label(backend: str) -> str:
    """How an index backend is named on a page ("HNSW (hnswlib)")."""
    return BACKEND_LABELS.get(backend, backend)
