"""AppTest of the Neighbours page: item, vector and text queries, answered in one table that
marks what the index missed, with the exact answer on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from embscope.core.demo import stdlib_docstrings
from embscope.core.demo_store import store_demo_dataset
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, until

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _points(db: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((300, 8)) + rng.integers(0, 3, 300)[:, None] * 4).astype(np.float32)
    import pandas as pd

    meta = pd.DataFrame({"label": [f"<b>group {i % 3}</b>" for i in range(300)]})
    with Store(db) as s:
        s.add_dataset(make_parsed(X, meta, ids=[f"p{i}" for i in range(300)]), name="points")
    return X


def _neighbours_page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.run()
    at.switch_page("../pages/neighbours.py")
    return at.run()


def _result_frames(at) -> tuple:
    """The answer table (the index's answer, its misses marked) and the exact table."""
    frames = [d.value for d in at.dataframe]
    answer = [f for f in frames if "vs exact" in f.columns]
    exact = [f for f in frames if "found by index" in f.columns]
    assert len(answer) == len(exact) == 1, [list(f.columns) for f in frames]
    return answer[0], exact[0]


def test_empty_database(db):
    at = _neighbours_page()
    assert not at.exception
    assert any("No dataset yet" in i.value for i in at.info)


def test_row_query_shows_both_answers_and_recall(db):
    _points(db)
    at = _neighbours_page()
    assert not at.exception
    assert at.title[0].value == "Neighbours"
    by_key(at.radio, "neighbours.item_how").set_value("row").run()
    by_key(at.number_input, "neighbours.row").set_value(12).run()
    by_key(at.button, "neighbours.go_row").click().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "recall@10 of this query" in labels and "Exact search latency" in labels
    found = next(m.value for m in at.metric if m.label == "recall@10 of this query")
    answer, exact = _result_frames(at)
    assert len(exact) == 10 and len(answer) >= 10
    # A count for one query, the same as the marks in both tables.
    hits = int(exact["found by index"].sum())
    assert found == f"{hits} of 10" == f"{(answer['vs exact'] == '✓').sum()} of 10"
    assert (answer["vs exact"] == "✕ missed").sum() == 10 - hits
    assert 12 not in exact["row"].tolist() and 12 not in answer["row"].tolist()
    assert list(answer.columns[:5]) == ["rank", "vs exact", "row", "id", "distance"]
    assert list(exact.columns[:5]) == ["rank", "found by index", "row", "id", "distance"]
    assert (exact["distance"].diff().dropna() >= 0).all()
    assert (answer["distance"].diff().dropna() >= 0).all()
    # Metadata is shown as data, exactly as stored (never rendered as HTML).
    assert exact["label"].str.startswith("<b>group").all()
    assert answer["label"].str.startswith("<b>group").all()
    # The exact answer is there on demand, folded away.
    assert any(e.label.startswith("Show the exact answer") for e in at.expander)
    # Changing k answers the same query again.
    by_key(at.number_input, "neighbours.k").set_value(4).run()
    assert len(_result_frames(at)[1]) == 4


def test_one_table_marks_what_the_index_missed_at_its_place(db, monkeypatch):
    """An index answer that misses the exact 3rd nearest (and returns the 11th instead): one
    table, the missed item at its place without a rank, the stand-in marked, the page's
    recall the same count; the exact answer folded away below."""
    import dataclasses

    from embscope.core.neighbours import NeighbourService, QueryComparison

    real = NeighbourService.compare

    def missing_the_third(self, dataset_id, query, **options):
        got = real(self, dataset_id, query, **{**options, "k": options["k"] + 1})
        exact = got.exact
        keep = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10]  # the 3rd left out, the 11th in its stead
        approx = dataclasses.replace(
            exact, rows=exact.rows[keep], ids=exact.ids[keep], distances=exact.distances[keep]
        )
        first = slice(0, 10)
        exact = dataclasses.replace(
            exact, rows=exact.rows[first], ids=exact.ids[first], distances=exact.distances[first]
        )
        return QueryComparison(approx, exact, 0.9)

    monkeypatch.setattr(NeighbourService, "compare", missing_the_third)
    _points(db)
    at = _neighbours_page()
    by_key(at.radio, "neighbours.item_how").set_value("row").run()
    by_key(at.number_input, "neighbours.row").set_value(12).run()
    by_key(at.button, "neighbours.go_row").click().run()
    assert not at.exception
    assert next(m.value for m in at.metric if m.label.startswith("recall@10")) == "9 of 10"
    answer, exact = _result_frames(at)
    assert len(answer) == 11 and len(exact) == 10
    marks = answer["vs exact"].tolist()
    assert marks == ["✓", "✓", "✕ missed"] + ["✓"] * 7 + ["– not in exact top 10"]
    assert answer["rank"].isna().tolist() == [False, False, True] + [False] * 8
    assert answer["rank"].dropna().astype(int).tolist() == list(range(1, 11))
    assert answer["row"].iloc[2] == exact["row"].iloc[2]
    assert not exact["found by index"].iloc[2] and exact["found by index"].sum() == 9
    assert (answer["distance"].diff().dropna() >= 0).all()  # in the order of distance
    assert any("found 9 of the exact 10 nearest" in m.value for m in at.markdown)
    assert any(e.label.startswith("Show the exact answer") for e in at.expander)


