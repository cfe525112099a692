"""Heat-geodesic distances and layouts (Huguet et al., NeurIPS 2023; docs/science.md §3).

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
zero -- ties at ``d_sat``. Those ties rank well in a distance matrix (docs/science.md §3.8), but asked
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
  geodesic Spearman of the 2-D layout 0.999 instead of 0.764 without completion on the
  5,000-point roll (it replaces 81% of the landmark pairs there; the reference's own layout
  scores 0.758), 0.998 instead of 0.797 at 2,000 points (69%), 0.993 instead of 0.908 at 500
  (45%). On the stdlib docstrings every heat distance is reliable and it replaces none.
  Components the graph does not connect are put ``1.5 x`` the largest finite distance apart.
  It is on by default and disclosed: the layout records how many pairs it replaced, and
  ``complete=False`` keeps the saturated values, as the reference does.
- *Landmark MDS*: classical MDS, then metric MDS by stochastic gradient descent (Zheng, Pawar &
  Goodman 2018, the algorithm of ``s_gd2``; 30 sweeps over all pairs in seeded random order), in
  2-D or 3-D, on one of two paths (``mds``, :mod:`.heatgeo_mds`):

  - ``"reference"`` (default): what the reference runs (``heatgeo/mds.py`` calls
    ``s_gd2.mds_direct(n, d, w=None, ...)``): unit weights, step sizes from 1 to 0.01
    (``s_gd2.default_schedule``). On the reference's own distance matrix it reproduces the
    reference's 2-D layout (geodesic Spearman 0.7967 against 0.7968 on the 2,000-point roll).
  - ``"weighted"``: weights ``d^-2``, step sizes from ``1 / w_min`` to ``0.1 / w_max``.

  The reference path is the default because it measured as good or better everywhere
  (bench/bench_heatgeo.py; seed 0): Swiss roll geodesic Spearman 0.993 / 0.991 (500 points)
  and 0.998 / 0.997 (2,000) with completion, 0.908 / 0.870 and 0.797 / 0.741 without;
  trustworthiness@10 on the stdlib docstrings 0.808 / 0.781 and on a 5,000-point Gaussian
  mixture 0.963 / 0.929 (reference / weighted). In 3-D the reference uses SMACOF; we keep SGD.
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

The code: the graph, the heat kernel, tau and the landmarks are in ``heatgeo_kernel.py``; the
completion of distances, MDS and interpolation in ``heatgeo_mds.py``; this module checks the
inputs, reports progress and holds the public API.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph
from embscope.core.progress import ProgressFn
from embscope.core.projections.heatgeo_kernel import (
    AUTO_TAU_FALLBACK,
    AUTO_TAU_GRID,
    LOG_FLOOR,
    auto_landmarks,
    chebyshev_order,
    choose_landmarks,
    choose_tau,
    extension,
    heat_diagonal,
    heat_distances,
    heat_graph,
    landmark_heat,
    sample_nodes,
)
from embscope.core.projections.heatgeo_mds import (
    MDS_PATHS,
    classical_mds,
    complete_landmarks,
    interpolate,
    orient,
    sgd_mds,
)
from embscope.core.projections.params import HEATGEO_PARAMS
from embscope.core.validation import check_int

__all__ = [
    "AUTO_TAU_FALLBACK",
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
    hg = heat_graph(graph, knn, None)
    entropy = None
    if fixed_tau is None:
        report(0.05, "heat-geodesic: choosing the diffusion time", force=True)
        tau_value, entropy = choose_tau(hg, seed, report.part(0.05, 0.3))
    else:
        tau_value = fixed_tau
    order_value = order if order is not None else chebyshev_order(tau_value, hg.phi)
    if land is None:
        report(0.3, "heat-geodesic: choosing landmarks", force=True)
        land = choose_landmarks(hg, count, seed, report.part(0.3, 0.35))
    H = landmark_heat(hg, land, tau_value, order_value, report.part(0.35, 0.95))
    report(0.95, "heat-geodesic: distances", force=True)
    if sigma:
        h_rows, h_land = heat_diagonal(H, land)
    else:
        h_rows = h_land = np.zeros(0)
    D = heat_distances(H, tau_value, sigma, h_rows, h_land)
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
    mds : str
        The metric MDS path, "reference" or "weighted" (:mod:`.heatgeo_mds`).
    completed : bool
        Whether distances beyond the heat kernel's reach were completed by shortest paths.
    completed_pairs : int
        Landmark pairs whose distance the completion replaced (0 without it).
    landmark_pairs : int
        All landmark pairs, ``L (L - 1) / 2``.
    """

    coords: np.ndarray
    tau: float
    tau_auto: bool
    order: int
    n_landmarks: int
    heat_points: int
    mds: str = "reference"
    completed: bool = False
    completed_pairs: int = 0
    landmark_pairs: int = 0

    def departures(self) -> dict[str, str]:
        """Where this layout departs from the paper's method as its code runs it (heatgeo
        0.0.1: every point, order-32 Chebyshev, tau from the entropy knee on a 10-point grid
        or given, saturated distances, s_gd2 with unit weights in 2-D, SMACOF in 3-D; see
        docs/science.md §3.6): a short topic ("landmarks", "completion", "mds", ...) and one
        sentence each, in that order. Empty when it ran the paper's method."""
        n, dims = self.coords.shape
        out = {}
        if self.heat_points < n:
            out["heat sample"] = (
                f"heat kernel on a sample of {self.heat_points:,} of {n:,} points, the others "
                "extended from their sampled neighbours (paper: every point)"
            )
        if self.n_landmarks < n:
            out["landmarks"] = (
                f"{self.n_landmarks:,} landmarks, the other points placed from their warmest "
                "landmarks (paper: every point)"
            )
        if self.completed and self.completed_pairs:  # nothing replaced: the paper's distances
            out["completion"] = (
                f"completion on: {self.completed_pairs:,} of {self.landmark_pairs:,} landmark "
                "distances beyond the heat kernel's reach replaced by shortest paths (paper: "
                "saturated distances)"
            )
        if self.mds != "reference":
            out["mds"] = "MDS weighted 1/d², steps to 0.1 (paper: unit weights, steps to 0.01)"
        if dims == 3:
            out["3-D SGD"] = "3-D metric MDS by SGD (paper: SMACOF above 2-D)"
        if self.tau_auto:
            out["τ grid"] = (
                f"τ = {self.tau:.3g} from the entropy knee on a 48-point geometric grid of "
                "sampled columns (paper: a 10-point linear grid of the full kernel)"
            )
        if self.order != 32:
            out["order"] = f"Chebyshev order {self.order} (paper: 32)"
        return out

    def chosen(self) -> dict[str, Any]:
        """The values as plain JSON (stored with a projection)."""
        return {
            "tau": self.tau,
            "tau_auto": self.tau_auto,
            "order": self.order,
            "n_landmarks": self.n_landmarks,
            "heat_points": self.heat_points,
            "heat_sampled": self.heat_points < self.coords.shape[0],
            "mds": self.mds,
            "completed": self.completed,
            "completed_pairs": self.completed_pairs,
            "landmark_pairs": self.landmark_pairs,
            "differs_from_paper": self.departures(),
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
    mds: str = HEATGEO_PARAMS.default("mds"),
    complete: bool = HEATGEO_PARAMS.default("complete"),
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
    mds : {"reference", "weighted"}
        The metric MDS after classical MDS (:mod:`.heatgeo_mds`): "reference" is the
        reference's s_gd2 call (unit weights, step sizes 1 to 0.01 over 30 sweeps);
        "weighted" uses weights ``d^-2`` and step sizes ``d_max^2`` to ``0.1 d_min^2``.
    complete : bool
        True: replace landmark distances beyond the heat kernel's reach by shortest reliable
        paths (our addition); False keeps the saturated values, as the reference does.
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
    if not isinstance(mds, str) or mds not in MDS_PATHS:
        raise InvalidInputError(f"mds must be one of {', '.join(MDS_PATHS)}, got {mds!r}")
    seed = check_int(seed, "seed", low=0)
    progress = _check_progress(progress)
    n = graph.n
    report = _Progress(progress, "heat-geodesic layout")

    report(0.0, "heat-geodesic: building the graph", force=True)
    exact = n_landmarks is not None and n_landmarks >= n
    nodes = None if exact else sample_nodes(graph, knn, seed, report.part(0.0, 0.04))
    report(0.04, "heat-geodesic: the Laplacian and its largest eigenvalue", force=True)
    hg = heat_graph(graph, knn, nodes)
    if fixed_tau is None:
        report(0.05, "heat-geodesic: choosing the diffusion time", force=True)
        tau_value, _entropy = choose_tau(hg, seed, report.part(0.05, 0.25))
    else:
        tau_value = fixed_tau
    order_value = order if order is not None else chebyshev_order(tau_value, hg.phi)
    count = n_landmarks if n_landmarks is not None else auto_landmarks(hg, order_value)
    count = min(count, hg.size)
    report(0.25, f"heat-geodesic: choosing {count} landmarks", force=True)
    land = choose_landmarks(hg, count, seed, report.part(0.25, 0.3))
    H = landmark_heat(hg, land, tau_value, order_value, report.part(0.3, 0.75))

    # every point's heat row, in point order (points outside a sampled heat graph extended)
    if hg.nodes is None:
        land_points = land
    else:
        report(0.75, "heat-geodesic: extending to the other points", force=True)
        others, P = extension(graph, knn, hg.nodes, report.part(0.75, 0.77))
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
    h_rows, h_land = heat_diagonal(H, land_points)
    replaced = 0
    if complete:
        DL, replaced = complete_landmarks(
            H, tau_value, sigma, h_rows, h_land, land_points, report.part(0.78, 0.82)
        )
    else:
        DL = heat_distances(H[land_points], tau_value, sigma, h_rows[land_points], h_land)
        DL = 0.5 * (DL + DL.T)
        np.fill_diagonal(DL, 0.0)
    report(0.82, "heat-geodesic: classical MDS", force=True)
    Y0 = classical_mds(DL, dims)
    YL = sgd_mds(DL, Y0, seed, report.part(0.83, 0.97), path=mds)

    report(0.97, "heat-geodesic: placing the other points", force=True)
    Y = np.empty((n, dims))
    Y[land_points] = YL
    rest = np.setdiff1d(np.arange(n), land_points)
    Y[rest], informed_rest = interpolate(H, YL, rest, report.part(0.97, 1.0))
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
        coords=orient(Y).astype(np.float32),
        tau=float(tau_value),
        tau_auto=fixed_tau is None,
        order=int(order_value),
        n_landmarks=int(land.size),
        heat_points=int(hg.size),
        mds=mds,
        completed=bool(complete),
        completed_pairs=replaced,
        landmark_pairs=int(land.size) * (int(land.size) - 1) // 2,
    )
