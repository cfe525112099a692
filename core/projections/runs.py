"""Stored projections: compute a layout of a dataset from its shared graph, score it, keep it.

Every projection is an artifact of kind ``projection`` keyed by the fingerprint of (dataset
vectors, method, dims, seed, metric, the method's parameters, code version), so nothing that
is stored is computed again, and every session sees what any session computed. The
artifact (:class:`ProjectionSpec`, through :mod:`core.artifacts`) holds the coordinates
(float32, row order), the faithfulness scores of :mod:`core.projections.quality` and what the
method chose for itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from embscope.core.artifacts import (
    RECORD_CREATED,
    RECORD_FINGERPRINT,
    ArtifactSpec,
    fingerprint,
    get_or_compute,
    load,
    stored,
)
from embscope.core.errors import InvalidInputError
from embscope.core.export import MISSING, as_text
from embscope.core.graph import GRAPH_K, NNDESCENT_MIN_N, find_graph, get_or_build_graph
from embscope.core.params import ParamTable
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.projections.params import (
    HEATGEO_PARAMS,
    LARGEVIS_PARAMS,
    PCA_PARAMS,
    PREVIEW_PARAMS,
    UMAP_PARAMS,
)
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import Metric, check_metric, check_seed

__all__ = [
    "KIND",
    "METHODS",
    "METHOD_PARAMS",
    "PARAM_TABLES",
    "PREVIEW_KEYS",
    "PROJECTIONS",
    "Projection",
    "ProjectionRequest",
    "ProjectionSpec",
    "compute_projection",
    "FitAdvice",
    "default_label_column",
    "default_metric",
    "heatgeo_fit_advice",
    "find_projection",
    "geodesic_coordinates",
    "list_projections",
    "load_projection",
    "projection_key",
    "projection_request",
    "resolve_params",
    "warm_up",
]

KIND = "projection"
# umap 2: umap-learn's optimiser on every core, default epochs capped at 5e6 / n.
# Per method, so a change to one method does not discard every stored projection.
# largevis 2: default 300 samples per point (was 500). largevis 3: 1000 per point (real text
# embeddings lose faithfulness at 300 above 33,000 points); what differs from the paper in
# "chosen". umap 3: embscope's port of umap-learn's optimiser (core/projections/umap_kernel),
# 1.5e7 / n epochs between 300 and 1,500, "chosen" says what differs from umap-learn.
# heatgeo 2: the reference's MDS (unit weights, steps to 0.01) by default, mds and complete
# parameters, what it replaced and where it departs from the paper recorded in "chosen".
CODE_VERSIONS = {"pca": 1, "largevis": 3, "umap": 3, "heatgeo": 2}
QUALITY_K = 10
# PCA is the instant baseline: above this size it is not scored unless the dataset's graph
# is already stored (scoring needs the graph, which takes minutes to build at a million).
PCA_SCORE_LIMIT = 100_000
# A preview is the quick look that skips that graph: scored only where the graph is exact and
# takes seconds (core.graph.NNDESCENT_MIN_N), or when it is already stored.
PREVIEW_SCORE_LIMIT = NNDESCENT_MIN_N

METHODS = ("pca", "largevis", "umap", "heatgeo")
METHOD_LABELS = {
    "pca": "PCA",
    "largevis": "LargeVis",
    "umap": "UMAP",
    "heatgeo": "Heat-geodesic",
}
# Each method's tunable parameters: defaults, bounds and help (core/projections/params.py).
# LargeVis and UMAP also take the preview's two (core/projections/preview.py): a request
# leaves them out while preview is off, so a full layout keeps the key it always had.
PARAM_TABLES: dict[str, ParamTable] = {
    "pca": PCA_PARAMS,
    "largevis": ParamTable("LargeVis", LARGEVIS_PARAMS.params + PREVIEW_PARAMS.params),
    "umap": ParamTable("UMAP", UMAP_PARAMS.params + PREVIEW_PARAMS.params),
    "heatgeo": HEATGEO_PARAMS,
}
PREVIEW_KEYS = tuple(PREVIEW_PARAMS)
# Bump when the preview's placement changes, so stored previews are computed again (and
# full layouts are not).
PREVIEW_CODE_VERSION = 1
# Their defaults (None or "auto": chosen from the data).
METHOD_PARAMS: dict[str, dict[str, Any]] = {m: t.defaults() for m, t in PARAM_TABLES.items()}
# Methods whose layout is numba-heavy: their jobs are serialised (see core.jobs).
SERIAL_METHODS = frozenset({"largevis", "umap", "heatgeo"})


@dataclass(frozen=True)
class Projection:
    """One stored layout of a dataset."""

    dataset_id: int
    method: str
    dims: int
    seed: int
    metric: str
    params: Mapping[str, Any]
    quality: Mapping[str, Any]
    seconds: float | None
    fingerprint: str = field(default="", metadata=RECORD_FINGERPRINT)
    created: datetime | None = field(default=None, metadata=RECORD_CREATED)
    coords: np.ndarray | None = field(default=None, repr=False)  # float32 (n, dims)
    # What the method chose for itself: heat-geodesic's tau, order and landmarks, UMAP's
    # epochs (empty for PCA and LargeVis).
    chosen: Mapping[str, Any] = field(default_factory=dict)
    # The metadata column kNN accuracy was scored on, and how the graph was built.
    label_column: str | None = None
    graph: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """Method and dimensions only (a chart title; the parameters are in :attr:`label`)."""
        title = f"{METHOD_LABELS.get(self.method, self.method)} {self.dims}-D"
        return title + " preview" if self.preview else title

    @property
    def preview(self) -> dict[str, Any] | None:
        """``{"sample": m, "placed": n - m, ...}`` when this layout is a preview (a sample laid
        out, the other points placed by their neighbours; core/projections/preview.py), else
        None."""
        if not self.params.get("preview"):
            return None
        return dict(self.chosen.get("preview") or {"sample": self.params.get("preview_sample")})

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v is not None)
        return f"{METHOD_LABELS.get(self.method, self.method)} {self.dims}-D" + (
            f" ({shown})" if shown else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "dims": self.dims,
            "seed": self.seed,
            "metric": self.metric,
            "params": dict(self.params),
            "chosen": dict(self.chosen),
            "seconds": self.seconds,
            "quality": dict(self.quality),
        }


# -- choices read from the dataset ----------------------------------------------------------


def default_metric(info: DatasetInfo) -> Metric:
    """The metric a dataset is meant to be compared with: its recorded one, else cosine."""
    return check_metric(info.metric)


def default_label_column(info: DatasetInfo) -> str | None:
    """The dataset's recorded label column, if it is one of its metadata columns."""
    column = (info.info or {}).get("label_column")
    return column if column in info.metadata_columns else None


