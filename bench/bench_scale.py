"""The whole pipeline at 100k, 300k and 1M real-structured vectors: seconds and peak memory of
every step, and how each grows with n.

Run (from the repository root)::

    .venv/bin/python bench/bench_scale.py                      # 100k, 300k, 1M (~1 hour)
    .venv/bin/python bench/bench_scale.py --sizes 100000 --steps ingest,graph,index,queries

Data: :func:`real_set.synthetic_set` (bench/real_set.py), the calibrated scale-up of the real
docstring embeddings (each point in the local hull of a real MiniLM embedding's neighbours,
plus noise): 384-d unit vectors whose neighbour distances and HNSW recall match a real set's.
It is generated (and cached under bench/results/real/, not committed) the first time a size is
asked for, and written as a Parquet file (``id``, ``vector``, ``label``) in the work folder.

Every step runs in its own fresh process, through the product's own CLI where one exists, so
its wall time and peak RSS (``wait4``'s ru_maxrss: data, imports and JIT included) are its
own; later steps reuse what earlier ones stored, as a user's session would:

========== ==================================================================================
ingest     ``embscope ingest FILE.parquet``
preview    ``embscope project --method largevis --preview`` when that option exists, right
           after ingest (a user's first look: no graph stored, so the preview is not scored)
graph      ``embscope graph -k 30`` (the width the layouts read above 50,000 points); its
           build seconds (recall check excluded) and recall on 500 sampled rows
pynndescent  pynndescent (as installed) at the same k in a process with an empty numba cache (cold), then
           again in that process (warm); recall on the same 1,000 rows as exact
           (bench/bench_graph.py's worker)
largevis   ``embscope project --method largevis`` (graph stored: layout and its scores)
umap       ``embscope project --method umap``
index      the first ``embscope neighbours --row 0``: the HNSW index build (M 16, efC 200)
queries    the query path (NeighbourService.search, one query at a time, HNSW loaded) of 1,000
           rows at several ef: p50/p99 latency and recall@10 against exact search; the ef
           reported is the smallest whose recall is >= 0.95
geometry   ``embscope geometry`` (graph stored)
compress   ``embscope compress`` (on a seeded 100,000-row sample above that size)
clusters   ``embscope clusters`` (Leiden on the stored graph, keyword labels)
map        time to the first draw of the LargeVis map with density in headless Chromium
           (bench/bench_scatter.py's measure)
========== ==================================================================================

The growth exponent of a step between two sizes is ``log(t2 / t1) / log(n2 / n1)`` (1: linear,
2: quadratic). Results are printed as a table and written to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _workers  # bench/_workers.py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    "ingest", "preview", "graph", "pynndescent", "largevis", "umap", "index", "queries",
    "geometry", "compress", "clusters", "map",
)  # fmt: skip
GRAPH_K = 30
QUERIES = 1000
EFS = (10, 16, 24, 32, 48, 64, 96, 128)
RECALL_TARGET = 0.95
GIB = 2**30


def run_step(argv: list[str], *, env: dict | None = None) -> dict:
    """Run one command in a fresh process: wall seconds, peak RSS (GiB), and its JSON output
    (the last line that parses), or ``{"error": ...}``."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only as a maximum over
    # all children, so each step reads its own peak from a wait4 done by a tiny wrapper.
    res: dict = {"wall_s": round(wall, 2)}
    peak = [ln for ln in err.splitlines() if ln.startswith("PEAK_KB ")]
    if peak:
        res["peak_gib"] = round(int(peak[-1].split()[1]) / 2**20, 2)
    if proc.returncode != 0:
        tail = [ln for ln in err.strip().splitlines() if not ln.startswith("PEAK_KB ")][-3:]
        res["error"] = f"exit {proc.returncode}: {' | '.join(tail)}"
        return res
    for line in reversed(out.strip().splitlines()):
        try:
            res["out"] = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if "out" not in res:
        try:
            res["out"] = json.loads(out)
        except json.JSONDecodeError:
            res["out"] = None
    return res


# A wrapper that runs a command and prints its peak RSS (wait4), so the measurement is the
# child's alone whatever ran before it.
_MEASURE = (
    "import os, sys, subprocess\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, ru = os.wait4(p.pid, 0)\n"
    "sys.stderr.write(f'PEAK_KB {ru.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def measured(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", _MEASURE, *argv]


def cli(db: Path, *args: str) -> list[str]:
    return measured([sys.executable, "-m", "embscope.app.cli", "--db", str(db), *args])


