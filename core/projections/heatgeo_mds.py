"""The layout of the heat-geodesic method: from heat rows to 2-D or 3-D coordinates.

Completion of the landmark distances beyond the heat kernel's reach (shortest paths over
reliable pairs), classical MDS and the SGD metric MDS of the landmarks, interpolation of the
other points from their warmest landmarks, and the final orientation. The method itself is
described in :mod:`embscope.core.projections.heatgeo`.

The metric MDS has two paths (:data:`MDS_PATHS`), both the stochastic gradient descent of
Zheng, Pawar & Goodman (2018) that the reference's ``s_gd2`` implements: for each pair
``(i, j)`` in turn, with step ``mu = min(1, w_ij eta)``, ``i`` and ``j`` each move
``mu (|y_i - y_j| - d_ij) / 2`` towards (or away from) each other; one sweep visits every pair
once, and ``eta`` falls geometrically over 30 sweeps from ``1 / min w`` to ``eps / max w``:

- ``"reference"``: exactly what heatgeo 0.0.1 runs (``heatgeo/mds.py`` calls
  ``s_gd2.mds_direct(n, d, w=None, init=classical)``; ``w=None`` is ``np.ones``, and the
  schedule is ``s_gd2.default_schedule(w, t_max=30, eps=0.01)``): unit weights, so ``eta``
  falls from 1 to 0.01 and the first sweep moves every pair all the way to its distance. Every
  pair counts the same, so far pairs -- most pairs -- dominate the stress: it keeps the global
  shape.
- ``"weighted"``: weights ``w_ij = d_ij^-2`` (s_gd2's weights for graph layouts, and the
  reference's optional ``mds_weights_type="inv_dist"`` with exponent 2), ``eta`` from
  ``1 / w_min = d_max^2`` to ``0.1 / w_max = 0.1 d_min^2``: relative errors count the same, so
  near pairs weigh most (local detail before global shape).

Where they differ from ``s_gd2``: s_gd2 reshuffles all pairs every sweep; we shuffle them once
(seeded) and visit them each sweep in a new random order of contiguous chunks of 4,096 pairs
(random enough, and 10x faster at 2M pairs: streaming through memory instead of one cache miss
per pair); the start is our classical MDS (``B``'s top eigenvectors times the square roots of
their eigenvalues), where the reference starts from PCA scores of the double-centred ``D^2``
(same directions, another scale: with unit weights the first sweep sets the scale anyway).
On the reference's own distance matrix of the Swiss roll (2,000 points) the reference path
gives the 2-D layout's geodesic Spearman of s_gd2 to four decimals (0.7967 against 0.7968).
In 3-D the reference switches to SMACOF (s_gd2 is 2-D only); both our paths stay SGD.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.linalg import eigh
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from embscope.core.projections.heatgeo_kernel import heat_distances

RELIABLE_RATIO = 1e-8  # reliable: H_il >= RELIABLE_RATIO * (H_ii + H_ll) / 2
_ANCHORS = 8  # nearest reliable landmarks of a point, paired into completion edges
_LANDMARK_EDGES = 16  # nearest reliable landmarks per landmark in the completion graph
_UNREACHABLE = 1.5  # unconnected components: this times the largest finite distance apart
_SGD_ITERS = 30  # sweeps (s_gd2's t_max)
MDS_PATHS = ("reference", "weighted")
# eps of the step-size schedule: eta ends at eps / max(w) (s_gd2's default_schedule)
_SGD_EPS = {"reference": 0.01, "weighted": 0.1}
_SGD_CHUNK = 4096
_INTERP_ANCHORS = 32  # warmest landmarks a point is interpolated from
_INTERP_POWER = 2  # weights H^2


# -- layout: completion and MDS -----------------------------------------------------------------


@njit(cache=True, nogil=True)
def _anchor_edges(  # pragma: no cover - numba
    D: np.ndarray,
    H: np.ndarray,
    h_rows: np.ndarray,
    h_land: np.ndarray,
    ratio: float,
    anchors: int,
    E: np.ndarray,
) -> None:
    """``E[a, b] = min(E[a, b], D[i, a] + D[i, b])`` over the reliable anchors a, b of each i."""
    n, L = D.shape
    best = np.empty(anchors, dtype=np.int64)
    for i in range(n):
        found = 0
        for lm in range(L):
            if H[i, lm] >= ratio * 0.5 * (h_rows[i] + h_land[lm]) and H[i, lm] > 0:
                # insertion into the anchors-nearest list
                if found < anchors:
                    best[found] = lm
                    found += 1
                elif D[i, lm] < D[i, best[anchors - 1]]:
                    best[anchors - 1] = lm
                else:
                    continue
                q = found - 1
                while q > 0 and D[i, best[q]] < D[i, best[q - 1]]:
                    tmp = best[q]
                    best[q] = best[q - 1]
                    best[q - 1] = tmp
                    q -= 1
        for x in range(found):
            a = best[x]
            for y in range(x + 1, found):
                b = best[y]
                w = D[i, a] + D[i, b]
                if w < E[a, b]:
                    E[a, b] = w
                    E[b, a] = w


def complete_landmarks(
    H: np.ndarray,
    tau: float,
    sigma: float,
    h_rows: np.ndarray,
    h_land: np.ndarray,
    rows: np.ndarray,
    report: Any,
) -> tuple[np.ndarray, int]:
    """Landmark distances with unreliable pairs replaced by shortest reliable paths.

    ``H`` holds every point's heat row to the landmarks, ``rows`` the landmarks' rows in it.
    Returns the (L, L) distances and how many landmark pairs ``i < j`` got a value other
    than their heat-geodesic distance (unreliable ones, and reliable ones a shorter path beat).
    """
    L = rows.size
    D_LL = heat_distances(H[rows], tau, sigma, h_rows[rows], h_land)
    D_LL = 0.5 * (D_LL + D_LL.T)
    H_LL = H[rows].astype(np.float64)
    H_LL = 0.5 * (H_LL + H_LL.T)
    reliable = (H_LL >= RELIABLE_RATIO * 0.5 * (h_land[:, None] + h_land[None, :])) & (H_LL > 0)
    del H_LL
    np.fill_diagonal(reliable, False)
    E = np.where(reliable, D_LL, np.inf)
    report(0.1, "completing distances beyond the heat kernel's reach", force=True)
    n = H.shape[0]
    step = max(1, (1 << 20) // max(L, 1))
    for s in range(0, n, step):
        part = slice(s, s + step)
        D = heat_distances(H[part], tau, sigma, h_rows[part], h_land)
        _anchor_edges(D, H[part], h_rows[part], h_land, RELIABLE_RATIO, _ANCHORS, E)
        report(0.1 + 0.5 * min(1.0, (s + step) / n), "completing distances")
    np.fill_diagonal(E, np.inf)
    # keep each landmark's nearest edges (a sparse graph keeps Dijkstra cheap)
    k = min(_LANDMARK_EDGES, L - 1)
    near = np.argpartition(E, k - 1, axis=1)[:, :k]
    r = np.repeat(np.arange(L), k)
    c = near.ravel()
    w = E[r, c]
    del E
    ok = np.isfinite(w)
    G = sp.csr_matrix((np.maximum(w[ok], 1e-12), (r[ok], c[ok])), shape=(L, L))
    G = G.maximum(G.T)
    report(0.7, "shortest paths between landmarks", force=True)
    S: np.ndarray = dijkstra(G, directed=False)
    out = np.where(reliable, np.minimum(D_LL, S), S)
    np.fill_diagonal(out, 0.0)
    finite = np.isfinite(out)
    if not finite.all():
        top = out[finite].max() if finite.any() else 1.0
        out[~finite] = _UNREACHABLE * max(top, 1e-12)
    upper = np.triu_indices(L, 1)
    replaced = int(np.count_nonzero(out[upper] != D_LL[upper]))
    return out, replaced


def interpolate(
    H: np.ndarray, YL: np.ndarray, rows: np.ndarray, report: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``rows`` as the ``H^2``-weighted mean of their 32 warmest landmarks.

    Returns the positions and whether any heat reached the row at all.
    """
    L = YL.shape[0]
    k = min(_INTERP_ANCHORS, L)
    out = np.zeros((rows.size, YL.shape[1]))
    informed = np.zeros(rows.size, dtype=bool)
    step = max(1, (1 << 20) // L)
    for s in range(0, rows.size, step):
        h = H[rows[s : s + step]].astype(np.float64)
        idx = (
            np.argpartition(-h, k - 1, axis=1)[:, :k]
            if k < L
            else np.tile(np.arange(L), (len(h), 1))
        )
        w = np.take_along_axis(h, idx, axis=1) ** _INTERP_POWER
        total = w.sum(axis=1)
        ok = total > 0
        out[s : s + step][ok] = (w[ok, :, None] * YL[idx[ok]]).sum(axis=1) / total[ok, None]
        informed[s : s + step] = ok
        report(min(1.0, (s + step) / max(rows.size, 1)), "heat-geodesic: placing the other points")
    return out, informed


def classical_mds(D: np.ndarray, dims: int) -> np.ndarray:
    """Classical (Torgerson) MDS of a symmetric distance matrix, float64 (L, dims).

    The top eigenvectors of the double-centred matrix by Lanczos above 200 points (a dense
    eigensolver is 10x slower at 2,000), with a fixed start vector so that it is deterministic.
    """
    L = D.shape[0]
    D2 = D * D
    B = -0.5 * (D2 - D2.mean(axis=0)[None, :] - D2.mean(axis=1)[:, None] + D2.mean())
    del D2
    eig: tuple[np.ndarray, np.ndarray] | None = None
    if L > 200:
        v0 = np.random.default_rng(0).random(L) + 0.5
        try:
            eig = eigsh(B, k=dims, which="LA", v0=v0, tol=1e-10)
        except ArpackNoConvergence:
            eig = None
    if eig is None:
        eig = eigh(B, subset_by_index=[max(0, L - dims), L - 1])
    values, vectors = eig
    top = np.argsort(values)[::-1][:dims]
    values, vectors = values[top], vectors[:, top]
    Y: np.ndarray = vectors * np.sqrt(np.maximum(values, 0.0))
    if Y.shape[1] < dims:
        Y = np.hstack([Y, np.zeros((L, dims - Y.shape[1]))])
    return Y


@njit(cache=True, nogil=True)
def _sgd_epoch(  # pragma: no cover - numba
    Y: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    dist: np.ndarray,
    weight: np.ndarray,
    eta: float,
    chunks: np.ndarray,
    chunk: int,
) -> None:
    """One sweep of s_gd2's pair updates, the (pre-shuffled) pairs taken chunk by chunk."""
    dims = Y.shape[1]
    m = first.size
    for c in chunks:
        for p in range(c * chunk, min(m, (c + 1) * chunk)):
            i = first[p]
            j = second[p]
            mag = 0.0
            for a in range(dims):
                t = Y[i, a] - Y[j, a]
                mag += t * t
            mag = math.sqrt(mag)
            if mag < 1e-12:
                mag = 1e-12
            mu = weight[p] * eta
            if mu > 1.0:
                mu = 1.0
            r = mu * (mag - dist[p]) / (2.0 * mag)
            for a in range(dims):
                t = r * (Y[i, a] - Y[j, a])
                Y[i, a] -= t
                Y[j, a] += t


def sgd_mds(
    D: np.ndarray, Y0: np.ndarray, seed: int, report: Any, *, path: str = "reference"
) -> np.ndarray:
    """Metric MDS by SGD from ``Y0`` (module docstring): ``path`` "reference" (unit weights,
    steps 1 to 0.01: s_gd2.mds_direct with w=None, as heatgeo runs it) or "weighted"
    (weights ``d^-2``, steps ``d_max^2`` to ``0.1 d_min^2``); 30 sweeps either way.
    """
    if path not in MDS_PATHS:
        raise ValueError(f"unknown MDS path {path!r}")
    L = D.shape[0]
    if L < 3:
        return Y0
    rng = np.random.default_rng(seed)
    first, second = np.triu_indices(L, 1)
    shuffle = rng.permutation(first.size)
    first = first[shuffle].astype(np.int32)
    second = second[shuffle].astype(np.int32)
    del shuffle
    dist = D[first, second]
    positive = dist[dist > 0]
    if positive.size == 0:
        return Y0
    if path == "reference":
        weight = np.ones_like(dist)
    else:
        weight = 1.0 / np.maximum(dist, positive.min()) ** 2
    eta_max = 1.0 / weight.min()
    eta_min = _SGD_EPS[path] / weight.max()
    decay = math.log(eta_max / eta_min) / (_SGD_ITERS - 1)
    Y = Y0.astype(np.float64).copy()
    n_chunks = -(-first.size // _SGD_CHUNK)
    for t in range(_SGD_ITERS):
        chunks = rng.permutation(n_chunks).astype(np.int64)
        eta = eta_max * math.exp(-decay * t)
        _sgd_epoch(Y, first, second, dist, weight, eta, chunks, _SGD_CHUNK)
        report((t + 1) / _SGD_ITERS, f"metric MDS on {L} landmarks: sweep {t + 1}/{_SGD_ITERS}")
    return Y


def orient(Y: np.ndarray) -> np.ndarray:
    """Centre, rotate to principal axes, fix each axis's sign (largest |value| positive)."""
    Y = Y - Y.mean(axis=0)
    _values, vectors = np.linalg.eigh(Y.T @ Y)
    Y = Y @ vectors[:, ::-1]
    signs = np.sign(Y[np.abs(Y).argmax(axis=0), np.arange(Y.shape[1])])
    return Y * np.where(signs == 0, 1.0, signs)
