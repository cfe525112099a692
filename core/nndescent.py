"""Approximate k-NN graph by NN-descent (Dong, Moses & Li 2011) from an exact multi-cell
start, for sets where exact search costs too much.

1. **Cells.** Spherical (cosine) or plain (l2) k-means on a sample puts the points into cells of
   about :data:`CELL_SIZE`; rows are reordered by cell so that a cell's points, and most of a
   point's neighbours, sit together in memory.
2. **Start.** Every point is searched exactly (one sgemm per block of rows) against its
   :data:`PROBES` nearest cells (a cell above :data:`CELL_CAP` x its expected size — duplicates,
   a clump — through a sample of that many of its points, so the start stays linear in n): on
   1M real-structured text embeddings that finds about 3/4 of its true 15 neighbours, and —
   what the descent needs — links every cell to its neighbouring cells (with one probe no
   list would leave its cell and the descent would have nothing to join). Rows are copied
   into cell order on every thread at once (numpy's one-thread ``X[order]`` took ~4 s at 1M).
3. **Descent.** Each round, every point's new and old neighbours — forward and reverse, about
   ``max_candidates`` of each, a deterministic random sample — are compared pairwise (the
   "local join"); a pair closer than either end's current k-th neighbour, and not already in
   that end's list, is offered to both. Rounds stop when at most ``delta * n * K`` offers were
   taken (K the list width). Joins run on Python threads over ``nogil`` numba kernels, each
   thread writing offers to its own buffer; the offers are then applied with each thread
   owning a range of rows, so no list is shared.

   The sample keeps a neighbour when a 32-bit hash of (round seed, the pair) falls below
   ``max_candidates`` / (how many the row has) of the hash's range, up to 1.5x
   ``max_candidates``: a pass that counts each row's new and old neighbours (forward and
   reverse), then one that keeps them. A heap of the smallest priorities, as before, cost
   more than a third of the rounds at 1M: its branches mispredict on every offer.

   The join is where the time goes, so it is built for it: a row's candidates are copied into
   one small block, element by element (numba's row-slice copy took 2-3x as long), and their
   dot products taken sixteen at a time (:func:`_tile`: a 4 x 4 tile keeps sixteen running
   sums side by side, where one dot product at a time waits on its own sum — about 2x on the
   join); a close pair whose ends already list each other (two neighbours of a row usually
   are neighbours) is dropped in the join, not written and rejected later: on 300k rows that
   cut the offers from 124M to 5.2M for the same 3.9M taken.

Lists are built a little wider than asked (:data:`BUILD_EXTRA`, :data:`WIDEN`) and cut at the
end: a wider list finds more of the true nearest. The outcome is deterministic for a seed and
the same whatever the thread count as long as no offer buffer fills mid-step (then offers are
applied in another order, which matters only for ties; the buffers hold 400 offers per row,
and with the heap sample of 2026-12-07 the busiest row offered 79). Similarities are dot products of unit rows
(cosine) or ``x.y - |x|^2/2 - |y|^2/2`` (l2; = ``-|x - y|^2 / 2``).

1M x 384 real-structured (bench/real_set.py), 2 cores, k = 30 (the narrowest graph the product
stores at that size), bench/bench_scale.py on 2026-12-08 (a slower machine than the day
before: the old code took 115 s here against 71 s then): 87.0 s at recall 0.985 (500 rows),
where pynndescent took 177.8 s cold (its JIT compile included) and 139.6 s warm at 0.988 in
the same run; 100.7 s in another run that included our own JIT compile (pynndescent 190.3 s
cold, 137.7 s warm). Of ~80 s measured alone: cells 11-13 s, start 26-29 s (its sgemm
~17 s), rounds ~40 s (joins ~30 s, the sample ~7 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.knn_build import kmeans
from embscope.core.numba_rng import splitmix
from embscope.core.threads import available_threads, ranges

__all__ = ["CELL_SIZE", "nn_descent"]

CELL_SIZE = 1000
# Lists are built max(k + BUILD_EXTRA, WIDEN * k) wide: 23 for k = 15, 38 for k = 30 (1M
# real-structured, recall at k: k = 15 from 23: 0.986; k = 30 from 36: 0.985 in 79 s, from
# 45: 0.987 in 95 s).
BUILD_EXTRA = 8
WIDEN = 1.2
MAX_CANDIDATES = 24
# A cell of more than CELL_CAP x CELL_SIZE points is searched through a sample of that many.
CELL_CAP = 4
PROBES = 3
MAX_ROUNDS = 12
DELTA = 0.002
# Rows joined per step (the offers of one step are applied before the next).
STEP = 32_768
# Offer buffer per thread, in offers per row of its share of a step.
OFFERS_PER_ROW = 400


# -- running top-k lists: a min-heap of similarities per row, the k-th best at the root -------


@njit(cache=True, nogil=True, fastmath=True)
def _has(idx: np.ndarray, r: int, j: int) -> bool:
    """Whether ``j`` is in row ``r``'s list (a branch-free scan of the whole row)."""
    hits = 0
    for t in range(idx.shape[1]):
        hits += idx[r, t] == j
    return hits > 0


