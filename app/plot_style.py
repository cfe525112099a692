"""The plotting style guide: one look for every figure of :mod:`app.figures` (no streamlit).

- **Numbers**: :func:`fmt_num` writes 3 significant digits (whole numbers whole, with
  thousands separators), more only where rounding would change the whole part (0.9996, not
  1); :func:`fmt_nums` also adds digits where two different values would otherwise read
  alike. :data:`SIG` is the same rule for plotly hover templates
  (``"%{y:" + SIG + "}"``).
- **Log axes** (:func:`log_axis`) are labelled at the decades (1, 10, 100, ...) or at the
  plotted values, never at plotly's minor ticks ("2 3 4 5 6 7 8 9"); the minor ticks keep a
  faint unlabelled grid.
- **Linear axes** (:func:`linear_axis`), secondary ones above all, carry ticks at round values
  (:func:`nice_ticks`), never the 0.228 / 0.507 / 0.786 that syncing with the other axis
  gives; a secondary axis draws no grid of its own.
- **Point labels** (:func:`place_labels`): each labelled point gets the side where its text
  overlaps no other label, no marker and no line and stays inside the plot, else a callout
  (the text further out, a thin line to its point); points drawn on top of each other share
  one label ("int8 · lvq:8"); a label with no room at all is left to the hover.
- **Hover on every mark**: every trace has a hover template (:func:`hover_missing` lists the
  ones that do not).

Where a text lands is estimated in pixels from the figure itself: its design width
(:func:`set_width`; Streamlit stretches a chart to its column, and the design width is the
narrowest column it is drawn in), height, margins, legend and colour bar, the axes' domains and
(explicit) ranges, and the font sizes (:func:`plot_area`, :func:`label_boxes`). The label
placement and the tests that check it use this one estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "FULL_WIDTH",
    "HALF_WIDTH",
    "LABEL_FONT",
    "SIG",
    "Box",
    "decade_ticks",
    "drop_overlapping_annotations",
    "fmt_num",
    "fmt_nums",
    "hover_missing",
    "label_boxes",
    "linear_axis",
    "log_axis",
    "nice_ticks",
    "overlapping_labels",
    "place_labels",
    "plot_area",
    "set_width",
    "text_size",
]

# Design widths (pixels) of a chart across the main area and of one in half of it: the
# narrowest they are drawn at (a 1,280-pixel window with the sidebar open). Labels placed
# apart at this width stay apart at any wider one.
FULL_WIDTH = 900
HALF_WIDTH = 440
# Font sizes (pixels) of point labels, tick labels and axis titles.
LABEL_FONT = 11
TICK_FONT = 12
TITLE_FONT = 14
# Width of one character in ems, and of a line: generous for the sans-serif fonts plotly and
# Streamlit use, so an estimated box holds the real text.
CHAR_EM = 0.6
LINE_EM = 1.3
# The d3 format of a number in a hover template: 3 significant digits, trailing zeros
# dropped, thousands separated (0.0825, 0.199, 12,300).
SIG = ",.3~r"

_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&[#a-zA-Z0-9]+;")

# -- numbers -------------------------------------------------------------------------------


def fmt_num(value: Any, sig: int = 3) -> str:
    """A number as a reader wants it: ``sig`` significant digits, trailing zeros dropped,
    whole numbers (and anything of ``sig`` or more integer digits) whole with thousands
    separators; None, NaN and infinities as a dash; very small values in e-notation."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "—"
    if isinstance(value, (int, np.integer)) or (v.is_integer() and abs(v) >= 1):
        return f"{int(round(v)):,}"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude >= sig - 1:
        return f"{int(round(v)):,}"
    if magnitude < -4:
        mantissa = f"{v:.{sig - 1}e}"
        head, exp = mantissa.split("e")
        head = head.rstrip("0").rstrip(".") if "." in head else head
        return f"{head}e{int(exp)}"
    text = f"{v:,.{sig - 1 - magnitude}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    if sig < 6 and "." not in text and math.floor(abs(v)) != abs(int(text.replace(",", ""))):
        return fmt_num(v, sig + 1)  # 0.9996 is not 1: as many digits as say so
    return text


def fmt_nums(values: Iterable[Any], sig: int = 3, max_sig: int = 6) -> list[str]:
    """:func:`fmt_num` of each value, with more digits (up to ``max_sig``) only where two
    different values would print alike (0.9981 beside 0.9984: "0.9981" and "0.9984")."""
    vals = list(values)
    for s in range(sig, max_sig + 1):
        out = [fmt_num(v, s) for v in vals]
        seen: dict[str, float] = {}
        clash = False
        for v, text in zip(vals, out, strict=True):
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if text in seen and seen[text] != f:
                clash = True
                break
            seen[text] = f
        if not clash:
            return out
    return [fmt_num(v, max_sig) for v in vals]


