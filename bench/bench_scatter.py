"""First draw of the Projections page's scatter in headless Chromium, at 100k and 1M points.

Run: `.venv/bin/python bench/bench_scatter.py [--n 100000 1000000] [--dim 16]`.

For each size: stores a Gaussian mixture and its PCA projection in a fresh database, starts
`embscope serve`, opens `/projections?dataset=1&method=pca&color=cluster` in Debian's
Chromium and measures (a) the figure's JSON payload (numeric arrays travel as base64 typed
arrays), (b) the time from navigation to the script finishing, and (c) to the WebGL canvas
holding every point (plotly's ``_fullData`` complete). Coloured by the 12-value cluster
column (12 ``Scattergl`` traces); hover shows row numbers (no per-point strings above 200k);
the density shading beneath the points is on (the default above 50,000 points).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(db: Path, n: int, dim: int) -> int:
    from embscope.app import figures
    from embscope.core.demo import gaussian_mixture
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.projections import runs
    from embscope.core.store import Store

    with Store(db) as store:
        info = store_demo_dataset(store, gaussian_mixture(n, dim, 12, seed=0), name="big")
        t = time.perf_counter()
        p = runs.compute_projection(store, info.id, method="pca")
        print(f"  PCA stored in {time.perf_counter() - t:.1f} s")
        labels = store.load_metadata(info.id, columns=["cluster"])["cluster"].astype(str)
        fig = figures.projection_figure(p.coords, color=labels.to_numpy(), categorical=True)
        return len(fig.to_json())


@contextmanager
def serve(db: Path) -> Iterator[int]:
    """``embscope serve`` of ``db`` on a free loopback port, until the block ends."""
    port = free_port()
    env = dict(os.environ, EMBSCOPE_DB=str(db))
    server = subprocess.Popen(
        [sys.executable, "-m", "embscope.app.cli", "--db", str(db), "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def measure(url: str) -> tuple[float, float, int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(
            "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=600_000
        )
        script = time.perf_counter() - t0
        points = page.wait_for_function(
            """() => {
                const el = document.querySelector('.js-plotly-plot');
                if (!el || !el._fullData || !el.querySelector('canvas')) return 0;
                return el._fullData.reduce(
                    (s, t) => s + (t.type === 'scattergl' && t.x ? t.x.length : 0), 0);
            }""",
            timeout=600_000,
        ).json_value()
        drawn = time.perf_counter() - t0
        browser.close()
    return script, drawn, int(points)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=16)
    args = ap.parse_args()
    rows = []
    for n in args.n:
        print(f"n = {n:,}")
        tmp = Path(tempfile.mkdtemp(prefix="embscope-scatter-"))
        db = tmp / "scatter.duckdb"
        payload = prepare(db, n, args.dim)
        with serve(db) as port:
            url = f"http://127.0.0.1:{port}/projections?dataset=1&method=pca&color=cluster"
            measure(url)  # warm: the server imports, Chromium caches the frontend
            script, drawn, points = measure(url)
        rows.append((n, payload, script, drawn, points))
    print()
    print(f"{'points':>10} {'payload MB':>11} {'bytes/pt':>9} {'script s':>9} {'drawn s':>8}")
    for n, payload, script, drawn, points in rows:
        assert points == n, f"drew {points} of {n} points"
        print(f"{n:>10,} {payload / 1e6:>11.1f} {payload / n:>9.1f} {script:>9.2f} {drawn:>8.2f}")


if __name__ == "__main__":
    main()
