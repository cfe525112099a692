"""Running one benchmark measurement in a fresh subprocess (its own memory peak and JIT)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = "RESULT "


def peak_mb() -> float:
    """Peak resident set of this process (VmHWM), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str, spec: dict, *, env: dict | None = None) -> dict:
    """Run ``script --worker SPEC_JSON`` from the repository root and return the dict it
    printed on its last ``RESULT {...}`` line, with ``wall_s``; ``{"skip": why}`` on failure."""
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"skip": f"worker failed ({proc.returncode}): {' | '.join(tail)}"}
    res = json.loads(lines[-1][len(RESULT) :])
    res["wall_s"] = round(wall, 2)
    return res
