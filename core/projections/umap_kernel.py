"""UMAP's fuzzy graph and optimiser, ported from umap-learn 0.5 (docs/science.md §2).

:func:`core.projections.umap_layout.umap_layout` runs these; they are umap-learn's own steps,
written again so that every numba function is ``cache=True`` (umap-learn compiles its optimiser
and fuzzy graph at the first call in every process: 5-10 s, more than the layout itself takes
at 50,000 points) and the optimiser runs on Python threads over a ``nogil`` kernel, like
LargeVis's (:mod:`core.projections.largevis`):

* :func:`smooth_knn_dist` and :func:`membership_strengths` are umap-learn's ``smooth_knn_dist``
  and ``compute_membership_strengths`` (float32, the same binary search and floors), and
  :func:`fuzzy_graph` their fuzzy union ``A + Aᵀ - A∘Aᵀ``: the same matrix as umap-learn's
  ``fuzzy_simplicial_set`` (``tests/core/test_umap_kernel.py`` compares them).
* :func:`find_ab_params` is umap-learn's curve fit of ``1 / (1 + a d^(2b))``.
* :func:`optimise` is umap-learn's ``optimize_layout_euclidean`` with ``move_other=True``: the
  same epoch schedule (edge ``e`` is sampled every ``w_max / w_e`` epochs, with
  ``negative_sample_rate`` uniform negatives per sample, which move only the head), the same
  gradients (attraction ``-2ab d^(2(b-1)) / (1 + a d^(2b))``, repulsion
  ``2γb / ((0.001 + d²)(1 + a d^(2b)))``, each coordinate clipped at ±4) and learning rate
  ``α (1 - epoch / n_epochs)``. What differs: the arithmetic is float32 (umap-learn's is
  float64 on float32 coordinates; float64 here measured no more faithful and 30 % slower);
  the negative samples of one edge sample all push from the head's position before them and
  their pushes are summed (umap-learn moves the head after each: its five distances then wait
  on one another, ours overlap, 20 % faster, the same faithfulness); each thread takes a
  contiguous range of the edges (sorted by head, so a thread walks its heads in order) and has
  its own splitmix64 stream for the negatives (umap-learn seeds one stream per head from the
  head's first coordinate). Several threads update the layout without locks (Hogwild, as
  umap-learn's parallel mode); one thread is deterministic for a seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from embscope.core.numba_rng import splitmix
from embscope.core.threads import run_ranges

__all__ = ["find_ab_params", "fuzzy_graph", "membership_strengths", "optimise", "prune_edges",
           "smooth_knn_dist"]  # fmt: skip

# umap-learn's constants (umap/umap_.py, umap/layouts.py).
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
_N_ITER = 64
_CLIP = 4.0
_REPULSION_EPS = 0.001
_FLOAT32_MAX = float(np.finfo(np.float32).max)

_S32 = np.uint64(32)


@njit(cache=True, nogil=True)
def _smooth_rows(
    distances: np.ndarray,
    k: float,
    local_connectivity: float,
    mean_distances: float,
    lo_row: int,
    hi_row: int,
    sigmas: np.ndarray,
    rhos: np.ndarray,
) -> None:
    target = np.float32(math.log2(k))
    width = distances.shape[1]
    non_zero = np.empty(width, np.float32)
    for i in range(lo_row, hi_row):
        lo = np.float32(0.0)
        hi = np.float32(_FLOAT32_MAX)
        mid = np.float32(1.0)
        count = 0
        total = 0.0
        for j in range(width):
            total += distances[i, j]
            if distances[i, j] > 0.0:
                non_zero[count] = distances[i, j]
                count += 1
        rho = np.float32(0.0)
        if count >= local_connectivity:
            index = int(math.floor(local_connectivity))
            interpolation = local_connectivity - index
            if index > 0:
                rho = non_zero[index - 1]
                if interpolation > SMOOTH_K_TOLERANCE:
                    rho += np.float32(interpolation * (non_zero[index] - non_zero[index - 1]))
            else:
                rho = np.float32(interpolation * non_zero[0])
        elif count > 0:
            rho = non_zero[0]
            for c in range(1, count):
                if non_zero[c] > rho:
                    rho = non_zero[c]
        for _ in range(_N_ITER):
            psum = np.float32(0.0)
            for j in range(1, width):
                d = distances[i, j] - rho
                if d > 0:
                    psum += np.float32(math.exp(-(d / mid)))
                else:
                    psum += np.float32(1.0)
            if abs(psum - target) < SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = np.float32((lo + hi) / 2.0)
            else:
                lo = mid
                if hi >= _FLOAT32_MAX:
                    mid = np.float32(mid * 2)
                else:
                    mid = np.float32((lo + hi) / 2.0)
        sigma = mid
        if rho > 0.0:
            floor = MIN_K_DIST_SCALE * (total / width)
        else:
            floor = MIN_K_DIST_SCALE * mean_distances
        if sigma < floor:
            sigma = np.float32(floor)
        sigmas[i] = sigma
        rhos[i] = rho


@njit(cache=True, nogil=True)
def _membership_rows(
    indices: np.ndarray,
    distances: np.ndarray,
    sigmas: np.ndarray,
    rhos: np.ndarray,
    lo_row: int,
    hi_row: int,
    out: np.ndarray,
) -> None:
    for i in range(lo_row, hi_row):
        for j in range(indices.shape[1]):
            if indices[i, j] == i:
                out[i, j] = 0.0
            elif distances[i, j] - rhos[i] <= 0.0 or sigmas[i] == 0.0:
                out[i, j] = 1.0
            else:
                out[i, j] = np.float32(math.exp(-((distances[i, j] - rhos[i]) / sigmas[i])))


def smooth_knn_dist(
    distances: np.ndarray,
    k: float,
    *,
    local_connectivity: float = 1.0,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """umap-learn's ``smooth_knn_dist``: per row, σ with ``Σ_j exp(-(d_j - ρ) / σ) = log2 k``
    (the first column, the point itself, left out of the sum) and ρ the distance to the
    ``local_connectivity``-th nearest other point. float32 ``(sigmas, rhos)``."""
    distances = np.ascontiguousarray(distances, dtype=np.float32)
    n = distances.shape[0]
    sigmas = np.zeros(n, np.float32)
    rhos = np.zeros(n, np.float32)
    mean = float(distances.mean(dtype=np.float64)) if distances.size else 0.0
    run_ranges(
        pool,
        lambda lo, hi: _smooth_rows(
            distances, float(k), float(local_connectivity), mean, lo, hi, sigmas, rhos
        ),
        n,
        threads,
    )
    return sigmas, rhos


def membership_strengths(
    indices: np.ndarray,
    distances: np.ndarray,
    sigmas: np.ndarray,
    rhos: np.ndarray,
    *,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
) -> np.ndarray:
    """umap-learn's ``compute_membership_strengths``: ``exp(-(d - ρ_i) / σ_i)`` (1 within ρ,
    0 for the point itself), float32 of the graph's shape."""
    indices = np.ascontiguousarray(indices)
    distances = np.ascontiguousarray(distances, dtype=np.float32)
    out = np.empty(indices.shape, np.float32)
    run_ranges(
        pool,
        lambda lo, hi: _membership_rows(indices, distances, sigmas, rhos, lo, hi, out),
        indices.shape[0],
        threads,
    )
    return out


