"""Clusters on the map: how good (the stdlib demo against its module labels, beside k-means)
and how fast (100k x 384 and larger, given the shared graph), and filtered search at 3 %.

Run: `.venv/bin/python bench/bench_clusters.py [--n 100000 300000] [--data synthetic mixture]`.

1. Quality, on the 2,098 stdlib docstrings (real MiniLM embeddings, 51 modules): normalised
   mutual information of the clusters with the module labels, beside k-means on the raw
   (unit) vectors with the same number of clusters; and the share of clusters whose top
   keyword is in at least 20 % of the cluster's texts and at least twice as common there as
   in the whole set (for k-means the same keywords, c-TF-IDF on its clusters).
2. Speed: for each size, the shared graph is built first (timed apart), then the clustering
   (Leiden on the fuzzy graph, keywords, examples) through ``get_or_cluster``, in a fresh
   process-free store; peak memory of the whole run is printed by ``/usr/bin/time`` if you
   wrap it.
3. Filtered search: recall@10 of ``NeighbourService.search(where=...)`` against exact search
   over the matching rows, for a filter keeping 3 % of the rows (selective: answered exactly)
   and one keeping 30 % (through the HNSW index), with p50 latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def quality() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from embscope.core.clusters import cluster_keywords, get_or_cluster
    from embscope.core.demo import stdlib_docstrings
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.store import Store

    data = stdlib_docstrings()
    modules = data.metadata["module"].to_numpy()
    texts = data.metadata["text"].str.lower()

    def telling(labels: np.ndarray, keywords) -> float:
        good = 0
        for c, words in enumerate(keywords):
            if not words:
                continue
            inside = texts[labels == c].str.contains(words[0], regex=False).mean()
            overall = texts.str.contains(words[0], regex=False).mean()
            good += bool(inside >= 0.2 and inside >= 2 * overall)
        return good / max(len(keywords), 1)

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "q.duckdb") as store:
        info = store_demo_dataset(store, data)
        rows = []
        for resolution in (0.5, 1.0, 2.0):
            ours = get_or_cluster(store, info.id, resolution=resolution)
            k = ours.n_clusters
            km = KMeans(k, n_init=4, random_state=0).fit_predict(data.vectors)
            km_words = cluster_keywords(data.metadata["text"].to_numpy(object), km, k)
            rows.append(
                {
                    "resolution": resolution,
                    "clusters": k,
                    "NMI leiden": nmi(modules, ours.labels),
                    "NMI k-means": nmi(modules, km),
                    "telling leiden": telling(ours.labels, ours.keywords),
                    "telling k-means": telling(km, km_words),
                }
            )
    print("quality on the stdlib docstrings (2,098 texts, 51 modules)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def speed(n: int, kind: str, cache: Path) -> dict:
    from bench.real_set import bench_data
    from embscope.core.clusters import get_or_cluster
    from embscope.core.graph import get_or_build_graph
    from embscope.core.ingest import from_arrays
    from embscope.core.store import Store

    data, _, stem, desc = bench_data(kind, n, cache)
    X = np.load(data)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.duckdb") as store:
        info = store.add_dataset(from_arrays(X), name=stem, info={"metric": "cosine"})
        t = time.perf_counter()
        graph = get_or_build_graph(store, info.id, k=15, metric="cosine")
        graph_s = time.perf_counter() - t
        t = time.perf_counter()
        result = get_or_cluster(store, info.id)
        cluster_s = time.perf_counter() - t
    return {
        "data": desc, "n": n, "graph s": graph_s, "graph": graph.method,
        "clusters s": cluster_s, "clusters": result.n_clusters,
        "modularity": result.quality, "noise": result.noise,
    }  # fmt: skip


def filtered(n: int, cache: Path, queries: int = 200) -> list[dict]:
    from bench.real_set import bench_data
    from embscope.core.filters import one_of
    from embscope.core.index import exact_knn
    from embscope.core.ingest import from_arrays
    from embscope.core.neighbours import NeighbourService
    from embscope.core.store import Store

    data, _, stem, _ = bench_data("synthetic", n, cache)
    X = np.load(data)
    bucket = np.random.default_rng(0).integers(0, 100, X.shape[0])
    meta = pd.DataFrame({"bucket": bucket})
    out = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "f.duckdb") as store:
        info = store.add_dataset(from_arrays(X, metadata=meta), name=stem)
        service = NeighbourService(store)
        service.get_index(info.id, metric="cosine")
        rng = np.random.default_rng(1)
        for share in (3, 30):
            where = [one_of("bucket", list(range(share)))]
            allowed = np.flatnonzero(bucket < share)
            Xa = X[allowed] / np.linalg.norm(X[allowed], axis=1, keepdims=True)
            recalls, times = [], []
            for row in rng.choice(X.shape[0], queries, replace=False):
                query = service.resolve(info.id, row=int(row))
                t = time.perf_counter()
                got = service.search(info.id, query, k=10, metric="cosine", where=where)
                times.append(time.perf_counter() - t)
                q = query.vector / np.linalg.norm(query.vector)
                idx, _ = exact_knn(q.astype(np.float32), Xa, 11, metric="cosine")
                truth = [a for a in allowed[idx[0]] if a != row][:10]
                recalls.append(len(set(got.rows.tolist()) & set(truth)) / 10)
                assert set(got.rows.tolist()) <= set(allowed.tolist())
            out.append(
                {
                    "n": n, "filter keeps": f"{share} %", "answered by": got.backend,
                    "recall@10": float(np.mean(recalls)),
                    "p50 ms": float(np.median(times) * 1000),
                }
            )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--data", nargs="+", default=["synthetic", "mixture"])
    ap.add_argument("--filtered-n", type=int, default=1_000_000)
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    cache = Path(tempfile.gettempdir()) / "embscope-bench-clusters"
    cache.mkdir(exist_ok=True)
    if not args.skip_quality:
        quality()
    rows = [speed(n, kind, cache) for kind in args.data for n in args.n]
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.filtered_n:
        print()
        print(pd.DataFrame(filtered(args.filtered_n, cache)).to_string(index=False))


if __name__ == "__main__":
    main()
