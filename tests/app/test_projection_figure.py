"""The projection scatter: WebGL traces, numeric payload, categories, selection back to rows."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go

from embscope.app import figures


def _coords(n, dims=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)


def test_categorical_colour_one_trace_per_value_and_rows_round_trip():
    coords = _coords(300)
    labels = np.array(["b", "a", "c"] * 100)
    fig = figures.projection_figure(coords, color=labels, categorical=True, title="t")
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert sorted(t.name for t in fig.data) == ["a", "b", "c"]
    # every row appears exactly once across traces, with its own coordinates
    rows = np.concatenate([t.customdata for t in fig.data])
    assert sorted(rows.tolist()) == list(range(300))
    for t in fig.data:
        np.testing.assert_array_equal(t.x, coords[t.customdata, 0])
    # a selection event (curve, index within the trace) maps back to rows
    event = {
        "selection": {
            "points": [
                {"curve_number": 1, "point_index": 3},
                {"curve_number": 2, "point_index": 0},
            ]
        }
    }
    expected = sorted([int(fig.data[1].customdata[3]), int(fig.data[2].customdata[0])])
    assert figures.selected_rows(fig, event).tolist() == expected
    assert figures.selected_rows(fig, None).size == 0


def test_many_categories_fold_into_other():
    labels = np.arange(1000) % 50
    names, codes = figures.category_groups(labels.astype(str))
    assert len(names) == figures.MAX_CATEGORIES and names[-1].startswith("other (21")
    assert codes.max() == figures.MAX_CATEGORIES - 1


def test_continuous_colour_and_3d():
    coords = _coords(200, 3)
    fig = figures.projection_figure(coords, color=np.linspace(0, 1, 200), color_title="t")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Scatter3d)
    assert fig.data[0].marker.showscale


def test_payload_stays_numeric_binary_for_large_n():
    n = 200_000
    fig = figures.projection_figure(_coords(n), title="big")
    payload = fig.to_json()
    # plotly sends numpy arrays as base64 typed arrays, not JSON lists of numbers
    assert '"bdata"' in payload
    # x, y float32 + int32 rows: 12 bytes a point, ~16 in base64 (JSON lists take ~50)
    assert len(payload) < n * 24


def test_selected_points_are_highlighted():
    fig = figures.projection_figure(_coords(50), selected=np.array([3, 7]))
    assert list(fig.data[0].selectedpoints) == [3, 7]


def test_hover_text_is_passed_through_as_given():
    # hover labels are escaped by the caller (app.cache.hover_labels); the figure keeps them
    fig = figures.projection_figure(_coords(2), hover=["&lt;b&gt;x", "y"])
    assert json.loads(fig.to_json())["data"][0]["hovertext"] == ["&lt;b&gt;x", "y"]


def test_few_categories_in_natural_order():
    names, codes = figures.category_groups(np.array(["10", "2", "1", "2"]))
    assert names == ["1", "2", "10"] and codes.tolist() == [2, 1, 0, 1]


def test_user_text_in_titles_and_legends_is_escaped():
    evil = '<a href="javascript:alert(1)">x</a>'
    escaped = "&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;"
    fig = figures.projection_figure(
        _coords(4), color=np.array([evil, "b", evil, "b"]), categorical=True, title=evil
    )
    assert fig.layout.title.text == escaped
    assert sorted(t.name for t in fig.data) == sorted([escaped, "b"])
    assert "<a href" not in fig.to_json()
    cont = figures.projection_figure(_coords(3), color=np.arange(3.0), color_title="<b>t</b>")
    assert cont.data[0].marker.colorbar.title.text == "&lt;b&gt;t&lt;/b&gt;"


def test_figures_are_plotly_white_through_the_process_default():
    import plotly.io as pio

    expected = pio.templates["plotly_white"].to_plotly_json()
    made = [
        figures.projection_figure(_coords(50), title="t"),
        figures.histogram_figure(np.arange(10.0), title="h", x_title="x"),
    ]
    for fig in made:
        layout = fig.to_dict()["layout"]
        assert layout["template"] == expected
        assert layout["template"]["layout"]["plot_bgcolor"] == "white"
    # A figure made outside figures.py in this process looks the same.
    assert go.Figure().to_dict()["layout"]["template"] == expected
