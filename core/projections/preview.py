"""A quick preview of a LargeVis or UMAP layout: lay out a sample, place the rest.

A layout of a million points needs the neighbour graph of all of them (minutes) and an SGD
over all of them. :func:`preview_layout` instead

1. draws a seeded sample of ``m`` rows (:data:`PREVIEW_PARAMS` ``preview_sample``, default
   50,000) and lays it out with the method itself (:func:`sgd_layout` on the sample's own
   graph from :func:`core.graph.build_knn_graph`);
2. finds the :data:`PLACE_NEIGHBOURS` nearest sample points of every other row: through an
   HNSW index of the sample (:class:`core.index.HnswIndex`) when there are many rows to
   place, by exact blocked search (:func:`core.index.exact_knn`) below
   :data:`EXACT_MAX_PAIRS` (rows x sample) pairs, where it costs no more than building an
   index. Measured at 200,000 x 384 with a 50,000 sample on 2 cores: exact search takes
   8.3 s per 20,000 rows (numpy's selection of the 20,000 x 50,000 distances costs as much
   as the sgemm), ~400 s for the 950,000 rows of a million; the index is built in 4-8 s and
   answers 20,000 rows in 0.4 s at ef 20 (recall@10 0.95) or 0.65 s at ef 40 (0.98);
3. puts each placed row at the weighted mean of its neighbours' positions, weights
   ``exp(-WEIGHT_SHARPNESS (d_j - d_1) / mean_j(d_j - d_1))`` (the nearest weighs 1), then
   runs :data:`PLACE_EPOCHS` epochs of SGD on it alone, as umap-learn's ``transform`` does:
   attraction to its neighbours (each sampled as often as its weight allows, umap-learn's
   schedule) and :data:`PLACE_NEGATIVES` negative samples per step drawn uniformly from the
   sample, the sample points frozen. The forces are the method's: UMAP's curve
   ``1 / (1 + a d^2b)`` with repulsion ``2b / ((0.001 + d²)(1 + a d^2b))``, LargeVis's
   ``1 / (1 + d²)`` with repulsion ``2γ / ((0.1 + d²)(1 + d²))``. Each placed row has its
   own random stream (splitmix64 of the seed and its position), so the result does not
   depend on the threads.

Sharp weights place better than even ones: on 51,062 real text embeddings (a 5,000 sample,
LargeVis, 100 epochs) the placed points keep 0.143 of their 10 nearest neighbours at
sharpness 4 against 0.094 with ``exp(-(d_j - d_1) / mean)`` and 0.098 with UMAP's
membership strengths; the full layout keeps 0.31. A placed point is attracted to sample
points only, never to the other placed points that are its true neighbours, so the fine
structure among placed points is coarser than a full layout's (:func:`placement_error`
measures it); their place on the map is not: their distance to where the full layout put
them is about that of the sample points themselves (two runs of a method differ as much).

Memory stays bounded: the rows to place are read in blocks of :data:`PLACE_BLOCK` (one copy
of a block at a time), and nothing of size n besides the coordinates is kept.

Measured (2 shared cores, 200,000 x 384 of ``bench/results/real/synthetic-1000000.npz``,
cosine, default 50,000 sample): LargeVis 21.5 s (sample graph 5.8, its layout 4.3, index 5.1,
placing 150,000 rows 6.2), UMAP 29.4 s (its layout 14.6); peak RSS 1.0 GB with the 0.3 GB of
vectors loaded (0.57 GB before the preview). Of 2,000 rows' 10 exact nearest neighbours the
LargeVis preview keeps 0.139 for placed rows and 0.221 for sample rows. Only the placement
grows with n (about 4 s per 100,000 rows), so a million rows take about a minute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from embscope.core.errors import InvalidInputError
from embscope.core.graph import KnnGraph, build_knn_graph, recall_per_row
from embscope.core.index import HnswIndex, exact_knn
from embscope.core.numba_rng import splitmix
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.projections.params import LARGEVIS_PARAMS, PREVIEW_PARAMS, UMAP_PARAMS
from embscope.core.threads import available_threads, run_ranges
from embscope.core.validation import (
    check_int,
    check_metric,
    check_seed,
    check_vectors,
    prepare_for_metric,
)

__all__ = [
    "PLACE_EPOCHS",
    "PLACE_NEIGHBOURS",
    "PREVIEW_METHODS",
    "PlacementError",
    "PreviewLayout",
    "placement_error",
    "preview_caption",
    "preview_layout",
    "preview_pairs",
    "sgd_layout",
]

PREVIEW_METHODS = ("largevis", "umap")
# Nearest sample points of each placed point, and SGD epochs over them (umap-learn's
# transform runs 30 epochs above 10,000 points).
PLACE_NEIGHBOURS = 10
PLACE_EPOCHS = 30
# Learning rate of the placement SGD at its first epoch, decaying linearly to 0 (umap-learn's
# transform: a quarter of its layout's 1.0).
PLACE_ALPHA = 0.25
# How fast a neighbour's weight falls with its distance beyond the nearest (module docstring).
WEIGHT_SHARPNESS = 4.0
# Negative samples per attraction step.
PLACE_NEGATIVES = 5
# Placed rows searched and optimised between two progress calls (a block of 65,536 x 384
# float32 vectors is a 100 MB copy).
PLACE_BLOCK = 65_536
# Exact search below this many (placed x sample) pairs, the HNSW index above.
EXACT_MAX_PAIRS = 250_000_000
# The sample's HNSW index: the placed rows' 10 nearest sample points at recall 0.95 (ef 24;
# 150,000 rows of 200,000 x 384 against a 50,000 sample).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF = 24
# The placement's points scored by placement_error (all of them up to this many).
ERROR_SAMPLE = 5_000

# Each method's gradients: (a, b) of the curve, gamma, repulsion epsilon, gradient clip.
_LARGEVIS_EPS, _LARGEVIS_CLIP = 0.1, 5.0  # core/projections/largevis.py
_UMAP_EPS, _UMAP_CLIP = 0.001, 4.0  # core/projections/umap_kernel.py
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)


# -- the layout of the sample -------------------------------------------------------------------


def sgd_layout(
    method: str,
    graph: KnnGraph,
    *,
    X: np.ndarray,
    dims: int,
    seed: int,
    params: Mapping[str, Any],
    deterministic: bool = False,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The LargeVis or UMAP layout of ``graph`` (the vectors ``X`` it was built from) and what
    the method chose for itself (``chosen``); ``params`` are the method's own (None: default).
    """
    given = {k: v for k, v in params.items() if v is not None}
    if method == "largevis":
        from embscope.core.projections.largevis import chosen as largevis_chosen
        from embscope.core.projections.largevis import largevis_layout

        coords = largevis_layout(
            graph, dims=dims, seed=seed, X=X, deterministic=deterministic, progress=progress,
            **given,
        )  # fmt: skip
        return coords, largevis_chosen(graph, **given)
    if method == "umap":
        from embscope.core.projections.umap_layout import chosen as umap_chosen
        from embscope.core.projections.umap_layout import umap_layout

        coords = umap_layout(
            graph, dims=dims, seed=seed, deterministic=deterministic, progress=progress, **given
        )
        return coords, umap_chosen(graph.n, given.get("n_epochs"))
    raise InvalidInputError(f"unknown layout method {method!r}: use largevis or umap")