def write_parquet(X: np.ndarray, labels: np.ndarray, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = X.shape
    table = pa.table(
        {
            "id": pa.array([f"p{i}" for i in range(n)]),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), d),
            "label": pa.array(np.asarray(labels).astype(np.int64)),
        }
    )
    pq.write_table(table, path, row_group_size=50_000)


# ----------------------------------------------------------------------------- workers


def worker(spec: dict) -> dict:
    """Runs in a fresh process (``--worker``): the query path's latency and recall."""
    from embscope.core.index import exact_knn
    from embscope.core.neighbours import NeighbourService
    from embscope.core.store import Store
    from embscope.core.validation import prepare_for_metric

    store = Store(spec["db"], read_only=True)
    service = NeighbourService(store)
    info = service.dataset(spec["dataset"])
    metric = info.metric
    service.get_index(info.id, metric=metric, backend="hnsw")  # loaded from disk
    rows = np.sort(np.random.default_rng(0).choice(info.n, size=spec["queries"], replace=False))
    P = prepare_for_metric(service.vectors(info.id), metric)
    truth, _ = exact_knn(P[rows], P, 10, metric=metric, exclude=rows)
    out = []
    for ef in spec["efs"]:
        lat, found = [], []
        for i, r in enumerate(rows):
            query = service.resolve(info.id, row=int(r))
            t = time.perf_counter()
            res = service.search(info.id, query, k=10, metric=metric, backend="hnsw", ef=ef)
            lat.append((time.perf_counter() - t) * 1000)
            found.append(len(set(res.rows.tolist()) & set(truth[i].tolist())) / 10)
        out.append(
            {
                "ef": ef,
                "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3),
                "recall": round(float(np.mean(found)), 4),
            }
        )
    return {"by_ef": out, "peak_mb": round(_workers.peak_mb())}


