"""2-D projections end to end: umap-learn with its defaults against UMAP, LargeVis and
heat-geodesic on embscope's shared neighbour graph, with quality scored the same way for all.

Run (from the repository root, so ``core`` imports):
`.venv/bin/python bench/bench_projections.py [--data mixture|real|synthetic] [--n N] [--seeds 0,1,2]`
Other options: ``--dim 384`` and ``--clusters 12`` (mixture), ``-k K`` (shared graph width; default what the product stores for the default LargeVis and UMAP:
150 up to 50,000 points, 30 above),
``--sample 2000`` (points scored), ``--methods umap-learn,umap,umap-200,largevis,heatgeo`` (also
``umap-deterministic``), ``--data-seed 0`` (which real subset / synthetic set), ``--no-cold``.
``--quick`` is n = 20,000. The mixture run takes ~10 minutes at n = 100,000 on 2 cores.
A method may carry parameters after a colon, e.g. ``--methods umap:n_epochs=100,largevis:samples_per_point=300``:
one row per setting, which draws the quality-time curve of a method around its defaults.

Data (``--data``):

* ``mixture`` (default, n = 100,000): ``core.demo.gaussian_mixture(n, dim, clusters, seed=0)``,
  labels = the generator's clusters. Every method saturates on it.
* ``real`` (n = 50,000 by default): a seeded subset (``--data-seed``) of the real set of
  ``bench/real_set.py`` (docstrings of the installed packages embedded with all-MiniLM-L6-v2;
  built and cached on first use), labels = top-level package.
* ``synthetic`` (n = 1,000,000 by default): ``real_set.synthetic_set(n, seed=data_seed)``, the
  calibrated scale-up of the whole real set (labels inherited), for sizes above the real set.

Rows:

* ``umap-learn``: ``umap.UMAP(metric="cosine")`` with every other setting at its default, on X
  (its own NN-descent graph, unseeded so numba-parallel: ``--seeds`` repeats it). "graph s" is
  its ``nearest_neighbors`` call (timed by wrapping it), "layout s" the rest of ``fit_transform``.
* ``umap``: ``core.graph.build_knn_graph(X, k=K, metric="cosine")`` (exact up to 50,000 points,
  NN-descent above; quality is scored against exact neighbours either way) then
  ``core.projections.umap_layout.umap_layout(graph, dims=2, seed=seed)``: embscope's port of
  umap-learn's optimiser on every core, ``default_epochs(n)`` epochs (300 above 10,000 points;
  umap-learn runs 200).
* ``umap-200``: the same with umap-learn's 200 epochs.
* ``umap-deterministic``: the same with ``deterministic=True`` (one thread).
* ``largevis``: the same graph, ``core.projections.largevis.largevis_layout(graph, dims=2,
  seed=seed, X=X)`` (X only for its PCA start, as ``core.projections.runs`` calls it).
* ``heatgeo``: the same graph, ``core.projections.heatgeo.heatgeo_layout(graph, dims=2, seed=seed)``.

Methods missing from core are skipped with a message. The shared graph is built once, in its
own subprocess (``--reuse-graph`` takes the one cached in the temp dir by an earlier run, with the
time recorded then); its build time is every graph-based row's "graph s".

Timing. Every layout runs in a fresh subprocess (``--worker``) so its peak RSS and its numba
compilation are its own. Per method, a **cold** process first runs with ``NUMBA_CACHE_DIR`` set to
a fresh, empty temporary folder (every ``cache=True`` function compiled and written there; the
shared graph is built cold the same way); then one **warm** process per seed runs with that folder
filled (what a restarted server sees: only the functions that are not ``cache=True`` compile
again). "layout s" is the warm process's layout call (after its imports), "total s" = graph s +
layout s, "warm s" = total s + the warm process's import time, "cold s" = the same for the cold
process (cold graph, imports, layout: what the first request after an install costs). "peak MB"
is the warm layout process's peak RSS.

Quality: trustworthiness@10, continuity@10, 10-NN preservation (``knn_preservation@10``) and
10-NN label accuracy (leave-one-out; the mixture's clusters, the real set's packages) from
``core.projections.quality.projection_quality`` on the same seeded sample of points for every
row, against the shared cosine graph and X. With several ``--seeds`` a cell is mean +- spread
(spread = half the range over the seeds); cold s is the first seed's. Target (issue 15): each
row at most half umap-learn's time, warm and cold (each against umap-learn's warm and cold), at
trustworthiness@10 no more than 0.005 below umap-learn's mean and 10-NN preservation no more
than 0.01 below. Label accuracy is reported, not targeted (the real set's packages are not
separable classes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _workers  # bench/_workers.py (scripts run with bench/ on sys.path)
import numpy as np
import real_set  # bench/real_set.py

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
TRUST_MARGIN, PRESERVATION_MARGIN, TIME_RATIO = 0.005, 0.01, 0.5


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


def _split(method: str) -> tuple[str, dict]:
    """``"umap:n_epochs=100"`` -> ("umap", {"n_epochs": 100}) (numbers parsed as numbers)."""
    name, _, rest = method.partition(":")
    params = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        params[key.strip()] = json.loads(value)
    return name, params


def _layout(method: str, graph, X: np.ndarray, *, seed: int) -> np.ndarray:
    method, params = _split(method)
    if method.startswith("umap"):
        from embscope.core.projections.umap_layout import umap_layout

        if method == "umap-200":
            params.setdefault("n_epochs", 200)
        return umap_layout(graph, dims=2, seed=seed, deterministic=method == "umap-deterministic",
                           **params)  # fmt: skip
    if method == "largevis":
        from embscope.core.projections.largevis import largevis_layout

        return largevis_layout(graph, dims=2, seed=seed, X=X, **params)
    if method == "heatgeo":
        from embscope.core.projections.heatgeo import heatgeo_layout

        return heatgeo_layout(graph, dims=2, seed=seed, **params)
    raise ValueError(f"unknown method {method!r}")


def worker(spec: dict) -> dict:
    """Runs in a fresh subprocess: import (timed), the timed layout, layout saved. Numba
    compiles inside the timed layout, from the cache in ``NUMBA_CACHE_DIR`` when it is filled."""
    method = spec["method"]
    t = time.perf_counter()
    try:
        __import__(MODULES[_split(method)[0]])
    except ImportError as exc:
        return {"skip": f"{MODULES[method]} not importable: {exc}"}
    X = np.load(spec["data"])
    res: dict = {"import_s": round(time.perf_counter() - t, 2)}
    if method == "umap-learn":
        import umap
        import umap.umap_ as umap_mod

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
        t = time.perf_counter()
        graph = _load_graph(spec["graph"])
        res["import_s"] = round(res["import_s"] + time.perf_counter() - t, 2)
        t = time.perf_counter()
        Y = _layout(method, graph, X, seed=spec["seed"])
        res["layout_s"] = round(time.perf_counter() - t, 2)
    np.save(spec["out"], np.asarray(Y, dtype=np.float32))
    res["peak_mb"] = round(_workers.peak_mb())
    return res


def graph_worker(spec: dict) -> dict:
    t = time.perf_counter()
    from embscope.core.graph import build_knn_graph

    X = np.load(spec["data"])
    import_s = time.perf_counter() - t
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
    return {"graph_s": round(seconds, 2), "import_s": round(import_s, 2), "recall": g.recall,
            "method": g.method, "peak_mb": round(_workers.peak_mb())}  # fmt: skip


def run_worker(spec: dict, *, numba_cache: str | None = None) -> dict:
    env = None
    if numba_cache is not None:
        env = dict(os.environ, NUMBA_CACHE_DIR=numba_cache)
    return _workers.run_worker(__file__, spec, env=env)


# ----------------------------------------------------------------------------- main


def _f(x, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def _cell(values: list, fmt: str) -> str:
    """Mean, and +- half the range when there are several values."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)}±{format((max(values) - min(values)) / 2, fmt)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("mixture", "real", "synthetic"), default="mixture")
    ap.add_argument("--n", type=int, help="points (mixture 100,000; real 50,000; synthetic 1M)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--data-seed", type=int, default=0, help="real subset / synthetic set seed")
    ap.add_argument("--seeds", default="0", help="layout seeds, e.g. 0,1,2")
    ap.add_argument(
        "-k", type=int, help="graph width (default: what the product builds for UMAP and LargeVis)"
    )
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="n = 20,000")
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-cache processes")
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

    from embscope.core.graph import GRAPH_CODE_VERSION, stored_width
    from embscope.core.projections.params import LARGEVIS_PARAMS, UMAP_PARAMS
    from embscope.core.projections.quality import projection_quality

    default_n = {"mixture": 100_000, "real": 50_000, "synthetic": 1_000_000}[args.data]
    args.n = 20_000 if args.quick else (args.n or default_n)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    cache = real_set.DATA_CACHE
    cache.mkdir(exist_ok=True)
    data, labels_path, stem, desc = real_set.bench_data(
        args.data, args.n, cache, dim=args.dim, clusters=args.clusters, data_seed=args.data_seed
    )
    X, labels = np.load(data), np.load(labels_path)
    n = X.shape[0]
    # The graph the product stores for the default LargeVis and UMAP (150 wide where search is
    # exact, 30 above), unless -k says otherwise.
    wanted = max(LARGEVIS_PARAMS.default("n_neighbors"), UMAP_PARAMS.default("n_neighbors"))
    k = args.k or stored_width(wanted, n, "cosine")
    graph_path = cache / f"{stem}_graph_k{k}_cosine_v{GRAPH_CODE_VERSION}.npz"
    print(
        f"data: {desc}; shared graph k = {k}, cosine; quality on {min(n, args.sample)} points, "
        f"k = 10; layout seeds {seeds}",
        flush=True,
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    cold = not args.no_cold
    graph_info: dict = {}
    if any(m != "umap-learn" for m in methods):
        if graph_path.exists() and args.reuse_graph:
            with np.load(graph_path) as z:
                graph_info = {"graph_s": float(z["seconds"]), "recall": float(z["recall"]),
                              "method": str(z["method"]), "note": "cached"}  # fmt: skip
        else:
            spec = {"method": "graph", "data": str(data), "graph": str(graph_path), "k": k}
            with tempfile.TemporaryDirectory(prefix="numba-cold-") as numba_dir:
                if cold:
                    first = run_worker(spec, numba_cache=numba_dir)
                    if "skip" in first:
                        sys.exit(f"graph build failed: {first['skip']}")
                graph_info = run_worker(spec, numba_cache=numba_dir)
            if "skip" in graph_info:
                sys.exit(f"graph build failed: {graph_info['skip']}")
            if cold:
                graph_info["cold_s"] = first["graph_s"] + first["import_s"]
        print(
            f"shared graph: {graph_info['method']}, {graph_info['graph_s']:.1f} s "
            f"(cold {_f(graph_info.get('cold_s'))} s), recall {graph_info['recall']:.4f} "
            f"{graph_info.get('note', '')}",
            flush=True,
        )
    rows: list[dict] = []
    for method in methods:
        name = _split(method)[0]
        if name not in MODULES:
            sys.exit(f"unknown method {method!r}: use {', '.join(METHODS)}")
        if importlib.util.find_spec(MODULES[name]) is None:
            rows.append({"method": method, "skip": f"{MODULES[name]} not written yet"})
            print(f"{method}: skipped ({MODULES[name]} not written yet)", flush=True)
            continue
        row: dict = {"method": method, "runs": []}
        with tempfile.TemporaryDirectory(prefix="numba-cold-") as numba_dir:
            for seed in [None, *seeds] if cold else seeds:
                tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in method)
                out = cache / f"{stem}_{tag}_s{seed}.npy"
                spec = {"method": method, "data": str(data), "graph": str(graph_path),
                        "out": str(out), "seed": seeds[0] if seed is None else seed}  # fmt: skip
                res = run_worker(spec, numba_cache=numba_dir)
                if "skip" in res:
                    row["skip"] = res["skip"]
                    break
                if method != "umap-learn":
                    res["graph_s"] = graph_info["graph_s"]
                res["total_s"] = res["graph_s"] + res["layout_s"]
                res["warm_s"] = res["total_s"] + res["import_s"]
                if seed is None:  # the cold process: empty numba cache
                    # umap-learn's graph is in its own process; the others add the cold graph's.
                    graph_cold = 0.0 if method == "umap-learn" else graph_info.get("cold_s", 0.0)
                    row["cold_s"] = (
                        graph_cold
                        + res["warm_s"]
                        - (0.0 if method == "umap-learn" else res["graph_s"])
                    )
                    print(f"{method} cold: {res}", flush=True)
                    continue
                res["seed"], res["out"] = seed, str(out)
                print(f"{method} seed {seed}: {res}", flush=True)
                row["runs"].append(res)
        rows.append(row)

    from embscope.core.graph import KnnGraph

    if graph_path.exists():
        graph = _load_graph(str(graph_path))
    else:  # umap-learn alone: score against an exact-enough graph built here
        from embscope.core.graph import build_knn_graph

        graph = build_knn_graph(X, k=10, metric="cosine")
    graph = KnnGraph(graph.indices[:, :10].copy(), graph.distances[:, :10].copy(), "cosine",
                     graph.method, graph.recall)  # fmt: skip
    if graph.method != "exact":
        # Score against the exact neighbours of the scored rows, not the approximate graph's.
        from embscope.core.index import exact_knn
        from embscope.core.projections.quality import sample_rows
        from embscope.core.validation import prepare_for_metric

        scored = sample_rows(n, args.sample, 0)
        P = prepare_for_metric(X, "cosine")
        exact_i, exact_d = exact_knn(P[scored], P, 10, metric="cosine", exclude=scored)
        graph.indices[scored], graph.distances[scored] = exact_i, exact_d
        del P
    for row in rows:
        for r in row.get("runs", []):
            Y = np.load(r["out"])
            q = projection_quality(Y, graph, X=X, k=10, labels=labels, sample=args.sample, seed=0)
            r["trust"], r["acc"] = q.trustworthiness, q.knn_accuracy
            r["continuity"], r["preservation"] = q.continuity, q.knn_preservation

    def col(row: dict, key: str) -> list:
        return [r[key] for r in row["runs"]]

    base = next((r for r in rows if r["method"] == "umap-learn" and r.get("runs")), None)
    base_total = float(np.mean(col(base, "total_s"))) if base else None
    wide = len(seeds) > 1
    w = 12 if wide else 8
    head = (
        f"{'method':<30} {'graph s':>{w}} {'layout s':>{w}} {'total s':>{w}} {'ratio':>6} "
        f"{'warm s':>{w}} {'cold s':>7} {'trust@10':>{w + 2}} {'cont@10':>{w + 2}} "
        f"{'pres@10':>{w + 2}} {'10-NN acc':>{w + 2}} {'peak MB':>{w}}  target"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for row in rows:
        if "skip" in row or not row["runs"]:
            print(f"{row['method']:<30} skipped: {row.get('skip', 'no run')}")
            continue
        total = float(np.mean(col(row, "total_s")))
        ratio = total / base_total if base_total else None
        ok = ""
        if base and row is not base:
            cold_ratio = (
                row["cold_s"] / base["cold_s"] if row.get("cold_s") and base.get("cold_s") else None
            )
            trust = np.mean(col(row, "trust")) - np.mean(col(base, "trust"))
            pres = np.mean(col(row, "preservation")) - np.mean(col(base, "preservation"))
            met = (
                ratio <= TIME_RATIO
                and (cold_ratio is None or cold_ratio <= TIME_RATIO)
                and trust >= -TRUST_MARGIN
                and pres >= -PRESERVATION_MARGIN
            )
            ok = ("met" if met else "missed") + f" (cold ratio {_f(cold_ratio, '.2f')})"
        print(
            f"{row['method']:<30} {_cell(col(row, 'graph_s'), '.1f'):>{w}} "
            f"{_cell(col(row, 'layout_s'), '.1f'):>{w}} {_cell(col(row, 'total_s'), '.1f'):>{w}} "
            f"{_f(ratio, '.2f'):>6} {_cell(col(row, 'warm_s'), '.1f'):>{w}} "
            f"{_f(row.get('cold_s')):>7} {_cell(col(row, 'trust'), '.4f'):>{w + 2}} "
            f"{_cell(col(row, 'continuity'), '.4f'):>{w + 2}} "
            f"{_cell(col(row, 'preservation'), '.4f'):>{w + 2}} "
            f"{_cell(col(row, 'acc'), '.4f'):>{w + 2}} {_cell(col(row, 'peak_mb'), '.0f'):>{w}}  {ok}"
        )
    print(
        f"\nratio = total s / umap-learn's total s; target: ratio <= {TIME_RATIO} (and the same "
        f"for cold s), trust@10 >= umap-learn's - {TRUST_MARGIN}, pres@10 >= umap-learn's - "
        f"{PRESERVATION_MARGIN}. warm s = total s + imports in a fresh process with the numba "
        f"cache filled; cold s = the same with an empty cache (NUMBA_CACHE_DIR a fresh folder)."
        + (" Cells: mean ± half the range over the seeds." if wide else "")
    )


if __name__ == "__main__":
    main()