# -- placing the other points ------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _weights(dist: np.ndarray, lo: int, hi: int, sharpness: float, out: np.ndarray) -> None:
    """Rows lo..hi: ``exp(-sharpness (d_j - d_1) / mean_j(d_j - d_1))`` (all 1 when flat)."""
    k = dist.shape[1]
    for i in range(lo, hi):
        nearest = dist[i, 0]
        mean = 0.0
        for c in range(k):
            mean += dist[i, c] - nearest
        mean /= k
        for c in range(k):
            excess = (dist[i, c] - nearest) / mean if mean > 0.0 else 0.0
            out[i, c] = math.exp(-sharpness * excess)


@njit(cache=True, nogil=True, fastmath=True)
def _place(
    Y: np.ndarray,
    Ys: np.ndarray,
    nbrs: np.ndarray,
    w: np.ndarray,
    lo: int,
    hi: int,
    epochs: int,
    a: float,
    b: float,
    gamma: float,
    eps: float,
    clip: float,
    alpha0: float,
    negatives: int,
    base: np.uint64,
    first_row: int,
) -> None:
    """Rows lo..hi of ``Y``: the weighted mean of their neighbours in ``Ys``, then ``epochs``
    of SGD against the frozen ``Ys`` (module docstring). Row p's random stream is seeded by
    ``base`` and its position ``first_row + p`` among all placed rows."""
    m = Ys.shape[0]
    dims = Ys.shape[1]
    k = nbrs.shape[1]
    um = np.uint64(m)
    y = np.empty(dims, np.float64)
    step = np.empty(k, np.float64)
    due = np.empty(k, np.float64)
    for p in range(lo, hi):
        total = 0.0
        wmax = 0.0
        for d in range(dims):
            y[d] = 0.0
        for c in range(k):
            total += w[p, c]
            wmax = max(wmax, w[p, c])
            for d in range(dims):
                y[d] += w[p, c] * Ys[nbrs[p, c], d]
        for d in range(dims):
            y[d] /= total
        for c in range(k):  # umap-learn's schedule: edge c every wmax / w_c epochs
            step[c] = wmax / w[p, c] if w[p, c] > 0.0 else np.inf
            due[c] = step[c]
        state = base ^ (np.uint64(first_row + p) * _GOLDEN)
        for epoch in range(epochs):
            alpha = alpha0 * (1.0 - epoch / epochs)
            for c in range(k):
                if due[c] > epoch:
                    continue
                due[c] += step[c]
                j = nbrs[p, c]
                d2 = 0.0
                for d in range(dims):
                    diff = y[d] - Ys[j, d]
                    d2 += diff * diff
                if d2 > 0.0:
                    pb = d2**b
                    coeff = -2.0 * a * b * (pb / d2) / (1.0 + a * pb)
                    for d in range(dims):
                        g = min(max(coeff * (y[d] - Ys[j, d]), -clip), clip)
                        y[d] += g * alpha
                for _ in range(negatives):
                    state, z = splitmix(state)
                    q = np.int64(((z >> _S32) * um) >> _S32)
                    d2 = 0.0
                    for d in range(dims):
                        diff = y[d] - Ys[q, d]
                        d2 += diff * diff
                    if d2 <= 0.0:
                        continue
                    coeff = 2.0 * gamma * b / ((eps + d2) * (1.0 + a * d2**b))
                    for d in range(dims):
                        g = min(max(coeff * (y[d] - Ys[q, d]), -clip), clip)
                        y[d] += g * alpha
        for d in range(dims):
            Y[p, d] = y[d]


