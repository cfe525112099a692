"""Filtered neighbour search (NeighbourService.search(where=...), `neighbours --filter`): every
result matches, the answer equals exact filtered search where the filter is selective and
keeps recall >= 0.95 through the index where it is not, and bad filters exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import embscope.core.neighbours as nb
from embscope.core.errors import InvalidInputError
from embscope.core.neighbours import NeighbourService
from embscope.core.store import Store
from tests.helpers import make_parsed, run_cli, snapshot

N = 3000


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((N, 16)) + rng.integers(0, 6, N)[:, None]).astype(np.float32)
    meta = pd.DataFrame(
        {
            "group": [f"g{i}" for i in rng.integers(0, 30, N)],  # ~3.3 % each
            "year": rng.integers(1990, 2030, N),
        }
    )
    path = tmp_path / "f.duckdb"
    with Store(path) as s:
        info = s.add_dataset(make_parsed(X, meta), name="pts")
    return path, info.id, X, meta


def _exact(X, meta_mask, q, k, own):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    d = 1.0 - U @ (q / np.linalg.norm(q))
    d[~meta_mask] = np.inf
    if own is not None:
        d[own] = np.inf
    order = np.lexsort((np.arange(len(d)), d))
    return order[: min(k, int(np.isfinite(d).sum()))]


def test_selective_filter_is_exact_and_every_result_matches(data):
    path, ds, X, meta = data
    with Store(path) as s:
        svc = NeighbourService(s)
        mask = (meta["group"] == "g7").to_numpy()
        for row in (3, 10, 400):
            q = svc.resolve(ds, row=row)
            ans = svc.search(ds, q, k=10, where=["group=g7"])
            assert ans.filtered == mask.sum() and ans.backend == "exact"  # says how it answered
            assert mask[ans.rows].all() and row not in ans.rows
            np.testing.assert_array_equal(ans.rows, _exact(X, mask, X[row], 10, row))


def test_broad_filter_through_the_index_keeps_recall(data, monkeypatch):
    path, ds, X, meta = data
    monkeypatch.setattr(nb, "FILTER_EXACT_MIN", 0)
    monkeypatch.setattr(nb, "FILTER_EXACT_SHARE", 0.0)
    mask = (meta["year"] >= 2000).to_numpy()
    recalls = []
    with Store(path) as s:
        svc = NeighbourService(s)
        for row in range(0, N, 150):
            q = svc.resolve(ds, row=row)
            cmp = svc.compare(ds, q, k=10, where=["year>=2000"])
            assert cmp.approximate.backend == "hnsw"  # through the index, not the fallback
            assert mask[cmp.approximate.rows].all() and len(cmp.approximate.rows) == 10
            np.testing.assert_array_equal(cmp.exact.rows, _exact(X, mask, X[row], 10, row))
            recalls.append(cmp.recall)
    assert np.mean(recalls) >= 0.95


def test_fewer_matches_than_k_and_none(data):
    path, ds, X, meta = data
    with Store(path) as s:
        svc = NeighbourService(s)
        q = svc.resolve(ds, row=0)
        few = svc.search(ds, q, k=10, where=["group=g1", "year<1991"])
        expected = ((meta["group"] == "g1") & (meta["year"] < 1991)).to_numpy().copy()
        expected[0] = False
        assert sorted(few.rows) == sorted(np.flatnonzero(expected)) and len(few.rows) < 10
        none = svc.search(ds, q, k=10, where=["group=nothing"])
        assert none.filtered == 0 and len(none.rows) == 0 and none.to_json()["filtered"] == 0


def test_metric_backend_and_cache_keys_under_a_filter(data):
    path, ds, _, meta = data
    with Store(path) as s:
        svc = NeighbourService(s)
        q = svc.resolve(ds, row=0)
        for bad in ({"metric": "dot"}, {"metric": "L2"}, {"backend": "nonsense"}):
            with pytest.raises(InvalidInputError):
                svc.search(ds, q, k=3, where=["group=g3"], **bad)
        # Two filters whose joined text is the same are different filters.
        twice = svc.search(ds, q, k=3, where=["group=g3", "group=g3"])
        one_value = svc.search(ds, q, k=3, where=["group=g3\x1fgroup=g3"])
        assert twice.filtered == (meta["group"] == "g3").sum() and one_value.filtered == 0
        # One expression given as a string is one expression.
        assert svc.search(ds, q, k=3, where="group=g3").filtered == twice.filtered


def test_bad_filter_is_refused_before_anything_is_built(data):
    path, ds, _, _ = data
    with Store(path) as s:
        svc = NeighbourService(s)
        q = svc.resolve(ds, row=0)
        with pytest.raises(InvalidInputError, match="no column 'colour'"):
            svc.search(ds, q, k=5, where=["colour=red"])
        assert not svc.index_dir.exists() or not any(svc.index_dir.iterdir())


def test_cli_filter_contract(capsys, data):
    path, _, _, meta = data
    code, out, err = run_cli(
        capsys, "--db", str(path), "neighbours", "pts", "--row", "5", "-k", "5",
        "--filter", "group=g3", "--filter", "year>=1995", "--exact", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    mask = ((meta["group"] == "g3") & (meta["year"] >= 1995)).to_numpy()
    assert obj["filtered"] == mask.sum() and obj["recall"] == 1.0
    assert all(mask[n["row"]] for n in obj["neighbours"] + obj["exact"])
    plain = run_cli(capsys, "--db", str(path), "neighbours", "pts", "--row", "5", "--json")
    assert plain[0] == 0 and "filtered" not in json.loads(plain[1])
    with Store(path) as s:
        before = snapshot(s)
    for bad in ("colour=red", "year~19", "group<g2", "noop"):
        code, out, err = run_cli(
            capsys, "--db", str(path), "neighbours", "pts", "--row", "5", "--filter", bad
        )
        assert code == 2 and err.startswith("error:") and out == "", (bad, err)
    with Store(path) as s:
        assert snapshot(s) == before


def test_subset_saves_the_matching_items_with_their_lineage(capsys, data):
    path, ds, X, meta = data
    with Store(path) as s:
        s.add_dataset(
            make_parsed(X[:50], meta.iloc[:50].reset_index(drop=True)),
            name="with model",
            info={"model": "all-MiniLM-L6-v2", "label_column": "group"},
        )
    code, out, err = run_cli(
        capsys, "--db", str(path), "subset", "pts", "--filter", "group=g3",
        "--filter", "year>=2000", "--name", "g3 recent", "--json",
    )  # fmt: skip
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj) == {"dataset", "name", "n", "dim", "warnings"}
    rows = np.flatnonzero(((meta["group"] == "g3") & (meta["year"] >= 2000)).to_numpy())
    assert obj["n"] == rows.size and obj["name"] == "g3 recent"
    with Store(path) as s:
        new = s.get_dataset(obj["dataset"])
        np.testing.assert_array_equal(s.load_vectors(new.id), X[rows])
        assert list(s.load_ids(new.id)) == [str(r) for r in rows]
        pd.testing.assert_frame_equal(
            s.load_metadata(new.id), meta.iloc[rows].reset_index(drop=True), check_dtype=False
        )
        assert new.info["derived_from"] == ds and new.info["transform"] == "subset"
        assert new.info["transform_params"] == {"filter": ["group=g3", "year>=2000"],
                                                "rows": int(rows.size)}  # fmt: skip
    # The model and label column go with the vectors, which are unchanged.
    code, out, err = run_cli(capsys, "--db", str(path), "subset", "with model", "--filter",
                             "group~g", "--name", "copy", "--json")  # fmt: skip
    assert code == 0, err
    with Store(path) as s:
        kept = s.get_dataset("copy").info
    assert kept["model"] == "all-MiniLM-L6-v2" and kept["label_column"] == "group"
    # Bad input: nothing stored.
    with Store(path) as s:
        before = snapshot(s)
    for bad in (["--filter", "group=nothing"], ["--filter", "colour=red"],
                ["--filter", "group=g3", "--name", "pts"]):  # fmt: skip
        args = [*bad] if "--name" in bad else [*bad, "--name", "x"]
        code, out, err = run_cli(capsys, "--db", str(path), "subset", "pts", *args)
        assert code == 2 and err.startswith("error:"), (bad, err)
    with Store(path) as s:
        assert snapshot(s) == before