def fuzzy_graph(
    indices: np.ndarray,
    distances: np.ndarray,
    *,
    n_neighbors: int,
    local_connectivity: float = 1.0,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UMAP's fuzzy graph from neighbour lists with the point itself first.

    Returns the directed edges ``(head, tail, weight)`` of the symmetric matrix
    ``A + Aᵀ - A∘Aᵀ`` (each undirected edge twice, once from each end), sorted by head then
    tail, zeros dropped: umap-learn's ``fuzzy_simplicial_set(...).tocoo()`` after
    ``sum_duplicates``.
    """
    import scipy.sparse as sp

    n, width = indices.shape
    sigmas, rhos = smooth_knn_dist(
        distances,
        float(n_neighbors),
        local_connectivity=local_connectivity,
        pool=pool,
        threads=threads,
    )
    vals = membership_strengths(indices, distances, sigmas, rhos, pool=pool, threads=threads)
    rows = np.repeat(np.arange(n, dtype=np.int32), width)
    A = sp.csr_matrix(
        (vals.ravel(), (rows, np.ascontiguousarray(indices, dtype=np.int32).ravel())),
        shape=(n, n),
    )
    A.eliminate_zeros()
    At = A.transpose().tocsr()
    union = (A + At - A.multiply(At)).tocoo()
    union.sum_duplicates()
    union.eliminate_zeros()
    return (
        union.row.astype(np.int32),
        union.col.astype(np.int32),
        union.data.astype(np.float32),
    )


@functools.lru_cache(maxsize=64)
def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """umap-learn's fit of ``1 / (1 + a x^(2b))`` to ``exp(-(x - min_dist) / spread)`` (1 below
    min_dist) on 300 points of [0, 3 spread]."""
    from scipy.optimize import curve_fit

    def curve(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + a * x ** (2 * b))

    xv = np.linspace(0, spread * 3, 300)
    yv = np.zeros(xv.shape)
    yv[xv < min_dist] = 1.0
    yv[xv >= min_dist] = np.exp(-(xv[xv >= min_dist] - min_dist) / spread)
    params, _ = curve_fit(curve, xv, yv)
    return float(params[0]), float(params[1])


@njit(cache=True, nogil=True, fastmath=True)
def _epoch(
    Y: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    epochs_per_sample: np.ndarray,
    epoch_of_next_sample: np.ndarray,
    epoch_of_next_negative: np.ndarray,
    negative_rate: float,
    a_: float,
    b_: float,
    gamma_: float,
    alpha_: float,
    epoch: int,
    lo: int,
    hi: int,
    states: np.ndarray,
    thread: int,
) -> None:
    """Edges lo..hi of one epoch of umap-learn's optimiser (module docstring), in float32."""
    n = Y.shape[0]
    dims = Y.shape[1]
    state = states[thread]
    un = np.uint64(n)
    a = np.float32(a_)
    b = np.float32(b_)
    alpha = np.float32(alpha_)
    attract = np.float32(-2.0 * a_ * b_)
    repulse = np.float32(2.0 * gamma_ * b_)
    clip = np.float32(_CLIP)
    eps = np.float32(_REPULSION_EPS)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    cur = np.empty(dims, np.float32)
    acc = np.empty(dims, np.float32)
    for e in range(lo, hi):
        if epoch_of_next_sample[e] > epoch:
            continue
        j = head[e]
        k = tail[e]
        d2 = zero
        for d in range(dims):
            diff = Y[j, d] - Y[k, d]
            d2 += diff * diff
        if d2 > zero:
            pb = np.float32(math.exp(b * np.float32(math.log(d2))))
            coeff = attract * (pb / d2) / (a * pb + one)
            for d in range(dims):
                g = coeff * (Y[j, d] - Y[k, d])
                if g > clip:
                    g = clip
                elif g < -clip:
                    g = -clip
                Y[j, d] += g * alpha
                Y[k, d] -= g * alpha
        epoch_of_next_sample[e] += epochs_per_sample[e]
        per_negative = epochs_per_sample[e] / negative_rate
        n_neg = int((epoch - epoch_of_next_negative[e]) / per_negative)
        # The negatives of one sample all push from the head's position before them (their
        # distances are independent, so the CPU overlaps them); the pushes are summed.
        for d in range(dims):
            cur[d] = Y[j, d]
            acc[d] = zero
        for _ in range(n_neg):
            state, z = splitmix(state)
            k = np.int64(((z >> _S32) * un) >> _S32)
            d2 = zero
            for d in range(dims):
                diff = cur[d] - Y[k, d]
                d2 += diff * diff
            if d2 <= zero:
                continue  # the head itself, or a point on top of it: no push (umap-learn)
            pb = np.float32(math.exp(b * np.float32(math.log(d2))))
            coeff = repulse / ((eps + d2) * (a * pb + one))
            for d in range(dims):
                g = coeff * (cur[d] - Y[k, d])
                if g > clip:
                    g = clip
                elif g < -clip:
                    g = -clip
                acc[d] += g
        for d in range(dims):
            Y[j, d] += acc[d] * alpha
        epoch_of_next_negative[e] += n_neg * per_negative
    states[thread] = state