def geodesic_coordinates(store: Store, info: DatasetInfo) -> np.ndarray | None:
    """Coordinates whose Euclidean distances are true geodesics (the Swiss roll), if recorded."""
    columns = (info.info or {}).get("geodesic_columns")
    if not columns or not all(c in info.metadata_columns for c in columns):
        return None
    frame = store.load_metadata(info.id, columns=list(columns))
    coords: np.ndarray = frame.to_numpy(dtype=np.float64)  # pandas is untyped here
    return coords


def is_categorical(values: pd.Series, *, max_classes: int = 200) -> bool:
    """Whether a column can serve as class labels (kNN accuracy): not continuous floats."""
    if pd.api.types.is_float_dtype(values):
        return False
    n_classes = int(values.nunique(dropna=True))
    return 2 <= n_classes <= max(max_classes, 2) and n_classes < len(values)


def load_labels(store: Store, info: DatasetInfo, column: str) -> np.ndarray:
    """A metadata column as class labels for kNN accuracy (refused when it is continuous)."""
    if column not in info.metadata_columns:
        raise InvalidInputError(
            f"dataset {info.name!r} has no metadata column {column!r}; it has: "
            + (", ".join(info.metadata_columns) or "none")
        )
    values = store.load_metadata(info.id, columns=[column])[column]
    if not is_categorical(values):
        raise InvalidInputError(
            f"column {column!r} is continuous or has too few/many distinct values to be a label "
            "for kNN accuracy: choose a categorical column"
        )
    codes: np.ndarray = pd.factorize(as_text(values, missing=MISSING))[0]  # pandas is untyped here
    return codes.astype(np.int64)


