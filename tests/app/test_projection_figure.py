"""The projection scatter: WebGL traces, numeric payload, categories, selection back to rows."""

from __future__ import annotations

import html
import json

import numpy as np
import plotly.graph_objects as go

from embscope.app import figures
from tests.helpers import spec_strings


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
    labels = np.arange(1000) % 80
    names, codes = figures.category_groups(labels.astype(str))
    assert len(names) == figures.MAX_CATEGORIES and names[-1].startswith("other (26")
    assert codes.max() == figures.MAX_CATEGORIES - 1
    # Up to MAX_CATEGORIES values (the stdlib demo's 51 modules) each keep their own colour.
    names, _ = figures.category_groups((np.arange(1000) % 51).astype(str))
    assert len(names) == 51 and not any(n.startswith("other") for n in names)


def test_no_two_groups_share_a_colour_and_none_is_grey():
    palette = figures._PALETTE
    assert len(set(palette)) == len(palette) == figures.MAX_CATEGORIES >= 50
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in palette], float)
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(palette)) * 999
    assert gaps.min() >= 50  # not two near-identical shades either
    assert np.all(rgb.max(axis=1) - rgb.min(axis=1) >= 25)  # grey is for "no value"/"other"
    labels = (np.arange(5100) % 51).astype(str)
    fig = figures.projection_figure(_coords(5100), color=labels, categorical=True)
    colours = [t.marker.color for t in fig.data]
    assert len(colours) == 51 and len(set(colours)) == 51


def test_the_map_opens_on_the_bulk_of_its_points():
    coords = _coords(5000)
    coords[:5] = 1e4  # five far outliers
    fig = figures.projection_figure(coords)
    low, high = fig.layout.xaxis.range
    assert -6 < low < -2 and 2 < high < 6  # not stretched to 1e4
    assert fig.layout.yaxis.scaleanchor == "x"
    assert figures.robust_range(np.array([1.0, 2.0])) == [0.96, 2.04]
    assert figures.robust_range(np.array([np.nan])) == [-1.0, 1.0]


def test_size_opacity_labels_and_a_clicked_points_neighbours():
    coords = _coords(100)
    evil = "<img src=x onerror=alert(1)>"
    labels = [figures.MapLabel(0.5, 0.5, 0.0, evil), figures.MapLabel(1, 1, 0, "b, c")]
    fig = figures.projection_figure(
        coords, size=9, opacity=0.3, labels=labels, focus=4, neighbours=np.array([7, 8, 4, 500])
    )
    assert fig.data[0].marker.size == 9 and fig.data[0].marker.opacity == 0.3
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["&lt;img src=x onerror=alert(1)&gt;", "b, c"]
    assert not any("<img" in t for t in spec_strings(fig.to_json()))
    by_name = {t.name: t for t in fig.data}
    rings = by_name["2 nearest neighbours"]
    assert list(rings.customdata) == [7, 8]  # the point itself and rows out of range dropped
    np.testing.assert_array_equal(rings.x, coords[[7, 8], 0])
    assert list(by_name["clicked point"].customdata) == [4]
    lines = by_name["neighbour links"]
    assert lines.x[0] == coords[4, 0] and lines.x[1] == coords[7, 0] and np.isnan(lines.x[2])
    # Clicking a ring selects that neighbour (its row is its customdata).
    event = {"selection": {"points": [{"curve_number": len(fig.data) - 2, "point_index": 1}]}}
    assert figures.selected_rows(fig, event).tolist() == [8]
    three = figures.projection_figure(_coords(20, 3), labels=labels, focus=0, neighbours=[1, 2])
    assert len(three.layout.scene.annotations) == 2
    assert {t.name for t in three.data} >= {"2 nearest neighbours", "clicked point"}
    assert figures.point_opacity(1_000_000) < figures.point_opacity(1_000)


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
    # (a legend entry is cut at LEGEND_CHARS, then escaped)
    assert sorted(t.name for t in fig.data) == sorted([html.escape(evil[:27]) + "…", "b"])
    assert not any("<a href" in t for t in spec_strings(fig.to_json()))
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


def test_density_shades_beneath_the_points_in_a_small_fixed_payload():
    n = 200_000
    rng = np.random.default_rng(0)
    coords = np.vstack([rng.normal(-3, 0.5, (n // 2, 2)), rng.normal(3, 0.5, (n // 2, 2))])
    plain = figures.projection_figure(coords)
    shaded = figures.projection_figure(coords, density=True)
    heat = shaded.data[0]
    assert isinstance(heat, go.Heatmap) and heat.hoverinfo == "skip"
    assert len(shaded.to_json()) - len(plain.to_json()) < 300_000  # the grid, not the points
    z = np.asarray(heat.z, dtype=float)
    # Dense where the two blobs are, empty (no colour) between them.
    x, y = np.asarray(heat.x), np.asarray(heat.y)
    at = lambda px, py: z[np.abs(y - py).argmin(), np.abs(x - px).argmin()]  # noqa: E731
    assert at(-3, -3) > 0 and at(3, 3) > 0 and np.isnan(at(0, 0))
    # Rows still map back through the point traces (the heatmap carries none).
    event = {"selection": {"points": [{"curve_number": 1, "point_index": 5}]}}
    assert figures.selected_rows(shaded, event).tolist() == [5]
    # A filter shades only what it keeps; 3-D draws no density.
    keep = coords[:, 0] > 0
    kept = figures.projection_figure(coords, density=True, keep=keep).data[0]
    assert np.asarray(kept.x).min() > -0.5  # the grid covers the kept blob only
    three = figures.projection_figure(_coords(100, 3), density=True)
    assert not any(isinstance(t, go.Heatmap) for t in three.data)


def test_a_continuous_colour_follows_its_rows_under_a_filter():
    coords = _coords(10)
    keep = np.array([False] * 5 + [True] * 5)
    fig = figures.projection_figure(coords, color=np.arange(10.0), keep=keep)
    points = next(t for t in fig.data if t.customdata is not None)
    assert list(points.customdata) == [5, 6, 7, 8, 9]
    assert list(points.marker.color) == [5.0, 6.0, 7.0, 8.0, 9.0]  # each row's own value
    # With missing values too.
    c = np.arange(10.0)
    c[6] = np.nan
    fig = figures.projection_figure(coords, color=c, keep=keep)
    points = [t for t in fig.data if t.name != "no value" and t.customdata is not None][0]
    assert list(points.customdata) == [5, 7, 8, 9] and list(points.marker.color) == [5, 7, 8, 9]


def test_values_that_look_like_numbers_but_are_not_sort_without_error():
    names, _ = figures.category_groups(np.array(["² a", "10 b", "2 c", "①", "x"]))
    assert names[:2] == ["2 c", "10 b"] and set(names) == {"² a", "10 b", "2 c", "①", "x"}
