"""Heat-geodesic distances and layouts (Huguet et al., NeurIPS 2023; science.md §3).

The method, as the reference package ``heatgeo`` 0.0.1 does it:

1. **Graph** (§3.2): the alpha-decay kernel ``K_ij = exp(-(d_ij / eps_i)^40)`` on the shared
   neighbour graph, ``eps_i`` the distance to the ``knn``-th other point, entries below 1e-4
   dropped (so every neighbour closer than ``eps_i (ln 1e4)^(1/40) ~ 1.057 eps_i`` counts, read
   from as many columns of the stored graph as that takes), symmetrised ``(K + K^T) / 2``, zero
   diagonal. Cosine (and inner-product) graphs hold ``1 - cos``: converted to the chord
   ``sqrt(2 (1 - cos))``, the Euclidean distance of unit vectors.
2. **Heat kernel** (§3.3): ``H = exp(-tau L)`` with ``L = I - D^-1/2 W D^-1/2``, by the Chebyshev
   recurrence on ``L / phi - I`` (``phi = lambda_max / 2``, coefficients ``2 ive(k, -tau phi)``),
   applied to indicator columns of the landmarks (``n x L``), never to ``I_n``. The order is
   ``max(32, ceil(tau phi + 10 sqrt(tau phi)))`` unless pinned (the reference pins 32).
3. **Distances** (§3.1): ``d_ij = sqrt(max(0, -4 tau log(H_ij + 1e-16)
   + sigma 4 tau log((H_ii + H_jj) / 2 + 1e-16)))`` with ``H < 0`` clipped to 0.

**Saturation.** With ``sigma = 0`` no distance exceeds ``d_sat = sqrt(4 tau ln 1e16)
~ sqrt(147.4 tau)`` (:func:`saturation_distance`): every pair whose ``H_ij`` underflows 1e-16 --
in particular every pair more than ``order`` graph hops apart, where the polynomial is exactly
zero -- ties at ``d_sat``. Those ties rank well in a distance matrix (science.md §3.8), but asked
to place them all at one distance, MDS crumples a long manifold: on the 5,000-point Swiss roll
the reference's distance matrix scores a geodesic Spearman of 0.85 and its 2-D layout 0.76
(bench/bench_heatgeo.py).

**Diffusion time** ``tau="auto"`` (§3.4): the reference takes the knee (kneed, concave) of the
entropy ``-sum H log(H + 1e-10)`` of the full ``n x n`` kernel on the grid
``linspace(0.05, 200, 10)``, computed with the order-32 polynomial (inaccurate beyond ``tau phi
~ 32``). We keep the rule and make it exact and cheap: the same entropy summed over a seeded
sample of 8 to 32 columns (an unbiased estimate of the whole sum up to a constant factor, which
the knee ignores), on the finer grid ``geomspace(0.05, 200, 48)`` (same range; dense at short
times, where a high-dimensional graph's entropy already saturates), with a polynomial of order
``200 phi + 10 sqrt(200 phi)`` (accurate over the whole grid), all grid times from one
recurrence. The knee is Kneedle's: the maximum of the curve minus the diagonal, both axes
normalised to [0, 1] (kneed's answer for a curve with one knee; tested against kneed). A curve
with no knee (not increasing) falls back to ``tau = 10``, the reference's fixed default. On the
Swiss roll it picks 20.2 (500 points) and 24.1 (2,000 and 5,000); the reference picks 22.27.

**Landmarks.** Farthest-point sampling on the graph (edge lengths = the converted distances,
exact Dijkstra pruned to the region each new landmark takes over), starting from a seeded random
point; unreachable points count as infinitely far, so every connected component gets one. It
covers the manifold evenly (density does not matter), as MDS wants. When the landmarks are all
the points the method is the reference's exact one.

**Layout** (:func:`heatgeo_layout`):

- *Completion* (``complete=True``, our addition). An entry is *reliable* when
  ``H_il >= 1e-8 (H_ii + H_ll) / 2`` (far above the polynomial's error and the 1e-16 floor).
  Landmark pairs beyond the reliable range get the shortest path through the graph whose edges
  are reliable heat-geodesic distances: each landmark's 16 nearest reliable landmarks, plus the
  two-step paths ``l -> i -> m`` through any point ``i`` reliable to both. Reliable pairs keep
  their heat-geodesic distance. This is the triangle inequality's tightest bound (what Isomap
  does with Euclidean edges) and replaces the saturated ties by a global geodesic estimate:
  geodesic Spearman of the 2-D layout 0.998 instead of 0.76 on the 5,000-point roll (0.73
  without completion). Components the graph does not connect are put ``1.5 x`` the largest
  finite distance apart.
  ``complete=False`` keeps the saturated values, as the reference does.
- *Landmark MDS*: classical MDS, then metric MDS by stochastic gradient descent (Zheng, Pawar &
  Goodman 2018, the algorithm of ``s_gd2`` that the reference calls: weights ``d^-2``, 30 sweeps
  over all pairs in seeded random order, step sizes annealed from ``1 / w_min`` to
  ``0.1 / w_max``), in 2-D or 3-D.
- *Other points*: each is put at the mean of the positions of its 32 warmest landmarks
  (largest ``H_il``) weighted by ``H_il^2`` (a kernel regression with the heat kernel, squared
  to narrow it; of powers 1, 2, 4 the best kNN preservation). Distance-based placement
  (SMACOF against the landmarks, or landmark-MDS triangulation) was tried and is worse here:
  ``d_il`` with ``sigma < 1`` carries a self-offset ``sqrt(-4 tau log H_ii)`` that the landmark
  layout absorbs into its scale, so a point asked to sit at ``d_il`` from its nearest landmarks
  lands on a ring around them (5,000-point roll: kNN preservation@10 0.71 with 256 landmarks and
  interpolation, against 0.51 for the exact all-points layout; Spearman 0.999 / 0.997).
  A point whose heat row is all zero (only possible in a component without landmarks) is put at
  the mean of its placed graph neighbours.
- The result is centred and rotated to its principal axes, each axis's sign fixed.

**Scale.** The heat pass costs ``order x nnz(W) x L`` multiply-adds, in column blocks of 64
(a fused single-threaded numba kernel, ~1 GMAC/s; memory ``O(n L)``). ``L`` is chosen so that
this stays under ``WORK_BUDGET`` (between 256 and 2,000 landmarks; all points when there are
fewer). In high dimension distances concentrate and
the alpha kernel keeps ~90 of 150 neighbours (100k x 384 cosine), so when ``nnz(W)`` is too large
for 256 landmarks the heat graph is built on a seeded random *sample* of the points (the alpha
kernel on the sample: each sampled point's in-sample neighbours among the stored columns, its
bandwidth the ``knn``-th of them, which is what the reference would build on that sample) and
the other points' heat rows are extended from their in-sample neighbours,
``H_i. = sum_j p_ij H_j.`` with ``p_ij`` the row-normalised alpha kernel (one diffusion step into
the sample). The sample keeps at least ``2 knn / k`` of the points so that most points keep
``knn`` in-sample neighbours among the ``k`` stored columns.

``H_ii`` (the Harnack term with ``sigma > 0``, and the reliability test) is exact for the
landmarks and, for other points, the heat-weighted mean ``sum_l H_il H_ll / sum_l H_il`` of the
landmarks' (the diagonal is a smooth function of position: the local volume).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.linalg import eigh
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from scipy.special import ive

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph
from embscope.core.progress import ProgressFn
from embscope.core.projections.params import HEATGEO_PARAMS
from embscope.core.validation import check_int

__all__ = [
    "AUTO_TAU_GRID",
    "HeatGeodesics",
    "auto_tau_grid",
    "chebyshev_order",
    "heat_geodesic_distances",
    "HeatGeoLayout",
    "heatgeo_embedding",
    "heatgeo_layout",
    "saturation_distance",
]

DECAY = 40.0  # alpha of the alpha-decay kernel (graphtools decay)
THRESH = 1e-4  # kernel entries below this are dropped (graphtools thresh)
MIN_ORDER = 32  # the reference's Chebyshev order; our automatic order never goes below it
LOG_FLOOR = 1e-16  # added to H before the log, as the reference does
ENTROPY_FLOOR = 1e-10  # added to H in the time entropy, as the reference does
AUTO_TAU_MIN = 0.05
AUTO_TAU_MAX = 200.0
AUTO_TAU_POINTS = 48
AUTO_TAU_FALLBACK = 10.0  # HeatGeo's default tau, used when the entropy curve has no knee
AUTO_TAU_GRID = np.geomspace(AUTO_TAU_MIN, AUTO_TAU_MAX, AUTO_TAU_POINTS)
# Columns of the entropy estimate: at most this many, and at most _AUTO_ELEMENTS float32
# accumulators (n x columns x grid points) in memory.
_AUTO_MAX_COLUMNS = 32
_AUTO_MIN_COLUMNS = 8
_AUTO_ELEMENTS = 1 << 23
RELIABLE_RATIO = 1e-8  # reliable: H_il >= RELIABLE_RATIO * (H_ii + H_ll) / 2
_ANCHORS = 8  # nearest reliable landmarks of a point, paired into completion edges
_LANDMARK_EDGES = 16  # nearest reliable landmarks per landmark in the completion graph
_UNREACHABLE = 1.5  # unconnected components: this times the largest finite distance apart
# Multiply-adds of the heat pass (order x nnz x landmarks) the automatic choices aim at: about
# 1-3 s on one core.
WORK_BUDGET = 2.0e9
MIN_LANDMARKS = 256
MAX_LANDMARKS = 2000
_ORDER_GUESS = 48  # order assumed when deciding whether to sample (auto tau is chosen later)
_COEF_FLOOR = 1e-30  # smaller Chebyshev terms are skipped: |T_k x| <= |x|, far below 1e-16
_BLOCK = 64  # landmark columns per Chebyshev block
_SGD_ITERS = 30
_SGD_EPS = 0.1
_SGD_CHUNK = 4096
_INTERP_ANCHORS = 32  # warmest landmarks a point is interpolated from
_INTERP_POWER = 2  # weights H^2
_MAX_MATRIX_ELEMENTS = 150_000_000  # n x L float64 distances + float32 heat: 1.8 GB
_REPORT_EVERY = 0.1  # seconds between progress calls inside a stage


# -- results and small public helpers --------------------------------------------------------


@dataclass(frozen=True)
class HeatGeodesics:
    """Heat-geodesic distances from every point to a set of landmarks.

    Attributes
    ----------
    distances : float64 ndarray of shape (n, L)
        ``distances[i, l]`` is the heat-geodesic distance from point ``i`` to landmark
        ``landmarks[l]``. With all points as landmarks it is the full (n, n) matrix (its
        diagonal is not zero when ``sigma < 1``, as in the reference).
    landmarks : int64 ndarray of shape (L,)
        Row numbers of the landmarks (all rows, in order, when every point is one).
    tau, order, phi : float, int, float
        Diffusion time, Chebyshev order, and ``lambda_max(L) / 2``.
    saturation : float
        ``sqrt(4 tau ln 1e16)``: the largest distance when ``sigma = 0``; pairs whose heat
        underflows (or that are more than ``order`` hops apart) all get it.
    entropy : tuple of two float64 ndarrays, or None
        ``(taus, entropies)`` of the automatic choice of tau (None when tau was given).
    """

    distances: np.ndarray
    landmarks: np.ndarray
    tau: float
    order: int
    phi: float
    saturation: float
    entropy: tuple[np.ndarray, np.ndarray] | None = None


def saturation_distance(tau: float) -> float:
    """``sqrt(4 tau ln 1e16) ~ sqrt(147.4 tau)``: where heat-geodesic distances saturate."""
    return math.sqrt(4.0 * float(tau) * -math.log(LOG_FLOOR))


def chebyshev_order(tau: float, phi: float) -> int:
    """The automatic Chebyshev order: ``max(32, ceil(tau phi + 10 sqrt(tau phi)))``."""
    x = float(tau) * float(phi)
    return max(MIN_ORDER, math.ceil(x + 10.0 * math.sqrt(x)))


def auto_tau_grid() -> np.ndarray:
    """The diffusion times the automatic choice looks at (a copy)."""
    return AUTO_TAU_GRID.copy()


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """Throttled ``progress(fraction, message)``; raises OperationCancelled on True."""

    def __init__(self, progress: ProgressFn | None, what: str) -> None:
        self.progress = progress
        self.what = what
        self.last = -math.inf

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.last < _REPORT_EVERY:
            return
        self.last = now
        if self.progress(float(min(max(fraction, 0.0), 1.0)), message):
            raise OperationCancelled(f"{self.what} was cancelled")

    def part(self, low: float, high: float) -> _Part:
        return _Part(self, low, high)


class _Part:
    def __init__(self, parent: _Progress, low: float, high: float) -> None:
        self.parent, self.low, self.high = parent, low, high

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        self.parent(self.low + (self.high - self.low) * fraction, message, force=force)


# -- validation -------------------------------------------------------------------------------


def _check_graph(graph: Any, knn: Any) -> tuple[KnnGraph, int]:
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError(
            "heat-geodesic needs the shared neighbour graph (core.graph.KnnGraph), got "
            f"{type(graph).__name__}; build one with core.graph.build_knn_graph"
        )
    n = graph.n
    if n < 3:
        raise InvalidInputError(f"heat-geodesic needs at least 3 points, got {n}")
    knn = check_int(knn, "knn", low=1)
    if knn > graph.k:
        raise InvalidInputError(
            f"knn = {knn} needs a graph of at least {knn} neighbours per point; this one has "
            f"{graph.k}: build a wider graph (core.graph.get_or_build_graph(..., k={knn}))"
        )
    if graph.metric not in ("l2", "cosine", "ip"):
        raise InvalidInputError(f"unknown graph metric {graph.metric!r}: use l2 or cosine")
    idx = graph.indices
    if not np.issubdtype(idx.dtype, np.integer) or (
        idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n)
    ):
        raise InvalidInputError("graph indices must be row numbers between 0 and n - 1")
    dist = graph.distances
    if not np.all(np.isfinite(dist)):
        raise InvalidInputError("graph distances contain NaN or infinite values")
    return graph, knn


def _check_tau(tau: Any) -> float | None:
    if isinstance(tau, str):
        if tau == "auto":
            return None
        raise InvalidInputError(f"tau must be 'auto' or a positive number, got {tau!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"tau must be 'auto' or a positive number, got {tau!r}")
    value = float(tau)
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"tau must be a positive finite number, got {value}")
    return value


def _check_sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"sigma must be a number >= 0, got {sigma!r}")
    value = float(sigma)
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"sigma (the Harnack term's weight) must be >= 0, got {value}")
    return value


def _check_order(order: Any) -> int | None:
    return None if order is None else check_int(order, "order", low=2, high=100_000)


def _check_progress(progress: Any) -> ProgressFn | None:
    if progress is not None and not callable(progress):
        raise InvalidInputError("progress must be a function (fraction, message) -> bool")
    return cast("ProgressFn | None", progress)


# -- the graph --------------------------------------------------------------------------------


def _euclidean(dist: np.ndarray, metric: str) -> np.ndarray:
    """Graph distances as Euclidean float64 (chord for cosine / inner product)."""
    d = dist.astype(np.float64)
    if metric != "l2":
        d = np.sqrt(2.0 * np.maximum(d, 0.0))
    return d


def _alpha_chunks(
    graph: KnnGraph, knn: int, rows: np.ndarray, pos: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Alpha-decay kernel entries of ``rows``, a block of rows at a time.

    Yields ``(row position, column, kernel, length)`` arrays. ``pos`` maps a point to its
    position in the heat graph (-1: not in it); None: all points. A row's bandwidth is the
    distance to its ``knn``-th neighbour in the heat graph (its last one when fewer are
    stored); a row without any has no entries.
    """
    radius_factor = (-math.log(THRESH)) ** (1.0 / DECAY)
    chunk = max(1, (1 << 19) // graph.k)
    for s in range(0, rows.size, chunk):
        r = rows[s : s + chunk]
        idx = graph.indices[r].astype(np.int64)
        d = _euclidean(graph.distances[r], graph.metric)
        if pos is None:
            member = np.ones(idx.shape, dtype=bool)
            cols = idx
        else:
            cols = pos[idx]
            member = cols >= 0
        count = np.cumsum(member, axis=1)
        have = count[:, -1]
        # column of the knn-th member (the last member when there are fewer)
        target = np.maximum(np.minimum(have, knn), 1)
        at = np.argmax(count >= target[:, None], axis=1)
        eps = np.maximum(d[np.arange(r.size), at], np.finfo(np.float64).eps)
        ok = member & (d <= eps[:, None] * radius_factor) & (have > 0)[:, None]
        with np.errstate(over="ignore", under="ignore"):
            ker = np.exp(-((d / eps[:, None]) ** DECAY))
        ok &= ker >= THRESH
        rr, cc = np.nonzero(ok)
        yield rr + s, cols[rr, cc], ker[rr, cc], d[rr, cc]


def _alpha_entries(
    graph: KnnGraph, knn: int, rows: np.ndarray, pos: np.ndarray | None, report: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All of :func:`_alpha_chunks`' entries, concatenated."""
    chunks = []
    for chunk in _alpha_chunks(graph, knn, rows, pos):
        chunks.append(chunk)
        if report is not None and chunk[0].size:
            report(min(1.0, (chunk[0][-1] + 1) / max(rows.size, 1)), "kernel rows")
    if not chunks:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty.astype(np.int64), empty, empty
    return (
        np.concatenate([c[0] for c in chunks]),
        np.concatenate([c[1] for c in chunks]),
        np.concatenate([c[2] for c in chunks]),
        np.concatenate([c[3] for c in chunks]),
    )


@dataclass(frozen=True)
class _HeatGraph:
    """The graph the heat kernel runs on (all points, or a sample of them)."""

    nodes: np.ndarray | None  # point of each node (None: node i is point i)
    adjacency: sp.csr_matrix  # D^-1/2 W D^-1/2, float64
    lengths: sp.csr_matrix  # edge lengths (same pattern as W), for the landmark search
    phi: float

    @property
    def size(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.adjacency.nnz)


def _kernel_matrix(graph: KnnGraph, knn: int, nodes: np.ndarray | None) -> tuple[Any, Any]:
    """Symmetrised alpha-decay kernel W (zero diagonal) and edge lengths on ``nodes``."""
    if nodes is None:
        m, rows, pos = graph.n, np.arange(graph.n), None
    else:
        m, rows = nodes.size, nodes
        pos = np.full(graph.n, -1, dtype=np.int64)
        pos[nodes] = np.arange(m)
    r, c, k, d = _alpha_entries(graph, knn, rows, pos)
    keep = r != c  # self is excluded by row, but be safe
    r, c, k, d = r[keep], c[keep], k[keep], d[keep]
    K = sp.csr_matrix((k, (r, c)), shape=(m, m))
    K.sum_duplicates()
    W = ((K + K.T) * 0.5).tocsr()
    W.setdiag(0.0)
    W.eliminate_zeros()
    lengths = sp.csr_matrix((d, (r, c)), shape=(m, m))
    lengths.sum_duplicates()
    lengths = lengths.maximum(lengths.T).tocsr()
    return W, lengths


def _lambda_max(adjacency: sp.csr_matrix) -> float:
    """Largest eigenvalue of ``I - adjacency`` (normalised Laplacian, in [0, 2])."""
    m = adjacency.shape[0]
    lap = (sp.identity(m, format="csr") - adjacency).tocsr()
    if m <= 64:
        return float(np.linalg.eigvalsh(lap.toarray())[-1])
    v0 = np.random.default_rng(0).random(m) + 0.5
    try:
        value = eigsh(lap, k=1, which="LA", return_eigenvectors=False, v0=v0, tol=1e-8)[0]
    except ArpackNoConvergence:
        return 2.0  # the bound of every normalised Laplacian: safe, if slower to converge
    return float(min(max(value, 1e-6), 2.0))


def _heat_graph(graph: KnnGraph, knn: int, nodes: np.ndarray | None) -> _HeatGraph:
    W, lengths = _kernel_matrix(graph, knn, nodes)
    deg = np.asarray(W.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    np.divide(1.0, np.sqrt(deg), out=inv, where=deg > 0)
    A = sp.diags(inv) @ W @ sp.diags(inv)
    A = sp.csr_matrix(A)
    A.sort_indices()
    phi = _lambda_max(A) / 2.0
    return _HeatGraph(nodes, A, lengths, phi)


def _sample_nodes(graph: KnnGraph, knn: int, seed: int, report: Any = None) -> np.ndarray | None:
    """A seeded random sample of the points to run the heat kernel on, or None for all.

    All points while ``nnz(W) x 48 x 256`` fits in ``WORK_BUDGET``; else a sample whose
    predicted ``nnz`` fits, but never fewer than ``2 knn / k`` of the points.
    """
    n = graph.n
    entries = 0
    for chunk in _alpha_chunks(graph, knn, np.arange(n), None):
        entries += chunk[0].size
        if report is not None:
            report(min(1.0, chunk[0][-1] / n) if chunk[0].size else 0.0, "measuring the kernel")
    nnz_full = 2 * entries  # symmetrised, at most
    nnz_max = WORK_BUDGET / (_ORDER_GUESS * MIN_LANDMARKS)
    if nnz_full <= nnz_max:
        return None
    per_row = nnz_full / n
    # in a sample, a point keeps the in-sample part of its stored row (high dimension: the
    # kernel ball is truncated by the stored width) or about the same count (low dimension)
    m = int(nnz_max / min(per_row, 2.0 * max(knn, 2)))
    m = max(m, math.ceil(n * min(1.0, 2.0 * knn / graph.k)), MIN_LANDMARKS)
    if m >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))


# -- Chebyshev heat kernel ----------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _cheb_step(  # pragma: no cover - numba
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    T1: np.ndarray,
    T0: np.ndarray,
    a: float,
    b: float,
    coef: np.ndarray,
    Y: np.ndarray,
) -> None:
    """``T0 <- a T1 - b (A @ T1) - T0`` row by row, then ``Y[t] += coef[t] T0``."""
    n, m = T1.shape
    nt = coef.shape[0]
    for i in range(n):
        for c in range(m):
            T0[i, c] = a * T1[i, c] - T0[i, c]
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            w = b * data[p]
            for c in range(m):
                T0[i, c] -= w * T1[j, c]
        for t in range(nt):
            ct = coef[t]
            if ct == 0.0:
                continue
            for c in range(m):
                Y[t, i, c] += ct * T0[i, c]


