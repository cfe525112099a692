"""Plotly figure builders: arrays in, ``go.Figure`` out (no streamlit here)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from embscope.app import plot_style as style
from embscope.core.export import MISSING, as_text

# Every figure here uses plotly's "plotly_white" look. As the process default, plotly applies
# it once, without validation, when the figure is serialised; set per figure with
# ``update_layout(template=...)`` it is deep-copied and validated each time (~9 ms a figure,
# the larger part of building one, under the interpreter lock that all sessions share).
# The figure's JSON is the same either way.
TEMPLATE = "plotly_white"
pio.templates.default = TEMPLATE

ORDER_LABELS = {
    "random": "random",
    "lid_ascending": "LID ascending",
    "lid_descending": "LID descending",
    "label_low_lid_first": "by label, low-LID labels first",
    "label_high_lid_first": "by label, high-LID labels first",
}


def _layout(
    fig: go.Figure, title: str, *, width: float = style.FULL_WIDTH, height: int = 380
) -> go.Figure:
    """The common look: title, margins, height, a legend below, the design width (for the
    label placement of :mod:`app.plot_style`) and hover labels that show whole names."""
    fig.update_layout(
        title={"text": title, "font": {"size": 15}},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        height=height,
        legend={"orientation": "h", "y": -0.2},
        hoverlabel={"namelength": -1},
    )
    return style.set_width(fig, width)


def recall_ef_figure(curve: Any) -> go.Figure:
    """recall@k with its 95 % interval (left axis) and median/p99 single-query latency
    (right axis) against ef, on held-out queries."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ef = np.asarray(curve.ef)
    recall, ci = np.asarray(curve.recall, float), np.asarray(curve.recall_ci, float)
    fig.add_trace(
        go.Scatter(
            x=ef, y=recall, mode="lines+markers", name=f"recall@{curve.k} (95 % interval)",
            error_y={"type": "data", "symmetric": False, "array": ci[:, 1] - recall,
                     "arrayminus": recall - ci[:, 0]},
            customdata=ci,
            hovertemplate="ef %{x}<br>recall %{y:.3f} (95 % interval %{customdata[0]:.3f}–"
            "%{customdata[1]:.3f})<extra></extra>",
        ),
        secondary_y=False,
    )  # fmt: skip
    latency = []
    for label, values, dash in (("p50", curve.p50_ms, "dot"), ("p99", curve.p99_ms, "dash")):
        latency.append(np.asarray(values, float))
        fig.add_trace(
            go.Scatter(
                x=ef, y=values, mode="lines+markers", name=f"latency {label} (ms)",
                line={"dash": dash},
                hovertemplate=f"ef %{{x}}<br>{label} latency %{{y:{style.SIG}}} ms"
                "<extra></extra>",
            ),
            secondary_y=True,
        )  # fmt: skip
    # Ticks at the measured ef only (a log axis would label its minor ticks 2 3 4 ...).
    style.log_axis(fig, ef, at_values=True, title_text="ef (search breadth, log scale)")
    low = float(np.nanmin(ci[:, 0])) if np.isfinite(ci[:, 0]).any() else 0.0
    style.linear_axis(
        fig, max(0.0, min(low, 0.9) - 0.05), 1.01, secondary_y=False, extend=False,
        title_text=f"recall@{curve.k}",
    )  # fmt: skip
    top = max((float(np.nanmax(v)) for v in latency if np.isfinite(v).any()), default=1.0)
    style.linear_axis(fig, 0.0, top * 1.05, secondary_y=True, grid=False, title_text="milliseconds")
    return _layout(
        fig, f"HNSW recall@{curve.k} and latency against ef ({curve.n_queries} held-out queries)"
    )


def recall_lid_figure(result: Any) -> go.Figure:
    """Per-query recall against the query's LID, with the mean recall per LID decile."""
    lid, recall = np.asarray(result.lid, float), np.asarray(result.recall, float)
    ok = np.isfinite(lid)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.015, 0.015, ok.sum())  # recall takes few values: spread them
    fig = go.Figure(
        go.Scattergl(
            x=lid[ok], y=recall[ok] + jitter, mode="markers", name="one query",
            marker={"size": 5, "opacity": 0.5},
            hovertemplate="LID %{x:.1f}<br>recall %{customdata:.2f}<extra></extra>",
            customdata=recall[ok],
        )
    )  # fmt: skip
    if ok.sum() >= 20:
        edges = np.unique(np.quantile(lid[ok], np.linspace(0, 1, 11)))
        which = np.clip(np.searchsorted(edges, lid[ok], side="right") - 1, 0, len(edges) - 2)
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
        means = [recall[ok][which == i].mean() if (which == i).any() else np.nan
                 for i in range(len(edges) - 1)]  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=centres, y=means, mode="lines+markers", name="mean per decile",
                customdata=np.column_stack([edges[:-1], edges[1:]]),
                hovertemplate="LID %{customdata[0]:.1f}–%{customdata[1]:.1f}<br>mean recall "
                "%{y:.3f}<extra></extra>",
            )
        )  # fmt: skip
    rho = result.spearman_rho
    fig.update_xaxes(title_text="local intrinsic dimension of the query (LID, k = 20)")
    style.linear_axis(
        fig, max(-0.05, float(recall[ok].min(initial=1.0)) - 0.1), 1.05, extend=False,
        title_text="recall",
    )  # fmt: skip
    title = f"Per-query recall at ef = {result.ef} against LID"
    if np.isfinite(rho):
        title += f" (Spearman ρ = {style.fmt_num(rho)})"
    return _layout(fig, title)


