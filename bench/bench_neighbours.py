"""Query latency and throughput through embscope's own query path, against raw hnswlib.

Run: `.venv/bin/python bench/bench_neighbours.py [--n 100000] [--dim 384] [--queries 1000]`.

The dataset is stored in a DuckDB file and queried the way the page and the CLI do it:
``NeighbourService.resolve(row=...)`` then ``.search(...)`` (validation, self left out by id,
true distances, ids looked up). Raw hnswlib is timed on the very same index object. The issue's
target at 100k x 384 for k = 10 at recall@10 >= 0.95: p50 <= 1 ms and p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from embscope.core.demo import gaussian_mixture
from embscope.core.demo_store import store_demo_dataset
from embscope.core.graph import recall_at_k
from embscope.core.index import exact_knn
from embscope.core.neighbours import DEFAULT_HNSW, NeighbourService
from embscope.core.store import Store
from embscope.core.validation import normalise_rows


def percentiles(times_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(times_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--efs", default="20,30,50,80,120")
    args = ap.parse_args()
    k, m = args.k, args.queries
    tmp = Path(tempfile.mkdtemp(prefix="embscope-bench-"))
    store = Store(tmp / "bench.duckdb")
    info = store_demo_dataset(store, gaussian_mixture(args.n, args.dim, seed=0), name="bench")
    service = NeighbourService(store)
    X = service.vectors(info.id)
    t0 = time.perf_counter()
    index = service.get_index(info.id, metric="cosine")
    build = time.perf_counter() - t0
    print(f"data: {args.n} x {args.dim} gaussian mixture, cosine, k = {k}, {m} queries")
    print(f"HNSW build M={DEFAULT_HNSW['M']} ef_construction={DEFAULT_HNSW['ef_construction']}: "
          f"{build:.1f} s (saved beside the database)")  # fmt: skip

    rows = np.sort(np.random.default_rng(1).choice(args.n, size=m, replace=False))
    P = normalise_rows(X)
    truth, _ = exact_knn(P[rows], P, k, metric="cosine", exclude=rows)
    raw = index._index  # the hnswlib.Index inside our HnswIndex

    print(f"{'ef':>4} {'recall@10':>9} {'ours p50':>9} {'ours p99':>9} {'raw p50':>8} "
          f"{'raw p99':>8} {'p50 ratio':>9} {'ours QPS':>9} {'raw QPS':>8}")  # fmt: skip
    chosen = None
    for ef in [int(e) for e in args.efs.split(",")]:
        got, ours, raws = [], [], []
        service.search(info.id, service.resolve(info.id, row=0), k=k, ef=ef)  # set ef, warm
        for r in rows:
            t = time.perf_counter()
            answer = service.search(info.id, service.resolve(info.id, row=int(r)), k=k, ef=ef)
            ours.append(time.perf_counter() - t)
            got.append(answer.rows)
        raw.set_ef(ef)
        for r in rows:
            t = time.perf_counter()
            raw.knn_query(X[r : r + 1], k=k + 1, num_threads=1)
            raws.append(time.perf_counter() - t)
        recall = recall_at_k(np.vstack(got), truth)
        t = time.perf_counter()
        index.query(X[rows], k, exclude=rows, ef=ef)
        ours_qps = m / (time.perf_counter() - t)
        raw.set_ef(ef)
        t = time.perf_counter()
        raw.knn_query(X[rows], k=k + 1, num_threads=2)
        raw_qps = m / (time.perf_counter() - t)
        (o50, o99), (r50, r99) = percentiles(ours), percentiles(raws)
        print(f"{ef:>4} {recall:>9.4f} {o50:>8.3f}ms {o99:>8.3f}ms {r50:>7.3f}ms {r99:>7.3f}ms "
              f"{o50 / r50:>8.2f}x {ours_qps:>9.0f} {raw_qps:>8.0f}")  # fmt: skip
        if chosen is None and recall >= 0.95:
            chosen = (ef, recall, o50, o99)
    if chosen:
        ef, recall, o50, o99 = chosen
        ok = "meets" if o50 <= 1 and o99 <= 5 else "MISSES"
        print(f"smallest ef with recall@10 >= 0.95: ef = {ef} (recall {recall:.4f}); "
              f"p50 {o50:.3f} ms, p99 {o99:.3f} ms: {ok} the target p50 <= 1 ms, p99 <= 5 ms")  # fmt: skip
    else:
        print("no ef reached recall@10 >= 0.95: widen --efs")
    store.close()


if __name__ == "__main__":
    main()
