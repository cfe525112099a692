"""AppTest of share links: every page restores its view from the URL's query parameters and
writes its current view back; bad values in a link are ignored with a toast, never an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from embscope.core.compression import runs as crun
from embscope.core.derive import save_derived_dataset
from embscope.core.projections import runs
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    """Two datasets over the same 300 items (ids p0..p299) with a PCA layout each."""
    path = tmp_path / "share.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    monkeypatch.delenv("EMBSCOPE_READ_ONLY", raising=False)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    X = (rng.standard_normal((300, 12)) + 5 * rng.standard_normal((3, 12))[labels]).astype(
        np.float32
    )
    meta = pd.DataFrame({"label": [f"c{v}" for v in labels], "note": [f"n{i}" for i in range(300)]})
    with Store(path) as s:
        info = s.add_dataset(
            make_parsed(X, meta, ids=[f"p{i}" for i in range(300)]),
            name="points",
            info={"label_column": "label"},
        )
        save_derived_dataset(
            s, info.id, X + 0.3 * rng.standard_normal(X.shape).astype(np.float32),
            name="points noisy", transform="noise",
        )  # fmt: skip
        runs.compute_projection(s, 1, method="pca", metric="l2")
        runs.compute_projection(s, 2, method="pca", metric="l2")
    return path


def _open(page: str, query: dict) -> AppTest:
    """A new session opening ``query`` as a link to ``page``."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page(f"../pages/{page}.py")
    at.query_params = dict(query)
    return at.run()


def _toasts(at: AppTest) -> list[str]:
    return [t.value.replace("\\", "") for t in at.toast]


def _has_copy_button(at: AppTest) -> bool:
    return any("embscope-copy-link" in h.proto.body for h in at.get("html"))


def _fp(db: Path, dataset_id: int) -> str:
    with Store(db, read_only=True) as s:
        return runs.list_projections(s, dataset_id)[0].fingerprint


def test_projections_link_restores_view_selection_and_partner(db):
    beside = _fp(db, 2)[:12]
    link = {
        "dataset": "1", "method": "pca", "dims": "2", "seed": "0", "metric": "l2",
        "color": "label", "hover": "note", "item": "p7", "beside": beside,
    }  # fmt: skip
    at = _open("projections", link)
    assert not at.exception
    assert at.sidebar.selectbox[0].value == 1
    assert by_key(at.selectbox, "projections.method").value == "pca"
    assert by_key(at.selectbox, "projections.metric.1").value == "l2"
    assert by_key(at.selectbox, "projections.colour.1").value == "label"
    assert by_key(at.multiselect, "projections.hover.1").value == ["note"]
    assert by_key(at.toggle, "projections.side_by_side").value is True
    assert by_key(at.selectbox, "projections.beside.1").value.startswith(beside)
    assert len(at.get("plotly_chart")) == 2  # side by side
    # the selected item: its row listed, and its nearest neighbours
    assert any("1 selected point" in m.value for m in at.markdown)
    assert any("Nearest neighbours of" in m.value and "p7" in m.value for m in at.markdown)
    assert not at.toast and _has_copy_button(at)
    # written back: the address bar is the link (plus the defaults it left out)
    assert at.query_params == {**link, "side": "1"}
    # a big selection is left out of the link, with a word about it
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": list(range(60))}
    at.run()
    assert "item" not in at.query_params
    assert any("left out of it" in c.value for c in at.caption)
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [7]}
    # a second run does not re-apply the link over the user's change
    by_key(at.selectbox, "projections.colour.1").set_value("note")
    at.run()
    at.run()
    assert by_key(at.selectbox, "projections.colour.1").value == "note"
    assert at.query_params["color"] == "note"


def test_projections_link_to_a_method_not_computed_keeps_its_parameters(db):
    link = {
        "dataset": "2", "method": "umap", "dims": "3", "seed": "7", "metric": "cosine",
        "p.n_neighbors": "20", "p.min_dist": "0.25", "p.n_epochs": "300", "color": "label",
    }  # fmt: skip
    at = _open("projections", link)
    assert not at.exception and not at.toast
    assert at.sidebar.selectbox[0].value == 2
    assert by_key(at.number_input, "projections.umap.n_neighbors").value == 20
    assert by_key(at.number_input, "projections.umap.min_dist").value == pytest.approx(0.25)
    assert by_key(at.checkbox, "projections.umap.n_epochs.auto").value is False
    assert by_key(at.number_input, "projections.umap.n_epochs").value == 300
    assert by_key(at.number_input, "projections.seed").value == 7
    assert any(b.label == "Compute the UMAP projection" for b in at.button)
    assert at.query_params == link  # nothing lost while the projection is not computed


