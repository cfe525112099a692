"""UMAP layouts from the shared neighbour graph (docs/science.md §2).

umap-learn's algorithm, run by :mod:`core.projections.umap_kernel` (a port of its fuzzy graph
and optimiser whose numba code is cached on disk) on the graph we give it:

* **The graph.** The ``n_neighbors - 1`` nearest other points of every point, with the point
  itself first (umap-learn's ``precomputed_knn`` convention,
  :meth:`core.graph.KnnGraph.with_self`), make umap-learn's fuzzy graph: the same matrix as its
  ``fuzzy_simplicial_set`` on the same neighbours (``tests/core/test_umap_kernel.py``). Nothing
  else is read, so the graph is used by construction; umap-learn itself silently swaps a
  graph that is too narrow for its own neighbours (docs/science.md §0.1).
* **The start.** umap-learn's spectral initialisation: the 2nd..(dims+1)th eigenvectors of the
  normalised Laplacian of the fuzzy graph (pruned as below) by ARPACK with umap-learn's
  settings, scaled to ±10 with N(0, 1e-4) noise, then to [0, 10]. A graph in several pieces
  goes to umap-learn's own ``spectral_layout``, which places the pieces by their centroids in
  ``X`` (an arbitrary, seeded stand-in when ``X`` is not given); if ARPACK fails it falls back
  to a uniform random start, as umap-learn does. Above 50,000 points ARPACK's cost explodes
  (its ``sqrt(n)`` Lanczos vectors: ~10 min and ~8 GB at 1M), so the eigenvectors come from
  100 LOBPCG iterations instead (:func:`spectral_start`). On 100,000 real-structured text
  embeddings the start took 1.4 s against ARPACK's 16.9 s, and after the same 300 epochs the
  layout scored trustworthiness@10 0.919 and 10-NN preservation 0.155 against ARPACK's
  0.914 and 0.154 (a PCA start: 0.917, 0.158).
* **Epochs** (:func:`default_epochs`): ``1.5e7 / n`` between 300 and 1,500: 1,500 up to
  10,000 points, 300 from 50,000 (umap-learn: 500 up to 10,000, 200 above). On real text
  embeddings (docstrings, all-MiniLM-L6-v2, 3 seeds, ``bench/bench_projections.py --data
  real``) umap-learn's whole pipeline (its own approximate graph) scores higher than its
  optimiser on the exact graph at the same epochs; the extra epochs close that gap. At 10,000
  points umap-learn scores trustworthiness@10 0.897-0.899; this layout 0.891 at 500 epochs,
  0.895 at 1,000 and 0.897 at 1,500 (10 s). At 50,000 umap-learn scores 0.906-0.907; this
  layout 0.901 at 200 epochs and 0.904 at 300 (layout 8.5 and 12 s, against umap-learn's
  40 s). Fewer epochs lose more (0.884 at 100).
* **What differs from umap-learn** (disclosed in ``chosen``): the optimiser runs in float32 on
  every core, each thread over a contiguous share of the edges with its own random stream
  (umap-learn seeds a stream per point); the negative samples of one edge sample all push from
  the head's position before them and their pushes are summed (umap-learn moves the head after
  each one). Quality on the same graph equals umap-learn's within the run-to-run spread of its
  parallel optimiser (tests: digits; the bench: real text).
* **Threads and determinism.** Several threads update shared points without locks (Hogwild,
  as umap-learn's parallel mode), so a seed gives the same start and random streams but the
  last digits of the result vary from run to run. ``deterministic=True`` runs one thread:
  identical for a seed.
* **Progress and cancellation.** ``progress`` is called before the fuzzy graph, before the
  spectral start and after every epoch; returning True raises
  :class:`core.errors.OperationCancelled` at once (an epoch is ~30 ms at 50,000 points).
* **JIT.** Every numba function is ``cache=True``: the first process after an install compiles
  them (a few seconds); later ones load them from ``NUMBA_CACHE_DIR``. :func:`warm_up`
  compiles them on a tiny graph, e.g. when a worker starts.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, vectors_of_points
from embscope.core.progress import ProgressFn
from embscope.core.projections import umap_kernel
from embscope.core.projections.params import UMAP_PARAMS
from embscope.core.threads import available_threads
from embscope.core.validation import check_int

__all__ = ["UMAP_N_NEIGHBORS", "chosen", "default_epochs", "spectral_start", "umap_layout",
           "warm_up"]  # fmt: skip

UMAP_N_NEIGHBORS: int = UMAP_PARAMS.default("n_neighbors")
# umap-learn's settings that embscope does not expose.
SPREAD = 1.0
NEGATIVE_SAMPLE_RATE = 5.0
REPULSION_STRENGTH = 1.0
LEARNING_RATE = 1.0
# Share of the progress bar before the first epoch (fuzzy graph + spectral start).
_SETUP_SHARE = 0.1


# The spectral start: ARPACK with umap-learn's settings up to ARPACK_MAX_N points; above,
# LOBPCG for LOBPCG_ITERATIONS from a smoothed random guess (ARPACK's sqrt(n) Lanczos vectors
# take ~10 min and ~8 GB at 1M points; 100 LOBPCG iterations take ~1.5 s at 100k, and the
# layouts after 300 epochs score as well: bench in the module docstring).
ARPACK_MAX_N = 50_000
LOBPCG_ITERATIONS = 100
LOBPCG_SMOOTHING = 20


# default_epochs: EPOCH_WORK / n epochs, between MIN_EPOCHS and MAX_EPOCHS.
EPOCH_WORK = 15_000_000
MIN_EPOCHS = 300
MAX_EPOCHS = 1_500


def default_epochs(n: int) -> int:
    """Epochs when none are given: ``EPOCH_WORK / n`` between 300 and 1,500 (1,500 up to 10,000
    points, 300 from 50,000; umap-learn runs 500 up to 10,000 and 200 above; module
    docstring)."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(EPOCH_WORK / max(n, 1)))))