# -- parameters and fingerprints --------------------------------------------------------------


def resolve_params(
    method: str, params: Mapping[str, Any] | None = None, *, n: int | None = None
) -> dict[str, Any]:
    """The method's defaults overridden by ``params``, each checked against its bounds (and,
    for neighbour counts, against the ``n`` items); unknown methods or names are refused."""
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown projection method {method!r}: choose one of {', '.join(METHODS)}"
        )
    return PARAM_TABLES[method].resolve(params, n=n)


def _without_idle_preview(params: dict[str, Any], n: int) -> dict[str, Any]:
    """The parameters without the preview's when it is off, or when its sample holds every
    point (the full layout: the same request, the same key)."""
    sample = params.get("preview_sample")
    if params.get("preview") and sample is not None and sample < n:
        return params
    return {k: v for k, v in params.items() if k not in PREVIEW_KEYS}


def _check_dims(dims: Any) -> int:
    if isinstance(dims, bool) or dims not in (2, 3):
        raise InvalidInputError(f"a projection has 2 or 3 dimensions, got {dims!r}")
    return int(dims)


@dataclass(frozen=True)
class ProjectionRequest:
    """A layout of a stored dataset: every setting that decides its coordinates."""

    dataset: DatasetInfo
    method: str
    dims: int
    seed: int
    metric: Metric
    params: Mapping[str, Any]


class ProjectionSpec(ArtifactSpec[ProjectionRequest, Projection]):
    """Stored projections, versioned per method (a change to one method keeps the others)."""

    kind = KIND
    result_type = Projection

    def version(self, request: ProjectionRequest) -> int:
        return CODE_VERSIONS[request.method]

    def key(self, request: ProjectionRequest) -> tuple[Any, ...]:
        params = {k: request.params[k] for k in sorted(request.params)}
        key = (
            request.dataset.fingerprint,
            request.method,
            request.dims,
            request.seed,
            request.metric,
            params,
        )
        return key + (("preview", PREVIEW_CODE_VERSION),) if params.get("preview") else key

    def describe(self, request: ProjectionRequest) -> dict[str, Any]:
        return {
            "method": request.method,
            "dims": request.dims,
            "seed": request.seed,
            "metric": request.metric,
            "method_params": dict(request.params),
        }

    def compute(
        self, store: Store, request: ProjectionRequest, progress: ProgressFn | None
    ) -> Projection:
        return _compute(store, request, progress)

    def serial(self, request: ProjectionRequest) -> bool:
        return request.method in SERIAL_METHODS

    def label(self, request: ProjectionRequest) -> str:
        # Seed and the parameters set by hand tell two jobs of one method apart.
        set_by_hand = [f"{k}={v}" for k, v in sorted(request.params.items()) if v is not None]
        return (
            f"{METHOD_LABELS[request.method]} {request.dims}-D of {request.dataset.name}"
            + f" (seed {request.seed}"
            + "".join(f", {p}" for p in set_by_hand)
            + ")"
        )


PROJECTIONS = ProjectionSpec()


