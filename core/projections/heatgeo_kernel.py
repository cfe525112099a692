"""The heat kernel of the heat-geodesic method: the graph it runs on and the heat it spreads.

The alpha-decay kernel and its symmetrically normalised heat graph (on all points, or on a
seeded sample of them when the graph is too large for the work budget), the Chebyshev
approximation of ``exp(-tau L)`` applied to landmark columns, the automatic diffusion time (the
knee of the time-entropy curve), farthest-point landmarks, and heat rows turned into
heat-geodesic distances. The method itself is described in
:mod:`embscope.core.projections.heatgeo`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from scipy.special import ive

from embscope.core.graph import KnnGraph

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
# Multiply-adds of the heat pass (order x nnz x landmarks) the automatic choices aim at: about
# 1-3 s on one core.
WORK_BUDGET = 2.0e9
MIN_LANDMARKS = 256
MAX_LANDMARKS = 2000
_ORDER_GUESS = 48  # order assumed when deciding whether to sample (auto tau is chosen later)
_COEF_FLOOR = 1e-30  # smaller Chebyshev terms are skipped: |T_k x| <= |x|, far below 1e-16
_BLOCK = 64  # landmark columns per Chebyshev block


def chebyshev_order(tau: float, phi: float) -> int:
    """The automatic Chebyshev order: ``max(32, ceil(tau phi + 10 sqrt(tau phi)))``."""
    x = float(tau) * float(phi)
    return max(MIN_ORDER, math.ceil(x + 10.0 * math.sqrt(x)))


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
class HeatGraph:
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


def heat_graph(graph: KnnGraph, knn: int, nodes: np.ndarray | None) -> HeatGraph:
    """The heat graph on ``nodes`` (None: all points): ``D^-1/2 W D^-1/2`` and ``phi``."""
    W, lengths = _kernel_matrix(graph, knn, nodes)
    deg = np.asarray(W.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    np.divide(1.0, np.sqrt(deg), out=inv, where=deg > 0)
    A = sp.diags(inv) @ W @ sp.diags(inv)
    A = sp.csr_matrix(A)
    A.sort_indices()
    phi = _lambda_max(A) / 2.0
    return HeatGraph(nodes, A, lengths, phi)


def sample_nodes(graph: KnnGraph, knn: int, seed: int, report: Any = None) -> np.ndarray | None:
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
    hg: HeatGraph,
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


def choose_tau(
    hg: HeatGraph, seed: int, report: Any
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The knee of the time-entropy curve (see the docstring of ``heatgeo.py``)."""
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


def choose_landmarks(hg: HeatGraph, count: int, seed: int, report: Any) -> np.ndarray:
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


def auto_landmarks(hg: HeatGraph, order: int) -> int:
    """The automatic landmark count: what ``WORK_BUDGET`` allows, 256 to 2,000 (at most n)."""
    count = int(WORK_BUDGET / max(1, hg.nnz * order))
    return min(hg.size, max(MIN_LANDMARKS, min(MAX_LANDMARKS, count)))


# -- heat rows to distances ---------------------------------------------------------------------


def landmark_heat(
    hg: HeatGraph, landmarks: np.ndarray, tau: float, order: int, report: Any
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


def heat_diagonal(H: np.ndarray, landmark_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def heat_distances(
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


def extension(
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