# -- axes ----------------------------------------------------------------------------------


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from ``low`` to ``high``, each inside the closed range: a step of 1,
    2 or 5 (2.5 only when clearly better) times a power of ten, giving the number of ticks
    nearest ``count``."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    mag = 10.0 ** math.floor(math.log10((high - low) / max(count - 1, 1)))
    best: tuple[float, float] | None = None
    for scale in (mag / 10, mag, mag * 10):
        for m in (1, 2, 2.5, 5):
            step = m * scale
            n = math.floor(high / step + 1e-9) - math.ceil(low / step - 1e-9) + 1
            score = abs(n - count) + (1.01 if m == 2.5 else 0.0) + (9.0 if n < 2 else 0.0)
            if best is None or score < best[0]:
                best = (score, step)
    assert best is not None
    step = best[1]
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


def _clean(value: float) -> float:
    return float(f"{value:.12g}")


def _step(ticks: Sequence[float]) -> float:
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


def decade_ticks(low: float, high: float) -> list[float]:
    """The powers of ten from ``low`` to ``high`` (both > 0)."""
    if not (low > 0 and high > 0):
        return []
    a, b = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    return [10.0**e for e in range(a, b + 1)]


def _decade_texts(ticks: Sequence[float]) -> list[str]:
    exps = [round(math.log10(t)) for t in ticks]
    if any(e < -3 or e > 5 for e in exps):  # one notation for the whole axis
        return ["1" if e == 0 else f"10<sup>{e}</sup>" for e in exps]
    return [f"{t:,.0f}" if e >= 0 else f"{t:.{-e}f}" for t, e in zip(ticks, exps, strict=True)]


def _update_axis(fig: go.Figure, axis: str, secondary_y: bool | None, **kw: Any) -> None:
    if axis == "x":
        fig.update_xaxes(**kw)
    elif secondary_y is None:
        fig.update_yaxes(**kw)
    else:
        fig.update_yaxes(secondary_y=secondary_y, **kw)