def _umap_learn_epochs(n: int) -> int:
    return 500 if n <= 10_000 else 200


def chosen(n: int, n_epochs: int | None = None) -> dict[str, Any]:
    """What a UMAP layout of ``n`` points runs, as plain JSON (``project --json`` "chosen", the
    gallery's caption): its epochs and start, and ``differs_from_paper``: a short topic and one
    sentence for every choice that is not umap-learn's default."""
    epochs = default_epochs(n) if n_epochs is None else int(n_epochs)
    departures: dict[str, str] = {}
    if n_epochs is None and epochs != _umap_learn_epochs(n):
        departures["epochs"] = (
            f"{epochs:,} epochs (umap-learn: {_umap_learn_epochs(n)}; more keep real text "
            "embeddings as faithful as umap-learn's own pipeline)"
        )
    if n > ARPACK_MAX_N:
        departures["start"] = (
            f"spectral start of a connected graph by {LOBPCG_ITERATIONS} LOBPCG iterations "
            "from a smoothed random guess (umap-learn: ARPACK to convergence, about 10 minutes "
            "at a million points); the layouts score as well"
        )
    departures["optimiser"] = (
        "float32 on every core with one random stream per thread; the negative samples of an "
        "edge push from the same head position and are summed (umap-learn: one after another)"
    )
    return {"n_epochs": epochs, "init": "spectral", "differs_from_paper": departures}