def projection_request(
    store: Store,
    dataset_id: int,
    *,
    method: str,
    dims: int = 2,
    seed: int = 0,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> ProjectionRequest:
    """The request these settings make, validated (missing parameters take their defaults)."""
    info = store.get_dataset(dataset_id)
    metric = default_metric(info) if metric is None else check_metric(metric)
    full = _without_idle_preview(resolve_params(method, params, n=info.n), info.n)
    dims, seed = _check_dims(dims), check_seed(seed)
    if method == "pca":
        seed = 0  # PCA is deterministic: a seed would only key copies of one layout
    if info.n < 4:
        raise InvalidInputError(
            f"dataset {info.name!r} has {info.n} items: a projection needs at least 4"
        )
    return ProjectionRequest(info, method, dims, seed, metric, full)


def projection_key(
    store: Store,
    dataset_id: int,
    *,
    method: str,
    dims: int = 2,
    seed: int = 0,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """The fingerprint of the projection these settings ask for (its artifact and job key)."""
    request = projection_request(
        store, dataset_id, method=method, dims=dims, seed=seed, metric=metric, params=params
    )
    return fingerprint(PROJECTIONS, request)


# -- reading stored projections ----------------------------------------------------------------


def load_projection(
    store: Store, fingerprint: str, *, with_coords: bool = True
) -> Projection | None:
    """The stored projection with this fingerprint (with coordinates unless told), or None."""
    return load(store, PROJECTIONS, fingerprint, with_arrays=with_coords)


def find_projection(
    store: Store,
    dataset_id: int,
    *,
    method: str,
    dims: int = 2,
    seed: int = 0,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Projection | None:
    """The stored projection for exactly these settings, or None (nothing is computed)."""
    request = projection_request(
        store, dataset_id, method=method, dims=dims, seed=seed, metric=metric, params=params
    )
    return get_or_compute(store, PROJECTIONS, request, run=False)


def list_projections(store: Store, dataset_id: int) -> list[Projection]:
    """The dataset's stored projections (without coordinates), newest first: the gallery.

    Projections made by an older version of their method's code are left out (a request
    for the same settings computes them again).
    """
    out = []
    for record in stored(store, PROJECTIONS, dataset_id, with_results=True):
        projection = record.result
        if projection is not None and record.version == CODE_VERSIONS.get(projection.method):
            out.append(projection)
    return out


# -- is heat-geodesic a good fit? ----------------------------------------------------------------

# Heat-geodesic is advised against when its own layout scores below this trustworthiness@10,
# or when a stored LargeVis / UMAP layout of the same dataset (same metric and dimensions)
# beats it by at least POOR_FIT_GAP. Measured (seed 0, 2-D; bench/bench_heatgeo.py): LargeVis
# and UMAP reach 0.95-0.99 on every demo dataset; heat-geodesic 0.99 on the Swiss roll, 0.96
# on the Gaussian mixture, 0.95 on digits, but 0.81 on the stdlib docstrings (and 0.64 on 60k
# real text embeddings), clustered high-dimensional text where its diffusion distances
# saturate and MDS squeezes the clusters together.
POOR_FIT_TRUST = 0.85
POOR_FIT_GAP = 0.10
_PEERS = ("largevis", "umap")


@dataclass(frozen=True)
class FitAdvice:
    """Why a heat-geodesic layout is a poor fit, from measured scores (:func:`heatgeo_fit_advice`).

    ``trust`` and ``knn_preservation`` are the layout's own @10 scores; ``peer`` the best
    stored LargeVis or UMAP layout of the same dataset, metric and dimensions (None when there
    is none), with its scores.
    """

    trust: float
    knn_preservation: float | None
    below_threshold: bool
    peer: Projection | None = None

    @property
    def peer_trust(self) -> float | None:
        return None if self.peer is None else _trust(self.peer)

    def to_json(self) -> dict[str, Any]:
        return {
            "trustworthiness@10": self.trust,
            "knn_preservation@10": self.knn_preservation,
            "threshold": POOR_FIT_TRUST,
            "below_threshold": self.below_threshold,
            "peer": None
            if self.peer is None
            else {
                "method": self.peer.method,
                "trustworthiness@10": _trust(self.peer),
                "knn_preservation@10": self.peer.quality.get(f"knn_preservation@{QUALITY_K}"),
            },
        }


def _trust(projection: Projection) -> float | None:
    value = projection.quality.get(f"trustworthiness@{QUALITY_K}")
    return None if value is None else float(value)


def heatgeo_fit_advice(store: Store, projection: Projection) -> FitAdvice | None:
    """Whether to advise LargeVis / UMAP instead of this heat-geodesic layout, or None.

    Advised when the layout's own trustworthiness@10 is below :data:`POOR_FIT_TRUST`, or a
    stored LargeVis or UMAP layout of the same dataset, metric and dimensions scores at least
    :data:`POOR_FIT_GAP` more; nothing is computed (other methods' layouts are only read).
    None for other methods and for layouts that were not scored.
    """
    if projection.method != "heatgeo":
        return None
    trust = _trust(projection)
    if trust is None:
        return None
    peers = [
        p
        for p in list_projections(store, projection.dataset_id)
        if p.method in _PEERS
        and p.metric == projection.metric
        and p.dims == projection.dims
        and _trust(p) is not None
    ]
    best = max(peers, key=lambda p: _trust(p) or 0.0, default=None)
    best_trust = None if best is None else _trust(best)
    below = trust < POOR_FIT_TRUST
    beaten = best_trust is not None and best_trust - trust >= POOR_FIT_GAP
    if not (below or beaten):
        return None
    pres = projection.quality.get(f"knn_preservation@{QUALITY_K}")
    return FitAdvice(
        trust=trust,
        knn_preservation=None if pres is None else float(pres),
        below_threshold=below,
        peer=best,
    )


# -- computing ------------------------------------------------------------------------------------


def _layout(
    method: str,
    X: np.ndarray,
    graph: Any,
    *,
    dims: int,
    seed: int,
    params: Mapping[str, Any],
    progress: ProgressFn | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The coordinates, and what the method chose for itself where a user may want to know
    (heat-geodesic's diffusion time, UMAP's epochs)."""
    given = {k: v for k, v in params.items() if v is not None}
    if method == "pca":
        from embscope.core.projections.pca import pca_layout

        return pca_layout(X, dims=dims), {}
    if method in ("largevis", "umap"):
        from embscope.core.projections.preview import sgd_layout

        return sgd_layout(method, graph, X=X, dims=dims, seed=seed, params=given,
                          progress=progress)  # fmt: skip
    from embscope.core.projections.heatgeo import heatgeo_embedding

    layout = heatgeo_embedding(graph, dims=dims, seed=seed, progress=progress, **given)
    return layout.coords, layout.chosen()


def _preview(
    method: str,
    X: np.ndarray,
    *,
    dims: int,
    seed: int,
    metric: str,
    params: Mapping[str, Any],
    progress: ProgressFn | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A preview's coordinates and what it chose (core/projections/preview.py)."""
    from embscope.core.projections.preview import preview_layout

    own = {k: v for k, v in params.items() if k not in PREVIEW_KEYS}
    layout = preview_layout(
        X, method=method, dims=dims, sample=params["preview_sample"], metric=metric, seed=seed,
        params=own, progress=progress,
    )  # fmt: skip
    return layout.coords, layout.chosen


def _graph_width(method: str, params: Mapping[str, Any], n: int) -> int:
    wanted = {
        "largevis": params.get("n_neighbors") or LARGEVIS_PARAMS.default("n_neighbors"),
        "umap": params.get("n_neighbors"),
    }
    k = max(QUALITY_K, int(wanted.get(method) or 0), GRAPH_K if method == "heatgeo" else 0)
    return min(k, n - 1)


def score_layout(
    store: Store,
    info: DatasetInfo,
    coords: np.ndarray,
    *,
    metric: str,
    label_column: str | None = None,
    X: np.ndarray | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Faithfulness of ``coords`` to the dataset (see :mod:`core.projections.quality`)."""
    from embscope.core.projections.quality import projection_quality

    k = min(QUALITY_K, max(1, (info.n - 1) // 2))
    graph = get_or_build_graph(store, info.id, k=k, metric=metric)
    labels = load_labels(store, info, label_column) if label_column else None
    quality = projection_quality(
        coords,
        graph,
        X=store.load_vectors(info.id) if X is None else X,
        k=k,
        labels=labels,
        geodesic=geodesic_coordinates(store, info),
        seed=seed,
        progress=progress,
    )
    return dict(quality.to_json())


def compute_projection(
    store: Store,
    dataset_id: int,
    *,
    method: str,
    dims: int = 2,
    seed: int = 0,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    recompute: bool = False,
) -> Projection:
    """The stored projection for these settings, computed (graph first) and stored if missing.

    Parameters
    ----------
    method : {"pca", "largevis", "umap", "heatgeo"}
    dims : {2, 3}
    metric : {"cosine", "l2", "ip"}, optional
        The neighbour graph's metric; default :func:`default_metric` of the dataset.
    params : mapping, optional
        The method's parameters (:data:`METHOD_PARAMS`); missing ones take their defaults.
    progress : callable, optional
        ``progress(fraction, message) -> bool``; True cancels (OperationCancelled).

    Returns
    -------
    Projection
        With ``coords`` (float32, (n, dims), row order) and ``quality`` (trustworthiness@10,
        continuity@10, knn_preservation@10, knn_accuracy@10 for the dataset's label column,
        geodesic_spearman when the dataset records geodesic coordinates).
    """
    request = projection_request(
        store, dataset_id, method=method, dims=dims, seed=seed, metric=metric, params=params
    )
    projection = get_or_compute(store, PROJECTIONS, request, progress=progress, recompute=recompute)
    assert projection is not None
    return projection


def _compute(store: Store, request: ProjectionRequest, progress: ProgressFn | None) -> Projection:
    info, method, dims, seed = request.dataset, request.method, request.dims, request.seed
    metric, full = request.metric, request.params
    started = time.perf_counter()
    preview = bool(full.get("preview"))
    graph = None
    if method != "pca" and not preview:
        width = _graph_width(method, full, info.n)
        graph = get_or_build_graph(
            store, info.id, k=width, metric=metric, progress=stage(progress, 0.0, 0.3)
        )
    # Loaded after the graph, which loads (and frees) its own copy: one copy of X at a time.
    check_cancel(progress, 0.0 if preview else 0.3, "loading vectors", "the projection")
    X = store.load_vectors(info.id)
    if preview:
        coords, chosen = _preview(
            method, X, dims=dims, seed=seed, metric=metric, params=full,
            progress=stage(progress, 0.0, 0.9),
        )  # fmt: skip
    else:
        check_cancel(
            progress, 0.3, f"computing the {METHOD_LABELS[method]} layout", "the projection"
        )
        coords, chosen = _layout(
            method, X, graph, dims=dims, seed=seed, params=full, progress=stage(progress, 0.3, 0.9)
        )
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    if coords.shape != (info.n, dims) or not np.isfinite(coords).all():
        raise RuntimeError(
            f"the {method} layout returned shape {coords.shape} or non-finite values"
        )
    seconds = time.perf_counter() - started
    check_cancel(progress, 0.9, "scoring the layout", "the projection")
    label_column = default_label_column(info)
    if label_column is not None:
        values = store.load_metadata(info.id, columns=[label_column])[label_column]
        if not is_categorical(values):
            label_column = None
    quality: dict[str, Any] = {}
    limit = PREVIEW_SCORE_LIMIT if preview else PCA_SCORE_LIMIT
    if (
        (method != "pca" and not preview)
        or info.n <= limit
        or find_graph(store, info.id, metric=metric, k=QUALITY_K) is not None
    ):
        quality = score_layout(
            store, info, coords, metric=metric, label_column=label_column, X=X, seed=seed,
            progress=stage(progress, 0.9, 1.0),
        )  # fmt: skip
    return Projection(
        dataset_id=info.id,
        method=method,
        dims=dims,
        seed=seed,
        metric=metric,
        params=dict(full),
        quality=quality,
        seconds=seconds,
        coords=coords,
        chosen=chosen,
        label_column=label_column,
        graph={} if graph is None else {"method": graph.method, "recall": graph.recall},
    )


def warm_up() -> None:
    """Compile (or load from the disk cache) the numba code of every layout method.

    umap-learn compiles its functions in every new process (5-10 s); LargeVis and
    heat-geodesic load theirs from the disk cache in well under a second. A server runs this
    on its serial job lane when its job runner is made, as its first page opens
    (:class:`core.jobs.JobRunner` ``warm_up``), so the first projection a user asks for does
    not pay for it.
    """
    from embscope.core.graph import build_knn_graph
    from embscope.core.projections.heatgeo import heatgeo_layout
    from embscope.core.projections.largevis import largevis_layout
    from embscope.core.projections.quality import projection_quality
    from embscope.core.projections.umap_layout import warm_up as umap_warm_up

    umap_warm_up()
    X = np.random.default_rng(0).standard_normal((80, 4)).astype(np.float32)
    graph = build_knn_graph(X, k=20, metric="l2", method="exact")
    layout = largevis_layout(graph, seed=0, samples_per_point=20, n_neighbors=20, X=X)
    heatgeo_layout(graph, seed=0)
    # The quality score every job ends with imports scipy.stats (about a second).
    projection_quality(layout, graph, X=X, k=5)
