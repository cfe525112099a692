"""LargeVis (Tang, Liu, Zhang, Mei, WWW 2016) on the shared neighbour graph (docs/science.md §1).

Our own implementation of the paper and of the authors' C++ (``LargeVis.cpp``), step for step:

1. perplexity-calibrated Gaussian weights ``p_{j|i} ∝ exp(-β_i d_ij²)`` on the first K columns
   of the graph, with *squared* distances and entropy ``ln(perplexity)`` (tolerance 1e-5,
   at most 200 iterations, float64);
2. symmetrisation ``w_ij = w_ji = (p_{j|i} + p_{i|j}) / 2`` keeping both directed edges;
3. edge sampling from an alias table ∝ w, negative sampling ∝ (weighted degree)^0.75,
   M negatives per positive;
4. asynchronous (Hogwild) SGD on the kernel 1/(1 + d²): attraction ``-2/(1+f)``, repulsion
   ``2γ/((1+f)(0.1+f))``, each coordinate clipped at ±5, the negative moved as well, learning rate
   ``ρ0 (1 - t/(T+1))`` floored at ``1e-4 ρ0``.

Where we differ, on purpose (none of it changes what is sampled or how a sample moves points):

- The graph is shared (:mod:`core.graph`), not the reference's Annoy forest + neighbour exploring.
- β is found by a safeguarded Newton search on ``log β`` (bisection inside the bracket when a
  Newton step leaves it) to the reference tolerance on the entropy. The reference's global
  max-abs scaling is not needed: each row's squared distances are shifted by their minimum and
  divided by their mean, which changes β but not ``p_{j|i}``.
- The two directed copies of an edge have the same weight, so the alias table holds each
  undirected edge once and a random bit picks the direction: the same distribution over directed
  edges at half the memory. Both alias tables are exact (the reference's noise table is a 1e8-entry
  lookup table).
- The layout starts from PCA scaled to about the spread of a finished layout (``init="pca"``,
  standard deviation 10 on the first axis), which needs far fewer samples than the reference's
  tiny uniform start (``init="random"``, kept).
- The default number of samples is :func:`default_samples` (the reference's ``max(1e9, 1e4 N)``
  takes minutes for a dashboard).
- Threads are Python threads running a ``nogil`` numba kernel over one shared layout (Hogwild),
  each with its own random stream; numba's own parallel layer is not used, so the kernel is safe to
  call from any thread of a server (the ``workqueue`` layer aborts on concurrent launches) and does
  not depend on which threading layer is installed.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from numba import njit

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, vectors_of_points
from embscope.core.numba_rng import splitmix
from embscope.core.progress import ProgressFn
from embscope.core.projections.params import LARGEVIS_PARAMS
from embscope.core.projections.pca import pca_layout
from embscope.core.threads import available_threads, run_ranges
from embscope.core.validation import check_number, check_vectors, prepare_for_metric

__all__ = [
    "DEFAULT_SAMPLES_PER_POINT",
    "chosen",
    "MIN_TOTAL_SAMPLES",
    "default_samples",
    "largevis_layout",
]

# Default edge samples per point, and a floor on the total for small data sets (see
# default_samples). The Gaussian mixture saturates early (100k x 384: trustworthiness@10 0.959
# at 300 per point, 0.964 at 1000); real text embeddings do not: 50,000 docstrings embedded
# with all-MiniLM-L6-v2 reach trustworthiness@10 / 10-NN preservation 0.875 / 0.151 at 300,
# 0.945 / 0.206 at 1000 and 0.952 / 0.213 at 1500 per point (umap-learn's defaults:
# 0.902 / 0.187), with the layout taking 1.6 / 4.7 / 6.9 s on 2 cores
# (bench/bench_projections.py --data real).
DEFAULT_SAMPLES_PER_POINT = 1000
MIN_TOTAL_SAMPLES = 10_000_000
# Standard deviation of the first PCA axis after scaling, in layout units (kernel 1/(1+d²)).
PCA_INIT_STD = 10.0
# Rows that fix the PCA axes of the initialisation.
PCA_SAMPLE = 20_000
# Samples a thread runs between two progress calls (about 0.05-0.1 s).
_THREAD_CHUNK = 200_000
_MIN_CHUNKS = 100
# Rows calibrated between two progress calls.
_ROW_BLOCK = 16_384
_PERPLEXITY_TOL = 1e-5
_PERPLEXITY_ITERS = 200
_GRAD_CLIP = 5.0
_REPULSION_EPS = 0.1
_LR_FLOOR = 1e-4

_LOW32 = np.uint64(0xFFFFFFFF)
_S1 = np.uint64(1)
_S32 = np.uint64(32)
_BATCH = 32


# -- numba kernels (cache=True: a restarted server loads them from __pycache__) ---------------


def _calibrate_block(
    d2: np.ndarray, log_perp: float, start: int, P: np.ndarray, betas: np.ndarray, lo: int, hi: int
) -> None:
    """Rows start + lo .. start + hi of :func:`_calibrate_rows` (a pool task)."""
    _calibrate_rows(d2, log_perp, start + lo, start + hi, P, betas)


@njit(cache=True, nogil=True)
def _calibrate_rows(
    d2: np.ndarray, log_perplexity: float, lo: int, hi: int, P: np.ndarray, betas: np.ndarray
) -> None:
    """Rows lo..hi of the perplexity search: P[i] = p_{.|i}, betas[i] on the normalised scale."""
    K = d2.shape[1]
    x = np.empty(K, np.float64)
    for i in range(lo, hi):
        dmin = d2[i, 0]
        for c in range(1, K):
            if d2[i, c] < dmin:
                dmin = d2[i, c]
        mean = 0.0
        for c in range(K):
            x[c] = d2[i, c] - dmin
            mean += x[c]
        mean /= K
        if mean > 0.0:
            for c in range(K):
                x[c] /= mean
        b = 0.0  # log beta
        b_lo = -np.inf
        b_hi = np.inf
        for _ in range(_PERPLEXITY_ITERS):
            beta = math.exp(b)
            sw = 0.0
            swx = 0.0
            swx2 = 0.0
            for c in range(K):
                w = math.exp(-beta * x[c])
                sw += w
                swx += w * x[c]
                swx2 += w * x[c] * x[c]
            ex = swx / sw
            H = beta * ex + math.log(sw)
            gap = H - log_perplexity
            if abs(gap) < _PERPLEXITY_TOL:
                break
            if gap > 0.0:  # too flat: larger beta
                b_lo = b
            else:
                b_hi = b
            var = swx2 / sw - ex * ex
            step_ok = False
            if var > 0.0:
                # dH/d(log beta) = -beta² Var_p(x)
                nb = b + gap / (beta * beta * var)
                if b_lo < nb < b_hi:
                    b = nb
                    step_ok = True
            if not step_ok:
                if b_lo == -np.inf and b_hi == np.inf:
                    break  # flat entropy (all distances equal): nothing to calibrate
                if b_hi == np.inf:
                    b = b_lo + math.log(2.0)
                elif b_lo == -np.inf:
                    b = b_hi - math.log(2.0)
                else:
                    b = 0.5 * (b_lo + b_hi)
            if b > 700.0:  # beyond this every weight but the nearest underflows anyway
                b = 700.0
                if b_lo >= 700.0:
                    break
        beta = math.exp(b)
        sw = 0.0
        for c in range(K):
            P[i, c] = math.exp(-beta * x[c])
            sw += P[i, c]
        for c in range(K):
            P[i, c] /= sw
        betas[i] = beta


@njit(cache=True, nogil=True)
def _transpose(indices: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Incoming lists: for node j, the sources x with j in x's row and p_{j|x}, CSR-style."""
    n, K = indices.shape
    ptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        for c in range(K):
            ptr[indices[i, c] + 1] += 1
    for j in range(n):
        ptr[j + 1] += ptr[j]
    cursor = ptr[:-1].copy()
    src = np.empty(n * K, np.int32)
    prob = np.empty(n * K, np.float64)
    for i in range(n):
        for c in range(K):
            j = indices[i, c]
            src[cursor[j]] = i
            prob[cursor[j]] = P[i, c]
            cursor[j] += 1
    return ptr, src, prob


