"""AppTest of the Compression page: a background run, its table, Pareto plot and harm map."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from embscope.core.demo import gaussian_mixture
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import assert_index_built_in_background, by_key, open_page, until


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "compress.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    with Store(path) as s:
        store_demo_dataset(s, gaussian_mixture(600, 32, 4, seed=0), name="gm")
    return path


def _values(array):
    """A plotly array from a figure's JSON: a list, or numpy's bytes in base64."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_run_shows_table_pareto_and_harm_map_then_saves_a_copy(db):
    at = open_page("compression")
    assert not at.exception and at.title[0].value == "Compression"
    codecs = by_key(at.multiselect, "compression.codecs.1.cosine")
    assert {"int8", "binary", "pq:4"} <= set(codecs.value)
    # another budget through the spec box: added to the choices
    at.text_input[0].input("pca:8")
    next(b for b in at.button if b.label == "Add").click()
    at.run()
    assert not at.exception
    codecs = by_key(at.multiselect, "compression.codecs.1.cosine")
    assert "pca:8" in codecs.options
    codecs.set_value(["int8", "binary", "pca:8"])
    by_key(at.number_input, "compression.queries.1").set_value(600)  # every point a query
    at.run()
    assert not at.dataframe  # nothing computed until asked
    by_key(at.button, "compression.run").click()
    at.run()
    at = until(at, lambda a: any("codec" in d.value.columns for d in a.dataframe))
    assert not at.exception
    table = next(d.value for d in at.dataframe if "codec" in d.value.columns)
    assert table["codec"].tolist() == ["int8", "binary", "pca:8"]
    # every recall shown with its 95 % interval: "0.977 ± 0.008" (or its two ends)
    assert all(("±" in v or "–" in v) for v in table["recall@10"]), table["recall@10"]
    assert float(table.loc[0, "recall@10"].split()[0]) > 0.9
    assert table.loc[1, "bytes_per_vector"] == 4
    # re-ranking with float32 holds 4·d more bytes per vector
    assert table["bytes_per_vector_rescored"].tolist() == [32 + 128, 4 + 128, 32 + 128]
    assert table["rescored_with"].tolist() == ["float32"] * 3
    assert table["dim"].tolist() == [32, 32, 8] and table.loc[2, "effective_rank"] <= 8
    # PCA-8's geometry beside the float32 vectors' top 8 principal components, not the 32-d
    assert table.loc[2, "reference_effective_rank"] <= 8
    assert abs(table.loc[2, "isoscore"] - table.loc[2, "reference_isoscore"]) < 0.01
    assert table.loc[0, "reference_isoscore"] == table.loc[1, "reference_isoscore"]
    assert any("the float32 vectors score 0." in c.value for c in at.caption)
    assert any("top-k principal components" in c.value for c in at.caption)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # Pareto + harm map
    assert "log" in charts[0].proto.spec and "recall@10 of binary" in charts[1].proto.spec
    pareto = json.loads(charts[0].proto.spec)["data"]
    codecs = [t for t in pareto if t["name"] != "Pareto front"]
    for trace in codecs:  # 95 % error bars on every point
        assert len(_values(trace["error_y"]["arrayminus"])) == len(_values(trace["x"]))
    assert any(t["name"] == "Pareto front" for t in pareto)  # the best recall for the bytes
    assert any(max(_values(t["error_y"]["array"])) > 0 for t in codecs)
    by_toggle = by_key(at.toggle, "compression.pareto_rescored")
    by_toggle.set_value(True)
    at.run()
    assert not at.exception
    pareto = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    int8 = next(t for t in pareto if t["name"].startswith("int8"))
    assert _values(int8["x"]) == [32 + 128] and "float32" in int8["name"]  # code + float32
    assert "re-ranking" in int8["hovertemplate"]
    assert any("4·d = 128 bytes per vector" in c.value for c in at.caption)
    assert any("query points keep fewer than half" in c.value for c in at.caption)
    by_key(at.selectbox, "compression.save_spec.1").set_value("int8")
    by_key(at.button, "compression.save").click()
    at.run()
    assert not at.exception
    assert any("Saved gm" in s.value and "int8" in s.value for s in at.success)
    from embscope.app.runtime import get_store  # the page holds the database open: share it

    [copy] = [d for d in get_store().list_datasets() if "int8" in d.name]
    assert_index_built_in_background(copy.id)
    assert len(at.get("plotly_chart")) == 4  # + the original beside its copy


def test_original_beside_a_saved_copy_is_like_for_like(db):
    """A saved copy is laid out as the original is (same method, parameters and seed,
    computed in the background), not a UMAP beside a PCA."""
    import json

    from embscope.app.runtime import get_store
    from embscope.core.artifacts import get_or_compute
    from embscope.core.compression import runs as crun
    from embscope.core.compression import save_compressed_copy
    from embscope.core.projections import runs

    with Store(db) as s:
        umap = runs.compute_projection(s, 1, method="umap", params={"n_epochs": 60})
        copy = save_compressed_copy(s, 1, "int8", metric="cosine")
        request = crun.compression_request(s, 1, codecs=["int8"], metric="cosine", n_queries=600)
        get_or_compute(s, crun.COMPRESSION, request)
    at = open_page("compression", {"dataset": "1", "codecs": "int8", "queries": "600"})
    assert not at.exception
    assert by_key(at.selectbox, "compression.side_a.1").value == umap.fingerprint
    assert by_key(at.selectbox, "compression.side_b.2").value == "same as the left"
    by_key(at.button, "compression.pair.compute").click().run()  # a click starts the twin
    at = until(at, lambda a: len(a.get("plotly_chart")) == 4)  # Pareto, harm map, the pair
    assert not at.exception
    titles = [
        (json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "")
        for c in at.get("plotly_chart")
    ]
    assert "UMAP 2-D of gm" in titles and f"UMAP 2-D of {copy.name} (aligned)" in titles
    [twin] = runs.list_projections(get_store(), copy.id)
    assert (twin.method, twin.seed, dict(twin.params)) == ("umap", 0, dict(umap.params))
    assert any("Like for like" in c.value for c in at.caption)
