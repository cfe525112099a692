"""Heat-geodesic layouts: ours (core.projections.heatgeo) against the reference ``heatgeo`` 0.0.1.

Run (from the repository root, so ``core`` imports):
`.venv/bin/python bench/bench_heatgeo.py [--sizes 500,2000,5000] [--no-reference] [--no-text]`

Ours runs four ways: each metric MDS path (``mds="reference"``: unit weights, steps 1 to 0.01,
the reference's s_gd2 call; ``mds="weighted"``: weights 1/d^2, steps to 0.1) with and without
the shortest-path completion (``complete``), everything else at its default.

Data: the Swiss roll of heatgeo's experiments (``SwissRollStretch``, docs/science.md §3.8: width 5,
noise 0.05, seed 42), whose true geodesics are the Euclidean distances of (arc length, height).
Both sides use the paper's settings: knn = 10, tau = "auto", 2-D. The reference runs
``HeatGeo(knn=10, tau="auto", order=32, n_pca=None, filter_method="mar").fit_transform(X)``
(alpha-decay graph, order-32 Chebyshev on the n x n identity, entropy knee on its 10-point grid,
classical MDS + s_gd2, dense n x n throughout); its ``dist`` is its distance matrix. Ours:
``build_knn_graph(X, k=150, metric="l2", method="exact")`` + ``heatgeo_layout(graph)`` (timed
together), and ``heat_geodesic_distances(graph)`` (all points landmarks, the exact matrix)
timed on its own for the distance-matrix column.

Every (method, size) runs in a fresh subprocess (``--worker``) so that its peak memory is its
own: "peak MB" is the growth of the maximum resident set size over the timed call (data,
imports and, for ours, numba's one-time compile / cache load excluded: a warm-up call on 300
points runs first). Scores (docs/science.md §5(a), heatgeo's ``knn_methods.py::corrs``): the mean
over rows of the per-row Spearman correlation with the true geodesics, of the distance matrix
("dist rho") and of the 2-D layout's Euclidean distances ("2-D rho"); above 2,000 points on
1,000 seeded rows against all columns. "ratio" is the reference's seconds over ours (layout).
"replaced" is the share of landmark pairs whose distance the completion replaced.

Then (unless ``--no-text``) the stdlib docstrings demo (2,098 all-MiniLM-L6-v2 vectors, cosine,
clustered by module): trustworthiness@10, kNN preservation@10 and kNN accuracy@10 (module) of
heat-geodesic (both MDS paths, completion on) against LargeVis and UMAP at their defaults, seed 0,
from one shared 150-wide exact graph.

The reference needs, installed with ``pip install --no-deps`` so that it cannot downgrade numpy /
scikit-learn (it pins numpy 1.23.5, scikit-learn 1.2.2, graphtools 1.5.3, PyGSP 0.5.1, yet runs
with the current ones): heatgeo==0.0.1 graphtools==2.1.0 PyGSP==0.6.1 s-gd2==1.8.1 kneed==0.9.0
tasklogger==1.2.0 Deprecated==1.3.1 wrapt==2.5.2 future==1.0.0. Without it the reference rows
are skipped, saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL_ROWS = 1000


def swiss_roll_stretch(n: int, *, noise: float = 0.05, width: float = 5.0, seed: int = 42):
    """heatgeo's ``SwissRollStretch``: points (n, 3) float32 and geodesic coordinates (n, 2)."""
    rs = np.random.RandomState(seed)
    t = 1.5 * np.pi * (1 + 2 * rs.rand(1, n))
    h = width * rs.rand(1, n)
    X = np.concatenate([t * np.cos(t), h, t * np.sin(t)]).T + noise * rs.randn(n, 3)
    arc = 0.5 * (t * np.sqrt(t * t + 1) + np.arcsinh(t))
    return X.astype(np.float32), np.concatenate([arc, h]).T