def log_axis(
    fig: go.Figure,
    values: Any,
    *,
    axis: str = "x",
    secondary_y: bool | None = None,
    at_values: bool = False,
    low: float | None = None,
    high: float | None = None,
    pad: float = 0.06,
    **kw: Any,
) -> None:
    """Make an axis logarithmic over ``values`` (the positive values plotted on it), labelled
    at the decades in view, or at the plotted values when ``at_values`` or when fewer than two
    decades are in view; plotly's minor ticks stay unlabelled. The range is set explicitly
    (from ``low``/``high`` when given, else the values, widened by ``pad`` of its span in
    decades). Other keywords go to the axis (``title_text``...)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    lo = float(low) if low is not None else float(v.min()) if v.size else 1.0
    hi = float(high) if high is not None else float(v.max()) if v.size else 10.0
    lo, hi = min(lo, hi), max(lo, hi)
    span = max(math.log10(hi) - math.log10(lo), 0.3)
    r0, r1 = math.log10(lo) - pad * span, math.log10(hi) + pad * span
    decades = decade_ticks(10**r0, 10**r1)
    minor: dict[str, Any] = {}
    if at_values or len(decades) < 2:
        ticks = sorted({float(x) for x in v}) if v.size else decades
        ticks = _thin_log(ticks, r1 - r0, vertical=axis != "x")
        text = fmt_nums(ticks)
    else:
        ticks, text = decades, _decade_texts(decades)
        between = [m * 10.0**e for e in range(math.floor(r0), math.ceil(r1) + 1)
                   for m in range(2, 10) if r0 <= e + math.log10(m) <= r1]  # fmt: skip
        minor = {"tickmode": "array", "tickvals": between, "ticks": "", "showgrid": True,
                 "gridcolor": "#f4f6fa"}  # fmt: skip
    _update_axis(
        fig, axis, secondary_y, type="log", range=[r0, r1], tickmode="array",
        tickvals=ticks, ticktext=text, minor=minor, **kw,
    )  # fmt: skip


def _thin_log(
    ticks: list[float], span: float, *, vertical: bool, pixels: float = 560
) -> list[float]:
    """Plotted values as ticks, each label clear of the one before on an axis of about
    ``pixels`` (the plot width of a full-width chart at its design width)."""
    out: list[float] = []
    for t in ticks:
        room = TICK_FONT * LINE_EM if vertical else len(fmt_num(t)) * TICK_FONT * CHAR_EM + 8
        if not out or (math.log10(t) - math.log10(out[-1])) / span * pixels >= room:
            out.append(t)
    return out


def linear_axis(
    fig: go.Figure,
    low: float,
    high: float,
    *,
    axis: str = "y",
    secondary_y: bool | None = None,
    count: int = 5,
    extend: bool = True,
    percent: bool = False,
    grid: bool = True,
    headroom: float = 0.0,
    **kw: Any,
) -> None:
    """A linear axis from ``low`` to ``high`` (widened to the round ticks around them when
    ``extend``), ticks at round values written by :func:`fmt_num` (as percentages when
    ``percent``); ``headroom``: this share of the span added above ``high``, without ticks
    (room for labels above a recall of 1, which has no 1.02); ``grid=False`` for a secondary
    axis (the primary's grid serves both)."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        high = low + (abs(low) or 1.0)
    ticks = nice_ticks(low, high, count)
    if extend:
        step = _step(ticks)
        low = min(low, _clean(math.floor(low / step + 1e-9) * step))
        high = max(high, _clean(math.ceil(high / step - 1e-9) * step))
        ticks = nice_ticks(low, high, count)
    text = [fmt_num(t * 100) + " %" for t in ticks] if percent else fmt_nums(ticks)
    high += headroom * (high - low)
    _update_axis(
        fig, axis, secondary_y, type="linear", range=[low, high], tickmode="array",
        tickvals=ticks, ticktext=text, showgrid=grid, **kw,
    )  # fmt: skip


# -- where things land, in pixels ---------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A rectangle in figure pixels (x to the right, y downwards)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def overlaps(self, other: Box, gap: float = 0.0) -> bool:
        """Whether the two boxes share area (``gap``: closer than this counts too)."""
        return (
            self.x0 < other.x1 + gap
            and other.x0 < self.x1 + gap
            and self.y0 < other.y1 + gap
            and other.y0 < self.y1 + gap
        )

    def inside(self, other: Box) -> bool:
        return (
            self.x0 >= other.x0 - 0.5
            and self.x1 <= other.x1 + 0.5
            and self.y0 >= other.y0 - 0.5
            and self.y1 <= other.y1 + 0.5
        )


def set_width(fig: go.Figure, width: float) -> go.Figure:
    """Record the figure's design width (see the module's docstring)."""
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["design_width"] = float(width)
    fig.update_layout(meta=meta)
    return fig


def design_width(fig: go.Figure) -> float:
    meta = fig.layout.meta
    if isinstance(meta, dict) and meta.get("design_width"):
        return float(meta["design_width"])
    return float(fig.layout.width or FULL_WIDTH)


def text_size(text: str, size: float, angle: float = 0.0) -> tuple[float, float]:
    """Estimated width and height in pixels of ``text`` (plotly's HTML subset: ``<br>``
    breaks lines, other tags take no room, an entity is one character) at font ``size``."""
    lines = re.split(r"<br\s*/?>", str(text), flags=re.IGNORECASE)
    chars = max((len(_ENTITY.sub("x", _TAG.sub("", line))) for line in lines), default=0)
    w, h = chars * size * CHAR_EM, len(lines) * size * LINE_EM
    return (h, w) if abs(abs(angle) - 90) < 1 else (w, h)


def _chars(texts: Iterable[Any]) -> int:
    return max((len(_ENTITY.sub("x", _TAG.sub("", str(t)))) for t in texts), default=0)


def _axis_objs(fig: go.Figure, letter: str) -> list[tuple[str, Any]]:
    """(name, axis) of the layout's x or y axes: ("x", xaxis), ("x2", xaxis2), ..."""
    out = []
    for key in fig.layout.to_plotly_json():
        if re.fullmatch(f"{letter}axis[0-9]*", key):
            out.append((letter + key[5:], fig.layout[key]))
    return out or [(letter, getattr(fig.layout, f"{letter}axis"))]


def _tick_chars(axis: Any) -> int:
    if axis.ticktext:
        return _chars(axis.ticktext)
    if axis.tickvals:
        return _chars(fmt_num(v) for v in axis.tickvals)
    return 6


def _axis_room(axis: Any, vertical: bool) -> float:
    """Pixels an axis's tick labels and title take beside the plot."""
    room = 0.0
    if axis.showticklabels is not False:
        room += (_tick_chars(axis) * TICK_FONT * CHAR_EM if vertical else TICK_FONT * LINE_EM) + 8
    title = axis.title.text if axis.title is not None else None
    if title:
        room += TITLE_FONT * LINE_EM + 10
    return room


def _legend_entries(fig: go.Figure) -> list[str]:
    shown = [t for t in fig.data if t.showlegend is not False and t.name]
    if fig.layout.showlegend is False or (fig.layout.showlegend is None and len(fig.data) < 2):
        return []
    return [str(t.name) for t in shown]


def plot_area(fig: go.Figure) -> Box:
    """The estimated plot area (inside the axes) in figure pixels, at the design width.

    Deliberately small: the margins, then room for every axis's tick labels and title, a
    legend on the right or below and a colour bar on the right, as if plotly's automatic
    margins added to the set ones. Distances between points are then smaller than drawn, so
    labels estimated apart are apart on the page."""
    width, height = design_width(fig), float(fig.layout.height or 450)
    m = fig.layout.margin
    left = 80.0 if m.l is None else float(m.l)
    right = 80.0 if m.r is None else float(m.r)
    top = 100.0 if m.t is None else float(m.t)
    bottom = 80.0 if m.b is None else float(m.b)
    for _, ax in _axis_objs(fig, "y"):
        if ax.visible is False:
            continue
        if ax.side == "right":
            right += _axis_room(ax, True)
        else:
            left += _axis_room(ax, True)
    for _, ax in _axis_objs(fig, "x"):
        if ax.visible is not False:
            bottom += _axis_room(ax, False)
    entries = _legend_entries(fig)
    legend = fig.layout.legend
    if entries:
        widths = [_chars([e]) * TICK_FONT * CHAR_EM + 40 for e in entries]
        if legend.orientation == "h":
            per_row = max(width - left - right, 100.0)
            rows, used = 1, 0.0
            for w in widths:
                if used + w > per_row and used:
                    rows, used = rows + 1, 0.0
                used += w
            below = rows * 22 + 10
            plot_h = height - top - bottom - below
            if legend.y is not None and legend.y < 0:  # placed a share of the plot below it
                margin_b = 80.0 if m.b is None else float(m.b)
                plot_h = min(plot_h, (height - top - margin_b - below) / (1 - legend.y))
            bottom = height - top - plot_h
        else:
            right += max(widths) + 10
    if any(getattr(getattr(t, "marker", None), "showscale", False) for t in fig.data):
        right += 90
    x0, y0 = left, top
    x1, y1 = max(width - right, left + 20), max(height - bottom, top + 20)
    return Box(x0, y0, x1, y1)


def _axis_range(fig: go.Figure, axis: Any, name: str, letter: str) -> tuple[float, float]:
    if axis.range is not None and None not in axis.range:
        return float(axis.range[0]), float(axis.range[1])
    if axis.type == "category" or _categories(fig, name, letter):
        n = len(_categories(fig, name, letter))
        return -0.5, n - 0.5
    vals = []
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) != name:
            continue
        data = getattr(t, letter, None)
        if data is not None:
            vals.append(np.asarray(data, dtype=float).ravel())
    v = np.concatenate(vals) if vals else np.array([0.0, 1.0])
    v = v[np.isfinite(v)]
    if axis.type == "log":
        v = np.log10(v[v > 0])
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    pad = 0.06 * ((hi - lo) or 1.0)
    return lo - pad, hi + pad


