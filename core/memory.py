"""Memory: what the machine has, what background jobs may use together, what each one needs.

* **The machine.** :func:`machine_memory` reads ``MemTotal`` and ``MemAvailable`` from
  ``/proc/meminfo`` and, in a container, the cgroup's limit (``memory.max``, cgroup v2; or
  ``memory/memory.limit_in_bytes``, v1) when it is lower.
* **The budget.** :func:`budget_bytes`: the memory the jobs of one server may use together,
  ``$EMBSCOPE_MEMORY_BUDGET_GIB`` when set (a number of GiB above 0; anything else is an
  :class:`~core.errors.InvalidInputError`, raised when the job runner is made and when
  ``embscope serve`` starts), else :data:`DEFAULT_BUDGET_SHARE` (75 %) of the machine's
  memory. The other quarter is the server itself (imports, DuckDB's page cache, the vectors
  and indexes the neighbour service keeps loaded, the pages' data).
* **What a job needs.** :func:`job_peak` gives the expected peak of one job, in bytes, from
  its kind and request (the dataset's ``n`` and ``d``, the neighbour count, the method); the
  per-kind functions below it say how. :class:`core.jobs.JobRunner` admits a job only when
  its peak fits what the running jobs leave of the budget.

The estimates are fits to peaks measured in fresh processes (growth of the peak resident set
over the job, cold DuckDB cache; 2 cores; Gaussian mixtures of 50,000 to 200,000 points at
d = 64 and 384, through the artifact layer as a job runs it; tests/core/test_memory.py keeps
the figures), checked against bench/bench_scale.py's peaks at 1M x 384 (docs/SCALE.md, less
the ~0.25 GiB of a fresh interpreter): each estimate is 0.95-2x the small measurements and
1.0-1.5x the million-point ones. They are meant to be a little above the truth, never far
below. What they count, with V = ``4 n d`` the bytes of the vectors:

* **Reading the vectors from the store** (batches straight into one array, DuckDB held to
  512 MB, its cache evicted after) peaks at V + DuckDB's buffers: about 1.4 V while that is
  below its limit, 512 MiB above (measured 693 MiB = 2.4 V at 200,000 x 384; about V + 0.5
  GiB at 1M x 384), and leaves about V resident. Every job that reads the vectors pays it;
  it is "the read" below.
* **A neighbour graph** (NN-descent above 50,000 points, exact below): the read +
  ``n (2,000 + 24 k)`` + :data:`GRAPH_CODE` (1M x 384, k = 30: 4.90 GiB estimated, 4.80
  measured; the recall check on 500 points holds a 500 x n block of distances).
* **LargeVis / UMAP layouts** (graph stored): the read + 80 / 120 bytes per (point,
  neighbour) (1M x 384, LargeVis k = 30 / UMAP k = 15: 4.23 / 4.00 GiB estimated, 3.94 /
  3.88 measured). A stored graph wider than the layout's k (150 up to 50,000 points; 30
  above) is read whole: 24 bytes per extra column.
* **A preview** (LargeVis or UMAP of a sample, the rest placed): the larger of the read and
  V held beside the sample's graph build or layout (the larger of those), + the sample's
  HNSW index and the coordinates (1M x 384, 50,000 sampled: 2.44 GiB estimated, 2.09
  measured).
* **PCA**: the read + 2 V + 1.3 KB per point (a float64 centred copy, the scores).
* **Clusters** (Leiden): 0.5 V + 350 bytes per (point, neighbour) of the 15-NN graph (the
  edge list handed to graspologic is Python tuples; 1M x 384: 5.67 GiB estimated, 4.11
  measured; 200,000 points take ~1.1 GiB at d = 64 as at 384).
* **HNSW index** (from the store's batches, the whole matrix never loaded): the read +
  ``n (8 M + 450)`` (1M x 384: 2.53 GiB estimated, 2.46 measured). **Geometry**: the read +
  ``n (300 + 20 k)`` (2.64 / 2.31 GiB). **Compression**: the read + 2 V of its sample (at most
  100,000 rows) + 160 MiB (2.44 / 2.10 GiB). **Heat-geodesic**: the read + V + the 150-wide
  graph + the ``n x L`` heat columns (twice) + ``L x L`` matrices.
* **An upload saved as a dataset** (``upload``: read, checked, appended to the store): V +
  500 bytes a row (ids, metadata) + twice the bytes of CSV/TSV/JSON files parsed + the larger
  of DuckDB's buffers while appending (4 V, at most 512 MiB) and, when the model is recognised
  from the file's texts, the sentence model loaded (:data:`TEXT_MODEL_LOAD`). Measured from
  Parquet at 100,000 x 384: 0.66-0.75 GiB (estimated 0.75), 200,000 x 64 / 384: 0.30 / 0.95
  (0.39 / 0.94); .npy 200,000 x 384: 0.83; CSV 100,000 x 64: 0.30 (0.36); 2,000 x 384 with
  the model recognised: 0.40 (0.44); bench_scale's 1M x 384 Parquet ingest 2.28 (2.46).
  ``text_upload`` (a table of texts embedded): V + 1,000 bytes a row + 4 x the file's bytes
  + the larger of the same buffers and the model embedding (:data:`TEXT_MODEL_EMBED`; 3,000
  short texts: 0.47-0.49 GiB, estimated 0.70).
* Every job adds :data:`JOB_OVERHEAD` (thread pools, BLAS buffers: the fits' intercepts
  were at most 64 MiB, the layouts measured with their numba code compiled before), a graph
  build :data:`GRAPH_CODE` too (its code compiled in the job: an intercept of ~450 MiB).

A job that may build the shared graph first (projections, clusters, geometry, ...) counts the
larger of the graph's peak and its own: it does not know whether another job stored the graph
meanwhile, and over-counting only makes it wait a little longer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embscope.core.errors import InvalidInputError

__all__ = [
    "BUDGET_ENV",
    "DEFAULT_BUDGET_SHARE",
    "ESTIMATED_KINDS",
    "GIB",
    "GRAPH_CODE",
    "JOB_OVERHEAD",
    "MIB",
    "TEXT_MODEL_EMBED",
    "TEXT_MODEL_LOAD",
    "MachineMemory",
    "budget_bytes",
    "clusters_peak",
    "compression_peak",
    "default_peak",
    "format_gib",
    "geometry_peak",
    "graph_peak",
    "graph_width",
    "index_peak",
    "job_peak",
    "layout_peak",
    "machine_memory",
    "preview_peak",
    "text_upload_peak",
    "upload_peak",
    "upload_text_bytes",
    "vectors_bytes",
]

GIB = 2**30
MIB = 2**20
#: Environment variable: the memory (GiB) the jobs of one server may use together.
BUDGET_ENV = "EMBSCOPE_MEMORY_BUDGET_GIB"
#: Without it: this share of the machine's memory (the rest is the server itself).
DEFAULT_BUDGET_SHARE = 0.75
#: The machine's memory when the system does not say (no /proc/meminfo, no sysconf).
ASSUMED_MACHINE = 8 * GIB
#: Added to every estimate: what any job costs beyond its arrays.
JOB_OVERHEAD = 64 * MIB
#: Added to a graph build: the compiled NN-descent and search code it loads and its thread
#: pools (the fit's intercept was about 450 MiB, against at most 64 MiB for the other kinds).
GRAPH_CODE = 384 * MIB
# Reading the vectors from the store (core.store.Store.load_vectors, iter_vectors): DuckDB's
# buffers beside the array, about 1.4 V while that is below its 512 MB limit, this much after.
_READ_BUFFERS = 512 * MIB
_READ_BUFFER_SHARE = 1.4

# What core.graph.stored_width does, repeated here because core/graph.py cannot be imported by
# this module (jobs.py imports it, and graph.py -> artifacts.py -> jobs.py); a test checks that
# graph_width agrees with core.graph.stored_width.
_EXACT_MAX_N = {"cosine": 50_000, "l2": 50_000, "ip": 20_000}
_EXACT_WIDTH = 150
_APPROX_MIN_WIDTH = 30
# The neighbour counts some kinds ask the graph for (core.clusters.GRAPH_NEIGHBOURS,
# core.geometry.scorecard.ID_K, core.projections.runs.QUALITY_K, the widest default of
# core.hubness_reduction.DEFAULT_NEIGHBOURS); checked by the same test.
_CLUSTER_K = 15
_GEOMETRY_MIN_K = 20
_QUALITY_K = 10
_HUBNESS_K = 30
_HNSW_M = 16
# core.compression.runs.COMPRESSION_SAMPLE: the rows codecs are compared on, at most.
_COMPRESSION_SAMPLE = 100_000
# core.projections.heatgeo_kernel's WORK_BUDGET and (MIN_LANDMARKS, MAX_LANDMARKS).
_HEAT_WORK = 2.0e9
_HEAT_LANDMARKS = (256, 2000)
#: The job kinds :func:`job_peak` has an estimate of its own for: every artifact kind (a test
#: checks that every kind in core has one) and the two kinds of upload (core/upload_jobs.py).
ESTIMATED_KINDS = frozenset({
    "knn_graph", "index", "projection", "clusters", "scorecard", "compression",
    "ef_diagnostics", "order_diagnostics", "comparison", "hubness_reduction",
    "projection_labels", "upload", "text_upload",
})  # fmt: skip
#: Loading a sentence model (its ONNX graph built in memory, an onnxruntime session), as an
#: upload's vectors are recognised (measured +370 MiB with 8 texts embedded).
TEXT_MODEL_LOAD = 384 * MIB
#: Embedding texts with it: the model and a batch of 32 texts of up to 256 tokens.
TEXT_MODEL_EMBED = 640 * MIB
# Files whose text is parsed into values (CSV, TSV, JSON): the parse holds about 2x their bytes.
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl")


@dataclass(frozen=True)
class MachineMemory:
    """This machine's memory as a process sees it, in bytes (None: the system did not say)."""

    total: int | None  # MemTotal, or the cgroup's limit when lower
    available: int | None  # MemAvailable, or what the cgroup leaves when lower


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _meminfo(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[name.strip()] = int(parts[0]) * (1024 if parts[-1] == "kB" else 1)
    except OSError:
        pass
    return out


def machine_memory(
    *, meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> MachineMemory:
    """Total and available memory: ``/proc/meminfo`` (else ``sysconf``), within the limit of
    the cgroup the process runs in (v2 ``memory.max`` / ``memory.current``, v1
    ``memory/memory.limit_in_bytes`` / ``memory.usage_in_bytes``) when that is lower."""
    info = _meminfo(meminfo)
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            total = None
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            available = None
    for limit_file, used_file in (
        (cgroup / "memory.max", cgroup / "memory.current"),
        (cgroup / "memory" / "memory.limit_in_bytes", cgroup / "memory" / "memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is None:
            continue
        # v1 says "no limit" with a huge number: min() leaves the machine's figure then.
        total = limit if total is None else min(total, limit)
        used = _read_int(used_file)
        if used is not None:
            room = max(limit - used, 0)
            available = room if available is None else min(available, room)
        break
    return MachineMemory(total, available)


def budget_bytes(
    environ: Mapping[str, str] | None = None, *, machine: MachineMemory | None = None
) -> int:
    """The memory the background jobs of one server may use together, in bytes.

    ``$EMBSCOPE_MEMORY_BUDGET_GIB`` (GiB, a number above 0, e.g. ``12`` or ``0.5``) when
    set, else :data:`DEFAULT_BUDGET_SHARE` of the machine's memory (:func:`machine_memory`;
    8 GiB assumed when the system does not say). A budget above the machine's memory is
    allowed (swap), but a job needing more than both is refused by the job runner.

    Raises
    ------
    InvalidInputError
        The variable is set to something that is not a finite number of GiB above 0.
    """
    env = os.environ if environ is None else environ
    text = env.get(BUDGET_ENV, "").strip()
    if text:
        try:
            gib = float(text)
        except ValueError:
            gib = math.nan
        if not math.isfinite(gib) or gib <= 0 or gib * GIB < 1:
            raise InvalidInputError(
                f"{BUDGET_ENV}={text!r} is not a number of GiB above 0: set it to the memory "
                "the background jobs may use together (e.g. 12 or 0.5), or unset it for "
                f"{DEFAULT_BUDGET_SHARE:.0%} of this machine's memory"
            )
        return int(gib * GIB)
    machine = machine_memory() if machine is None else machine
    return int(DEFAULT_BUDGET_SHARE * (machine.total or ASSUMED_MACHINE))


def format_gib(nbytes: float) -> str:
    """A memory figure for a message, in GiB: ``'3.4 GiB'``, ``'0.05 GiB'``, ``'<0.01 GiB'``."""
    gib = float(nbytes) / GIB
    if gib >= 0.095:
        return f"{gib:,.1f} GiB"
    if gib >= 0.005:
        return f"{gib:.2f} GiB"
    return "<0.01 GiB"


# -- estimates, in bytes ----------------------------------------------------------------------


def _count(value: Any, name: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def vectors_bytes(n: int, d: int) -> int:
    """V: the bytes of ``n`` float32 vectors of dimension ``d``."""
    return 4 * _count(n, "n") * _count(d, "d")


def _bytes(value: float) -> int:
    return int(math.ceil(value))


def _read(v: float) -> float:
    """The peak of reading ``v`` bytes of vectors from the store: the array and DuckDB's
    buffers (1.4 v, at most 512 MiB). What stays resident after is about v."""
    return v + min(_READ_BUFFER_SHARE * v, _READ_BUFFERS)


def graph_width(k: int, n: int, metric: str = "cosine") -> int:
    """How wide the shared graph is built when ``k`` neighbours of ``n`` points are asked for
    (:func:`core.graph.stored_width`): at least 150 where search is exact, else at least 30."""
    k, n = _count(k, "k", low=1), _count(n, "n")
    if metric not in _EXACT_MAX_N:
        raise InvalidInputError(f"unknown metric {metric!r}: use cosine, l2 or ip")
    floor = _EXACT_WIDTH if n <= _EXACT_MAX_N[metric] else _APPROX_MIN_WIDTH
    return max(1, min(max(k, floor), n - 1))


def graph_peak(n: int, d: int, k: int, *, method: str = "nndescent") -> int:
    """Building a ``k``-wide neighbour graph (``method``: ``nndescent``, ``exact``, ``cells``
    or ``hnsw``): the vectors read, the lists being built (their candidates, distances and
    flags) and the 500 x n distances of the recall check."""
    if method not in ("nndescent", "exact", "cells", "hnsw"):
        raise InvalidInputError(f"unknown graph method {method!r}")
    v = vectors_bytes(n, d)
    links = n * (8 * _HNSW_M + 64) if method == "hnsw" else 0
    per_point = 2000 + 24 * _count(k, "k", low=1)
    return _bytes(JOB_OVERHEAD + GRAPH_CODE + _read(v) + n * per_point + links)


def index_peak(n: int, d: int, *, backend: str = "hnsw", M: int = _HNSW_M) -> int:
    """Building a search index: HNSW from the store's batches (DuckDB's buffers, hnswlib's
    copy of the vectors, its links, locks and label map: 8 M + 450 bytes a point, fitted), the
    exact index from the vectors read and its normalised copy; Milvus from the vectors read
    (it holds its copy in its own process)."""
    v = vectors_bytes(n, d)
    if backend == "hnsw":
        return _bytes(JOB_OVERHEAD + _read(v) + n * (8 * _count(M, "M", low=2) + 450))
    if backend == "exact":
        return _bytes(JOB_OVERHEAD + _read(v) + v)
    if backend == "milvus":
        return _bytes(JOB_OVERHEAD + _read(v))
    raise InvalidInputError(f"unknown index backend {backend!r}: use hnsw, exact or milvus")


def _landmarks(n: int, given: Any) -> int:
    """Heat-geodesic's landmark count: as given, else what core.projections.heatgeo_kernel's
    work budget allows (multiply-adds over ~100 kernel entries per point at order ~48),
    256 to 2,000, at most n."""
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return min(given, n)
    auto = int(_HEAT_WORK / max(1, n * 100 * 48))
    return min(n, max(_HEAT_LANDMARKS[0], min(_HEAT_LANDMARKS[1], auto)))


def layout_peak(
    n: int, d: int, k: int, *, method: str, graph_k: int | None = None, landmarks: Any = None
) -> int:
    """A layout computed from a stored graph, scored after: ``pca``, ``largevis``, ``umap``
    or ``heatgeo``. ``k``: the neighbours per point it uses; ``graph_k``: the stored graph's
    width (read whole; default ``k``); ``landmarks`` (heat-geodesic) None: automatic."""
    v = vectors_bytes(n, d)
    k = _count(k, "k", low=1)
    wide = max(0, _count(graph_k if graph_k is not None else k, "graph_k") - k)
    read = 24 * n * wide  # the stored graph's columns beyond k, read and decoded
    if method == "pca":
        return _bytes(JOB_OVERHEAD + _read(v) + 2 * v + 1300 * n)
    if method == "largevis":
        return _bytes(JOB_OVERHEAD + _read(v) + 80 * n * k + read)
    if method == "umap":
        return _bytes(JOB_OVERHEAD + _read(v) + 120 * n * k + read)
    if method == "heatgeo":
        L = _landmarks(n, landmarks)
        return _bytes(JOB_OVERHEAD + _read(v) + v + 32 * n * k + read + 8 * n * L + 32 * L * L)
    raise InvalidInputError(f"unknown layout method {method!r}")


def preview_peak(
    n: int, d: int, k: int, *, method: str, sample: int, metric: str = "cosine"
) -> int:
    """A LargeVis or UMAP preview (core/projections/preview.py): every vector read, then,
    with them held (V), the larger of the sample's own graph build and its layout; and the
    sample's HNSW index for the placement and the coordinates; no graph of all ``n`` points.
    The parts measured above put together (measured whole: 721 MiB at 200,000 x 384, 2.09
    GiB at 1M x 384, estimated 1.25 and 2.44 GiB)."""
    m = min(_count(sample, "sample", low=2), n)
    width = graph_width(k, m, metric)
    own = max(
        graph_peak(m, d, width, method=_graph_method(m, metric)),
        layout_peak(m, d, min(k, m - 1), method=method, graph_k=width),
    )
    placed = vectors_bytes(m, d) + m * (8 * _HNSW_M + 64) + 64 * n
    v = vectors_bytes(n, d)
    return _bytes(max(JOB_OVERHEAD + _read(v), v + own) + placed)


def clusters_peak(n: int, d: int, k: int = _CLUSTER_K) -> int:
    """Leiden on the fuzzy graph of the ``k``-NN lists (its edge list is Python tuples),
    then each cluster's examples from the vectors."""
    return _bytes(JOB_OVERHEAD + 0.5 * vectors_bytes(n, d) + 350 * n * _count(k, "k", low=1))


def geometry_peak(n: int, d: int, k: int) -> int:
    """The scorecard on a stored graph ``k`` wide (isotropy, intrinsic dimension, hubness)."""
    return _bytes(JOB_OVERHEAD + _read(vectors_bytes(n, d)) + n * (300 + 20 * _count(k, "k")))


def compression_peak(n: int, d: int, n_queries: int = 1000) -> int:
    """Codecs compared one at a time on at most :data:`_COMPRESSION_SAMPLE` rows: the vectors
    read, then on the sample its copy and the prepared database (2 V of the sample), one
    codec's training and codes (160 MiB), the queries and their true neighbours."""
    q = _count(n_queries, "n_queries")
    sample = vectors_bytes(min(_count(n, "n"), _COMPRESSION_SAMPLE), d)
    return _bytes(
        JOB_OVERHEAD + 160 * MIB + _read(vectors_bytes(n, d)) + 2 * sample + q * (4 * d + 1000)
    )


def upload_peak(n: int, d: int, *, text_bytes: int = 0, recognise: bool = False) -> int:
    """Saving an upload of ``n`` vectors of dimension ``d`` as a dataset (core/upload_jobs.py):
    the vectors read (a Parquet column batch by batch into one array, a .npy file memory-mapped
    and copied once) with their ids and metadata, ``text_bytes`` of CSV/TSV/JSON parsed, then
    the larger of the model loaded to recognise the vectors (``recognise``) and DuckDB's
    buffers while they are appended (4 V, at most 512 MiB)."""
    v = vectors_bytes(n, d)
    parsed = 2 * _count(text_bytes, "text_bytes")
    write = max(min(4 * v, _READ_BUFFERS), TEXT_MODEL_LOAD if recognise else 0)
    return _bytes(JOB_OVERHEAD + v + 500 * n + parsed + write)


def text_upload_peak(n: int, d: int, *, text_bytes: int = 0) -> int:
    """A table of ``n`` texts (a file of ``text_bytes``) embedded with a model of dimension
    ``d`` and saved: the table held (its texts twice, as values and as a list), then the
    larger of the model embedding and DuckDB's buffers while the vectors are appended."""
    v = vectors_bytes(n, d)
    table = 4 * _count(text_bytes, "text_bytes") + 1000 * n
    return _bytes(JOB_OVERHEAD + v + table + max(min(4 * v, _READ_BUFFERS), TEXT_MODEL_EMBED))


def upload_text_bytes(paths: Any) -> int:
    """The bytes of the files in ``paths`` whose text is parsed (CSV, TSV, JSON; a missing file
    counts 0), for :func:`upload_peak`."""
    total = 0
    for path in paths:
        path = Path(path)
        if path.suffix.lower() in _TEXT_SUFFIXES:
            try:
                total += path.stat().st_size
            except OSError:
                continue
    return total


def default_peak(n: int, d: int) -> int:
    """A kind without its own estimate: the vectors read and three copies' worth of work."""
    v = vectors_bytes(n, d)
    return _bytes(JOB_OVERHEAD + _read(v) + 3 * v + 2000 * n)


def _graph_method(n: int, metric: str, method: str = "auto") -> str:
    """The method core.graph.build_knn_graph picks for ``auto``."""
    if method != "auto":
        return method
    exact = n <= _EXACT_MAX_N.get(metric, _EXACT_MAX_N["cosine"])
    if metric == "ip":
        return "exact" if exact else "hnsw"
    return "exact" if exact else "nndescent"


def _graph_first(n: int, d: int, k: int, metric: str) -> int:
    """The peak of building the shared graph a job may need first (``k`` asked)."""
    width = graph_width(k, n, metric)
    return graph_peak(n, d, width, method=_graph_method(n, metric))


def job_peak(kind: str, request: Any) -> int:
    """The expected peak memory of the job computing ``request`` (an artifact kind's request
    dataclass, e.g. :class:`core.graph.GraphRequest`), in bytes.

    Read from the request's fields (``dataset.n``, ``dataset.dim``, ``k``, ``metric``,
    ``method``, ``params``, ``sample``, ``other``); a kind without an estimate of its own gets
    :func:`default_peak` of its dataset, a request without a dataset 1 GiB. An upload's request
    (:mod:`core.upload_jobs`) has no dataset yet: its ``n``, ``dim``, ``text_bytes`` and
    ``loads_model`` are read.
    """
    if kind in ("upload", "text_upload"):  # core.upload_jobs: no dataset yet
        n, d = int(request.n), int(request.dim)
        if kind == "text_upload":
            return text_upload_peak(n, d, text_bytes=int(request.text_bytes))
        return upload_peak(n, d, text_bytes=int(request.text_bytes), recognise=request.loads_model)
    info = getattr(request, "dataset", None)
    if info is None:
        return GIB
    n, d = int(info.n), int(info.dim)
    metric = str(getattr(request, "metric", None) or "cosine")
    if metric not in _EXACT_MAX_N:
        metric = "cosine"
    k = max(1, int(getattr(request, "k", None) or _QUALITY_K))
    params: Mapping[str, Any] = getattr(request, "params", None) or {}
    if kind == "knn_graph":
        method = _graph_method(n, metric, str(getattr(request, "method", "auto")))
        return graph_peak(n, d, graph_width(k, n, metric), method=method)
    if kind == "index":
        backend = str(getattr(request, "backend", "hnsw"))
        M = int(params.get("M", _HNSW_M)) if backend == "hnsw" else _HNSW_M
        return index_peak(n, d, backend=backend, M=M)
    if kind == "projection":
        method = str(request.method)
        if method == "pca":  # reads a stored graph to score, never builds one
            return layout_peak(n, d, _QUALITY_K, method="pca")
        asked = int(params.get("n_neighbors") or (30 if method == "largevis" else 15))
        asked = max(asked, _QUALITY_K, _EXACT_WIDTH if method == "heatgeo" else 0)
        sample = min(n, int(params.get("preview_sample") or n))
        if params.get("preview") and sample < n:
            return preview_peak(n, d, asked, method=method, sample=sample, metric=metric)
        own = layout_peak(
            n, d, asked, method=method, graph_k=graph_width(asked, n, metric),
            landmarks=params.get("n_landmarks"),
        )  # fmt: skip
        return max(_graph_first(n, d, asked, metric), own)
    if kind == "clusters":
        return max(_graph_first(n, d, _CLUSTER_K, metric), clusters_peak(n, d))
    if kind == "scorecard":
        width = max(k, _GEOMETRY_MIN_K)
        return max(_graph_first(n, d, width, metric), geometry_peak(n, d, width))
    if kind == "compression":
        queries = int(getattr(request, "n_queries", 1000))
        return compression_peak(n, d, min(queries, n))
    if kind in ("ef_diagnostics", "order_diagnostics"):
        m = min(n, int(getattr(request, "sample", 0) or n))
        own = _bytes(
            JOB_OVERHEAD + _read(vectors_bytes(n, d)) + 3 * vectors_bytes(m, d)
            + m * (8 * _HNSW_M + 64)
        )  # fmt: skip
        lid = 0 if metric == "ip" else _graph_first(n, d, _GEOMETRY_MIN_K, metric)
        return max(lid, own)
    if kind == "comparison":
        other = request.other
        n_b, d_b = int(other.n), int(other.dim)
        both = [(n, d), (n_b, d_b)]
        return _bytes(
            JOB_OVERHEAD
            + sum(_read(vectors_bytes(m, e)) for m, e in both)
            + sum(m * (1300 + 24 * graph_width(k, m, metric)) for m, _ in both)
        )
    if kind in ("hubness_reduction", "projection_labels"):
        width = graph_width(max(k, _HUBNESS_K if kind == "hubness_reduction" else 1), n, metric)
        own = JOB_OVERHEAD + 40 * n * width
        return max(_graph_first(n, d, width, metric), own)
    return default_peak(n, d)
