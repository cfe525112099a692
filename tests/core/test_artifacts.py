"""core.artifacts: one codec and one get-or-compute for every stored kind."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embscope.core import artifacts
from embscope.core.artifacts import (
    RECORD_CREATED,
    RECORD_FINGERPRINT,
    TRANSIENT,
    ArtifactSpec,
    decode,
    encode,
    get_or_compute,
)
from embscope.core.errors import OperationCancelled
from embscope.core.store import Store
from tests.helpers import make_parsed


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    values: np.ndarray
    scale: float
    names: tuple[str, ...]


@dataclass(frozen=True)
class Outer:
    inner: Inner
    maybe: Inner | None
    colour: Colour
    scores: dict[str, float]
    by_number: Mapping[int, str]
    pairs: tuple[tuple[int, float], ...]
    labels: np.ndarray
    anything: object = None
    handle: object = field(default=None, metadata=TRANSIENT)


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN and arrays compared by dtype kind, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return (
            a.shape == b.shape
            and a.dtype.kind == b.dtype.kind
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(
            _same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__
        )
    return type(a) is type(b) and a == b


def _outer(**over) -> Outer:
    inner = Inner(np.arange(6, dtype=np.float32).reshape(2, 3), math.nan, ("a", "b"))
    values = {
        "inner": inner,
        "maybe": None,
        "colour": Colour.BLUE,
        "scores": {"ok": 0.5, "undefined": math.nan, "big": math.inf, "small": -math.inf},
        "by_number": {3: "three", 10: "ten"},
        "pairs": ((1, 0.5), (2, math.nan)),
        "labels": np.asarray(["x", "<b>y</b>", "z"], dtype=object),
        "anything": {"nested": (1, (2, 3)), "when": datetime(2026, 12, 6, 12, 0)},
    }
    values.update(over)
    return Outer(**values)


def test_round_trip_keeps_nan_tuples_enums_nested_dataclasses_and_text_arrays():
    value = _outer(maybe=Inner(np.zeros(0, np.int64), 2.0, ()))
    doc, arrays = encode(value)
    assert all(not a.dtype.hasobject for a in arrays.values())  # read back without pickle
    back = decode(Outer, doc, arrays)
    assert _same(back, value)
    assert back.labels.dtype == object and back.colour is Colour.BLUE
    assert isinstance(back.pairs[1], tuple) and math.isnan(back.pairs[1][1])
    assert isinstance(back.anything["nested"][1], tuple)


def test_the_document_is_strict_json():
    import json

    doc, _ = encode(_outer())
    json.dumps(doc, allow_nan=False)  # NaN and infinities are tagged, not bare


def test_transient_fields_are_not_stored_and_summaries_leave_arrays_out():
    value = _outer(handle=object())
    doc, arrays = encode(value)
    assert "handle" not in doc
    assert decode(Outer, doc, arrays).handle is None
    summary = decode(Outer, doc, None)
    assert summary.labels is None and summary.inner.values is None
    assert summary.inner.names == ("a", "b")


def test_a_dict_with_a_dollar_key_is_not_mistaken_for_a_tag():
    value = _outer(scores={"$float": 1.0})
    doc, arrays = encode(value)
    assert decode(Outer, doc, arrays).scores == {"$float": 1.0}


def test_what_cannot_be_stored_is_refused():
    with pytest.raises(TypeError, match="cannot store"):
        encode({"f": lambda: 0})


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**62), 2**62)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.tuples(children, children)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_property_any_json_like_value_round_trips(value):
    doc, arrays = encode(value)
    assert _same(decode(object, doc, arrays), value)


@dataclass(frozen=True)
class Doubled:
    values: np.ndarray
    fingerprint: str = field(default="", metadata=RECORD_FINGERPRINT)
    created: datetime | None = field(default=None, metadata=RECORD_CREATED)


@dataclass(frozen=True)
class DoubleRequest:
    dataset: object
    factor: float


class DoubleSpec(ArtifactSpec[DoubleRequest, Doubled]):
    kind = "test_double"
    result_type = Doubled

    def __init__(self):
        self.calls = 0

    def key(self, request):
        return (request.dataset.fingerprint, request.factor)

    def compute(self, store, request, progress):
        self.calls += 1
        if progress is not None and progress(0.5, "half way"):
            raise OperationCancelled("cancelled")
        return Doubled(store.load_vectors(request.dataset.id) * request.factor)


def test_get_or_compute_stores_once_and_reads_back_identical(store):
    info = store.add_dataset(make_parsed(np.eye(3)), name="d")
    spec = DoubleSpec()
    request = DoubleRequest(info, 2.0)
    assert get_or_compute(store, spec, request, run=False) is None
    first = get_or_compute(store, spec, request)
    second = get_or_compute(store, spec, request)
    assert spec.calls == 1
    assert np.array_equal(first.values, second.values)
    assert first.fingerprint == second.fingerprint == artifacts.fingerprint(spec, request)
    assert first.created == second.created is not None
    [listed] = artifacts.stored(store, spec, info.id, with_results=True)
    assert listed.result.values is None and listed.fingerprint == first.fingerprint
    get_or_compute(store, spec, request, recompute=True)
    assert spec.calls == 2


def test_a_cancelled_computation_stores_nothing(store):
    info = store.add_dataset(make_parsed(np.eye(3)), name="d")
    with pytest.raises(OperationCancelled):
        get_or_compute(store, DoubleSpec(), DoubleRequest(info, 3.0), progress=lambda f, m: True)
    assert store.list_artifacts(info.id) == []


def test_a_read_only_store_keeps_its_results_in_memory_not_on_disk(db_path):
    with Store(db_path) as s:
        info = s.add_dataset(make_parsed(np.eye(3)), name="d")
    before = db_path.read_bytes()
    spec = DoubleSpec()
    request = DoubleRequest(info, 2.0)
    try:
        with Store(db_path, read_only=True) as ro:
            result = get_or_compute(ro, spec, request)
            assert np.array_equal(result.values, np.eye(3) * 2)
            assert ro.list_artifacts() == []  # nothing in the database
            again = get_or_compute(ro, spec, request)  # from the process's memory
            assert spec.calls == 1 and np.array_equal(again.values, result.values)
            assert again.fingerprint == result.fingerprint == artifacts.fingerprint(spec, request)
            assert again.created == result.created is not None
            [listed] = artifacts.stored(ro, spec, info.id, with_results=True)
            assert listed.fingerprint == result.fingerprint and listed.result.values is None
        with Store(db_path, read_only=True) as other:  # another open of the file sees it
            assert get_or_compute(other, spec, request, run=False) is not None
        assert db_path.read_bytes() == before
    finally:
        artifacts.read_only_cache().forget(db_path)


def test_records_from_before_the_layer_read_as_missing(store):
    info = store.add_dataset(make_parsed(np.eye(3)), name="d")
    spec = DoubleSpec()
    request = DoubleRequest(info, 2.0)
    store.put_artifact(
        kind=spec.kind,
        fingerprint=artifacts.fingerprint(spec, request),
        dataset_id=info.id,
        params={"values": "an older layout"},
    )
    assert get_or_compute(store, spec, request, run=False) is None
    get_or_compute(store, spec, request)
    assert spec.calls == 1


def test_only_the_artifact_layer_writes_artifacts():
    """Store.put_artifact is called from core/artifacts.py and nowhere else in the product."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    callers = sorted(
        str(p.relative_to(root))
        for folder in ("core", "app", "pages")
        for p in (root / folder).rglob("*.py")
        if ".put_artifact(" in p.read_text(encoding="utf-8")
    )
    assert callers == ["core/artifacts.py"]