def _categories(fig: go.Figure, name: str, letter: str) -> list[str]:
    out: list[str] = []
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) != name:
            continue
        data = getattr(t, letter, None)
        if data is None or len(data) == 0:
            continue
        if all(isinstance(v, str) for v in data):
            for v in data:
                if v not in out:
                    out.append(v)
    return out


def _mapper(fig: go.Figure, area: Box, letter: str, name: str) -> Callable[[Any], float]:
    """Data value -> figure pixel along one axis (log axes take the value, not its log)."""
    key = f"{letter}axis{name[1:]}"
    axis = fig.layout[key]
    d0, d1 = axis.domain if axis.domain is not None else (0.0, 1.0)
    if letter == "x":
        p0, p1 = area.x0 + d0 * area.width, area.x0 + d1 * area.width
    else:  # y grows upwards, pixels downwards
        p0, p1 = area.y1 - d0 * area.height, area.y1 - d1 * area.height
    r0, r1 = _axis_range(fig, axis, name, letter)
    log = axis.type == "log"
    cats = _categories(fig, name, letter)
    slope = (p1 - p0) / ((r1 - r0) or 1.0)
    offset = p0 - slope * r0
    anchored = _scale_anchor(fig, area)
    if anchored is not None:  # equal units on both axes: the smaller scale, centred
        slope = anchored if letter == "x" else -anchored
        offset = (p0 + p1) / 2 - slope * (r0 + r1) / 2

    def to_px(value: Any) -> float:
        if isinstance(value, str) and cats:
            v = float(cats.index(value)) if value in cats else float("nan")
        else:
            try:
                v = float(value)
            except (TypeError, ValueError):
                return float("nan")
            if log:
                v = math.log10(v) if v > 0 else float("nan")
        return offset + slope * v

    return to_px


def _scale_anchor(fig: go.Figure, area: Box) -> float | None:
    """Pixels per unit of a map whose y axis keeps the x axis's scale, else None."""
    if fig.layout.yaxis.scaleanchor != "x":
        return None
    xr = _axis_range(fig, fig.layout.xaxis, "x", "x")
    yr = _axis_range(fig, fig.layout.yaxis, "y", "y")
    return min(area.width / ((xr[1] - xr[0]) or 1.0), area.height / ((yr[1] - yr[0]) or 1.0))


