"""Processes for the kill test (tests/e2e/test_crash_kill.py) to SIGKILL at a chosen moment.

Every mode imports what its work needs first, then prints ``ready ...`` on stdout and
flushes, so the test can time its kill from the start of the real work rather than from
interpreter start-up. It prints ``done ...`` when the work has finished.

Modes::

    cli ARGS...                      run `embscope ARGS...` (app.cli.main) in this process
    project DB DATASET METHOD SEED   open the store, start a JobRunner and submit the projection
                                     the way the Projections page does, then wait for it
    hold DB [ro]                     open the store (read-only with "ro") and sleep until killed
    forkserver                       import everything once, then fork a child per request
                                     (one JSON line on stdin) that runs one of the modes above

The fork server saves the interpreter start-up (about a second) of each of the test's many
runs: a request ``{"op": "run", "argv": [...], "out": F, "err": F}`` forks a child that sends
its stdout and stderr to the files and its ``ready PID ...`` and ``done PID STATUS`` lines to
the server's stdout; ``{"op": "wait", "pid": PID}`` reaps it and answers ``status PID CODE``
(minus the signal number for a killed child, like subprocess). Nothing is opened before the
fork: each child opens the database itself, exactly as a fresh process would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _stdout_say(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


_say = _stdout_say


def run_cli(argv: list[str]) -> int:
    import embscope.app.cli
    import embscope.core.graph
    import embscope.core.ingest
    import embscope.core.knn_build  # noqa: F401 - imported before "ready": the kill window is the work
    import embscope.core.store  # noqa: F401

    _say("ready")
    try:
        status = embscope.app.cli.main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    _say("done", status)
    return status


def run_projection(db: str, dataset: str, method: str, seed: int) -> int:
    from embscope.core.jobs import JobRunner
    from embscope.core.projections import runs
    from embscope.core.store import Store

    _say("ready")
    store = Store(db)
    runner = JobRunner(store)
    info = store.get_dataset(dataset)
    # The request and the work are those of app/projections_view.stored_or_job.
    request = {"method": method, "dims": 2, "seed": seed, "metric": None, "params": {}}
    key = runs.projection_key(
        store, info.id, method=method, dims=2, seed=seed, metric=None, params={}
    )

    def work(progress):
        return runs.compute_projection(
            store, info.id, method=method, dims=2, seed=seed, metric=None, params={},
            progress=progress,
        ).fingerprint  # fmt: skip

    job = runner.submit(
        key,
        work,
        kind="projection",
        label=f"{runs.METHOD_LABELS[method]} 2-D of {info.name}",
        dataset_id=info.id,
        params=request,
        serial=method in runs.SERIAL_METHODS,
    )
    job.wait()
    state = job.status().state
    runner.shutdown()
    store.close()
    _say("done", state)
    return 0 if state == "done" else 1


def hold(db: str, read_only: bool) -> int:
    from embscope.core.store import Store

    store = Store(db, read_only=read_only)
    store.list_datasets()
    _say("ready")
    time.sleep(600)
    return 0


def preload() -> None:
    """Import every module the modes use (and nothing else: no database is opened)."""
    import embscope.core.graph
    import embscope.core.ingest
    import embscope.core.jobs
    import embscope.core.knn_build
    import embscope.core.projections.largevis
    import embscope.core.projections.runs
    import embscope.core.store  # noqa: F401


def _child(request: dict) -> int:
    """A forked child: report on the server's stdout, write its own output to the files."""
    global _say
    channel = os.dup(1)

    def report(*words: object) -> None:
        line = " ".join(map(str, (words[0], os.getpid(), *words[1:]))) + "\n"
        os.write(channel, line.encode())

    _say = report
    status = 1
    try:
        for fd, name in ((1, request["out"]), (2, request["err"])):
            target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        status = main(request["argv"])
    except SystemExit as exc:
        status = int(exc.code or 0)
    except BaseException:
        import traceback

        traceback.print_exc()
        report("failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def forkserver() -> int:
    preload()
    _stdout_say("ready", os.getpid())
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "wait":
            _, status = os.waitpid(int(request["pid"]), 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            _stdout_say("status", request["pid"], code)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            continue
        os._exit(_child(request))
    return 0


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "forkserver":
        return forkserver()
    if mode == "cli":
        return run_cli(rest)
    if mode == "project":
        return run_projection(rest[0], rest[1], rest[2], int(rest[3]))
    if mode == "hold":
        return hold(rest[0], read_only=rest[1:] == ["ro"])
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