@njit(cache=True, nogil=True)
def _push(sims: np.ndarray, idx: np.ndarray, flag: np.ndarray, r: int, j: int, s: float) -> int:
    """Offer neighbour ``j`` at similarity ``s`` to row ``r``; 1 if taken (new flag set)."""
    if s <= sims[r, 0]:
        return 0
    for t in range(sims.shape[1]):
        if idx[r, t] == j:
            return 0
    _replace_root(sims, idx, flag, r, j, s)
    return 1


@njit(cache=True, nogil=True)
def _replace_root(
    sims: np.ndarray, idx: np.ndarray, flag: np.ndarray, r: int, j: int, s: float
) -> None:  # fmt: skip
    """Put ``j`` at similarity ``s`` (above the root's) in row ``r``'s list in place of its
    root, flagged new, and sift it down."""
    k = sims.shape[1]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= k:
            break
        c = left
        right = left + 1
        if right < k and sims[r, right] < sims[r, left]:
            c = right
        if sims[r, c] >= s:
            break
        sims[r, i] = sims[r, c]
        idx[r, i] = idx[r, c]
        flag[r, i] = flag[r, c]
        i = c
    sims[r, i] = s
    idx[r, i] = j
    flag[r, i] = 1


@njit(cache=True, nogil=True, fastmath=True)
def _dot(X: np.ndarray, a: int, b: int) -> np.float32:
    s = np.float32(0.0)
    for t in range(X.shape[1]):
        s += X[a, t] * X[b, t]
    return s


# -- start: exact search inside each cell -----------------------------------------------------


@njit(cache=True, nogil=True)
def _take_block(
    S: np.ndarray, rows: np.ndarray, cols: np.ndarray, h: np.ndarray,
    sims: np.ndarray, idx: np.ndarray, flag: np.ndarray,
) -> None:  # fmt: skip
    """Offer every entry of the block ``S`` (rows ``rows``, columns ``cols``) to its row.

    No row's list can hold a column yet: the start searches each row against cells it has
    not searched, and a point is in one cell (so no scan for duplicates)."""
    for i in range(S.shape[0]):
        r = rows[i]
        hr = h[r]
        bar = sims[r, 0]
        for j in range(S.shape[1]):
            c = cols[j]
            s = S[i, j] - hr - h[c]
            if s > bar and c != r:
                _replace_root(sims, idx, flag, r, c, s)
                bar = sims[r, 0]


@njit(cache=True, nogil=True)
def _fill_random(
    lo: int, hi: int, n: int, seed: np.uint64, h: np.ndarray, X: np.ndarray,
    sims: np.ndarray, idx: np.ndarray, flag: np.ndarray,
) -> None:  # fmt: skip
    """Rows whose list is not full (a cell smaller than k + 1) get random points."""
    k = sims.shape[1]
    for r in range(lo, hi):
        if idx[r, 0] >= 0:
            continue
        state = seed ^ np.uint64(r) * np.uint64(0x9E3779B97F4A7C15)
        tries = 0
        while idx[r, 0] < 0 and tries < 64 * k:
            state, z = splitmix(state)
            j = int(z % np.uint64(n))
            if j != r:
                _push(sims, idx, flag, r, j, _dot(X, r, j) - h[r] - h[j])
            tries += 1
        j = 0
        while idx[r, 0] < 0 and j < n:  # a tiny set: take every point in turn
            if j != r:
                _push(sims, idx, flag, r, j, _dot(X, r, j) - h[r] - h[j])
            j += 1


