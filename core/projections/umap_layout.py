"""UMAP layouts from the shared neighbour graph: umap-learn itself, fed our graph (docs/science.md §2).

umap-learn does the work; this module only makes sure it uses the graph we give it and that the
layout can report progress and be cancelled:

* **The graph.** umap-learn takes ``precomputed_knn=(indices, distances)`` with self first and
  exactly ``n_neighbors`` columns (:meth:`core.graph.KnnGraph.with_self`). It silently ignores a
  narrower graph and computes its own neighbours, and below 4,096 points it uses *every* column it
  is given (docs/science.md §0.1). We pass exactly ``n_neighbors`` columns, refuse a graph that is too
  narrow before starting, and afterwards check that the fitted fuzzy graph's edges are all edges
  of our graph (:class:`GraphNotUsedError` otherwise).
* **The data.** umap-learn's ``fit`` wants an ``(n, d)`` array even when it is given the
  neighbours. With ``precomputed_knn`` it only reads that array to place the connected components
  of a graph that falls apart into more than ``2 * dims`` pieces (their centroids' distances).
  With ``X=None`` we pass an ``(n, 2)`` seeded random stand-in: connected graphs give the same
  layout as with the real vectors (identical to the last bit), and the pieces of a disconnected
  graph are then placed arbitrarily rather than by their centroids. Passing the real vectors costs
  two copies of them and a hash inside umap-learn.
* **Progress and cancellation.** umap-learn's optimiser loops over ``tqdm(range(n_epochs),
  **tqdm_kwds)`` and has no callback. We hand tqdm a file-like object and a bar format that
  prints ``epoch n/total``, redraw after every epoch (``mininterval=0, miniters=1``), and call
  ``progress`` from that object's ``write``; when it returns True the write raises
  :class:`core.errors.OperationCancelled`, which leaves the epoch loop within one epoch (tens of
  milliseconds at 100k points). Before the first epoch umap-learn builds its fuzzy graph, then
  the spectral initialisation; a cancel asked during either is honoured when it ends (0.4 s
  and 1.1 s at 100k points): between the two, through the ``_fit_embed_data`` hook, and at
  the first epoch.
* **Threads and determinism.** ``seed`` becomes ``random_state`` (the initialisation and the
  optimiser's random streams). umap-learn then runs its optimiser on one thread; we run it on
  every core through :class:`_SharedGraphUMAP`, which overrides umap-learn's documented
  ``_fit_embed_data`` hook only to pass ``parallel=True``: the same seed gives the same start and
  the same random streams, but threads updating shared points in a different order make the
  result differ in the last digits from run to run (Hogwild SGD, like LargeVis).
  ``deterministic=True`` keeps umap-learn's single thread: bit-identical to
  ``umap.UMAP(random_state=seed, precomputed_knn=...)``. ``seed=None`` is umap-learn unseeded.
* **Epochs.** umap-learn runs 500 epochs up to 10,000 points and 200 above, ~1,400 edge samples
  per point at 100k (each with 5 negative samples). The default here, :func:`default_epochs`,
  caps the work at ``5e6 / n`` epochs (never fewer than 50): the same as umap-learn up to
  10,000 points, 200 at 25,000, 50 from 100,000. At 100k x 384 this keeps trustworthiness@10 at
  0.960 (0.964 at 200 epochs) and 10-NN accuracy at 1.000, in a quarter of the time
  (``bench/bench_projections.py``). ``n_epochs`` sets it by hand.
* **JIT.** umap-learn's numba functions are compiled at their first call in each process
  (5-10 s; most are not ``cache=True``, so ``NUMBA_CACHE_DIR`` does not help). :func:`warm_up`
  compiles them on a tiny graph, e.g. when a worker starts.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from typing import Any, cast

import numpy as np

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, vectors_of_points
from embscope.core.progress import ProgressFn
from embscope.core.projections.params import UMAP_PARAMS
from embscope.core.validation import check_int

__all__ = ["UMAP_N_NEIGHBORS", "GraphNotUsedError", "default_epochs", "umap_layout", "warm_up"]

UMAP_N_NEIGHBORS: int = UMAP_PARAMS.default("n_neighbors")
# umap-learn's metric name for each graph metric. An inner-product graph has no umap-learn
# metric; its vectors (if given) only place disconnected components, by Euclidean centroids.
_UMAP_METRIC = {"l2": "euclidean", "cosine": "cosine", "ip": "euclidean"}
_EPOCH = re.compile(r"embscope-epoch (\d+)/(\d+)")
# default_epochs: at most EPOCH_WORK / n epochs, never fewer than MIN_EPOCHS.
EPOCH_WORK = 5_000_000
MIN_EPOCHS = 50
# Share of the progress bar before the first epoch (fuzzy graph + spectral initialisation).
_SETUP_SHARE = 0.1
# Warnings umap-learn gives for what we do on purpose.
_EXPECTED_WARNINGS = (
    r"precomputed_knn\[2\]",  # no NNDescent index: we never call transform
    r"n_jobs value .* overridden",  # random_state -> single-threaded, as documented
)


def default_epochs(n: int) -> int:
    """Epochs of a UMAP layout of ``n`` points when none are given (module docstring).

    umap-learn's own rule (500 epochs up to 10,000 points, 200 above) with the work capped at
    ``EPOCH_WORK / n`` epochs, never fewer than ``MIN_EPOCHS``.
    """
    umap_default = 500 if n <= 10_000 else 200
    return int(min(umap_default, max(MIN_EPOCHS, round(EPOCH_WORK / max(n, 1)))))


@functools.cache
def _shared_graph_umap_class() -> type:
    """umap.UMAP whose optimiser may run on every core with a seed (module docstring)."""
    import numba
    import umap
    from umap.umap_ import simplicial_set_embedding

    class _SharedGraphUMAP(umap.UMAP):  # type: ignore[misc]  # umap-learn is untyped (Any)
        parallel_layout = False
        # Called between the fuzzy graph and the spectral initialisation (a cancel point).
        before_embedding: Any = None

        def _fit_embed_data(
            self,
            X: np.ndarray,
            n_epochs: int | list[int],
            init: str | np.ndarray,
            random_state: np.random.RandomState,
            **kwargs: Any,
        ) -> tuple[np.ndarray, dict[str, Any]]:
            # umap-learn's own _fit_embed_data, with `parallel` ours rather than
            # `random_state is None`; numba's thread count restored to every core for it.
            if self.before_embedding is not None:
                self.before_embedding()
            parallel = self.random_state is None or self.parallel_layout
            threads = numba.get_num_threads()
            if parallel:
                # numba creates its config attributes at run time (mypy cannot see them)
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
            try:
                return cast(
                    tuple[np.ndarray, dict[str, Any]],
                    simplicial_set_embedding(
                        X,
                        self.graph_,
                        self.n_components,
                        self._initial_alpha,
                        self._a,
                        self._b,
                        self.repulsion_strength,
                        self.negative_sample_rate,
                        n_epochs,
                        init,
                        random_state,
                        self._input_distance_func,
                        self._metric_kwds,
                        self.densmap,
                        self._densmap_kwds,
                        self.output_dens,
                        self._output_distance_func,
                        self._output_metric_kwds,
                        self.output_metric in ("euclidean", "l2"),
                        parallel,
                        self.verbose,
                        tqdm_kwds=self.tqdm_kwds,
                    ),
                )
            finally:
                numba.set_num_threads(threads)

    return _SharedGraphUMAP


class GraphNotUsedError(RuntimeError):
    """umap-learn built its layout from neighbours other than the graph it was given."""


class _EpochReport(io.TextIOBase):
    """A file for tqdm: turns each redraw into a ``progress`` call, raises when cancelled."""

    def __init__(self, progress: ProgressFn | None, check: Any) -> None:
        super().__init__()
        self._progress = progress
        self._check = check  # called once, at the first epoch report
        self.epochs_seen = -1
        self.cancelled = False

    def write(self, s: str) -> int:
        if self.cancelled:  # tqdm's cleanup after our exception
            return len(s)
        found = _EPOCH.findall(s)
        if not found:
            return len(s)
        done, total = (int(v) for v in found[-1])
        if self.epochs_seen < 0 and self._check is not None:
            self._check()  # the graph is fixed before the first epoch: fail fast
        self.epochs_seen = done
        fraction = _SETUP_SHARE + (1.0 - _SETUP_SHARE) * done / max(total, 1)
        if self._progress is not None and self._progress(
            min(fraction, 1.0), f"UMAP epoch {done}/{total}"
        ):
            self.cancelled = True
            raise OperationCancelled("the UMAP layout was cancelled")
        return len(s)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def _graph_edges_used(fuzzy: Any, indices: np.ndarray) -> bool:
    """True if every edge of umap-learn's fuzzy graph joins a point to one of its neighbours
    in ``indices`` (self first, dropped) or is the reverse of such an edge."""
    import scipy.sparse as sp

    n, width = indices.shape
    rows = np.repeat(np.arange(n), width - 1)
    ours = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, indices[:, 1:].ravel())), shape=(n, n)
    )
    ours = ((ours + ours.T) != 0).astype(np.float32)
    theirs = (sp.csr_matrix(fuzzy) != 0).astype(np.float32)
    if theirs.nnz > 2 * rows.size:
        return False
    return int((theirs - theirs.multiply(ours)).nnz) == 0


def _fit(
    indices: np.ndarray,
    distances: np.ndarray,
    data: np.ndarray,
    *,
    n_neighbors: int,
    dims: int,
    min_dist: float,
    n_epochs: int | None,
    seed: int | None,
    metric: str,
    progress: ProgressFn | None,
    deterministic: bool = True,
) -> np.ndarray:
    """Run umap-learn on ``precomputed_knn=(indices, distances)`` and check it used them."""
    import numba

    reducer: Any = None
    checked: list[bool] = []

    def check() -> None:
        if checked:
            return
        # umap-learn keeps the neighbours it used as ``_knn_indices`` (ours, not a copy, when
        # it takes them); the edge check does not rely on that private name.
        used = getattr(reducer, "_knn_indices", indices)
        if used is not indices or not _graph_edges_used(reducer.graph_, indices[:, :n_neighbors]):
            raise GraphNotUsedError(
                f"umap-learn did not use the {indices.shape[1]}-column neighbour graph it was "
                f"given (n_neighbors={n_neighbors}): it computed its own neighbours"
            )
        checked.append(True)

    report = _EpochReport(progress, check)
    reducer = _shared_graph_umap_class()(
        n_neighbors=n_neighbors,
        n_components=dims,
        min_dist=min_dist,
        n_epochs=n_epochs,
        metric=metric,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
        precomputed_knn=(indices, distances),
        tqdm_kwds={
            "disable": False,
            "file": report,
            "bar_format": "embscope-epoch {n}/{total}",
            "mininterval": 0,
            "miniters": 1,
            "delay": 0,
            "ncols": 80,
            "leave": False,
        },
    )
    reducer.parallel_layout = not deterministic

    def before_embedding() -> None:
        if progress is not None and progress(
            _SETUP_SHARE / 2, "UMAP: spectral initialisation"
        ):  # the fuzzy graph is built: a cancel asked during it is heard here
            report.cancelled = True
            raise OperationCancelled("the UMAP layout was cancelled")

    reducer.before_embedding = before_embedding
    threads = numba.get_num_threads()
    try:
        with warnings.catch_warnings():
            for message in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            embedding = reducer.fit_transform(data)
    finally:
        # umap-learn sets numba's (per-thread) thread count and restores it only on success.
        numba.set_num_threads(threads)
    check()
    return np.ascontiguousarray(embedding, dtype=np.float32)


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
    """UMAP layout of the points of ``graph`` (umap-learn on the shared neighbour graph).

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
        None: :func:`default_epochs` (umap-learn's 500 / 200, capped at ``5e6 / n``, at
        least 50).
    seed : int or None
        umap-learn's ``random_state``: the initialisation and the optimiser's random streams.
        None: unseeded.
    deterministic : bool
        True: umap-learn's single-threaded optimiser, bit-identical for a seed. False: the
        same optimiser on every core, reproducible up to the order of thread updates.
    X : float32 ndarray of shape (n, d), optional
        The vectors of the graph; only used to place the pieces of a graph that falls apart
        into more than ``2 * dims`` connected components (module docstring).
    progress : callable(fraction, message) -> bool, optional
        Called after every epoch; returning True cancels (raises
        :class:`core.errors.OperationCancelled`).

    Returns
    -------
    float32 ndarray of shape (n, dims)

    Raises
    ------
    InvalidInputError
        Bad parameters, or a graph too narrow for ``n_neighbors``.
    GraphNotUsedError
        umap-learn ignored the graph (never expected; checked because it does so silently).
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
    if not np.isfinite(graph.distances[:, : n_neighbors - 1]).all():
        raise InvalidInputError("the graph's distances contain NaN or infinite values")
    if X is not None:
        data = vectors_of_points(X, n)
    else:
        data = np.random.default_rng(0 if seed is None else seed).standard_normal(
            (n, 2), dtype=np.float32
        )
    indices, distances = graph.with_self(n_neighbors)
    indices = np.ascontiguousarray(indices)
    distances = np.ascontiguousarray(distances, dtype=np.float32)
    if graph.metric == "ip" and distances[:, 1:].min() <= 0:
        # 1 - <a, b> can be <= 0. UMAP's weights depend on d - (nearest d) per row only, so a
        # shift that makes every neighbour distance positive changes no weight.
        distances[:, 1:] -= distances[:, 1:].min() - 1e-6
    if progress is not None and progress(0.0, "UMAP: fuzzy graph"):
        raise OperationCancelled("the UMAP layout was cancelled")
    embedding = _fit(
        indices,
        distances,
        data,
        n_neighbors=n_neighbors,
        dims=dims,
        min_dist=float(min_dist),
        n_epochs=n_epochs,
        seed=seed,
        metric=_UMAP_METRIC[graph.metric],
        progress=progress,
        deterministic=bool(deterministic),
    )
    if not np.isfinite(embedding).all():
        raise RuntimeError("umap-learn left points without coordinates (NaN)")
    if progress is not None:
        progress(1.0, "UMAP layout ready")
    return embedding


def warm_up() -> None:
    """Compile umap-learn's numba functions (5-10 s once per process) on a tiny graph."""
    from embscope.core.graph import build_knn_graph

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    umap_layout(build_knn_graph(X, k=15, metric="l2", method="exact"), n_epochs=11)
