"""AppTest of the Projections and Compare pages: jobs, stored results, selection, share links."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from embscope.core.derive import save_derived_dataset
from embscope.core.projections import runs
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page, until

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
HOSTILE = "<img src=x onerror=alert(1)>"


def _data(n=300, d=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, d)) + 5 * rng.standard_normal((3, d))[labels]).astype(np.float32)
    meta = pd.DataFrame({"label": [f"c{v}" if v else HOSTILE for v in labels]})
    return X, meta


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "proj.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _data()
    with Store(path) as s:
        info = s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        rng = np.random.default_rng(1)
        save_derived_dataset(
            s, info.id, X + 0.3 * rng.standard_normal(X.shape).astype(np.float32),
            name="points noisy", transform="noise",
        )  # fmt: skip
    return path


def test_pca_runs_as_a_job_then_shows_scores_chart_and_gallery(db):
    at = open_page("projections")
    assert not at.exception and at.title[0].value == "Projections"
    by_key(at.selectbox, "projections.method").set_value("pca")
    at.run()
    at = until(at, lambda a: len(a.metric) > 0)
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Trustworthiness@10" in labels and "kNN accuracy@10" in labels
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = charts[0].proto.spec
    assert HOSTILE not in spec and "&lt;img src=x onerror=alert(1)&gt;" in spec  # escaped hover
    assert '"bdata"' in spec  # numeric payload, not lists
    # the gallery lists it
    frames = [df.value for df in at.dataframe]
    assert any("method" in f.columns and (f["method"] == "PCA").any() for f in frames)
    # the URL now holds the view
    assert at.query_params["method"] == "pca" and at.query_params["dataset"] == "1"


def test_heavy_method_waits_for_a_click_and_selection_lists_rows(db):
    from embscope.app.runtime import get_store

    at = open_page("projections")
    assert not at.exception
    # LargeVis (the default method) is not stored: nothing runs until asked
    assert any("Compute the LargeVis projection" in b.label for b in at.button)
    assert not at.metric
    # stored after the first visit (which would have opened it)
    runs.compute_projection(get_store(), 1, method="pca")
    by_key(at.selectbox, "projections.method").set_value("pca")
    at.run()
    assert len(at.metric) > 0  # stored: shown at once, no job
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [4, 9, 20]}
    at.run()
    assert not at.exception
    assert any("3 selected point" in m.value for m in at.markdown)
    table = next(df.value for df in at.dataframe if "x" in df.value.columns)
    assert table["row"].tolist() == [4, 9, 20] if "row" in table.columns else len(table) == 3
    # one point: its neighbours, and a way to the Neighbours page
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [7]}
    at.run()
    assert any("Nearest neighbours of" in m.value for m in at.markdown)
    assert any(b.label == "Open in Neighbours →" for b in at.button)


def test_share_link_restores_dataset_method_and_colour(db):
    with Store(db) as s:
        runs.compute_projection(s, 2, method="pca", dims=3)
    at = open_page("projections", {"dataset": "2", "method": "pca", "dims": "3", "color": "label"})
    assert not at.exception
    assert at.sidebar.selectbox[0].value == 2
    assert by_key(at.selectbox, "projections.method").value == "pca"
    assert by_key(at.selectbox, "projections.colour.2").value == "label"
    assert len(at.metric) > 0 and len(at.get("plotly_chart")) == 1


def test_side_by_side_with_another_dataset_over_the_same_items(db):
    with Store(db) as s:
        runs.compute_projection(s, 1, method="pca")
        runs.compute_projection(s, 2, method="pca")
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("pca")
    at.run()
    by_key(at.toggle, "projections.side_by_side").set_value(True)
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    assert any("300 of 300 items matched by id" in c.value for c in at.caption)


def test_compare_page_runs_and_shows_overlap(db):
    at = open_page("compare")
    assert not at.exception and at.title[0].value == "Compare"
    assert by_key(at.selectbox, "compare.other.1").value == 2  # the derived copy is proposed
    by_key(at.button, "compare.run").click()
    at.run()
    at = until(at, lambda a: len(a.metric) > 0)
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Items matched"] == "300"
    assert 0.0 < float(values["kNN overlap@10"]) < 1.0 and 0.5 < float(values["Linear CKA"]) <= 1
    # CKA beside its debiased value and its chance level, which says what it means.
    assert -1.0 <= float(values["Debiased CKA"]) <= 1.0
    assert float(values["Chance CKA (95 %)"]) < float(values["Linear CKA"])
    chance = next(m for m in at.metric if m.label == "Chance CKA (95 %)")
    assert "95th percentile" in chance.help and "shuffles" in chance.help
    assert len(at.get("plotly_chart")) == 3  # histogram + two aligned layouts
    moved = next(df.value for df in at.dataframe if "jaccard@10" in df.value.columns)
    assert moved["jaccard@10"].is_monotonic_increasing


def test_compare_page_without_a_second_dataset_explains(tmp_path, monkeypatch):
    path = tmp_path / "one.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    with Store(path) as s:
        s.add_dataset(make_parsed(_data()[0]), name="only")
    at = open_page("compare")
    assert not at.exception
    assert any("second dataset" in i.value for i in at.info)


def test_missing_metadata_values_are_coloured_hovered_and_scored(tmp_path, monkeypatch):
    """One empty cell used to stop the page: since pandas 3, ``astype(str)`` leaves it NaN,
    so the hover text failed on it and the colour groups left its point out."""
    path = tmp_path / "gaps.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _data()
    meta["score"] = np.where(np.arange(len(meta)) % 7 == 0, np.nan, np.arange(len(meta)) / 10)
    meta["tag"] = pd.Series([None if i % 5 == 0 else f"t{i % 3}" for i in range(len(meta))],
                            dtype=object)  # fmt: skip
    meta["year"] = pd.array([None if i % 4 == 0 else 2000 + i % 20 for i in range(len(meta))],
                            dtype="Int64")  # fmt: skip
    with Store(path) as s:
        info = s.add_dataset(make_parsed(X, meta), name="gaps", info={"label_column": "tag"})
        runs.compute_projection(s, info.id, method="pca")
        labels = runs.load_labels(s, s.get_dataset(info.id), "tag")
    assert (labels >= 0).all() and len(np.unique(labels)) == 4  # t0, t1, t2 and missing
    at = open_page("projections", {"dataset": "1", "method": "pca", "color": "tag",
                               "hover": ["score", "tag", "year"]})  # fmt: skip
    assert not at.exception, at.exception
    assert len(at.metric) > 0, "the stored projection and its scores are shown"
    [chart] = at.get("plotly_chart")
    spec = chart.proto.spec
    assert '"name":"(missing)"' in spec.replace(" ", "")  # a legend entry of their own
    # an empty value, not a failure (the JSON writes "<" as \u003c)
    assert "score: 0.5\\u003cbr" in spec and "score: \\u003cbr" in spec
    assert 'year: 2001"' in spec and "year: 2001.0" not in spec  # a year, not a float
    at = open_page("projections", {"dataset": "1", "method": "pca", "color": "year"})
    assert not at.exception, at.exception
    at = open_page("projections", {"dataset": "1", "method": "pca", "color": "score"})
    assert not at.exception, at.exception
    assert "no value" in at.get("plotly_chart")[0].proto.spec  # continuous: a grey layer


def test_category_groups_draw_every_point_including_missing_values():
    from embscope.app import figures

    names, codes = figures.category_groups(np.array(["b", None, "a", np.nan, "b"], object))
    # real values first, in their order; the missing ones last, drawn grey like "other"
    assert names == ["a", "b", "(missing)"] and codes.tolist() == [1, 2, 0, 2, 1]
    fig = figures.projection_figure(np.zeros((5, 2)), color=["b", None, "a", np.nan, "b"],
                                    categorical=True)  # fmt: skip
    # drawn first (beneath the real values), listed last in the legend
    assert [t.name for t in fig.data] == ["(missing)", "a", "b"]
    assert fig.data[0].marker.color == "#c7c7c7" and fig.data[0].legendrank == 1001
    assert fig.data[1].marker.color != "#c7c7c7" and fig.data[1].legendrank is None
    assert sorted(np.concatenate([t.customdata for t in fig.data]).tolist()) == list(range(5))


def test_sidebar_shows_every_sessions_running_jobs_with_their_progress(db):
    import threading

    from embscope.app.runtime import get_job_runner

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not any("Background jobs" in c.value for c in at.sidebar.caption)
    gate = threading.Event()

    def work(progress):
        progress(0.4, "working")
        gate.wait(30)

    # started by "another session": straight on the process's runner
    job = get_job_runner().submit("sidebar-test", work, kind="test", label="<b>slow</b> job")
    try:
        deadline = time.monotonic() + 10
        while job.status().fraction < 0.4 and time.monotonic() < deadline:
            time.sleep(0.01)
        at.run()
        assert not at.exception
        assert "Background jobs: 1 running" in [c.value for c in at.sidebar.caption]
        [bar] = [e.proto for e in at.sidebar.get("progress")]
        assert bar.value == 40 and bar.text == r"\<b\>slow\</b\> job (40%)"  # shown literally
    finally:
        gate.set()
    assert job.wait(10)
    at.run()
    assert not any("Background jobs" in c.value for c in at.sidebar.caption)


def test_compare_page_counts_shared_items_and_proposes_only_partners_sharing_them(db):
    X, _ = _data(seed=3)
    with Store(db) as s:
        s.add_dataset(make_parsed(X, ids=[f"x{i}" for i in range(300)]), name="strangers")
        s.add_dataset(make_parsed(X[:200]), name="first rows")  # ids "0".."199"
    at = open_page("compare")
    other = by_key(at.selectbox, "compare.other.1")
    assert other.value == 2  # the derived copy, still
    labels = dict(zip([2, 4], other.options, strict=True))  # as the page shows them
    assert labels[2].endswith("· 300 shared items") and labels[4].endswith("· 200 shared items")
    # "strangers" (dataset 3) shares no item: it is not offered.
    by_key(at.selectbox, "compare.other.1").set_value(4)
    at.run()
    assert not at.exception and not at.warning and any(b.key == "compare.run" for b in at.button)
    assert any("matched by row number" in c.value for c in at.caption)
    # From a dataset no other shares items with: a message, nothing to pick.
    at.sidebar.selectbox[0].set_value(3).run()
    assert not at.exception and not [s for s in at.selectbox if s.key == "compare.other.3"]
    assert any("No other dataset shares items with strangers" in i.value for i in at.info)


def test_compare_page_proposes_the_dataset_sharing_the_most_items(tmp_path, monkeypatch):
    path = tmp_path / "partners.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, _ = _data()
    with Store(path) as s:
        s.add_dataset(make_parsed(X), name="a")
        s.add_dataset(make_parsed(X, ids=[f"x{i}" for i in range(300)]), name="same size, no ids")
        s.add_dataset(make_parsed(X[:100]), name="a's first 100")
    at = open_page("compare")
    assert not at.exception
    assert by_key(at.selectbox, "compare.other.1").value == 3


def test_heat_geodesic_says_the_diffusion_time_it_chose(db):
    with Store(db) as s:
        p = runs.compute_projection(s, 1, method="heatgeo")
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("heatgeo")
    at.run()
    assert not at.exception and len(at.metric) > 0
    said = f"Diffusion time τ = {p.chosen['tau']:.3g} (chosen by the time-entropy knee)"
    assert any(said in c.value for c in at.caption), [c.value for c in at.caption]
    gallery = next(d.value for d in at.dataframe if "parameters" in d.value.columns)
    assert f"tau=auto ({p.chosen['tau']:.3g})" in gallery["parameters"].iloc[0]


def test_largevis_and_umap_name_what_differs_from_their_papers(db):
    with Store(db) as s:
        lv = runs.compute_projection(s, 1, method="largevis")
        um = runs.compute_projection(s, 1, method="umap")
    at = open_page("projections")
    captions = lambda: [c.value for c in at.caption]  # noqa: E731
    assert any(
        "Differs from the paper's method: PCA start" in c
        and "33,333 edge samples per point, 10,000,000 in all" in c
        and "K = 30 neighbours per point (paper: 150)" in c
        and "perplexity 10 (paper: 50" in c
        for c in captions()
    ), captions()
    by_key(at.selectbox, "projections.method").set_value("umap")
    at.run()
    assert not at.exception
    assert any(
        "1,500 epochs from a spectral start. Differs from umap-learn's defaults: 1,500 epochs "
        "(umap-learn: 500"
        in c
        and "float32" in c
        for c in captions()
    ), captions()
    gallery = next(d.value for d in at.dataframe if "parameters" in d.value.columns)
    differs = dict(zip(gallery["method"], gallery["differs from paper"], strict=True))
    assert differs == {"LargeVis": "start, samples, K, perplexity", "UMAP": "epochs, optimiser"}
    assert set(lv.chosen["differs_from_paper"]) == {"start", "samples", "K", "perplexity"}
    assert um.chosen["n_epochs"] == 1500


def test_a_failed_instant_job_is_shown_once_not_started_again_on_every_run(db, monkeypatch):
    """PCA starts by itself, but only the first time: when it fails the page says why and
    offers the button, instead of starting it again on every rerun."""
    from embscope.app.runtime import get_job_runner
    from embscope.core.projections import pca

    calls = []

    def broken(X, *, dims=2):
        calls.append(1)
        raise RuntimeError("the layout broke")

    monkeypatch.setattr(pca, "pca_layout", broken)
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("pca").run()
    job = next(j for j in get_job_runner().jobs() if j.kind == "projection")
    get_job_runner().get(job.key).wait(30)
    for _ in range(3):
        at.run()
    assert len(calls) == 1
    assert any("the layout broke" in e.value for e in at.error)
    assert any(b.key == "projections.compute" for b in at.button)


def test_a_session_cannot_queue_more_than_its_share_of_jobs(db, monkeypatch):
    """Every job parameter is bounded, and so is how many jobs one visitor can start."""
    import threading

    from embscope.app import jobs
    from embscope.app.runtime import get_job_runner
    from embscope.core.projections import runs as runs_module

    release = threading.Event()
    real = runs_module.PROJECTIONS.compute

    def held(store, request, progress):  # keeps the job running until the test is done
        release.wait(30)
        return real(store, request, progress)

    monkeypatch.setattr(runs_module.PROJECTIONS, "compute", held)
    monkeypatch.setattr(jobs, "MAX_JOBS_PER_SESSION", 1)
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("umap").run()
    by_key(at.button, "projections.compute").click().run()
    assert len(get_job_runner().active()) == 1
    by_key(at.selectbox, "projections.method").set_value("heatgeo").run()
    by_key(at.button, "projections.compute").click().run()
    assert any("You have 1 jobs running" in w.value for w in at.warning)
    assert len(get_job_runner().active()) == 1
    release.set()


def test_a_running_jobs_progress_says_its_expected_peak_memory(db, monkeypatch):
    import threading

    from embscope.app.runtime import get_job_runner
    from embscope.core.memory import format_gib
    from embscope.core.projections import runs as runs_module

    release = threading.Event()
    real = runs_module.PROJECTIONS.compute

    def held(store, request, progress):
        progress(0.1, "held")
        release.wait(30)
        return real(store, request, progress)

    monkeypatch.setattr(runs_module.PROJECTIONS, "compute", held)
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("umap").run()
    by_key(at.button, "projections.compute").click().run()
    try:
        [status] = get_job_runner().active()
        assert status.memory and status.memory > 0
        at = until(at, lambda a: any("held" in p.proto.text for p in a.get("progress")))
        texts = [p.proto.text for p in at.get("progress")]
        peak = f"· expected peak {format_gib(status.memory)}"
        assert any("held" in t and t.endswith(peak) for t in texts), texts
    finally:
        release.set()


def _chart_titles(at) -> list[str]:
    import json

    return [
        (json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "")
        for c in at.get("plotly_chart")
    ]


def test_compare_layouts_are_like_for_like_by_default(db):
    """The left side opens on the dataset's best stored layout (not the newest), and the
    right side on the same method, parameters and seed, computed in the background when the
    other dataset has none: never a UMAP beside a PCA."""
    from embscope.app.runtime import get_store
    from embscope.core import compare_runs
    from embscope.core.artifacts import get_or_compute

    with Store(db) as s:
        umap = runs.compute_projection(s, 1, method="umap", seed=3, params={"n_epochs": 60})
        runs.compute_projection(s, 1, method="pca")  # newer, less faithful
        get_or_compute(s, compare_runs.COMPARISONS, compare_runs.comparison_request(s, 1, 2))
    at = open_page("compare")
    assert not at.exception
    assert by_key(at.selectbox, "compare.layout_a.1").value == umap.fingerprint
    assert by_key(at.selectbox, "compare.layout_b.2").value == "same as the left"
    # the copy has no layout yet: its twin is computed as a background job, on a click (a
    # visitor who only looks starts no UMAP)
    assert len(at.get("plotly_chart")) == 2 and not runs.list_projections(get_store(), 2)
    by_key(at.button, "compare.pair.compute").click().run()
    at = until(at, lambda a: len(a.get("plotly_chart")) == 3)
    assert not at.exception
    titles = _chart_titles(at)
    assert "UMAP 2-D of points" in titles and "UMAP 2-D of points noisy (aligned)" in titles
    [twin] = runs.list_projections(get_store(), 2)
    assert (twin.method, twin.seed, dict(twin.params)) == ("umap", 3, dict(umap.params))
    assert any("Like for like: both maps are UMAP" in c.value for c in at.caption)
    assert "layout_b" not in at.query_params  # the default needs no word in the link
    # another layout on the right is allowed, and said to be unlike
    by_key(at.selectbox, "compare.layout_b.2").set_value("PCA (instant)").run()
    assert any("Two different layouts" in c.value for c in at.caption)
    assert at.query_params["layout_b"] == "pca"


def test_gallery_shows_only_filled_columns_and_scores_another_label_column(tmp_path, monkeypatch):
    """The gallery hides columns without a value, says which column kNN accuracy was scored
    on, and scores the stored layouts on another label column as a job (no new layout)."""
    path = tmp_path / "labels.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    X, meta = _data()
    meta["parity"] = np.where(np.arange(len(meta)) % 2 == 0, "even", "odd")
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="points", info={"label_column": "label"})
        pca = runs.compute_projection(s, 1, method="pca")
    at = open_page("projections")
    by_key(at.selectbox, "projections.method").set_value("pca").run()

    def gallery(a):
        return next(d for d in a.dataframe if "trust@10" in d.value.columns)

    assert not at.exception
    frame = gallery(at).value
    # PCA has no parameters, departs from no paper, and the points have no geodesic truth:
    # no empty columns
    assert not {"parameters", "differs from paper", "geodesic ρ"} & set(frame.columns)
    assert frame["kNN acc.@10"].tolist() == [pca.quality["knn_accuracy@10"]]
    config = gallery(at).proto.columns
    assert "kNN acc.@10 (label)" in config  # the header names the label column
    assert by_key(at.selectbox, "projections.gallery.labels.1").value == "label"
    by_key(at.selectbox, "projections.gallery.labels.1").set_value("parity").run()
    assert "kNN acc.@10" not in gallery(at).value.columns  # not scored on parity yet
    by_key(at.button, "projections.gallery.rescore.1").click().run()
    at = until(at, lambda a: "kNN acc.@10" in gallery(a).value.columns)
    assert not at.exception
    parity = gallery(at).value["kNN acc.@10"].iloc[0]
    assert 0.0 <= parity <= 1.0 and parity != pca.quality["knn_accuracy@10"]
    from embscope.app.runtime import get_store

    assert len(runs.list_projections(get_store(), 1)) == 1  # scored, not laid out again
