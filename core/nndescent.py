"""Approximate k-NN graph by NN-descent (Dong, Moses & Li 2011) from an exact multi-cell
start, for sets where exact search costs too much.

1. **Cells.** Spherical (cosine) or plain (l2) k-means on a sample puts the points into cells of
   about :data:`CELL_SIZE`; rows are reordered by cell so that a cell's points, and most of a
   point's neighbours, sit together in memory.
2. **Start.** Every point is searched exactly (one sgemm per block of rows) against its
   :data:`PROBES` nearest cells (a cell above :data:`CELL_CAP` x its expected size — duplicates,
   a clump — through a sample of that many of its points, so the start stays linear in n): on 1M real-structured text embeddings that finds about 3/4
   of its true 15 neighbours, and — what the descent needs — links every cell to its
   neighbouring cells (with one probe no list would leave its cell and the descent would
   have nothing to join).
3. **Descent.** Each round, every point's new and old neighbours — forward and reverse, at most
   ``max_candidates`` of each, a deterministic random sample — are compared pairwise (the
   "local join"); a pair closer than either end's current k-th neighbour, and not already in
   that end's list, is offered to both. Rounds stop when at most ``delta * n * K`` offers were
   taken (K the list width). Joins run on Python threads over ``nogil`` numba kernels, each
   thread writing offers to its own buffer; the offers are then applied with each thread
   owning a range of rows, so no list is shared.

   The join is where the time goes, so it is built for it: a row's candidates are copied into
   one small block and their dot products taken sixteen at a time (:func:`_tile`: a 4 x 4 tile
   keeps sixteen running sums side by side, where one dot product at a time waits on its own
   sum — about 2x on the join), and a close pair whose ends already list each other (two
   neighbours of a row usually are neighbours) is dropped in the join, not written and
   rejected later: on 300k rows that cut the offers from 124M to 5.2M for the same 3.9M taken.

Lists are built a little wider than asked (:data:`BUILD_EXTRA`, :data:`WIDEN`) and cut at the
end: a wider list finds more of the true nearest. The outcome is deterministic for a seed and
the same whatever the thread count as long as no offer buffer fills mid-step (then offers are
applied in another order, which matters only for ties; at the default sizes the busiest row
offered 79 where the buffers hold 400 per row). Similarities are dot products of unit rows (cosine) or
``x.y - |x|^2/2 - |y|^2/2`` (l2; = ``-|x - y|^2 / 2``).

1M x 384 real-structured (bench/real_set.py), 2 cores, k = 30 (the narrowest graph the product
stores at that size): 77 s at recall 0.986, where pynndescent took 119 s cold and 90 s warm at
the same recall in the same run (bench/bench_scale.py, 2026-12-07; 107 s before the tiled join).
Of ~71 s measured alone: cells 9 s, start 16 s, rounds 46 s (their joins 31 s, the candidate
samples 12 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from embscope.core.errors import OperationCancelled
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
MAX_CANDIDATES = 20
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
    k = sims.shape[1]
    for t in range(k):
        if idx[r, t] == j:
            return 0
    # Replace the root and sift it down.
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
    return 1


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
    """Offer every entry of the block ``S`` (rows ``rows``, columns ``cols``) to its row."""
    for i in range(S.shape[0]):
        r = rows[i]
        hr = h[r]
        bar = sims[r, 0]
        for j in range(S.shape[1]):
            c = cols[j]
            s = S[i, j] - hr - h[c]
            if s > bar and c != r:
                _push(sims, idx, flag, r, c, s)
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
def _cand_push(cand: np.ndarray, pri: np.ndarray, r: int, j: int, p: np.uint64) -> None:
    """Keep the ``m`` candidates of row ``r`` with the smallest priorities (a max-heap)."""
    m = cand.shape[1]
    if p >= pri[r, 0] or _has(cand, r, j):
        return
    i = 0
    while True:
        left = 2 * i + 1
        if left >= m:
            break
        c = left
        right = left + 1
        if right < m and pri[r, right] > pri[r, left]:
            c = right
        if pri[r, c] <= p:
            break
        pri[r, i] = pri[r, c]
        cand[r, i] = cand[r, c]
        i = c
    pri[r, i] = p
    cand[r, i] = j


@njit(cache=True, nogil=True)
def _candidates(
    lo: int, hi: int, seed: np.uint64, idx: np.ndarray, flag: np.ndarray,
    new: np.ndarray, new_pri: np.ndarray, old: np.ndarray, old_pri: np.ndarray,
) -> None:  # fmt: skip
    """Sample the new and old, forward and reverse neighbours of rows ``lo..hi``.

    Every thread scans every edge and keeps what lands in its rows; an edge's priority is a
    hash of (seed, its two ends), so the sample does not depend on the thread count."""
    n, k = idx.shape
    top = np.uint64(0xFFFFFFFFFFFFFFFF)
    for r in range(lo, hi):
        for t in range(new.shape[1]):
            new[r, t] = -1
            new_pri[r, t] = top
        for t in range(old.shape[1]):
            old[r, t] = -1
            old_pri[r, t] = top
    for v in range(n):
        for t in range(k):
            u = idx[v, t]
            if u < 0:
                continue
            a = min(u, v)
            b = max(u, v)
            _, p = splitmix(seed ^ (np.uint64(a) << np.uint64(32)) ^ np.uint64(b))
            if flag[v, t]:
                if lo <= v < hi:
                    _cand_push(new, new_pri, v, u, p)
                if lo <= u < hi:
                    _cand_push(new, new_pri, u, v, p)
            else:
                if lo <= v < hi:
                    _cand_push(old, old_pri, v, u, p)
                if lo <= u < hi:
                    _cand_push(old, old_pri, u, v, p)


@njit(cache=True, nogil=True)
def _mark_old(
    lo: int, hi: int, seed: np.uint64, idx: np.ndarray, flag: np.ndarray, new_pri: np.ndarray
) -> None:  # fmt: skip
    """A new neighbour that was sampled for this round's join is old from now on: it was
    sampled exactly when its edge's priority is at most the largest one row's sample kept
    (:func:`_candidates` keeps the smallest; a sample not yet full keeps every edge)."""
    for r in range(lo, hi):
        bar = new_pri[r, 0]
        for t in range(idx.shape[1]):
            if not flag[r, t]:
                continue
            j = idx[r, t]
            a = min(r, j)
            b = max(r, j)
            _, p = splitmix(seed ^ (np.uint64(a) << np.uint64(32)) ^ np.uint64(b))
            if p <= bar:
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
    """Rows ``ids[lo:hi]`` of ``X`` into ``G[lo:hi]``, zero rows up to ``top``."""
    for r in range(lo, hi):
        G[r, :] = X[ids[r], :]
    for r in range(hi, top):
        G[r, :] = 0.0


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
    Xp = np.asarray(X, np.float32)[order]
    if scale is not None:
        Xp *= scale[order, None]
        h = np.zeros(n, np.float32)
    else:
        Xp -= Xp.mean(axis=0, dtype=np.float64).astype(np.float32)
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
        new = np.empty((n, M), np.int32)
        new_pri = np.empty((n, M), np.uint64)
        old = np.empty((n, M), np.int32)
        old_pri = np.empty((n, M), np.uint64)
        share = -(-STEP // threads)
        cap = share * OFFERS_PER_ROW + M * M * 2
        bufs = [
            (np.empty(cap, np.int32), np.empty(cap, np.int32), np.empty(cap, np.float32))
            for _ in range(threads)
        ]
        for rnd in range(max_rounds):
            each_span(_candidates, seeds[rnd + 1], idx, flag, new, new_pri, old, old_pri)
            each_span(_mark_old, seeds[rnd + 1], idx, flag, new_pri)
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