def _coefficients(taus: np.ndarray, phi: float, order: int) -> np.ndarray:
    """``c[t, k] = 2 ive(k, -tau_t phi)``: shape (len(taus), order + 1)."""
    k = np.arange(order + 1, dtype=np.float64)
    coef: np.ndarray = 2.0 * ive(k[None, :], -np.asarray(taus, dtype=np.float64)[:, None] * phi)
    coef[np.abs(coef) < _COEF_FLOOR] = 0.0  # the kernel skips them (short times, high k)
    return coef


def _heat_columns(
    hg: _HeatGraph,
    columns: np.ndarray,
    coef: np.ndarray,
    out_dtype: Any,
    report: Any,
    message: str,
) -> np.ndarray:
    """``H_t[:, columns]`` for every row of ``coef``: shape (n_t, n, len(columns))."""
    A = hg.adjacency
    n, m = hg.size, columns.size
    order = coef.shape[1] - 1
    inv_phi = 1.0 / hg.phi
    Y = np.zeros((coef.shape[0], n, m), dtype=out_dtype)
    T1 = np.zeros((n, m))
    T1[columns, np.arange(m)] = 1.0
    Y[:, columns, np.arange(m)] = 0.5 * coef[:, :1]
    T0 = np.zeros((n, m))
    # T1 = Lt X with Lt = L / phi - I = (1 / phi - 1) I - A / phi
    _cheb_step(A.indptr, A.indices, A.data, T1, T0, inv_phi - 1.0, inv_phi, coef[:, 1], Y)
    T0, T1 = T1, T0
    for k in range(2, order + 1):
        _cheb_step(
            A.indptr,
            A.indices,
            A.data,
            T1,
            T0,
            2.0 * (inv_phi - 1.0),
            2.0 * inv_phi,
            coef[:, k],
            Y,
        )
        T0, T1 = T1, T0
        report(k / order, message)
    np.maximum(Y, 0, out=Y)
    return Y