def map_first_draw(db: Path) -> dict:
    """Serve ``db`` and time the first draw of its LargeVis map (density on) in Chromium."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_scatter

    with bench_scatter.serve(db) as port:
        url = f"http://127.0.0.1:{port}/projections?dataset=1&method=largevis&density=1"
        bench_scatter.measure(url)  # warm: imports, the frontend's cache
        script, drawn, points = bench_scatter.measure(url)
    return {"script_s": round(script, 2), "drawn_s": round(drawn, 2), "points": points}


# ----------------------------------------------------------------------------- pipeline


def has_preview() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "embscope.app.cli", "project", "--help"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return "--preview" in out


def pynndescent_row(vectors: Path, work: Path, k: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_graph

    truth = work / f"truth_k{k}.npz"
    if not truth.exists():
        rows, gt = bench_graph.ground_truth(np.load(vectors), k, "cosine")
        np.savez(truth, rows=rows, gt=gt)
    spec = {"data": str(vectors), "truth": str(truth), "k": k, "metric": "cosine",
            "threads": os.cpu_count() or 1, "repeat": 2, "method": "pynndescent",
            "params": {"seed": 0}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as numba_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": numba_dir}
        res = bench_graph.run_worker(spec, env)
    if "skip" in res:
        return {"error": res["skip"]}
    return {
        "wall_s": res["times"][0],
        "peak_gib": round(res["peak_mb"] / 1024, 2),
        "out": {"cold_s": res["times"][0], "warm_s": min(res["times"][1:]),
                "import_s": res["import_s"], "recall": res["recall"]},
    }  # fmt: skip


def run_size(n: int, steps: list[str], work: Path) -> dict:
    import real_set  # bench/real_set.py

    folder = work / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    parquet, vectors = folder / "vectors.parquet", folder / "vectors.npy"
    if not parquet.exists() or not vectors.exists():
        X, labels = real_set.synthetic_set(n)
        np.save(vectors, X)
        write_parquet(X, labels, parquet)
        del X, labels
    db = folder / "scale.duckdb"
    if "ingest" in steps:
        for p in folder.glob("scale.duckdb*"):
            p.unlink() if p.is_file() else None
    results: dict = {}

    def step(name: str, argv: list[str] | None = None, **kw) -> None:
        if name not in steps:
            return
        print(f"  {name} ...", end="", flush=True)
        res = run_step(argv, **kw) if argv is not None else kw["fn"]()
        results[name] = res
        extra = f" error: {res['error']}" if "error" in res else ""
        print(f" {res.get('wall_s', '?')} s, {res.get('peak_gib', '?')} GiB{extra}", flush=True)

    step("ingest", cli(db, "ingest", str(parquet), "--name", "scale", "--json"))
    if "preview" in steps and has_preview():  # first, as a user's first look: no graph yet
        step("preview", cli(db, "project", "scale", "--method", "largevis", "--preview", "--json"))
    step("graph", cli(db, "graph", "scale", "-k", str(GRAPH_K), "--json"))
    if "pynndescent" in steps:
        step("pynndescent", fn=lambda: pynndescent_row(vectors, folder, GRAPH_K))
    step("largevis", cli(db, "project", "scale", "--method", "largevis", "--json"))
    step("umap", cli(db, "project", "scale", "--method", "umap", "--json"))
    step("index", cli(db, "neighbours", "scale", "--row", "0", "--json"))
    spec = {"db": str(db), "dataset": "scale", "queries": QUERIES, "efs": list(EFS)}
    step("queries", measured([sys.executable, __file__, "--worker", json.dumps(spec)]))
    step("geometry", cli(db, "geometry", "scale", "--json"))
    step("compress", cli(db, "compress", "scale", "--json"))
    step("clusters", cli(db, "clusters", "scale", "--json"))

    def the_map() -> dict:
        t = time.perf_counter()
        try:
            out = map_first_draw(db)
        except Exception as exc:  # noqa: BLE001 - a bench reports what failed and goes on
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"wall_s": round(time.perf_counter() - t, 2), "out": out}

    if "map" in steps:
        step("map", fn=the_map)
    return results


def summary(name: str, res: dict) -> str:
    """The figures of a step worth a column: recall, the chosen ef, layout scores, ..."""
    out = res.get("out") if isinstance(res.get("out"), dict) else {}
    if "error" in res:
        return res["error"][:80]
    if name == "graph":
        return f"{out.get('method')} k={out.get('k')} build {out.get('seconds', 0):.1f} s, recall {out.get('recall', 0):.3f}"
    if name == "pynndescent":
        return f"cold {out['cold_s']:.1f} s, warm {out['warm_s']:.1f} s, recall {out['recall']:.3f}"
    if name in ("largevis", "umap", "preview"):
        q = out.get("quality") or {}
        keys = [k for k in q if "preservation" in k or k.startswith("trust")]
        return ", ".join(f"{k} {q[k]:.3f}" for k in keys[:2] if isinstance(q[k], (int, float)))
    if name == "queries":
        rows = out.get("by_ef") or []
        ok = [r for r in rows if r["recall"] >= RECALL_TARGET]
        r = ok[0] if ok else (rows[-1] if rows else None)
        return "" if r is None else (f"ef {r['ef']}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                                     f"recall@10 {r['recall']}")  # fmt: skip
    if name == "compress":
        first = res["out"][0] if isinstance(res.get("out"), list) and res["out"] else {}
        every = first.get("sampled_from") or first.get("rows_compared")
        return f"{len(res['out'] or [])} codecs on {first.get('rows_compared')} of {every} rows"
    if name == "clusters":
        return f"{out.get('n_clusters')} clusters, {out.get('seconds', 0):.1f} s"
    if name == "map":
        return f"first draw {out.get('drawn_s')} s, {out.get('points')} points"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"any of {','.join(STEPS)}")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embscope-scale")
    ap.add_argument("--out", type=Path, help="write every figure as JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}: use {','.join(STEPS)}")
    all_results = {}
    for n in sizes:
        print(f"n = {n:,}", flush=True)
        all_results[n] = run_size(n, steps, args.work)
    print()
    header = f"{'step':<12}" + "".join(f"{f'{n:,} s':>12}{'GiB':>7}" for n in sizes)
    header += "".join(f"{'exp':>6}" for _ in sizes[1:]) + "   at the largest size"
    print(header)
    for name in steps:
        cells, times = "", []
        for n in sizes:
            r = all_results[n].get(name, {})
            t = r.get("wall_s")
            times.append(t)
            cells += f"{t if t is not None else '-':>12}{r.get('peak_gib', '-'):>7}"
        for i in range(1, len(sizes)):
            (n1, t1), (n2, t2) = (sizes[i - 1], times[i - 1]), (sizes[i], times[i])
            exp = math.log(t2 / t1) / math.log(n2 / n1) if t1 and t2 else None
            cells += f"{exp:>6.2f}" if exp is not None else f"{'-':>6}"
        print(f"{name:<12}{cells}   {summary(name, all_results[sizes[-1]].get(name, {}))}")
    if args.out:
        args.out.write_text(json.dumps({str(n): r for n, r in all_results.items()}, indent=1))
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
