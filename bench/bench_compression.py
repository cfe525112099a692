"""The default compression codecs on 100k x 384, 1,000 queries: quality and time.

Run (from the repository root, so ``core`` imports):
`.venv/bin/python bench/bench_compression.py [--n 100000] [--dim 384] [--queries 1000]`
Other options: ``--codecs int8,pq:48,...`` (default: ``core.compression.default_codecs(dim)``),
``--metric cosine``, ``--held-out``, ``--json out.json``, ``--faiss`` (also time faiss-cpu's
IndexPQ on the same data as a reference, when faiss is importable), ``--blas-threads 1``
(on a busy 2-core machine one OpenBLAS thread is often faster than two).

Data: ``core.demo.gaussian_mixture(n, dim, 12, seed=0)`` (unit rows, anisotropic). Everything
runs through ``core.compression.evaluate_codecs`` exactly as the dashboard calls it: exact
ground truth, then per codec fit + encode, compressed search of the top ``rescore·k``,
re-ranking, and Spearman's rho on 100k random pairs. Target: the whole run in at most 60 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from embscope.core.compression import default_codecs, evaluate_codecs
from embscope.core.demo import gaussian_mixture


def _faiss_pq(X: np.ndarray, rows: np.ndarray, m: int, truth: np.ndarray) -> None:
    try:
        import faiss
    except ImportError:
        print("faiss not importable: no reference row")
        return
    t0 = time.perf_counter()
    index = faiss.IndexPQ(X.shape[1], m, 8)  # L2 on unit rows, faiss's default
    index.train(X)
    index.add(X)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, found = index.search(X[rows], 11)
    search = time.perf_counter() - t0
    hits = [len(set(f[f != q][:10]) & set(t)) for f, t, q in zip(found, truth, rows, strict=True)]
    print(
        f"faiss IndexPQ m={m}: recall@10 {np.mean(hits) / 10:.3f}  (queries are database rows, "
        f"self dropped) train+add {fit:.1f} s, search {search:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--codecs", default=None)
    parser.add_argument("--metric", default="cosine")
    parser.add_argument("--held-out", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--faiss", action="store_true")
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="limit BLAS threads (default: as is)"
    )
    args = parser.parse_args()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")

    X = gaussian_mixture(args.n, args.dim, 12, seed=0).vectors
    codecs = args.codecs.split(",") if args.codecs else default_codecs(args.dim, n=args.n)
    print(
        f"data: gaussian_mixture({args.n}, {args.dim}, 12, seed=0); metric {args.metric}; "
        f"{args.queries} queries ({'held out' if args.held_out else 'database rows, self excluded'})"
    )
    t0 = time.perf_counter()
    report = evaluate_codecs(
        X,
        codecs,
        metric=args.metric,
        n_queries=args.queries,
        held_out=args.held_out,
        seed=0,
    )
    total = time.perf_counter() - t0
    k = report.k
    header = (
        f"{'codec':<18}{'bytes':>7}{'shared':>10}{f'recall@{k}':>11}{'rescored':>10}"
        f"{'recall@100':>12}{'spearman':>10}{'isoscore':>10}{'erank':>8}{'encode s':>10}"
        f"{'query s':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in report.results:
        r100 = f"{r.recall_100:.3f}" if r.recall_100 is not None else "-"
        print(
            f"{r.spec:<18}{r.bytes_per_vector:>7}{r.shared_bytes:>10}{r.recall:>11.3f}"
            f"{r.recall_rescored:>10.3f}{r100:>12}{r.spearman:>10.3f}{r.isoscore:>10.3f}"
            f"{r.effective_rank:>8.1f}{r.encode_seconds:>10.2f}{r.query_seconds:>9.2f}"
        )
    print(
        f"float32: isoscore {report.original_isoscore:.3f}, effective rank "
        f"{report.original_effective_rank:.1f} ({report.geometry_rows} sampled rows)"
    )
    print(f"exact float32 ground truth: {report.ground_truth_seconds:.2f} s")
    print(f"total: {total:.1f} s (target <= 60 s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB (the data alone: {X.nbytes / 2**20:.0f} MB)")
    for w in report.warnings:
        print(f"warning: {w}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**report.to_json(), "total_seconds": total}, fh, indent=1)
    if args.faiss:
        from embscope.core.index import exact_knn
        from embscope.core.validation import normalise_rows

        Xn = normalise_rows(X)
        Q = Xn[report.query_rows]
        truth, _ = exact_knn(Q, Xn, 10, metric="cosine", exclude=report.query_rows)
        pq = [s for s in codecs if s.startswith("pq:")]
        if pq:
            _faiss_pq(Xn, report.query_rows, int(pq[0].split(":")[1]), truth)


if __name__ == "__main__":
    main()