def _choose_tau(
    hg: _HeatGraph, seed: int, report: Any
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The knee of the time-entropy curve (see the module docstring)."""
    n = hg.size
    taus = AUTO_TAU_GRID
    cols = min(n, _AUTO_MAX_COLUMNS, max(_AUTO_MIN_COLUMNS, _AUTO_ELEMENTS // (n * taus.size)))
    columns = np.sort(np.random.default_rng(seed).choice(n, size=cols, replace=False))
    order = chebyshev_order(AUTO_TAU_MAX, hg.phi)
    coef = _coefficients(taus, hg.phi, order)
    H = _heat_columns(hg, columns, coef, np.float32, report, "choosing the diffusion time")
    entropy = np.empty(taus.size)
    for t in range(taus.size):
        h = H[t].astype(np.float64)
        entropy[t] = -(h * np.log(h + ENTROPY_FLOOR)).sum() * (n / cols)
    return _knee(taus, entropy), (taus.copy(), entropy)


def _knee(x: np.ndarray, y: np.ndarray) -> float:
    """Kneedle's knee of an increasing concave curve: argmax of normalised y minus x."""
    span = y.max() - y.min()
    if not np.isfinite(span) or span <= 0 or y[-1] <= y[0]:
        return AUTO_TAU_FALLBACK
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y.min()) / span
    diff = yn - xn
    best = int(np.argmax(diff))
    if diff[best] <= 0 or best in (0, x.size - 1):
        return AUTO_TAU_FALLBACK
    return float(x[best])


