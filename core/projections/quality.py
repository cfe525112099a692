"""How faithful a 2-D/3-D layout is to the space it was made from (docs/science.md §5).

:func:`projection_quality` scores a layout against the shared neighbour graph (its high-dimensional
neighbours) and, for the rank-based scores, the vectors themselves:

* **trustworthiness@k** (Venna & Kaski, exactly as :func:`sklearn.manifold.trustworthiness`):
  penalises layout neighbours that are far apart in the original space,
  ``T = 1 - 2 / (m k (2n - 3k - 1)) * sum_i sum_{j in U_i} (r(i, j) - k)`` where ``U_i`` are the
  k layout neighbours of ``i`` that are not among its k original neighbours and ``r(i, j)`` is
  the rank of ``j`` among the original distances from ``i`` (self excluded, 1 = nearest);
* **continuity@k**: the same with the two spaces swapped (original neighbours that the layout
  tore apart);
* **knn_preservation@k**: mean ``|kNN_high(i) & kNN_low(i)| / k`` with ``kNN_high`` read from the
  graph (``graph.head(k)``: approximate if the graph is);
* **knn_accuracy@k** (with labels; the LargeVis paper's measure): the k-NN majority vote of each
  point's layout neighbours, leave-one-out on the full layout (ties go to the smallest label,
  as in scikit-learn). It equals scikit-learn's ``LeaveOneOut`` cross-validation of
  ``KNeighborsClassifier(k)`` and is a cheap stand-in for the 10-fold CV of the reference
  tables (docs/science.md §1.3): on digits' UMAP layout LOO and shuffled stratified 10-fold both give
  0.988; unshuffled 10-fold gives 0.977 (digits is ordered, so its folds hold out blocks);
* **geodesic_spearman** (with ground-truth geodesic coordinates): the per-row Spearman
  correlation between layout distances and geodesic distances, averaged over rows -- the
  protocol of heat-geodesic's ``knn_methods.py::corrs`` (docs/science.md §3.8, §5(a)).

Every score is computed on a seeded sample of ``m`` points (all points when ``n <= sample``),
each against all ``n`` points: the sampled points' distances to every point, in the original
space and in the layout, are computed in row blocks of bounded memory. With all points sampled,
trustworthiness and continuity equal scikit-learn's (ties broken by the smaller row number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import KnnGraph, vectors_of_points
from embscope.core.progress import ProgressFn
from embscope.core.stats import bootstrap_ci, ci_json
from embscope.core.validation import check_int, check_vectors, normalise_rows

__all__ = [
    "DEFAULT_SAMPLE",
    "GEODESIC_MAX_COLUMNS",
    "QUALITY_K",
    "ProjectionQuality",
    "layout_neighbours",
    "projection_quality",
    "sample_rows",
]

QUALITY_K = 10
DEFAULT_SAMPLE = 2000
# Geodesic Spearman compares each sampled row with at most this many columns (all of them below,
# a seeded subset above): two rank transforms of every row are its whole cost, and a row's
# Spearman estimated from 5,000 random columns has a standard error of ~0.01 before averaging.
GEODESIC_MAX_COLUMNS = 5000
# Elements of one block of sampled rows' original distances: 16M float32 = 64 MB whatever n is
# (blocks of a few hundred rows keep the matrix product efficient).
_BLOCK_ELEMENTS = 1 << 24
# Above this many candidates a rank is counted with comparisons instead of a sort.
_SORT_MAX = 8192


@dataclass(frozen=True)
class ProjectionQuality:
    """Faithfulness scores of a layout (see the module docstring for the definitions).

    Attributes
    ----------
    k : int
        Neighbourhood size of every score.
    n : int
        Points in the layout.
    sample : int
        Points scored (all ``n`` when ``n`` is at most the requested sample).
    metric : str
        Metric of the original space (the graph's).
    trustworthiness, continuity : float or None
        None when the vectors were not given (they need ranks in the original space).
    knn_preservation : float
    knn_accuracy : float or None
        None without labels.
    geodesic_spearman : float or None
        None without geodesic coordinates.
    intervals : dict of str to (float, float)
        95 % percentile-bootstrap interval of each computed score over the sampled points
        (:func:`core.stats.bootstrap_ci`, seeded, with the finite-population correction for
        m of n points): every score is a mean of per-point terms, so the points are
        resampled. With every point scored there is no sampling error and each interval is
        the score itself.
    """

    k: int
    n: int
    sample: int
    metric: str
    trustworthiness: float | None
    continuity: float | None
    knn_preservation: float
    knn_accuracy: float | None = None
    geodesic_spearman: float | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, float | int]:
        """The scores under their public names (``"trustworthiness@10"``, ..., ``"sample"``),
        each followed by its interval as ``"<name>_ci": [lo, hi]``.

        Scores that were not computed are left out.
        """
        k = self.k
        out: dict[str, Any] = {}
        scores = {
            f"trustworthiness@{k}": ("trustworthiness", self.trustworthiness),
            f"continuity@{k}": ("continuity", self.continuity),
            f"knn_preservation@{k}": ("knn_preservation", self.knn_preservation),
            f"knn_accuracy@{k}": ("knn_accuracy", self.knn_accuracy),
            "geodesic_spearman": ("geodesic_spearman", self.geodesic_spearman),
        }
        for key, (name, value) in scores.items():
            if value is None:
                continue
            out[key] = float(value)
            if name in self.intervals:
                out[f"{key}_ci"] = ci_json(self.intervals[name])
        out["sample"] = int(self.sample)
        return out


# -- validation -----------------------------------------------------------------------------


def _check_labels(labels: Any, n: int) -> np.ndarray:
    """Labels as integer codes 0..C-1 in sorted label order (scikit-learn's ``classes_``)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(
            f"labels must hold one value per point ({n}), got shape {arr.shape}"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInputError("labels contain missing (NaN) values: drop or fill them first")
    if arr.dtype == object and pd.isna(arr).any():
        raise InvalidInputError("labels contain missing values: drop or fill them first")
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInputError(
            f"labels must be all numbers or all strings, not a mix: {exc}"
        ) from exc
    return codes.reshape(-1).astype(np.int64)


def _check_geodesic(geodesic: Any, n: int) -> np.ndarray:
    try:
        arr = np.asarray(geodesic, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"geodesic coordinates must be numbers: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        raise InvalidInputError(
            f"geodesic must be an (n, g) array of coordinates with n = {n} rows "
            f"(Euclidean distance in them is the geodesic), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError("geodesic coordinates contain NaN or infinite values")
    return arr


def sample_rows(n: int, sample: Any, seed: Any) -> np.ndarray:
    """The rows :func:`projection_quality` scores: all for ``sample`` None or >= n, else
    ``sample`` drawn without replacement with ``seed``, sorted."""
    if sample is None or (not isinstance(sample, bool) and isinstance(sample, (int, np.integer))
                          and sample >= n):  # fmt: skip
        return np.arange(n)
    sample = check_int(sample, "sample", low=1)
    seed = check_int(seed, "seed", low=0)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))


# -- neighbours and ranks ----------------------------------------------------------------------


def layout_neighbours(Y: np.ndarray, rows: np.ndarray, k: int, *, tree: Any = None) -> np.ndarray:
    """The k nearest layout neighbours (int64, (len(rows), k)) of each of ``rows`` among all
    points of the layout ``Y``, self excluded, ties broken by row number as exact search
    does. ``tree``: a ``scipy.spatial.cKDTree`` of ``Y`` already built."""
    if tree is None:
        from scipy.spatial import cKDTree

        tree = cKDTree(Y)
    m = rows.size
    dist, idx = tree.query(Y[rows], k + 2)
    out = np.empty((m, k), dtype=np.int64)
    for b, i in enumerate(rows):
        d, j = dist[b], idx[b]
        own = np.flatnonzero(j == i)
        keep = np.ones(k + 2, dtype=bool)
        keep[own[0] if own.size else k + 1] = False
        d, j = d[keep], j[keep]
        if d[k] > d[k - 1] and own.size:
            out[b] = j[:k]
            continue
        # A tie at the k-th distance (or more duplicates than k + 1): take every point as close
        # as the k-th and keep the smallest row numbers, as exact search does.
        cand = np.asarray(tree.query_ball_point(Y[i], d[k - 1] * (1.0 + 1e-9)), dtype=np.int64)
        cand = cand[cand != i]
        dc = np.sqrt(((Y[cand] - Y[i]) ** 2).sum(axis=1))
        out[b] = cand[np.lexsort((cand, dc))[:k]]
    return out


def _high_ranks(
    row: np.ndarray, members: np.ndarray, graph_nbrs: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of ``members`` in ``row`` by (value, index), and the row's k smallest.

    ``row`` holds one point's original distances (or an increasing function of them) to every
    point, itself set to +inf. ``graph_nbrs`` are k other points (the graph's neighbours): the
    k smallest are never farther than the farthest of them, so only the entries up to the
    larger of the two thresholds are looked at.
    """
    t_top = row[graph_nbrs].max()
    if not np.isfinite(t_top):  # a hand-made graph listing the point itself
        t_top = np.partition(row, k - 1)[k - 1]
    t = max(t_top, row[members].max())
    cand = np.flatnonzero(row <= t)  # ascending row numbers
    vals = row[cand]
    if cand.size <= _SORT_MAX:
        order = np.lexsort((cand, vals))
        position = np.empty(cand.size, dtype=np.int64)
        position[order] = np.arange(cand.size)
        return position[np.searchsorted(cand, members)] + 1, cand[order[:k]]
    # Many candidates (a layout that scatters neighbours): count instead of sorting them all.
    tm = row[members]
    before = (vals[None, :] < tm[:, None]).sum(axis=1)
    tied = ((vals[None, :] == tm[:, None]) & (cand[None, :] < members[:, None])).sum(axis=1)
    near = np.flatnonzero(vals <= t_top)
    if near.size > _SORT_MAX:  # the graph's neighbours are far too (an approximate graph)
        part = np.argpartition(vals[near], k - 1)[:k]
        near = near[vals[near] <= vals[near[part]].max()]
    top = near[np.lexsort((cand[near], vals[near]))[:k]]
    return before + tied + 1, cand[top]


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (average ranks)."""
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho: np.ndarray = (ra * rb).sum(axis=1) / den
    return rho


def _geodesic_spearman(
    Y: np.ndarray, G: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Per-row Spearman between layout and geodesic distances from ``rows`` to ``cols``.

    Self is kept (distance 0 on both sides), as heat-geodesic's ``corrs`` keeps the diagonal.
    """
    out = np.empty(rows.size)
    Yc, Gc = Y[cols], G[cols]
    step = max(1, (1 << 20) // (cols.size * max(Y.shape[1], G.shape[1])))
    for s in range(0, rows.size, step):
        r = rows[s : s + step]
        dl = ((Yc[None, :, :] - Y[r][:, None, :]) ** 2).sum(axis=2)
        dg = ((Gc[None, :, :] - G[r][:, None, :]) ** 2).sum(axis=2)
        out[s : s + step] = _spearman_rows(dl, dg)  # squares rank like distances
    return out


# -- the scores -------------------------------------------------------------------------------


def projection_quality(
    layout: np.ndarray,
    graph: KnnGraph,
    *,
    X: np.ndarray | None = None,
    k: int = QUALITY_K,
    labels: np.ndarray | None = None,
    geodesic: np.ndarray | None = None,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> ProjectionQuality:
    """Score how faithfully ``layout`` keeps the neighbourhoods of the original space.

    Parameters
    ----------
    layout : float ndarray of shape (n, dims)
        The projection (2-D or 3-D; any number of columns works).
    graph : KnnGraph
        The shared neighbour graph of the original vectors, at least ``k`` wide; its metric
        is the metric of the original space.
    X : float32 ndarray of shape (n, d), optional
        The original vectors. Trustworthiness and continuity need them (ranks among all
        original distances); without them they are None.
    k : int
        Neighbourhood size, ``1 <= k < n / 2`` (scikit-learn's limit) and ``k <= graph.k``.
    labels : array of shape (n,), optional
        Class of each point (numbers or strings): adds ``knn_accuracy``.
    geodesic : float ndarray of shape (n, g), optional
        Ground-truth coordinates in which Euclidean distance is the geodesic distance (the
        Swiss roll's ``(arc_length, height)``): adds ``geodesic_spearman``. Above
        :data:`GEODESIC_MAX_COLUMNS` points each sampled row is compared with that many
        seeded random columns instead of all of them.
    sample : int or None
        Points scored, drawn without replacement with ``seed``; None or ``>= n`` scores all.
    seed : int
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    ProjectionQuality
        ``.to_json()`` gives ``{"trustworthiness@k", "continuity@k", "knn_preservation@k",
        "knn_accuracy@k", "geodesic_spearman", "sample"}`` (the optional ones when computed).

    Notes
    -----
    Cost: one ``m x n x d`` float32 matrix product for the original distances of the ``m``
    sampled points (in blocks of about 64 MB), a k-d tree on the layout, and per sampled
    point a pass over its ``n`` distances. Ranks in the original space come from float32
    products, so a pair whose two distances agree to ~1e-7 may swap: with all points sampled
    the scores match scikit-learn's to ~1e-6 (one swapped rank moves trustworthiness by
    ``2 / (n k (2n - 3k - 1))``).
    """
    from scipy.spatial import cKDTree

    if not isinstance(graph, KnnGraph):
        raise InvalidInputError(f"graph must be a core.graph.KnnGraph, got {type(graph).__name__}")
    Y = check_vectors(layout, name="layout").astype(np.float64)
    n = Y.shape[0]
    if graph.n != n:
        raise InvalidInputError(
            f"the layout has {n} points but the graph has {graph.n}: score a layout against "
            "the graph of the same dataset"
        )
    k = check_int(k, "k", low=1)
    if k >= n / 2:
        raise InvalidInputError(
            f"k = {k} must be below half the number of points ({n}): use a smaller k"
        )
    if k > graph.k:
        raise InvalidInputError(
            f"k = {k} is wider than the graph ({graph.k} neighbours): use k <= {graph.k} "
            "or a wider graph"
        )
    metric = graph.metric
    H: np.ndarray | None = None
    if X is not None:
        H = vectors_of_points(X, n, made="layout")
        if metric == "cosine":
            H = normalise_rows(H)
        elif metric == "l2":
            # Centring changes no distance and keeps the float32 expansion
            # ||y||^2 - 2 x.y away from cancellation.
            H = H - H.mean(axis=0, dtype=np.float64).astype(np.float32)
        H = np.ascontiguousarray(H, dtype=np.float32)
    codes = None if labels is None else _check_labels(labels, n)
    G = None if geodesic is None else _check_geodesic(geodesic, n)
    rows = sample_rows(n, sample, seed)
    m = rows.size

    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(fraction, message):
            raise OperationCancelled("scoring the projection was cancelled")

    report(0.0, "scoring the map: neighbours on the map")
    tree = cKDTree(Y)
    low = layout_neighbours(Y, rows, k, tree=tree)
    graph_nbrs = np.asarray(graph.indices[rows, :k], dtype=np.int64)
    # Per sampled point terms of each score (the score is their mean), for the intervals.
    terms: dict[str, np.ndarray] = {}
    terms["knn_preservation"] = (low[:, :, None] == graph_nbrs[:, None, :]).any(axis=2).mean(1)
    preservation = float(terms["knn_preservation"].mean())
    accuracy = None
    if codes is not None:
        hits = np.zeros(m)
        for b, i in enumerate(rows):
            values, counts = np.unique(codes[low[b]], return_counts=True)
            hits[b] = float(values[np.argmax(counts)] == codes[i])  # ties: smallest label
        terms["knn_accuracy"] = hits
        accuracy = float(hits.mean())

    trust = cont = None
    if H is not None:
        from embscope.core.geometry.intrinsic import limit_blas_threads

        h_sq = np.einsum("ij,ij->i", H, H) if metric == "l2" else None
        trust_terms = np.zeros(m)
        torn_i: list[np.ndarray] = []
        torn_j: list[np.ndarray] = []
        block = max(1, min(m, _BLOCK_ELEMENTS // n))
        for start in range(0, m, block):
            r = rows[start : start + block]
            with limit_blas_threads():
                S = H[r] @ H.T
            # An increasing function of the distance: ||y||^2 - 2 x.y for l2, -x.y otherwise.
            S *= -2.0 if h_sq is not None else -1.0
            if h_sq is not None:
                S += h_sq[None, :]
            S[np.arange(r.size), r] = np.inf
            for b in range(r.size):
                lw = low[start + b]
                ranks, high = _high_ranks(S[b], lw, graph_nbrs[start + b], k)
                trust_terms[start + b] = int(np.maximum(ranks - k, 0).sum())
                torn = high[~np.isin(high, lw, assume_unique=True)]
                torn_i.append(np.full(torn.size, start + b))
                torn_j.append(torn)
            done = min(start + block, m)
            report(
                0.05 + 0.85 * done / m,
                f"scoring the map: {done:,} of {m:,} points checked against their true neighbours",
            )
        # Continuity: the layout rank of each torn neighbour is the number of points (self
        # excluded) within its layout distance, itself included.
        # torn_i holds the position of the sampled point in ``rows``, torn_j a point index.
        bi, tj = np.concatenate(torn_i), np.concatenate(torn_j)
        cont_terms = np.zeros(m)
        if bi.size:
            ti = rows[bi]
            radius = np.sqrt(((Y[ti] - Y[tj]) ** 2).sum(axis=1)) * (1.0 + 1e-9)
            within = np.asarray(tree.query_ball_point(Y[ti], radius, return_length=True))
            excess = np.maximum(within - 1 - k, 0).astype(np.float64)
            cont_terms = np.bincount(bi, weights=excess, minlength=m).astype(np.float64)
        # Each score is 1 - norm * (sum of terms) = the mean over points of 1 - m * norm * term.
        norm = 2.0 / (m * k * (2.0 * n - 3.0 * k - 1.0))
        terms["trustworthiness"] = 1.0 - m * norm * trust_terms
        terms["continuity"] = 1.0 - m * norm * cont_terms
        trust = 1.0 - float(trust_terms.sum()) * norm
        cont = 1.0 - float(cont_terms.sum()) * norm

    geo = None
    if G is not None:
        report(0.9, "scoring the map: distances along the data")
        cols = (
            np.arange(n)
            if n <= GEODESIC_MAX_COLUMNS
            else np.sort(
                np.random.default_rng(seed + 1).choice(n, GEODESIC_MAX_COLUMNS, replace=False)
            )
        )
        values = _geodesic_spearman(Y, G, rows, cols)
        geo = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        terms["geodesic_spearman"] = values
    report(1.0, "projection scored")
    # The score is the mean over the dataset's n points, estimated from m of them drawn
    # without replacement: the finite-population bootstrap (exact when m == n).
    intervals = {
        name: bootstrap_ci(values, seed=seed, population=n) for name, values in terms.items()
    }
    return ProjectionQuality(
        k=k,
        n=n,
        sample=int(m),
        metric=metric,
        trustworthiness=trust,
        continuity=cont,
        knn_preservation=preservation,
        knn_accuracy=accuracy,
        geodesic_spearman=geo,
        intervals=intervals,
    )