def _scaled(coords: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """umap-learn's ``noisy_scale_coords`` (max |coordinate| 10, N(0, 1e-4) noise) followed by
    its scaling of every axis to [0, 10]."""
    coords = (coords * (10.0 / np.abs(coords).max())).astype(np.float32)
    coords = coords + rng.normal(scale=0.0001, size=coords.shape).astype(np.float32)
    low, high = coords.min(0), coords.max(0)
    span = np.where(high > low, high - low, 1.0)
    return np.ascontiguousarray(10.0 * (coords - low) / span, dtype=np.float32)


def spectral_start(
    n: int,
    head: np.ndarray,
    tail: np.ndarray,
    weight: np.ndarray,
    *,
    dims: int,
    data: np.ndarray,
    rng: np.random.RandomState,
) -> np.ndarray:
    """umap-learn's spectral initialisation of the (pruned) fuzzy graph, before scaling.

    A connected graph of up to :data:`ARPACK_MAX_N` points: ARPACK's ``eigsh`` on the
    normalised Laplacian with umap-learn's settings (``which="SM"``, ``ncv = max(2k + 1,
    sqrt(n))``, ``tol=1e-4``, ``v0`` ones, ``maxiter = 5n``): the same eigenvectors as
    umap-learn's ``spectral_layout``. Larger: :data:`LOBPCG_ITERATIONS` of LOBPCG (as
    umap-learn does above 2M points, but stopped early: a start needs the smooth shape, not
    tolerance 1e-4) from Gaussian columns smoothed by :data:`LOBPCG_SMOOTHING` steps of the
    normalised adjacency, all kept orthogonal to the known first eigenvector ``sqrt(degree)``.
    Several connected components: umap-learn's ``spectral_layout`` itself (it places them by
    their centroids in ``data``).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import ArpackError, eigsh

    graph = sp.csr_matrix((weight.astype(np.float64), (head, tail)), shape=(n, n))
    pieces, _ = connected_components(graph)
    if pieces > 1:
        from umap.spectral import spectral_layout

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(spectral_layout(data, graph, dims, rng), dtype=np.float64)
    sqrt_deg = np.sqrt(np.asarray(graph.sum(axis=0)).ravel())
    scale = sp.diags(1.0 / sqrt_deg)
    adjacency = scale @ graph @ scale
    laplacian = sp.identity(n, dtype=np.float64) - adjacency
    k = dims + 1
    if n > ARPACK_MAX_N:
        from scipy.sparse.linalg import lobpcg

        # The first eigenvector is known (sqrt(degree)): search only orthogonal to it.
        first = (sqrt_deg / np.linalg.norm(sqrt_deg))[:, None]
        guess = rng.standard_normal((n, dims))
        for _ in range(LOBPCG_SMOOTHING):
            guess = adjacency @ guess
            guess -= first @ (first.T @ guess)
            guess /= np.linalg.norm(guess, axis=0, keepdims=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "not reaching the requested tolerance"
                values, vectors = lobpcg(
                    laplacian, guess, Y=first, largest=False, tol=1e-4, maxiter=LOBPCG_ITERATIONS
                )
        except (np.linalg.LinAlgError, ValueError):  # as ARPACK's failure: a random start
            return rng.uniform(low=-10.0, high=10.0, size=(n, dims))
        return np.asarray(vectors[:, np.argsort(values)], dtype=np.float64)
    try:
        values, vectors = eigsh(
            laplacian,
            k,
            which="SM",
            ncv=max(2 * k + 1, int(np.sqrt(n))),
            tol=1e-4,
            v0=np.ones(n),
            maxiter=n * 5,
        )
    except ArpackError:  # umap-learn falls back to a random start
        return rng.uniform(low=-10.0, high=10.0, size=(n, dims))
    return np.asarray(vectors[:, np.argsort(values)[1:k]], dtype=np.float64)


def _check(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None and progress(fraction, message):
        raise OperationCancelled("the UMAP layout was cancelled")


def umap_layout(
    graph: KnnGraph,
    *,
    dims: int = 2,
    n_neighbors: int = UMAP_PARAMS.default("n_neighbors"),
    min_dist: float = UMAP_PARAMS.default("min_dist"),
    n_epochs: int | None = UMAP_PARAMS.default("n_epochs"),
    seed: int | None = 0,
    deterministic: bool = False,
    X: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """UMAP layout of the points of ``graph`` (umap-learn's algorithm on the shared graph).

    Parameters
    ----------
    graph : KnnGraph
        The shared neighbour graph, at least ``n_neighbors - 1`` wide (umap-learn counts the
        point itself as its first neighbour).
    dims : {2, 3}
    n_neighbors : int
        umap-learn's ``n_neighbors`` (self included), ``2 <= n_neighbors <= graph.k + 1`` and
        below the number of points.
    min_dist : float
        In ``[0, 1]`` (umap-learn's ``spread`` is 1).
    n_epochs : int or None
        None: :func:`default_epochs` (umap-learn's 500 / 200).
    seed : int or None
        The start's noise and the optimiser's random streams. None: a fresh seed.
    deterministic : bool
        True: one thread, identical for a seed. False: every core, reproducible up to the
        order of thread updates.
    X : float32 ndarray of shape (n, d), optional
        The vectors of the graph; only used to place the pieces of a graph that falls apart
        (module docstring).
    progress : callable(fraction, message) -> bool, optional
        Called at each stage and after every epoch; returning True cancels (raises
        :class:`core.errors.OperationCancelled`).

    Returns
    -------
    float32 ndarray of shape (n, dims)

    Raises
    ------
    InvalidInputError
        Bad parameters, or a graph too narrow for ``n_neighbors``.
    """
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError(f"graph must be a core.graph.KnnGraph, got {type(graph).__name__}")
    n = graph.n
    dims = check_int(dims, "dims", low=2, high=3)
    n_neighbors = check_int(n_neighbors, "n_neighbors", low=2)
    if n_neighbors > graph.k + 1:
        raise InvalidInputError(
            f"n_neighbors = {n_neighbors} needs a graph of at least {n_neighbors - 1} neighbours "
            f"per point, but this one has {graph.k}: build the graph wider or lower n_neighbors"
        )
    if n <= max(n_neighbors, dims + 1):
        raise InvalidInputError(
            f"UMAP with n_neighbors = {n_neighbors} needs more than {max(n_neighbors, dims + 1)} "
            f"points, got {n}"
        )
    if isinstance(min_dist, bool) or not isinstance(min_dist, (int, float, np.floating)):
        raise InvalidInputError(f"min_dist must be a number, got {min_dist!r}")
    if not 0.0 <= float(min_dist) <= 1.0:
        raise InvalidInputError(f"min_dist must be between 0 and 1, got {min_dist}")
    n_epochs = default_epochs(n) if n_epochs is None else check_int(n_epochs, "n_epochs", low=1)
    if not isinstance(deterministic, (bool, np.bool_)):
        raise InvalidInputError(f"deterministic must be True or False, got {deterministic!r}")
    if seed is not None:
        seed = check_int(seed, "seed", low=0, high=2**32 - 1)
    else:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if not np.isfinite(graph.distances[:, : n_neighbors - 1]).all():
        raise InvalidInputError("the graph's distances contain NaN or infinite values")
    data = None if X is None else vectors_of_points(X, n)
    indices, distances = graph.with_self(n_neighbors)
    indices = np.ascontiguousarray(indices)
    distances = np.ascontiguousarray(distances, dtype=np.float32)
    if graph.metric == "ip" and distances[:, 1:].min() <= 0:
        # 1 - <a, b> can be <= 0. UMAP's weights depend on d - (nearest d) per row only, so a
        # shift that makes every neighbour distance positive changes no weight.
        distances[:, 1:] -= distances[:, 1:].min() - 1e-6
    _check(progress, 0.0, "UMAP: weighing each neighbour link (fuzzy graph)")
    threads = 1 if deterministic else available_threads()
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        head, tail, weight = umap_kernel.fuzzy_graph(
            indices, distances, n_neighbors=n_neighbors, pool=pool, threads=threads
        )
        head, tail, weight = umap_kernel.prune_edges(head, tail, weight, n_epochs)
        _check(progress, _SETUP_SHARE / 2, "UMAP: spectral initialisation")
        rng = np.random.RandomState(seed)
        if data is None:  # its own stream: X given or not, a connected graph's start is the same
            data = np.random.default_rng(seed).standard_normal((n, 2), dtype=np.float32)
        start = spectral_start(n, head, tail, weight, dims=dims, data=data, rng=rng)
        Y = _scaled(start, rng)
        a, b = umap_kernel.find_ab_params(SPREAD, float(min_dist))

        def after_epoch(epoch: int) -> None:
            fraction = _SETUP_SHARE + (1.0 - _SETUP_SHARE) * epoch / n_epochs
            _check(progress, min(fraction, 1.0), f"UMAP epoch {epoch}/{n_epochs}")

        _check(progress, _SETUP_SHARE, f"UMAP epoch 0/{n_epochs}")
        umap_kernel.optimise(
            Y, head, tail, weight, n_epochs=n_epochs, a=a, b=b, gamma=REPULSION_STRENGTH,
            initial_alpha=LEARNING_RATE, negative_sample_rate=NEGATIVE_SAMPLE_RATE, seed=seed,
            pool=pool, threads=threads, after_epoch=after_epoch,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    if not np.isfinite(Y).all():
        raise RuntimeError("the UMAP layout left points without coordinates (NaN)")
    if progress is not None:
        progress(1.0, "UMAP layout ready")
    return Y


def warm_up() -> None:
    """Load (or, after an install, compile) the UMAP kernels on a tiny graph."""
    from embscope.core.graph import build_knn_graph

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    graph = build_knn_graph(X, k=15, metric="l2", method="exact")
    umap_layout(graph, n_epochs=11)
    umap_layout(graph, n_epochs=11, deterministic=True)