def order_figure(result: Any) -> go.Figure:
    """recall@k of each insertion order, one bar group per ef: the mean over the seeds, ± one
    standard deviation, and each seed's build as a dot (the spread the order must beat).
    Each bar's value is written inside it, at its foot, where it has room."""
    fig = go.Figure()
    names = [ORDER_LABELS.get(o, o) for o in result.orders]
    seeds = int(result.seed_recall.shape[0])
    # The bars stand on the axis's foot (not on 0, far below it), so a value written at a
    # bar's foot is in view.
    low = max(0.0, float(np.nanmin(result.seed_recall)) - 0.1)
    for j, ef in enumerate(np.asarray(result.ef)):
        sd = np.nan_to_num(np.asarray(result.recall_sd[:, j], float))
        recall = np.asarray(result.recall[:, j], float)
        fig.add_trace(
            go.Bar(
                x=names, y=recall - low, base=low, name=f"ef = {ef}", offsetgroup=str(j),
                error_y={"type": "data", "array": sd, "visible": seeds > 1},
                text=[style.fmt_num(v) for v in recall], textposition="inside",
                textangle=-90, insidetextanchor="start", textfont={"size": style.LABEL_FONT},
                customdata=np.column_stack([recall, sd]),
                hovertemplate="%{x}<br>recall %{customdata[0]:.3f} ± %{customdata[1]:.3f} sd "
                f"over {seeds} seed{'s' if seeds != 1 else ''}<extra>ef = {ef}</extra>",
            )
        )  # fmt: skip
        if seeds > 1:
            fig.add_trace(
                go.Scatter(
                    x=[n for n in names for _ in range(seeds)],
                    y=result.seed_recall[:, :, j].T.ravel(), mode="markers",
                    name="one build (one seed)", offsetgroup=str(j), showlegend=j == 0,
                    marker={"size": 6, "color": "black", "symbol": "circle-open"},
                    hovertemplate="%{x}<br>one seed: recall %{y:.3f}<extra></extra>",
                )
            )  # fmt: skip
    style.linear_axis(fig, low, 1.02, extend=False, title_text=f"recall@{result.k}")
    fig.update_layout(barmode="group", scattermode="group")
    fig = _layout(
        fig,
        f"recall@{result.k} by insertion order (held-out queries, {seeds} single-threaded "
        f"build{'s' if seeds != 1 else ''} per order)",
    )
    if style.overlapping_labels(fig):  # bars too narrow for their values: hover has them
        fig.update_traces(text=None, selector={"type": "bar"})
    return fig


def spectrum_figure(spectrum: Any) -> go.Figure:
    """PCA spectrum: variance ratio per component (log scale) and cumulative variance, with
    the components that reach 90, 95 and 99 % marked on the cumulative curve."""
    ratio = np.asarray(spectrum.variance_ratio, float)
    cumulative = np.asarray(spectrum.cumulative, float)
    comps = np.arange(1, len(ratio) + 1)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(x=comps, y=ratio, mode="lines", name="variance ratio (left)",
                   hovertemplate=f"component %{{x}}: %{{y:{style.SIG}}} of the variance"
                   "<extra></extra>"),
        secondary_y=False,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=comps, y=cumulative, mode="lines", name="cumulative (right)",
                   line={"dash": "dash"},
                   hovertemplate="components 1–%{x}: %{y:.1%} of the variance<extra></extra>"),
        secondary_y=True,
    )  # fmt: skip
    levels = [(90, spectrum.n90), (95, spectrum.n95), (99, spectrum.n99)]
    levels = [(level, int(n)) for level, n in levels if n and n <= len(ratio)]
    for level, n in levels:  # a drop line from the mark to the axis
        fig.add_shape(
            type="line", x0=n, x1=n, y0=0, y1=level / 100, xref="x", yref="y2",
            line={"width": 1, "dash": "dot", "color": "grey"},
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[n for _, n in levels], y=[level / 100 for level, _ in levels],
            mode="markers+text", name="components for 90 / 95 / 99 %",
            marker={"size": 7, "color": "#555555"},
            text=[f"{level} %: {n}" for level, n in levels], textposition="middle right",
            textfont={"size": style.LABEL_FONT},
            customdata=[[level, n] for level, n in levels],
            hovertemplate="%{customdata[0]} % of the variance in the first %{customdata[1]} "
            "components<extra></extra>",
        ),
        secondary_y=True,
    )  # fmt: skip
    style.linear_axis(fig, 0, len(ratio) + 1, axis="x", extend=False,
                      title_text="principal component")  # fmt: skip
    style.log_axis(fig, ratio, axis="y", secondary_y=False,
                   title_text="share of variance (log)")  # fmt: skip
    style.linear_axis(fig, 0, 1, secondary_y=True, extend=False, percent=True, headroom=0.1,
                      grid=False, title_text="cumulative share")  # fmt: skip
    fig = _layout(fig, "PCA spectrum", width=style.HALF_WIDTH)
    return style.place_labels(fig)