@njit(cache=True, nogil=True)
def _symmetrise_rows(
    indices: np.ndarray,
    P: np.ndarray,
    ptr: np.ndarray,
    src: np.ndarray,
    prob: np.ndarray,
    lo: int,
    hi: int,
    counts: np.ndarray,
    offsets: np.ndarray,
    fill: bool,
    out_u: np.ndarray,
    out_v: np.ndarray,
    out_w: np.ndarray,
) -> None:
    """Each undirected edge {i, j} once, w = (p_{j|i} + p_{i|j}) / 2 (a missing p counts 0).

    Row i emits the pairs it holds alone, and the pairs both rows hold when i < j; a dense
    mark array (the position of each of i's neighbours) replaces any search. ``fill=False``
    only counts.
    """
    n, K = indices.shape
    mark = np.zeros(n, np.int64)
    for i in range(lo, hi):
        pos = offsets[i] if fill else 0
        count = 0
        for c in range(K):
            j = indices[i, c]
            if j != i and mark[j] == 0:  # a duplicate column keeps its first weight
                mark[j] = c + 1
        for q in range(ptr[i], ptr[i + 1]):
            x = src[q]
            c = mark[x]
            if c > 0:  # x -> i and i -> x: the pair is shared
                mark[x] = -c
                if i < x:
                    if fill:
                        out_u[pos] = i
                        out_v[pos] = x
                        out_w[pos] = 0.5 * (P[i, c - 1] + prob[q])
                        pos += 1
                    count += 1
        for c in range(K):
            j = indices[i, c]
            if j == i:
                continue
            if mark[j] > 0:  # i -> j only
                if fill:
                    out_u[pos] = i
                    out_v[pos] = j
                    out_w[pos] = 0.5 * P[i, c]
                    pos += 1
                count += 1
            mark[j] = 0
        if not fill:
            counts[i] = count