def _per_point(value: Any, i: int, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, (str, int, float)):
        return value
    try:
        return value[i] if i < len(value) else default
    except TypeError:
        return default


def _font_size(fig: go.Figure, font: Any, i: int = 0) -> float:
    size = _per_point(getattr(font, "size", None), i, None)
    if size is None:
        size = fig.layout.font.size if fig.layout.font.size is not None else TICK_FONT
    return float(size)


def _span(centre: float, size: float, side: str, before: str, off: float) -> tuple[float, float]:
    """Where text of ``size`` lands along one axis: ``before`` the point (left / top), after
    it, or centred on it."""
    if side == before:
        return centre - off - size, centre - off
    if side in ("left", "right", "top", "bottom"):
        return centre + off, centre + off + size
    return centre - size / 2, centre + size / 2


def _position_box(cx: float, cy: float, w: float, h: float, position: str, radius: float) -> Box:
    """Where plotly draws a point's text of size (w, h) for a ``textposition``."""
    vert, _, horiz = str(position or "middle center").partition(" ")
    off = radius + 2.0 if radius > 0 else 0.0
    x0, x1 = _span(cx, w, horiz, "left", off)
    y0, y1 = _span(cy, h, vert, "top", off)
    return Box(x0, y0, x1, y1)


@dataclass
class _Label:
    trace: int
    point: int
    cx: float
    cy: float
    text: str
    size: float
    radius: float
    position: str


def _scatter_points(fig: go.Figure, area: Box) -> list[_Label]:
    """Every point of every scatter trace drawn with text (its text possibly empty)."""
    out = []
    for ti, t in enumerate(fig.data):
        if t.type != "scatter" or t.visible is False or "text" not in str(t.mode or ""):
            continue
        if t.text is None or t.x is None or t.y is None:
            continue
        fx = _mapper(fig, area, "x", t.xaxis or "x")
        fy = _mapper(fig, area, "y", t.yaxis or "y")
        markers = "markers" in str(t.mode)
        for i, (x, y) in enumerate(zip(t.x, t.y, strict=False)):
            text = _per_point(t.text, i, "")
            cx, cy = fx(x), fy(y)
            if not (math.isfinite(cx) and math.isfinite(cy)):
                continue
            size = float(_per_point(t.marker.size, i, 6) or 6) if markers else 0.0
            out.append(
                _Label(ti, i, cx, cy, "" if text is None else str(text),
                       _font_size(fig, t.textfont, i), size / 2,
                       str(_per_point(t.textposition, i, "middle center")))
            )  # fmt: skip
    return out


def _marker_boxes(fig: go.Figure, area: Box, limit: int = 3000) -> list[tuple[int, int, Box]]:
    """(trace, point, box) of the markers of small scatter traces (obstacles for labels)."""
    out: list[tuple[int, int, Box]] = []
    for ti, t in enumerate(fig.data):
        if t.type != "scatter" or t.visible is False or "markers" not in str(t.mode or ""):
            continue
        if t.x is None or t.y is None or len(t.x) > limit:
            continue
        fx = _mapper(fig, area, "x", t.xaxis or "x")
        fy = _mapper(fig, area, "y", t.yaxis or "y")
        for i, (x, y) in enumerate(zip(t.x, t.y, strict=False)):
            cx, cy = fx(x), fy(y)
            if math.isfinite(cx) and math.isfinite(cy):
                r = float(_per_point(t.marker.size, i, 6) or 6) / 2
                out.append((ti, i, Box(cx - r, cy - r, cx + r, cy + r)))
    return out


def _line_points(fig: go.Figure, area: Box, step: float = 3.0, limit: int = 3000) -> np.ndarray:
    """Points every ``step`` pixels along the lines of small scatter traces and along line
    shapes (drop lines), shape (m, 2): a label drawn across a line is hard to read."""
    paths: list[np.ndarray] = []
    for t in fig.data:
        if t.type != "scatter" or t.visible is False or "lines" not in str(t.mode or "lines"):
            continue
        if t.x is None or t.y is None or len(t.x) > limit:
            continue
        fx = _mapper(fig, area, "x", t.xaxis or "x")
        fy = _mapper(fig, area, "y", t.yaxis or "y")
        xy = np.array([[fx(x), fy(y)] for x, y in zip(t.x, t.y, strict=False)], dtype=float)
        if t.line.shape == "hv" and len(xy) > 1:  # across, then up: the corners too
            corners = np.column_stack([xy[1:, 0], xy[:-1, 1]])
            xy = np.insert(xy, range(1, len(xy)), corners, axis=0)
        paths.append(xy)
        err = t.error_y
        if err is not None and err.visible is not False and err.array is not None:
            plus = np.asarray(err.array, dtype=float)
            minus = np.asarray(err.arrayminus if err.arrayminus is not None else plus, float)
            for (x, y), up, down in zip(zip(t.x, t.y, strict=False), plus, minus, strict=False):
                top, foot = fy(float(y) + up), fy(float(y) - down)
                paths.append(np.array([[fx(x), foot], [fx(x), top]]))
    for shape in fig.layout.shapes or ():
        if shape.type != "line" or "domain" in str(shape.xref) + str(shape.yref):
            continue
        if str(shape.xref) == "paper" or str(shape.yref) == "paper":
            continue
        fx = _mapper(fig, area, "x", shape.xref or "x")
        fy = _mapper(fig, area, "y", shape.yref or "y")
        paths.append(np.array([[fx(shape.x0), fy(shape.y0)], [fx(shape.x1), fy(shape.y1)]]))
    out = [np.empty((0, 2))]
    for xy in paths:
        for a, b in zip(xy[:-1], xy[1:], strict=True):
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                continue
            n = max(int(np.hypot(*(b - a)) / step), 1)
            out.append(a + (b - a) * np.linspace(0, 1, n + 1)[:, None])
    return np.concatenate(out)