# -- one round ----------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _priorities(
    lo: int, hi: int, seed: np.uint64, idx: np.ndarray, flag: np.ndarray, pri: np.ndarray,
    deg_new: np.ndarray, deg_old: np.ndarray,
) -> None:  # fmt: skip
    """Rows ``lo..hi``: each edge's priority, a 32-bit hash of (seed, its two ends), so a pair
    listed by both its ends has one priority and the sample does not depend on the thread
    count; and how many new and old neighbours each row lists."""
    for r in range(lo, hi):
        dn = 0
        do = 0
        for t in range(idx.shape[1]):
            u = idx[r, t]
            if u < 0:
                pri[r, t] = 0xFFFFFFFF
                continue
            a = min(u, r)
            b = max(u, r)
            _, z = splitmix(seed ^ (np.uint64(a) << np.uint64(32)) ^ np.uint64(b))
            pri[r, t] = np.uint32(z >> np.uint64(32))
            if flag[r, t]:
                dn += 1
            else:
                do += 1
        deg_new[r] = dn
        deg_old[r] = do


@njit(cache=True, nogil=True)
def _reverse_degrees(
    lo: int, hi: int, idx: np.ndarray, flag: np.ndarray, deg_new: np.ndarray, deg_old: np.ndarray
) -> None:  # fmt: skip
    """Add to rows ``lo..hi`` how many rows list them, as new and as old neighbours (every
    thread scans every edge and counts what lands in its rows)."""
    n, k = idx.shape
    for v in range(n):
        for t in range(k):
            u = idx[v, t]
            if lo <= u < hi:
                if flag[v, t]:
                    deg_new[u] += 1
                else:
                    deg_old[u] += 1


@njit(cache=True, nogil=True)
def _bar(degree: np.uint64, m: int) -> np.uint64:
    """The priority below which an edge is sampled: ``m`` of ``degree`` expected."""
    if degree <= np.uint64(m):
        return np.uint64(1) << np.uint64(32)
    return (np.uint64(m) << np.uint64(32)) // degree


@njit(cache=True, nogil=True)
def _forward_sample(
    lo: int, hi: int, m: int, idx: np.ndarray, flag: np.ndarray, pri: np.ndarray,
    deg_new: np.ndarray, deg_old: np.ndarray, new: np.ndarray, old: np.ndarray,
    n_new: np.ndarray, n_old: np.ndarray,
) -> None:  # fmt: skip
    """Rows ``lo..hi``: the sampling bars (``deg_new``/``deg_old`` become them) and the
    forward half of the sample: each listed neighbour whose priority is below its bar."""
    cap = new.shape[1]
    for r in range(lo, hi):
        bn = _bar(deg_new[r], m)
        bo = _bar(deg_old[r], m)
        deg_new[r] = bn
        deg_old[r] = bo
        for t in range(cap):
            new[r, t] = -1
            old[r, t] = -1
        cn = 0
        co = 0
        for t in range(idx.shape[1]):
            u = idx[r, t]
            if u < 0:
                continue
            if flag[r, t]:
                if pri[r, t] < bn and cn < cap:
                    new[r, cn] = u
                    cn += 1
            elif pri[r, t] < bo and co < cap:
                old[r, co] = u
                co += 1
        n_new[r] = cn
        n_old[r] = co


@njit(cache=True, nogil=True)
def _reverse_sample(
    lo: int, hi: int, idx: np.ndarray, flag: np.ndarray, pri: np.ndarray,
    bar_new: np.ndarray, bar_old: np.ndarray, new: np.ndarray, old: np.ndarray,
    n_new: np.ndarray, n_old: np.ndarray,
) -> None:  # fmt: skip
    """The reverse half of rows ``lo..hi``'s sample, after :func:`_forward_sample` ran on
    every row: a row ``v`` listing ``u`` (in ``lo..hi``) joins ``u``'s sample when the edge's
    priority is below ``u``'s bar and ``u`` does not already have it."""
    n, k = idx.shape
    cap = new.shape[1]
    for v in range(n):
        for t in range(k):
            u = idx[v, t]
            if u < lo or u >= hi:
                continue
            p = pri[v, t]
            if flag[v, t]:
                c = n_new[u]
                if p < bar_new[u] and c < cap and not _has(new, u, v):
                    new[u, c] = v
                    n_new[u] = c + 1
            else:
                c = n_old[u]
                if p < bar_old[u] and c < cap and not _has(old, u, v):
                    old[u, c] = v
                    n_old[u] = c + 1