@njit(cache=True, nogil=True)
def _weighted_degree(u: np.ndarray, v: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    deg = np.zeros(n, np.float64)
    for e in range(u.shape[0]):
        deg[u[e]] += w[e]
        deg[v[e]] += w[e]
    return deg


@njit(cache=True, nogil=True)
def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: (prob float64, alias int32) drawing k with P ∝ weights[k]."""
    m = weights.shape[0]
    total = 0.0
    for k in range(m):
        total += weights[k]
    prob = np.empty(m, np.float64)
    for k in range(m):
        prob[k] = weights[k] * m / total
    alias = np.arange(m).astype(np.int32)
    small = np.empty(m, np.int32)
    large = np.empty(m, np.int32)
    ns = 0
    nl = 0
    for k in range(m):
        if prob[k] < 1.0:
            small[ns] = k
            ns += 1
        else:
            large[nl] = k
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        nl -= 1
        g = large[nl]
        alias[s] = g
        prob[g] = (prob[g] + prob[s]) - 1.0
        if prob[g] < 1.0:
            small[ns] = g
            ns += 1
        else:
            large[nl] = g
            nl += 1
    # Whatever is left holds probability 1 up to rounding.
    for k in range(nl):
        prob[large[k]] = 1.0
    for k in range(ns):
        prob[small[k]] = 1.0
    return prob, alias


@njit(cache=True, nogil=True)
def _pack_alias(prob: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """One uint64 per slot: alias << 32 | round(prob * 2^31), so one memory access per draw."""
    m = prob.shape[0]
    out = np.empty(m, np.uint64)
    for k in range(m):
        p = prob[k]
        if p > 1.0:
            p = 1.0
        thr = np.uint64(p * 2147483648.0 + 0.5)
        out[k] = (np.uint64(alias[k]) << _S32) | thr
    return out


@njit(cache=True, nogil=True)
def _alias_pick(z: np.uint64, table: np.ndarray) -> np.int64:
    # Top 32 bits pick the slot (multiply-high), bits 1-31 toss the coin; bit 0 is the
    # caller's.
    slot = ((z >> _S32) * np.uint64(table.shape[0])) >> _S32
    rec = table[slot]
    if ((z & _LOW32) >> _S1) < (rec & _LOW32):
        return np.int64(slot)
    return np.int64(rec >> _S32)


@njit(cache=True, nogil=True)
def _alias_draws(table: np.ndarray, n_draws: int, state: np.uint64) -> np.ndarray:
    """``n_draws`` draws with the sampler the SGD uses (for tests)."""
    out = np.empty(n_draws, np.int64)
    for t in range(n_draws):
        state, z = splitmix(state)
        out[t] = _alias_pick(z, table)
    return out


@njit(cache=True, nogil=True)
def _sgd(
    Y: np.ndarray,
    edges: np.ndarray,
    edge_table: np.ndarray,
    neg_table: np.ndarray,
    states: np.ndarray,
    thread: int,
    t_first: int,
    t_stride: int,
    count: int,
    total: int,
    rho0: float,
    gamma: float,
    negatives: int,
) -> None:
    """``count`` LargeVis samples with global indices t_first + c * t_stride (Hogwild on Y).

    ``edges`` holds each undirected edge as u << 32 | v. The edges of the next _BATCH samples
    are drawn first so that their memory reads overlap (the draws do not depend on Y).
    """
    dims = Y.shape[1]
    # Two streams, edges and negatives, so the batching (and the chunking of the run) does
    # not change which numbers go where.
    state = states[thread, 0]
    nstate = states[thread, 1]
    cur = np.empty(dims, np.float64)
    err = np.empty(dims, np.float64)
    picks = np.empty(_BATCH, np.int64)
    flips = np.empty(_BATCH, np.bool_)
    ends = np.empty(_BATCH, np.uint64)
    rate = rho0 / (total + 1.0)
    floor = rho0 * _LR_FLOOR
    clip = _GRAD_CLIP
    done = 0
    while done < count:
        batch = min(_BATCH, count - done)
        for b in range(batch):
            state, z = splitmix(state)
            picks[b] = _alias_pick(z, edge_table)
            flips[b] = (z & _S1) != 0
        for b in range(batch):
            ends[b] = edges[picks[b]]
        for b in range(batch):
            rho = rho0 - (t_first + (done + b) * t_stride) * rate
            if rho < floor:
                rho = floor
            a = np.int64(ends[b] >> _S32)
            o = np.int64(ends[b] & _LOW32)
            if flips[b]:
                i, j = a, o
            else:
                i, j = o, a
            for d in range(dims):
                cur[d] = Y[i, d]
                err[d] = 0.0
            for m in range(negatives + 1):
                if m == 0:
                    y = j
                else:
                    nstate, z = splitmix(nstate)
                    y = _alias_pick(z, neg_table)
                    if y == j:
                        continue
                f = 0.0
                for d in range(dims):
                    diff = cur[d] - Y[y, d]
                    f += diff * diff
                if m == 0:
                    g = -2.0 / (1.0 + f)
                else:
                    g = 2.0 * gamma / ((1.0 + f) * (_REPULSION_EPS + f))
                for d in range(dims):
                    gg = g * (cur[d] - Y[y, d])
                    if gg > clip:
                        gg = clip
                    elif gg < -clip:
                        gg = -clip
                    err[d] += gg * rho
                    Y[y, d] -= gg * rho
            for d in range(dims):
                Y[i, d] += err[d]
        done += batch
    states[thread, 0] = state
    states[thread, 1] = nstate


# -- helpers --------------------------------------------------------------------------------


def _squared_distances(distances: np.ndarray, metric: str) -> np.ndarray:
    """Squared Euclidean distances (float64) from the graph's true distances.

    l2: d². cosine: ``1 - cos`` of unit vectors is ``‖a - b‖² / 2``, so 2d. ip: ``1 - <a, b>``
    is treated like cosine (2d, exact for unit vectors; otherwise an affine stand-in whose row
    shift cancels in the calibration).
    """
    d = distances.astype(np.float64)
    if metric == "l2":
        return d * d
    return 2.0 * d


def _conditional_weights(
    d2: np.ndarray,
    perplexity: float,
    *,
    pool: ThreadPoolExecutor | None = None,
    n_threads: int = 1,
    check: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``p_{j|i}`` (float64, rows sum to 1) with entropy ln(perplexity), and the β of each row.

    The returned β apply to the row's squared distances after shifting by the row minimum and
    dividing by the row mean (a scale that leaves ``p_{j|i}`` unchanged). ``check(fraction)``
    is called between blocks of rows (it may raise to cancel).
    """
    d2 = np.ascontiguousarray(d2, dtype=np.float64)
    n = d2.shape[0]
    P = np.empty_like(d2)
    betas = np.empty(n, np.float64)
    log_perp = math.log(perplexity)
    for start in range(0, n, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, n)
        run_ranges(pool, partial(_calibrate_block, d2, log_perp, start, P, betas), stop - start,
                   n_threads)  # fmt: skip
        if check is not None:
            check(stop / n)
    return P, betas


def _symmetrise(
    indices: np.ndarray,
    P: np.ndarray,
    *,
    pool: ThreadPoolExecutor | None = None,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges (u, v, w) with w = (p_{v|u} + p_{u|v}) / 2, each pair once.

    The order depends on the graph only (rows in order), not on the number of threads.
    """
    n = indices.shape[0]
    idx32 = np.ascontiguousarray(indices, dtype=np.int32)
    P = np.ascontiguousarray(P, dtype=np.float64)
    ptr, src, prob = _transpose(idx32, P)
    counts = np.zeros(n, np.int64)
    offsets = np.zeros(n, np.int64)
    u = np.empty(0, np.int32)
    v = np.empty(0, np.int32)
    w = np.empty(0, np.float64)

    def rows(fill: bool) -> Any:
        return lambda lo, hi: _symmetrise_rows(
            idx32, P, ptr, src, prob, lo, hi, counts, offsets, fill, u, v, w
        )

    run_ranges(pool, rows(False), n, n_threads)
    offsets[1:] = np.cumsum(counts)[:-1]
    total = int(counts.sum())
    u = np.empty(total, np.int32)
    v = np.empty(total, np.int32)
    w = np.empty(total, np.float64)
    run_ranges(pool, rows(True), n, n_threads)
    return u, v, w


def _edge_weights(
    graph: KnnGraph,
    *,
    n_neighbors: int = LARGEVIS_PARAMS.default("n_neighbors"),
    perplexity: float = 50.0,
    pool: ThreadPoolExecutor | None = None,
    n_threads: int = 1,
    check: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LargeVis's input weights from the first ``n_neighbors`` columns of ``graph``.

    Returns
    -------
    P : float64 (n, K)
        Conditional ``p_{j|i}`` for the graph's neighbour ``j = graph.indices[i, c]``.
    u, v : int32 (E,)
        Each undirected edge once.
    w : float64 (E,)
        ``(p_{v|u} + p_{u|v}) / 2``; both directions carry this weight.

    ``check(fraction)`` is called now and then (it may raise to cancel).
    """
    K, perp = _effective_neighbours(graph, n_neighbors, perplexity)
    d2 = _squared_distances(graph.distances[:, :K], graph.metric)
    P, _ = _conditional_weights(
        d2, perp, pool=pool, n_threads=n_threads, check=check and (lambda f: check(0.6 * f))
    )
    del d2
    u, v, w = _symmetrise(graph.indices[:, :K], P, pool=pool, n_threads=n_threads)
    if check is not None:
        check(1.0)
    return P, u, v, w


def _effective_neighbours(
    graph: KnnGraph, n_neighbors: int, perplexity: float
) -> tuple[int, float]:
    """K ≤ n - 1 and perplexity ≤ K / 3 (the reference's K = 3·perplexity), at least 1."""
    K = min(int(n_neighbors), graph.k)
    return K, float(max(1.0, min(float(perplexity), K / 3.0)))


def default_samples(n: int, samples_per_point: float | None = None) -> int:
    """Total edge samples T for ``n`` points.

    ``samples_per_point`` times n, by default ``max(DEFAULT_SAMPLES_PER_POINT * n,
    MIN_TOTAL_SAMPLES)``: small data sets need many samples per point to settle, large ones
    reach their quality at a fixed budget per point from a PCA start. The reference uses
    ``max(1e9, 1e4 n)`` (minutes at any size).
    """
    if samples_per_point is None:
        return int(max(DEFAULT_SAMPLES_PER_POINT * n, MIN_TOTAL_SAMPLES))
    return max(1, int(round(float(samples_per_point) * n)))


def _check_positive(name: str, value: Any, *, integer: bool = False) -> float:
    number = check_number(value, name, low=0, low_open=True)
    if integer and number != int(number):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    return number


def _check_graph(graph: Any) -> None:
    if not isinstance(graph, KnnGraph):
        raise InvalidInputError(
            f"largevis_layout needs a core.graph.KnnGraph (from build_knn_graph or "
            f"get_or_build_graph), got {type(graph).__name__}"
        )
    if graph.n < 2 or graph.k < 1:
        raise InvalidInputError(
            f"a LargeVis layout needs at least 2 points with at least 1 neighbour each, "
            f"got a graph of {graph.n} points x {graph.k} neighbours"
        )
    if graph.n >= 2**31:
        raise InvalidInputError(f"LargeVis handles up to 2^31 - 1 points, got {graph.n:,}")
    if graph.metric not in ("l2", "cosine", "ip"):
        raise InvalidInputError(f"unknown graph metric {graph.metric!r}: use l2, cosine or ip")
    if not np.issubdtype(graph.indices.dtype, np.integer):
        raise InvalidInputError(f"graph indices must be integers, got {graph.indices.dtype}")


def _pca_coordinates(X: np.ndarray, metric: str, dims: int, seed: int) -> np.ndarray:
    """Coordinates (float64) on the top principal axes of the rows (unit-normalised for a
    cosine graph). The axes come from at most :data:`PCA_SAMPLE` rows (an initialisation
    needs no more); signs are fixed as in :func:`core.projections.pca.pca_layout`."""
    n, d = X.shape
    if n <= PCA_SAMPLE:
        return pca_layout(prepare_for_metric(X, metric), dims=dims).astype(np.float64)
    norms = np.linalg.norm(X, axis=1) if metric == "cosine" else np.ones(n, np.float32)
    norms = np.where(norms > 0, norms, 1.0).astype(np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, PCA_SAMPLE, replace=False))
    S = X[rows] / norms[rows, None]
    mean = S.mean(axis=0, dtype=np.float64)
    S -= mean.astype(np.float32)
    values, vectors = np.linalg.eigh((S.T @ S).astype(np.float64))
    top = vectors[:, np.argsort(values)[::-1][: min(dims, d)]]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    top = np.ascontiguousarray(top * np.where(signs == 0, 1.0, signs), dtype=np.float32)
    Y: np.ndarray = (X @ top / norms[:, None]).astype(np.float64) - mean @ top
    if Y.shape[1] < dims:
        Y = np.hstack([Y, np.zeros((n, dims - Y.shape[1]))])
    return Y


def _initial_layout(
    init: Any, X: np.ndarray | None, graph: KnnGraph, dims: int, seed: int
) -> np.ndarray:
    n = graph.n
    if isinstance(init, str) and init == "random":
        rng = np.random.default_rng(seed)
        # The reference: (U(0, 1) - 0.5) / out_dim * 1e-4.
        return ((rng.random((n, dims)) - 0.5) / dims * 1e-4).astype(np.float32)
    if isinstance(init, str) and init == "pca":
        if X is None:
            raise InvalidInputError(
                "init='pca' needs the vectors X the graph was built from; pass X=... "
                "or use init='random'"
            )
        Y = _pca_coordinates(X, graph.metric, dims, seed)
        spread = float(Y[:, 0].std())
        if spread > 0:
            Y *= PCA_INIT_STD / spread
        # A tiny jitter separates exact duplicates, which otherwise start on one spot.
        rng = np.random.default_rng(seed)
        Y += rng.standard_normal(Y.shape) * (1e-4 * PCA_INIT_STD)
        return np.ascontiguousarray(Y, dtype=np.float32)
    if isinstance(init, str):
        raise InvalidInputError(f"unknown init {init!r}: use 'pca', 'random' or an (n, dims) array")
    Y = check_vectors(init, name="init")
    if Y.shape != (n, dims):
        raise InvalidInputError(f"init array has shape {Y.shape}, expected ({n}, {dims})")
    return Y.copy()


# -- public ---------------------------------------------------------------------------------


def chosen(
    graph: KnnGraph,
    *,
    n_neighbors: int = LARGEVIS_PARAMS.default("n_neighbors"),
    perplexity: float = LARGEVIS_PARAMS.default("perplexity"),
    samples_per_point: float | None = LARGEVIS_PARAMS.default("samples_per_point"),
    init: str = "pca",
    **_: Any,
) -> dict[str, Any]:
    """What a :func:`largevis_layout` of ``graph`` with these parameters runs, as plain JSON
    (``project --json`` "chosen", the gallery's caption): the sample budget, the start, K and
    perplexity as used, and ``differs_from_paper``: a short topic and one sentence for every
    choice that is not the reference code's default (lferry007/LargeVis)."""
    n = graph.n
    K, used_perplexity = _effective_neighbours(graph, int(n_neighbors), float(perplexity))
    total = default_samples(n, samples_per_point)
    reference_total = int(max(1e9, 1e4 * n))
    departures: dict[str, str] = {}
    if init == "pca":
        departures["start"] = (
            "PCA start, first axis scaled to a standard deviation of 10 (paper: random, "
            "U(-0.5, 0.5) / dims x 1e-4)"
        )
    if total < reference_total:
        departures["samples"] = (
            f"{total / n:,.0f} edge samples per point, {total:,} in all (paper: "
            f"max(1e9, 1e4 n) = {reference_total:,})"
        )
    if K != 150:
        departures["K"] = f"K = {K} neighbours per point (paper: 150)" + (
            "; on real text embeddings K = 30 with perplexity 10 keeps more of each point's "
            "10 nearest neighbours on the map (0.31 against 0.21 at 50,000 texts) and needs "
            "a narrower graph"
            if K == LARGEVIS_PARAMS.default("n_neighbors")
            else ""
        )
    if used_perplexity != 50.0:
        departures["perplexity"] = f"perplexity {used_perplexity:g} (paper: 50, capped at K / 3)"
    return {
        "samples_per_point": round(total / n, 1),
        "total_samples": total,
        "init": init,
        "n_neighbors": K,
        "perplexity": used_perplexity,
        "differs_from_paper": departures,
    }


def largevis_layout(
    graph: KnnGraph,
    *,
    dims: int = 2,
    n_neighbors: int = LARGEVIS_PARAMS.default("n_neighbors"),
    perplexity: float = LARGEVIS_PARAMS.default("perplexity"),
    negatives: int = LARGEVIS_PARAMS.default("negatives"),
    gamma: float = LARGEVIS_PARAMS.default("gamma"),
    rho0: float = 1.0,
    samples_per_point: float | None = LARGEVIS_PARAMS.default("samples_per_point"),
    init: str | np.ndarray = "pca",
    X: np.ndarray | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    deterministic: bool = False,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """LargeVis layout of the points of a shared k-NN graph.

    Parameters
    ----------
    graph : KnnGraph
        The shared neighbour graph (self excluded, true distances), at least 2 points. Its
        first ``n_neighbors`` columns are used.
    dims : {2, 3}
        Output dimension.
    n_neighbors : int
        K, neighbours per point that get a weight (reference 150). Capped at the graph's width
        when the graph already holds every other point (``k == n - 1``); a narrower graph is an
        error (build it with ``k >= n_neighbors``).
    perplexity : float
        Effective number of neighbours of the Gaussian weights (reference 50); capped at K / 3.
    negatives : int
        M, negative samples per positive edge (reference 5).
    gamma : float
        γ, weight of the negative edges (reference 7).
    rho0 : float
        Initial learning rate (reference 1), decaying linearly to ``1e-4 * rho0``.
    samples_per_point : float, optional
        Edge samples per point; T = samples_per_point * n. Default :func:`default_samples`
        (:data:`DEFAULT_SAMPLES_PER_POINT` = 1000 per point with a floor of
        :data:`MIN_TOTAL_SAMPLES` = 1e7 in total). The reference uses
        ``T = max(1e9, 1e4 n)``, i.e. ``samples_per_point = max(1e9 / n, 1e4)``.
    init : {"pca", "random"} or float32 ndarray (n, dims)
        ``"pca"``: the first principal axes of ``X`` (unit-normalised rows for a cosine graph),
        scaled to a standard deviation of :data:`PCA_INIT_STD` on the first axis.
        ``"random"``: the reference's ``U(-0.5, 0.5) / dims * 1e-4``. An array is used as given.
    X : float32 ndarray (n, d), optional
        The vectors the graph was built from; needed by ``init="pca"`` only.
    seed : int
        Seeds the initialisation and every thread's random stream.
    n_threads : int, optional
        Threads for the weights and the asynchronous SGD (default: the CPUs available).
        Several threads update the layout without locks (Hogwild), so results vary from run to
        run; 1 thread is deterministic.
    deterministic : bool
        Run on one thread: the same seed gives bit-identical output.
    progress : callable(fraction, message) -> bool, optional
        Called between chunks of samples (every ~0.1 s); returning True cancels
        (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    float32 ndarray of shape (n, dims)
    """
    _check_graph(graph)
    if isinstance(dims, bool) or dims not in (2, 3):
        raise InvalidInputError(f"a projection has 2 or 3 dimensions, got {dims!r}")
    K = int(_check_positive("n_neighbors", n_neighbors, integer=True))
    n = graph.n
    if K > graph.k and graph.k < n - 1:
        raise InvalidInputError(
            f"n_neighbors={K} but the graph holds only {graph.k} neighbours per point: "
            f"build the graph with k >= {K} or lower n_neighbors"
        )
    perplexity = _check_positive("perplexity", perplexity)
    M = int(_check_positive("negatives", negatives, integer=True))
    gamma = _check_positive("gamma", gamma)
    rho0 = _check_positive("rho0", rho0)
    if samples_per_point is not None:
        _check_positive("samples_per_point", samples_per_point)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if n_threads is None:
        n_threads = available_threads()
    n_threads = int(_check_positive("n_threads", n_threads, integer=True))
    if deterministic:
        n_threads = 1
    if X is not None:
        X = vectors_of_points(X, n)
    indices = graph.indices[:, : min(K, graph.k)]
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise InvalidInputError(
            f"graph indices must lie in [0, {n}); the graph has missing (-1) or foreign entries"
        )
    if not np.isfinite(graph.distances[:, : indices.shape[1]]).all():
        raise InvalidInputError("graph distances contain NaN or infinite values")

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(float(min(max(fraction, 0.0), 1.0)), message):
            raise OperationCancelled("the LargeVis layout was cancelled")

    Y = _initial_layout(init, X, graph, dims, int(seed))
    total = default_samples(n, samples_per_point)
    # Per-thread random streams (edges, negatives) derived from the seed.
    states = np.random.SeedSequence(int(seed)).generate_state(2 * n_threads, np.uint64)
    states = states.reshape(n_threads, 2)

    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:
        report(0.0, "LargeVis: weighing each neighbour link")
        _, u, v, w = _edge_weights(
            graph,
            n_neighbors=K,
            perplexity=perplexity,
            pool=pool,
            n_threads=n_threads,
            check=lambda f: report(0.04 * f, "LargeVis: weighing each neighbour link"),
        )
        if w.size == 0 or not w.sum() > 0:
            raise InvalidInputError("the graph links no two distinct points: nothing to lay out")
        report(0.04, f"LargeVis: {w.size:,} neighbour links; preparing to draw them")
        edge_table = _pack_alias(*_alias_table(w))
        edges = (u.astype(np.uint64) << np.uint64(32)) | v.astype(np.uint64)
        neg_table = _pack_alias(*_alias_table(_weighted_degree(u, v, w, n) ** 0.75))
        del u, v, w
        report(0.05, f"LargeVis: placing the points ({total:,} steps)")

        per_chunk = max(1, min(math.ceil(total / _MIN_CHUNKS), _THREAD_CHUNK * n_threads))
        done = 0
        while done < total:
            size = min(per_chunk, total - done)
            args = [
                (Y, edges, edge_table, neg_table, states, t,
                 done + t, n_threads, (size - t + n_threads - 1) // n_threads,
                 total, rho0, gamma, M)
                for t in range(min(n_threads, size))
            ]  # fmt: skip
            if pool is None:
                _sgd(*args[0])
            else:
                for future in [pool.submit(_sgd, *a) for a in args]:
                    future.result()
            done += size
            report(
                0.05 + 0.95 * done / total,
                f"LargeVis: placing the points, {done:,} of {total:,} steps",
            )
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if not np.isfinite(Y).all():  # pragma: no cover - the clipped updates keep Y finite
        raise InvalidInputError("the LargeVis layout diverged; lower rho0")
    return Y
