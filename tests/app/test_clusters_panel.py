"""Clusters on the Projections page: found by themselves, a colour column, names on the map
(escaped, not overlapping), the table, and the choice kept across methods."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embscope.app.clusters_panel import CLUSTERS, colour_values, map_labels
from embscope.app.figures import robust_range
from embscope.core.clusters import Clustering
from embscope.core.export import MISSING
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page, spec_strings, until

HOSTILE = "<img src=x onerror=alert(1)>"
TOPICS = (
    "socket connection port host network",
    "logger logging handler level record",
    "date time datetime timezone calendar",
    HOSTILE + " markup tag element attribute",
)


def _clustering(labels: np.ndarray, names: tuple[str, ...]) -> Clustering:
    sizes = np.bincount(labels[labels >= 0], minlength=len(names)).astype(np.int64)
    k = len(names)
    return Clustering(
        method="leiden", metric="l2", resolution=1.0, min_size=5, seed=0, text_column=None,
        labels=labels.astype(np.int32), sizes=sizes, keywords=tuple(() for _ in names),
        names=names, examples=np.full((k, 3), -1), centres=np.zeros((k, 2), np.float32),
        quality=0.5, graph_k=15, seconds=0.1,
    )  # fmt: skip


def test_colour_values_number_the_clusters_and_leave_noise_grey():
    result = _clustering(np.array([1, 0, -1, 1]), ("a, b", "c"))
    assert colour_values(result).tolist() == ["1 · c", "0 · a, b", MISSING, "1 · c"]


def test_names_sit_on_their_cluster_and_never_overlap():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-10, 10, (40, 2))
    labels = np.repeat(np.arange(40), 50)
    coords = (centres[labels] + 0.3 * rng.standard_normal((2000, 2))).astype(np.float32)
    names = tuple(f"word{c}, other{c}, third{c}" for c in range(40))
    result = _clustering(labels, names)
    placed = map_labels(result, coords)
    assert 3 <= len(placed) <= 30  # at most MAX_LABELS, and overlapping ones left out
    spans = [np.diff(robust_range(coords[:, j]))[0] for j in (0, 1)]
    per_pixel = max(spans[0] / 1000, spans[1] / 680)
    boxes = []
    for label in placed:
        c = names.index(label.text)
        members = coords[labels == c]
        assert np.min(np.abs(members - [label.x, label.y]).sum(axis=1)) == 0  # on a member
        w = 0.5 * (0.58 * label.size * len(label.text) + 6) * per_pixel
        h = 0.5 * (label.size + 8) * per_pixel
        boxes.append((label.x - w, label.x + w, label.y - h, label.y + h))
    for i, a in enumerate(boxes):
        for b in boxes[:i]:
            assert not (a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3])
    # Under a filter, only clusters with members kept are named, at a kept member.
    keep = labels < 5
    filtered = map_labels(result, coords, keep=keep)
    assert filtered and all(names.index(lb.text) < 5 for lb in filtered)
    # In 3-D every name is kept, with its depth.
    three = np.hstack([coords, rng.standard_normal((2000, 1)).astype(np.float32)])
    placed3 = map_labels(result, three)
    assert len(placed3) == 30 and any(lb.z != 0 for lb in placed3)


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "clusters.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    rng = np.random.default_rng(0)
    topic = np.repeat(np.arange(4), 60)
    X = (rng.standard_normal((240, 16)) + 8 * rng.standard_normal((4, 16))[topic]).astype(
        np.float32
    )
    words = [TOPICS[t].split() for t in topic]
    texts = [" ".join(rng.choice(w, 4, replace=False)) + " the value" for w in words]
    meta = pd.DataFrame({"body": texts})
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="topics", info={"metric": "l2"})
    return path


def test_the_page_finds_clusters_colours_and_names_them(db):
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("pca")
    at.run()
    # No label column: the map asks for the clusters, found by themselves, as its colour.
    at = until(
        at,
        lambda a: any(s.key == "projections.colour.1" and s.value == CLUSTERS for s in a.selectbox),
    )
    assert not at.exception, at.exception
    assert by_key(at.selectbox, "projections.colour.1").value == CLUSTERS
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in spec["data"]]
    assert len(names) == 4 and names[0].startswith("0 · ")
    texts = [a["text"] for a in spec["layout"]["annotations"]]
    assert len(texts) == 4
    assert any("socket" in t or "connection" in t or "port" in t for t in texts)
    by_key(at.multiselect, "projections.hover.1").set_value(["body"]).run()
    raw = at.get("plotly_chart")[0].proto.spec
    shown = spec_strings(raw)  # every label, hover text and name, decoded
    assert not any("<img" in t for t in shown)
    assert any("&lt;img" in t for t in shown)  # the markup texts are there, escaped
    # The table of clusters lists each with its keywords and typical items.
    table = next(df.value for df in at.dataframe if "keywords" in df.value.columns)
    assert table["size"].tolist() == [60, 60, 60, 60]
    assert table["typical items"].str.len().min() > 0
    # Names off: no annotation; the choice of colour survives a method whose layout is not
    # computed yet (its controls are not drawn meanwhile).
    by_key(at.toggle, "projections.cluster_names").set_value(False).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert not spec["layout"].get("annotations")
    by_key(at.selectbox, "projections.method").set_value("umap").run()
    assert not at.get("plotly_chart")  # UMAP waits for its button
    by_key(at.selectbox, "projections.method").set_value("pca").run()
    assert by_key(at.selectbox, "projections.colour.1").value == CLUSTERS
    assert by_key(at.toggle, "projections.cluster_names").value is False
    assert not at.exception
