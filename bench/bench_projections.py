"""2-D projections end to end: umap-learn with its defaults against UMAP, LargeVis and
heat-geodesic on embscope's shared neighbour graph, with quality scored the same way for all.

Run (from the repository root, so ``core`` imports):
`.venv/bin/python bench/bench_projections.py [--n 100000] [--dim 384] [--quick]`
Other options: ``--clusters 12``, ``-k 150`` (shared graph width), ``--sample 2000`` (points
scored), ``--methods umap-learn,umap,umap-200,largevis,heatgeo`` (also ``umap-deterministic``).
``--quick`` is n = 20,000. The full run takes ~10 minutes at n = 100,000 on 2 cores.

Rows:

* ``umap-learn``: ``umap.UMAP(metric="cosine")`` with every other setting at its default, on X
  (its own NN-descent graph, unseeded so numba-parallel). "graph s" is its ``nearest_neighbors``
  call (timed by wrapping it), "layout s" the rest of ``fit_transform``.
* ``umap``: ``core.graph.build_knn_graph(X, k=150, metric="cosine")`` then
  ``core.projections.umap_layout.umap_layout(graph, dims=2, seed=0)``: seeded, umap-learn's
  optimiser on every core, ``default_epochs(n)`` epochs (50 at 100k; umap-learn runs 200).
* ``umap-200``: the same with umap-learn's 200 epochs.
* ``umap-deterministic``: the same with ``deterministic=True`` (umap-learn's seeded single thread).
* ``largevis``: the same graph, ``core.projections.largevis.largevis_layout(graph, dims=2,
  seed=0, X=X)`` (X only for its PCA start, as ``core.projections.runs`` calls it).
* ``heatgeo``: the same graph, ``core.projections.heatgeo.heatgeo_layout(graph, dims=2, seed=0)``.

Methods missing from core are skipped with a message. The shared graph is built once, in its
own subprocess (``--reuse-graph`` takes the one cached in the temp dir by an earlier run, with the
time recorded then); its build time is every graph-based row's "graph s".
Every layout runs in a fresh subprocess (``--worker``) so its peak RSS is its own: the process
first compiles its numba code on a tiny input ("jit s", paid once per server process), then runs
the timed layout. "total s" = graph s + layout s; "cold s" adds the JIT. Quality: trustworthiness@10
and 10-NN accuracy (leave-one-out, cluster labels of the generator) from
``core.projections.quality.projection_quality`` on the same seeded sample of points for every row,
against the shared cosine graph and X. Target (issue): UMAP and LargeVis each at most half
umap-learn's wall time, at trustworthiness >= 0.95 and kNN accuracy >= 0.97.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _workers  # bench/_workers.py (scripts run with bench/ on sys.path)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("umap-learn", "umap", "umap-200", "largevis", "heatgeo")
MODULES = {
    "umap-learn": "umap",
    "umap": "embscope.core.projections.umap_layout",
    "umap-200": "embscope.core.projections.umap_layout",
    "umap-deterministic": "embscope.core.projections.umap_layout",
    "largevis": "embscope.core.projections.largevis",
    "heatgeo": "embscope.core.projections.heatgeo",
}
TARGET_TRUST, TARGET_ACC = 0.95, 0.97


# ----------------------------------------------------------------------------- workers


def _load_graph(path: str):
    from embscope.core.graph import KnnGraph

    with np.load(path) as z:
        return KnnGraph(
            z["indices"], z["distances"], "cosine", str(z["method"]), float(z["recall"])
        )


def _tiny_graph():
    from embscope.core.graph import build_knn_graph

    X = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    return X, build_knn_graph(X, k=20, metric="cosine", method="exact")


def _layout(method: str, graph, X: np.ndarray, *, tiny: bool) -> np.ndarray:
    if method.startswith("umap"):
        from embscope.core.projections.umap_layout import umap_layout

        epochs = 20 if tiny else (200 if method == "umap-200" else None)
        return umap_layout(
            graph, dims=2, seed=0, n_epochs=epochs, deterministic=method == "umap-deterministic"
        )
    if method == "largevis":
        from embscope.core.projections.largevis import largevis_layout

        extra = {"samples_per_point": 50, "n_neighbors": graph.k} if tiny else {}
        return largevis_layout(graph, dims=2, seed=0, X=X, **extra)
    if method == "heatgeo":
        from embscope.core.projections.heatgeo import heatgeo_layout

        return heatgeo_layout(graph, dims=2, seed=0)
    raise ValueError(f"unknown method {method!r}")


def worker(spec: dict) -> dict:
    """Runs in a fresh subprocess: import, JIT warm-up, the timed layout, layout saved."""
    method = spec["method"]
    t = time.perf_counter()
    try:
        __import__(MODULES[method])
    except ImportError as exc:
        return {"skip": f"{MODULES[method]} not importable: {exc}"}
    import_s = time.perf_counter() - t
    X = np.load(spec["data"])
    res: dict = {"import_s": round(import_s, 2)}
    if method == "umap-learn":
        import umap
        import umap.umap_ as umap_mod

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            # force_approximation_algorithm: compile NN-descent too, not the small-data path.
            umap.UMAP(metric="cosine", n_epochs=20, force_approximation_algorithm=True).fit(
                _tiny_graph()[0]
            )
            res["jit_s"] = round(time.perf_counter() - t, 2)
            nn_time = []
            original = umap_mod.nearest_neighbors

            def timed(*args, **kwargs):
                t0 = time.perf_counter()
                out = original(*args, **kwargs)
                nn_time.append(time.perf_counter() - t0)
                return out

            umap_mod.nearest_neighbors = timed
            t = time.perf_counter()
            Y = umap.UMAP(metric="cosine").fit_transform(X)
            total = time.perf_counter() - t
        res["graph_s"] = round(sum(nn_time), 2)
        res["layout_s"] = round(total - sum(nn_time), 2)
    else:
        graph = _load_graph(spec["graph"])
        t = time.perf_counter()
        tX, tg = _tiny_graph()
        _layout(method, tg, tX, tiny=True)
        res["jit_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        Y = _layout(method, graph, X, tiny=False)
        res["layout_s"] = round(time.perf_counter() - t, 2)
    np.save(spec["out"], np.asarray(Y, dtype=np.float32))
    res["peak_mb"] = round(_workers.peak_mb())
    return res


def graph_worker(spec: dict) -> dict:
    from embscope.core.graph import build_knn_graph

    X = np.load(spec["data"])
    t = time.perf_counter()
    g = build_knn_graph(X, k=spec["k"], metric="cosine")
    seconds = time.perf_counter() - t  # recall measurement on a sample included
    np.savez(
        spec["graph"],
        indices=g.indices,
        distances=g.distances,
        method=g.method,
        recall=g.recall,
        seconds=seconds,
    )
    return {"graph_s": round(seconds, 2), "recall": g.recall, "method": g.method,
            "peak_mb": round(_workers.peak_mb())}  # fmt: skip


def run_worker(spec: dict) -> dict:
    return _workers.run_worker(__file__, spec)


# ----------------------------------------------------------------------------- main


def _f(x, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("-k", type=int, default=150)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="n = 20,000")
    ap.add_argument(
        "--reuse-graph", action="store_true", help="use the cached graph and its recorded time"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        out = graph_worker(spec) if spec["method"] == "graph" else worker(spec)
        print("RESULT " + json.dumps(out), flush=True)
        return

    from embscope.core.demo import gaussian_mixture
    from embscope.core.graph import GRAPH_CODE_VERSION
    from embscope.core.projections.quality import projection_quality

    n = 20_000 if args.quick else args.n
    d, k = args.dim, args.k
    cache = Path(tempfile.gettempdir()) / "embscope-bench-projections"
    cache.mkdir(exist_ok=True)
    stem = f"gm_{n}x{d}_c{args.clusters}"
    data, labels_path = cache / f"{stem}.npy", cache / f"{stem}_labels.npy"
    if not data.exists():
        demo = gaussian_mixture(n, d, args.clusters, seed=0)
        np.save(data, demo.vectors)
        np.save(labels_path, demo.metadata["cluster"].to_numpy())
    X, labels = np.load(data), np.load(labels_path)
    graph_path = cache / f"{stem}_graph_k{k}_cosine_v{GRAPH_CODE_VERSION}.npz"
    print(
        f"data: gaussian_mixture {n} x {d}, {args.clusters} clusters; shared graph k = {k}, "
        f"cosine; quality on {min(n, args.sample)} points, k = 10",
        flush=True,
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    graph_info: dict = {}
    if any(m != "umap-learn" for m in methods):
        if graph_path.exists() and args.reuse_graph:
            with np.load(graph_path) as z:
                graph_info = {"graph_s": float(z["seconds"]), "recall": float(z["recall"]),
                              "method": str(z["method"]), "note": "cached"}  # fmt: skip
        else:
            graph_info = run_worker(
                {"method": "graph", "data": str(data), "graph": str(graph_path), "k": k}
            )
            if "skip" in graph_info:
                sys.exit(f"graph build failed: {graph_info['skip']}")
        print(
            f"shared graph: {graph_info['method']}, {graph_info['graph_s']:.1f} s, "
            f"recall {graph_info['recall']:.4f} {graph_info.get('note', '')}",
            flush=True,
        )
    rows: list[dict] = []
    for method in methods:
        if method not in MODULES:
            sys.exit(f"unknown method {method!r}: use {', '.join(METHODS)}")
        if importlib.util.find_spec(MODULES[method]) is None:
            rows.append({"method": method, "skip": f"{MODULES[method]} not written yet"})
            print(f"{method}: skipped ({MODULES[method]} not written yet)", flush=True)
            continue
        out = cache / f"{stem}_{method}.npy"
        res = run_worker(
            {"method": method, "data": str(data), "graph": str(graph_path), "out": str(out)}
        )
        res["method"] = method
        if "skip" not in res:
            if method != "umap-learn":
                res["graph_s"] = graph_info["graph_s"]
            res["total_s"] = res["graph_s"] + res["layout_s"]
            res["out"] = str(out)
        print(f"{method}: {res}", flush=True)
        rows.append(res)

    from embscope.core.graph import KnnGraph

    graph = None
    if graph_path.exists():
        graph = _load_graph(str(graph_path))
    else:  # umap-learn alone: score against an exact-enough graph built here
        from embscope.core.graph import build_knn_graph

        graph = build_knn_graph(X, k=10, metric="cosine")
    graph = KnnGraph(graph.indices[:, :10].copy(), graph.distances[:, :10].copy(), "cosine",
                     graph.method, graph.recall)  # fmt: skip
    for r in rows:
        if "skip" in r:
            continue
        Y = np.load(r["out"])
        q = projection_quality(Y, graph, X=X, k=10, labels=labels, sample=args.sample, seed=0)
        r["trust"], r["acc"] = q.trustworthiness, q.knn_accuracy
        r["continuity"], r["preservation"] = q.continuity, q.knn_preservation

    base = next((r for r in rows if r["method"] == "umap-learn" and "skip" not in r), None)
    head = (
        f"{'method':<14} {'graph s':>8} {'layout s':>9} {'total s':>8} {'ratio':>6} "
        f"{'jit s':>6} {'cold s':>7} {'trust@10':>9} {'10-NN acc':>10} {'cont@10':>8} "
        f"{'pres@10':>8} {'peak MB':>8}  target"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        if "skip" in r:
            print(f"{r['method']:<14} skipped: {r['skip']}")
            continue
        ratio = r["total_s"] / base["total_s"] if base else None
        cold = r["total_s"] + r["jit_s"]
        ok = ""
        if base and r is not base:
            met = ratio <= 0.5 and r["trust"] >= TARGET_TRUST and r["acc"] >= TARGET_ACC
            ok = "met" if met else "missed"
        print(
            f"{r['method']:<14} {_f(r['graph_s']):>8} {_f(r['layout_s']):>9} "
            f"{_f(r['total_s']):>8} {_f(ratio, '.2f'):>6} {_f(r['jit_s']):>6} {_f(cold):>7} "
            f"{_f(r['trust'], '.4f'):>9} {_f(r['acc'], '.4f'):>10} "
            f"{_f(r['continuity'], '.4f'):>8} {_f(r['preservation'], '.3f'):>8} "
            f"{r['peak_mb']:>8}  {ok}"
        )
    print(
        f"\nratio = total s / umap-learn's total s; target: ratio <= 0.5, trust >= {TARGET_TRUST},"
        f" acc >= {TARGET_ACC}. cold s = total + jit s (first layout in a fresh process)."
    )


if __name__ == "__main__":
    main()