def _annotation_box(fig: go.Figure, area: Box, ann: Any) -> Box | None:
    if ann.visible is False or not ann.text:
        return None
    xref, yref = ann.xref or "x", ann.yref or "y"

    def place(ref: str, value: Any, letter: str) -> float:
        if ref == "paper":
            v = float(value or 0.0)
            return area.x0 + v * area.width if letter == "x" else area.y1 - v * area.height
        name = ref.split(" ")[0]
        if ref.endswith(" domain"):
            axis = fig.layout[f"{letter}axis{name[1:]}"]
            d0, d1 = axis.domain if axis.domain is not None else (0.0, 1.0)
            v = d0 + float(value or 0.0) * (d1 - d0)
            return area.x0 + v * area.width if letter == "x" else area.y1 - v * area.height
        axis = fig.layout[f"{letter}axis{name[1:]}"]
        if axis.type == "log":  # annotations on a log axis are placed in decades
            value = 10.0 ** float(value)
        return _mapper(fig, area, letter, name)(value)

    cx, cy = place(xref, ann.x, "x"), place(yref, ann.y, "y")
    if ann.showarrow is not False:  # the text sits at the arrow's tail
        cx += float(ann.ax if ann.ax is not None else -10)
        cy += float(ann.ay if ann.ay is not None else -30)
    cx += float(ann.xshift or 0.0)
    cy -= float(ann.yshift or 0.0)
    size = _font_size(fig, ann.font)
    w, h = text_size(ann.text, size, float(ann.textangle or 0.0))
    pad = float(ann.borderpad if ann.borderpad is not None else 1.0) + 1.0
    w, h = w + 2 * pad, h + 2 * pad
    xa = ann.xanchor if ann.xanchor not in (None, "auto") else "center"
    ya = ann.yanchor if ann.yanchor not in (None, "auto") else "middle"
    x0 = cx if xa == "left" else cx - w if xa == "right" else cx - w / 2
    y0 = cy - h if ya == "bottom" else cy if ya == "top" else cy - h / 2
    return Box(x0, y0, x0 + w, y0 + h)


def _bar_boxes(fig: go.Figure, area: Box) -> list[tuple[str, Box]]:
    """Boxes of vertical bars' texts, grouped bars side by side (``barmode="group"``)."""
    bars = [t for t in fig.data if t.type == "bar" and t.visible is not False]
    groups: list[str] = []
    for t in bars:
        g = t.offsetgroup or str(id(t))
        if g not in groups:
            groups.append(g)
    grouped = fig.layout.barmode == "group"
    gap = 0.2 if fig.layout.bargap is None else float(fig.layout.bargap)
    out = []
    for t in bars:
        if t.text is None or t.orientation == "h" or t.textposition == "none":
            continue
        fx = _mapper(fig, area, "x", t.xaxis or "x")
        fy = _mapper(fig, area, "y", t.yaxis or "y")
        unit = abs(fx(1.0) - fx(0.0)) if _categories(fig, t.xaxis or "x", "x") else None
        slot = (1 - gap) / (len(groups) if grouped else 1)
        k = groups.index(t.offsetgroup or str(id(t))) if grouped else 0
        angle = float(t.textangle) if isinstance(t.textangle, (int, float)) else 0.0
        for i, (x, y) in enumerate(zip(t.x, t.y, strict=False)):
            text = _per_point(t.text, i, "")
            if not text:
                continue
            if unit is None:
                continue  # numeric bars carry no text in embscope's figures
            centre = fx(x) + unit * (-(1 - gap) / 2 + slot * (k + 0.5) if grouped else 0.0)
            w, h = text_size(str(text), _font_size(fig, t.textfont, i), angle)
            foot = float(_per_point(t.base, i, 0.0) or 0.0)
            base, top = fy(foot), fy(foot + float(y))
            if t.textposition == "inside" and t.insidetextanchor == "start":
                y1 = base - 2
                y0 = y1 - h
            elif t.textposition == "inside":
                y0 = top + 2
                y1 = y0 + h
            else:  # outside, above the bar
                y1 = top - 2
                y0 = y1 - h
            out.append((str(text), Box(centre - w / 2, y0, centre + w / 2, y1)))
    return out


