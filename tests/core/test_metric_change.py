"""A dataset's metric changed after upload: recorded with its reason, the old metric's stored
results kept unless dropped, and then exactly those dropped, in one transaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embscope.core.errors import DatasetNotFoundError, InvalidInputError
from embscope.core.graph import find_graph, get_or_build_graph
from embscope.core.metric_change import CHANGED_REASON, set_metric, stale_artifacts
from embscope.core.projections import runs
from embscope.core.projections.label_scores import score_labels, stored_label_scores
from embscope.core.store import Store
from embscope.core.validation import metric_record
from tests.helpers import make_parsed, snapshot


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def _blobs(n: int = 90, d: int = 8, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = rng.standard_normal((n, d)) * 0.3 + np.eye(3, d)[labels] * 3.0
    return X.astype(np.float32), pd.DataFrame({"label": [f"c{v}" for v in labels]})


def _dataset(store: Store, name: str, *, seed: int = 0):
    X, meta = _blobs(seed=seed)
    info = {**metric_record(X, "cosine"), "label_column": "label", "model": "kept"}
    return store.add_dataset(make_parsed(X, meta), name=name, info=info)


def _kinds(store: Store, dataset_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in store.list_artifacts(dataset_id):
        out[record.kind] = out.get(record.kind, 0) + 1
    return out


@pytest.fixture
def computed(store):
    """A dataset with results under cosine (graph, PCA layout, its kNN accuracy on the labels)
    and under l2 (graph, PCA layout), and a second dataset with a cosine graph."""
    info = _dataset(store, "blobs")
    cosine = runs.compute_projection(store, info.id, method="pca", metric="cosine")
    score_labels(store, info.id, "label", [cosine.fingerprint])
    l2 = runs.compute_projection(store, info.id, method="pca", metric="l2")
    other = _dataset(store, "other", seed=1)
    get_or_build_graph(store, other.id, k=5, metric="cosine")
    return info, cosine, l2, other


def test_the_new_metric_is_recorded_with_its_reason_and_the_rest_of_the_info_kept(store):
    info = _dataset(store, "blobs")
    assert (info.metric, info.info["metric_reason"]) == ("cosine", "chosen at upload")
    change = set_metric(store, info.id, "l2")
    assert change.changed and (change.old, change.new) == ("cosine", "l2")
    after = store.get_dataset(info.id)
    assert after == change.dataset
    assert after.metric == "l2" and after.info["metric_reason"] == CHANGED_REASON
    assert {k: v for k, v in after.info.items() if not k.startswith("metric")} == {
        "label_column": "label",
        "model": "kept",
    }
    # By name too; the metric the dataset has already changes nothing.
    again = set_metric(store, "blobs", "l2", drop_stale=True)
    assert not again.changed and again.stale == {} and store.get_dataset(info.id) == after


def test_a_dataset_stored_without_a_metric_counts_as_cosine(store):
    X, meta = _blobs()
    info = store.add_dataset(make_parsed(X, meta), name="old")
    assert "metric" not in info.info
    change = set_metric(store, info.id, "ip")
    assert change.old == "cosine" and store.get_dataset(info.id).metric == "ip"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "euclidean"}, "unknown metric 'euclidean': use one of cosine, l2, ip"),
        ({"metric": None}, "unknown metric None"),
        ({"metric": "l2", "drop_stale": "yes"}, "drop_stale must be True or False, got 'yes'"),
        ({"metric": "l2", "dry_run": 1}, "dry_run must be True or False, got 1"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(store, kwargs, message):
    info = _dataset(store, "blobs")
    get_or_build_graph(store, info.id, k=5, metric="cosine")
    before = (snapshot(store), store.get_dataset(info.id))
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        set_metric(store, info.id, **kwargs)
    with pytest.raises(DatasetNotFoundError):
        set_metric(store, info.id + 1, "l2")
    assert (snapshot(store), store.get_dataset(info.id)) == before


def test_dry_run_reports_the_old_metrics_results_and_changes_nothing(store, computed):
    info, cosine, _, _ = computed
    before = (snapshot(store), store.get_dataset(info.id))
    change = set_metric(store, info.id, "l2", dry_run=True, drop_stale=True)
    assert not change.changed and change.dropped == {}
    # One cosine graph, the cosine layout, its label scores; not the l2 graph and layout.
    assert change.stale == {"knn_graph": 1, "projection": 1, "projection_labels": 1}
    assert change.stale_count == 3 and change.dataset == info
    assert (snapshot(store), store.get_dataset(info.id)) == before
    stale = {r.fingerprint for r in stale_artifacts(store, info.id, "cosine")}
    assert cosine.fingerprint in stale and len(stale) == 3


def test_results_of_the_old_metric_are_kept_by_default(store, computed):
    info, cosine, l2, other = computed
    kinds = _kinds(store, info.id)
    assert kinds == {"knn_graph": 2, "projection": 2, "projection_labels": 1}
    change = set_metric(store, info.id, "l2")
    assert change.stale_count == 3 and change.dropped == {}
    assert _kinds(store, info.id) == kinds
    # Still reached by asking for cosine; the dataset's default is now l2.
    found = runs.find_projection(store, info.id, method="pca", metric="cosine")
    assert found is not None and found.fingerprint == cosine.fingerprint
    assert runs.default_metric(store.get_dataset(info.id)) == "l2"


def test_drop_stale_drops_exactly_the_old_metrics_results(store, computed):
    info, cosine, l2, other = computed
    other_before = store.list_artifacts(other.id)
    keep = {
        r.fingerprint
        for r in store.list_artifacts(info.id)
        if r.params["request"].get("metric") == "l2"
    }
    assert len(keep) == 2  # the l2 graph and layout
    change = set_metric(store, info.id, "l2", drop_stale=True)
    assert change.changed and change.dropped == change.stale
    assert change.dropped == {"knn_graph": 1, "projection": 1, "projection_labels": 1}
    assert {r.fingerprint for r in store.list_artifacts(info.id)} == keep
    assert find_graph(store, info.id, metric="cosine") is None
    assert find_graph(store, info.id, metric="l2") is not None
    assert runs.find_projection(store, info.id, method="pca", metric="cosine") is None
    kept = runs.find_projection(store, info.id, method="pca", metric="l2")
    assert kept is not None and kept.fingerprint == l2.fingerprint
    np.testing.assert_array_equal(kept.coords, l2.coords)
    assert stored_label_scores(store, info.id, "label") == {}
    # Another dataset's results under the old metric are its own: untouched.
    assert store.list_artifacts(other.id) == other_before
    assert store.get_dataset(info.id).metric == "l2"


class _FailingUpdate:
    """A cursor that fails the catalog update, after the artifacts were deleted."""

    def __init__(self, cursor):
        self.cursor, self.ran = cursor, []

    def execute(self, sql, *args):
        self.ran.append(sql.split()[0])
        if sql.startswith("UPDATE datasets"):
            raise RuntimeError("disk failed")
        return self.cursor.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.cursor, name)


def test_a_failure_leaves_the_dataset_and_its_results_as_they_were(store, computed, monkeypatch):
    info = computed[0]
    before = (snapshot(store), store.get_dataset(info.id))
    failing = _FailingUpdate(store._cursor())
    monkeypatch.setattr(store, "_cursor", lambda: failing)
    with pytest.raises(RuntimeError, match="disk failed"):
        set_metric(store, info.id, "l2", drop_stale=True)
    monkeypatch.undo()
    assert failing.ran[-2:] == ["DELETE", "UPDATE"]  # the results were deleted, then undone
    assert (snapshot(store), store.get_dataset(info.id)) == before


def test_an_info_changed_between_the_read_and_the_write_is_not_overwritten(
    store, computed, monkeypatch
):
    # Another session changed the metric and back (its drop recorded in the info) after this
    # change read the info: writing the record built from the stale read would lose that.
    info = computed[0]
    kinds = _kinds(store, info.id)
    real = store.set_info

    def meanwhile(dataset_id, record, *, drop=()):
        real(dataset_id, {**info.info, "results_dropped": {"cosine": "2026-12-08T00:00:00"}})
        return real(dataset_id, record, drop=drop)

    monkeypatch.setattr(store, "set_info", meanwhile)
    with pytest.raises(InvalidInputError, match="changed meanwhile"):
        set_metric(store, info.id, "l2", drop_stale=True)
    monkeypatch.undo()
    after = store.get_dataset(info.id)
    assert after.metric == "cosine" and after.info["results_dropped"] == {
        "cosine": "2026-12-08T00:00:00"
    }
    assert _kinds(store, info.id) == kinds  # nothing dropped


def test_a_read_only_database_is_refused(tmp_path):
    path = tmp_path / "ro.duckdb"
    with Store(path) as s:
        info = _dataset(s, "blobs")
    with Store(path, read_only=True) as ro:
        with pytest.raises(InvalidInputError, match="read-only"):
            set_metric(ro, info.id, "l2")
        assert ro.get_dataset(info.id).metric == "cosine"


def test_a_dropped_index_record_takes_its_file_when_the_service_forgets_the_dataset(tmp_path):
    from embscope.core.neighbours import NeighbourService

    with Store(tmp_path / "idx.duckdb") as s:
        info = _dataset(s, "blobs")
        service = NeighbourService(s)
        service.get_index(info.id, metric="cosine", backend="hnsw")
        service.get_index(info.id, metric="l2", backend="hnsw")
        files = {p.name.split(".")[0]: p for p in service.index_dir.iterdir()}
        cosine = service.index_fingerprint(info.id, metric="cosine")
        l2 = service.index_fingerprint(info.id, metric="l2")
        assert set(files) == {cosine, l2}
        change = set_metric(s, info.id, "l2", drop_stale=True)
        assert change.dropped == {"index": 1}
        service.forget(info.id)  # what the page does after a change
        assert not files[cosine].exists() and files[l2].exists()
        assert service.dataset(info.id).metric == "l2"
        assert service.has_index(info.id, metric="l2")
        assert not service.has_index(info.id, metric="cosine")


def test_the_service_drops_the_milvus_collection_of_a_dropped_index_and_keeps_the_other(tmp_path):
    from embscope.core.index_milvus import MilvusIndex
    from embscope.core.neighbours import NeighbourService, milvus_collection

    uri = str(tmp_path / "m.db")
    with Store(tmp_path / "mv.duckdb") as s:
        info = _dataset(s, "blobs")
        service = NeighbourService(s, milvus_uri=uri)
        for metric in ("cosine", "l2"):
            service.get_index(info.id, metric=metric, backend="milvus")
        names = {
            m: milvus_collection(service.index_fingerprint(info.id, metric=m, backend="milvus"))
            for m in ("cosine", "l2")
        }
        kept = service.change_metric(info.id, "l2")  # kept: nothing dropped anywhere
        assert kept.dropped == {} and service.dataset(info.id).metric == "l2"
        service.change_metric(info.id, "cosine")
        change = service.change_metric(info.id, "l2", drop_stale=True)
        assert change.dropped == {"index": 1}
        with MilvusIndex("cosine", uri=uri, collection="embscope_probe") as probe:
            left = set(probe._client.list_collections())
        assert names["l2"] in left and names["cosine"] not in left
        assert service.has_index(info.id, metric="l2", backend="milvus")
        assert not service.has_index(info.id, metric="cosine", backend="milvus")


# -- results of jobs asked for before a drop, a write during the change, twin datasets -------


@pytest.fixture
def held_graph(monkeypatch):
    """Every neighbour graph build waits (``started`` set) until ``release`` is set."""
    import threading

    from embscope.core import graph

    started, release = threading.Event(), threading.Event()
    real = graph.build_knn_graph

    def held(*args, **kwargs):
        started.set()
        assert release.wait(30), "the test never released the build"
        return real(*args, **kwargs)

    monkeypatch.setattr(graph, "build_knn_graph", held)
    return started, release


@pytest.fixture
def runner(store):
    from embscope.core.jobs import JobRunner

    r = JobRunner(store, workers=2, memory_budget=2**40)
    yield r
    r.shutdown()


def _layout_job(runner, store, dataset_id: int, metric: str):
    from embscope.core.artifacts import submit

    request = runs.projection_request(store, dataset_id, method="pca", metric=metric)
    return submit(runner, store, runs.PROJECTIONS, request)


def test_a_job_asked_for_before_a_drop_does_not_bring_the_old_metrics_results_back(
    store, held_graph
):
    from embscope.core.artifacts import submit
    from embscope.core.graph import GRAPHS, GraphRequest
    from embscope.core.jobs import JobRunner

    started, release = held_graph
    info = _dataset(store, "blobs")
    runner = JobRunner(store, workers=1, memory_budget=2**40)  # one lane: the second job waits
    try:
        job = _layout_job(runner, store, info.id, "cosine")  # the default: cosine, until changed
        assert started.wait(30)  # running: its cosine graph being built
        queued = submit(runner, store, GRAPHS, GraphRequest(info, "cosine", 5))
        assert queued.state == "queued"  # asked for now, started after the change
        change = set_metric(store, info.id, "l2", drop_stale=True)
        assert change.changed and store.get_dataset(info.id).metric == "l2"
        release.set()
        assert job.wait(60) and queued.wait(60)
    finally:
        runner.shutdown()
    # Neither stores anything: each says why, and nothing computed with cosine is back.
    for ended in (job, queued):
        assert ended.state == "failed" and "dropped" in (ended.error or ""), ended.status()
        assert "cosine" in ended.error and "“blobs”" in ended.error
    assert stale_artifacts(store, info.id, "cosine") == []
    assert find_graph(store, info.id, metric="cosine") is None
    assert runs.find_projection(store, info.id, method="pca", metric="cosine") is None
    # Asked for after the change, cosine is a metric chosen on purpose: computed and kept.
    again = JobRunner(store, workers=1, memory_budget=2**40)
    try:
        later = _layout_job(again, store, info.id, "cosine")
        assert later.wait(60) and later.state == "done", later.error
    finally:
        again.shutdown()
    assert runs.find_projection(store, info.id, method="pca", metric="cosine") is not None


def test_jobs_keep_their_results_when_nothing_was_dropped(store, runner, held_graph):
    started, release = held_graph
    info = _dataset(store, "blobs")
    # An explicitly chosen metric other than the dataset's, no change: stored.
    release.set()
    l2 = _layout_job(runner, store, info.id, "l2")
    assert l2.wait(60) and l2.state == "done", l2.error
    # A change that keeps the old metric's results: a job running under it stores its result.
    release.clear()
    started.clear()
    job = _layout_job(runner, store, info.id, "cosine")
    assert started.wait(30)
    set_metric(store, info.id, "ip")  # kept (the default)
    release.set()
    assert job.wait(60) and job.state == "done", job.error
    assert runs.find_projection(store, info.id, method="pca", metric="cosine") is not None
    assert find_graph(store, info.id, metric="cosine") is not None


def test_a_result_written_during_the_change_cannot_slip_between_its_count_and_its_drop(
    store, computed, monkeypatch
):
    """Another thread stores a cosine result while set_metric reads what to drop: it either
    lands before (then it is counted and dropped) or after the change (then it is a later
    result): never counted as nothing and left behind."""
    import threading

    from embscope.core import metric_change

    info = computed[0]
    real = metric_change.stale_artifacts
    seen: dict[str, str] = {}
    writers: list[threading.Thread] = []

    def late_write() -> None:
        store.put_artifact(
            kind="scorecard", fingerprint="late", dataset_id=info.id,
            params={"request": {"metric": "cosine"}},
        )  # fmt: skip
        seen["metric"] = store.get_dataset(info.id).metric  # when the write was done

    def reading(*args, **kwargs):
        found = real(*args, **kwargs)
        writer = threading.Thread(target=late_write)
        writer.start()
        writer.join(1.0)  # a write that is not held off lands now, between read and write
        writers.append(writer)
        return found

    monkeypatch.setattr(metric_change, "stale_artifacts", reading)
    change = set_metric(store, info.id, "l2", drop_stale=True)
    for writer in writers:
        writer.join(30)
    assert writers and seen, "the late write never ran"
    # Held off until the change committed: written under l2, a later result, kept.
    assert seen["metric"] == "l2"
    assert store.get_artifact("late", with_arrays=False) is not None
    assert (
        change.dropped == change.stale == {"knn_graph": 1, "projection": 1, "projection_labels": 1}
    )
    assert [r.fingerprint for r in stale_artifacts(store, info.id, "cosine")] == ["late"]


def test_results_shared_with_a_dataset_of_the_same_vectors_are_kept_on_a_drop(store):
    a, b = _dataset(store, "a"), _dataset(store, "twin")
    assert a.fingerprint == b.fingerprint  # the same vectors and ids: one graph serves both
    cosine = runs.compute_projection(store, a.id, method="pca", metric="cosine")
    assert {r.dataset_id for r in store.list_artifacts()} == {a.id}
    assert find_graph(store, b.id, metric="cosine") is not None
    before = snapshot(store)
    dry = set_metric(store, a.id, "l2", drop_stale=True, dry_run=True)
    # Counted as computed with cosine, and as kept: the twin still reaches them.
    assert dry.stale == dry.shared == {"knn_graph": 1, "projection": 1}
    assert dry.shared_with == ("twin",) and dry.to_drop == {} and dry.to_drop_count == 0
    assert snapshot(store) == before
    change = set_metric(store, a.id, "l2", drop_stale=True)
    assert change.changed and change.dropped == {} and change.shared == dry.shared
    assert snapshot(store)["artifacts"] == before["artifacts"]
    assert find_graph(store, b.id, metric="cosine") is not None
    kept = runs.find_projection(store, b.id, method="pca", metric="cosine")
    assert kept is not None and kept.fingerprint == cosine.fingerprint
    # A dataset of other vectors shares nothing: its results of the old metric go.
    c = _dataset(store, "other", seed=1)
    runs.compute_projection(store, c.id, method="pca", metric="cosine")
    alone = set_metric(store, c.id, "l2", drop_stale=True)
    assert alone.dropped == alone.to_drop == {"knn_graph": 1, "projection": 1}
    assert alone.shared == {} and alone.shared_with == ()
    assert store.list_artifacts(c.id) == []
