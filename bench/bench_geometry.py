"""Geometry scorecard speed on 100k x 384, each estimator timed, against the peers on the same data.

Run (from the repository root, so ``core`` imports):
`.venv/bin/python bench/bench_geometry.py [--n 100000] [--dim 384] [--repeat 3]`
Other options: ``--peer-n 20000`` (rows for the peers that compute their own neighbours),
``--isoscore-python /tmp/isovenv/bin/python`` (an interpreter with torch and isoscore 2.0.1,
see tests/data/geometry/make_isoscore_reference.py; the row is skipped when it is missing),
``--no-peers``.

Data: ``core.demo.gaussian_mixture(n, dim, seed=0)`` and its 20-NN cosine graph from
``core.graph.build_knn_graph(X, k=20, metric="cosine")`` (the product's default method, about a
minute), both cached as .npy in the temp dir and built before any timing. Target (issue 5):
the whole scorecard, given the graph, in at most 5 s. Times are best of --repeat.

Peers:
* scikit-dimension 0.5.0 TwoNN and MLE (if installed): "given neighbours" feeds them the same
  graph distances (``TwoNN(dist=True)``, ``MLE().fit(precomputed_knn_arrays=...)``); "own
  neighbours" lets them search (TwoNN: chunked brute-force pairwise distances for d > 25;
  MLE: sklearn NearestNeighbors), which is O(n^2 d), so it runs on --peer-n rows and is
  compared with our exact graph build + estimator on the same rows.
* the isoscore package needs torch, which embscope does not install: it is timed in a
  subprocess of --isoscore-python on the same matrix (float32, as our port takes it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import embscope.core.geometry.intrinsic as intrinsic_mod
from embscope.core.demo import gaussian_mixture
from embscope.core.geometry.hubness import hubness
from embscope.core.geometry.intrinsic import (
    diffusion_spectral_entropy,
    find_duplicates,
    limit_blas_threads,
    local_intrinsic_dimension,
    mle_dimension,
    twonn,
)
from embscope.core.geometry.isotropy import (
    effective_rank_from_eigenvalues,
    isoscore,
    isoscore_from_eigenvalues,
    moments,
    partition_isotropy_from,
    pca_spectrum_from_eigenvalues,
    unit_sum,
)
from embscope.core.geometry.scorecard import compute_scorecard
from embscope.core.graph import GRAPH_CODE_VERSION, KnnGraph, build_knn_graph
from embscope.core.validation import normalise_rows

TARGET_S = 5.0
ISOSCORE_SCRIPT = """
import sys, time, numpy as np
from IsoScore.IsoScore import IsoScore
X = np.load(sys.argv[1])
best = 1e9
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); v = float(IsoScore(X)); best = min(best, time.perf_counter() - t)
print(best, v)
"""


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def cached_data(n: int, dim: int, cache: Path) -> tuple[np.ndarray, KnnGraph]:
    cache.mkdir(parents=True, exist_ok=True)
    x_path = cache / f"gm_{n}x{dim}.npy"
    if not x_path.exists():
        np.save(x_path, gaussian_mixture(n, dim, seed=0).vectors)
    X = np.load(x_path)
    stem = cache / f"graph_{n}x{dim}_cosine_k20_v{GRAPH_CODE_VERSION}"
    meta_path = stem.with_suffix(".json")
    if not meta_path.exists():
        print("building the 20-NN cosine graph once (cached for later runs) ...", flush=True)
        g = build_knn_graph(X, k=20, metric="cosine")
        np.save(f"{stem}_indices.npy", g.indices)
        np.save(f"{stem}_distances.npy", g.distances)
        meta_path.write_text(json.dumps({"method": g.method, "recall": g.recall, "s": g.seconds}))
    meta = json.loads(meta_path.read_text())
    graph = KnnGraph(
        np.load(f"{stem}_indices.npy"),
        np.load(f"{stem}_distances.npy"),
        "cosine",
        meta["method"],
        float(meta["recall"]),
    )
    print(
        f"graph: {meta['method']} k=20 cosine, recall {meta['recall']:.3f}, built in "
        f"{meta['s']:.1f} s (not timed below)"
    )
    return X, graph


def estimator_rows(X: np.ndarray, graph: KnnGraph, repeat: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    D = graph.distances
    with limit_blas_threads():
        rows.append(("find_duplicates", best(lambda: find_duplicates(X), repeat)[0]))
        t, m = best(lambda: moments(X), repeat)
        rows.append(("moments (one float64 pass: mean, X^T X)", t))
        t, ev = best(m.covariance_eigenvalues, repeat)
        rows.append(("covariance eigenvalues (d x d)", t))
        rows.append(
            ("isoscore (from eigenvalues)", best(lambda: isoscore_from_eigenvalues(ev), repeat)[0])
        )
        rows.append(
            (
                "effective_rank (from eigenvalues)",
                best(lambda: effective_rank_from_eigenvalues(ev), repeat)[0],
            )
        )
        rows.append(
            (
                "pca_spectrum (from eigenvalues)",
                best(lambda: pca_spectrum_from_eigenvalues(ev, n=len(X)), repeat)[0],
            )
        )
        rows.append(("average_cosine", best(lambda: unit_sum(X), repeat)[0]))
        rows.append(
            (
                "partition_isotropy (given moments)",
                best(lambda: partition_isotropy_from(X, m), repeat)[0],
            )
        )
        rows.append(("twonn", best(lambda: twonn(D, metric="cosine"), repeat)[0]))
        rows.append(
            ("mle_dimension k=20", best(lambda: mle_dimension(D, k=20, metric="cosine"), repeat)[0])
        )
        rows.append(
            (
                "local_intrinsic_dimension k=20",
                best(lambda: local_intrinsic_dimension(D, k=20, metric="cosine"), repeat)[0],
            )
        )
        rows.append(("hubness k=10", best(lambda: hubness(graph.indices[:, :10]), repeat)[0]))
        P = normalise_rows(X)
        rows.append(
            (
                "diffusion_spectral_entropy (2,000 sample)",
                best(lambda: diffusion_spectral_entropy(P), repeat)[0],
            )
        )
    return rows


def skdim_rows(X: np.ndarray, graph: KnnGraph, peer_n: int, repeat: int) -> list[str]:
    try:
        import skdim
    except ImportError:
        return ["scikit-dimension not installed: `pip install scikit-dimension` for its rows"]
    out = []
    D64 = graph.distances.astype(np.float64)
    chord = np.sqrt(2.0 * np.maximum(D64, 0.0))  # skdim wants Euclidean distances
    # Same BLAS thread limit for both sides (sklearn's distance blocks are BLAS too).
    with warnings.catch_warnings(), limit_blas_threads():
        warnings.simplefilter("ignore")
        t_ours, ours = best(lambda: twonn(graph.distances, metric="cosine"), repeat)
        t_peer, peer = best(lambda: skdim.id.TwoNN(dist=True).fit(chord[:, :2]), repeat)
        out.append(
            f"TwoNN given neighbours   ours {t_ours:7.3f} s ({ours.dimension:.4f})   skdim "
            f"{t_peer:7.3f} s ({peer.dimension_:.4f})   ratio {t_ours / t_peer:5.2f}x"
        )
        t_ours, ours = best(lambda: mle_dimension(graph.distances, metric="cosine"), repeat)
        t_peer, peer = best(
            lambda: skdim.id.MLE().fit(X, precomputed_knn_arrays=(chord, graph.indices)), 1
        )
        out.append(
            f"MLE given neighbours     ours {t_ours:7.3f} s ({ours.dimension:.4f})   skdim "
            f"{t_peer:7.3f} s ({peer.dimension_:.4f})   ratio {t_ours / t_peer:5.3f}x"
        )
        # Own neighbours: O(n^2 d) in skdim, so on the first peer_n unit-normalised rows.
        # Ours = exact graph build (what core.graph would do at this size) + the estimator.
        P = normalise_rows(X[:peer_n])

        def ours_twonn():
            return twonn(build_knn_graph(P, k=2, metric="l2", method="exact"))

        def ours_mle():
            return mle_dimension(build_knn_graph(P, k=20, metric="l2", method="exact"))

        t_ours, ours = best(ours_twonn, 1)
        t_peer, peer = best(lambda: skdim.id.TwoNN().fit(P), 1)
        out.append(
            f"TwoNN own neighbours ({peer_n:,} rows)  ours {t_ours:7.3f} s ({ours.dimension:.4f})"
            f"   skdim {t_peer:7.3f} s ({peer.dimension_:.4f})   ratio {t_ours / t_peer:5.3f}x"
        )
        t_ours, ours = best(ours_mle, 1)
        t_peer, peer = best(lambda: skdim.id.MLE().fit(P), 1)
        out.append(
            f"MLE own neighbours ({peer_n:,} rows)    ours {t_ours:7.3f} s ({ours.dimension:.4f})"
            f"   skdim {t_peer:7.3f} s ({peer.dimension_:.4f})   ratio {t_ours / t_peer:5.3f}x"
        )
    return out


def isoscore_row(X: np.ndarray, python: str, cache: Path, repeat: int) -> str:
    if not python or not Path(python).exists():
        return (
            "isoscore package: not timed (it needs torch; give --isoscore-python, an "
            "interpreter with torch==2.13.0 and isoscore==2.0.1)"
        )
    path = cache / "isoscore_input.npy"
    np.save(path, X)
    script = cache / "time_isoscore.py"
    script.write_text(ISOSCORE_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread, as our BLAS_THREADS
    res = subprocess.run(
        [python, str(script), str(path), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode != 0:
        return f"isoscore package failed: {res.stderr.strip()[-300:]}"
    t_peer, v_peer = (float(x) for x in res.stdout.split())
    with limit_blas_threads():
        t_ours, v_ours = best(lambda: isoscore(X), repeat)
    return (
        f"IsoScore (whole, from X)  ours {t_ours:7.3f} s ({v_ours:.8f})   isoscore 2.0.1 "
        f"(torch, 1 thread, subprocess) {t_peer:7.3f} s ({v_peer:.8f})   ratio "
        f"{t_ours / t_peer:5.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-n", type=int, default=20_000)
    ap.add_argument("--isoscore-python", default="/tmp/isovenv/bin/python")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    cache = Path(tempfile.gettempdir()) / "embscope-bench-geometry"
    X, graph = cached_data(args.n, args.dim, cache)
    n, d = X.shape
    print(f"data: gaussian_mixture {n:,} x {d} float32, best of {args.repeat}")

    print(
        "\nper estimator (BLAS limited to core.geometry.intrinsic.BLAS_THREADS = "
        f"{intrinsic_mod.BLAS_THREADS}):"
    )
    for name, t in estimator_rows(X, graph, args.repeat):
        print(f"  {name:44s} {t:7.3f} s")

    t_card, card = best(lambda: compute_scorecard(X, graph, k=10), args.repeat)
    saved = intrinsic_mod.BLAS_THREADS
    intrinsic_mod.BLAS_THREADS = None
    try:
        t_default, _ = best(lambda: compute_scorecard(X, graph, k=10), args.repeat)
    finally:
        intrinsic_mod.BLAS_THREADS = saved
    print(
        f"\nwhole scorecard (compute_scorecard, given the graph): {t_card:.3f} s "
        f"(target <= {TARGET_S:.0f} s: {'met' if t_card <= TARGET_S else 'MISSED'}); "
        f"with the BLAS default threads: {t_default:.3f} s"
    )
    print("notes:", json.dumps(card.to_json()["notes"]))
    for key in (
        "isoscore",
        "avg_cosine",
        "partition_isotropy",
        "effective_rank",
        "pca_n90",
        "twonn",
        "mle",
        "lid_median",
        "dse",
        "hubness_skew",
    ):
        print(f"  {key:20s} {card.values[key]}")

    if args.no_peers:
        return
    print("\npeers:")
    for line in skdim_rows(X, graph, min(args.peer_n, n), args.repeat):
        print("  " + line)
    print("  " + isoscore_row(X, args.isoscore_python, cache, args.repeat))


if __name__ == "__main__":
    main()