@njit(cache=True, nogil=True)
def _mark_old(
    lo: int, hi: int, idx: np.ndarray, flag: np.ndarray, pri: np.ndarray, bar_new: np.ndarray,
    new: np.ndarray, n_new: np.ndarray,
) -> None:  # fmt: skip
    """A new neighbour sampled for this round's join is old from now on: its priority is below
    its row's bar, and (when the sample filled up) it is in the sample."""
    cap = new.shape[1]
    for r in range(lo, hi):
        full = n_new[r] >= cap
        bar = bar_new[r]
        for t in range(idx.shape[1]):
            if flag[r, t] and pri[r, t] < bar and (not full or _has(new, r, idx[r, t])):
                flag[r, t] = 0


@njit(cache=True, nogil=True, fastmath=True)
def _tile(G: np.ndarray, i0: int, j0: int, P: np.ndarray) -> None:
    """``P[i0:i0+4, j0:j0+4] = G[i0:i0+4] @ G[j0:j0+4].T``: sixteen dot products at once, so
    every load feeds four multiply-adds and sixteen sums run side by side (one dot product at a
    time waits on its own running sum: ~3-4x slower on the local join)."""
    s00 = s01 = s02 = s03 = np.float32(0.0)
    s10 = s11 = s12 = s13 = np.float32(0.0)
    s20 = s21 = s22 = s23 = np.float32(0.0)
    s30 = s31 = s32 = s33 = np.float32(0.0)
    for t in range(G.shape[1]):
        x0 = G[i0, t]
        x1 = G[i0 + 1, t]
        x2 = G[i0 + 2, t]
        x3 = G[i0 + 3, t]
        y0 = G[j0, t]
        y1 = G[j0 + 1, t]
        y2 = G[j0 + 2, t]
        y3 = G[j0 + 3, t]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    P[i0, j0] = s00
    P[i0, j0 + 1] = s01
    P[i0, j0 + 2] = s02
    P[i0, j0 + 3] = s03
    P[i0 + 1, j0] = s10
    P[i0 + 1, j0 + 1] = s11
    P[i0 + 1, j0 + 2] = s12
    P[i0 + 1, j0 + 3] = s13
    P[i0 + 2, j0] = s20
    P[i0 + 2, j0 + 1] = s21
    P[i0 + 2, j0 + 2] = s22
    P[i0 + 2, j0 + 3] = s23
    P[i0 + 3, j0] = s30
    P[i0 + 3, j0 + 1] = s31
    P[i0 + 3, j0 + 2] = s32
    P[i0 + 3, j0 + 3] = s33


@njit(cache=True, nogil=True)
def _gather(X: np.ndarray, ids: np.ndarray, lo: int, hi: int, top: int, G: np.ndarray) -> None:
    """Rows ``ids[lo:hi]`` of ``X`` into ``G[lo:hi]``, zero rows up to ``top``.

    Element by element: numba's row-slice copy (``G[r, :] = X[i, :]``) took 2-3x as long."""
    d = X.shape[1]
    for r in range(lo, hi):
        a = ids[r]
        for t in range(d):
            G[r, t] = X[a, t]
    for r in range(hi, top):
        for t in range(d):
            G[r, t] = 0.0


