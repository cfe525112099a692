"""AppTest of the Datasets page's Metric control: the metric and its reason shown, changed
through the page, the old metric's stored results kept or dropped as confirmed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from embscope.app.state import DATASET_KEY
from embscope.core.graph import get_or_build_graph
from embscope.core.store import Store
from embscope.core.validation import metric_record
from tests.helpers import make_parsed

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
EVIL = "**bold** <b>x</b>"
ESCAPED = r"\*\*bold\*\* \<b\>x\</b\>"  # as md_escape writes it: shown literally


def _store_with_graph(db: Path, name: str = "blobs", reason: str | None = None) -> tuple[int, str]:
    """A cosine dataset (metric chosen at upload) with its cosine neighbour graph stored: its
    id and the graph's fingerprint."""
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    record = metric_record(X, "cosine") | ({} if reason is None else {"metric_reason": reason})
    with Store(db) as s:
        info = s.add_dataset(make_parsed(X), name=name, info=record)
        get_or_build_graph(s, info.id, k=5, metric="cosine")
        [graph] = s.list_artifacts(info.id)
        return info.id, graph.fingerprint


def _store():
    from embscope.app.runtime import get_store  # the page's store (it holds the file open)

    return get_store()


def _change_to(at: AppTest, metric: str) -> None:
    [box] = [s for s in at.selectbox if s.label == "Change the metric to"]
    assert box.value == "cosine"
    box.set_value(metric)
    at.run()
    [button] = [b for b in at.button if b.label == "Change metric"]
    button.click()
    at.run()
    assert not at.exception, at.exception


def _catalog_metric(at: AppTest) -> list[str]:
    catalog = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    return catalog["metric"].tolist()


def test_the_metric_is_changed_on_the_page_and_the_old_results_dropped_when_asked(db):
    dataset, _ = _store_with_graph(db, EVIL, reason=EVIL)
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    shown = [m.value for m in at.markdown if m.value.startswith("**Metric:**")]
    assert shown == [rf"**Metric:** cosine ({ESCAPED}) — every page starts with it."]
    at.session_state["neighbours.metric_for"] = dataset  # the Neighbours page was opened
    _change_to(at, "l2")
    # Asked first: nothing changed yet; the dialog names the dataset escaped.
    assert _store().get_dataset(dataset).metric == "cosine"
    [question] = [m.value for m in at.markdown if "stored result" in m.value]
    assert question.startswith(rf"**{ESCAPED}**: from cosine to Euclidean \(l2\).")
    assert "1 stored result (1 neighbour graph) was computed with cosine" in question
    [b for b in at.button if b.key == "metric_drop"][0].click()
    at.run()
    assert not at.exception, at.exception
    info = _store().get_dataset(dataset)
    assert info.metric == "l2" and info.info["metric_reason"] == "chosen after upload"
    assert _store().list_artifacts(dataset) == []
    assert _catalog_metric(at) == ["l2"]
    assert any(r"is now Euclidean \(l2\)" in s.value and "Dropped" in s.value for s in at.success)
    shown = [m.value for m in at.markdown if m.value.startswith("**Metric:**")]
    assert shown == [
        r"**Metric:** Euclidean \(l2\) (chosen after upload) — every page starts with it."
    ]
    # Every page's metric starts again at the dataset's.
    assert "neighbours.metric_for" not in at.session_state


def test_results_of_the_old_metric_are_kept_when_asked_and_cancel_changes_nothing(db):
    dataset, graph = _store_with_graph(db)
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    _change_to(at, "ip")
    [b for b in at.button if b.key == "metric_cancel"][0].click()
    at.run()
    assert _store().get_dataset(dataset).metric == "cosine" and _catalog_metric(at) == ["cosine"]
    assert not [b for b in at.button if b.key == "metric_keep"]  # the dialog is closed
    [b for b in at.button if b.label == "Change metric"][0].click()  # still set to ip
    at.run()
    [b for b in at.button if b.key == "metric_keep"][0].click()
    at.run()
    assert not at.exception, at.exception
    assert _store().get_dataset(dataset).metric == "ip" and _catalog_metric(at) == ["ip"]
    assert [a.fingerprint for a in _store().list_artifacts(dataset)] == [graph]
    assert any("Kept what was computed with cosine" in s.value for s in at.success)


def test_results_a_dataset_of_the_same_vectors_uses_are_kept_without_asking(db):
    """A twin (the same vectors, another name) reaches every result of the dataset: a drop
    would take them from it, so there is nothing to drop and no question; the note says why."""
    dataset, graph = _store_with_graph(db, "blobs")
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)  # the same vectors
    with Store(db) as s:
        s.add_dataset(make_parsed(X), name=EVIL, info=metric_record(X, "cosine"))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state[DATASET_KEY] = dataset  # the one whose graph it is
    at.run()
    _change_to(at, "l2")
    assert not [b for b in at.button if b.key == "metric_drop"]  # not asked: nothing to drop
    assert _store().get_dataset(dataset).metric == "l2"
    assert [a.fingerprint for a in _store().list_artifacts(dataset)] == [graph]
    [note] = [s.value for s in at.success if "is now" in s.value]
    assert ESCAPED in note  # the twin's name shown as text (the note escapes all of it)
    shown = note.replace("\\", "")
    assert f"Kept 1 neighbour graph computed with cosine: “{EVIL}” holds the same vectors" in shown
    assert "Dropped" not in note


def test_dropping_stops_the_jobs_still_computing_with_the_old_metric_and_says_so(db):
    import threading

    from embscope.app.runtime import get_job_runner
    from embscope.core.errors import OperationCancelled

    dataset, _ = _store_with_graph(db)
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    running = threading.Event()

    def work(progress):  # a cosine layout of the dataset, running until cancelled
        running.set()
        for _ in range(600):
            if progress(0.5, "laying out"):
                raise OperationCancelled("cancelled")
            threading.Event().wait(0.05)

    runner = get_job_runner()
    old = runner.submit("layout-cosine", work, kind="projection", label="UMAP 2-D of blobs",
                        dataset_id=dataset, params={"metric": "cosine"})  # fmt: skip
    other = runner.submit("layout-ip", work, kind="projection", label="UMAP 2-D of blobs",
                          dataset_id=dataset, params={"metric": "ip"})  # fmt: skip
    assert running.wait(30)
    _change_to(at, "l2")
    [question] = [m.value for m in at.markdown if "stored result" in m.value]
    assert "1 job is computing with cosine now: dropping stops it." in question
    [b for b in at.button if b.key == "metric_drop"][0].click()
    at.run()
    assert not at.exception, at.exception
    assert old.wait(30) and old.state == "cancelled"
    assert other.state == "running"  # another metric's job is none of the change's business
    [note] = [s.value for s in at.success if "is now" in s.value]
    shown = note.replace("\\", "")
    assert "Stopped 1 job still computing with cosine. Dropped what was computed" in shown
    runner.cancel(other.key)