def twonn_figure(result: Any) -> go.Figure:
    """TwoNN fit: −log(1 − F(μ)) against log μ, with the fitted line through the origin."""
    x, y = np.asarray(result.log_mu, float), np.asarray(result.neg_log_survival, float)
    step = max(1, len(x) // 5000)  # the fit is a line: a few thousand points show it
    fig = go.Figure(
        go.Scattergl(
            x=x[::step], y=y[::step], mode="markers", name="points",
            marker={"size": 4, "opacity": 0.5},
            hovertemplate="log μ %{x:.3f}<br>−log(1 − F(μ)) %{y:.3f}<extra></extra>",
        )
    )  # fmt: skip
    dimension = style.fmt_num(result.dimension)
    if len(x):
        xs = np.array([0.0, float(x.max())])
        fig.add_trace(
            go.Scatter(
                x=xs, y=result.dimension * xs, mode="lines", name=f"slope d = {dimension}",
                hovertemplate=f"fitted line, slope d = {dimension}<br>log μ %{{x:.3f}}: "
                "%{y:.3f}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="log μ   (μ = r₂ / r₁)")
    fig.update_yaxes(title_text="−log(1 − F(μ))")
    return _layout(fig, f"TwoNN fit: intrinsic dimension {dimension}", width=style.HALF_WIDTH)


def histogram_figure(values: Any, *, title: str, x_title: str, log_y: bool = False) -> go.Figure:
    """A histogram of per-point values (NaN left out): one bar per whole number for counts
    (up to 150 of them), else 60 bins; on a log count axis labelled at 1, 10, 100, ..."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    whole = v.size > 0 and np.all(v == np.round(v)) and v.max() - v.min() <= 150
    if whole:
        edges = np.arange(v.min() - 0.5, v.max() + 1.0)
    else:
        edges = np.histogram_bin_edges(v, bins=60) if v.size else np.array([0.0, 1.0])
    counts, edges = np.histogram(v, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    if whole:
        custom = [[style.fmt_num(int(round(c))), ""] for c in centres]
        where = "%{customdata[0]}"
    else:
        custom = [[style.fmt_num(a), style.fmt_num(b)] for a, b in zip(edges[:-1], edges[1:],
                                                                        strict=True)]  # fmt: skip
        where = "%{customdata[0]}–%{customdata[1]}"
    fig = go.Figure(
        go.Bar(
            x=centres, y=counts, width=np.diff(edges), name=x_title, marker_color="#636efa",
            customdata=custom,
            hovertemplate=f"{where}: %{{y:,}} points<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(bargap=0.04)
    fig.update_xaxes(title_text=x_title)
    if log_y:
        top = float(counts.max()) if counts.size else 1.0
        style.log_axis(fig, counts[counts > 0], axis="y", low=0.8, high=max(top, 1.0) * 1.2,
                       pad=0.0, title_text="points (log)")  # fmt: skip
    else:
        fig.update_yaxes(title_text="points")
    return _layout(fig, title, width=style.HALF_WIDTH)


def scatter_figure(
    coords: np.ndarray,
    *,
    color: np.ndarray,
    color_title: str,
    hover: list[str],
    title: str,
    axis_titles: tuple[str, str] = ("PC 1", "PC 2"),
) -> go.Figure:
    """A WebGL scatter of a 2-D layout coloured by a per-point value (continuous scale),
    opened on the bulk of its points, with point size and opacity for its number of points.

    ``hover`` must already be escaped text: plotly renders a subset of HTML in hover labels.
    """
    c = np.asarray(color, float)
    finite = c[np.isfinite(c)]
    # A few extreme values would flatten the colour scale: clip it to the 1-99 % range.
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    n = len(coords)
    fig = go.Figure(
        go.Scattergl(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name=html.escape(color_title),
            marker={"size": point_size(n), "color": np.where(np.isfinite(c), c, np.nan),
                    "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": {"text": html.escape(color_title)}},
                    "cmin": float(low), "cmax": float(max(high, low + 1e-9)),
                    "opacity": point_opacity(n)},
            hovertext=hover, hoverinfo="text",
        )
    )  # fmt: skip
    fig.update_xaxes(title_text=html.escape(axis_titles[0]), range=robust_range(coords[:, 0]),
                     zeroline=False)  # fmt: skip
    fig.update_yaxes(title_text=html.escape(axis_titles[1]), range=robust_range(coords[:, 1]),
                     zeroline=False, scaleanchor="x")  # fmt: skip
    fig = _layout(fig, html.escape(title))
    fig.update_layout(height=560, dragmode="pan", uirevision="keep")
    return fig


# -- projections ----------------------------------------------------------------------------

# 55 colours, no two alike (each at least 50 apart in RGB), no grey (grey means "no value" or
# "other"): the D3 ten first, then plotly's Dark24, Alphabet, Light24 and ColorBrewer sets.
_PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #bcbd22 #17becf #2e91e5 "
    "#fb0d0d #da16ff #b68100 #750d86 #eb663b #511cfb #00a08b #fb00d1 #fc0080 #b2828d "
    "#6c7c32 #862a16 #a777f1 #620042 #1616a7 #0d2a63 #af0038 #782ab6 #1c8356 #16ff32 "
    "#f7e1a0 #dea0fd #f8a19f #1cffce #2ed9ff #b10da1 #fbe426 #6a76fc #dc587d #6e899c "
    "#86ce00 #e48f72 #8dd3c7 #bebada #b3de69 #fccde5 #ccebc5 #f2b701 #80ba5a #52bca3 "
    "#5f4690 #aa4499 #999933 #882255 #54a24b"
).split()
# Up to this many values each get their own colour; beyond, the largest MAX_CATEGORIES - 1
# do and the rest share one grey "other".
MAX_CATEGORIES = len(_PALETTE)
# A legend entry longer than this is cut (the hover has the whole value).
LEGEND_CHARS = 28
# Neighbours of a clicked point: rings and lines in this colour.
FOCUS_COLOUR = "#111111"


def point_size(n: int) -> float:
    """Marker size that keeps dense layouts readable."""
    return 6.0 if n <= 2_000 else 4.0 if n <= 20_000 else 2.5 if n <= 200_000 else 1.5


def point_opacity(n: int) -> float:
    """Marker opacity that lets density show through where points overlap."""
    return 0.85 if n <= 5_000 else 0.6 if n <= 100_000 else 0.35


def robust_range(values: np.ndarray, *, share: float = 0.005, pad: float = 0.04) -> list[float]:
    """An axis range holding the bulk of ``values``: the ``share`` and ``1 - share``
    quantiles, widened by ``pad`` of their span on each side. A few far outliers no longer
    shrink everything else into a corner; zooming out (or a double click) still shows them."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [-1.0, 1.0]
    low, high = np.quantile(v, [share, 1.0 - share]) if v.size >= 200 else (v.min(), v.max())
    span = float(high - low) or 1.0
    return [float(low - pad * span), float(high + pad * span)]


def _short(name: str) -> str:
    return name if len(name) <= LEGEND_CHARS else name[: LEGEND_CHARS - 1] + "…"


def category_groups(values: Any) -> tuple[list[str], np.ndarray]:
    """Names and per-point group codes for a categorical colour.

    Up to :data:`MAX_CATEGORIES` values keep their natural order; beyond that the largest
    ``MAX_CATEGORIES - 1`` groups come first and the rest are merged into "other".
    """
    codes, uniques = _factorize(values)
    if len(uniques) > MAX_CATEGORIES:
        counts = np.bincount(codes, minlength=len(uniques))
        keep = np.argsort(-counts, kind="stable")[: MAX_CATEGORIES - 1]
    else:  # few values: in their natural order (numbers as numbers: 2 before 10)
        keep = np.asarray(sorted(range(len(uniques)), key=lambda i: _natural(uniques[i])))
    remap = np.full(len(uniques), len(keep), dtype=np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    names = [str(uniques[i]) for i in keep]
    if len(keep) < len(uniques):
        names.append(f"other ({len(uniques) - len(keep)} values)")
    return names, remap[codes]


def _natural(value: Any) -> tuple[int, float, str]:
    if value == MISSING:
        return (2, 0.0, "")  # not a value: after every real one
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        pass
    text = str(value)
    head = text.split(" ", 1)[0]
    if head.isascii() and head.isdigit():  # "2 · parser" before "10 · socket"
        return (1, float(head), text)
    return (1, float("inf"), text)


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(as_text(values, missing=MISSING)), sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


@dataclass(frozen=True)
class Highlight:
    """Rows marked on the map (search matches): a legend name and a colour."""

    name: str  # user text: escaped when drawn
    rows: np.ndarray
    colour: str


@dataclass(frozen=True)
class MapLabel:
    """Text drawn on the map at a place of the layout (a cluster's name at its centre)."""

    x: float
    y: float
    z: float
    text: str  # user text: escaped when drawn
    size: int = 12


def projection_figure(
    coords: np.ndarray,
    *,
    color: Any = None,
    categorical: bool = False,
    color_title: str = "",
    hover: Any = None,
    selected: np.ndarray | None = None,
    title: str = "",
    height: int = 600,
    size: float | None = None,
    opacity: float | None = None,
    labels: Sequence[MapLabel] = (),
    focus: int | None = None,
    neighbours: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    highlights: Sequence[Highlight] = (),
    density: bool = False,
) -> go.Figure:
    """A WebGL scatter of a 2-D (``Scattergl``) or 3-D (``Scatter3d``) layout.

    Every point carries its row number as ``customdata``, so a selection maps back to rows
    whatever the traces are. Arrays stay numpy (plotly sends them as typed binary arrays, not
    JSON lists), so a million points stay a compact payload. A 2-D map opens on the bulk of
    its points (:func:`robust_range`).

    Parameters
    ----------
    coords : float32 ndarray of shape (n, 2) or (n, 3)
    color : array of n values, optional
        Categorical (one trace and legend entry per value, :func:`category_groups`) or
        continuous (one trace on a Viridis scale).
    hover : sequence of n str, optional
        Already-escaped hover labels (plotly renders a subset of HTML in them); without them
        the hover shows the row number.
    selected : int ndarray, optional
        Rows to highlight (linked selection); the others are dimmed.
    size, opacity : float, optional
        The markers' size and opacity (default: :func:`point_size`, :func:`point_opacity`).
    labels : MapLabel sequence
        Text drawn over the points (cluster names), on a light box so it reads on any colour.
    focus, neighbours : int and int ndarray, optional
        A clicked point and its nearest neighbours: rings around them and lines from it.
    keep : bool ndarray of shape (n,), optional
        The rows a filter keeps: the others are drawn small and light grey beneath, and
        cannot be selected.
    highlights : Highlight sequence
        Groups of rows marked on top (search matches), each in its own colour.
    density : bool
        On a 2-D map, a shaded density of the points (of those ``keep`` keeps) beneath them,
        so a million points read as structure; the points stay selectable on top.
    """
    coords = np.asarray(coords, dtype=np.float32)
    n, dims = coords.shape
    rows = np.arange(n, dtype=np.int32)
    # plotly renders a subset of HTML (links, tags) in titles and legend entries: user text
    # (dataset names, metadata values, column names) is shown escaped, as text.
    title, color_title = html.escape(title), html.escape(color_title)
    size = point_size(n) if size is None else float(size)
    opacity = point_opacity(n) if opacity is None else float(opacity)
    chosen = None
    if selected is not None:
        chosen = np.zeros(n, dtype=bool)
        chosen[np.asarray(selected, dtype=np.int64)] = True

    def trace(idx: np.ndarray, marker: dict[str, Any], name: str, legend: bool) -> Any:
        if keep is not None:
            idx = idx[keep[idx]]
        common: dict[str, Any] = {
            "mode": "markers",
            "name": name,
            "showlegend": legend,
            "customdata": rows[idx],
        }
        if hover is not None:
            common["hovertext"] = np.asarray(hover, dtype=object)[idx]
            common["hoverinfo"] = "text"
        else:
            common["hovertemplate"] = "row %{customdata}<extra></extra>"
        if dims == 3:
            marker = {**marker, "size": marker.get("size", size) * 0.8}
            return go.Scatter3d(
                x=coords[idx, 0], y=coords[idx, 1], z=coords[idx, 2], marker=marker, **common
            )
        t = go.Scattergl(x=coords[idx, 0], y=coords[idx, 1], marker=marker, **common)
        if chosen is not None:
            t.selectedpoints = np.flatnonzero(chosen[idx])
            t.selected = {"marker": {"opacity": 1.0}}
            t.unselected = {"marker": {"opacity": 0.15}}
        return t

    traces = []
    if color is None:
        traces.append(
            trace(rows, {"size": size, "color": "#1f77b4", "opacity": opacity}, "", False)
        )
    elif categorical:
        names, codes = category_groups(color)
        under = []  # grey groups (missing values, "other"): drawn beneath, listed last
        for g, name in enumerate(names):
            idx = np.flatnonzero(codes == g)
            if keep is not None and not keep[idx].any():
                continue  # a value the filter leaves out: not in the legend either
            grey = name == MISSING or name.startswith("other (")  # not one real value
            colour = "#c7c7c7" if grey else _PALETTE[g % len(_PALETTE)]
            t = trace(
                idx, {"size": size, "color": colour, "opacity": opacity},
                html.escape(_short(name)), True,
            )  # fmt: skip
            if grey:
                t.legendrank = 1001  # plotly's default is 1000: after the real values
                under.append(t)
            else:
                traces.append(t)
        traces = under + traces
    else:
        c = np.asarray(color, dtype=np.float64)
        missing = ~np.isfinite(c)
        if missing.any():  # points without a value: a faint grey layer underneath
            traces.append(
                trace(np.flatnonzero(missing), {"size": size, "color": "#d0d0d0",
                      "opacity": 0.35}, "no value", True)
            )  # fmt: skip
            rows_coloured: np.ndarray = np.flatnonzero(~missing)
        else:
            rows_coloured = rows
        finite = c[np.isfinite(c)]
        low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        marker: dict[str, Any] = {
            "size": size,
            "color": np.where(np.isfinite(c), c, np.nan).astype(np.float32),
            "colorscale": "Viridis",
            "cmin": float(low),
            "cmax": float(max(high, low + 1e-9)),
            "showscale": True,
            "colorbar": {"title": {"text": color_title}, "x": 1.02, "thickness": 14},
            "opacity": opacity,
        }
        if keep is not None:  # the colours must follow the rows the trace keeps
            rows_coloured = rows_coloured[keep[rows_coloured]]
        marker["color"] = marker["color"][rows_coloured]
        traces.append(trace(rows_coloured, marker, color_title, False))
    if keep is not None and not keep.all():  # filtered out: grey, beneath, not selectable
        out = np.flatnonzero(~keep)
        grey = go.Scattergl if dims == 2 else go.Scatter3d
        axes = {"x": coords[out, 0], "y": coords[out, 1]}
        if dims == 3:
            axes["z"] = coords[out, 2]
        traces.insert(0, grey(
            **axes, mode="markers", name=f"filtered out ({out.size:,})", hoverinfo="skip",
            marker={"size": max(size * 0.7, 1.0), "color": "#dddddd", "opacity": 0.5},
            legendrank=1002,
        ))  # fmt: skip
    everything = np.ones(n, dtype=bool) if keep is None else keep
    for mark in highlights:
        rows_marked = np.asarray(mark.rows, dtype=np.int64)
        rows_marked = rows_marked[(rows_marked >= 0) & (rows_marked < n)]
        rows_marked = rows_marked[everything[rows_marked]]
        marker = {"size": max(size * 1.8, 7.0), "color": mark.colour, "opacity": 1.0,
                  "line": {"width": 1, "color": "#222222"}}  # fmt: skip
        t = trace(rows_marked, marker, html.escape(_short(mark.name)), True)
        if isinstance(t, go.Scattergl):
            t.selectedpoints = None
        traces.append(t)
    if focus is not None and 0 <= focus < n:
        traces.extend(_focus_traces(coords, int(focus), neighbours, size, trace))
    if density and dims == 2:
        traces.insert(0, density_trace(coords if keep is None else coords[keep]))
    fig = go.Figure(traces)
    fig = _layout(fig, title)
    legend = {
        "orientation": "v", "y": 1, "x": 1.0, "xanchor": "left", "itemsizing": "constant",
        "font": {"size": 11}, "tracegroupgap": 0,
    }  # fmt: skip
    if color is not None and not categorical:  # only "no value": keep it clear of the colour bar
        legend = {"orientation": "h", "y": -0.02, "x": 0, "itemsizing": "constant"}
    fig.update_layout(
        height=height,
        # pan: a click selects a point (Streamlit makes clicks select only outside the lasso
        # and box tools, which the mode bar offers)
        dragmode="pan" if dims == 2 else "orbit",
        legend=legend,
        uirevision="keep",  # zoom and pan survive reruns
        margin={"l": 4, "r": 4, "t": 36, "b": 4},
        hoverlabel={"namelength": -1},
    )
    if dims == 2:
        fig.update_xaxes(
            showticklabels=False, title_text="", showgrid=False, zeroline=False,
            range=robust_range(coords[:, 0]),
        )  # fmt: skip
        fig.update_yaxes(
            showticklabels=False, title_text="", showgrid=False, zeroline=False,
            scaleanchor="x", range=robust_range(coords[:, 1]),
        )  # fmt: skip
        for label in labels:
            fig.add_annotation(
                x=label.x, y=label.y, text=html.escape(label.text), showarrow=False,
                font={"size": label.size, "color": "#111111"},
                bgcolor="rgba(255,255,255,0.72)", borderpad=2,
            )  # fmt: skip
        style.drop_overlapping_annotations(fig)  # a name over another: the legend has it
    else:
        axis = {"showticklabels": False, "title": ""}
        scene: dict[str, Any] = {"xaxis": axis, "yaxis": axis, "zaxis": axis}
        if labels:
            scene["annotations"] = [
                {
                    "x": lb.x, "y": lb.y, "z": lb.z, "text": html.escape(lb.text),
                    "showarrow": False, "font": {"size": lb.size, "color": "#111111"},
                    "bgcolor": "rgba(255,255,255,0.72)",
                }
                for lb in labels
            ]  # fmt: skip
        fig.update_layout(scene=scene)
    return fig


DENSITY_BINS = 180


def density_trace(coords: np.ndarray, *, bins: int = DENSITY_BINS) -> go.Heatmap:
    """Where the points of a 2-D layout crowd: a smoothed 2-D histogram over the map's
    opening range (log counts, white where empty), a small fixed payload at any n."""
    from scipy.ndimage import gaussian_filter

    xr, yr = robust_range(coords[:, 0]), robust_range(coords[:, 1])
    counts, xe, ye = np.histogram2d(coords[:, 0], coords[:, 1], bins=bins, range=[xr, yr])
    shade = np.log1p(gaussian_filter(counts, sigma=1.2)).T  # rows: y, as a heatmap wants
    shade[shade < 0.05 * max(float(shade.max()), 1e-9)] = np.nan  # empty: no colour
    return go.Heatmap(
        x=(xe[:-1] + xe[1:]) / 2, y=(ye[:-1] + ye[1:]) / 2, z=shade.astype(np.float32),
        colorscale="Blues", showscale=False, hoverinfo="skip", zsmooth="best", opacity=0.85,
        name="density", showlegend=False,
    )  # fmt: skip


def _focus_traces(
    coords: np.ndarray, focus: int, neighbours: np.ndarray | None, size: float, trace: Any
) -> list[Any]:
    """Lines from a clicked point to its neighbours, rings around them and around it."""
    near = np.asarray([] if neighbours is None else neighbours, dtype=np.int64)
    near = near[(near >= 0) & (near < coords.shape[0]) & (near != focus)]
    out = []
    ring = max(size * 2.2, 9.0)
    if near.size:
        # One trace of segments focus -> neighbour, separated by NaN (plotly breaks lines there).
        seg = np.full((near.size * 3, coords.shape[1]), np.nan, dtype=np.float32)
        seg[0::3] = coords[focus]
        seg[1::3] = coords[near]
        line = {"color": FOCUS_COLOUR, "width": 1}
        if coords.shape[1] == 3:
            out.append(go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines",
                                    line=line, hoverinfo="skip", showlegend=False,
                                    name="neighbour links"))  # fmt: skip
        else:
            out.append(go.Scattergl(x=seg[:, 0], y=seg[:, 1], mode="lines", line=line,
                                    hoverinfo="skip", showlegend=False,
                                    name="neighbour links"))  # fmt: skip
        marker = {"size": ring, "symbol": "circle-open", "color": FOCUS_COLOUR,
                  "line": {"width": 2}, "opacity": 1.0}  # fmt: skip
        out.append(trace(near, marker, f"{near.size} nearest neighbours", True))
    marker = {"size": ring * 1.4, "symbol": "circle-open", "color": "#d62728",
              "line": {"width": 3}, "opacity": 1.0}  # fmt: skip
    out.append(trace(np.array([focus]), marker, "clicked point", True))
    for t in out:  # always fully drawn, whatever is selected
        if isinstance(t, go.Scattergl):
            t.selectedpoints = None
    return out


SELECTED_COLOUR = "#1f77b4"
WHOLE_COLOUR = "#d3d3d3"


def metadata_bars(
    names: Sequence[str], whole: np.ndarray, selected: np.ndarray | None, *, title: str
) -> go.Figure:
    """A column's most common values: how many items have each (grey), and how many of the
    selected ones (blue, on top). Bars carry their position as ``customdata`` (a click maps
    back to the value)."""
    shown = [html.escape(_short(str(v))) for v in names]
    positions = np.arange(len(names))
    fig = go.Figure(
        go.Bar(
            y=shown, x=whole, orientation="h", name="all", marker_color=WHOLE_COLOUR,
            customdata=positions, hovertemplate="%{y}: %{x:,} items<extra></extra>",
        )
    )  # fmt: skip
    if selected is not None:
        fig.add_trace(
            go.Bar(
                y=shown, x=selected, orientation="h", name="selected",
                marker_color=SELECTED_COLOUR, customdata=positions,
                hovertemplate="%{y}: %{x:,} selected<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(barmode="overlay", bargap=0.15)
    fig.update_yaxes(autorange="reversed", type="category")
    return _chart_layout(fig, title, height=max(160, 22 * len(names) + 60))


def metadata_histogram(
    edges: np.ndarray, whole: np.ndarray, selected: np.ndarray | None, *, title: str
) -> go.Figure:
    """A number column's histogram (grey) with the selected items' on top (blue); bars carry
    their bin's position as ``customdata``."""
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    positions = np.arange(len(centres))
    fig = go.Figure(
        go.Bar(
            x=centres, y=whole, width=widths, name="all", marker_color=WHOLE_COLOUR,
            customdata=positions, hovertemplate=f"%{{x:{style.SIG}}}: %{{y:,}} items<extra></extra>",
        )
    )  # fmt: skip
    if selected is not None:
        fig.add_trace(
            go.Bar(
                x=centres, y=selected, width=widths, name="selected",
                marker_color=SELECTED_COLOUR, customdata=positions,
                hovertemplate=f"%{{x:{style.SIG}}}: %{{y:,}} selected<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(barmode="overlay", bargap=0.02)
    return _chart_layout(fig, title, height=220)


def _chart_layout(fig: go.Figure, title: str, *, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": html.escape(title), "font": {"size": 13}},
        margin={"l": 4, "r": 4, "t": 30, "b": 4},
        height=height,
        showlegend=False,
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def selected_rows(fig: go.Figure, selection: Any) -> np.ndarray:
    """Rows picked in a streamlit plotly selection event (``{"selection": {"points": ...}}``)."""
    points = ((selection or {}).get("selection") or {}).get("points") or []
    rows = []
    for p in points:
        curve, index = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if curve is None or index is None or curve >= len(fig.data):
            continue
        custom = fig.data[curve].customdata
        if custom is not None and 0 <= index < len(custom):
            rows.append(int(custom[index]))
    return np.unique(np.asarray(rows, dtype=np.int64))


def shared_neighbours_figure(histogram: np.ndarray, k: int, chance: float) -> go.Figure:
    """How many items keep 0..k of their k neighbours in the other space (bars)."""
    counts = np.asarray(histogram)
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(counts)), y=counts, marker_color="#1f77b4", name="items",
            hovertemplate=f"%{{x}} of {k} neighbours kept: %{{y:,}} items<extra></extra>",
        )
    )  # fmt: skip
    fig.add_vline(
        x=chance * k, line_dash="dot", line_color="#d62728",
        annotation_text=f"chance ({style.fmt_num(chance * k)})", annotation_position="top",
        annotation_font_size=style.LABEL_FONT,
    )  # fmt: skip
    fig = _layout(fig, f"Neighbours kept, out of {k}")
    fig.update_xaxes(title_text=f"shared neighbours (of {k})", dtick=1 if k <= 20 else None)
    fig.update_yaxes(title_text="items")
    fig.update_layout(height=320, showlegend=False)
    return fig


def pareto_front(x: Any, y: Any) -> np.ndarray:
    """Positions of the points on the upper-left envelope of (x, y): each has a higher y
    than every point with an x no larger (the best recall for the bytes), by ascending x."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    ok = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    order = ok[np.lexsort((-ys[ok], xs[ok]))]  # by x, the best y first among equal x
    front, best = [], -np.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return np.asarray(front, dtype=np.int64)


def pareto_figure(frame: Any, *, k: int, rescored: bool = False) -> go.Figure:
    """recall@k against bytes per vector (log axis, labelled at the decades), one labelled
    curve per codec family, with 95 % intervals as error bars and the Pareto front over all
    codecs (a dashed line: the best recall any codec reaches within the bytes). Labels of
    points drawn together are joined ("int8 · lvq:8"); a label with no room is left to the
    hover.

    ``frame`` has the columns of :meth:`core.compression.CompressionReport.rows`: ``codec``,
    ``family``, ``bytes_per_vector``, ``recall@{k}`` and ``recall@{k}_rescored``, their
    ``_ci`` intervals, ``rescored_with``, ``rerank_bytes_per_vector`` and
    ``bytes_per_vector_rescored``. Re-ranked points sit at ``bytes_per_vector_rescored``:
    two-stage search holds the code and the representation that re-ranks (float32: 4·d), which
    hover and legend name.
    """
    column = f"recall@{k}_rescored" if rescored else f"recall@{k}"
    x_column = "bytes_per_vector_rescored" if rescored else "bytes_per_vector"
    fig = go.Figure()
    lows: list[float] = []  # the lowest interval ends: where the y axis opens
    for g, (family, part) in enumerate(frame.groupby("family", sort=False)):
        part = part.sort_values(x_column)
        y = part[column].to_numpy(dtype=float)
        lo, hi = y.copy(), y.copy()
        for i, ci in enumerate(part[column + "_ci"]):
            if ci is not None and ci[0] is not None and ci[1] is not None:
                lo[i], hi[i] = ci
        lows.extend(lo)
        name = html.escape(str(family))
        codecs = [html.escape(str(c)) for c in part["codec"]]
        custom: list[list[Any]] = [
            [lo[i], hi[i], int(row["bytes_per_vector"]), html.escape(str(row["rescored_with"])),
             int(row["rerank_bytes_per_vector"]),
             f"<br>first stage alone: {html.escape(str(row['first_stage']))}"
             if isinstance(row.get("first_stage"), str) else "", codecs[i]]
            for i, (_, row) in enumerate(part.iterrows())
        ]  # fmt: skip
        hover = "%{customdata[6]}<br>%{x:,} bytes/vector"
        if not rescored:
            hover += "%{customdata[5]}"
        else:
            withs = sorted({str(w) for w in part["rescored_with"]})
            name += " + " + html.escape(" / ".join(withs))  # the legend names what re-ranks
            hover += " = %{customdata[2]:,} code + %{customdata[4]:,} re-ranking " \
                     "(%{customdata[3]})"  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=part[x_column], y=y, mode="lines+markers+text", name=name,
                textposition="top center", text=codecs, textfont={"size": style.LABEL_FONT},
                marker={"size": 9, "color": _PALETTE[g % len(_PALETTE)]},
                error_y={"type": "data", "symmetric": False, "array": hi - y,
                         "arrayminus": y - lo, "thickness": 1, "width": 3},
                customdata=custom,
                hovertemplate=hover + "<br>" + column + " %{y:.3f} (95 % CI "
                "%{customdata[0]:.3f}–%{customdata[1]:.3f})<extra></extra>",
            )
        )  # fmt: skip
    xs, ys = frame[x_column].to_numpy(dtype=float), frame[column].to_numpy(dtype=float)
    front = pareto_front(xs, ys)
    if front.size:
        names = [html.escape(str(c)) for c in frame["codec"].to_numpy()[front]]
        fig.add_trace(
            go.Scatter(
                x=xs[front], y=ys[front], mode="lines", name="Pareto front",
                line={"shape": "hv", "dash": "dash", "color": "#555555", "width": 1.5},
                customdata=names, legendrank=2000,
                hovertemplate="Pareto front: %{customdata}<br>%{x:,} bytes/vector, "
                + column + " %{y:.3f}<extra></extra>",
            )
        )  # fmt: skip
    if rescored:
        title_x = "bytes per vector held: code + re-ranking (log)"
        title = f"recall@{k} re-ranked against the bytes two-stage search holds"
    else:
        title_x = "bytes per vector (log)"
        title = f"What each codec keeps: {column} against size"
    style.log_axis(fig, xs, title_text=title_x)
    # Opened on the recalls measured (down to the lowest interval), not on 0: the codecs
    # spread out and their names have room. The axis is labelled, and zooming out shows 0.
    bottom = float(np.nanmin(lows)) if np.isfinite(lows).any() else 0.0
    step = 0.05 if bottom > 0.8 else 0.1
    style.linear_axis(
        fig, max(0.0, math.floor((bottom - 0.02) / step) * step), 1.0, count=6, extend=False,
        headroom=0.08, title_text=column + (" (re-ranked)" if rescored else ""),
    )  # fmt: skip
    fig = _layout(fig, title)
    fig.update_layout(height=460, legend={"orientation": "v", "x": 1.01, "y": 1})
    on_front = {(float(xs[i]), float(ys[i])) for i in front}

    def first(trace: int, point: int) -> float:  # the front's labels are placed first
        t = fig.data[trace]
        return 0.0 if (float(t.x[point]), float(t.y[point])) in on_front else 1.0

    return style.place_labels(fig, priority=first)