@njit(cache=True, nogil=True, fastmath=True)
def _join(
    lo: int, hi: int, X: np.ndarray, h: np.ndarray, sims: np.ndarray,
    idx: np.ndarray, new: np.ndarray, old: np.ndarray,
    out_a: np.ndarray, out_b: np.ndarray, out_s: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Local joins of rows ``lo..`` until the offer buffer could overflow; returns (the row
    reached, offers written). Only reads the lists.

    A row's new candidates (padded to a multiple of four) and old ones (likewise) are copied
    side by side into one small block ``G``; the dot products of every new candidate with the
    later new ones and with the old ones are taken four by four (:func:`_tile`), and a pair
    closer than either end's current k-th neighbour is written as an offer."""
    cap = out_a.shape[0]
    m_new = new.shape[1]
    m_old = old.shape[1]
    worst = m_new * (m_new - 1) // 2 + m_new * m_old
    pad_new = -(-m_new // 4) * 4
    width = pad_new + -(-m_old // 4) * 4
    ids = np.empty(width, np.int64)
    G = np.empty((width, X.shape[1]), np.float32)
    P = np.empty((pad_new, width), np.float32)
    hh = np.empty(width, np.float32)
    bar = np.empty(width, np.float32)
    w = 0
    v = lo
    while v < hi and w + worst <= cap:
        mn = 0
        for i in range(m_new):
            if new[v, i] >= 0:
                ids[mn] = new[v, i]
                mn += 1
        if mn == 0:
            v += 1
            continue
        pn = -(-mn // 4) * 4
        mo = 0
        for j in range(m_old):
            if old[v, j] >= 0:
                ids[pn + mo] = old[v, j]
                mo += 1
        top = pn + -(-mo // 4) * 4
        _gather(X, ids, 0, mn, pn, G)
        _gather(X, ids, pn, pn + mo, top, G)
        for i0 in range(0, pn, 4):
            for j0 in range(i0, top, 4):
                _tile(G, i0, j0, P)
        for p in range(mn):
            hh[p] = h[ids[p]]
            bar[p] = sims[ids[p], 0]
        for p in range(pn, pn + mo):
            hh[p] = h[ids[p]]
            bar[p] = sims[ids[p], 0]
        # The offer is written out in both loops: as a helper function (even inlined) it made
        # the rounds 1.4x slower at 300k.
        for i in range(mn):
            a = ids[i]
            bar_a = bar[i]
            ha = hh[i]
            for j in range(i + 1, mn):
                b = ids[j]
                s = P[i, j] - ha - hh[j]
                if (s > bar_a and not _has(idx, a, b)) or (s > bar[j] and not _has(idx, b, a)):
                    out_a[w] = a
                    out_b[w] = b
                    out_s[w] = s
                    w += 1
            for j in range(pn, pn + mo):
                b = ids[j]
                if b == a:
                    continue
                s = P[i, j] - ha - hh[j]
                if (s > bar_a and not _has(idx, a, b)) or (s > bar[j] and not _has(idx, b, a)):
                    out_a[w] = a
                    out_b[w] = b
                    out_s[w] = s
                    w += 1
        v += 1
    return v, w


@njit(cache=True, nogil=True)
def _apply(
    lo: int, hi: int, out_a: np.ndarray, out_b: np.ndarray, out_s: np.ndarray, w: int,
    sims: np.ndarray, idx: np.ndarray, flag: np.ndarray,
) -> int:  # fmt: skip
    """Apply the offers that land in rows ``lo..hi``; returns how many were taken."""
    taken = 0
    for t in range(w):
        a = out_a[t]
        b = out_b[t]
        s = out_s[t]
        if lo <= a < hi:
            taken += _push(sims, idx, flag, a, b, s)
        if lo <= b < hi:
            taken += _push(sims, idx, flag, b, a, s)
    return taken


@njit(cache=True, nogil=True)
def _reorder(
    lo: int, hi: int, X: np.ndarray, order: np.ndarray, mu: np.ndarray, scale: np.ndarray,
    out: np.ndarray,
) -> None:  # fmt: skip
    """``out[r] = (X[order[r]] - mu) * scale[order[r]]`` for rows ``lo..hi`` (numpy's
    ``X[order]`` then ``*=`` took ~4 s at 1M x 384 on one thread)."""
    for r in range(lo, hi):
        src = order[r]
        s = scale[src]
        for t in range(X.shape[1]):
            out[r, t] = (X[src, t] - mu[t]) * s


@njit(cache=True, nogil=True)
def _top_cells(score: np.ndarray, out: np.ndarray) -> None:
    """The ``out.shape[1]`` highest-scoring columns of every row, best first."""
    p = out.shape[1]
    best = np.empty(p, np.float32)
    for i in range(score.shape[0]):
        for t in range(p):
            best[t] = -np.inf
            out[i, t] = 0
        for c in range(score.shape[1]):
            v = score[i, c]
            if v <= best[p - 1]:
                continue
            t = p - 1
            while t > 0 and best[t - 1] < v:
                best[t] = best[t - 1]
                out[i, t] = out[i, t - 1]
                t -= 1
            best[t] = v
            out[i, t] = c


@njit(cache=True, nogil=True)
def _sorted_rows(
    sims: np.ndarray, idx: np.ndarray, order: np.ndarray, out_idx: np.ndarray,
    out_sim: np.ndarray,
) -> None:  # fmt: skip
    """Row ``order[r]`` of the output: row ``r``'s list by (similarity desc, index), the first
    ``k``, its neighbours renamed through ``order``."""
    n, K = sims.shape
    k = out_idx.shape[1]
    s = np.empty(K, np.float32)
    j = np.empty(K, np.int64)
    for r in range(n):
        m = 0
        for t in range(K):
            if idx[r, t] < 0:
                continue
            v = sims[r, t]
            c = order[idx[r, t]]
            p = m
            while p > 0 and (s[p - 1] < v or (s[p - 1] == v and j[p - 1] > c)):
                s[p] = s[p - 1]
                j[p] = j[p - 1]
                p -= 1
            s[p] = v
            j[p] = c
            m += 1
        dst = order[r]
        for t in range(k):
            out_idx[dst, t] = j[t]
            out_sim[dst, t] = s[t]


# -- driver -------------------------------------------------------------------------------------


def _kmeans_cells(
    X: np.ndarray,
    scale: np.ndarray | None,
    cells: int,
    probes: int,
    rng: np.random.Generator,
    pool_rows: int = 40,
) -> np.ndarray:
    """The ``probes`` nearest cells of every row, nearest first, (n, probes): Lloyd k-means
    on a sample of ``pool_rows`` x cells rows (8 rounds), then every row against the centres.
    ``scale`` (cosine): each row's 1 / norm, applied a chunk at a time (spherical k-means on
    the unit rows without a normalised copy of ``X``); None: plain k-means (l2)."""
    n = len(X)
    spherical = scale is not None
    pick = np.sort(rng.choice(n, min(n, pool_rows * cells), replace=False))
    sample = np.asarray(X[pick], np.float32)
    if scale is not None:
        sample *= scale[pick, None]
    cen = kmeans(sample, cells, 8, rng, spherical)
    half = np.zeros(cells, np.float32) if spherical else 0.5 * np.einsum("ij,ij->i", cen, cen)
    p = min(probes, cells)
    lab = np.empty((n, p), np.int64)
    # A chunk's nearest cells are picked (one thread, no GIL) while the next chunk's scores
    # are computed.
    with ThreadPoolExecutor(1) as picker:
        pending = None
        for s in range(0, n, 65_536):
            chunk = np.asarray(X[s : s + 65_536], np.float32)
            if scale is not None:
                chunk = chunk * scale[s : s + 65_536, None]
            score = chunk @ cen.T
            if not spherical:
                score -= half[None, :]
            if pending is not None:
                pending.result()
            pending = picker.submit(_top_cells, score, lab[s : s + 65_536])
        if pending is not None:
            pending.result()
    return lab


def _start_groups(
    labs: np.ndarray, order: np.ndarray, bounds: np.ndarray, cap: int, seed: int
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The start's work, one list per probe level: (rows, columns) blocks, the rows (at most
    1,024) in reordered numbering searching the columns of one cell. A cell of more than
    ``cap`` points (duplicates, a clump, zero vectors) is searched through a seeded sample of
    ``cap`` of them, so the start stays linear in n; the descent finds the rest."""
    cells = len(bounds) - 1
    rng = np.random.default_rng(seed)
    columns = []
    for c in range(cells):
        c0, c1 = int(bounds[c]), int(bounds[c + 1])
        if c1 - c0 > cap:
            columns.append(np.sort(rng.choice(np.arange(c0, c1), cap, replace=False)))
        else:
            columns.append(np.arange(c0, c1))
    levels = []
    for j in range(labs.shape[1]):
        cell_of = labs[order, j]
        by = np.argsort(cell_of, kind="stable")
        cuts = np.searchsorted(cell_of[by], np.arange(cells + 1))
        groups = []
        for c in range(cells):
            if len(columns[c]) == 0:
                continue
            rows = by[cuts[c] : cuts[c + 1]]
            for r0 in range(0, len(rows), 1024):
                groups.append((rows[r0 : r0 + 1024], columns[c]))
        levels.append(groups)
    return levels


def nn_descent(
    X: np.ndarray,
    k: int,
    metric: str,
    *,
    seed: int = 0,
    probes: int = PROBES,
    cell_size: int | None = None,
    build_k: int | None = None,
    max_candidates: int = MAX_CANDIDATES,
    delta: float = DELTA,
    max_rounds: int = MAX_ROUNDS,
    progress: Callable[[float, str], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """k nearest neighbours of every row of ``X`` (self excluded), approximately.

    Returns ``(indices, similarities, info)``: int64 (n, k) sorted by decreasing similarity,
    float32 similarities (dot of unit rows for cosine, ``-|x - y|^2 / 2`` for l2) and a dict
    with the cells, the rounds run and the offers taken in each.
    """
    if metric not in ("cosine", "l2"):
        raise ValueError(f"metric must be cosine or l2, got {metric!r}")
    if probes < 2:
        # With one probe every list stays inside its cell and the descent has nothing to
        # join across cells: it would stop where it started.
        raise ValueError(f"probes must be at least 2, got {probes}")
    n, d = X.shape
    if metric == "l2":
        # x.y - |x|^2/2 - |y|^2/2 in float32: a squared norm past ~3e38 is inf, and the lists
        # would fill with ties and NaN (cosine works on unit rows and has no such limit).
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
        if not (sq < 1e37).all():
            raise InvalidInputError(
                "a vector is too long for an l2 neighbour graph in float32 (a squared length "
                f"of {float(np.nanmax(sq)):.3g}, or not finite): rescale the vectors"
            )
        del sq
    k = int(k)
    K = int(build_k or max(k + BUILD_EXTRA, int(np.ceil(WIDEN * k))))
    if K < k:
        raise ValueError(f"build_k = {K} is narrower than k = {k}")
    K = min(K, n - 1)
    threads = available_threads()
    rng = np.random.default_rng(seed)
    seeds = np.random.SeedSequence(seed).generate_state(max_rounds + 2, dtype=np.uint64)

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(fraction, message):
            raise OperationCancelled("building the neighbour graph was cancelled")

    cell_size = int(cell_size or CELL_SIZE)
    cells = max(1, n // cell_size)
    info: dict[str, Any] = {
        "cells": cells,
        "build_k": K,
        "max_candidates": max_candidates,
        "taken": [],
    }
    spherical = metric == "cosine"
    report(0.0, f"grouping {n:,} items into {cells:,} groups of similar items")
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        info.setdefault("seconds", {})[name] = round(now - clock[0], 2)
        clock[0] = now

    # One copy of X of our own, in cell order: unit rows for cosine (zero rows stay zero),
    # centred rows for l2 (no distance changes, and x.y - |x|^2/2 - |y|^2/2 keeps its digits).
    scale = None
    if spherical:
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
        scale = (1.0 / np.maximum(norms, 1e-30)).astype(np.float32)
        del norms
    with threadpool_limits(limits=threads, user_api="blas"):
        labs = _kmeans_cells(X, scale, cells, probes, rng)
    order = np.argsort(labs[:, 0], kind="stable")
    bounds = np.searchsorted(labs[order, 0], np.arange(cells + 1))
    X32 = np.asarray(X, np.float32)
    Xp = np.empty_like(X32, order="C")
    if scale is not None:
        mu = np.zeros(d, np.float32)
    else:
        mu = X32.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = np.ones(n, np.float32)
    with ThreadPoolExecutor(threads) as copiers:
        for f in [copiers.submit(_reorder, lo, hi, X32, order, mu, scale, Xp)
                  for lo, hi in ranges(n, threads)]:  # fmt: skip
            f.result()
    del X32
    if spherical:
        h = np.zeros(n, np.float32)
    else:
        h = (0.5 * np.einsum("ij,ij->i", Xp, Xp, dtype=np.float64)).astype(np.float32)
    levels = _start_groups(labs, order, bounds, CELL_CAP * cell_size, seed)
    del labs
    lap("cells")
    report(0.02, f"grouped the items into {cells:,} groups")

    sims = np.full((n, K), -np.inf, np.float32)
    idx = np.full((n, K), -1, np.int32)
    flag = np.zeros((n, K), np.uint8)

    def start(part: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for rows, cols in part:
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            block = Xp[c0:c1] if c1 - c0 == len(cols) else Xp[cols]
            _take_block(Xp[rows] @ block.T, rows, cols, h, sims, idx, flag)

    spans = ranges(n, threads)

    def each_span(fn: Callable[..., Any], *args: Any) -> list[Any]:
        return [f.result() for f in [pool.submit(fn, lo, hi, *args) for lo, hi in spans]]

    # BLAS runs one thread per call meanwhile, set here in the calling thread (threadpoolctl's
    # limits are process-wide: entered in the workers they would leave it at one thread).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        # Start: exact search of every row against its ``probes`` nearest cells, one probe
        # level at a time (within a level a row is in one block only: no row is shared).
        total = sum(len(g) for g in levels)
        done = 0
        for level, groups in enumerate(levels):
            for b0 in range(0, len(groups), 64 * threads):
                batch = groups[b0 : b0 + 64 * threads]
                for f in [pool.submit(start, batch[i::threads]) for i in range(threads)]:
                    f.result()
                done += len(batch)
                report(0.02 + 0.13 * done / total, "a first guess at each item's neighbours: "
                       f"pass {level + 1} of {len(levels)}")  # fmt: skip
        del levels
        each_span(_fill_random, n, seeds[0], h, Xp, sims, idx, flag)
        lap("start")

        M = int(max_candidates)
        cap = M + M // 2  # a sample holds M on average, at most this many
        new = np.empty((n, cap), np.int32)
        old = np.empty((n, cap), np.int32)
        n_new = np.empty(n, np.int32)
        n_old = np.empty(n, np.int32)
        bar_new = np.empty(n, np.uint64)
        bar_old = np.empty(n, np.uint64)
        pri = np.empty((n, K), np.uint32)
        share = -(-STEP // threads)
        size = share * OFFERS_PER_ROW + cap * cap * 2
        bufs = [
            (np.empty(size, np.int32), np.empty(size, np.int32), np.empty(size, np.float32))
            for _ in range(threads)
        ]
        for rnd in range(max_rounds):
            each_span(_priorities, seeds[rnd + 1], idx, flag, pri, bar_new, bar_old)
            each_span(_reverse_degrees, idx, flag, bar_new, bar_old)
            each_span(_forward_sample, M, idx, flag, pri, bar_new, bar_old, new, old, n_new, n_old)
            each_span(_reverse_sample, idx, flag, pri, bar_new, bar_old, new, old, n_new, n_old)
            each_span(_mark_old, idx, flag, pri, bar_new, new, n_new)
            taken = 0
            for s0 in range(0, n, STEP):
                s1 = min(n, s0 + STEP)
                parts = ranges(s1 - s0, threads)  # empty ranges dropped: maybe < threads
                pos = [s0 + lo for lo, _ in parts]
                ends = [s0 + hi for _, hi in parts]
                mine = bufs[: len(parts)]
                while any(p < e for p, e in zip(pos, ends, strict=True)):
                    futs = [
                        pool.submit(_join, p, e, Xp, h, sims, idx, new, old, *buf)
                        for p, e, buf in zip(pos, ends, mine, strict=True)
                    ]
                    joined = [f.result() for f in futs]
                    pos = [v for v, _ in joined]
                    for (_, w), buf in zip(joined, mine, strict=True):
                        if w:
                            taken += sum(each_span(_apply, *buf, w, sims, idx, flag))
                report(0.15 + 0.8 * (1.0 - 0.5 ** (rnd + s1 / n)), "improving each item's "
                       f"neighbours (round {rnd + 1}): {s1:,} of {n:,} items")  # fmt: skip
            info["taken"].append(int(taken))
            lap(f"round {rnd + 1}")
            if taken <= delta * n * K:
                break
    info["rounds"] = len(info["taken"])

    # Rows sorted by (similarity desc, index), cut to k, in the caller's row numbers.
    out_idx = np.empty((n, k), np.int64)
    out_sim = np.empty((n, k), np.float32)
    _sorted_rows(sims, idx, order, out_idx, out_sim)
    return out_idx, out_sim, info