def label_boxes(fig: go.Figure) -> list[tuple[str, Box]]:
    """Every text drawn over a figure's plot with its estimated box in pixels: point labels
    (scatter traces whose mode has "text"), bar texts and layout annotations."""
    area = plot_area(fig)
    out = []
    for p in _scatter_points(fig, area):
        if p.text:
            w, h = text_size(p.text, p.size)
            out.append((p.text, _position_box(p.cx, p.cy, w, h, p.position, p.radius)))
    out.extend(_bar_boxes(fig, area))
    for ann in fig.layout.annotations or ():
        box = _annotation_box(fig, area, ann)
        if box is not None:
            out.append((str(ann.text), box))
    return out


def overlapping_labels(fig: go.Figure) -> list[tuple[str, str]]:
    """The pairs of texts of :func:`label_boxes` that overlap (none, in a readable figure)."""
    boxes = label_boxes(fig)
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def drop_overlapping_annotations(fig: go.Figure) -> go.Figure:
    """Keep each layout annotation only if it overlaps none kept before it (put the most
    important first: a map's largest clusters)."""
    area = plot_area(fig)
    kept: list[Any] = []
    boxes: list[Box] = []
    for ann in fig.layout.annotations or ():
        box = _annotation_box(fig, area, ann)
        if box is not None and any(box.overlaps(b) for b in boxes):
            continue
        kept.append(ann)
        if box is not None:
            boxes.append(box)
    fig.layout.annotations = kept
    return fig


CANDIDATES = (
    "top center", "bottom center", "middle right", "middle left",
    "top right", "top left", "bottom right", "bottom left",
)  # fmt: skip


def place_labels(
    fig: go.Figure,
    *,
    priority: Callable[[int, int], float] | None = None,
    together: float = 6.0,
    joiner: str = " · ",
) -> go.Figure:
    """Give each labelled point of ``fig`` (scatter traces whose mode has "text") the first
    side (its set ``textposition`` first, then :data:`CANDIDATES`) where its label overlaps no
    label already placed, no other marker and no annotation, inside the plot area. Points less
    than ``together`` pixels apart share one label, their texts joined; a label with no room
    is dropped (the hover still names the point: hover templates must not read ``%{text}``).
    ``priority(trace, point)``: lower places first (default: in drawing order).
    Call it last, once the axes' ranges and the figure's size are set."""
    area = plot_area(fig)
    points = [p for p in _scatter_points(fig, area) if p.text]
    if not points:
        return fig
    if priority is not None:
        points.sort(key=lambda p: priority(p.trace, p.point))
    texts: dict[tuple[int, int], str] = {(p.trace, p.point): "" for p in _scatter_points(fig, area)}
    positions: dict[tuple[int, int], str] = {}
    # Points drawn on top of each other: one label for all of them, on the first.
    leaders: list[tuple[_Label, list[_Label]]] = []
    for p in points:
        for lead, members in leaders:
            if math.hypot(p.cx - lead.cx, p.cy - lead.cy) < max(together, lead.radius * 2):
                members.append(p)
                break
        else:
            leaders.append((p, [p]))
    markers = _marker_boxes(fig, area)
    placed = [b for a in fig.layout.annotations or () if (b := _annotation_box(fig, area, a))]
    placed += [b for _, b in _bar_boxes(fig, area)]

    lines = _line_points(fig, area)
    no_lines = np.empty((0, 2))

    def free(box: Box, own: set[tuple[int, int]], avoid: np.ndarray) -> bool:
        if not box.inside(area) or any(box.overlaps(b, 1.0) for b in placed):
            return False
        if any(box.overlaps(b) for ti, pi, b in markers if (ti, pi) not in own):
            return False
        inside = (
            (avoid[:, 0] > box.x0) & (avoid[:, 0] < box.x1)
            & (avoid[:, 1] > box.y0) & (avoid[:, 1] < box.y1)
        )  # fmt: skip
        return not inside.any()

    def beside(lead: _Label, text: str, own: set[tuple[int, int]], avoid: np.ndarray) -> bool:
        w, h = text_size(text, lead.size)
        for position in dict.fromkeys([lead.position, *CANDIDATES]):
            box = _position_box(lead.cx, lead.cy, w, h, position, lead.radius)
            if position != "middle center" and free(box, own, avoid):
                placed.append(box)
                texts[(lead.trace, lead.point)] = text
                positions[(lead.trace, lead.point)] = position
                return True
        return False

    def callout(lead: _Label, text: str, own: set[tuple[int, int]], avoid: np.ndarray) -> bool:
        w, h = text_size(text, lead.size)
        for dx, dy in _CALLOUTS:
            box = Box(lead.cx + dx - w / 2 - 2, lead.cy + dy - h / 2 - 2,
                      lead.cx + dx + w / 2 + 2, lead.cy + dy + h / 2 + 2)  # fmt: skip
            # the line to the point must cross no other label (nor a drawn line, when avoided)
            line = [(lead.cx + dx * f, lead.cy + dy * f) for f in np.linspace(0.15, 0.85, 8)]
            if any(b.x0 < x < b.x1 and b.y0 < y < b.y1 for b in placed for x, y in line):
                continue
            if free(box, own, avoid) and not _crosses(avoid, lead, dx, dy):
                placed.append(box)
                _add_callout(fig, fig.data[lead.trace], lead, text, dx, dy, lead.radius)
                return True
        return False

    # Beside the point clear of every line; else further out with a line to it (a callout);
    # else beside it across a line; else a callout across lines; else left to the hover.
    waiting = []
    for lead, members in leaders:
        lead.radius = max(m.radius for m in members)
        text = joiner.join(dict.fromkeys(m.text for m in members))
        waiting.append((lead, text, {(m.trace, m.point) for m in members}))
    for attempt, avoid in ((beside, lines), (callout, lines), (beside, no_lines),
                           (callout, no_lines)):  # fmt: skip
        waiting = [item for item in waiting if not attempt(*item, avoid)]
    for ti, t in enumerate(fig.data):
        if t.type != "scatter" or "text" not in str(t.mode or "") or t.text is None:
            continue
        n = len(t.x)
        t.text = [texts.get((ti, i), "") for i in range(n)]
        fallback = t.textposition if isinstance(t.textposition, str) else "top center"
        t.textposition = [positions.get((ti, i), fallback) for i in range(n)]
    return fig


