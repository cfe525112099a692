"""Approximate k-NN graph by NN-descent (Dong, Moses & Li 2011) from an exact multi-cell
start, for sets where exact search costs too much.

1. **Cells.** Spherical (cosine) or plain (l2) k-means on a sample puts the points into cells of
   about :data:`CELL_SIZE`; rows are reordered by cell so that a cell's points, and most of a
   point's neighbours, sit together in memory.
2. **Start.** Every point is searched exactly (one sgemm per block of rows) against its
   :data:`PROBES` nearest cells: on 1M real-structured text embeddings that finds about 3/4
   of its true 15 neighbours, and — what the descent needs — links every cell to its
   neighbouring cells (with one probe no list would leave its cell and the descent would
   have nothing to join).
3. **Descent.** Each round, every point's new and old neighbours — forward and reverse, at most
   ``max_candidates`` of each, a deterministic random sample — are compared pairwise (the
   "local join"); a pair closer than either end's current k-th neighbour is offered to both.
   Rounds stop when fewer than ``delta * n * k`` offers were taken. Joins run on Python
   threads over ``nogil`` numba kernels, each thread writing offers to its own buffer; the
   offers are then applied with each thread owning a range of rows, so no list is shared.

Lists are built a little wider than asked (:data:`BUILD_EXTRA`, :data:`WIDEN`) and cut at the
end: a wider list finds more of the true nearest. The outcome is deterministic for a seed,
whatever the thread count. Similarities are dot products of unit rows (cosine) or
``x.y - |x|^2/2 - |y|^2/2`` (l2; = ``-|x - y|^2 / 2``).

1M x 384 real-structured (bench/real_set.py), k = 15, 2 cores: ~50 s at recall 0.986, where
pynndescent as umap-learn calls it takes ~137 s (bench/bench_graph.py has the figures of a
run).
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
# Lists are built max(k + BUILD_EXTRA, WIDEN * k) wide (1M real-structured, recall at k:
# k = 15 from 23: 0.986; k = 30 from 36: 0.985 in 79 s, from 45: 0.987 in 95 s).
BUILD_EXTRA = 8
WIDEN = 1.2
MAX_CANDIDATES = 20
PROBES = 3
MAX_ROUNDS = 12
DELTA = 0.002
# Rows joined per step (the offers of one step are applied before the next).
STEP = 32_768
# Offer buffer per thread, in offers per row of its share of a step.
OFFERS_PER_ROW = 400


# -- running top-k lists: a min-heap of similarities per row, the k-th best at the root -------


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
    S: np.ndarray, rows: np.ndarray, c0: int, h: np.ndarray,
    sims: np.ndarray, idx: np.ndarray, flag: np.ndarray,
) -> None:  # fmt: skip
    """Offer every entry of the block ``S`` (rows ``rows``, columns ``c0..``) to its row."""
    for i in range(S.shape[0]):
        r = rows[i]
        for j in range(S.shape[1]):
            c = c0 + j
            if c != r:
                _push(sims, idx, flag, r, c, S[i, j] - h[r] - h[c])


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
    if p >= pri[r, 0]:
        return
    for t in range(m):
        if cand[r, t] == j:
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
def _mark_old(lo: int, hi: int, idx: np.ndarray, flag: np.ndarray, new: np.ndarray) -> None:
    """A new neighbour that was sampled for this round's join is old from now on."""
    m = new.shape[1]
    for r in range(lo, hi):
        for t in range(idx.shape[1]):
            if not flag[r, t]:
                continue
            j = idx[r, t]
            for c in range(m):
                if new[r, c] == j:
                    flag[r, t] = 0
                    break