def _gradients(method: str, params: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """(a, b, gamma, eps, clip) of the method's low-dimensional similarity and forces."""
    if method == "umap":
        from embscope.core.projections.umap_kernel import find_ab_params
        from embscope.core.projections.umap_layout import REPULSION_STRENGTH, SPREAD

        min_dist = params.get("min_dist")
        a, b = find_ab_params(SPREAD, float(UMAP_PARAMS.default("min_dist") if min_dist is None
                                            else min_dist))  # fmt: skip
        return a, b, REPULSION_STRENGTH, _UMAP_EPS, _UMAP_CLIP
    gamma = params.get("gamma")
    gamma = LARGEVIS_PARAMS.default("gamma") if gamma is None else gamma
    return 1.0, 1.0, float(gamma), _LARGEVIS_EPS, _LARGEVIS_CLIP


def _sample_index(
    S: np.ndarray, metric: str, *, exact: bool, seed: int, deterministic: bool
) -> Any:
    """What finds a row's nearest sample points: the prepared sample (exact search) or its
    HNSW index (one build thread when ``deterministic``: its graph then repeats)."""
    if exact:
        return prepare_for_metric(S, metric)
    index = HnswIndex(
        metric, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef=HNSW_EF, seed=seed,
        num_threads=1 if deterministic else -1,
    )  # fmt: skip
    return index.build(S)


def _nearest_in_sample(
    index: Any, Q: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(index, HnswIndex):
        return index.query(Q, k, ef=max(HNSW_EF, k))
    idx, dist = exact_knn(prepare_for_metric(Q, metric), index, k, metric=metric)
    return idx, dist


def _place_block(
    Ys: np.ndarray,
    nbrs: np.ndarray,
    dist: np.ndarray,
    *,
    epochs: int,
    forces: tuple[float, float, float, float, float],
    base: np.uint64,
    first: int,
    pool: ThreadPoolExecutor | None,
    threads: int,
) -> np.ndarray:
    """The coordinates (float64, (rows, dims)) of a block of placed rows from their nearest
    sample points ``nbrs`` at distances ``dist``; ``first`` is the block's first position."""
    nbrs = np.ascontiguousarray(nbrs, dtype=np.int64)
    dist = np.ascontiguousarray(dist, dtype=np.float64)
    rows = nbrs.shape[0]
    w = np.empty_like(dist)
    out = np.empty((rows, Ys.shape[1]), dtype=np.float64)
    a, b, gamma, eps, clip = forces
    run_ranges(pool, lambda lo, hi: _weights(dist, lo, hi, WEIGHT_SHARPNESS, w), rows, threads)
    run_ranges(
        pool,
        lambda lo, hi: _place(
            out, Ys, nbrs, w, lo, hi, epochs, a, b, gamma, eps, clip, PLACE_ALPHA,
            PLACE_NEGATIVES, base, first,
        ),
        rows,
        threads,
    )  # fmt: skip
    return out


def _others(n: int, rows: np.ndarray) -> np.ndarray:
    """The rows of ``0..n-1`` not in ``rows``, sorted: the placed ones of a sample."""
    is_placed = np.ones(n, dtype=bool)
    is_placed[rows] = False
    return np.flatnonzero(is_placed)


@dataclass(frozen=True)
class PreviewLayout:
    """A preview: ``coords`` (float32, (n, dims), row order), the sorted ``sample`` rows that
    were laid out (every row when nothing was placed) and ``chosen``: what the method chose
    for the sample, with ``chosen["preview"]`` saying how the rest was placed."""

    coords: np.ndarray
    sample: np.ndarray
    chosen: dict[str, Any] = field(default_factory=dict)

    @property
    def placed(self) -> np.ndarray:
        """The rows that were placed (not in the sample), sorted."""
        return _others(self.coords.shape[0], self.sample)


def _check_method_params(method: str, params: Mapping[str, Any] | None, m: int) -> dict[str, Any]:
    if method not in PREVIEW_METHODS:
        raise InvalidInputError(
            f"a preview lays out a sample with LargeVis or UMAP, got method {method!r}: use "
            + " or ".join(PREVIEW_METHODS)
        )
    table = LARGEVIS_PARAMS if method == "largevis" else UMAP_PARAMS
    return table.resolve(params, n=m)


def preview_layout(
    X: np.ndarray,
    *,
    method: str = "largevis",
    dims: int = 2,
    sample: int = PREVIEW_PARAMS.default("preview_sample"),
    metric: str = "cosine",
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    neighbours: int = PLACE_NEIGHBOURS,
    epochs: int = PLACE_EPOCHS,
    deterministic: bool = False,
    progress: ProgressFn | None = None,
) -> PreviewLayout:
    """A LargeVis or UMAP layout of a seeded sample of the rows of ``X``, every other row placed
    by its nearest sample points (module docstring).

    Parameters
    ----------
    X : float32 ndarray of shape (n, d)
    method : {"largevis", "umap"}
    dims : {2, 3}
    sample : int
        Rows laid out, within the bounds of :data:`PREVIEW_PARAMS` ``preview_sample``
        (1,000 to 200,000). ``sample >= n`` lays out every row: the method's plain layout
        of the dataset's own graph, nothing placed.
    metric : {"cosine", "l2", "ip"}
        Of the sample's graph and of the placement's neighbours.
    seed : int
        Picks the sample and seeds its layout and every placed point's random stream.
    params : mapping, optional
        The method's parameters (``LARGEVIS_PARAMS`` / ``UMAP_PARAMS``), checked.
    neighbours : int
        Nearest sample points of each placed row (1 to 100).
    epochs : int
        SGD epochs of each placed row (0: the weighted mean only; at most 500).
    deterministic : bool
        One thread for the sample's layout and the index build: the same seed gives the same
        coordinates, bit for bit. Otherwise the layout's asynchronous SGD varies in its last
        digits from run to run (the sample and the placement's streams do not).
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    PreviewLayout
    """
    X = check_vectors(X, name="X")
    n = X.shape[0]
    if isinstance(dims, bool) or dims not in (2, 3):
        raise InvalidInputError(f"a projection has 2 or 3 dimensions, got {dims!r}")
    sample_param = PREVIEW_PARAMS["preview_sample"]
    m = min(int(sample_param.check(sample)), n)
    metric = check_metric(metric)
    seed = check_seed(seed)
    if not isinstance(deterministic, (bool, np.bool_)):
        raise InvalidInputError(f"deterministic must be True or False, got {deterministic!r}")
    method_params = _check_method_params(method, params, m)
    epochs = check_int(epochs, "epochs", low=0, high=500)
    k = check_int(neighbours, "neighbours", low=1, high=100)
    if n < 4:
        raise InvalidInputError(f"a preview needs at least 4 points, got {n}")

    rows = np.arange(n) if m >= n else np.sort(np.random.default_rng(seed).choice(n, m, False))
    S = X[rows] if m < n else X
    width = int(method_params.get("n_neighbors") or 0) - (1 if method == "umap" else 0)
    check_cancel(progress, 0.0, f"preview: neighbours of a sample of {m:,} points", "the preview")
    graph = build_knn_graph(
        S, k=min(max(width, 10), m - 1), metric=metric, seed=seed, progress=stage(progress, 0, 0.15)
    )
    layout_share = 0.4 if m < n else 1.0
    Ys, chosen = sgd_layout(
        method, graph, X=S, dims=dims, seed=seed, params=method_params,
        deterministic=bool(deterministic), progress=stage(progress, 0.15, layout_share),
    )  # fmt: skip
    del graph
    if m >= n:
        return PreviewLayout(np.ascontiguousarray(Ys, dtype=np.float32), rows, chosen)

    placed = _others(n, rows)
    k = min(k, m)
    exact = placed.size * m <= EXACT_MAX_PAIRS
    check_cancel(progress, 0.4, f"preview: indexing the {m:,} sample points", "the preview")
    index = _sample_index(S, metric, exact=exact, seed=seed, deterministic=bool(deterministic))
    del S
    Ys64 = np.ascontiguousarray(Ys, dtype=np.float64)
    Y = np.empty((n, dims), dtype=np.float32)
    Y[rows] = Ys
    forces = _gradients(method, method_params)
    base = np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]
    threads = available_threads()
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for start in range(0, placed.size, PLACE_BLOCK):
            check_cancel(
                progress, 0.45 + 0.55 * start / placed.size,
                f"preview: placed {start:,} of {placed.size:,} points by their neighbours",
                "the preview",
            )  # fmt: skip
            block = placed[start : start + PLACE_BLOCK]
            nbrs, dist = _nearest_in_sample(index, X[block], k, metric)
            Y[block] = _place_block(
                Ys64, nbrs, dist, epochs=epochs, forces=forces, base=base, first=start,
                pool=pool, threads=threads,
            )  # fmt: skip
        check_cancel(
            progress, 1.0, f"preview: placed {placed.size:,} points by their neighbours",
            "the preview",
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if not np.isfinite(Y).all():  # pragma: no cover - clipped steps from finite starts
        raise RuntimeError("the preview placed points without finite coordinates")
    chosen = dict(chosen)
    chosen["preview"] = {
        "sample": int(m),
        "placed": int(placed.size),
        "neighbours": int(k),
        "epochs": int(epochs),
        "search": "exact" if exact else "hnsw",
    }
    return PreviewLayout(Y, rows, chosen)


def preview_caption(preview: Mapping[str, Any]) -> str:
    """How a preview is labelled wherever it is shown (the page, ``embscope project``), from
    its record ``{"sample": m, "placed": n - m, ...}``."""
    sample, placed = preview.get("sample"), preview.get("placed")
    text = "Preview: layout of a " + (f"{int(sample):,}-point sample" if sample else "sample")
    if placed:
        text += f", the other {int(placed):,} placed by their neighbours"
    return text


def preview_pairs(method: str, *, preview: bool, sample: int | None) -> dict[str, str]:
    """``embscope project --preview [--sample N]`` as the method's parameters in text (its
    table checks them); refused without ``--preview`` or for a method without a preview."""
    if not preview:
        raise InvalidInputError("--sample sets the size of a preview: add --preview")
    if method not in PREVIEW_METHODS:
        raise InvalidInputError(
            f"--preview lays out a sample with {' or '.join(PREVIEW_METHODS)}, not {method}"
        )
    return {"preview": "true"} | ({} if sample is None else {"preview_sample": str(sample)})


# -- how far a preview is from the full layout -------------------------------------------------


@dataclass(frozen=True)
class PlacementError:
    """How a preview's placed points compare with the full layout of the same data.

    Attributes
    ----------
    k : int
    points : int
        Placed points scored (all of them up to :data:`ERROR_SAMPLE`, a seeded sample above).
    agreement : float
        Mean share of a placed point's k layout neighbours in the preview that are also its
        k neighbours in the full layout (each among all n points).
    offset_median, offset_p90 : float
        Distance from each placed point to where the full layout put it, after the preview is
        aligned onto the full layout by Procrustes fitted on the sample points, divided by
        the full layout's spread (root mean square distance from its centre).
    sample_offset_median : float
        The same for the sample points themselves: how far the two layouts differ where
        nothing was placed (two runs of one method differ too); the placed points' offset is
        read against it.
    preservation_placed, preservation_sample, preservation_full : float or None
        With the dataset's k-NN graph: the share of each point's k nearest neighbours (in the
        original space) that are among its k layout neighbours, for the placed points in the
        preview, the sample points in the preview, and the same placed points in the full
        layout.
    """

    k: int
    points: int
    agreement: float
    offset_median: float
    offset_p90: float
    sample_offset_median: float
    preservation_placed: float | None = None
    preservation_sample: float | None = None
    preservation_full: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def placement_error(
    preview: PreviewLayout,
    full: np.ndarray,
    *,
    graph: KnnGraph | None = None,
    k: int = 10,
    sample: int = ERROR_SAMPLE,
    seed: int = 0,
) -> PlacementError:
    """Measure a preview against the full layout ``full`` (float (n, dims), row order) of the
    same rows; ``graph`` (the dataset's k-NN graph, at least ``k`` wide) adds the kNN
    preservation of both (see :class:`PlacementError`)."""
    from embscope.core.compare import procrustes_align
    from embscope.core.projections.quality import layout_neighbours, sample_rows

    if not isinstance(preview, PreviewLayout):
        raise InvalidInputError(f"preview must be a PreviewLayout, got {type(preview).__name__}")
    Y = check_vectors(preview.coords, name="preview coordinates").astype(np.float64)
    F = check_vectors(full, name="full layout").astype(np.float64)
    n = Y.shape[0]
    if F.shape != Y.shape:
        raise InvalidInputError(
            f"the full layout has shape {F.shape}, the preview {Y.shape}: compare layouts of "
            "the same rows and dimensions"
        )
    placed = preview.placed
    if placed.size == 0 or preview.sample.size < 2:
        raise InvalidInputError("this preview placed no points (its sample held every row)")
    k = check_int(k, "k", low=1, high=n - 2)
    sample = check_int(sample, "sample", low=1)
    if graph is not None and (not isinstance(graph, KnnGraph) or graph.n != n or graph.k < k):
        raise InvalidInputError(
            f"graph must be the KnnGraph of the same {n:,} points, at least k = {k} wide"
        )
    rows = placed[sample_rows(placed.size, sample, check_seed(seed))]
    agreement = float(
        recall_per_row(layout_neighbours(Y, rows, k), layout_neighbours(F, rows, k)).mean()
    )
    fit = procrustes_align(F[preview.sample], Y[preview.sample])
    spread = float(np.sqrt(((F - F.mean(axis=0)) ** 2).sum(axis=1).mean()))
    off = np.linalg.norm(fit.apply(Y[rows]) - F[rows], axis=1) / spread
    own = np.linalg.norm(fit.aligned - F[preview.sample], axis=1) / spread
    scores: dict[str, float | None] = dict.fromkeys(
        ("preservation_placed", "preservation_sample", "preservation_full")
    )
    if graph is not None:
        some = preview.sample[sample_rows(preview.sample.size, sample, seed)]
        for name, layout, which in (
            ("preservation_placed", Y, rows),
            ("preservation_sample", Y, some),
            ("preservation_full", F, rows),
        ):
            high = np.asarray(graph.indices[which, :k], dtype=np.int64)
            scores[name] = float(recall_per_row(layout_neighbours(layout, which, k), high).mean())
    return PlacementError(
        k=k,
        points=int(rows.size),
        agreement=agreement,
        offset_median=float(np.median(off)),
        offset_p90=float(np.quantile(off, 0.9)),
        sample_offset_median=float(np.median(own)),
        **scores,
    )
