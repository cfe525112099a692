"""Ingest and read-back speed of the store against a raw DuckDB Arrow insert/read.

Run: `.venv/bin/python bench/bench_store.py [--n 100000] [--dim 384] [--repeat 3]`.
Prints seconds (best of --repeat) and the ratios the foundation issue targets (<= 1.5x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from embscope.core.ingest import read_dataset
from embscope.core.store import Store


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, d = args.n, args.dim
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="embscope-bench-"))
    npy = tmp / "x.npy"
    np.save(npy, X)
    counter = iter(range(10**6))
    made: dict[str, Path] = {}

    def raw_insert():
        made["raw"] = tmp / f"raw{next(counter)}.duckdb"
        con = duckdb.connect(str(made["raw"]))
        tbl = pa.table(
            {
                "row": pa.array(np.arange(n, dtype=np.int64)),
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(np.load(npy).reshape(-1)), d),
            }
        )
        con.register("tbl", tbl)
        con.execute(f"CREATE TABLE v (row BIGINT, vec FLOAT[{d}])")
        con.execute("INSERT INTO v SELECT * FROM tbl")
        con.close()

    def our_ingest():
        made["ours"] = tmp / f"ours{next(counter)}.duckdb"
        with Store(made["ours"]) as s:
            s.add_dataset(read_dataset(npy), name="bench")

    raw_in = best(raw_insert, args.repeat)
    ours_in = best(our_ingest, args.repeat)

    con = duckdb.connect(str(made["raw"]), read_only=True)

    def raw_read():
        col = con.sql("SELECT vec FROM v").to_arrow_table().column(0).combine_chunks()
        return col.values.to_numpy().reshape(-1, d)

    store = Store(made["ours"], read_only=True)
    ds = store.list_datasets()[0]
    assert np.array_equal(store.load_vectors(ds.id), X)
    raw_rd = best(raw_read, args.repeat)
    ours_rd = best(lambda: store.load_vectors(ds.id), args.repeat)
    mb = X.nbytes / 1e6
    print(f"data: {n} x {d} float32 ({mb:.0f} MB), best of {args.repeat}")
    print(
        f"ingest .npy -> DuckDB   ours {ours_in:6.3f} s   raw Arrow insert {raw_in:6.3f} s   ratio {ours_in / raw_in:4.2f}x"
    )
    print(
        f"load -> numpy          ours {ours_rd:6.3f} s   raw Arrow read   {raw_rd:6.3f} s   ratio {ours_rd / raw_rd:4.2f}x"
    )


if __name__ == "__main__":
    main()