def prune_edges(
    head: np.ndarray, tail: np.ndarray, weight: np.ndarray, n_epochs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges an ``n_epochs`` layout samples at least once: umap-learn drops those below
    ``max(weight) / n_epochs`` (``/ 200``, its default, when ``n_epochs <= 10``) before its
    initialisation and optimiser."""
    if weight.size == 0:
        return head, tail, weight
    keep = weight >= weight.max() / float(n_epochs if n_epochs > 10 else 200)
    return head[keep], tail[keep], weight[keep]


def optimise(
    Y: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    weight: np.ndarray,
    *,
    n_epochs: int,
    a: float,
    b: float,
    gamma: float = 1.0,
    initial_alpha: float = 1.0,
    negative_sample_rate: float = 5.0,
    seed: int = 0,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
    after_epoch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """umap-learn's ``optimize_layout_euclidean`` (move_other) on ``Y`` in place (float32, C).

    ``head``/``tail``/``weight``: the directed edges of :func:`fuzzy_graph`, sorted by head.
    Edges below ``max(weight) / n_epochs`` are never sampled (umap-learn drops them).
    ``after_epoch(epoch)`` is called after each epoch (it may raise to stop).
    """
    head, tail, weight = prune_edges(head, tail, weight, n_epochs)
    head = np.ascontiguousarray(head, dtype=np.int32)
    tail = np.ascontiguousarray(tail, dtype=np.int32)
    w = weight.astype(np.float64)
    epochs_per_sample = w.max() / w  # n_epochs / (n_epochs * w / w_max)
    epoch_of_next_sample = epochs_per_sample.copy()
    epoch_of_next_negative = epochs_per_sample / float(negative_sample_rate)
    threads = 1 if pool is None else max(1, int(threads))
    states = np.random.SeedSequence(int(seed)).generate_state(threads, np.uint64)
    bounds = np.linspace(0, head.size, threads + 1).astype(np.int64)
    alpha = float(initial_alpha)
    for epoch in range(int(n_epochs)):
        args = [
            (Y, head, tail, epochs_per_sample, epoch_of_next_sample, epoch_of_next_negative,
             float(negative_sample_rate), float(a), float(b), float(gamma), alpha, epoch,
             int(bounds[t]), int(bounds[t + 1]), states, t)
            for t in range(threads)
        ]  # fmt: skip
        if pool is None:
            _epoch(*args[0])
        else:
            for future in [pool.submit(_epoch, *arg) for arg in args]:
                future.result()
        alpha = initial_alpha * (1.0 - epoch / float(n_epochs))
        if after_epoch is not None:
            after_epoch(epoch + 1)
    return Y