def test_projections_link_keeps_the_look_of_the_map(db):
    """Point size, opacity, cluster names and density travel in the link (on the sliders'
    steps); a value past its bound is ignored with a toast; defaults are left out."""
    link = {"dataset": "1", "method": "pca", "metric": "l2", "size": "4.2", "opacity": "0.33",
            "names": "0", "density": "1"}  # fmt: skip
    at = _open("projections", link)
    assert not at.exception
    assert by_key(at.slider, "projections.size.1").value == 4.0
    assert by_key(at.slider, "projections.opacity.1").value == pytest.approx(0.35)
    assert by_key(at.toggle, "projections.cluster_names").value is False
    assert by_key(at.toggle, "projections.density.1").value is True
    written = at.query_params
    assert written["size"] == "4" and written["opacity"] == "0.35"
    assert written["names"] == "0" and written["density"] == "1"
    at = _open("projections", {"dataset": "1", "method": "pca", "size": "40", "opacity": "-1"})
    assert not at.exception
    toasts = _toasts(at)
    assert any("size=40" in t for t in toasts) and any("opacity=-1" in t for t in toasts)
    assert "size" not in at.query_params and "opacity" not in at.query_params


def test_projections_link_with_bad_values_is_ignored_with_toasts(db):
    link = {
        "dataset": "99", "method": "tsne", "dims": "7", "seed": "-3", "metric": HOSTILE,
        "color": "nope", "hover": "nope", "item": HOSTILE, "p.bogus": "1", "beside": "zz",
        "side": "maybe", "token": "secret",
    }  # fmt: skip
    at = _open("projections", link)
    assert not at.exception
    toasts = _toasts(at)
    assert len(toasts) == 11, toasts
    for name in ("dataset=99", "method=tsne", "dims=7", "seed=-3", "p.bogus=1", "side=maybe"):
        assert any(name in t for t in toasts), (name, toasts)
    assert any(HOSTILE in t for t in toasts)  # shown as text (markdown-escaped), not HTML
    # the session's layout stays: the most faithful stored one it first opened (dataset 2's PCA)
    assert by_key(at.selectbox, "projections.method").value == "pca"
    written = at.query_params
    assert written["method"] == "pca" and written["dims"] == "2"
    assert "token" not in written and "p.bogus" not in written and "item" not in written


def test_projection_parameters_past_their_bounds_are_ignored_with_toasts(db):
    """A link cannot ask for unbounded work: each method parameter is checked against the
    method's table (n_neighbors at most 200 and below n, negatives at most 20, ...)."""
    link = {
        "dataset": "1", "method": "largevis", "p.n_neighbors": "2999", "p.negatives": "25",
        "p.samples_per_point": "auto", "p.gamma": "60",
    }  # fmt: skip
    at = _open("projections", link)
    assert not at.exception
    toasts = _toasts(at)
    for name in ("p.n_neighbors=2999", "p.negatives=25", "p.gamma=60"):
        assert any(name in t for t in toasts), (name, toasts)
    assert not any("samples_per_point" in t for t in toasts)
    assert by_key(at.number_input, "projections.largevis.n_neighbors").value <= 200
    assert by_key(at.number_input, "projections.largevis.negatives").value == 5
    assert by_key(at.checkbox, "projections.largevis.samples_per_point.auto").value is True
    # Text no number parser should ever see: deep nesting, a 5,000-digit integer.
    for hostile in ("[" * 990 + "]" * 990, "9" * 1900):
        at = _open("projections", {"dataset": "1", "method": "umap", "p.n_neighbors": hostile})
        assert not at.exception
        assert any("n_neighbors" in t for t in _toasts(at))


def test_neighbours_link_runs_its_query_on_open(db):
    link = {"dataset": "1", "k": "5", "metric": "l2", "backend": "exact", "ef": "64", "row": "12"}
    at = _open("neighbours", link)
    assert not at.exception and not at.toast
    assert by_key(at.number_input, "neighbours.k").value == 5
    assert by_key(at.selectbox, "neighbours.metric").value == "l2"
    assert by_key(at.selectbox, "neighbours.backend").value == "exact"
    assert by_key(at.radio, "neighbours.item_how").value == "row"
    assert by_key(at.number_input, "neighbours.row").value == 12
    exact = at.dataframe[-1].value
    assert len(exact) == 5 and 12 not in exact["row"].tolist()
    assert any("row 12 (id p12)" in m.value.replace("\\", "") for m in at.markdown)
    assert _has_copy_button(at)
    assert at.query_params == {**link, "find": "row"}
    # by id, and the id is written back
    at = _open("neighbours", {"dataset": "1", "id": "p42"})
    assert not at.exception and not at.toast
    assert by_key(at.text_input, "neighbours.id").value == "p42"
    assert any("p42" in m.value.replace("\\", "") for m in at.markdown if "Query" in m.value)
    assert at.query_params["id"] == "p42" and at.query_params["find"] == "id"
    # a metadata search is kept in the link too
    at = _open("neighbours", {"dataset": "1", "search": "p4"})
    assert not at.exception and not at.toast
    assert by_key(at.text_input, "neighbours.search").value == "p4"
    assert "p4" in by_key(at.selectbox, "neighbours.pick.p4").options[0]
    assert at.query_params["search"] == "p4"


