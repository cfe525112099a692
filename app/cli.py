"""The ``embscope`` command line: a stable contract that scripts and the other parts rely on.

Every command takes ``--db PATH`` (before or after the command name; default
``$EMBSCOPE_DB`` or ``./embscope.duckdb``). DATASET is an integer id or an exact name.
On bad input a command prints one line starting with ``error:`` on stderr and exits
with status 2, leaving the database unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from embscope.app.choices import GEOMETRY_METRICS
from embscope.core.clusters import METHODS as CLUSTER_METHODS
from embscope.core.diagnostics import EF_BACKENDS
from embscope.core.errors import InvalidInputError
from embscope.core.hubness_reduction import METHODS as HUBNESS_METHODS
from embscope.core.index import BACKENDS
from embscope.core.text_model import SUPPORTED_MODELS
from embscope.core.validation import METRICS

if TYPE_CHECKING:
    from embscope.core.api import Database

EXIT_BAD_INPUT = 2
REPO_ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes as one ``error:`` line (status 2), like bad input."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see `{self.prog} --help`)")


def _fail(message: str) -> NoReturn:
    # One line, so scripts can show it as is; newlines inside messages are flattened.
    sys.stderr.write("error: " + " ".join(str(message).split()) + "\n")
    raise SystemExit(EXIT_BAD_INPUT)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


# -- commands -------------------------------------------------------------------------------
# Every command is a thin shell over the Python API (embscope.core.api): it parses the
# arguments, calls the API and prints its dict (--json) or a line for a person.


_METRIC_HELP = "default: the dataset's, recorded at upload"
_MILVUS_URI_HELP = (
    "with --backend milvus: http://host:19530 for a Milvus server, or a local .db file for "
    "Milvus Lite (default $EMBSCOPE_MILVUS_URI, else <db>.milvus.db beside the database)"
)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Database:
    from embscope.core.api import Database

    return Database(args.db, read_only=read_only)


def _cmd_ingest(args: argparse.Namespace) -> int:
    with _open(args) as db:
        ds = db.ingest(
            args.file, metadata=args.metadata, name=args.name, id_column=args.id_column,
            vector_column=args.vector_column, model=args.model, metric=args.metric,
            text_column=args.text_column, progress=_stderr_progress,
        )  # fmt: skip
        _end_progress()
    if args.json:
        _print_json(ds.ingest_report())
    else:
        sys.stdout.write(f"stored dataset {ds.id} {ds.name!r}: {ds.n} x {ds.dim}\n")
        for warning in ds.warnings:
            sys.stderr.write(f"warning: {warning}\n")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from embscope.core.store import resolve_db_path

    if not resolve_db_path(args.db).exists():  # nothing to list: no file is made for it
        rows, infos = [], []
    else:
        with _open(args, read_only=True) as db:
            rows, infos = db.datasets(), db.store.list_datasets()
    if args.json:
        _print_json(rows)
    else:
        if not infos:
            sys.stdout.write("no datasets yet: add one with `embscope ingest FILE`\n")
        for d in infos:
            sys.stdout.write(f"{d.id:>4}  {d.name}  {d.n} x {d.dim}  ({d.source})\n")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as db:
        ds = db.dataset(args.dataset)
        out = ds.export(args.out)
    sys.stdout.write(f"wrote dataset {ds.id} {ds.name!r} to {out}\n")
    return 0


def _cmd_subset(args: argparse.Namespace) -> int:
    with _open(args) as db:
        original = db.dataset(args.dataset)
        ds = original.subset(args.filter, name=args.name)
    if args.json:
        _print_json(ds.ingest_report())
    else:
        sys.stdout.write(
            f"stored dataset {ds.id} {ds.name!r}: {ds.n} of the {original.n} items of "
            f"{original.name!r} x {ds.dim}\n"
        )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        db.delete(ds.id)  # with its index files beside the database
    sys.stdout.write(f"deleted dataset {ds.id} {ds.name!r}\n")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    with _open(args) as db:
        if args.if_empty and not db.store.is_empty():
            sys.stdout.write("the database already holds datasets: demo data not loaded\n")
            return 0
        added = db.demo(with_map=args.with_map, progress=_stderr_progress)
        _end_progress()
    if args.json:
        _print_json(added)
    else:
        for d in added:
            sys.stdout.write(f"stored demo dataset {d['dataset']} {d['name']!r}: ")
            sys.stdout.write(f"{d['n']} x {d['dim']}\n")
        if not added:
            sys.stdout.write("demo datasets were already loaded\n")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    with _open(args) as db:
        ds = db.generate(args.kind, n=args.n, dim=args.dim, seed=args.seed, name=args.name)
    if args.json:
        _print_json(ds.summary())
    else:
        sys.stdout.write(f"stored dataset {ds.id} {ds.name!r}: {ds.n} x {ds.dim}\n")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        result = ds.graph(k=args.k, metric=args.metric)
    if args.json:
        _print_json(result)
    else:
        how = "reused the stored" if result["reused"] else "built a"
        sys.stdout.write(
            f"{how} {result['stored_k']}-NN {result['metric']} graph of {ds.name!r} "
            f"({result['method']}, recall {result['recall']:.4f}, {result['seconds']:.2f} s)\n"
        )
    return 0


def _read_query_vector(path: str) -> Any:
    from embscope.core.ingest import read_query_vector

    if not Path(path).is_file():
        raise InvalidInputError(f"no such vector file: {path}")
    return read_query_vector(path, label=path)


def _cmd_neighbours(args: argparse.Namespace) -> int:
    vector = _read_query_vector(args.vector_file) if args.vector_file is not None else None
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        search = ds.search(
            row=args.row, id=args.id, vector=vector, text=args.text, k=args.k,
            metric=args.metric, backend=args.backend, ef=args.ef, exact=args.exact,
            where=args.filter, hubness_reduction=args.hubness_reduction,
            milvus_uri=args.milvus_uri,
        )  # fmt: skip
    result = search.to_json()
    if args.json:
        _print_json(result)
        return 0
    answer = search.answer
    among = "" if answer.filtered is None else f" among {answer.filtered:,} matching items"
    method = answer.hubness_reduction
    reduced = "" if method is None else f", hubs reduced: {method}"
    sys.stdout.write(
        f"{len(answer.rows)} nearest neighbours of {search.query.description} in {ds.name!r}"
        f"{among} ({answer.backend}, {args.metric or ds.info.metric}{reduced}, "
        f"{answer.latency_ms:.2f} ms)\n"
    )
    for rank, item in enumerate(result["neighbours"], start=1):
        score = f"  score {item['score']:.6f}" if "score" in item else ""
        sys.stdout.write(
            f"{rank:>4}  row {item['row']:<8} {item['distance']:.6f}{score}  {item['id']}\n"
        )
    if search.comparison is not None and len(search.comparison.exact.rows) == 0:
        sys.stdout.write("no item matches the filter: exact search found none either\n")
    elif search.comparison is not None:
        sys.stdout.write(
            f"recall@{len(answer.rows)} against exact search: {search.comparison.recall:.3f} "
            f"(exact search {search.comparison.exact.latency_ms:.2f} ms)\n"
        )
    return 0


def _cmd_geometry(args: argparse.Namespace) -> int:
    from embscope.core.geometry.scorecard import REFERENCES, SCORES

    with _open(args) as db:
        ds = db.dataset(args.dataset)
        result = ds.geometry(k=args.k, metric=args.metric)
    if args.json:
        _print_json(result)
        return 0

    def shown(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    beside = {ref for ref, _ in REFERENCES.values()}  # shown beside their score, not alone
    sys.stdout.write(f"geometry of {ds.name!r} ({ds.n} x {ds.dim}, {result.get('metric')}):\n")
    for key, value in result.items():
        if key == "notes" or key in beside:
            continue
        reference = ""
        if key in REFERENCES and REFERENCES[key][0] in result:
            ref_key, what = REFERENCES[key]
            reference = f" ({what}: {shown(result[ref_key])})"
        meaning = SCORES.get(key, "")
        sys.stdout.write(f"  {key:<20} {shown(value):>10}{reference}  {meaning}\n")
    for note in result.get("notes", []):
        sys.stdout.write(f"note: {note}\n")
    return 0


def _ef_list(text: str) -> list[int]:
    """``--ef 10,20,40`` as whole numbers (bounds are checked by the job)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ef takes whole numbers separated by commas, e.g. 10,20,40; got {text!r}"
        ) from None