def test_search_then_pick_an_item(db):
    _points(db)
    at = _neighbours_page()
    by_key(at.text_input, "neighbours.search").input("p42").run()
    pick = by_key(at.selectbox, "neighbours.pick.p42")
    assert "row 42 · p42" in pick.options[0]
    pick.set_value(0).run()
    assert not at.exception
    assert any("row 42 (id p42)" in m.value.replace("\\", "") for m in at.markdown)
    assert 42 not in _result_frames(at)[1]["row"].tolist()


def test_a_search_with_one_match_answers_at_once(db):
    _points(db)
    at = _neighbours_page()
    by_key(at.text_input, "neighbours.search").input("p299").run()
    pick = by_key(at.selectbox, "neighbours.pick.p299")
    assert pick.label == "1 matching item" and pick.value == 0
    assert not at.exception
    assert any("row 299 (id p299)" in m.value.replace("\\", "") for m in at.markdown)
    by_key(at.text_input, "neighbours.search").input("p29").run()
    pick = by_key(at.selectbox, "neighbours.pick.p29")
    assert pick.label == "11 matching items" and pick.value is None  # p29, p290..p299: pick one


def test_vector_query_and_bad_vector(db):
    X = _points(db)
    at = _neighbours_page()
    # The box sits in a form: its text reaches the page with the submit (Ctrl+Enter or a
    # click), in the same run.
    by_key(at.text_area, "neighbours.vector_text").input(", ".join(map(str, X[5])))
    by_key(at.button, "neighbours.go_vector").click().run()
    assert not at.exception
    exact = _result_frames(at)[1]
    assert exact["row"].iloc[0] == 5 and exact["distance"].iloc[0] == pytest.approx(0, abs=1e-5)
    by_key(at.text_area, "neighbours.vector_text").input("1, 2, three")
    by_key(at.button, "neighbours.go_vector").click().run()
    assert any("not a list of numbers" in e.value for e in at.error)
    by_key(at.text_area, "neighbours.vector_text").input("1, 2")
    by_key(at.button, "neighbours.go_vector").click().run()
    assert any("dimension 2" in e.value for e in at.error)


def test_id_query_in_one_submit_and_an_empty_submit_says_what_to_do(db):
    _points(db)
    at = _neighbours_page()
    by_key(at.radio, "neighbours.item_how").set_value("id").run()
    by_key(at.button, "neighbours.go_id").click().run()  # nothing typed: no query, a hint
    assert not at.exception and not at.dataframe
    assert any("Type an item's id first" in c.value for c in at.caption)
    by_key(at.text_input, "neighbours.id").input("p7")
    by_key(at.button, "neighbours.go_id").click().run()
    assert not at.exception
    assert any("row 7 (id p7)" in m.value.replace("\\", "") for m in at.markdown)
    answer, exact = _result_frames(at)
    assert "p7" not in answer["id"].tolist() and len(exact) == 10


def test_text_box_hidden_with_a_reason_when_model_unknown(db):
    _points(db)
    at = _neighbours_page()
    assert not [t for t in at.text_input if t.key == "neighbours.text"]
    assert any("does not record which model" in i.value for i in at.info)


