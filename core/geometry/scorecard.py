"""The geometry scorecard of a dataset: isotropy, intrinsic dimension and hubness in one place.

:func:`compute_scorecard` takes the vectors and the dataset's shared neighbour graph (it never
computes neighbours) and returns a :class:`Scorecard`: every score as one number in
``values`` (explained for a user in :data:`SCORES`), the arrays behind the plots, and notes
that say what was left out and why (duplicates, zero vectors, an inner-product graph, the DSE
sample). :func:`get_or_compute_scorecard` stores it as an artifact of kind ``"scorecard"`` so
that it is computed once per (dataset, k, metric, code version) and read back identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.artifacts import ArtifactSpec, fingerprint, get_or_compute
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.geometry.hubness import Hubness, hubness
from embscope.core.geometry.intrinsic import (
    DSE_MAX_N,
    LID_K,
    Duplicates,
    MLEDimension,
    TwoNN,
    dse_of_sample,
    find_duplicates,
    lid_summary,
    limit_blas_threads,
    local_intrinsic_dimension,
    mle_dimension,
    sample_rows,
    twonn,
)
from embscope.core.geometry.isotropy import (
    PcaSpectrum,
    average_cosine_of_sums,
    effective_rank_from_eigenvalues,
    isoscore_from_eigenvalues,
    isotropic_reference,
    moments,
    partition_isotropy_from,
    pca_spectrum_from_eigenvalues,
    unit_sum,
)
from embscope.core.graph import KnnGraph, get_or_build_graph
from embscope.core.progress import ProgressFn, stage
from embscope.core.validation import Metric, check_k, check_metric, check_vectors, normalise_rows

if TYPE_CHECKING:
    from embscope.core.store import DatasetInfo, Store

__all__ = [
    "ID_K",
    "KIND",
    "REFERENCES",
    "SCORECARDS",
    "SCORECARD_CODE_VERSION",
    "SCORES",
    "Scorecard",
    "ScorecardRequest",
    "ScorecardSpec",
    "compute_scorecard",
    "get_or_compute_scorecard",
    "scorecard_key",
    "scorecard_request",
]

KIND = "scorecard"
# Bump when any score changes, so stored scorecards are recomputed.
# 2: isoscore_reference, effective_rank_reference and dse_ceiling.
SCORECARD_CODE_VERSION = 2
# Neighbours per point for the MLE and LID (docs/science.md §0.1: "first k=20 columns").
ID_K = LID_K

SCORES: dict[str, str] = {
    "isoscore": (
        "IsoScore: how evenly the variance is spread over all dimensions, 0 (everything on "
        "one line) to 1 (equal in every direction); sentence embeddings are often below 0.2. "
        "Blind to a shared offset."
    ),
    "isoscore_reference": (
        "IsoScore of an isotropic Gaussian with the same number of vectors and dimensions: "
        "what perfectly even data of this size score (below 1, far below with few vectors "
        "per dimension). Compare isoscore with this, not with 1."
    ),
    "avg_cosine": (
        "Average cosine similarity between two different vectors: about 0 when vectors point "
        "every way, near 1 when they all share one direction (common in raw embeddings; mean "
        "centring fixes it)."
    ),
    "partition_isotropy": (
        "Partition-function isotropy (Mu & Viswanath) of the raw vectors: 1 when no direction "
        "dominates, near 0 when one direction (often a shared offset) does. Depends on the "
        "vectors' lengths."
    ),
    "effective_rank": (
        "Effective rank: roughly how many dimensions the centred data really use (exp of the "
        "entropy of the singular values); the dimension itself when all are used equally."
    ),
    "effective_rank_reference": (
        "Effective rank of an isotropic Gaussian with the same number of vectors and "
        "dimensions: what data using every direction equally reach at this size (below the "
        "dimension; at most vectors - 1)."
    ),
    "pca_n90": "Principal components needed to explain 90% of the variance (linear dimension).",
    "pca_n95": "Principal components needed to explain 95% of the variance.",
    "pca_n99": "Principal components needed to explain 99% of the variance.",
    "participation_ratio": (
        "Participation ratio (sum of variances)^2 / sum of squared variances: another linear "
        "dimension count, k for k equal variances; small when a few directions dominate."
    ),
    "twonn": (
        "TwoNN intrinsic dimension (from the ratio of 2nd to 1st neighbour distance): the "
        "number of directions the data can vary in locally, usually far below the embedding "
        "dimension; it under-estimates above ~10."
    ),
    "twonn_mle": "TwoNN intrinsic dimension by maximum likelihood instead of the line fit.",
    "mle": (
        "Levina-Bickel maximum-likelihood intrinsic dimension from each point's "
        "neighbour distances (harmonic mean over points); close to TwoNN on clean data."
    ),
    "lid_median": (
        "Median local intrinsic dimensionality: the intrinsic dimension seen around a typical "
        "point; high-LID regions are where approximate search loses recall."
    ),
    "lid_mean": "Mean local intrinsic dimensionality over the points where it is defined.",
    "dse": (
        "Diffusion spectral entropy in bits, on a sample: low when the data form a few tight "
        "clusters or a low-dimensional shape (log2 of the cluster count for separated "
        "clusters), up to log2(sample size) for structureless noise."
    ),
    "dse_ceiling": (
        "The most DSE can reach on its sample: log2(dse_n) bits. DSE values of datasets with "
        "different sample sizes compare as fractions of this."
    ),
    "hubness_skew": (
        "Hubness: skewness of how often each point is someone's neighbour. Near 0 or below is "
        "healthy; above 1 means a few 'hub' vectors show up in many result lists."
    ),
    "n_duplicates": (
        "Vectors that exactly repeat an earlier vector. They are left out of the "
        "distance-ratio estimates (TwoNN, MLE, LID), which they would break."
    ),
    "n_zero_vectors": (
        "All-zero vectors: they have no direction, so they are left out of the average cosine."
    ),
    "n_antihubs": "Anti-hubs: vectors that are nobody's k-nearest neighbour (hard to retrieve).",
    "max_k_occurrence": (
        "The largest hub: how many points have it among their k nearest neighbours (k on average)."
    ),
    "n": "Number of vectors in the dataset.",
    "dim": "Embedding dimension: the number of values in each vector.",
    "k": "Neighbours per point used for hubness.",
    "id_k": "Neighbours per point used for the MLE and LID estimates.",
    "metric": "Distance of the neighbour graph the neighbour-based scores were computed on.",
    "graph_method": "How the neighbour graph was built: exact, or approximate (HNSW).",
    "graph_recall": "Measured recall of the neighbour graph against exact search (1 if exact).",
    "dse_sigma": "Kernel width used for DSE: half the median distance between sampled points.",
    "dse_n": "Points DSE was computed on (a seeded sample of larger datasets).",
}

# Each score shown beside its finite-sample reference: score -> (reference key, what it is).
REFERENCES: dict[str, tuple[str, str]] = {
    "isoscore": ("isoscore_reference", "isotropic Gaussian of the same n, d"),
    "effective_rank": ("effective_rank_reference", "isotropic Gaussian of the same n, d"),
    "dse": ("dse_ceiling", "ceiling log2(dse_n)"),
}


@dataclass(frozen=True)
class Scorecard:
    """All geometry scores of one dataset, with the arrays behind them.

    Attributes
    ----------
    values : dict of str to float, int or str
        One entry per key of :data:`SCORES`; floats are NaN where undefined.
    spectrum : PcaSpectrum
    twonn : TwoNN
    mle : MLEDimension
    lid : float64 ndarray of shape (n,)
        LID (k = ``values["id_k"]``) per point, NaN where undefined.
    hubness : Hubness
    duplicates : Duplicates
    notes : tuple of str
        What a reader must know to read the numbers (exclusions, samples, choices).
    """

    values: dict[str, float | int | str]
    spectrum: PcaSpectrum
    twonn: TwoNN
    mle: MLEDimension
    lid: np.ndarray
    hubness: Hubness
    duplicates: Duplicates
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """``values`` as plain JSON (NaN becomes None) plus ``"notes"``: the CLI's --json."""
        out: dict[str, Any] = {key: _json_safe(value) for key, value in self.values.items()}
        out["notes"] = list(self.notes)
        return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def _cancel_check(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None and progress(fraction, message):
        raise OperationCancelled("computing the geometry scorecard was cancelled")


def _check_graph(graph: Any, n: int, width: int) -> None:
    for name in ("indices", "distances", "metric"):
        if not hasattr(graph, name):
            raise InvalidInputError(
                "graph must be the dataset's KnnGraph (core.graph.get_or_build_graph), got "
                f"{type(graph).__name__}"
            )
    shape = np.shape(graph.indices)
    if len(shape) != 2 or shape[0] != n:
        raise InvalidInputError(
            f"the graph has {shape[0] if shape else 0} rows but there are {n} vectors: use the "
            "graph of this dataset"
        )
    if shape[1] < width:
        raise InvalidInputError(
            f"the graph has {shape[1]} neighbours per point; the scorecard needs {width} "
            f"(max(k, {ID_K})): build it with k >= {width}"
        )
    check_metric(graph.metric)


def compute_scorecard(
    X: Any,
    graph: KnnGraph,
    *,
    k: int = 10,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Scorecard:
    """Every isotropy, intrinsic-dimension and hubness score of ``X``.

    Isotropy (IsoScore, average cosine, partition isotropy, effective rank, PCA spectrum)
    comes from one float64 pass over ``X``, IsoScore and effective rank beside what an
    isotropic Gaussian of the same n and d scores (``isotropic_reference`` of
    :mod:`core.geometry.isotropy`, seeded, O(d^2) at any n); TwoNN, the MLE (k = 20,
    harmonic) and LID (k = 20) from ``graph.distances``; hubness from
    ``graph.head(k).indices``; DSE (with its ceiling, log2 of its sample size) from a seeded
    sample of at most 2,000 rows. Nothing computes neighbours.

    How the graph's metric is used: ``cosine`` distances are turned into chord distances
    ``sqrt(2 (1 - cos))`` for the distance-ratio estimators (otherwise they would report half
    the dimension) and DSE runs on the unit-normalised vectors; ``l2`` is used as it is; with
    ``ip`` the distance-ratio estimators are NaN (``1 - <a, b>`` is not a distance) and DSE
    runs on the raw vectors. Zero distances (duplicates) are left out of TwoNN, MLE and LID.
    The isotropy scores always use the vectors as they are.

    Parameters
    ----------
    X : float32 ndarray of shape (n, d), n >= 3
    graph : KnnGraph
        The k-NN graph of ``X`` (self excluded, sorted), with at least ``max(k, 20)``
        neighbours per point (``min(.., n - 1)`` for tiny datasets).
    k : int
        Neighbours per point for hubness, 1 <= k < n.
    seed : int
        Seeds the DSE sample and the isotropic references.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    Scorecard

    Raises
    ------
    InvalidInputError
        On bad ``X``, fewer than 3 vectors, a bad ``k``, or a graph of another size or with
        too few neighbours.
    """
    X = check_vectors(X)
    n, d = X.shape
    if n < 3:
        raise InvalidInputError(f"the geometry scorecard needs at least 3 vectors, got {n}")
    k = check_k(k, n - 1)
    id_k = min(ID_K, n - 1)
    _check_graph(graph, n, max(k, id_k))
    metric = str(graph.metric)
    # The whole scorecard runs with core.geometry.intrinsic.BLAS_THREADS threads (see there).
    with limit_blas_threads():
        return _compute(X, graph, metric=metric, k=k, id_k=id_k, seed=seed, progress=progress)


def _compute(
    X: np.ndarray,
    graph: Any,
    *,
    metric: str,
    k: int,
    id_k: int,
    seed: int,
    progress: ProgressFn | None,
) -> Scorecard:
    n, d = X.shape
    notes: list[str] = []
    _cancel_check(progress, 0.0, "looking for duplicate vectors")
    duplicates = find_duplicates(X)
    if duplicates.n_duplicates:
        excluded = "" if metric == "ip" else ": zero distances are excluded from TwoNN, MLE and LID"
        copies, groups = duplicates.n_duplicates, duplicates.n_groups
        notes.append(
            f"{copies:,} duplicate vector{'s' if copies != 1 else ''} (cop"
            f"{'ies' if copies != 1 else 'y'} of {groups:,} distinct vector"
            f"{'s' if groups != 1 else ''}){excluded}"
        )

    _cancel_check(progress, 0.05, "isotropy: how the variance spreads over directions")
    m = moments(X)
    eigenvalues = m.covariance_eigenvalues()
    spectrum = pca_spectrum_from_eigenvalues(eigenvalues, n=n)
    total, sq, count = unit_sum(X)  # as average_cosine, without validating X again
    avg_cos = average_cosine_of_sums(total, sq, count)
    n_zero = n - count
    if n_zero:
        notes.append(f"{n_zero:,} zero vectors: left out of the average cosine")
    _cancel_check(progress, 0.35, "isotropy: is there a dominant direction?")
    partition = partition_isotropy_from(X, m)
    notes.append("partition isotropy on the raw (not normalised) vectors")
    # IsoScore and effective rank come from all n rows (the moments above), so the reference
    # is an isotropic Gaussian of n rows.
    iso_reference, rank_reference = isotropic_reference(n, d, seed=seed)

    _cancel_check(progress, 0.6, "intrinsic dimension: how many directions the data vary in")
    distances = np.asarray(graph.distances)[:, :id_k]
    if metric == "ip":
        empty = np.empty(0)
        two = TwoNN(np.nan, np.nan, empty, empty.copy(), 0, 0, 0)
        mle = MLEDimension(np.nan, np.full(n, np.nan), id_k, n)
        lid = np.full(n, np.nan)
        notes.append(
            "TwoNN, MLE and LID are not defined on an inner-product graph (1 - <a, b> is not a "
            "distance and can be negative): use the cosine metric for them"
        )
    else:
        two = twonn(distances, metric=metric)
        mle = mle_dimension(distances, k=id_k, metric=metric)  # id_k >= 2 since n >= 3
        lid = local_intrinsic_dimension(distances, k=id_k, metric=metric)
        if metric == "cosine":
            notes.append(
                "TwoNN, MLE and LID use the chord distance sqrt(2(1 - cos)) of the cosine graph"
            )
        if two.n_dropped:
            notes.append(
                f"TwoNN left out {two.n_dropped:,} points whose nearest neighbour is at distance 0"
            )
        if mle.n_undefined:
            notes.append(
                f"MLE and LID are undefined (left out) for {mle.n_undefined:,} points with "
                "too few distinct neighbours"
            )
    lid_stats = lid_summary(lid)

    _cancel_check(progress, 0.7, "hubness: how often each item is someone's neighbour")
    hub = hubness(np.asarray(graph.indices)[:, :k])

    _cancel_check(progress, 0.75, "diffusion spectral entropy (DSE)")
    rows = sample_rows(n, DSE_MAX_N, seed)
    sample = X[rows]
    if metric == "cosine":
        sample = normalise_rows(sample)
    dse, sigma = dse_of_sample(sample.astype(np.float64), sigma=None, t=1)
    where = "the unit-normalised vectors" if metric == "cosine" else "the vectors"
    if rows.size < n:
        notes.append(f"DSE on a seeded sample of {rows.size:,} of {where}")
    else:
        notes.append(f"DSE on all {n:,} of {where}")
    method = str(getattr(graph, "method", "exact"))
    recall = float(getattr(graph, "recall", 1.0))
    if method != "exact":
        notes.append(
            f"neighbours from an approximate ({method}) graph, measured recall {recall:.3f}"
        )

    values: dict[str, float | int | str] = {
        "isoscore": isoscore_from_eigenvalues(eigenvalues),
        "isoscore_reference": iso_reference,
        "avg_cosine": float(avg_cos),
        "partition_isotropy": partition,
        "effective_rank": effective_rank_from_eigenvalues(eigenvalues),
        "effective_rank_reference": rank_reference,
        "pca_n90": spectrum.n90,
        "pca_n95": spectrum.n95,
        "pca_n99": spectrum.n99,
        "participation_ratio": spectrum.participation_ratio,
        "twonn": float(two.dimension),
        "twonn_mle": float(two.dimension_mle),
        "mle": float(mle.dimension),
        "lid_median": float(lid_stats["median"]),
        "lid_mean": float(lid_stats["mean"]),
        "dse": float(dse),
        "dse_ceiling": math.log2(rows.size),
        "hubness_skew": float(hub.skewness),
        "n_duplicates": duplicates.n_duplicates,
        "n_zero_vectors": int(n_zero),
        "n_antihubs": hub.n_antihubs,
        "max_k_occurrence": int(hub.k_occurrence.max()),
        "n": int(n),
        "dim": int(d),
        "k": int(k),
        "id_k": int(id_k),
        "metric": metric,
        "graph_method": method,
        "graph_recall": recall,
        "dse_sigma": float(sigma),
        "dse_n": int(rows.size),
    }
    if progress is not None:
        progress(1.0, "scorecard ready")
    return Scorecard(values, spectrum, two, mle, lid, hub, duplicates, tuple(notes))


# -- persistence ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorecardRequest:
    """The scorecard of a stored dataset: hubness at ``k`` on the ``metric`` graph."""

    dataset: DatasetInfo
    k: int
    metric: Metric
    seed: int = 0


class ScorecardSpec(ArtifactSpec[ScorecardRequest, Scorecard]):
    """Stored scorecards, computed on the dataset's shared neighbour graph."""

    kind = KIND
    result_type = Scorecard
    code_version = SCORECARD_CODE_VERSION

    def key(self, request: ScorecardRequest) -> tuple[Any, ...]:
        return (request.dataset.fingerprint, request.k, request.metric, request.seed)

    def describe(self, request: ScorecardRequest) -> dict[str, Any]:
        return {"k": request.k, "metric": request.metric, "seed": request.seed}

    def compute(
        self, store: Store, request: ScorecardRequest, progress: ProgressFn | None
    ) -> Scorecard:
        info = request.dataset
        width = min(max(request.k, ID_K), info.n - 1)
        graph = get_or_build_graph(
            store, info.id, k=width, metric=request.metric, progress=stage(progress, 0.0, 0.5)
        )
        X = store.load_vectors(info.id)
        card = compute_scorecard(
            X, graph, k=request.k, seed=request.seed, progress=stage(progress, 0.5, 1.0)
        )
        if progress is not None:
            progress(1.0, "scorecard ready")
        return card

    def label(self, request: ScorecardRequest) -> str:
        return f"Geometry scorecard of {request.dataset.name}"


SCORECARDS = ScorecardSpec()


def scorecard_request(
    store: Store, dataset_id: int, *, k: int = 10, metric: str = "cosine"
) -> ScorecardRequest:
    """The scorecard request for these settings, validated."""
    metric = check_metric(metric)
    info = store.get_dataset(dataset_id)
    if info.n < 3:
        raise InvalidInputError(f"the geometry scorecard needs at least 3 vectors, got {info.n}")
    return ScorecardRequest(info, check_k(k, info.n - 1), metric)


def scorecard_key(store: Store, dataset_id: int, *, k: int = 10, metric: str = "cosine") -> str:
    """The fingerprint (artifact and job key) of the scorecard these settings ask for."""
    return fingerprint(SCORECARDS, scorecard_request(store, dataset_id, k=k, metric=metric))


def get_or_compute_scorecard(
    store: Store,
    dataset_id: int,
    *,
    k: int = 10,
    metric: str = "cosine",
    run: bool = True,
    progress: ProgressFn | None = None,
) -> Scorecard | None:
    """The dataset's stored scorecard, or compute it (on the shared graph) and store it.

    The graph comes from :func:`core.graph.get_or_build_graph` with ``max(k, 20)``
    neighbours, so it is the one every other consumer reads (built once, at least 150 wide).
    The result is stored through :mod:`core.artifacts` (kind ``"scorecard"``, keyed by the
    dataset fingerprint, k, metric, seed and code version) and read back identical. On a
    read-only store it (and the graph) is kept in the layer's bounded memory cache instead.

    Parameters
    ----------
    store : Store
    dataset_id : int
    k : int
        Neighbours per point for hubness.
    metric : {"cosine", "l2", "ip"}
    run : bool
        False: only look; return None if nothing is stored.
    progress : callable(fraction, message) -> bool, optional
        Returning True cancels (raises :class:`core.errors.OperationCancelled`).

    Returns
    -------
    Scorecard or None
    """
    request = scorecard_request(store, dataset_id, k=k, metric=metric)
    return get_or_compute(store, SCORECARDS, request, progress=progress, run=run)