def _cmd_diagnostics(args: argparse.Namespace) -> int:
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        result = ds.diagnostics(
            k=args.k, efs=args.ef, queries=args.queries, seeds=args.seeds, metric=args.metric,
            label_column=args.label_column, progress=_stderr_progress, backend=args.backend,
            milvus_uri=args.milvus_uri,
        )  # fmt: skip
        _end_progress()
    if args.json:
        _print_json(result)
        return 0
    index = result["index"]
    kind = "an HNSW index" if result["backend"] == "hnsw" else "a Milvus HNSW collection"
    sys.stdout.write(
        f"ANN diagnostics of {ds.name!r} ({result['metric']}): {result['n_queries']} held-out "
        f"queries, {kind} of the other {result['n_indexed']:,} items "
        f"(M={index['M']}, ef_construction={index['ef_construction']}), recall@{result['k']} "
        "with 95 % bootstrap intervals\n"
    )
    for row in result["recall_vs_ef"]:
        lo, hi = row["recall_ci"]
        sys.stdout.write(
            f"  ef {row['ef']:>5}  recall {row['recall']:.3f} [{lo:.3f}, {hi:.3f}]  "
            f"p50 {row['p50_ms']:.3g} ms  p99 {row['p99_ms']:.3g} ms\n"
        )
    rho = result["recall_lid_spearman"]
    if rho is not None:
        sys.stdout.write(
            f"  recall at ef {result['recall_lid_ef']} against query LID: Spearman {rho:.3f}\n"
        )
    if result["insertion_order_sample"] is not None:
        sys.stdout.write(
            f"insertion order ({result['insertion_order_sample']:,} items, "
            f"{result['insertion_order_n_queries']} held-out queries, single-threaded "
            "builds):\n"
        )
    else:
        sys.stdout.write("insertion order:\n")
    for row in result["insertion_order"]:
        sd = "" if row["recall_sd"] is None else f" ± {row['recall_sd']:.3f} sd"
        sys.stdout.write(
            f"  {row['order']:<22} ef {row['ef']:>5}  recall {row['recall_mean']:.3f}{sd} "
            f"over {row['seeds']} seed{'s' if row['seeds'] != 1 else ''}\n"
        )
    for order, why in result["insertion_order_skipped"].items():
        sys.stdout.write(f"  {order}: skipped, {why}\n")
    return 0


