"""The Python API: what the ``embscope`` command line does, for notebooks and scripts.

::

    import embscope

    db = embscope.open("my.duckdb")            # embscope.open(): the CLI's default database
    ds = db.ingest("vectors.parquet", name="mine", id_column="id")
    ds.neighbours(row=3, k=10)                 # == `embscope neighbours mine --row 3 --json`
    ds.project("umap", dims=2, seed=0)         # == `embscope project mine --method umap --json`
    ds.geometry(); ds.compress(["int8", "pq:48"]); ds.clusters(resolution=1.0)
    db.compare("mine", "other"); db.datasets()

:func:`open` and :meth:`Database.ingest` return handles; every query or computation returns
the same dict (same keys, same order) as the matching CLI command's ``--json``, because the
CLI is built on these methods. Results are stored in the database and reused, exactly as the
dashboard stores and reuses them. Bad input raises :class:`core.errors.InvalidInputError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.progress import ProgressFn
from embscope.core.stats import finite_or_none
from embscope.core.store import DatasetInfo, Store
from embscope.core.validation import check_metric, metric_record

if TYPE_CHECKING:
    from embscope.core.clusters import Clustering
    from embscope.core.compression.evaluate import CompressionReport
    from embscope.core.projections.runs import Projection

__all__ = ["Database", "Dataset", "Search", "open"]


def open(path: str | os.PathLike[str] | None = None, *, read_only: bool = False) -> Database:
    """Open (or create) an embscope database: ``path``, else ``$EMBSCOPE_DB``, else
    ``./embscope.duckdb``. Only one process can hold a database for writing at a time."""
    return Database(path, read_only=read_only)


def _summary(info: DatasetInfo) -> dict[str, Any]:
    return {"dataset": info.id, "name": info.name, "n": info.n, "dim": info.dim}


class Database:
    """An open embscope database (use as a context manager, or call :meth:`close`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False):
        self.store = Store(path, read_only=read_only)
        self._service: Any = None

    @property
    def path(self) -> Path:
        """The database file."""
        return Path(self.store.path)

    @property
    def neighbour_service(self) -> Any:
        """The :class:`core.neighbours.NeighbourService` of this database (made on first use)."""
        if self._service is None:
            from embscope.core.neighbours import NeighbourService

            self._service = NeighbourService(self.store)
        return self._service

    def close(self) -> None:
        """Close the database (handles made from it stop working)."""
        self.store.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"embscope.Database({str(self.path)!r})"

    # -- datasets ---------------------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        """``[{"dataset", "name", "n", "dim", "metric"}, ...]``: ``embscope datasets --json``."""
        return [Dataset(self, d).summary() for d in self.store.list_datasets()]

    def dataset(self, ref: int | str) -> Dataset:
        """The dataset with this integer id or exact name."""
        return Dataset(self, self.store.get_dataset(ref))

    def ingest(
        self,
        file: str | os.PathLike[str],
        *,
        metadata: str | os.PathLike[str] | None = None,
        name: str | None = None,
        id_column: str | None = None,
        vector_column: str | None = None,
        model: str | None = None,
        metric: str | None = None,
        text_column: str | None = None,
        progress: ProgressFn | None = None,
    ) -> Dataset:
        """Store a file of vectors (and a metadata file) as a new dataset: ``embscope ingest``.

        ``metric`` (cosine, l2, ip) is recorded with it and becomes every later computation's
        default; None: guessed from the vectors (:func:`core.validation.guess_metric`), the
        reason recorded beside it. ``text_column``: the file is a table of texts (CSV, TSV,
        Parquet, JSONL) with no vectors: each text of that column is embedded with ``model``
        (default all-MiniLM-L6-v2, or wordllama/l2_supercat_256: ``SUPPORTED_MODELS``, run
        offline) and the table kept as metadata
        (:func:`core.text_ingest.read_texts`). The handle's :meth:`Dataset.ingest_report` is
        ``ingest --json``.
        """
        from embscope.core.ingest import read_dataset

        path = Path(file)
        if not path.is_file():
            raise InvalidInputError(f"no such file: {file}")
        if metric is not None:
            metric = check_metric(metric)
        if text_column is not None:
            return self._ingest_texts(
                path, text_column=text_column, model=model, name=name, id_column=id_column,
                metric=metric, others=(metadata, vector_column), progress=progress,
            )  # fmt: skip
        meta = None
        if metadata is not None:
            meta = Path(metadata)
            if not meta.is_file():
                raise InvalidInputError(f"no such metadata file: {metadata}")
        parsed = read_dataset(
            path, metadata_path=meta, id_column=id_column, vector_column=vector_column
        )
        extra: dict[str, Any] = metric_record(parsed.vectors, metric)
        if model is not None:
            from embscope.core.text_model import canonical_model_name

            model = model.strip()
            if not model:
                raise InvalidInputError("model is empty: give the name of the embedding model")
            # Any name is recorded; text queries work for the ones embscope can run offline.
            extra["model"] = canonical_model_name(model) or model
        info = self.store.add_dataset(parsed, name=path.stem if name is None else name, info=extra)
        return Dataset(self, info, warnings=parsed.warnings)

    def _ingest_texts(
        self,
        path: Path,
        *,
        text_column: str,
        model: str | None,
        name: str | None,
        id_column: str | None,
        metric: str | None,
        others: tuple[Any, Any],
        progress: ProgressFn | None,
    ) -> Dataset:
        from embscope.core.text_ingest import DEFAULT_TEXT_MODEL, read_texts, texts_info
        from embscope.core.text_model import canonical_model_name

        if any(o is not None for o in others):
            raise InvalidInputError(
                "a table of texts holds its own metadata and no vectors: give no metadata "
                "file or vector column with a text column"
            )
        model = (model or DEFAULT_TEXT_MODEL).strip()
        model = canonical_model_name(model) or model
        parsed = read_texts(
            path, text_column=text_column, model=model, id_column=id_column, progress=progress
        )
        extra = texts_info(parsed, model=model, text_column=text_column, metric=metric)
        info = self.store.add_dataset(parsed, name=path.stem if name is None else name, info=extra)
        return Dataset(self, info, warnings=parsed.warnings)

    def add(
        self,
        vectors: Any,
        *,
        name: str,
        metadata: pd.DataFrame | None = None,
        id_column: str | None = None,
        metric: str | None = None,
    ) -> Dataset:
        """Store vectors already in memory (float (n, d)) and an optional metadata frame;
        ``metric`` as for :meth:`ingest`."""
        from embscope.core.ingest import from_arrays

        if metric is not None:
            metric = check_metric(metric)
        parsed = from_arrays(vectors, metadata=metadata, id_column=id_column, source="python")
        info = self.store.add_dataset(parsed, name=name, info=metric_record(parsed.vectors, metric))
        return Dataset(self, info, warnings=parsed.warnings)

    def demo(
        self,
        *,
        if_empty: bool = False,
        with_map: bool = False,
        progress: ProgressFn | None = None,
    ) -> list[dict[str, Any]]:
        """Store the bundled demo datasets not stored yet: ``embscope demo --json``.

        ``with_map``: also lay out each new demo dataset that has texts with LargeVis (its
        default parameters) and find its clusters, so the dashboard opens on a named map.
        """
        from embscope.core.demo_store import load_demo_datasets

        if if_empty and not self.store.is_empty():
            return []
        added = load_demo_datasets(self.store)
        if with_map:
            for info in added:
                if (info.info or {}).get("text_column"):
                    ds = Dataset(self, info)
                    ds.projection("largevis", progress=progress)
                    ds.clustering(progress=progress)
        return [_summary(d) for d in added]

    def generate(
        self,
        kind: str,
        *,
        n: int | None = None,
        dim: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> Dataset:
        """Store a synthetic dataset (``"gaussian-mixture"`` or ``"swiss-roll"``):
        ``embscope generate``; its :meth:`Dataset.summary` is ``generate --json``."""
        from embscope.core.demo import GENERATORS
        from embscope.core.demo_store import store_demo_dataset

        if kind not in GENERATORS:
            raise InvalidInputError(
                f"unknown generator {kind!r}: use one of {', '.join(GENERATORS)}"
            )
        options: dict[str, Any] = {"seed": seed}
        if n is not None:
            options["n"] = n
        if dim is not None:
            if kind == "swiss-roll":
                raise InvalidInputError("dim does not apply to swiss-roll (it is 3-D)")
            options["dim"] = dim
        demo = GENERATORS[kind](**options)
        rows, width = demo.vectors.shape
        name = name or f"{kind} {rows}x{width} seed {seed}"
        return Dataset(self, store_demo_dataset(self.store, demo, name=name))

    def delete(self, ref: int | str) -> None:
        """Delete a dataset, everything computed from it, its index files and the Milvus
        collections of its indexes."""
        self.neighbour_service.delete_dataset(self.store.get_dataset(ref).id)

    def compare(
        self,
        a: int | str,
        b: int | str,
        *,
        k: int = 10,
        metric: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Two datasets over the items they share (matched by id): ``embscope compare --json``.

        ``metric`` defaults to the first dataset's recorded metric, else cosine.
        """
        from embscope.core.compare_runs import get_or_compare_datasets
        from embscope.core.projections.runs import default_metric

        info_a, info_b = self.store.get_dataset(a), self.store.get_dataset(b)
        result = get_or_compare_datasets(
            self.store, info_a.id, info_b.id, k=k, metric=metric or default_metric(info_a),
            progress=progress,
        )  # fmt: skip
        return result.to_json()


class Dataset:
    """One stored dataset of a :class:`Database`."""

    def __init__(self, db: Database, info: DatasetInfo, *, warnings: Sequence[str] = ()):
        self.db = db
        self.info = info
        # What reading the file warned about (only on a handle returned by ingest or add).
        self.warnings = tuple(warnings)

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def n(self) -> int:
        return self.info.n

    @property
    def dim(self) -> int:
        return self.info.dim

    def __repr__(self) -> str:
        return f"embscope.Dataset({self.id}, {self.name!r}, {self.n} x {self.dim})"

    def summary(self) -> dict[str, Any]:
        """``{"dataset", "name", "n", "dim", "metric"}`` (a row of ``datasets --json``)."""
        return {**_summary(self.info), "metric": self.info.metric}

    def ingest_report(self) -> dict[str, Any]:
        """``{"dataset", "name", "n", "dim", "warnings"}``, plus ``"model"`` when one is
        recorded (``--model``, or the model that embedded ``--text-column``): ``ingest
        --json``."""
        model = (self.info.info or {}).get("model")
        return {
            **_summary(self.info),
            "warnings": list(self.warnings),
            **({"model": model} if model else {}),
        }

    # -- the data -------------------------------------------------------------------------

    def vectors(self) -> np.ndarray:
        """float32 (n, d), in row order."""
        return self.db.store.load_vectors(self.id)

    def ids(self) -> np.ndarray:
        """The ids (object array of str), in row order."""
        return self.db.store.load_ids(self.id)

    def metadata(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The metadata (typed columns), in row order."""
        return self.db.store.load_metadata(self.id, columns=columns)

    def export(self, out: str | os.PathLike[str]) -> Path:
        """Write the dataset to ``.npy`` (vectors) or ``.parquet`` (ids, vectors, metadata)."""
        from embscope.core.export import export_dataset

        return export_dataset(self.db.store, self.id, out)

    def subset(self, where: Sequence[str], *, name: str) -> Dataset:
        """The items whose metadata match every filter expression (``core.filters``) saved as
        a new dataset (same vectors, ids and metadata; lineage recorded): ``embscope subset``."""
        from embscope.core.derive import save_subset

        info, _ = save_subset(self.db.store, self.id, list(where), name=name)
        return Dataset(self.db, info)

    def rename(self, name: str) -> Dataset:
        """Give the dataset a new unique name."""
        self.info = self.db.store.rename_dataset(self.id, name)
        return self

    # -- computations -----------------------------------------------------------------------

    def graph(
        self,
        *,
        k: int | None = None,
        metric: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Build (or reuse) the shared neighbour graph: ``embscope graph --json``; ``metric``
        defaults to the dataset's."""
        from embscope.core.graph import find_graph, get_or_build_graph, stored_width

        metric = metric or self.info.metric
        store = self.db.store
        k = k if k is not None else stored_width(1, self.n, metric)
        reused = find_graph(store, self.id, metric=metric, k=k) is not None
        graph = get_or_build_graph(store, self.id, k=k, metric=metric, progress=progress)
        return {
            "k": graph.k,
            "metric": graph.metric,
            "method": graph.method,
            "recall": graph.recall,
            "seconds": graph.seconds,
            "stored_k": int(graph.params.get("k", graph.k)),
            "recall_sample": int(graph.params.get("recall_sample", 0)),
            "reused": reused,
            "dataset": self.id,
        }

    def search(
        self,
        *,
        row: int | None = None,
        id: str | None = None,
        vector: Any = None,
        text: str | None = None,
        k: int = 10,
        metric: str | None = None,
        backend: str = "hnsw",
        ef: int | None = None,
        exact: bool = False,
        where: Sequence[str] | None = None,
        hubness_reduction: str = "none",
        milvus_uri: str | None = None,
    ) -> Search:
        """The query and its answer as objects (:meth:`neighbours` gives them as a dict).
        ``where``: filter expressions (``core.filters``, AND-ed); only matching items return.
        ``hubness_reduction``: ``"none"``, ``"csls"`` or ``"mp"`` (``core.hubness_reduction``:
        the nearest max(10 k, 100) candidates re-ranked; each neighbour gets its ``score``,
        its ``distance`` stays the true one; with ``exact`` the exact answer is re-ranked
        the same way). ``milvus_uri``: the Milvus of backend ``"milvus"`` (default
        ``$EMBSCOPE_MILVUS_URI``, else a Milvus Lite file beside the database)."""
        from embscope.core.hubness_reduction import check_method

        method = check_method(hubness_reduction)
        service = self.db.neighbour_service
        query = service.resolve(self.id, row=row, item_id=id, vector=vector, text=text)
        metric = metric or self.info.metric
        options = {
            "k": k, "metric": metric, "backend": backend, "ef": ef, "where": where,
            "hubness_reduction": method,
        }  # fmt: skip
        if milvus_uri is not None:
            if backend != "milvus":
                raise InvalidInputError("a Milvus uri only goes with backend milvus")
            options["uri"] = milvus_uri
        if exact:
            comparison = service.compare(self.id, query, **options)
            return Search(query, comparison.approximate, comparison)
        return Search(query, service.search(self.id, query, **options), None)

    def neighbours(
        self,
        *,
        row: int | None = None,
        id: str | None = None,
        vector: Any = None,
        text: str | None = None,
        k: int = 10,
        metric: str | None = None,
        backend: str = "hnsw",
        ef: int | None = None,
        exact: bool = False,
        where: Sequence[str] | None = None,
        hubness_reduction: str = "none",
        milvus_uri: str | None = None,
    ) -> dict[str, Any]:
        """Nearest neighbours of an item (``row`` or ``id``), a ``vector`` or a ``text``:
        ``embscope neighbours --json`` (with ``exact``: the exact answer and recall too; with
        ``where``: only items matching every filter expression, and ``filtered``, their count;
        with ``hubness_reduction`` ``"csls"`` or ``"mp"``: re-ranked, each neighbour with its
        ``score``, and ``hubness_reduction`` naming the method).
        The item itself is never its own neighbour."""
        return self.search(
            row=row, id=id, vector=vector, text=text, k=k, metric=metric, backend=backend,
            ef=ef, exact=exact, where=where, hubness_reduction=hubness_reduction,
            milvus_uri=milvus_uri,
        ).to_json()  # fmt: skip

    def geometry(
        self, *, k: int = 10, metric: str | None = None, progress: ProgressFn | None = None
    ) -> dict[str, Any]:
        """The isotropy, intrinsic-dimension and hubness scorecard: ``geometry --json``;
        ``metric`` defaults to the dataset's (an inner-product dataset is scored with cosine,
        the scorecard being defined for cosine and l2)."""
        from embscope.core.geometry.scorecard import get_or_compute_scorecard

        metric = metric or (self.info.metric if self.info.metric != "ip" else "cosine")
        card = get_or_compute_scorecard(
            self.db.store, self.id, k=k, metric=metric, progress=progress
        )
        assert card is not None
        return card.to_json()

    def diagnostics(
        self,
        *,
        k: int = 10,
        efs: Sequence[int] = (10, 20, 40, 80, 160),
        queries: int | None = None,
        seeds: int = 3,
        metric: str | None = None,
        label_column: str | None = None,
        progress: ProgressFn | None = None,
        backend: str = "hnsw",
        milvus_uri: str | None = None,
    ) -> dict[str, Any]:
        """ANN diagnostics on held-out queries: ``embscope diagnostics --json`` (recall and
        latency against ef with 95 % intervals, recall against LID, insertion order over
        ``seeds`` builds each), with the served index settings. Stored; a second call reads
        them back. ``backend="milvus"``: recall vs ef measured in a temporary collection of
        the Milvus at ``milvus_uri`` (default ``$EMBSCOPE_MILVUS_URI``)."""
        from embscope.core.diagnostics_runs import diagnostics_report

        return diagnostics_report(
            self.db.neighbour_service, self.id, metric=metric, k=k, efs=efs, n_queries=queries,
            seeds=seeds, label_column=label_column, progress=progress, backend=backend,
            milvus_uri=milvus_uri,
        )  # fmt: skip

    def projection(
        self,
        method: str,
        *,
        dims: int = 2,
        seed: int = 0,
        metric: str | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> Projection:
        """The stored :class:`core.projections.runs.Projection` (coordinates, scores, what the
        method chose), computed first if needed; :meth:`project` gives it as a dict."""
        from embscope.core.projections import runs

        return runs.compute_projection(
            self.db.store, self.id, method=method, dims=dims, seed=seed, metric=metric,
            params=params, progress=progress,
        )  # fmt: skip

    def project(
        self,
        method: str,
        *,
        dims: int = 2,
        seed: int = 0,
        metric: str | None = None,
        label_column: str | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """A 2-D or 3-D projection and its faithfulness scores: ``embscope project --json``.

        ``method``: pca, largevis, umap or heatgeo; ``params``: the method's parameters
        (bounded, see ``core.projections.params``; LargeVis and UMAP take ``preview=True``
        and ``preview_sample``: a sample laid out, the rest placed by their neighbours);
        ``label_column``: a categorical metadata column to score kNN accuracy on (default:
        the dataset's recorded one).
        :meth:`coordinates` gives the coordinates themselves.
        """
        from embscope.core.projections import runs

        if label_column is not None:
            runs.load_labels(self.db.store, self.info, label_column)  # refuse before work
        key = runs.projection_key(
            self.db.store, self.id, method=method, dims=dims, seed=seed, metric=metric,
            params=params,
        )  # fmt: skip
        reused = runs.load_projection(self.db.store, key, with_coords=False) is not None
        projection = self.projection(
            method, dims=dims, seed=seed, metric=metric, params=params, progress=progress
        )
        quality = dict(projection.quality)
        if label_column is not None:
            assert projection.coords is not None  # compute_projection returns them
            quality = runs.score_layout(
                self.db.store, self.info, projection.coords, metric=projection.metric,
                label_column=label_column, seed=projection.seed,
            )  # fmt: skip
        return {
            "method": projection.method,
            "dims": projection.dims,
            "seconds": projection.seconds,
            "quality": quality,
            "metric": projection.metric,
            "seed": projection.seed,
            "params": dict(projection.params),
            "chosen": dict(projection.chosen),
            "reused": reused,
            "dataset": self.id,
            # A preview (params preview=True): {"sample": m, "placed": n - m, ...}, else None.
            "preview": projection.preview,
        }

    def coordinates(
        self,
        method: str,
        *,
        dims: int = 2,
        seed: int = 0,
        metric: str | None = None,
        params: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """float32 (n, dims): the projection's coordinates in row order (computed and stored
        first if needed)."""
        coords = self.projection(
            method, dims=dims, seed=seed, metric=metric, params=params, progress=progress
        ).coords
        assert coords is not None
        return coords

    def clustering(
        self,
        *,
        method: str = "leiden",
        resolution: float | None = None,
        min_size: int | None = None,
        seed: int = 0,
        metric: str | None = None,
        text_column: str | None = None,
        progress: ProgressFn | None = None,
    ) -> Clustering:
        """The stored :class:`core.clusters.Clustering` (labels per row, keywords, examples),
        computed first if needed; :meth:`clusters` gives it as a dict."""
        from embscope.core.clusters import get_or_cluster

        result = get_or_cluster(
            self.db.store, self.id, method=method, resolution=resolution, min_size=min_size,
            seed=seed, metric=metric, text_column=text_column, progress=progress,
        )  # fmt: skip
        assert result is not None
        return result

    def clusters(
        self,
        *,
        method: str = "leiden",
        resolution: float | None = None,
        min_size: int | None = None,
        seed: int = 0,
        metric: str | None = None,
        text_column: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Clusters in the original space with keyword labels: ``embscope clusters --json``.

        ``resolution`` (higher: more, smaller clusters) and ``min_size`` (smaller groups are
        noise, cluster -1) are bounded (``core.clusters.CLUSTER_PARAMS``); ``text_column``
        names the column keywords are drawn from (default: the recorded text column, else
        the longest text column). The labels per row: :meth:`clustering`.
        """
        from embscope.core.artifacts import get_or_compute
        from embscope.core.clusters import CLUSTERINGS, cluster_request

        request = cluster_request(
            self.db.store, self.id, method=method, resolution=resolution, min_size=min_size,
            seed=seed, metric=metric, text_column=text_column,
        )  # fmt: skip
        reused = CLUSTERINGS.find(self.db.store, request) is not None
        result = get_or_compute(self.db.store, CLUSTERINGS, request, progress=progress)
        assert result is not None
        return {
            "method": result.method,
            "n_clusters": result.n_clusters,
            "noise": result.noise,
            "seconds": result.seconds,
            "clusters": result.summary(),
            "resolution": result.resolution,
            "min_size": result.min_size,
            "seed": result.seed,
            "metric": result.metric,
            "text_column": result.text_column,
            "modularity": result.quality,
            "reused": reused,
            "dataset": self.id,
        }

    def compression_report(
        self,
        codecs: Sequence[str] | None = None,
        *,
        queries: int = 1000,
        k: int = 10,
        rescore: int = 4,
        metric: str | None = None,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> CompressionReport:
        """The stored :class:`core.compression.evaluate.CompressionReport` (per-query overlap
        included), computed first if needed; :meth:`compress` gives its rows."""
        from embscope.core.compression import runs
        from embscope.core.projections.runs import default_metric

        metric = metric or default_metric(self.info)
        specs = runs.resolve_specs(codecs, dim=self.dim, n=self.n, metric=metric)
        return runs.get_or_evaluate(
            self.db.store, self.id, codecs=specs, metric=metric, n_queries=queries, k=k,
            rescore=rescore, seed=seed, progress=progress,
        )  # fmt: skip

    def compress(
        self,
        codecs: Sequence[str] | None = None,
        *,
        queries: int = 1000,
        k: int = 10,
        rescore: int = 4,
        metric: str | None = None,
        seed: int = 0,
        save: bool = False,
        progress: ProgressFn | None = None,
    ) -> list[dict[str, Any]]:
        """What each codec costs (size, recall, rank fidelity, geometry): ``compress --json``.

        ``codecs``: specs such as ``"int8"``, ``"pq:48"``, ``"pca:128"`` (default: a set
        covering every family); ``save``: store each compressed copy as a dataset (its id in
        ``"saved_dataset"``). Each row also says on how many items the codecs were compared
        (``"rows_compared"``: every item, or a seeded sample when ``"sampled_from"``, the
        dataset's size, is not null).
        """
        from embscope.core.compression import save_compressed_copy
        from embscope.core.projections.runs import default_metric

        metric = metric or default_metric(self.info)
        report = self.compression_report(
            codecs, queries=queries, k=k, rescore=rescore, metric=metric, seed=seed,
            progress=progress,
        )  # fmt: skip
        rows: list[dict[str, Any]] = report.rows()
        for row in rows:  # the rows compared: every item, or a seeded sample of them
            row.update(rows_compared=report.n, sampled_from=report.sampled_from)
        if save:
            for row in rows:
                copy = save_compressed_copy(
                    self.db.store, self.id, row["codec"], metric=metric, seed=seed
                )
                row["saved_dataset"] = copy.id
        return rows


@dataclass(frozen=True)
class Search:
    """A neighbour query and its answer (and the exact answer, when asked for)."""

    query: Any  # core.neighbours.Query: the vector searched for and its description
    answer: Any  # core.neighbours.Neighbours
    comparison: Any = None  # core.neighbours.QueryComparison with exact=True

    def to_json(self) -> dict[str, Any]:
        """``embscope neighbours --json``."""
        result: dict[str, Any] = self.answer.to_json()
        if self.comparison is not None:
            exact = self.comparison.exact.to_json()
            result["exact"] = exact["neighbours"]
            result["exact_latency_ms"] = exact["latency_ms"]
            result["recall"] = finite_or_none(self.comparison.recall)
        return result
