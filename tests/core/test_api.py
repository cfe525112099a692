"""The Python API (embscope.open ...): handles, and the same dicts as the CLI's --json."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import embscope
from embscope.core.errors import DatasetNotFoundError, InvalidInputError
from tests.helpers import run_cli

# Keys whose values are wall times: equal keys, different numbers from run to run.
TIMINGS = {"seconds", "latency_ms", "exact_latency_ms", "encode_seconds", "query_seconds"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: (None if k in TIMINGS else _without_timings(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.fixture
def vectors_file(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": [f"item-{i}" for i in range(120)],
            "label": [f"group {i % 4}" for i in range(120)],
            "vector": list(rng.normal(size=(120, 16)).astype(np.float32)),
        }
    )
    path = tmp_path / "vectors.parquet"
    frame.to_parquet(path)
    return path


def test_the_readme_example_runs_from_any_directory(tmp_path, vectors_file):
    """From a directory outside the checkout: the API works and a bare `import core` does not."""
    script = textwrap.dedent(
        f"""
        import json, embscope
        db = embscope.open({str(tmp_path / "api.duckdb")!r})
        ds = db.ingest({str(vectors_file)!r}, name="mine", id_column="id")
        answer = ds.neighbours(row=1, k=5)
        print(json.dumps([ds.id, len(answer["neighbours"]), db.datasets()[0]["name"]]))
        try:
            import core
        except ModuleNotFoundError:
            print("no bare core")
        try:
            import app
        except ModuleNotFoundError:
            print("no bare app")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[0]) == [1, 5, "mine"]
    assert lines[1:] == ["no bare core", "no bare app"]


def test_every_method_returns_what_the_cli_prints(tmp_path, vectors_file, capsys):
    db_path = tmp_path / "same.duckdb"

    def cli(*argv):
        code, out, err = run_cli(capsys, "--db", str(db_path), *argv, "--json")
        assert code == 0, err
        return json.loads(out)

    with embscope.open(db_path) as db:
        ds = db.ingest(vectors_file, name="mine", id_column="id")
        assert list(ds.ingest_report()) == ["dataset", "name", "n", "dim", "warnings"]
        meta = ds.metadata()
        meta.insert(0, "key", ds.ids())
        other = db.add(ds.vectors()[:, ::-1].copy(), name="flipped", metadata=meta, id_column="key")
        calls = {
            "neighbours": (
                lambda: ds.neighbours(id="item-3", k=4, exact=True),
                ("neighbours", "mine", "--id", "item-3", "-k", "4", "--exact"),
            ),
            "project": (
                lambda: ds.project("pca", dims=2),
                ("project", "mine", "--method", "pca"),
            ),
            "geometry": (lambda: ds.geometry(k=5), ("geometry", "mine", "-k", "5")),
            "compress": (
                lambda: ds.compress(["int8", "pca:8"], queries=50),
                ("compress", "mine", "--codec", "int8", "--codec", "pca:8", "--queries", "50"),
            ),
            "graph": (lambda: ds.graph(k=10), ("graph", "mine", "-k", "10")),
            "compare": (
                lambda: db.compare("mine", "flipped", k=5),
                ("compare", "mine", "flipped", "-k", "5"),
            ),
        }
        from_api = {name: api() for name, (api, _) in calls.items()}
        datasets = db.datasets()
        assert other.summary() in datasets
    for name, (_, argv) in calls.items():
        from_cli = cli(*argv)
        api = from_api[name]
        if name in ("project", "graph"):
            assert from_cli["reused"] is True  # what the API computed was stored
            api = {**api, "reused": True}
        # same keys in the same order, same values (wall times aside)
        assert json.dumps(_without_timings(api)) == json.dumps(_without_timings(from_cli)), name
    assert cli("datasets") == datasets


def test_bad_input_raises_a_clear_error_and_changes_nothing(tmp_path, vectors_file):
    with embscope.open(tmp_path / "bad.duckdb") as db:
        with pytest.raises(InvalidInputError, match="no such file"):
            db.ingest(tmp_path / "missing.npy")
        with pytest.raises(DatasetNotFoundError):
            db.dataset("nobody")
        ds = db.ingest(vectors_file, name="mine", id_column="id")
        with pytest.raises(InvalidInputError, match="n_neighbors"):
            ds.project("umap", params={"n_neighbors": 500})
        with pytest.raises(InvalidInputError):
            ds.neighbours(row=10_000)
        for bad in ({"k": True}, {"k": 2.5}, {"rescore": 10**6}, {"seed": 2**40}, {"queries": 0}):
            with pytest.raises(InvalidInputError):
                ds.compress(["int8"], **bad)
        for bad in ({"k": "abc"}, {"k": 500}, {"k": 0}):
            with pytest.raises(InvalidInputError):
                db.compare("mine", "mine", **bad)
        assert db.store.list_artifacts() == []
        assert [d["name"] for d in db.datasets()] == ["mine"]


def test_a_read_only_database_answers_without_writing_anything(tmp_path, vectors_file, monkeypatch):
    """Read-only: queries, projections and scores are computed and kept in the process's
    memory (asked again, they are not computed again), and neither the database file nor
    the folder beside it changes (no index files, no artifacts)."""
    from embscope.core.artifacts import read_only_cache
    from embscope.core.projections.runs import ProjectionSpec

    path = tmp_path / "ro.duckdb"
    with embscope.open(path) as db:
        db.ingest(vectors_file, name="mine", id_column="id")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    try:
        with embscope.open(path, read_only=True) as db:
            ds = db.dataset("mine")
            assert len(ds.neighbours(row=1, k=5)["neighbours"]) == 5
            projection = ds.project("pca")
            assert projection["quality"]["trustworthiness@10"] > 0
            assert ds.geometry()["n"] == 120
            assert db.store.list_artifacts() == []
        calls = []
        original = ProjectionSpec.compute
        monkeypatch.setattr(ProjectionSpec, "compute", lambda *a: calls.append(1) or original(*a))
        with embscope.open(path, read_only=True) as db:
            again = db.dataset("mine").project("pca")
        assert calls == [] and again["reused"] is True  # served from memory
        assert again == {**projection, "reused": True}
    finally:
        read_only_cache().forget(path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def test_coordinates_and_handles(tmp_path, vectors_file):
    with embscope.open(tmp_path / "h.duckdb") as db:
        ds = db.ingest(vectors_file, name="mine", id_column="id")
        coords = ds.coordinates("pca", dims=3)
        assert coords.shape == (120, 3) and coords.dtype == np.float32
        assert list(ds.ids()[:2]) == ["item-0", "item-1"]
        assert ds.rename("renamed").name == "renamed" and db.dataset("renamed").id == ds.id
        db.delete("renamed")
        assert db.datasets() == []