def test_neighbours_link_with_bad_values(db):
    link = {"dataset": "1", "k": "9999", "ef": "1e9", "row": "abc", "id": "nope", "text": "x"}
    at = _open("neighbours", link)
    assert not at.exception
    toasts = _toasts(at)
    for name in ("k=9999", "ef=1e9", "row=abc", "id=nope", "text=x"):
        assert any(name in t for t in toasts), (name, toasts)
    assert any("does not record which model" in t for t in toasts)  # why text is refused
    assert not at.metric  # no query ran
    assert set(at.query_params) == {"dataset", "k", "metric", "backend", "ef"}


def test_compression_link_restores_codecs_and_settings(db, monkeypatch):
    link = {
        "dataset": "1", "metric": "l2", "queries": "50", "k": "5", "rescore": "2",
        "codecs": "int8,pca:4",
    }  # fmt: skip
    at = _open("compression", link)
    assert not at.exception and not at.toast
    assert by_key(at.selectbox, "compression.metric.1").value == "l2"
    assert by_key(at.number_input, "compression.queries.1").value == 50
    assert by_key(at.number_input, "compression.k").value == 5
    assert by_key(at.number_input, "compression.rescore").value == 2
    assert by_key(at.multiselect, "compression.codecs.1.l2").value == ["int8", "pca:4"]
    assert _has_copy_button(at)
    assert at.query_params == link
    # bad codecs are dropped one by one; a binary code cannot serve l2
    at = _open("compression", {**link, "codecs": "int8,pq:0,binary,<b>x</b>", "k": "0"})
    assert not at.exception
    assert len(_toasts(at)) == 4, _toasts(at)
    assert by_key(at.multiselect, "compression.codecs.1.l2").value == ["int8"]
    assert at.query_params["codecs"] == "int8" and at.query_params["k"] == "10"


def test_compression_read_only_hides_save(db, monkeypatch):
    options = {"codecs": ["int8"], "metric": "l2", "n_queries": 50, "k": 5, "rescore": 2}
    with Store(db) as s:
        crun.get_or_evaluate(s, 1, **options)
    link = {"dataset": "1", "metric": "l2", "queries": "50", "k": "5", "rescore": "2",
            "codecs": "int8"}  # fmt: skip
    at = _open("compression", link)
    assert not at.exception
    assert any(b.key == "compression.save" for b in at.button)
    monkeypatch.setenv("EMBSCOPE_READ_ONLY", "1")
    at = _open("compression", link)
    assert not at.exception
    assert any("codec" in d.value.columns for d in at.dataframe)  # the report is shown
    assert not any(b.key == "compression.save" for b in at.button)
    assert any("Read-only demo" in c.value for c in at.caption)


def test_compare_link_restores_partner_k_and_layouts(db):
    fp = _fp(db, 2)[:12]
    link = {"dataset": "1", "other": "2", "k": "7", "metric": "l2", "layout_a": "pca",
            "layout_b": fp}  # fmt: skip
    at = _open("compare", link)
    assert not at.exception and not at.toast
    assert by_key(at.selectbox, "compare.other.1").value == 2
    assert by_key(at.number_input, "compare.k").value == 7
    assert by_key(at.selectbox, "compare.metric.1").value == "l2"
    assert _has_copy_button(at)
    assert at.query_params == link  # kept while the comparison waits for its button
    at = _open("compare", {"dataset": "1", "other": "1", "k": "x", "layout_a": "abcdef01"})
    assert not at.exception
    assert len(_toasts(at)) == 3, _toasts(at)
    assert by_key(at.selectbox, "compare.other.1").value == 2  # the proposed partner