def test_text_query_with_the_model(db):
    pytest.importorskip("onnxruntime")
    with Store(db) as s:
        store_demo_dataset(s, stdlib_docstrings())
    at = _neighbours_page()
    # A form: the text and the submit arrive in one run (Enter or one click in a browser).
    by_key(at.text_input, "neighbours.text").input("parse a JSON document")
    by_key(at.button, "neighbours.go_text").click().run()
    assert not at.exception
    exact = _result_frames(at)[1]
    assert (exact["module"] == "json").sum() >= 5, exact["module"].tolist()


def test_text_query_of_a_dataset_embedded_with_wordllama(db):
    """The query is embedded by the dataset's own model (256-d WordLlama, not MiniLM)."""
    import dataclasses

    from embscope.core.text_model import load_text_encoder, text_model_status

    wordllama = "wordllama/l2_supercat_256"
    if not text_model_status(wordllama)[0]:
        pytest.skip(text_model_status(wordllama)[1])
    demo = stdlib_docstrings()
    vectors = load_text_encoder(wordllama).encode(demo.metadata["text"].tolist())
    demo = dataclasses.replace(demo, vectors=vectors, info={**demo.info, "model": wordllama})
    with Store(db) as s:
        store_demo_dataset(s, demo, name="docstrings (wordllama)")
    at = _neighbours_page()
    by_key(at.text_input, "neighbours.text").input("parse a JSON document")
    by_key(at.button, "neighbours.go_text").click().run()
    assert not at.exception
    exact = _result_frames(at)[1]
    assert (exact["module"] == "json").sum() >= 5, exact["module"].tolist()


def test_diagnostics_run_once_then_show_from_the_store(db):
    _points(db)
    at = _neighbours_page()
    assert not at.get("plotly_chart")
    by_key(at.button, "diagnostics.run_ef").click().run()
    at = until(at, lambda a: len(a.get("plotly_chart")) >= 2)  # background jobs
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2  # recall vs ef, and recall vs LID
    by_key(at.selectbox, "diagnostics.label_column").set_value("label").run()
    by_key(at.button, "diagnostics.run_order").click().run()
    at = until(at, lambda a: len(a.get("plotly_chart")) >= 3)
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3
    # A new session finds all three stored: no button to press.
    again = _neighbours_page()
    by_key(again.selectbox, "diagnostics.label_column").set_value("label").run()
    assert len(again.get("plotly_chart")) == 3
    assert not [b for b in again.button if b.key and b.key.startswith("diagnostics.run")]