# Offsets (pixels) of a callout's text from its point: nearest first, above before below.
_CALLOUTS = [
    (round(r * math.sin(math.radians(a))), -round(r * math.cos(math.radians(a))))
    for r in (30, 45, 65, 90, 120)
    for a in (0, 330, 30, 300, 60, 270, 90, 240, 120, 210, 150, 180)
]


def _crosses(points: np.ndarray, lead: _Label, dx: float, dy: float) -> bool:
    """Whether a callout's line (from just off the point to its text) passes within 1.5
    pixels of one of ``points`` (the drawn lines, sampled)."""
    if not len(points):
        return False
    start = np.array([lead.cx, lead.cy]) + np.array([dx, dy]) * (lead.radius + 2) / max(
        math.hypot(dx, dy), 1e-9
    )
    end = np.array([lead.cx + dx, lead.cy + dy])
    seg = end - start
    t = np.clip(((points - start) @ seg) / max(float(seg @ seg), 1e-9), 0.0, 1.0)
    nearest = start + t[:, None] * seg
    return bool((np.hypot(*(points - nearest).T) < 1.5).any())


def _add_callout(
    fig: go.Figure, trace: Any, point: _Label, text: str, dx: float, dy: float, radius: float
) -> None:
    xname, yname = trace.xaxis or "x", trace.yaxis or "y"
    x, y = trace.x[point.point], trace.y[point.point]
    if fig.layout[f"xaxis{xname[1:]}"].type == "log":  # annotations sit in decades
        x = math.log10(float(x))
    if fig.layout[f"yaxis{yname[1:]}"].type == "log":
        y = math.log10(float(y))
    fig.add_annotation(
        x=x, y=y, xref=xname, yref=yname, text=text, showarrow=True, ax=dx, ay=dy,
        axref="pixel", ayref="pixel", xanchor="center", yanchor="middle", arrowhead=0,
        arrowwidth=1, arrowcolor="#999999", standoff=radius, borderpad=1,
        font={"size": point.size}, bgcolor="rgba(255,255,255,0.8)",
    )  # fmt: skip


# -- hover -----------------------------------------------------------------------------------


def hover_missing(fig: go.Figure, *, decorations: Sequence[str] = ()) -> list[str]:
    """Names of the traces a reader cannot hover (no hover template or text, or hover off),
    except those named in ``decorations`` (a density shading, the links to neighbours)."""
    out = []
    for t in fig.data:
        if t.name in decorations:
            continue
        info = getattr(t, "hoverinfo", None)
        if info in ("skip", "none"):
            out.append(str(t.name))
        elif getattr(t, "hovertemplate", None) is None and getattr(t, "hovertext", None) is None:
            out.append(str(t.name))
    return out