def row_spearman(D_rows: np.ndarray, G_rows: np.ndarray) -> float:
    """Mean per-row Spearman of two (m, n) blocks (average ranks)."""
    from scipy.stats import rankdata

    a, b = rankdata(D_rows, axis=1), rankdata(G_rows, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


def eval_rows(n: int) -> np.ndarray:
    if n <= 2000:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, EVAL_ROWS, replace=False))


def geodesic_rows(U: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.sqrt(((U[rows, None, :] - U[None, :, :]) ** 2).sum(-1))


def layout_rows(Y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    Y = Y.astype(np.float64)
    return np.sqrt(((Y[rows, None, :] - Y[None, :, :]) ** 2).sum(-1))


def distance_rows(D: np.ndarray, rows: np.ndarray) -> np.ndarray:
    D = np.array(D[rows], dtype=np.float64)
    D[np.arange(rows.size), rows] = 0.0  # the diagonal set to 0, as knn_methods.py does
    return D


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- workers


def run_reference(n: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    from heatgeo.embedding import HeatGeo

    X, U = swiss_roll_stretch(n)
    X = X.astype(np.float64)
    before = peak_mb()
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its tau and s_gd2 calls
        model = HeatGeo(knn=10, tau="auto", order=32, n_pca=None, filter_method="mar")
        Y = model.fit_transform(X)
    seconds = time.perf_counter() - t
    grown = peak_mb() - before
    rows = eval_rows(n)
    G = geodesic_rows(U, rows)
    return {
        "seconds": seconds,
        "peak_mb": grown,
        "tau": float(np.ravel(model.opt_tau)[0]),
        "dist_rho": row_spearman(distance_rows(model.dist, rows), G),
        "layout_rho": row_spearman(layout_rows(Y, rows), G),
    }


def run_ours(n: int, mds: str = "reference", complete: bool = True) -> dict:
    sys.path.insert(0, str(ROOT))
    from embscope.core.graph import build_knn_graph
    from embscope.core.projections.heatgeo import heat_geodesic_distances, heatgeo_embedding

    X, U = swiss_roll_stretch(n)
    warm = build_knn_graph(X[:300], k=30, metric="l2", method="exact")
    heatgeo_embedding(warm, n_landmarks=100)  # numba compile / cache load: not the method's cost
    heat_geodesic_distances(warm, landmarks=20)
    before = peak_mb()
    t = time.perf_counter()
    graph = build_knn_graph(X, k=150, metric="l2", method="exact")
    layout = heatgeo_embedding(graph, seed=0, mds=mds, complete=complete)
    seconds = time.perf_counter() - t
    grown = peak_mb() - before
    rows = eval_rows(n)
    G = geodesic_rows(U, rows)
    layout_rho = row_spearman(layout_rows(layout.coords, rows), G)
    out = {
        "seconds": seconds,
        "peak_mb": grown,
        "tau": layout.tau,
        "layout_rho": layout_rho,
        "replaced": layout.completed_pairs / max(layout.landmark_pairs, 1),
    }
    if mds == "reference" and complete:  # the distance matrix does not depend on either
        t = time.perf_counter()
        exact = heat_geodesic_distances(graph)
        out["dist_seconds"] = time.perf_counter() - t
        out["dist_rho"] = row_spearman(distance_rows(exact.distances, rows), G)
    return out


def run_text() -> list[dict]:
    """Heat-geodesic (both MDS paths) against LargeVis and UMAP on the stdlib docstrings."""
    sys.path.insert(0, str(ROOT))
    from embscope.core.demo import stdlib_docstrings
    from embscope.core.graph import build_knn_graph
    from embscope.core.projections.heatgeo import heatgeo_embedding
    from embscope.core.projections.largevis import largevis_layout
    from embscope.core.projections.quality import projection_quality
    from embscope.core.projections.umap_layout import umap_layout

    ds = stdlib_docstrings()
    X = ds.vectors
    labels = ds.metadata["module"].factorize()[0]
    graph = build_knn_graph(X, k=150, metric="cosine", method="exact")
    runs = {
        "heatgeo reference": lambda: heatgeo_embedding(graph, seed=0).coords,
        "heatgeo weighted": lambda: heatgeo_embedding(graph, seed=0, mds="weighted").coords,
        "largevis": lambda: largevis_layout(graph, X=X, seed=0),
        "umap": lambda: umap_layout(graph, seed=0),
    }
    out = []
    for name, run in runs.items():
        run()  # compile / cache load first: the time is the method's
        t = time.perf_counter()
        Y = run()
        seconds = time.perf_counter() - t
        q = projection_quality(Y, graph, X=X, k=10, labels=labels, sample=None).to_json()
        out.append({"method": name, "seconds": seconds, **q})
    return out


VARIANTS = {  # name: (mds, complete)
    "ref-path+compl": ("reference", True),
    "ref-path": ("reference", False),
    "weighted+compl": ("weighted", True),
    "weighted": ("weighted", False),
}


def worker(method: str, n: int) -> None:
    if method == "reference":
        out: dict | list = run_reference(n)
    elif method == "text":
        out = run_text()
    else:
        out = run_ours(n, *VARIANTS[method])
    print(json.dumps(out))


# ----------------------------------------------------------------------------- driver


def reference_available() -> tuple[bool, str]:
    proc = subprocess.run(
        [sys.executable, "-c", "import heatgeo.embedding"], capture_output=True, text=True
    )
    if proc.returncode == 0:
        return True, ""
    return False, (proc.stderr.strip().splitlines() or ["import failed"])[-1]


def launch(method: str, n: int, timeout: float) -> dict | list | str:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", method, str(n)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000,5000")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-text", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    use_ref = not args.no_reference
    if use_ref:
        use_ref, why = reference_available()
        if not use_ref:
            print(f"reference heatgeo not importable ({why}): its rows are skipped")
    print(
        f"{'N':>6} {'method':<15} {'seconds':>8} {'peak MB':>8} {'tau':>6} {'dist rho':>9} "
        f"{'2-D rho':>8} {'replaced':>9} {'ratio':>7}"
    )
    for n in sizes:
        ref = launch("reference", n, args.timeout) if use_ref else None
        results = [("reference", ref)] + [(v, launch(v, n, args.timeout)) for v in VARIANTS]
        for name, res in results:
            if res is None:
                continue
            if isinstance(res, str):
                print(f"{n:>6} {name:<15} failed: {res}")
                continue
            ratio = ""
            if name != "reference" and isinstance(ref, dict):
                ratio = f"{ref['seconds'] / res['seconds']:6.1f}x"
            dist = f"{res['dist_rho']:9.4f}" if "dist_rho" in res else f"{'':>9}"
            replaced = f"{res['replaced']:9.0%}" if "replaced" in res else f"{'':>9}"
            print(
                f"{n:>6} {name:<15} {res['seconds']:8.2f} {res['peak_mb']:8.0f} "
                f"{res['tau']:6.2f} {dist} {res['layout_rho']:8.4f} {replaced} {ratio:>7}"
            )
            if "dist_seconds" in res:
                print(
                    f"{'':>6} {'':<15} exact distance matrix (all points landmarks): "
                    f"{res['dist_seconds']:.2f} s"
                )
    if not args.no_text:
        text = launch("text", 0, args.timeout)
        if isinstance(text, str):
            print(f"stdlib docstrings: failed: {text}")
            return
        print(
            f"\nstdlib docstrings (2,098 x 384, cosine)\n{'method':<18} {'seconds':>8} "
            f"{'trust@10':>9} {'kNN pres.@10':>13} {'kNN acc.@10':>12}"
        )
        for row in text:
            print(
                f"{row['method']:<18} {row['seconds']:8.2f} {row['trustworthiness@10']:9.3f} "
                f"{row['knn_preservation@10']:13.3f} {row['knn_accuracy@10']:12.3f}"
            )


if __name__ == "__main__":
    main()