def _param_pairs(pairs: Sequence[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` pairs as text by name (each value is checked by the method's table)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"--param takes NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def _stderr_progress(fraction: float, message: str) -> bool:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{fraction:6.1%}  {message[:70]:<70}")
        sys.stderr.flush()
    return False


def _end_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")


def _cmd_project(args: argparse.Namespace) -> int:
    from embscope.core.projections.preview import preview_caption, preview_pairs
    from embscope.core.projections.runs import PARAM_TABLES

    out = _out_path(args.out)
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        # Every value is checked against the method's bounds before any work starts.
        pairs = _param_pairs(args.param)
        if args.preview or args.sample is not None:
            pairs.update(preview_pairs(args.method, preview=args.preview, sample=args.sample))
        params = PARAM_TABLES[args.method].parse(pairs, n=ds.n)
        options = {"dims": args.dims, "seed": args.seed, "metric": args.metric, "params": params}
        result = ds.project(
            args.method, label_column=args.label_column, progress=_stderr_progress, **options
        )
        _end_progress()
        projection = ds.projection(args.method, **options)  # stored: read, not computed
        ids = ds.ids() if out is not None else None
    if out is not None:
        _write_coords(out, projection.coords, ids)
        result["out"] = str(out)
    if args.json:
        _print_json(result)
        return 0
    how = "reused the stored" if result["reused"] else "computed a"
    sys.stdout.write(
        f"{how} {projection.label} of {ds.name!r} ({projection.metric} graph, "
        f"{projection.seconds or 0:.2f} s)\n"
    )
    if result["preview"]:
        sys.stdout.write(f"{preview_caption(result['preview'])}\n")
    for key, value in result["quality"].items():
        sys.stdout.write(f"  {key:<22} {value:.4f}\n" if isinstance(value, float) else "")
    if out is not None:
        sys.stdout.write(f"coordinates written to {out}\n")
    return 0


def _out_path(given: str | None) -> Path | None:
    """``--out``, checked before any work: a .npy or .parquet file in an existing folder."""
    if given is None:
        return None
    out = Path(given)
    if out.suffix.lower() not in (".npy", ".parquet"):
        raise InvalidInputError(f"--out must end in .npy or .parquet, got {given!r}")
    if not out.parent.is_dir():
        raise InvalidInputError(f"--out: no such directory: {out.parent}")
    return out


def _write_coords(out: Path, coords: Any, ids: Any) -> None:
    import pandas as pd

    frame = pd.DataFrame(coords, columns=list("xyz"[: coords.shape[1]]))
    _write_out(out, coords.astype("float32"), frame, ids)


def _write_out(out: Path, array: Any, frame: Any, ids: Any) -> None:
    """``array`` to a .npy file, or ``frame`` with an ``id`` column first to a .parquet file;
    written beside and renamed, so a reader never sees a half-written file."""
    import numpy as np

    tmp = out.with_name(out.name + ".partial")
    if out.suffix.lower() == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))
    else:
        frame = frame.copy()
        frame.insert(0, "id", [str(i) for i in ids])
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)


def _cmd_clusters(args: argparse.Namespace) -> int:
    import pandas as pd

    out = _out_path(args.out)
    options = {
        "method": args.method, "resolution": args.resolution, "min_size": args.min_size,
        "seed": args.seed, "metric": args.metric, "text_column": args.text_column,
    }  # fmt: skip
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        result = ds.clusters(progress=_stderr_progress, **options)
        _end_progress()
        if out is not None:
            clustering = ds.clustering(**options)  # stored: read, not computed
            names = [*clustering.names, ""]  # noise (-1) reads the last: no label
            frame = pd.DataFrame(
                {
                    "cluster": clustering.labels,
                    "label": [names[c] for c in clustering.labels.tolist()],
                }
            )
            _write_out(out, clustering.labels, frame, ds.ids())
            result["out"] = str(out)
    if args.json:
        _print_json(result)
        return 0
    how = "reused the stored" if result["reused"] else "found"
    sys.stdout.write(
        f"{how} {result['n_clusters']} clusters in {ds.name!r} ({result['noise']} items in "
        f"none; {result['metric']} graph, {result['seconds']:.2f} s)\n"
    )
    for row in result["clusters"]:
        sys.stdout.write(f"  {row['cluster']:>4}  {row['size']:>8}  {row['label']}\n")
    if out is not None:
        sys.stdout.write(f"labels written to {out}\n")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    options = {
        "queries": args.queries, "k": args.k, "rescore": args.rescore, "metric": args.metric,
        "seed": args.seed,
    }  # fmt: skip
    with _open(args) as db:
        ds = db.dataset(args.dataset)
        rows = ds.compress(args.codec, save=args.save, progress=_stderr_progress, **options)
        _end_progress()
        report = ds.compression_report(args.codec, **options)  # stored: read, not computed
    if args.json:
        _print_json(rows)
        return 0
    from embscope.core.compression.evaluate import format_report

    sys.stdout.write(format_report(report, rows, name=ds.name))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    with _open(args) as db:
        a, b = db.dataset(args.dataset_a), db.dataset(args.dataset_b)
        result = db.compare(a.id, b.id, k=args.k, metric=args.metric, progress=_stderr_progress)
        _end_progress()
    if args.json:
        _print_json(result)
        return 0
    k = result["k"]
    debiased = result["cka_debiased"]
    sys.stdout.write(
        f"{a.name!r} vs {b.name!r}: {result['matched']} items matched by id "
        f"({result['only_a']} only in the first, {result['only_b']} only in the second)\n"
        f"  kNN overlap@{k}  {result[f'knn_overlap@{k}']:.4f}   "
        f"(chance {result[f'chance_overlap@{k}']:.4f})\n"
        f"  Jaccard@{k}      {result[f'jaccard@{k}']:.4f}\n"
        f"  linear CKA      {result['cka']:.4f}   "
        f"(debiased {'n/a' if debiased is None else f'{debiased:.4f}'}, "
        f"chance 95% {result['cka_null']:.4f}; on {result['cka_rows']} items)\n"
        + (f"  ({result['cka_note']})\n" if result["cka_note"] else "")
    )
    return 0


def _is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "" (all interfaces): assume others can reach it


def _serve_env(args: argparse.Namespace, db: Path) -> dict[str, str]:
    """The server's environment: database, read-only mode, token, limits, bind address, TLS."""
    from embscope.app import access, gate
    from embscope.core.memory import budget_bytes

    budget_bytes()  # a bad $EMBSCOPE_MEMORY_BUDGET_GIB stops the start (the runner reads it)
    if args.max_upload_mb < 1:
        raise InvalidInputError(f"--max-upload-mb must be at least 1, got {args.max_upload_mb}")
    if args.new_token and args.token is not None:
        raise InvalidInputError("give either --token or --new-token, not both")
    token = args.token if args.token is not None else os.environ.get(access.TOKEN_ENV, "")
    if args.new_token:
        token = secrets.token_urlsafe(24)
    if args.token is not None and not token.strip():
        raise InvalidInputError("--token is empty: give the shared access token")
    if token != token.strip():
        raise InvalidInputError("the access token must not start or end with white space")
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInputError(
            f"the access token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
            "(a short one can be guessed), or let `embscope serve --new-token` make one"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidInputError("give both --tls-cert and --tls-key (the certificate and its key)")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not Path(path).is_file():
            raise InvalidInputError(f"{flag}: no such file: {path}")
    env = dict(os.environ, EMBSCOPE_DB=str(db))
    env[access.MAX_UPLOAD_ENV] = str(args.max_upload_mb)
    # Compile the projection methods' numba code when the first page opens, in the background
    # (unless told not to): Streamlit runs no app code before a session connects.
    env.setdefault(access.WARM_UP_ENV, "1")
    # The flag turns read-only on; an inherited EMBSCOPE_READ_ONLY=1 keeps it on too.
    env[access.READ_ONLY_ENV] = "1" if args.read_only or access.read_only() else "0"
    if token:
        env[access.TOKEN_ENV] = token
    else:
        env.pop(access.TOKEN_ENV, None)
    env[gate.BIND_ADDRESS_ENV] = args.address
    env[gate.ALLOWED_HOSTS_ENV] = ",".join(args.allow_host or [])
    env[gate.TLS_ENV] = "1" if args.tls_cert else "0"
    # uvicorn believes X-Forwarded-For from loopback clients by default: a local process could
    # then pose as any address to the token limiter (or lock a visitor out). No proxy is
    # trusted; behind one, every visitor shares its address (see ARCHITECTURE.md).
    env["FORWARDED_ALLOW_IPS"] = ""
    return env


def _raise_open_file_limit() -> None:
    """Let the server hold as many connections as the system allows it (the soft limit of
    open files is often 1,024: that many idle connections would stop the server)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Shorter tokens are refused: the gate answers one attempt per second per address, and a
# 16-character token of letters and digits has about 95 bits.
MIN_TOKEN_LENGTH = 16


def _cmd_serve(args: argparse.Namespace) -> int:
    from embscope.app import access
    from embscope.core.store import resolve_db_path

    db = resolve_db_path(args.db).resolve()
    env = _serve_env(args, db)
    read_only = env[access.READ_ONLY_ENV] == "1"
    # Open the database once here: a file another process holds (or cannot be read) fails now
    # with one `error:` line, rather than a server whose every page shows the error. A
    # read-only server opens it read-only (and writes nothing to it, or beside it, afterwards).
    if read_only and not db.exists():
        raise InvalidInputError(f"no database at {db}: a read-only server needs one to show")
    with _open(args, read_only=read_only):
        pass
    has_token = access.TOKEN_ENV in env
    tls = args.tls_cert is not None
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        # The dashboard as an st.App behind the access gate (app/server.py, app/gate.py).
        str(REPO_ROOT / "app" / "server.py"),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(args.max_upload_mb),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        # Tracebacks are logged on the server, never shown to a visitor.
        "--client.showErrorDetails",
        "none",
        # Streamlit runs a full gc.collect() after every script run of every session, holding
        # the GIL for 0.1 s: with ten sessions that was most of the server's time.
        "--runner.postScriptGC",
        "false",
    ]
    if tls:
        cmd += [
            "--server.sslCertFile",
            str(args.tls_cert),
            "--server.sslKeyFile",
            str(args.tls_key),
        ]
    modes = []
    if read_only:
        modes.append("read-only")
    if has_token:
        modes.append("access token required")
    if tls:
        modes.append("TLS")
    scheme = "https" if tls else "http"
    sys.stdout.write(
        f"embscope: serving {db} on {scheme}://{args.address}:{args.port}"
        + (f" ({', '.join(modes)})" if modes else "")
        + "\n"
    )
    if args.new_token:
        # Printed once, for the person who started the server to pass on to the team.
        host = "127.0.0.1" if args.address in ("0.0.0.0", "::", "") else args.address
        sys.stdout.write(
            f"embscope: the access link (share it only with the team): "
            f"{scheme}://{host}:{args.port}/?token={env[access.TOKEN_ENV]}\n"
        )
    reachable = not _is_loopback(args.address)
    if reachable and not has_token:
        sys.stderr.write(
            f"warning: {args.address or 'all interfaces'} is reachable from other machines "
            "and no access token is set: anyone who can reach it sees every dataset; "
            "add --new-token (or --token, or set EMBSCOPE_TOKEN)\n"
        )
    if reachable and not tls:
        sys.stderr.write(
            "warning: the server is reachable from other machines without TLS: the token and "
            "every page cross the network in clear; add --tls-cert and --tls-key\n"
        )
    _raise_open_file_limit()
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process with the server, so a signal sent to `embscope serve` (Ctrl-C,
    # SIGTERM from a supervisor or a test) reaches Streamlit itself and leaves no orphan.
    # The token travels in the environment, not the server's command line (`ps` shows it).
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``embscope`` (exposed for tests and docs)."""
    db_help = "database file (default: $EMBSCOPE_DB or ./embscope.duckdb)"
    parser = _Parser(prog="embscope", description="Explore embedding spaces in the browser.")
    parser.add_argument("--db", metavar="PATH", default=None, help=db_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        # --db is accepted after the command too; SUPPRESS keeps the global value otherwise.
        p.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=db_help)
        return p

    p = command("ingest", "store a file of vectors (and metadata) as a new dataset")
    p.add_argument(
        "file", help=".npy .npz .parquet .csv .tsv .jsonl .h5ad, or a Projector vectors.tsv"
    )
    p.add_argument("--metadata", metavar="FILE", help="a separate metadata file, row for row")
    p.add_argument("--name", help="dataset name (default: the file name without suffix)")
    p.add_argument("--id-column", metavar="COL", help="metadata column holding unique ids")
    p.add_argument(
        "--vector-column", metavar="COL", help="column, field or key holding the vectors"
    )
    p.add_argument(
        "--model", metavar="NAME",
        help="the model that made the vectors; text queries work for those embscope runs "
        f"offline: {', '.join(SUPPORTED_MODELS)}; with --text-column, the model that embeds "
        "the texts (default all-MiniLM-L6-v2; the part before the last / may be left out)",
    )  # fmt: skip
    p.add_argument(
        "--text-column", metavar="COL",
        help="FILE is a table of texts (.csv .tsv .parquet .jsonl) without vectors: embed this "
        "column's texts with --model's model (at most 100,000 rows) and keep the table as "
        "metadata",
    )  # fmt: skip
    p.add_argument(
        "--metric", choices=METRICS, default=None,
        help="the dataset's metric, every later command's default (default: guessed from the "
        "vectors: l2 for coordinates and few features, cosine for embeddings)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_ingest)

    p = command("datasets", "list stored datasets")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=_cmd_datasets)

    p = command("export", "write a dataset to .npy (vectors) or .parquet (vectors and metadata)")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument("--out", metavar="FILE", required=True, help="output file (.npy or .parquet)")
    p.set_defaults(func=_cmd_export)

    p = command("subset", "save the items whose metadata match a filter as a new dataset")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "--filter", action="append", metavar="EXPR", required=True,
        help='col=v, col!=v, col<v, col<=v, col>v, col>=v, col~text, col@["a","b"] (one of); '
        "repeatable, AND-ed",
    )  # fmt: skip
    p.add_argument("--name", required=True, help="the new dataset's name")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_subset)

    p = command("delete", "delete a dataset and everything computed from it")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.set_defaults(func=_cmd_delete)

    p = command("demo", "load the bundled demo datasets")
    p.add_argument("--if-empty", action="store_true", help="only when the database has no dataset")
    p.add_argument(
        "--with-map", action="store_true",
        help="also lay out the text demo with LargeVis and find its clusters (a few seconds), "
        "so the dashboard opens on a named map",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print what was stored as JSON")
    p.set_defaults(func=_cmd_demo)

    p = command("generate", "store a synthetic dataset (for scale and ground-truth tests)")
    p.add_argument("kind", choices=["gaussian-mixture", "swiss-roll"])
    p.add_argument("--n", type=int, help="number of points")
    p.add_argument("--dim", type=int, help="dimension (gaussian-mixture only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--name", help="dataset name (default: kind, size and seed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_generate)

    p = command("graph", "build (or reuse) the shared k-nearest-neighbour graph of a dataset")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "-k", type=int, default=None,
        help="neighbours per point (default: 150 up to 50,000 points, 30 above; at most n-1)",
    )  # fmt: skip
    p.add_argument("--metric", choices=METRICS, default=None, help=_METRIC_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_graph)

    p = command("neighbours", "nearest neighbours of an item, a vector or a text")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--row", type=int, metavar="R", help="query by row number")
    which.add_argument("--id", metavar="ID", help="query by item id")
    which.add_argument("--vector-file", metavar="F.npy", help="query by a vector in a .npy file")
    which.add_argument("--text", metavar="T", help="query by text (needs the text extra)")
    p.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    p.add_argument("--metric", choices=METRICS, default=None, help=_METRIC_HELP)
    p.add_argument("--backend", choices=BACKENDS, default="hnsw")
    p.add_argument("--milvus-uri", metavar="URI", default=None, help=_MILVUS_URI_HELP)
    p.add_argument("--ef", type=int, default=None, help="HNSW search breadth (default 50)")
    p.add_argument("--exact", action="store_true", help="also run exact search and report recall@k")
    p.add_argument(
        "--filter", action="append", metavar="EXPR",
        help="only items whose metadata match: col=v, col!=v, col<v, col<=v, col>v, col>=v, "
        'col~text (contains), col@["a","b"] (one of); repeatable, AND-ed',
    )  # fmt: skip
    p.add_argument(
        "--hubness-reduction", choices=HUBNESS_METHODS, default="none",
        help="re-rank the nearest max(10k, 100) candidates so hubs stop crowding the answer: "
        "none (default), csls or mp (mutual proximity); each neighbour gets a score, its "
        "distance stays the true one",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_neighbours)

    p = command(
        "diagnostics",
        "what approximate search costs: recall and latency against ef, recall against LID and "
        "insertion order, on held-out queries",
    )
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "--ef", type=_ef_list, default=[10, 20, 40, 80, 160], metavar="LIST",
        help="search breadths, comma-separated (default 10,20,40,80,160; each 1-4096)",
    )  # fmt: skip
    p.add_argument(
        "--queries", type=int, default=None, metavar="N",
        help="rows held out of the index as queries (default 500, or a fifth of the items "
        "if fewer; max 5000)",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=int, default=3, metavar="S",
        help="builds per insertion order, to show the spread (default 3, max 10)",
    )  # fmt: skip
    p.add_argument("-k", type=int, default=10, help="recall@k (default 10, max 200)")
    p.add_argument("--metric", choices=METRICS, default=None, help=_METRIC_HELP)
    p.add_argument(
        "--label-column", metavar="COL", default=None,
        help="category column for the cluster-by-cluster orders (default: the recorded one)",
    )  # fmt: skip
    p.add_argument(
        "--backend", choices=EF_BACKENDS, default="hnsw",
        help="where recall vs ef runs: hnsw (an hnswlib index here, default) or milvus (a "
        "temporary collection of a Milvus, dropped after)",
    )  # fmt: skip
    p.add_argument("--milvus-uri", metavar="URI", default=None, help=_MILVUS_URI_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_diagnostics)

    p = command("geometry", "isotropy, intrinsic dimension and hubness scores of a dataset")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument("-k", type=int, default=10, help="neighbours for hubness (default 10)")
    p.add_argument(
        "--metric", choices=GEOMETRY_METRICS, default=None,
        help="default: the dataset's (cosine for an inner-product dataset)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    p.set_defaults(func=_cmd_geometry)

    p = command("project", "a 2-D or 3-D projection of a dataset, with its faithfulness scores")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "--method", choices=["pca", "largevis", "umap", "heatgeo"], required=True,
        help="projection method",
    )  # fmt: skip
    p.add_argument("--dims", type=int, choices=[2, 3], default=2, help="2 or 3 (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--metric", choices=METRICS, default=None,
        help="neighbour-graph metric (default: the dataset's, else cosine)",
    )  # fmt: skip
    p.add_argument(
        "--label-column", metavar="COL", help="metadata column for the kNN accuracy score"
    )
    p.add_argument(
        "--param", metavar="NAME=VALUE", action="append",
        help="a method parameter, e.g. --param samples_per_point=2000 (repeatable)",
    )  # fmt: skip
    p.add_argument("--preview", action="store_true", help="largevis/umap: lay out a sample, "
                   "place the other points by their neighbours")  # fmt: skip
    p.add_argument("--sample", type=int, metavar="N", help="the preview's sample (default 50000)")
    p.add_argument("--out", metavar="FILE", help="write the coordinates (.npy or .parquet)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_project)

    p = command("clusters", "clusters of a dataset in its original space, with keyword labels")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "--method", choices=CLUSTER_METHODS, default="leiden",
        help="Leiden on the shared neighbour graph (default)",
    )  # fmt: skip
    p.add_argument(
        "--resolution", type=float, default=None,
        help="higher finds more, smaller clusters (default 1, from 0.01 to 10)",
    )  # fmt: skip
    p.add_argument(
        "--min-size", type=int, default=None,
        help="smaller groups are left unclustered, cluster -1 (default 5)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--metric", choices=METRICS, default=None, help=_METRIC_HELP)
    p.add_argument(
        "--text-column", metavar="COL", default=None,
        help="text column the keywords come from (default: the recorded one, else the "
        "column with the longest texts)",
    )  # fmt: skip
    p.add_argument(
        "--out", metavar="FILE",
        help="write each item's cluster: .npy (int32, -1 for none) or .parquet (id, cluster, "
        "label)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_clusters)

    p = command("compress", "what each compression costs a dataset: size, recall, rank fidelity")
    p.add_argument("dataset", metavar="DATASET", help="integer id or exact name")
    p.add_argument(
        "--codec", metavar="SPEC", action="append",
        help="codec, e.g. float16 int8 binary pq:48 pca:128 lvq:4x8 rp:128 truncate:128 "
        "dct:128 (repeatable; default: a set covering every family)",
    )  # fmt: skip
    p.add_argument("--queries", type=int, default=1000, help="query rows sampled (default 1000)")
    p.add_argument("-k", type=int, default=10, help="neighbours for recall (default 10)")
    p.add_argument("--rescore", type=int, default=4, help="re-rank multiplier r (default 4)")
    p.add_argument("--metric", choices=METRICS, default=None)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--save", action="store_true", help="store each compressed copy as a dataset")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_cmd_compress)

    p = command("compare", "compare two datasets over the same items (matched by id)")
    p.add_argument("dataset_a", metavar="DATASET_A", help="integer id or exact name")
    p.add_argument("dataset_b", metavar="DATASET_B", help="integer id or exact name")
    p.add_argument("-k", type=int, default=10, help="neighbours per item (default 10)")
    p.add_argument("--metric", choices=METRICS, default=None)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_compare)

    p = command("serve", "start the dashboard")
    p.description = (
        "Start the dashboard. It listens on 127.0.0.1 (this machine only) unless --address "
        "says otherwise; a server others can reach should have an access token."
    )
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument(
        "--address", default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)",
    )  # fmt: skip
    p.add_argument(
        "--max-upload-mb", type=int, default=2048, metavar="MB",
        help="largest file a browser may upload, in MB (default 2048)",
    )  # fmt: skip
    p.add_argument(
        "--read-only", action="store_true",
        help="a public demo: the database is opened read-only and nothing is written to it or "
        "beside it; no upload, demo loading, rename, delete or save-as-dataset; projections, "
        "scores and compression reports can still be computed and are kept in memory",
    )  # fmt: skip
    p.add_argument(
        "--new-token", action="store_true",
        help="make a strong random access token and print the link that carries it",
    )  # fmt: skip
    p.add_argument(
        "--tls-cert", metavar="FILE", default=None,
        help="serve HTTPS with this certificate (PEM); give --tls-key with it",
    )  # fmt: skip
    p.add_argument("--tls-key", metavar="FILE", default=None, help="the certificate's key (PEM)")
    p.add_argument(
        "--allow-host", metavar="NAME", action="append",
        help="a host name the server may be reached by besides its own names and IP addresses "
        "(repeatable; other names are refused, against DNS rebinding)",
    )  # fmt: skip
    p.add_argument(
        "--token", metavar="TOKEN", default=None,
        help="a shared access token (at least 16 characters) that a browser must give, as "
        "?token=TOKEN in the link or in the login form, before anything reaches the app; "
        "default $EMBSCOPE_TOKEN, which keeps it out of the process list",
    )  # fmt: skip
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``embscope``; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InvalidInputError as exc:
        _fail(str(exc))
    except OSError as exc:
        # Disk full, permission denied, a path that is a directory...: the user can act on it.
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        _fail("interrupted; nothing half-done was stored (work that finished before stays)")


if __name__ == "__main__":
    raise SystemExit(main())
