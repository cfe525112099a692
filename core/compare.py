"""Two embedding spaces over the same items: neighbourhood overlap, linear CKA, Procrustes.

Two models (or a model and its compressed copy) embed the same items; this module says how far
they agree. Items are paired by id (:func:`match_items`); the comparison itself
(:func:`compare_spaces`) works on two row-aligned matrices, which may have different
dimensions.

* **kNN overlap** (Emblaze, Embedding Comparator): for every item, how many of its k nearest
  neighbours in A are also among its k nearest neighbours in B. Reported per item as the
  Jaccard index ``|N_A ∩ N_B| / |N_A ∪ N_B|`` and as the recall-style overlap
  ``|N_A ∩ N_B| / k`` (docs/science.md §5's kNN preservation; two random lists share ``k / (n - 1)``
  of their members on average).
* **Linear CKA** (Kornblith, Norouzi, Lee, Hinton, ICML 2019): the similarity of the two
  centred Gram matrices, one number in [0, 1], invariant to rotations and isotropic scaling
  of either space, defined for different dimensions; reported beside its debiased value
  (about 0 for unrelated spaces at any n) and its chance level, the 95th percentile of CKA
  over seeded shuffles of B's rows (:mod:`core.cka`).
* **Procrustes** (:func:`procrustes_align`): rotate, reflect, scale and shift one 2-D/3-D
  layout onto another so the two can be shown side by side.

Neighbours are computed **within the matched items**. When A holds items B lacks, A's own
neighbour list of an item can name items that have no counterpart in B; they could never be
shared, so comparing full-dataset lists would count unmatched items as disagreement. The
k nearest *matched* neighbours of an item are the first k matched entries of its full sorted
list, so :func:`core.compare_runs.compare_datasets` takes them from a stored (wider) graph
when there is one and searches again only for the rows whose stored list holds fewer than k matched items
(:func:`restrict_neighbours`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embscope.core.cka import CKA_PERMUTATIONS, linear_cka, linear_cka_scores
from embscope.core.errors import InvalidInputError
from embscope.core.graph import KnnGraph, build_knn_graph
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.stats import finite_or_none
from embscope.core.validation import (
    check_k,
    check_matrix,
    check_metric,
    check_vectors,
    prepare_for_metric,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "CKA_PERMUTATIONS",
    "CKA_SAMPLE",
    "EXACT_MAX_N",
    "MIN_MATCHED",
    "QUANTILES",
    "ItemMatch",
    "NeighbourOverlap",
    "ProcrustesAlignment",
    "SpaceComparison",
    "compare_spaces",
    "knn_overlap",
    "linear_cka",
    "match_items",
    "procrustes_align",
    "restrict_neighbours",
]

# Fewer matched items than this is no comparison (and usually means the ids differ).
MIN_MATCHED = 3
# Linear CKA runs on at most this many rows (a seeded sample above): its cost is
# n * (d_a + d_b)^2 in float64, about 1 s at 10,000 x 384 on one core, and its chance level
# CKA_PERMUTATIONS * n * d_a * d_b in float32 (core/cka.py).
CKA_SAMPLE = 10_000
# compare_spaces searches neighbours exactly up to this many items and with the shared graph's
# fast method (cell-pruned sgemm, recall >= 0.98) above; docs/science.md §0.1.
EXACT_MAX_N = 20_000
# The quantiles a comparison reports of its per-item scores.
QUANTILES = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
# Rows per slice when counting shared neighbours (bounds the (rows, 2k) sort buffer).
_OVERLAP_CHUNK = 65_536


def _tick(progress: ProgressFn | None, fraction: float, message: str) -> None:
    check_cancel(progress, min(max(fraction, 0.0), 1.0), message, "the comparison")


# -- pairing items by id --------------------------------------------------------------------


@dataclass(frozen=True)
class ItemMatch:
    """The items two datasets share, paired by id.

    Attributes
    ----------
    rows_a : int64 ndarray of shape (matched,)
        Rows of A whose id also occurs in B, ascending (A's order).
    rows_b : int64 ndarray of shape (matched,)
        The row of B holding the same id as ``rows_a[i]``.
    n_a, n_b : int
        Rows in A and in B.
    """

    rows_a: np.ndarray
    rows_b: np.ndarray
    n_a: int
    n_b: int

    @property
    def matched(self) -> int:
        """Items present in both."""
        return int(self.rows_a.size)

    @property
    def only_a(self) -> int:
        """Items of A without a counterpart in B."""
        return self.n_a - self.matched

    @property
    def only_b(self) -> int:
        """Items of B without a counterpart in A."""
        return self.n_b - self.matched


def _id_index(ids: Any, name: str) -> pd.Index:
    try:
        arr = np.asarray(ids, dtype=object)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"ids of {name} must be a 1-D array of ids: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidInputError(f"ids of {name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name} has no items")
    missing = pd.isna(arr)
    if missing.any():
        raise InvalidInputError(
            f"{name} has a missing id at row {int(np.flatnonzero(missing)[0])}: every item "
            "needs an id to be paired with the other dataset"
        )
    # Ids are compared as text, as the store keeps them (an int 7 and the str "7" pair up).
    index = pd.Index([str(x) for x in arr.tolist()], dtype=object)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise InvalidInputError(
            f"{name} has the id {dup!r} more than once: ids must be unique to pair items "
            "(choose another id column)"
        )
    return index


def _examples(index: pd.Index, count: int = 3) -> str:
    return ", ".join(repr(x) for x in index[:count]) + (", ..." if len(index) > count else "")


def match_items(ids_a: Any, ids_b: Any, *, min_matched: int = MIN_MATCHED) -> ItemMatch:
    """Pair the items of two datasets by id.

    Parameters
    ----------
    ids_a, ids_b : array-like of shape (n_a,) and (n_b,)
        Unique ids (``Store.load_ids``); compared as ``str``.
    min_matched : int
        Fewest shared ids accepted.

    Returns
    -------
    ItemMatch
        ``rows_a`` ascending and ``rows_b`` the matching rows of B, both int64, and the
        counts ``matched``, ``only_a``, ``only_b``.

    Raises
    ------
    InvalidInputError
        Missing or duplicate ids, or fewer than ``min_matched`` shared ids.
    """
    index_a, index_b = _id_index(ids_a, "A"), _id_index(ids_b, "B")
    where_in_b = index_b.get_indexer(index_a)
    rows_a = np.flatnonzero(where_in_b >= 0).astype(np.int64)
    rows_b = where_in_b[rows_a].astype(np.int64)
    if rows_a.size < min_matched:
        raise InvalidInputError(
            f"only {rows_a.size} of the {len(index_a)} ids of A occur among the "
            f"{len(index_b)} ids of B; a comparison needs at least {min_matched} items in "
            f"both (A's ids: {_examples(index_a)}; B's: {_examples(index_b)}). Store both "
            "datasets with the same id column."
        )
    return ItemMatch(rows_a, rows_b, len(index_a), len(index_b))


# -- kNN overlap ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NeighbourOverlap:
    """How many of each item's k nearest neighbours two spaces share.

    Attributes
    ----------
    k : int
    shared : int32 ndarray of shape (n,)
        ``|N_A(i) ∩ N_B(i)|``, 0..k.
    jaccard : float32 ndarray of shape (n,)
        ``shared / (2k - shared)``: Jaccard@k.
    overlap : float32 ndarray of shape (n,)
        ``shared / k``: the recall-style overlap.
    mean_jaccard, mean_overlap : float
        Their means (float64 sums).
    """

    k: int
    shared: np.ndarray
    jaccard: np.ndarray
    overlap: np.ndarray
    mean_jaccard: float
    mean_overlap: float


def _neighbour_rows(indices: Any, name: str, k: int | None) -> np.ndarray:
    raw = getattr(indices, "indices", indices)  # a KnnGraph or an array
    try:
        idx = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"neighbours of {name} must be an integer array: {exc}") from exc
    if idx.dtype.kind not in "iu":
        raise InvalidInputError(
            f"neighbours of {name} must be whole row numbers, got dtype {idx.dtype}: pass "
            "graph.indices of a KnnGraph"
        )
    if idx.ndim != 2 or idx.shape[0] < 2 or idx.shape[1] == 0:
        raise InvalidInputError(
            f"neighbours of {name} must be a 2-D array (n items >= 2, k >= 1), got shape "
            f"{idx.shape}"
        )
    if k is not None:
        idx = idx[:, : check_k(k, idx.shape[1])]
    return idx


def _check_neighbour_rows(idx: np.ndarray, name: str) -> None:
    n = idx.shape[0]
    if idx.min() < 0 or idx.max() >= n:
        raise InvalidInputError(
            f"neighbours of {name} must be row numbers 0..{n - 1} of the matched items; found "
            f"{int(idx.min())}..{int(idx.max())} (a graph of the whole dataset? compute "
            "neighbours within the matched items, see restrict_neighbours)"
        )
    own = idx == np.arange(n)[:, None]
    if own.any():
        row = int(np.argwhere(own)[0][0])
        raise InvalidInputError(
            f"row {row} of {name} lists itself as a neighbour: pass neighbour lists with self "
            "excluded, as KnnGraph.indices are"
        )


def _count_shared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the number of labels in both ``a[i]`` and ``b[i]`` (rows hold no repeats)."""
    out = np.empty(a.shape[0], dtype=np.int32)
    for start in range(0, a.shape[0], _OVERLAP_CHUNK):
        stop = start + _OVERLAP_CHUNK
        both = np.sort(np.hstack([a[start:stop], b[start:stop]]), axis=1)
        out[start:stop] = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return out


def _first_repeat(idx: np.ndarray) -> int | None:
    s = np.sort(idx, axis=1)
    rep = (s[:, 1:] == s[:, :-1]).any(axis=1)
    return int(np.flatnonzero(rep)[0]) if rep.any() else None


def knn_overlap(idx_a: Any, idx_b: Any, *, k: int | None = None) -> NeighbourOverlap:
    """Per-item Jaccard@k and overlap@k of two neighbour lists of the same n items.

    Both lists must be computed **within the same n items** (row numbers 0..n-1 of the
    matched items, self excluded): neighbours that exist in one dataset only can never be
    shared and would read as disagreement (the module docstring; :func:`restrict_neighbours`
    maps a whole-dataset graph onto the matched items).

    Parameters
    ----------
    idx_a, idx_b : int ndarray of shape (n, >= k), or KnnGraph
        Row i lists item i's neighbours in A and in B, nearest first.
    k : int, optional
        Use the first k columns (default: all; both must then have the same width).

    Returns
    -------
    NeighbourOverlap

    Raises
    ------
    InvalidInputError
        Different shapes, labels outside 0..n-1, self in a list, or a label twice in a row.
    """
    a = _neighbour_rows(idx_a, "A", k)
    b = _neighbour_rows(idx_b, "B", k)
    if a.shape != b.shape:
        raise InvalidInputError(
            f"the neighbour lists must cover the same items with the same k: A {a.shape}, "
            f"B {b.shape}"
        )
    for arr, name in ((a, "A"), (b, "B")):
        _check_neighbour_rows(arr, name)
        row = _first_repeat(arr)
        if row is not None:
            raise InvalidInputError(f"row {row} of {name} lists the same neighbour twice")
    width = a.shape[1]
    shared = _count_shared(a.astype(np.int64, copy=False), b.astype(np.int64, copy=False))
    jaccard = shared / (2.0 * width - shared)
    overlap = shared / float(width)
    return NeighbourOverlap(
        k=int(width),
        shared=shared,
        jaccard=jaccard.astype(np.float32),
        overlap=overlap.astype(np.float32),
        mean_jaccard=float(jaccard.mean()),
        mean_overlap=float(overlap.mean()),
    )


def restrict_neighbours(
    indices: np.ndarray, distances: np.ndarray, rows: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour lists of a whole dataset cut down to a subset of its rows.

    The k nearest neighbours of an item among the subset are the first k subset members of
    its full sorted neighbour list, so a graph wider than k answers most rows without a new
    search.

    Parameters
    ----------
    indices : int ndarray of shape (n, K)
        Whole-dataset neighbour rows, nearest first, self excluded.
    distances : float32 ndarray of shape (n, K)
    rows : int ndarray of shape (m,)
        The subset, as distinct rows of the dataset; position j of the subset is row
        ``rows[j]``.
    k : int

    Returns
    -------
    indices : int64 ndarray of shape (m, k)
        Positions in ``rows`` (0..m-1). Meaningless where ``complete`` is False.
    distances : float32 ndarray of shape (m, k)
    complete : bool ndarray of shape (m,)
        False for the rows whose K stored neighbours hold fewer than k subset members: those
        need a new search.
    """
    n = indices.shape[0]
    rows = np.asarray(rows, dtype=np.int64)
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    mapped = position[indices[rows]]
    keep = mapped >= 0
    # Stable: the subset members first, in their original (nearest-first) order.
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out_i = np.take_along_axis(mapped, order, axis=1)
    out_d = np.take_along_axis(distances[rows], order, axis=1).astype(np.float32, copy=False)
    return out_i, out_d, keep.sum(axis=1) >= k


# -- Procrustes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcrustesAlignment:
    """A layout moved onto a reference layout: ``aligned = scale * Y @ rotation + shift``.

    Attributes
    ----------
    aligned : float32 ndarray of shape (n, p)
        Y in the reference's frame (centre and size of ``Y_ref``).
    disparity : float
        ``scipy.spatial.procrustes``'s disparity: the sum of squared differences of the two
        layouts after both are centred and scaled to unit Frobenius norm; 0 for the same
        shape, at most 1.
    rotation : float64 ndarray of shape (p, p)
        Orthogonal (a reflection when its determinant is -1).
    scale : float
    shift : float64 ndarray of shape (p,)
    """

    aligned: np.ndarray
    disparity: float
    rotation: np.ndarray
    scale: float
    shift: np.ndarray

    def apply(self, Y: Any) -> np.ndarray:
        """The same transformation of other points of Y's frame, float32 (m, p)."""
        Y = check_matrix(Y, name="Y", dtype=np.float64, one_row=False)
        if Y.shape[1] != self.rotation.shape[0]:
            raise InvalidInputError(
                f"points have {Y.shape[1]} coordinates, the alignment {self.rotation.shape[0]}"
            )
        moved: np.ndarray = self.scale * Y @ self.rotation + self.shift
        return moved.astype(np.float32)


def procrustes_align(Y_ref: Any, Y: Any, *, allow_reflection: bool = True) -> ProcrustesAlignment:
    """Orthogonal Procrustes: rotate (reflect), scale and shift layout Y onto ``Y_ref``.

    Minimises ``||scale * (Y - mean(Y)) @ R - (Y_ref - mean(Y_ref))||_F`` over orthogonal R
    and scale > 0 (Schönemann 1966), as ``scipy.spatial.procrustes(Y_ref, Y)`` does; unlike
    it, the aligned layout is returned in Y_ref's frame rather than standardised, so the two
    can be drawn on the same axes.

    Parameters
    ----------
    Y_ref : ndarray of shape (n, p)
        The reference layout (2-D or 3-D coordinates, usually).
    Y : ndarray of shape (n, p)
        Row i is the same item as row i of ``Y_ref``.
    allow_reflection : bool
        True (scipy's behaviour): R may be a reflection. False: a proper rotation.

    Returns
    -------
    ProcrustesAlignment

    Raises
    ------
    InvalidInputError
        Different shapes, fewer than 2 points, NaN/inf, or a layout whose points coincide.
    """
    ref = check_matrix(Y_ref, name="Y_ref", dtype=np.float64, one_row=False)
    mov = check_matrix(Y, name="Y", dtype=np.float64, one_row=False)
    if ref.shape != mov.shape:
        raise InvalidInputError(
            f"Procrustes needs two layouts of the same items and dimension: Y_ref {ref.shape}, "
            f"Y {mov.shape}"
        )
    if ref.shape[0] < 2:
        raise InvalidInputError("Procrustes needs at least 2 points")
    centre_ref, centre = ref.mean(axis=0), mov.mean(axis=0)
    A, B = ref - centre_ref, mov - centre
    norm_a, norm_b = np.linalg.norm(A), np.linalg.norm(B)
    if norm_a == 0.0 or norm_b == 0.0:
        which = "Y_ref" if norm_a == 0.0 else "Y"
        raise InvalidInputError(f"every point of {which} is at the same place: nothing to align")
    U, s, Vt = np.linalg.svd(B.T @ A)
    if not allow_reflection and np.linalg.det(U) * np.linalg.det(Vt) < 0:
        U[:, -1] *= -1.0  # the smallest singular direction turns the other way
        s = s.copy()
        s[-1] *= -1.0
    R = U @ Vt
    scale = float(s.sum() / norm_b**2)
    moved = scale * (B @ R)
    disparity = float(np.sum((A / norm_a - moved / norm_a) ** 2))
    return ProcrustesAlignment(
        aligned=(moved + centre_ref).astype(np.float32),
        disparity=disparity,
        rotation=R,
        scale=scale,
        shift=centre_ref - scale * (centre @ R),
    )


# -- comparing two spaces -------------------------------------------------------------------


def _quantile_key(q: float) -> str:
    return {0.0: "min", 0.5: "median", 1.0: "max"}.get(q, f"p{round(q * 100):02d}")


@dataclass(frozen=True)
class SpaceComparison:
    """How two embeddings of the same items agree.

    Attributes
    ----------
    k : int
        Neighbours per item.
    metric : str
        The metric both neighbour searches used.
    matched : int
        Items compared (row i of every per-item array is ``rows_a[i]`` of A and ``rows_b[i]``
        of B).
    only_a, only_b : int
        Items without a counterpart (0 for :func:`compare_spaces`).
    dim_a, dim_b : int
    shared : int32 ndarray of shape (matched,)
        ``|N_A ∩ N_B|`` of each item, 0..k.
    jaccard : float32 ndarray of shape (matched,)
        Jaccard@k of each item's neighbour lists: ``shared / (2k - shared)``.
    overlap : float32 ndarray of shape (matched,)
        ``|N_A ∩ N_B| / k`` of each item.
    mean_jaccard, mean_overlap : float
    cka : float
        Linear CKA of the vectors as the metric sees them (unit rows for cosine, raw for l2
        and ip), on ``cka_rows`` items.
    cka_rows : int
        Items CKA used: all, or a seeded sample of :data:`CKA_SAMPLE`.
    cka_debiased : float
        Debiased linear CKA of the same rows (about 0 for unrelated spaces, may be slightly
        negative); NaN when undefined, ``cka_note`` says why.
    cka_null : float
        The chance level of ``cka``: its 95th percentile over :data:`CKA_PERMUTATIONS`
        seeded shuffles of B's rows (:func:`core.cka.linear_cka_null`, with ``seed``).
    cka_note : str
        Why ``cka_debiased`` is NaN; empty when it is defined.
    rows_a, rows_b : int64 ndarray of shape (matched,)
        Dataset rows of the compared items.
    graph_a, graph_b : mapping
        How each neighbour list was obtained (method, recall, source).
    seed : int
    seconds : float
    """

    k: int
    metric: str
    matched: int
    only_a: int
    only_b: int
    dim_a: int
    dim_b: int
    shared: np.ndarray
    jaccard: np.ndarray
    overlap: np.ndarray
    mean_jaccard: float
    mean_overlap: float
    cka: float
    cka_rows: int
    cka_debiased: float
    cka_null: float
    rows_a: np.ndarray
    rows_b: np.ndarray
    graph_a: Mapping[str, Any] = field(default_factory=dict)
    graph_b: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    seconds: float = 0.0
    cka_note: str = ""

    @property
    def chance_overlap(self) -> float:
        """Mean ``|N_A ∩ N_B| / k`` of two unrelated neighbour lists: ``k / (matched - 1)``."""
        return self.k / (self.matched - 1)

    def quantiles(self, which: str = "jaccard") -> dict[str, float]:
        """Quantiles (:data:`QUANTILES`) of the per-item ``"jaccard"`` or ``"overlap"``."""
        if which not in ("jaccard", "overlap"):
            raise InvalidInputError(f"quantiles of 'jaccard' or 'overlap', not {which!r}")
        # From the exact counts, not the float32 arrays, so 1/3 reads 0.333... not 0.33333334.
        shared = self.shared.astype(np.float64)
        exact = shared / (2.0 * self.k - shared) if which == "jaccard" else shared / self.k
        values = np.quantile(exact, QUANTILES)
        return {_quantile_key(q): float(v) for q, v in zip(QUANTILES, values, strict=True)}

    def shared_histogram(self) -> np.ndarray:
        """int64 (k + 1,): how many items share 0, 1, ..., k neighbours."""
        return np.bincount(self.shared, minlength=self.k + 1).astype(np.int64)

    def moved_most(self, n_top: int = 20) -> np.ndarray:
        """Positions (0..matched-1) of the ``n_top`` items with the lowest Jaccard@k.

        Lowest first, ties by position; ``rows_a[pos]`` and ``rows_b[pos]`` are their rows.
        """
        if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)) or n_top < 0:
            raise InvalidInputError(f"n_top must be a whole number >= 0, got {n_top!r}")
        order = np.lexsort((np.arange(self.matched), self.jaccard))
        return order[: int(n_top)].astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``compare --json`` object (JSON-native values)."""

        def clean(info: Mapping[str, Any]) -> dict[str, Any]:
            out = {}
            for key, value in info.items():
                if isinstance(value, (np.integer, np.floating)):
                    value = value.item()
                if isinstance(value, float) and not np.isfinite(value):
                    value = None
                out[key] = value
            return out

        k = self.k
        return {
            "matched": self.matched,
            f"knn_overlap@{k}": self.mean_overlap,
            "cka": self.cka,
            "cka_debiased": finite_or_none(self.cka_debiased),
            "cka_null": finite_or_none(self.cka_null),
            f"jaccard@{k}": self.mean_jaccard,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "k": k,
            "metric": self.metric,
            "dim_a": self.dim_a,
            "dim_b": self.dim_b,
            "cka_rows": self.cka_rows,
            "cka_note": self.cka_note,
            f"chance_overlap@{k}": self.chance_overlap,
            "jaccard_quantiles": self.quantiles("jaccard"),
            "overlap_quantiles": self.quantiles("overlap"),
            "shared_histogram": [int(c) for c in self.shared_histogram()],
            "graph_a": clean(self.graph_a),
            "graph_b": clean(self.graph_b),
            "seconds": self.seconds,
        }


def _graph_info(graph: KnnGraph, **extra: Any) -> dict[str, Any]:
    return {"method": graph.method, "recall": float(graph.recall), **extra}


def _neighbours_for(
    given: Any,
    X: np.ndarray,
    *,
    name: str,
    k: int,
    metric: str,
    method: str,
    seed: int,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    n = X.shape[0]
    if given is None:
        if method == "auto":
            method = "exact" if n <= EXACT_MAX_N else "auto"
        graph = build_knn_graph(X, k=k, metric=metric, method=method, seed=seed,
                                progress=progress)  # fmt: skip
        return graph.indices, _graph_info(graph, source="computed", seconds=graph.seconds)
    if isinstance(given, KnnGraph):
        if given.metric != metric:
            raise InvalidInputError(
                f"the neighbour graph of {name} was built with metric {given.metric!r}, the "
                f"comparison uses {metric!r}"
            )
        info = _graph_info(given, source=str(given.params.get("source", "given")))
        if "recomputed_rows" in given.params:
            info["recomputed_rows"] = int(given.params["recomputed_rows"])
    else:
        info = {"method": "given", "recall": float("nan"), "source": "given"}
    idx = _neighbour_rows(given, name, None)
    if idx.shape[0] != n or idx.shape[1] < k:
        raise InvalidInputError(
            f"the neighbour lists of {name} have shape {idx.shape}; the comparison needs "
            f"({n}, >= {k}): one row per compared item"
        )
    return idx[:, :k], info


def compare_spaces(
    X_a: Any,
    X_b: Any,
    *,
    k: int = 10,
    metric: str = "cosine",
    seed: int = 0,
    cka_sample: int | None = CKA_SAMPLE,
    method: str = "auto",
    graph_a: Any = None,
    graph_b: Any = None,
    progress: ProgressFn | None = None,
) -> SpaceComparison:
    """Compare two row-aligned embeddings of the same items.

    Parameters
    ----------
    X_a : float32 ndarray of shape (n, d_a)
    X_b : float32 ndarray of shape (n, d_b)
        Row i of both is the same item; the dimensions may differ.
    k : int
        Neighbours per item, 1 <= k < n.
    metric : {"cosine", "l2", "ip"}
        For both neighbour searches; CKA runs on unit-normalised rows for cosine.
    seed : int
        Seeds the CKA row sample, the shuffles of CKA's chance level and the neighbour
        graphs.
    cka_sample : int or None
        Linear CKA on at most this many rows (a seeded sample, in row order); None: all.
    method : {"auto", "exact", "cells", "nndescent", "hnsw"}
        Neighbour search (:func:`core.graph.build_knn_graph`). ``auto``: exact up to
        :data:`EXACT_MAX_N` items, the shared graph's fast method above.
    graph_a, graph_b : KnnGraph or int ndarray of shape (n, >= k), optional
        Neighbour lists already computed **within these n items** (self excluded); they are
        not searched again.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    SpaceComparison

    Raises
    ------
    InvalidInputError
        Different numbers of rows, fewer than :data:`MIN_MATCHED` items, NaN/inf, bad k or
        metric, or neighbour lists that do not fit.
    """
    t0 = time.perf_counter()
    A = check_vectors(X_a, name="vectors of A")
    B = check_vectors(X_b, name="vectors of B")
    n = A.shape[0]
    if B.shape[0] != n:
        raise InvalidInputError(
            f"A has {n} rows and B has {B.shape[0]}: compare_spaces needs the same items in the "
            "same order (pair them by id with match_items or compare_datasets)"
        )
    if n < MIN_MATCHED:
        raise InvalidInputError(f"a comparison needs at least {MIN_MATCHED} items, got {n}")
    metric = check_metric(metric)
    k = check_k(k, n - 1)
    if cka_sample is not None and (
        isinstance(cka_sample, bool)
        or not isinstance(cka_sample, (int, np.integer))
        or cka_sample < MIN_MATCHED
    ):
        raise InvalidInputError(
            f"cka_sample must be a whole number >= {MIN_MATCHED} or None, got {cka_sample!r}"
        )
    if method not in ("auto", "exact", "cells", "nndescent", "hnsw"):
        raise InvalidInputError(
            f"unknown method {method!r}: use auto, exact, cells, nndescent or hnsw"
        )

    _tick(progress, 0.0, "finding each item's neighbours in the first dataset")
    idx_a, info_a = _neighbours_for(graph_a, A, name="A", progress=stage(progress, 0.0, 0.4),
                                    k=k, metric=metric, method=method, seed=seed)  # fmt: skip
    _tick(progress, 0.4, "finding each item's neighbours in the second dataset")
    idx_b, info_b = _neighbours_for(graph_b, B, name="B", progress=stage(progress, 0.4, 0.8),
                                    k=k, metric=metric, method=method, seed=seed)  # fmt: skip
    _tick(progress, 0.8, "comparing each item's neighbours in both")
    overlap = knn_overlap(idx_a, idx_b)

    _tick(progress, 0.85, "how alike are the two spaces? (linear CKA)")
    rows = np.arange(n)
    if cka_sample is not None and n > cka_sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=int(cka_sample), replace=False))
    cka = linear_cka_scores(
        prepare_for_metric(A[rows], metric), prepare_for_metric(B[rows], metric),
        seed=seed, progress=stage(progress, 0.85, 1.0),
    )  # fmt: skip
    _tick(progress, 1.0, "comparison ready")
    everything = np.arange(n, dtype=np.int64)
    return SpaceComparison(
        k=k,
        metric=metric,
        matched=n,
        only_a=0,
        only_b=0,
        dim_a=int(A.shape[1]),
        dim_b=int(B.shape[1]),
        shared=overlap.shared,
        jaccard=overlap.jaccard,
        overlap=overlap.overlap,
        mean_jaccard=overlap.mean_jaccard,
        mean_overlap=overlap.mean_overlap,
        cka=cka.cka,
        cka_rows=int(rows.size),
        cka_debiased=cka.debiased,
        cka_null=cka.null,
        cka_note=cka.note,
        rows_a=everything,
        rows_b=everything.copy(),
        graph_a=info_a,
        graph_b=info_b,
        seed=int(seed),
        seconds=time.perf_counter() - t0,
    )