# -- landmarks ----------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _farthest_points(  # pragma: no cover
    indptr: np.ndarray,
    indices: np.ndarray,
    lengths: np.ndarray,
    dist: np.ndarray,
    chosen: np.ndarray,
    start: int,
    stop: int,
) -> int:
    """Farthest-point sampling by graph distance, landmarks ``start..stop-1`` of ``chosen``.

    ``chosen[start]`` must hold the next landmark; ``dist`` (the distance of every node to
    its nearest landmark so far, inf at first) is updated by a Dijkstra from each new
    landmark pruned to the nodes it brings closer. Returns how many landmarks are filled in
    (fewer than ``stop`` when every node already is at distance 0 from one).
    """
    n = indptr.size - 1
    for s in range(start, stop):
        src = chosen[s]
        dist[src] = 0.0
        heap = [(0.0, src)]
        while len(heap) > 0:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                nd = d + lengths[p]
                if nd < dist[v]:
                    dist[v] = nd
                    heapq.heappush(heap, (nd, v))
        if s + 1 == chosen.size:
            return s + 1
        # next: the farthest node (unreached ones are infinitely far); ties: lowest number
        best = -1.0
        nxt = 0
        for i in range(n):
            if dist[i] > best:
                best = dist[i]
                nxt = i
        if best <= 0.0:  # every node is a landmark or a duplicate of one
            return s + 1
        chosen[s + 1] = nxt
    return stop


