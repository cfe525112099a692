"""The Projections page's first visit opens the most faithful stored map (issue 16), a link that
names a layout wins over it, and a colour with more values than colours says what it groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embscope.app import figures
from embscope.app.scatter import Panel, grouping_note
from embscope.core.clusters import get_or_cluster
from embscope.core.projections import runs
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page

WORDS = 80  # more values than the map has colours (figures.MAX_CATEGORIES = 55)


def _points(n: int = 300, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, 12)) + 5 * rng.standard_normal((3, 12))[labels]).astype(np.float32)
    meta = pd.DataFrame(
        {"label": [f"c{v}" for v in labels], "word": [f"w{i % WORDS}" for i in range(n)]}
    )
    return X, meta


@pytest.fixture
def stored(tmp_path, monkeypatch) -> dict[str, runs.Projection]:
    """One dataset with three stored layouts: UMAP 2-D (the oldest), PCA 2-D (newer, less
    faithful) and PCA 3-D (the newest)."""
    path = tmp_path / "first.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _points()
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        return {
            "umap": runs.compute_projection(s, 1, method="umap", params={"n_epochs": 60}),
            "pca": runs.compute_projection(s, 1, method="pca"),
            "pca3": runs.compute_projection(s, 1, method="pca", dims=3),
        }


def _trust(p: runs.Projection) -> float:
    return float(p.quality["trustworthiness@10"])


def _opened_note(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Showing the most faithful")]


def test_first_visit_opens_the_most_faithful_stored_2d_map(stored):
    two_d = [stored["umap"], stored["pca"]]
    best = max(two_d, key=_trust)
    assert best is stored["umap"]  # the older one: the scores decide, not the age
    at = open_page("projections")
    assert not at.exception
    assert by_key(at.selectbox, "projections.method").value == best.method
    assert by_key(at.radio, "projections.dims").value == 2
    # its parameters are the stored layout's, not the defaults
    assert by_key(at.number_input, "projections.umap.n_epochs").value == 60
    label = runs.METHOD_LABELS[best.method]
    assert _opened_note(at) == [
        f"Showing the most faithful stored map: {label}, 2-D, trustworthiness "
        f"{_trust(best):.2f} — pick another below."
    ]
    assert len(at.metric) > 0 and len(at.get("plotly_chart")) == 1  # shown, no Compute button
    assert not any(b.key == "projections.compute" for b in at.button)
    assert at.query_params["method"] == best.method  # the link names what is shown
    # Another choice ends the note; coming back to that layout does not bring it back.
    other = next(p for p in two_d if p is not best)
    by_key(at.selectbox, "projections.method").set_value(other.method).run()
    assert not at.exception and not _opened_note(at)
    by_key(at.selectbox, "projections.method").set_value(best.method).run()
    assert not _opened_note(at)


def test_a_3d_map_is_opened_only_when_no_2d_map_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBSCOPE_DB", str(tmp_path / "three.duckdb"))
    X, meta = _points()
    with Store(tmp_path / "three.duckdb") as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        three = runs.compute_projection(s, 1, method="pca", dims=3)
    at = open_page("projections")
    assert not at.exception
    assert by_key(at.selectbox, "projections.method").value == "pca"
    assert by_key(at.radio, "projections.dims").value == 3
    assert _opened_note(at) == [
        f"Showing the most faithful stored map: PCA, 3-D, trustworthiness {_trust(three):.2f} "
        "— pick another below."
    ]


def test_a_link_naming_the_layout_wins_and_one_without_does_not(stored):
    assert _trust(stored["pca3"]) > _trust(stored["pca"])  # 2-D is preferred, not the best
    at = open_page("projections", {"dataset": "1", "method": "pca"})
    assert not at.exception
    assert by_key(at.selectbox, "projections.method").value == "pca"
    assert by_key(at.radio, "projections.dims").value == 2
    assert not _opened_note(at)
    # A link that says only how to draw the map: the layout is still the most faithful one.
    best = max([stored["umap"], stored["pca"]], key=_trust)
    at = open_page("projections", {"dataset": "1", "color": "word"})
    assert not at.exception
    assert by_key(at.selectbox, "projections.method").value == best.method
    assert by_key(at.selectbox, "projections.colour.1").value == "word"
    assert len(_opened_note(at)) == 1


def test_a_colour_with_more_values_than_colours_says_what_it_groups(tmp_path, monkeypatch):
    path = tmp_path / "words.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _points()
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        runs.compute_projection(s, 1, method="pca")
        clusters = len(get_or_cluster(s, 1).names)
    names, _ = figures.category_groups(meta["word"].to_numpy(dtype=object))
    kept = len(names) - 1
    assert names[-1] == f"other ({WORDS - kept} values)"  # the legend's grey group
    at = open_page("projections", {"dataset": "1", "color": "word"})
    assert not at.exception
    hints = [c.value for c in at.caption if "more than the map's" in c.value]
    assert hints == [
        f"word: {WORDS} values, more than the map's {figures.MAX_CATEGORIES} colours: the "
        f'{kept} largest have one each, the other {WORDS - kept} share the grey "other '
        f'({WORDS - kept} values)". Colour by clusters (found in the data) to see the '
        f"{clusters} groups the data falls into, each in its own colour."
    ]
    assert f'"name":"other ({WORDS - kept} values)"' in at.get("plotly_chart")[0].proto.spec
    by_key(at.selectbox, "projections.colour.1").set_value("label").run()  # 3 values
    assert not at.exception
    assert not [c for c in at.caption if "more than the map's" in c.value]


def test_the_grouping_note_without_clusters_only_counts():
    rng = np.random.default_rng(0)
    few = rng.choice([f"v{i}" for i in range(10)], 500).astype(object)
    many = np.asarray([f"v{i % 60}" for i in range(500)], dtype=object)

    def panel(colour, categorical=True):
        return Panel(None, np.zeros((500, 2), np.float32), "t", colour, categorical, "tag")

    assert grouping_note(panel(few)) == ""
    assert grouping_note(panel(np.arange(500.0), categorical=False)) == ""
    assert grouping_note(panel(many)) == (
        "tag: 60 values, more than the map's 55 colours: the 54 largest have one each, the "
        'other 6 share the grey "other (6 values)".'
    )
    assert figures.category_groups(many)[0][-1] == "other (6 values)"  # as the legend says