@njit(cache=True, nogil=True, fastmath=True)
def _join(
    lo: int, hi: int, X: np.ndarray, h: np.ndarray, sims: np.ndarray,
    new: np.ndarray, old: np.ndarray, out_a: np.ndarray, out_b: np.ndarray, out_s: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Local joins of rows ``lo..`` until the offer buffer could overflow; returns (the row
    reached, offers written). Only reads the lists."""
    cap = out_a.shape[0]
    m_new = new.shape[1]
    m_old = old.shape[1]
    worst = m_new * (m_new - 1) // 2 + m_new * m_old
    w = 0
    v = lo
    while v < hi and w + worst <= cap:
        for i in range(m_new):
            a = new[v, i]
            if a < 0:
                continue
            bar_a = sims[a, 0]
            for j in range(i + 1, m_new):
                b = new[v, j]
                if b < 0:
                    continue
                s = _dot(X, a, b) - h[a] - h[b]
                if s > bar_a or s > sims[b, 0]:
                    out_a[w] = a
                    out_b[w] = b
                    out_s[w] = s
                    w += 1
            for j in range(m_old):
                b = old[v, j]
                if b < 0 or b == a:
                    continue
                s = _dot(X, a, b) - h[a] - h[b]
                if s > bar_a or s > sims[b, 0]:
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
    Y: np.ndarray,
    cells: int,
    probes: int,
    rng: np.random.Generator,
    spherical: bool,
    pool_rows: int = 40,
) -> np.ndarray:
    """The ``probes`` nearest cells of every row, nearest first, (n, probes): Lloyd k-means
    on a sample of ``pool_rows`` x cells rows (8 rounds), then every row against the centres."""
    n = len(Y)
    sample = Y[np.sort(rng.choice(n, min(n, pool_rows * cells), replace=False))]
    cen = kmeans(sample, cells, 8, rng, spherical)
    half = np.zeros(cells, np.float32) if spherical else 0.5 * np.einsum("ij,ij->i", cen, cen)
    p = min(probes, cells)
    lab = np.empty((n, p), np.int64)
    for s in range(0, n, 65_536):
        score = Y[s : s + 65_536] @ cen.T
        if not spherical:
            score -= half[None, :]
        _top_cells(score, lab[s : s + 65_536])
    return lab


def nn_descent(
    X: np.ndarray,
    k: int,
    metric: str,
    *,
    seed: int = 0,
    probes: int = PROBES,
    cell_size: int = CELL_SIZE,
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
    K = min(K, n - 1)
    threads = available_threads()
    rng = np.random.default_rng(seed)
    seeds = np.random.SeedSequence(seed).generate_state(MAX_ROUNDS + 2, dtype=np.uint64)

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(fraction, message):
            raise OperationCancelled("building the neighbour graph was cancelled")

    cells = max(1, n // int(cell_size))
    info: dict[str, Any] = {
        "cells": cells,
        "build_k": K,
        "max_candidates": max_candidates,
        "taken": [],
    }
    spherical = metric == "cosine"
    report(0.0, f"grouping {n:,} points into {cells:,} neighbourhoods")
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        info.setdefault("seconds", {})[name] = round(now - clock[0], 2)
        clock[0] = now

    with threadpool_limits(limits=threads, user_api="blas"):
        Y = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30) if spherical else X
        labs = _kmeans_cells(np.asarray(Y, np.float32), cells, probes, rng, spherical)
    lap("cells")
    order = np.argsort(labs[:, 0], kind="stable")
    bounds = np.searchsorted(labs[order, 0], np.arange(cells + 1))
    Xp = np.ascontiguousarray(Y[order], dtype=np.float32)
    del Y
    if spherical:
        h = np.zeros(n, np.float32)
    else:
        h = (0.5 * np.einsum("ij,ij->i", Xp, Xp, dtype=np.float64)).astype(np.float32)

    sims = np.full((n, K), -np.inf, np.float32)
    idx = np.full((n, K), -1, np.int32)
    flag = np.zeros((n, K), np.uint8)

    # Start: exact search of every row against its ``probes`` nearest cells, one probe level
    # at a time (within a level a row is in one group only, so threads never share a row).
    levels = []
    for j in range(labs.shape[1]):
        cell_of = labs[order, j]
        by = np.argsort(cell_of, kind="stable")
        cuts = np.searchsorted(cell_of[by], np.arange(cells + 1))
        groups = []
        for c in range(cells):
            rows = by[cuts[c] : cuts[c + 1]]
            for r0 in range(0, len(rows), 1024):
                groups.append((rows[r0 : r0 + 1024], int(bounds[c]), int(bounds[c + 1])))
        levels.append(groups)
    del labs

    def start(part: list[tuple[np.ndarray, int, int]]) -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            for rows, c0, c1 in part:
                if c1 > c0:
                    S = Xp[rows] @ Xp[c0:c1].T
                    _take_block(S, rows, c0, h, sims, idx, flag)

    with ThreadPoolExecutor(threads) as pool:
        for groups in levels:
            for f in [pool.submit(start, groups[i::threads]) for i in range(threads)]:
                f.result()
        spans = ranges(n, threads)
        for f in [
            pool.submit(_fill_random, lo, hi, n, seeds[0], h, Xp, sims, idx, flag)
            for lo, hi in spans
        ]:
            f.result()
        lap("start")
        report(0.1, "first neighbour lists ready")

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
            seed_r = seeds[rnd + 1]
            for f in [
                pool.submit(_candidates, lo, hi, seed_r, idx, flag, new, new_pri, old, old_pri)
                for lo, hi in spans
            ]:
                f.result()
            for f in [pool.submit(_mark_old, lo, hi, idx, flag, new) for lo, hi in spans]:
                f.result()
            taken = 0
            for s0 in range(0, n, STEP):
                s1 = min(n, s0 + STEP)
                pos = [lo for lo, _ in ranges(s1 - s0, threads)]
                pos = [s0 + p for p in pos]
                ends = [s0 + hi for _, hi in ranges(s1 - s0, threads)]
                while any(p < e for p, e in zip(pos, ends, strict=True)):
                    futs = [
                        pool.submit(_join, p, e, Xp, h, sims, new, old, *buf)
                        for p, e, buf in zip(pos, ends, bufs, strict=True)
                    ]
                    done = [f.result() for f in futs]
                    pos = [v for v, _ in done]
                    for (_, w), buf in zip(done, bufs, strict=True):
                        if w:
                            taken += sum(
                                f.result()
                                for f in [
                                    pool.submit(_apply, lo, hi, *buf, w, sims, idx, flag)
                                    for lo, hi in spans
                                ]
                            )
                report(0.1 + 0.85 * min(1.0, (rnd + s1 / n) / 4), "improving the neighbour "
                       f"lists (round {rnd + 1}): {s1:,} of {n:,} points")  # fmt: skip
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