def test_geometry_link_restores_options(db, monkeypatch):
    link = {"dataset": "1", "k": "7", "metric": "l2", "color": "k-occurrence", "hover": "label",
            "compare": "2", "transform": "whiten", "preview": "1"}  # fmt: skip
    at = _open("geometry", link)
    assert not at.exception and not at.toast
    assert by_key(at.number_input, "geometry.k").value == 7
    assert by_key(at.selectbox, "geometry.metric").value == "l2"
    assert by_key(at.multiselect, "geometry.compare").value == [2]
    assert by_key(at.selectbox, "geometry.transform").value == "whiten"
    assert by_key(at.toggle, "geometry.preview").value is True
    assert any(b.key == "geometry.save_derived" for b in at.button)
    assert _has_copy_button(at)
    assert at.query_params == link
    monkeypatch.setenv("EMBSCOPE_READ_ONLY", "1")
    at = _open("geometry", {**link, "metric": "ip", "compare": "1,5", "preview": "2"})
    assert not at.exception
    assert len(_toasts(at)) == 4, _toasts(at)
    assert not any(b.key == "geometry.save_derived" for b in at.button)
    assert any("Read-only demo" in c.value for c in at.caption)


def test_datasets_link_by_id_or_name(db):
    at = _open("datasets", {"dataset": "2"})
    assert not at.exception and at.sidebar.selectbox[0].value == 2
    assert _has_copy_button(at) and at.title[0].value == "Datasets"
    assert at.query_params == {"dataset": "2"}
    at = _open("datasets", {"dataset": "points"})
    assert at.sidebar.selectbox[0].value == 1 and at.query_params == {"dataset": "1"}
    # choosing another dataset in the sidebar changes the link, not the other way round
    at.sidebar.selectbox[0].set_value(2)
    at.run()
    assert at.sidebar.selectbox[0].value == 2 and at.query_params == {"dataset": "2"}


def test_link_readers_refuse_odd_text():
    from embscope.app.share import Link

    link = Link(
        {
            "a": ["1_000"],
            "b": ["٣"],
            "c": ["nan"],
            "d": ["1e400"],
            "e": ["x" * 5000],
            "f": ["a", "b", "c"],
            "g": [""],
            "h": ["0x10"],
        }  # fmt: skip
    )
    # outside a Streamlit run st.toast is a no-op: only the values are checked here
    assert link.integer("a", 0, 10**6) is None  # no underscores
    assert link.integer("b", 0, 10) is None  # ASCII digits only
    assert link.number("c", 0, 1) is None and link.number("d", 0, 1e300) is None
    assert link.raw("e") is None  # too long
    assert link.values("f", max_count=2) is None and link.values("f") == ["a", "b", "c"]
    assert link.values("g") == [] and link.text("g") is None
    assert link.integer("h", 0, 100) is None
    assert link.ignored == ["a", "b", "c", "d", "e", "f", "h"]


def test_going_to_another_page_and_back_keeps_the_view(db):
    link = {"dataset": "1", "method": "pca", "metric": "l2", "color": "note", "item": "p3"}
    at = _open("projections", link)
    assert by_key(at.selectbox, "projections.colour.1").value == "note"
    written = dict(at.query_params)
    at.switch_page("../pages/neighbours.py")
    at.query_params = {}  # the browser drops the address's parameters on a page change
    at.run()
    assert not at.exception and set(at.query_params) >= {"dataset", "k", "metric"}
    at.switch_page("../pages/projections.py")
    at.query_params = {}
    at.run()
    assert not at.exception and not at.toast
    assert by_key(at.selectbox, "projections.method").value == "pca"
    assert by_key(at.selectbox, "projections.colour.1").value == "note"
    assert at.query_params == written
    # the selection is shared with other pages: one made elsewhere is not undone on return
    at.switch_page("../pages/compare.py")
    at.query_params = {}
    at.run()
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [8, 9]}
    at.run()
    at.switch_page("../pages/projections.py")
    at.query_params = {}
    at.run()
    assert at.query_params["item"] == ["p8", "p9"]
    assert any("2 selected point" in m.value for m in at.markdown)
    # after choosing another dataset elsewhere, the page opens on that dataset's defaults
    at.switch_page("../pages/datasets.py")
    at.query_params = {}
    at.run()
    at.sidebar.selectbox[0].set_value(2)
    at.run()
    at.switch_page("../pages/projections.py")
    at.query_params = {}
    at.run()
    assert not at.exception and not at.toast
    assert at.query_params["dataset"] == "2" and "item" not in at.query_params


def test_open_in_neighbours_goes_by_a_link(db):
    at = _open("projections", {"dataset": "1", "method": "pca", "metric": "l2", "item": "p7"})
    by_key(at.button, "projections.open_neighbours").click()
    at.run()
    assert not at.exception and at.title[0].value == "Neighbours"
    assert any("row 7 (id p7)" in m.value.replace("\\", "") for m in at.markdown)
    assert at.query_params["row"] == "7" and at.query_params["dataset"] == "1"