def _choose_landmarks(hg: _HeatGraph, count: int, seed: int, report: Any) -> np.ndarray:
    """``count`` landmarks (heat-graph nodes) by farthest-point sampling, seeded start."""
    n = hg.size
    if count >= n:
        return np.arange(n, dtype=np.int64)
    L = hg.lengths
    indptr, indices = L.indptr.astype(np.int64), L.indices.astype(np.int64)
    dist = np.full(n, np.inf)
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = int(np.random.default_rng(seed).integers(n))
    filled = 0
    step = 16
    while filled < count:
        stop = min(count, filled + step)
        got = _farthest_points(indptr, indices, L.data, dist, chosen, filled, stop)
        report(got / count, f"choosing landmarks: {got} of {count}")
        if got < stop:
            filled = got
            break
        filled = got
    chosen = np.unique(chosen[:filled])
    if chosen.size < count:  # duplicates everywhere: fill up with seeded random others
        rest = np.setdiff1d(np.arange(n), chosen)
        extra = np.random.default_rng(seed + 1).choice(
            rest, size=count - chosen.size, replace=False
        )
        chosen = np.union1d(chosen, extra)
    return chosen.astype(np.int64)


def _auto_landmarks(hg: _HeatGraph, order: int) -> int:
    count = int(WORK_BUDGET / max(1, hg.nnz * order))
    return min(hg.size, max(MIN_LANDMARKS, min(MAX_LANDMARKS, count)))


# -- heat rows to distances ---------------------------------------------------------------------


def _landmark_heat(
    hg: _HeatGraph, landmarks: np.ndarray, tau: float, order: int, report: Any
) -> np.ndarray:
    """``H[:, landmarks]`` (float32, clipped at 0), in blocks of 64 columns."""
    n, L = hg.size, landmarks.size
    coef = _coefficients(np.array([tau]), hg.phi, order)
    out = np.empty((n, L), dtype=np.float32)
    blocks = range(0, L, _BLOCK)
    for b, s in enumerate(blocks):
        cols = landmarks[s : s + _BLOCK]

        def sub(fraction: float, message: str, b: int = b) -> None:
            report((b + fraction) / len(blocks), message)

        msg = f"heat kernel: landmarks {s + 1}-{s + cols.size} of {L} (order {order})"
        out[:, s : s + cols.size] = _heat_columns(hg, cols, coef, np.float64, sub, msg)[0]
    return out