def test_diagnostics_are_a_job_the_page_stays_usable_and_cancel_stops_them(db, monkeypatch):
    """Recall vs ef runs as a background job: the page's run returns while it works (a query
    can be answered meanwhile) and Cancel stops it with nothing stored."""
    import threading

    from embscope.app.runtime import get_job_runner, get_neighbour_service
    from embscope.core import diagnostics_runs as dr
    from embscope.core.errors import OperationCancelled

    _points(db)
    started, release = threading.Event(), threading.Event()
    real = dr.recall_vs_ef

    def held(X, **options):
        started.set()
        progress = options.get("progress")
        while not release.wait(0.05):
            if progress is not None and progress(0.5, "held by the test"):
                raise OperationCancelled("measuring recall against ef was cancelled")
        return real(X, **options)

    monkeypatch.setattr(dr, "recall_vs_ef", held)
    at = _neighbours_page()
    by_key(at.button, "diagnostics.run_ef").click().run()
    assert started.wait(60)
    service = get_neighbour_service()
    key = dr.ef_key(service, 1, metric="cosine", k=10)
    assert get_job_runner().status(key).state == "running"
    assert [b for b in at.button if b.label == "Cancel"] and not at.exception
    # The page answers a query while the job holds.
    by_key(at.radio, "neighbours.item_how").set_value("row").run()
    by_key(at.number_input, "neighbours.row").set_value(3).run()
    by_key(at.button, "neighbours.go_row").click().run()
    assert not at.exception
    assert any("row 3" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Cancel").click().run()
    at = until(at, lambda a: get_job_runner().status(key).state == "cancelled")
    assert dr.ef_diagnostics(service, 1, run=False) is None
    release.set()


def test_a_cancelled_index_build_is_not_started_again_by_the_next_run(db, monkeypatch):
    """The page starts the index job of a query once; after Cancel it says so and offers a
    button, rather than starting the build again on the next run."""
    import threading

    from embscope.app.runtime import get_job_runner, get_neighbour_service
    from embscope.core import index as index_module
    from embscope.core.errors import OperationCancelled

    _points(db)
    release = threading.Event()
    real_build = index_module.HnswIndex.build_from  # the service builds from the store's batches

    def held(self, batches, n, *, progress=None):
        while not release.wait(0.05):
            if progress is not None and progress(0.1, "held by the test"):
                raise OperationCancelled("building the index was cancelled")
        return real_build(self, batches, n, progress=progress)

    monkeypatch.setattr(index_module.HnswIndex, "build_from", held)
    monkeypatch.setattr("embscope.app.neighbours_view.INDEX_WAIT_S", 0.2)
    at = _neighbours_page()
    by_key(at.radio, "neighbours.item_how").set_value("row").run()
    by_key(at.number_input, "neighbours.row").set_value(3).run()
    by_key(at.button, "neighbours.go_row").click().run()
    key = get_neighbour_service().index_fingerprint(1, metric="cosine")
    first = get_job_runner().get(key)
    assert first is not None and first.status().active
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert first.wait(30) and first.status().state == "cancelled"
    at.run()
    assert get_job_runner().get(key) is first  # not started again
    assert any("cancelled" in w.value for w in at.warning)
    release.set()
    by_key(at.button, "neighbours.build_index").click().run()
    at = until(at, lambda a: any("row 3" in m.value for m in a.markdown))
    assert not at.exception


def test_the_metric_starts_at_the_datasets_own(db):
    rng = np.random.default_rng(2)
    with Store(db) as s:
        s.add_dataset(make_parsed(rng.random((80, 3))), name="cloud", info={"metric": "l2"})
        s.add_dataset(make_parsed(rng.random((80, 32))), name="emb", info={"metric": "ip"})
    at = _neighbours_page()
    assert not at.exception
    # The sidebar opens on the last dataset (emb, ip); then the point cloud (l2).
    assert by_key(at.selectbox, "neighbours.metric").value == "ip"
    at.sidebar.selectbox[0].set_value(1).run()
    assert by_key(at.selectbox, "neighbours.metric").value == "l2"
    # A choice made on the page stays while the dataset does.
    by_key(at.selectbox, "neighbours.metric").set_value("cosine").run()
    assert by_key(at.selectbox, "neighbours.metric").value == "cosine"


def test_reduce_hubs_scores_the_answer_and_measures_its_effect(db):
    _points(db)
    at = _neighbours_page()
    by_key(at.selectbox, "neighbours.reduce").set_value("mp").run()
    by_key(at.radio, "neighbours.item_how").set_value("row").run()
    by_key(at.number_input, "neighbours.row").set_value(12).run()
    by_key(at.button, "neighbours.go_row").click().run()
    at = until(at, lambda a: any("row 12" in m.value for m in a.markdown))
    assert not at.exception
    answer, exact = _result_frames(at)
    assert list(exact.columns[:6]) == ["rank", "found by index", "row", "id", "distance", "score"]
    assert list(answer.columns[:6]) == ["rank", "vs exact", "row", "id", "distance", "score"]
    assert list(answer["score"]) == sorted(answer["score"], reverse=True)
    assert any("Mutual proximity" in c.value for c in at.caption)
    assert at.query_params.get("reduce") == "mp"
    by_key(at.selectbox, "hubness.label_column").set_value("label").run()
    by_key(at.button, "hubness.run").click().run()
    at = until(at, lambda a: any("candidate pool" in c.value for c in a.caption))
    assert not at.exception
    table = next(d.value for d in at.dataframe if "method" in d.value.columns)
    assert list(table["method"]) == ["Off", "CSLS", "Mutual proximity"]
    assert table["recall@10 vs exact"].iloc[0] == 1.0
    assert table["same label"].between(0, 1).all()
