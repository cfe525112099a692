"""Every figure builder of app/figures.py reads well on the demo data: no two text labels
overlap (estimated in pixels by app/plot_style, the estimate the label placement uses), log
axes are labelled at decades or plotted values only, secondary axes at round values, and every
mark has a hover."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from embscope.app import figures
from embscope.app import plot_style as style
from embscope.core.demo import stdlib_docstrings
from embscope.core.geometry.isotropy import pca_spectrum

# What the Compression page measured on the stdlib docstrings demo (recall@10, 1,000 queries):
# int8 and lvq:8 sit together, as do pca:128, rp:128, truncate:128 and dct:128 (512 bytes).
_CODECS = [
    # codec, family, bytes, recall, ci, first stage, re-ranked recall, re-ranked with, re-rank bytes
    ("float16", "float", 768, 0.9998, (0.9995, 1.0), None, 1.0, "float32", 1536),
    ("int8", "int8", 384, 0.9962, (0.995, 0.9973), None, 1.0, "float32", 1536),
    ("lvq:8", "lvq", 388, 0.9975, (0.9965, 0.9984), None, 1.0, "float32", 1536),
    ("lvq:4x8", "lvq", 580, 0.9597, (0.9559, 0.9631), "lvq:4 (first level)", 0.9994,
     "two-level lvq:4x8", 0),
    ("leanvec:192:4x8", "leanvec", 488, 0.9214, (0.9168, 0.9257),
     "primary lvq:4 of 192 PCA dims", 0.9975, "secondary lvq:8", 0),
    ("binary", "binary", 48, 0.711, (0.7004, 0.721), None, 0.9646, "float32", 1536),
    ("pq:48", "pq", 48, 0.8456, (0.8393, 0.8522), None, 0.999, "float32", 1536),
    ("pca:128", "pca", 512, 0.9159, (0.9107, 0.9209), None, 0.9997, "float32", 1536),
    ("rp:128", "rp", 512, 0.6715, (0.6604, 0.6826), None, 0.9288, "float32", 1536),
    ("truncate:128", "truncate", 512, 0.7145, (0.7036, 0.7251), None, 0.9595, "float32", 1536),
    ("dct:128", "dct", 512, 0.6753, (0.6644, 0.6859), None, 0.9495, "float32", 1536),
]  # fmt: skip


def _pareto_frame() -> pd.DataFrame:
    rows = []
    for codec, family, size, recall, ci, first, rescored, rescored_with, extra in _CODECS:
        rows.append({
            "codec": codec, "family": family, "bytes_per_vector": size,
            "recall@10": recall, "recall@10_ci": list(ci), "first_stage": first,
            "recall@10_rescored": rescored, "recall@10_rescored_ci": [rescored, rescored],
            "rescored_with": rescored_with, "rerank_bytes_per_vector": extra,
            "bytes_per_vector_rescored": size + extra,
        })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def demo() -> SimpleNamespace:
    """The stdlib docstrings demo: its PCA spectrum, exact 10-NN k-occurrence and TwoNN."""
    X = stdlib_docstrings().vectors
    spectrum = pca_spectrum(X)
    sims = X @ X.T
    np.fill_diagonal(sims, -np.inf)
    nbrs = np.argpartition(-sims, 10, axis=1)[:, :10]
    k_occurrence = np.bincount(nbrs.ravel(), minlength=len(X))
    top2 = -np.sort(-sims, axis=1)[:, :2]
    r = np.sqrt(np.maximum(2 - 2 * top2, 1e-12))
    mu = np.sort(r[:, 1] / r[:, 0])
    log_mu = np.log(mu)
    survival = -np.log(1 - np.arange(len(mu)) / len(mu))
    dimension = float((log_mu @ survival) / (log_mu @ log_mu))
    twonn = SimpleNamespace(log_mu=log_mu, neg_log_survival=survival, dimension=dimension)
    return SimpleNamespace(X=X, spectrum=spectrum, k_occurrence=k_occurrence, twonn=twonn)


def _diagnostics() -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """Recall vs ef, recall vs LID and insertion order as measured on the same demo."""
    curve = SimpleNamespace(
        ef=np.array([10, 20, 40, 80, 160]), k=10, n_queries=419,
        recall=np.array([0.9415, 0.9876, 0.9971, 0.9998, 0.9998]),
        recall_ci=np.array([[0.9313, 0.9513], [0.9828, 0.9916], [0.9947, 0.999],
                            [0.9993, 1.0], [0.9993, 1.0]]),
        p50_ms=np.array([0.0286, 0.0357, 0.0501, 0.0758, 0.1194]),
        p99_ms=np.array([0.0583, 0.0597, 3.633, 0.101, 0.1624]),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    lid = rng.gamma(6, 3, 419)
    lid_result = SimpleNamespace(
        lid=lid, recall=np.clip(1.2 - lid / 60 + rng.normal(0, 0.05, 419), 0, 1).round(1),
        ef=10, spearman_rho=-0.496,
    )  # fmt: skip
    orders = ("random", "lid_ascending", "lid_descending", "label_low_lid_first",
              "label_high_lid_first")  # fmt: skip
    base = np.array([0.945, 0.986, 0.998, 0.9998, 1.0])
    recall = base[None, :] + rng.normal(0, 0.002, (5, 5))
    seed_recall = np.clip(recall[None] + rng.normal(0, 0.002, (3, 5, 5)), 0, 1)
    order = SimpleNamespace(
        orders=orders, ef=np.array([10, 20, 40, 80, 160]), k=10, recall=np.clip(recall, 0, 1),
        recall_sd=seed_recall.std(axis=0), seed_recall=seed_recall,
    )  # fmt: skip
    return curve, lid_result, order


def _every_figure(demo: SimpleNamespace) -> dict[str, go.Figure]:
    curve, lid_result, order = _diagnostics()
    rng = np.random.default_rng(1)
    coords = rng.standard_normal((2098, 2)).astype(np.float32)
    hover = [f"row {i}" for i in range(len(coords))]
    labels = [figures.MapLabel(float(x), float(y), 0.0, f"{i} · argparse, parser, option")
              for i, (x, y) in enumerate(coords[:12])]  # fmt: skip
    modules = np.array([f"module {i % 51}" for i in range(len(coords))])
    frame = _pareto_frame()
    return {
        "recall vs ef": figures.recall_ef_figure(curve),
        "recall vs LID": figures.recall_lid_figure(lid_result),
        "insertion order": figures.order_figure(order),
        "PCA spectrum": figures.spectrum_figure(demo.spectrum),
        "TwoNN": figures.twonn_figure(demo.twonn),
        "LID histogram": figures.histogram_figure(lid_result.lid, title="LID", x_title="LID"),
        "k-occurrence histogram": figures.histogram_figure(
            demo.k_occurrence, title="k-occurrence", x_title="N10", log_y=True
        ),
        "LID map": figures.scatter_figure(
            coords,
            color=lid_result.lid[np.arange(len(coords)) % 419],
            color_title="LID",
            hover=hover,
            title="LargeVis 2-D coloured by LID",
        ),  # fmt: skip
        "projection": figures.projection_figure(
            coords,
            color=modules,
            categorical=True,
            hover=hover,
            labels=labels,
            focus=3,
            neighbours=np.arange(4, 14),
            title="map",
        ),  # fmt: skip
        "projection, continuous": figures.projection_figure(
            coords, color=coords[:, 0], color_title="x", density=True
        ),
        "metadata bars": figures.metadata_bars(
            ["a", "b", "c"], np.array([5, 3, 1]), np.array([2, 1, 0]), title="module"
        ),
        "metadata histogram": figures.metadata_histogram(
            np.linspace(0, 1, 11), np.arange(10), np.arange(10) // 2, title="score"
        ),
        "shared neighbours": figures.shared_neighbours_figure(
            np.array([3, 10, 40, 90, 120, 200, 300, 500, 400, 300, 130]), 10, 0.004
        ),
        "Pareto": figures.pareto_figure(frame, k=10),
        "Pareto, re-ranked": figures.pareto_figure(frame, k=10, rescored=True),
    }


def test_the_demo_reproduces_the_crowded_cases(demo):
    assert (demo.spectrum.n90, demo.spectrum.n95) == (153, 201)
    frame = _pareto_frame().set_index("codec")
    assert abs(frame.loc["int8", "bytes_per_vector"] - frame.loc["lvq:8", "bytes_per_vector"]) < 8
    assert frame.loc["rp:128", "bytes_per_vector"] == frame.loc["dct:128", "bytes_per_vector"]


def test_no_two_text_labels_overlap(demo):
    for name, fig in _every_figure(demo).items():
        assert style.overlapping_labels(fig) == [], name
        area = style.plot_area(fig)
        for text, box in style.label_boxes(fig):
            if not any(a.text == text for a in fig.layout.annotations or ()):  # on the plot
                assert box.inside(area), (name, text)


def test_point_labels_name_every_codec_and_every_level(demo):
    figs = _every_figure(demo)
    for name in ("Pareto", "Pareto, re-ranked"):
        # Beside its point, or further out with a line to it (a callout: an annotation).
        shown = [t for trace in figs[name].data if trace.text is not None for t in trace.text]
        shown += [a.text for a in figs[name].layout.annotations]
        named = [n for text in shown if text for n in text.split(" · ")]
        # Points drawn together share one label; every codec is named once.
        assert sorted(named) == sorted(c[0] for c in _CODECS), (name, shown)
        for trace in figs[name].data:  # hover names the codec, whatever the label shows
            assert "%{text}" not in (trace.hovertemplate or "")
    spectrum = next(t for t in figs["PCA spectrum"].data if t.mode == "markers+text")
    assert list(spectrum.text) == ["90 %: 153", "95 %: 201", "99 %: 288"]
    assert not figs["PCA spectrum"].layout.annotations  # nothing stacked over the plot


def _plotted(fig: go.Figure, axis: str) -> set[float]:
    letter = axis[0]
    out: set[float] = set()
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) == axis and getattr(t, letter) is not None:
            out |= {float(v) for v in np.asarray(getattr(t, letter), float).ravel()}
    return out


def test_log_axes_label_decades_or_plotted_values_only(demo):
    seen = 0
    for name, fig in _every_figure(demo).items():
        layout = fig.layout.to_plotly_json()
        for key, axis in layout.items():
            if not key[1:].startswith("axis") or axis.get("type") != "log":
                continue
            seen += 1
            assert axis.get("tickmode") == "array", (name, key)
            ticks, texts = axis["tickvals"], axis["ticktext"]
            assert len(ticks) == len(texts) >= 2, (name, key)
            plotted = _plotted(fig, key[0] + key[5:])
            for t in ticks:
                decade = abs(math.log10(t) - round(math.log10(t))) < 1e-9
                assert decade or float(t) in plotted, (name, key, t)
            lo, hi = axis["range"]
            assert all(lo <= math.log10(t) <= hi for t in ticks), (name, key)
    assert seen >= 4  # ef, the spectrum, the k-occurrence counts, both Pareto plots


def _round(ticks: list[float]) -> bool:
    steps = np.diff(ticks)
    if not len(steps) or not np.allclose(steps, steps[0]):
        return False
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    return any(abs(mantissa - m) < 1e-9 for m in (1, 2, 2.5, 5)) and all(
        abs(t / steps[0] - round(t / steps[0])) < 1e-9 for t in ticks
    )


def test_secondary_axes_carry_round_ticks_and_no_grid(demo):
    figs = _every_figure(demo)
    for name in ("recall vs ef", "PCA spectrum"):
        axis = figs[name].layout.yaxis2
        assert axis.tickmode == "array" and _round(list(axis.tickvals)), (name, axis.tickvals)
        assert axis.showgrid is False
        assert all(len(t) <= 5 for t in axis.ticktext), axis.ticktext
    assert list(figs["PCA spectrum"].layout.yaxis2.ticktext) == ["0 %", "20 %", "40 %", "60 %",
                                                                 "80 %", "100 %"]  # fmt: skip


def test_every_mark_has_a_hover(demo):
    decorations = ("density", "neighbour links")
    for name, fig in _every_figure(demo).items():
        assert style.hover_missing(fig, decorations=decorations) == [], name


def test_pareto_front_is_the_upper_left_envelope():
    frame = _pareto_frame()
    for rescored, expected in (
        (False, ["pq:48", "int8", "lvq:8", "float16"]),
        (True, ["leanvec:192:4x8", "lvq:4x8", "int8"]),  # float16 ties int8 at 1.0
    ):
        fig = figures.pareto_figure(frame, k=10, rescored=rescored)
        front = next(t for t in fig.data if t.name == "Pareto front")
        assert front.line.dash == "dash" and front.line.shape == "hv"
        assert list(front.customdata) == expected
        assert np.all(np.diff(front.x) > 0) and np.all(np.diff(front.y) > 0)


def test_numbers_read_with_three_significant_digits():
    assert [style.fmt_num(v) for v in (0.08253, 0.199, 12345.6, 1234, 3.0, 0.0, None)] == [
        "0.0825", "0.199", "12,346", "1,234", "3", "0", "—",
    ]  # fmt: skip
    assert style.fmt_num(float("nan")) == "—" and style.fmt_num(2.5e-6) == "2.5e-6"
    # More digits only where two values would read alike.
    assert style.fmt_nums([0.9981, 0.9984, 0.95]) == ["0.9981", "0.9984", "0.95"]
    assert style.fmt_num(0.9996) == "0.9996" and style.fmt_num(12.0004) == "12"
    assert style.nice_ticks(0, 3.8) == [0.0, 1.0, 2.0, 3.0]
    assert style.nice_ticks(0.228, 0.786) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert style.nice_ticks(0.89, 1.01) == [0.9, 0.92, 0.94, 0.96, 0.98, 1.0]


def test_the_lid_map_uses_the_most_faithful_stored_layout(monkeypatch):
    from embscope.app import geometry_view

    def layout(method, dims, trust, knn):
        quality = {"trustworthiness@10": trust, "knn_preservation@10": knn}
        return SimpleNamespace(method=method, dims=dims, quality=quality)

    stored = [
        layout("pca", 2, 0.81, 0.2), layout("umap", 3, 0.99, 0.6),  # 3-D: not a flat map
        layout("largevis", 2, 0.96, 0.50), layout("umap", 2, 0.96, 0.55),
        layout("heatgeo", 2, None, 0.9),  # unscored: last
    ]  # fmt: skip
    monkeypatch.setattr(geometry_view, "get_store", lambda: None)
    monkeypatch.setattr(geometry_view.runs, "list_projections", lambda store, i: stored)
    info = SimpleNamespace(id=1)
    assert geometry_view.best_layout(info) is stored[3]  # trustworthiness, then kNN kept
    monkeypatch.setattr(geometry_view.runs, "list_projections", lambda store, i: [])
    assert geometry_view.best_layout(info) is None  # then the PCA projection