@dataclass(frozen=True)
class Ordered:
    scores: dict[str, float]


class OrderedSpec(ArtifactSpec[DoubleRequest, Ordered]):
    kind = "test_ordered"
    result_type = Ordered

    def key(self, request):
        return (request.dataset.fingerprint,)

    def compute(self, store, request, progress):
        return Ordered({"zeta": 1.0, "alpha": math.nan, "mid": 2.0})


def test_a_result_reads_back_in_the_order_it_was_computed(store):
    """A fresh result and the stored one print the same JSON (the CLI shows either)."""
    info = store.add_dataset(make_parsed(np.eye(3)), name="d")
    fresh = get_or_compute(store, OrderedSpec(), DoubleRequest(info, 1.0))
    again = get_or_compute(store, OrderedSpec(), DoubleRequest(info, 1.0))
    assert list(fresh.scores) == list(again.scores) == ["zeta", "alpha", "mid"]


def test_array_names_and_dollar_keys_cannot_collide_with_the_codec():
    """A key holding "." could name the same array as a nested path, and a key looking like a
    tag could be read as one: both round-trip as they were."""
    a, b = np.arange(3), np.arange(5)
    value = {"a.b": a, "a": {"b": b}, "$array": "x", "object": True}
    doc, arrays = encode(value)
    back = decode(object, doc, arrays)
    assert np.array_equal(back["a.b"], a) and np.array_equal(back["a"]["b"], b)
    assert back["$array"] == "x" and back["object"] is True


def test_two_jobs_that_need_the_same_result_compute_it_once(store):
    """A projection and a scorecard started together on a new dataset both need its graph:
    it is built once, and the second waits for it rather than building it again."""
    import threading

    from embscope.core import graph as graph_module
    from embscope.core.geometry.scorecard import get_or_compute_scorecard
    from embscope.core.projections.runs import compute_projection

    X = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    info = store.add_dataset(make_parsed(X), name="d")
    builds = []
    real = graph_module.build_knn_graph

    def counted(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    graph_module.build_knn_graph, original = counted, graph_module.build_knn_graph
    try:
        threads = [
            threading.Thread(target=lambda: compute_projection(store, info.id, method="largevis")),
            threading.Thread(target=lambda: get_or_compute_scorecard(store, info.id)),
            threading.Thread(target=lambda: get_or_compute_scorecard(store, info.id, k=5)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        graph_module.build_knn_graph = original
    assert len(builds) == 1


def test_datasets_with_the_same_vectors_share_their_graph(store):
    """Two datasets of the same vectors and ids (one file uploaded twice) read one stored
    graph instead of taking it from each other in turn."""
    from embscope.core import graph as graph_module

    X = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    a = store.add_dataset(make_parsed(X), name="a")
    b = store.add_dataset(make_parsed(X), name="b")
    graph_module.get_or_build_graph(store, a.id, k=10)
    assert graph_module.find_graph(store, b.id, metric="cosine", k=10) is not None
    graph_module.get_or_build_graph(store, b.id, k=10)
    assert len(store.list_artifacts(kind="knn_graph")) == 1


def test_a_graph_job_returns_where_its_graph_is_stored(store):
    from embscope.core.artifacts import submit
    from embscope.core.graph import GRAPHS, GraphRequest
    from embscope.core.jobs import JobRunner

    info = store.add_dataset(make_parsed(np.random.default_rng(2).normal(size=(200, 6))), name="d")
    runner = JobRunner(store)
    try:
        job = submit(runner, store, GRAPHS, GraphRequest(info, "cosine", 10))
        assert job.wait(60) and job.status().state == "done"
        assert artifacts.load(store, GRAPHS, job.result) is not None
    finally:
        runner.shutdown()