def _diagonal(H: np.ndarray, landmark_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``H_ii`` of every row (exact for landmarks, heat-weighted landmark mean otherwise)."""
    L = landmark_rows.size
    h_land = H[landmark_rows, np.arange(L)].astype(np.float64)
    weights = H.astype(np.float64) if H.size <= (1 << 24) else None
    if weights is not None:
        total = weights.sum(axis=1)
        est = weights @ h_land
    else:
        total = np.zeros(H.shape[0])
        est = np.zeros(H.shape[0])
        step = max(1, (1 << 22) // L)
        for s in range(0, H.shape[0], step):
            w = H[s : s + step].astype(np.float64)
            total[s : s + step] = w.sum(axis=1)
            est[s : s + step] = w @ h_land
    fallback = float(np.median(h_land)) if L else 0.0
    diag = np.where(total > 0, est / np.where(total > 0, total, 1.0), fallback)
    diag[landmark_rows] = h_land
    return diag, h_land


def _distances(
    H: np.ndarray, tau: float, sigma: float, h_rows: np.ndarray, h_land: np.ndarray
) -> np.ndarray:
    """Heat-geodesic distances (float64) from heat rows, in row blocks.

    float64 on purpose: near saturation, ``log(1e-16 + H)`` still orders pairs by their tiny
    ``H`` (fewer hops, more heat) in the 9th digit; float32 ties them and costs 0.015 of
    Spearman on the 500-point roll (0.974 instead of the reference's 0.988).
    """
    n, L = H.shape
    out = np.empty((n, L), dtype=np.float64)
    step = max(1, (1 << 22) // max(L, 1))
    for s in range(0, n, step):
        h = H[s : s + step].astype(np.float64)
        v = -4.0 * tau * np.log(h + LOG_FLOOR)
        if sigma:
            v += sigma * 4.0 * tau * np.log(0.5 * (h_rows[s : s + step, None] + h_land) + LOG_FLOOR)
        np.maximum(v, 0.0, out=v)
        out[s : s + step] = np.sqrt(v)
    return out


def _extension(
    graph: KnnGraph, knn: int, nodes: np.ndarray, report: Any = None
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Points outside the heat graph and their row-normalised alpha kernel into it."""
    n = graph.n
    pos = np.full(n, -1, dtype=np.int64)
    pos[nodes] = np.arange(nodes.size)
    others = np.flatnonzero(pos < 0)
    r, c, k, _d = _alpha_entries(graph, knn, others, pos, report)
    P = sp.csr_matrix((k, (r, c)), shape=(others.size, nodes.size))
    P.sum_duplicates()
    rowsum = np.asarray(P.sum(axis=1)).ravel()
    inv = np.zeros_like(rowsum)
    np.divide(1.0, rowsum, out=inv, where=rowsum > 0)
    return others, sp.csr_matrix(sp.diags(inv) @ P)


# -- public: distances ------------------------------------------------------------------------


def heat_geodesic_distances(
    graph: KnnGraph,
    *,
    knn: int = 10,
    tau: float | str = "auto",
    order: int | None = None,
    sigma: float = 0.0,
    landmarks: int | np.ndarray | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> HeatGeodesics:
    """Heat-geodesic distances from every point to landmarks (to every point by default).

    Parameters
    ----------
    graph : KnnGraph
        The shared neighbour graph (``l2``, or ``cosine`` / ``ip`` of unit vectors), at least
        ``knn`` neighbours wide; the kernel reads as many columns as its radius needs.
    knn : int
        The bandwidth neighbour of the alpha-decay kernel (reference: 10 in the paper's runs).
    tau : float or "auto"
        Diffusion time; "auto" takes the knee of the time-entropy curve (module docstring).
    order : int, optional
        Chebyshev order; default ``max(32, ceil(tau phi + 10 sqrt(tau phi)))``. Pin 32 to
        reproduce the reference.
    sigma : float
        Weight of the Harnack (volume) term, >= 0 (reference default 0).
    landmarks : None, int or int array
        None: every point (the exact (n, n) matrix); an int: that many landmarks chosen by
        farthest-point sampling (seeded); an array: those row numbers.
    seed : int
        Seeds the first landmark and the entropy columns of ``tau="auto"``.
    progress : callable, optional
        ``progress(fraction, message) -> bool``; True cancels (OperationCancelled).

    Returns
    -------
    HeatGeodesics
        ``distances`` float64 (n, L), ``landmarks`` int64 (L,), and the tau, order, phi,
        saturation distance and entropy curve used.
    """
    graph, knn = _check_graph(graph, knn)
    fixed_tau = _check_tau(tau)
    order = _check_order(order)
    sigma = _check_sigma(sigma)
    seed = check_int(seed, "seed", low=0)
    progress = _check_progress(progress)
    n = graph.n
    if landmarks is None:
        land = None
        count = n
    elif isinstance(landmarks, (int, np.integer)) and not isinstance(landmarks, bool):
        count = min(check_int(landmarks, "landmarks", low=1), n)
        land = None
    else:
        try:
            land = np.asarray(landmarks)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"landmarks must be a count or row numbers: {exc}") from exc
        if land.ndim != 1 or land.size == 0 or not np.issubdtype(land.dtype, np.integer):
            raise InvalidInputError("landmarks must be a count or a 1-D array of row numbers")
        if land.min() < 0 or land.max() >= n or np.unique(land).size != land.size:
            raise InvalidInputError(
                f"landmark row numbers must be distinct and between 0 and {n - 1}"
            )
        land = land.astype(np.int64)
        count = land.size
    if n * count > _MAX_MATRIX_ELEMENTS:
        raise InvalidInputError(
            f"{n} x {count} distances would take {n * count * 12 / 1e9:.1f} GB: pass "
            f"landmarks=<a few hundred to a few thousand> instead"
        )
    report = _Progress(progress, "heat-geodesic distances")
    report(0.0, "heat-geodesic: building the graph", force=True)
    hg = _heat_graph(graph, knn, None)
    entropy = None
    if fixed_tau is None:
        report(0.05, "heat-geodesic: choosing the diffusion time", force=True)
        tau_value, entropy = _choose_tau(hg, seed, report.part(0.05, 0.3))
    else:
        tau_value = fixed_tau
    order_value = order if order is not None else chebyshev_order(tau_value, hg.phi)
    if land is None:
        report(0.3, "heat-geodesic: choosing landmarks", force=True)
        land = _choose_landmarks(hg, count, seed, report.part(0.3, 0.35))
    H = _landmark_heat(hg, land, tau_value, order_value, report.part(0.35, 0.95))
    report(0.95, "heat-geodesic: distances", force=True)
    if sigma:
        h_rows, h_land = _diagonal(H, land)
    else:
        h_rows = h_land = np.zeros(0)
    D = _distances(H, tau_value, sigma, h_rows, h_land)
    report(1.0, "heat-geodesic: done", force=True)
    return HeatGeodesics(
        distances=D,
        landmarks=land,
        tau=float(tau_value),
        order=int(order_value),
        phi=float(hg.phi),
        saturation=saturation_distance(tau_value),
        entropy=entropy,
    )


# -- layout: completion and MDS -----------------------------------------------------------------


@njit(cache=True, nogil=True)
def _anchor_edges(  # pragma: no cover - numba
    D: np.ndarray,
    H: np.ndarray,
    h_rows: np.ndarray,
    h_land: np.ndarray,
    ratio: float,
    anchors: int,
    E: np.ndarray,
) -> None:
    """``E[a, b] = min(E[a, b], D[i, a] + D[i, b])`` over the reliable anchors a, b of each i."""
    n, L = D.shape
    best = np.empty(anchors, dtype=np.int64)
    for i in range(n):
        found = 0
        for lm in range(L):
            if H[i, lm] >= ratio * 0.5 * (h_rows[i] + h_land[lm]) and H[i, lm] > 0:
                # insertion into the anchors-nearest list
                if found < anchors:
                    best[found] = lm
                    found += 1
                elif D[i, lm] < D[i, best[anchors - 1]]:
                    best[anchors - 1] = lm
                else:
                    continue
                q = found - 1
                while q > 0 and D[i, best[q]] < D[i, best[q - 1]]:
                    tmp = best[q]
                    best[q] = best[q - 1]
                    best[q - 1] = tmp
                    q -= 1
        for x in range(found):
            a = best[x]
            for y in range(x + 1, found):
                b = best[y]
                w = D[i, a] + D[i, b]
                if w < E[a, b]:
                    E[a, b] = w
                    E[b, a] = w


def _complete_landmarks(
    H: np.ndarray,
    tau: float,
    sigma: float,
    h_rows: np.ndarray,
    h_land: np.ndarray,
    rows: np.ndarray,
    report: Any,
) -> np.ndarray:
    """Landmark distances with unreliable pairs replaced by shortest reliable paths.

    ``H`` holds every point's heat row to the landmarks, ``rows`` the landmarks' rows in it.
    """
    L = rows.size
    D_LL = _distances(H[rows], tau, sigma, h_rows[rows], h_land)
    D_LL = 0.5 * (D_LL + D_LL.T)
    H_LL = H[rows].astype(np.float64)
    H_LL = 0.5 * (H_LL + H_LL.T)
    reliable = (H_LL >= RELIABLE_RATIO * 0.5 * (h_land[:, None] + h_land[None, :])) & (H_LL > 0)
    del H_LL
    np.fill_diagonal(reliable, False)
    E = np.where(reliable, D_LL, np.inf)
    report(0.1, "completing distances beyond the heat kernel's reach", force=True)
    n = H.shape[0]
    step = max(1, (1 << 20) // max(L, 1))
    for s in range(0, n, step):
        part = slice(s, s + step)
        D = _distances(H[part], tau, sigma, h_rows[part], h_land)
        _anchor_edges(D, H[part], h_rows[part], h_land, RELIABLE_RATIO, _ANCHORS, E)
        report(0.1 + 0.5 * min(1.0, (s + step) / n), "completing distances")
    np.fill_diagonal(E, np.inf)
    # keep each landmark's nearest edges (a sparse graph keeps Dijkstra cheap)
    k = min(_LANDMARK_EDGES, L - 1)
    near = np.argpartition(E, k - 1, axis=1)[:, :k]
    r = np.repeat(np.arange(L), k)
    c = near.ravel()
    w = E[r, c]
    del E
    ok = np.isfinite(w)
    G = sp.csr_matrix((np.maximum(w[ok], 1e-12), (r[ok], c[ok])), shape=(L, L))
    G = G.maximum(G.T)
    report(0.7, "shortest paths between landmarks", force=True)
    S: np.ndarray = dijkstra(G, directed=False)
    out = np.where(reliable, np.minimum(D_LL, S), S)
    np.fill_diagonal(out, 0.0)
    finite = np.isfinite(out)
    if not finite.all():
        top = out[finite].max() if finite.any() else 1.0
        out[~finite] = _UNREACHABLE * max(top, 1e-12)
    return out


def _interpolate(
    H: np.ndarray, YL: np.ndarray, rows: np.ndarray, report: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``rows`` as the ``H^2``-weighted mean of their 32 warmest landmarks.

    Returns the positions and whether any heat reached the row at all.
    """
    L = YL.shape[0]
    k = min(_INTERP_ANCHORS, L)
    out = np.zeros((rows.size, YL.shape[1]))
    informed = np.zeros(rows.size, dtype=bool)
    step = max(1, (1 << 20) // L)
    for s in range(0, rows.size, step):
        h = H[rows[s : s + step]].astype(np.float64)
        idx = (
            np.argpartition(-h, k - 1, axis=1)[:, :k]
            if k < L
            else np.tile(np.arange(L), (len(h), 1))
        )
        w = np.take_along_axis(h, idx, axis=1) ** _INTERP_POWER
        total = w.sum(axis=1)
        ok = total > 0
        out[s : s + step][ok] = (w[ok, :, None] * YL[idx[ok]]).sum(axis=1) / total[ok, None]
        informed[s : s + step] = ok
        report(min(1.0, (s + step) / max(rows.size, 1)), "heat-geodesic: placing the other points")
    return out, informed


def _classical_mds(D: np.ndarray, dims: int) -> np.ndarray:
    """Classical (Torgerson) MDS of a symmetric distance matrix, float64 (L, dims).

    The top eigenvectors of the double-centred matrix by Lanczos above 200 points (a dense
    eigensolver is 10x slower at 2,000), with a fixed start vector so that it is deterministic.
    """
    L = D.shape[0]
    D2 = D * D
    B = -0.5 * (D2 - D2.mean(axis=0)[None, :] - D2.mean(axis=1)[:, None] + D2.mean())
    del D2
    eig: tuple[np.ndarray, np.ndarray] | None = None
    if L > 200:
        v0 = np.random.default_rng(0).random(L) + 0.5
        try:
            eig = eigsh(B, k=dims, which="LA", v0=v0, tol=1e-10)
        except ArpackNoConvergence:
            eig = None
    if eig is None:
        eig = eigh(B, subset_by_index=[max(0, L - dims), L - 1])
    values, vectors = eig
    top = np.argsort(values)[::-1][:dims]
    values, vectors = values[top], vectors[:, top]
    Y: np.ndarray = vectors * np.sqrt(np.maximum(values, 0.0))
    if Y.shape[1] < dims:
        Y = np.hstack([Y, np.zeros((L, dims - Y.shape[1]))])
    return Y


@njit(cache=True, nogil=True)
def _sgd_epoch(  # pragma: no cover - numba
    Y: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    dist: np.ndarray,
    weight: np.ndarray,
    eta: float,
    chunks: np.ndarray,
    chunk: int,
) -> None:
    """One sweep of s_gd2's pair updates, the (pre-shuffled) pairs taken chunk by chunk."""
    dims = Y.shape[1]
    m = first.size
    for c in chunks:
        for p in range(c * chunk, min(m, (c + 1) * chunk)):
            i = first[p]
            j = second[p]
            mag = 0.0
            for a in range(dims):
                t = Y[i, a] - Y[j, a]
                mag += t * t
            mag = math.sqrt(mag)
            if mag < 1e-12:
                mag = 1e-12
            mu = weight[p] * eta
            if mu > 1.0:
                mu = 1.0
            r = mu * (mag - dist[p]) / (2.0 * mag)
            for a in range(dims):
                t = r * (Y[i, a] - Y[j, a])
                Y[i, a] -= t
                Y[j, a] += t


def _sgd_mds(D: np.ndarray, Y0: np.ndarray, seed: int, report: Any) -> np.ndarray:
    """Metric MDS by SGD (Zheng et al. 2018; s_gd2's weights and step sizes), from ``Y0``.

    s_gd2 reshuffles all pairs every sweep; we shuffle them once (seeded) and visit them each
    sweep in a new random order of contiguous chunks of 4,096 pairs: random enough, and
    streaming through memory instead of one cache miss per pair (10x faster at 2M pairs).
    """
    L = D.shape[0]
    if L < 3:
        return Y0
    rng = np.random.default_rng(seed)
    first, second = np.triu_indices(L, 1)
    shuffle = rng.permutation(first.size)
    first = first[shuffle].astype(np.int32)
    second = second[shuffle].astype(np.int32)
    del shuffle
    dist = D[first, second]
    positive = dist[dist > 0]
    if positive.size == 0:
        return Y0
    weight = 1.0 / np.maximum(dist, positive.min()) ** 2
    eta_max = 1.0 / weight.min()
    eta_min = _SGD_EPS / weight.max()
    decay = math.log(eta_max / eta_min) / (_SGD_ITERS - 1)
    Y = Y0.astype(np.float64).copy()
    n_chunks = -(-first.size // _SGD_CHUNK)
    for t in range(_SGD_ITERS):
        chunks = rng.permutation(n_chunks).astype(np.int64)
        eta = eta_max * math.exp(-decay * t)
        _sgd_epoch(Y, first, second, dist, weight, eta, chunks, _SGD_CHUNK)
        report((t + 1) / _SGD_ITERS, f"metric MDS on {L} landmarks: sweep {t + 1}/{_SGD_ITERS}")
    return Y


def _orient(Y: np.ndarray) -> np.ndarray:
    """Centre, rotate to principal axes, fix each axis's sign (largest |value| positive)."""
    Y = Y - Y.mean(axis=0)
    _values, vectors = np.linalg.eigh(Y.T @ Y)
    Y = Y @ vectors[:, ::-1]
    signs = np.sign(Y[np.abs(Y).argmax(axis=0), np.arange(Y.shape[1])])
    return Y * np.where(signs == 0, 1.0, signs)


# -- public: layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatGeoLayout:
    """A heat-geodesic layout and what it chose for itself (:func:`heatgeo_embedding`).

    Attributes
    ----------
    coords : float32 ndarray of shape (n, dims)
    tau : float
        The diffusion time used (chosen when asked for "auto").
    tau_auto : bool
        True when ``tau`` was chosen by the time-entropy knee.
    order : int
        Chebyshev order of the heat kernel.
    n_landmarks : int
        Landmarks of the heat kernel and the MDS.
    heat_points : int
        Points of the heat graph (fewer than n when it was built on a sample).
    """

    coords: np.ndarray
    tau: float
    tau_auto: bool
    order: int
    n_landmarks: int
    heat_points: int

    def chosen(self) -> dict[str, Any]:
        """The values as plain JSON (stored with a projection)."""
        return {
            "tau": self.tau,
            "tau_auto": self.tau_auto,
            "order": self.order,
            "n_landmarks": self.n_landmarks,
            "heat_points": self.heat_points,
            "heat_sampled": self.heat_points < self.coords.shape[0],
        }


def heatgeo_layout(graph: KnnGraph, **options: Any) -> np.ndarray:
    """The coordinates of :func:`heatgeo_embedding` (same parameters): float32 (n, dims)."""
    return heatgeo_embedding(graph, **options).coords


def heatgeo_embedding(
    graph: KnnGraph,
    *,
    dims: int = 2,
    knn: int = HEATGEO_PARAMS.default("knn"),
    tau: float | str = HEATGEO_PARAMS.default("tau"),
    sigma: float = HEATGEO_PARAMS.default("sigma"),
    order: int | None = None,
    n_landmarks: int | None = HEATGEO_PARAMS.default("n_landmarks"),
    complete: bool = True,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> HeatGeoLayout:
    """A 2-D or 3-D layout whose distances follow heat-geodesic distances.

    Parameters
    ----------
    graph : KnnGraph
        The shared neighbour graph (``l2``, or ``cosine`` / ``ip`` of unit vectors).
    dims : {2, 3}
    knn : int
        Bandwidth neighbour of the alpha-decay kernel.
    tau : float or "auto"
        Diffusion time ("auto": knee of the time-entropy curve, see the module docstring).
    sigma : float
        Weight of the Harnack term, >= 0.
    order : int, optional
        Chebyshev order (default grows with ``tau phi``, at least 32).
    n_landmarks : int, optional
        Landmarks of the heat kernel and the MDS; default from ``WORK_BUDGET`` (256 to
        2,000). At least the number of points: every point is a landmark (the exact method).
    complete : bool
        Replace distances beyond the heat kernel's reach by shortest reliable paths (default);
        False keeps the saturated values, as the reference does.
    seed : int
    progress : callable, optional
        ``progress(fraction, message) -> bool``; True cancels (OperationCancelled).

    Returns
    -------
    HeatGeoLayout
        ``coords`` (float32 (n, dims): centred, rotated to principal axes, each axis's sign
        fixed; same seed, same layout) and the diffusion time, Chebyshev order and landmarks
        used.
    """
    graph, knn = _check_graph(graph, knn)
    if isinstance(dims, bool) or dims not in (2, 3):
        raise InvalidInputError(f"a projection has 2 or 3 dimensions, got {dims!r}")
    fixed_tau = _check_tau(tau)
    sigma = _check_sigma(sigma)
    order = _check_order(order)
    if n_landmarks is not None:
        n_landmarks = check_int(n_landmarks, "n_landmarks", low=dims + 1)
    if not isinstance(complete, (bool, np.bool_)):
        raise InvalidInputError(f"complete must be True or False, got {complete!r}")
    seed = check_int(seed, "seed", low=0)
    progress = _check_progress(progress)
    n = graph.n
    report = _Progress(progress, "heat-geodesic layout")

    report(0.0, "heat-geodesic: building the graph", force=True)
    exact = n_landmarks is not None and n_landmarks >= n
    nodes = None if exact else _sample_nodes(graph, knn, seed, report.part(0.0, 0.04))
    report(0.04, "heat-geodesic: the Laplacian and its largest eigenvalue", force=True)
    hg = _heat_graph(graph, knn, nodes)
    if fixed_tau is None:
        report(0.05, "heat-geodesic: choosing the diffusion time", force=True)
        tau_value, _entropy = _choose_tau(hg, seed, report.part(0.05, 0.25))
    else:
        tau_value = fixed_tau
    order_value = order if order is not None else chebyshev_order(tau_value, hg.phi)
    count = n_landmarks if n_landmarks is not None else _auto_landmarks(hg, order_value)
    count = min(count, hg.size)
    report(0.25, f"heat-geodesic: choosing {count} landmarks", force=True)
    land = _choose_landmarks(hg, count, seed, report.part(0.25, 0.3))
    H = _landmark_heat(hg, land, tau_value, order_value, report.part(0.3, 0.75))

    # every point's heat row, in point order (points outside a sampled heat graph extended)
    if hg.nodes is None:
        land_points = land
    else:
        report(0.75, "heat-geodesic: extending to the other points", force=True)
        others, P = _extension(graph, knn, hg.nodes, report.part(0.75, 0.77))
        full = np.empty((n, land.size), dtype=np.float32)
        full[hg.nodes] = H
        H64 = H.astype(np.float64)
        step = max(1, (1 << 20) // land.size)
        for s in range(0, others.size, step):
            full[others[s : s + step]] = P[s : s + step] @ H64
            report(0.77 + 0.01 * (s + step) / others.size, "heat-geodesic: extending heat rows")
        H = full
        del H64
        land_points = hg.nodes[land]
    h_rows, h_land = _diagonal(H, land_points)
    if complete:
        DL = _complete_landmarks(
            H, tau_value, sigma, h_rows, h_land, land_points, report.part(0.78, 0.82)
        )
    else:
        DL = _distances(H[land_points], tau_value, sigma, h_rows[land_points], h_land)
        DL = 0.5 * (DL + DL.T)
        np.fill_diagonal(DL, 0.0)
    report(0.82, "heat-geodesic: classical MDS", force=True)
    Y0 = _classical_mds(DL, dims)
    YL = _sgd_mds(DL, Y0, seed, report.part(0.83, 0.97))

    report(0.97, "heat-geodesic: placing the other points", force=True)
    Y = np.empty((n, dims))
    Y[land_points] = YL
    rest = np.setdiff1d(np.arange(n), land_points)
    Y[rest], informed_rest = _interpolate(H, YL, rest, report.part(0.97, 1.0))
    informed = np.ones(n, dtype=bool)
    informed[rest] = informed_rest
    lost = np.flatnonzero(~informed)
    if lost.size:  # no heat reached them: the mean of their placed graph neighbours
        nbrs = graph.indices[lost, :knn]
        good = informed[nbrs]
        for i, row, g in zip(lost, nbrs, good, strict=True):
            Y[i] = Y[row[g]].mean(axis=0) if g.any() else Y[land_points].mean(axis=0)
    report(1.0, "heat-geodesic: done", force=True)
    return HeatGeoLayout(
        coords=_orient(Y).astype(np.float32),
        tau=float(tau_value),
        tau_auto=fixed_tau is None,
        order=int(order_value),
        n_landmarks=int(land.size),
        heat_points=int(hg.size),
    )
