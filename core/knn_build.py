"""The fastest exact-quality k-NN graph we know on 2 cores: blocked sgemm over pairs of k-means
cells ("IVF-GEMM"), with an exact fallback.

1. Points are grouped by (spherical, for cosine) k-means into cells of ~1,500 points.
2. A pair of cells is searched when some point of one has the other among its ``p`` best
   cells; ``p`` is the smallest probe count whose *coverage* — the share of the true
   neighbours of a sample of rows (found by one sgemm) whose cell pair is searched — reaches
   the target recall. Inside a searched pair the search is exact, so coverage is recall.
3. When pruning does not pay (it would search more than half of all pairs), every pair of
   2,048-row blocks is searched: an exact, symmetric, blocked sgemm that feeds both rows'
   running top-k from one product, dropping candidates below a row's current k-th best with
   one comparison before any selection.

Selection (numba, ``nogil``): every row keeps its running top-k as a min-heap in flat arrays,
its k-th best at the root: the bar a candidate must clear. A row's first block (its own
cell) is selected at once through a 256-bin histogram of the row; later blocks are scanned
16 entries at a time against the bar (one vector max) and the few entries that clear it
replace the root. The cores are shared by Python threads (numba's parallel layer is not
used): each computes its share of a block's rows with a one-thread sgemm and scans them, then
scans a share of the block's columns, which are other points, so no heap is ever shared.
BLAS runs one thread per call meanwhile (its own threads would spin between blocks, taking
the cores the scans need). Rows are finally sorted by (distance, index) as one int64 key per
neighbour (numpy's SIMD sort).

100k x 384 cosine (demo.gaussian_mixture, 12 clusters, 2 cores): k = 150 in ~5.7 s, k = 15
in ~4 s (numpy argpartition merges took ~12 s and ~4.8 s); the sgemm is ~2.4 s of it.

Measured against pynndescent (bench/bench_graph.py): k = 30 on 100k x 384 sentence-like data
in a fraction of pynndescent's cold time at recall >= 0.98 (figures in that script's output).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any, cast

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from embscope.core.errors import OperationCancelled
from embscope.core.threads import available_threads, ranges

__all__ = ["TARGET", "augmented", "cell_knn", "kmeans"]

TARGET = 0.98
# Rows per block of the search: bounds the block buffer (SLAB x chunk float32).
SLAB = 2048


def kmeans(
    Y: np.ndarray, C: int, iters: int, rng: np.random.Generator, spherical: bool
) -> np.ndarray:
    """Lloyd k-means on Y (spherical: unit centroids, cosine assignment); a cell's sum by one
    reduceat over the rows sorted by cell."""
    cen = Y[rng.choice(len(Y), C, replace=False)].copy()
    for _ in range(iters):
        score = Y @ cen.T
        if not spherical:
            score -= 0.5 * (cen * cen).sum(1)[None, :]
        lab = np.argmax(score, 1)
        cnt = np.bincount(lab, minlength=C).astype(np.float32)
        starts = np.cumsum(cnt, dtype=np.int64) - cnt.astype(np.int64)
        held = cnt > 0
        sums = np.zeros((C, Y.shape[1]), np.float32)
        sums[held] = np.add.reduceat(Y[np.argsort(lab, kind="stable")], starts[held], axis=0)
        empty = cnt == 0
        if empty.any():
            sums[empty] = Y[rng.choice(len(Y), int(empty.sum()))]
            cnt[empty] = 1.0
        cen = (
            sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-30)
            if spherical
            else sums / cnt[:, None]
        )
    return np.ascontiguousarray(cen, dtype=np.float32)


# Running top-k lists are min-heaps in flat arrays: row r's k best similarities so far are
# V[r * k : r * k + k] (its k-th best, the bar a new candidate must clear, at V[r * k]), their
# positions IX alongside. A candidate enters by replacing the root.


@njit(cache=True, nogil=True)
def _sift(V: np.ndarray, IX: np.ndarray, b: int, k: int, i: int, s: float, j: int) -> None:
    """Put (s, j) into the hole i of the heap V[b : b + k] and sift it down."""
    c = 2 * i + 1
    while c < k:
        if c + 1 < k and V[b + c + 1] < V[b + c]:
            c += 1
        cv = V[b + c]
        if cv >= s:
            break
        V[b + i] = cv
        IX[b + i] = IX[b + c]
        i = c
        c = 2 * c + 1
    V[b + i] = s
    IX[b + i] = j


@njit(cache=True, nogil=True)
def _fill_row(
    S: np.ndarray,
    i: int,
    me: int,
    pos: np.ndarray,
    V: np.ndarray,
    IX: np.ndarray,
    b: int,
    k: int,
    hist: np.ndarray,
    bins: np.ndarray,
    gv: np.ndarray,
    gi: np.ndarray,
) -> bool:
    """The k best of row i of S (self, pos[j] == me, excluded) into the empty heap at b.

    A 256-bin histogram between the row's extremes gives the bin holding the (k+1)-th
    largest entry; the entries from that bin up (k + a few) are gathered, the first k
    heapified and the rest pushed. Returns False (nothing done) on a degenerate row.
    """
    m = S.shape[1]
    lo = S[i, 0]
    hi = S[i, 0]
    for j in range(1, m):
        v = S[i, j]
        lo = min(lo, v)
        hi = max(hi, v)
    if not (hi > lo and np.isfinite(lo) and np.isfinite(hi)):
        return False
    scale = np.float32(255.99) / (hi - lo)
    if not np.isfinite(scale):
        return False
    for j in range(m):
        bins[j] = np.uint8(min(np.int32(255), np.int32((S[i, j] - lo) * scale)))
    hist[:] = 0
    j = 0
    while j + 4 <= m:  # four histograms: no store-to-load stalls on repeated bins
        hist[bins[j]] += 1
        hist[256 + bins[j + 1]] += 1
        hist[512 + bins[j + 2]] += 1
        hist[768 + bins[j + 3]] += 1
        j += 4
    while j < m:
        hist[bins[j]] += 1
        j += 1
    top = 255
    above = hist[255] + hist[511] + hist[767] + hist[1023]
    while above < k + 1:  # the bin holding the (k + 1)-th largest
        top -= 1
        above += hist[top] + hist[256 + top] + hist[512 + top] + hist[768 + top]
    c = 0
    tb = np.uint8(top)
    for j in range(m):  # branch-free gather of the entries from that bin up
        gv[c] = S[i, j]
        gi[c] = pos[j]
        c += (bins[j] >= tb) & (pos[j] != me)
    for t in range(k):
        V[b + t] = gv[t]
        IX[b + t] = gi[t]
    for t in range(k // 2 - 1, -1, -1):
        _sift(V, IX, b, k, t, V[b + t], IX[b + t])
    for t in range(k, c):
        if gv[t] > V[b]:
            _sift(V, IX, b, k, 0, gv[t], gi[t])
    return True


@njit(cache=True, nogil=True)
def _scan_rows(
    S: np.ndarray,
    r0: int,
    r1: int,
    row0: int,
    me: np.ndarray,
    pos: np.ndarray,
    V: np.ndarray,
    IX: np.ndarray,
    k: int,
    fresh: bool,
) -> None:
    """Rows r0..r1 of the block S feed the running top-k of rows row0 + i: entry (i, j)
    enters when it beats the heap's smallest, unless it is the row itself (pos[j] == me[i]).
    ``fresh``: the heaps are empty, so a row of more than k + 1 entries is selected at once."""
    m = S.shape[1]
    hist = np.empty(1024, np.int32)
    bins = np.empty(m, np.uint8)
    gv = np.empty(m, np.float32)
    gi = np.empty(m, pos.dtype)
    for i in range(r0, r1):
        g = me[i]
        b = (row0 + i) * k
        if fresh and m > k + 1 and _fill_row(S, i, g, pos, V, IX, b, k, hist, bins, gv, gi):
            continue
        t = V[b]
        j0 = 0
        while j0 < m:
            j1 = min(m, j0 + 16)
            hi = S[i, j0]
            for j in range(j0 + 1, j1):
                hi = max(hi, S[i, j])
            if hi > t:
                for j in range(j0, j1):
                    s = S[i, j]
                    if s > t and pos[j] != g:
                        _sift(V, IX, b, k, 0, s, pos[j])
                        t = V[b]
            j0 = j1


@njit(cache=True, nogil=True)
def _scan_cols(
    S: np.ndarray,
    c0: int,
    c1: int,
    row0: int,
    pos: np.ndarray,
    V: np.ndarray,
    IX: np.ndarray,
    k: int,
) -> None:
    """Columns c0..c1 of the block S feed the running top-k of rows pos[j] with the rows
    row0 + i of S (no self: the rows of S and these columns are different points). Tiles
    of 256 columns keep their heaps in cache."""
    na = S.shape[0]
    tc = np.empty(256, np.float32)
    for t0 in range(c0, c1, 256):
        w = min(c1, t0 + 256) - t0
        for j in range(w):
            tc[j] = V[pos[t0 + j] * k]
        for i in range(na):
            j0 = 0
            while j0 < w:
                j1 = min(w, j0 + 16)
                hi = S[i, t0 + j0] - tc[j0]  # > 0 exactly when S > tc, -inf included
                for j in range(j0 + 1, j1):
                    hi = max(hi, S[i, t0 + j] - tc[j])
                if hi > 0:
                    for j in range(j0, j1):
                        s = S[i, t0 + j]
                        if s > tc[j]:
                            b = pos[t0 + j] * k
                            _sift(V, IX, b, k, 0, s, row0 + i)
                            tc[j] = V[b]
                j0 = j1


@njit(cache=True, nogil=True)
def _sort_keys(
    V: np.ndarray,
    IX: np.ndarray,
    order: np.ndarray,
    r0: int,
    r1: int,
    k: int,
    l2: bool,
    keys: np.ndarray,
) -> None:
    """keys[order[r]] = one int64 per neighbour of the heaps r0..r1 (sorted positions) that
    sorts by (distance, index): the float32 distance (cosine: 1 - s; l2: sqrt(max(-2 s, 0)))
    as an order-preserving integer above the index."""
    d = np.empty(k, np.float32)
    bits = d.view(np.int32)
    for r in range(r0, r1):
        b = r * k
        g = order[r]
        for t in range(k):
            s = V[b + t]
            d[t] = np.sqrt(max(np.float32(-2.0) * s, np.float32(0.0))) if l2 else 1 - s
        for t in range(k):
            u: int | np.int64 = np.int64(bits[t])
            if u < 0:  # negative floats: reverse their order; -0.0 ties with +0.0
                u = 0 if u == -(2**31) else u ^ 0x7FFFFFFF
            keys[g, t] = (u << 32) | order[IX[b + t]]


@njit(cache=True, nogil=True)
def _unpack_keys(keys: np.ndarray, r0: int, r1: int, distbits: np.ndarray) -> None:
    """Sorted keys (rows r0..r1) back to indices (in place) and distance bits."""
    for g in range(r0, r1):
        for t in range(keys.shape[1]):
            u = keys[g, t] >> 32
            distbits[g, t] = u if u >= 0 else u ^ 0x7FFFFFFF
            keys[g, t] &= 0xFFFFFFFF


def cell_knn(
    X: np.ndarray,
    k: int = 30,
    metric: str = "cosine",
    *,
    target: float = TARGET,
    cell: int = 1536,
    seed: int = 0,
    sample: int = 500,
    probes: tuple[int, ...] = (1, 2, 3, 4, 6, 8),
    max_frac: float = 0.5,
    chunk: int = 8192,
    progress: Callable[[float, str], bool | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """kNN graph (self excluded) by symmetric blocked sgemm restricted to pairs of k-means cells.

    1. Spherical (cosine) or Euclidean k-means into C = n / cell cells, trained on a sample; each
       point gets its nearest cell and its cells ranked by centroid score.
    2. With p probes, the cell pair (a, b) is searched when some point of a has b among its p
       best cells, or the reverse. Exact neighbours of ``sample`` random rows (one sgemm) give the
       coverage of each p: the share of true neighbours whose cell pair is searched, which is the
       recall, as the search inside searched pairs is exact. The smallest p whose coverage is
       >= target + 0.005 is used; when the searched share of all pairs passes ``max_frac`` first,
       every pair is searched (exact, on blocks of 2,048 consecutive rows, no k-means).
    3. Each searched pair's block Y_a Y_b^T is one sgemm feeding the running top-k of both a's
       rows and b's rows; entries below a row's current k-th best are dropped by one comparison
       before any selection (module docstring: heaps, threads).

    l2 runs on augmented rows [x, -|x|^2/2, 1] . [y, 1, -|y|^2/2] = -|x - y|^2 / 2.
    Returns indices [n, k] int64, distances [n, k] float32 (cosine: 1 - cos; l2: Euclidean),
    sorted by (distance, index), and info (cells, probes, searched share, est_recall on the
    sample). A probe count is only taken when every cell meets more than k points.
    Runs on every core the process may use (``os.sched_getaffinity``).
    ``progress(fraction, message)`` is called per cell; returning True raises
    :class:`core.errors.OperationCancelled`.
    """

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(fraction, message):
            raise OperationCancelled("building the neighbour graph was cancelled")

    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, n - 1], got {k} for n = {n}")
    rng = np.random.default_rng(seed)
    L, R = augmented(X, metric)
    base = L if metric == "cosine" else X
    nt = available_threads()
    pool = ThreadPoolExecutor(nt) if nt > 1 else None
    try:
        return _search(
            L, R, base, k, metric, rng, target, cell, sample, probes, max_frac, chunk, nt,
            pool, report,
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()


def _search(
    L: np.ndarray,
    R: np.ndarray,
    base: np.ndarray,
    k: int,
    metric: str,
    rng: np.random.Generator,
    target: float,
    cell: int,
    sample: int,
    probes: tuple[int, ...],
    max_frac: float,
    chunk: int,
    nt: int,
    pool: ThreadPoolExecutor | None,
    report: Callable[[float, str], None],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """cell_knn after validation: the sample, the cells, the blocked search and the sort."""
    n = L.shape[0]

    def run(fn: Callable[[int, int], None], size: int) -> None:
        """fn(lo, hi) over nt ranges splitting 0..size, one per thread."""
        parts = ranges(size, nt)
        if pool is None:
            for lo, hi in parts:
                fn(lo, hi)
        else:
            for fut in [pool.submit(fn, lo, hi) for lo, hi in parts]:
                fut.result()

    def one_blas_thread() -> AbstractContextManager[object]:
        """The threads run one-thread sgemms side by side: BLAS's own threads would spin
        between blocks, taking the cores the scanning threads need."""
        if pool is None:
            return nullcontext()
        # threadpoolctl is untyped here; threadpool_limits is a context manager
        return cast(AbstractContextManager[object], threadpool_limits(1, user_api="blas"))

    def rows_pass(
        La: np.ndarray,
        matT: np.ndarray,
        Sb: np.ndarray,
        row0: int,
        me: np.ndarray,
        pos: np.ndarray,
        fresh: bool,
        V: np.ndarray,
        IX: np.ndarray,
    ) -> None:
        """Each thread: its rows of Sb = La @ matT (one-thread sgemm), then their top-k."""

        def task(r0: int, r1: int) -> None:
            np.matmul(La[r0:r1], matT, out=Sb[r0:r1])
            _scan_rows(Sb, r0, r1, row0, me, pos, V, IX, k, fresh)

        run(task, len(La))

    # exact top-k of a sample of rows (sgemm in column chunks): the true neighbours that
    # coverage and est_recall are measured on
    srows = np.sort(rng.choice(n, min(sample, n), replace=False))
    ns = len(srows)
    Vs = np.full(ns * k, -np.inf, np.float32)
    IXs = np.full(ns * k, -1, np.int32)
    Lsam = L[srows]
    step = max(chunk, 4 * k)
    buf = np.empty(ns * min(n, step), np.float32)
    with one_blas_thread():
        for c0 in range(0, n, step):
            c1 = min(n, c0 + step)
            Sb = buf[: ns * (c1 - c0)].reshape(ns, c1 - c0)
            pos = np.arange(c0, c1, dtype=np.int32)
            rows_pass(Lsam, R[c0:c1].T, Sb, 0, srows.astype(np.int32), pos, c0 == 0, Vs, IXs)
    strue = IXs.reshape(ns, k).astype(np.int64)
    del Lsam, Vs, IXs, buf

    info: dict[str, Any] = {"probe_scan": []}
    C = max(1, n // cell)
    need: np.ndarray | None = None
    if C > 1 and probes:
        nk = min(n, max(20 * C, 20_000))
        cen = kmeans(base[rng.choice(n, nk, replace=False)], C, 10, rng, metric == "cosine")
        A = base @ cen.T
        if metric != "cosine":
            A -= 0.5 * (cen * cen).sum(1)[None, :]
        own = np.argmax(A, 1)
        pmax = min(max(probes), C)
        top = np.argpartition(-A, pmax - 1, axis=1)[:, :pmax]
        rank = np.take_along_axis(top, np.argsort(-np.take_along_axis(A, top, 1), axis=1), 1)
        sizes = np.bincount(own, minlength=C).astype(np.float64)
        for p in probes:
            if p > pmax:
                break
            nd = np.zeros((C, C), bool)
            nd[np.repeat(own, p), rank[:, :p].ravel()] = True
            nd |= nd.T
            np.fill_diagonal(nd, True)
            cov = float(nd[own[srows][:, None], own[strue]].mean())
            frac = float((sizes[:, None] * sizes[None, :] * nd).sum() / n / n)
            info["probe_scan"].append((p, round(cov, 4), round(frac, 3)))
            if frac > max_frac:
                break
            # every row must meet at least k other points
            enough = bool(((nd @ sizes)[sizes > 0] > k).all())
            if cov >= min(1.0, target + 0.005) and enough:
                need, info["probes"], info["searched"] = nd, p, round(frac, 3)
                break
    if need is None:  # exact: every pair of consecutive-row blocks
        C = max(1, -(-n // 2048))
        own = np.arange(n) // 2048
        need = np.ones((C, C), bool)
        info["probes"], info["searched"] = "all (exact)", 1.0
    info["cells"] = C

    order = np.argsort(own, kind="stable")
    bounds = np.searchsorted(own[order], np.arange(C + 1))
    Ls = L[order]
    Rs = Ls if R is L else R[order]
    V = np.full(n * k, -np.inf, np.float32)
    IX = np.full(n * k, -1, np.int32)  # positions in sorted order
    buf = np.empty(min(SLAB, int(np.diff(bounds).max())) * chunk, np.float32)
    me = np.arange(n, dtype=np.int32)
    nobody = np.full(SLAB, -1, np.int32)

    def pieces(runs: list[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
        """Column chunks of <= chunk columns over (start, stop) runs: (positions, block)."""
        cur: list[tuple[int, int]] = []
        size = 0
        for s, e in runs:
            while s < e:
                t = min(e, s + chunk - size)
                cur.append((s, t))
                size += t - s
                s = t
                if size == chunk:
                    yield cur
                    cur, size = [], 0
        if cur:
            yield cur

    def block(cols: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        pos = np.concatenate([np.arange(s, e, dtype=np.int32) for s, e in cols])
        mat = (
            Rs[cols[0][0] : cols[0][1]]
            if len(cols) == 1
            else np.concatenate([Rs[s:e] for s, e in cols])
        )
        return pos, mat

    def slabs(sa: int, ea: int) -> Iterator[tuple[int, int]]:
        """A cell's rows in slabs of <= SLAB rows (bounds the block buffer)."""
        for s in range(sa, ea, SLAB):
            yield s, min(ea, s + SLAB)

    with one_blas_thread():
        # own cells first (a's rows only, the block being symmetric), so that every row has a
        # threshold before the cross-cell blocks
        for a in range(C):
            report(0.1 * a / C, f"finding nearest neighbours in each group: {a + 1:,} of {C:,}")
            sa, ea = int(bounds[a]), int(bounds[a + 1])
            for cols in pieces([(sa, ea)]):
                pos, mat = block(cols)
                for s, e in slabs(sa, ea):
                    Sb = buf[: (e - s) * len(pos)].reshape(e - s, len(pos))
                    rows_pass(Ls[s:e], mat.T, Sb, s, me[s:e], pos, pos[0] == sa, V, IX)
        # cross-cell pairs a < b: one block feeds a's rows (each thread computes and scans its
        # share of the rows), then b's rows (each thread scans a share of the columns: other
        # points, so no two threads touch one heap). Pair a only meets the cells after it: the
        # work per a shrinks, hence the square in the progress.
        for a in range(C):
            done = 0.1 + 0.9 * (1 - (1 - a / C) ** 2)
            report(done, f"finding each item's nearest neighbours: part {a + 1:,} of {C:,}")
            sa, ea = int(bounds[a]), int(bounds[a + 1])
            runs = [
                (int(bounds[b]), int(bounds[b + 1]))
                for b in np.flatnonzero(need[a, a + 1 :]) + a + 1
            ]
            merged: list[tuple[int, int]] = []
            for s, e in runs:
                if e <= s:
                    continue
                if merged and merged[-1][1] == s:
                    merged[-1] = (merged[-1][0], e)
                else:
                    merged.append((s, e))
            for cols in pieces(merged):
                pos, mat = block(cols)
                m = len(pos)
                for s, e in slabs(sa, ea):
                    Sb = buf[: (e - s) * m].reshape(e - s, m)
                    rows_pass(Ls[s:e], mat.T, Sb, s, nobody, pos, False, V, IX)
                    run(partial(_scan_cols, Sb, row0=s, pos=pos, V=V, IX=IX, k=k), m)

    # rows sorted by (distance, index): one int64 key per neighbour, sorted by numpy (SIMD)
    ind = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    run(partial(_sort_keys, V, IX, order, k=k, l2=metric == "l2", keys=ind), n)
    del V, IX
    ind.sort(axis=1)
    run(partial(_unpack_keys, ind, distbits=dist.view(np.int32)), n)
    info["est_recall"] = round(
        float(
            np.mean([len(np.intersect1d(ind[r], t)) for r, t in zip(srows, strue, strict=True)]) / k
        ),
        4,
    )
    return ind, dist, info


def augmented(X: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows (L, R) whose dot products rank neighbours: cosine -> unit rows (L is R);
    l2 -> [x, -|x|^2/2, 1] . [y, 1, -|y|^2/2] = -|x - y|^2 / 2."""
    if metric == "cosine":
        L = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
        return L, L
    if metric != "l2":
        raise ValueError(f"metric must be cosine or l2, got {metric!r}")
    h = (0.5 * np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)[:, None]
    one = np.ones((len(X), 1), np.float32)
    return np.hstack([X, -h, one]), np.hstack([X, one, -h])
