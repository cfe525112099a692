"""Linked metadata charts under the map: for each chosen column, a bar chart of its most common
values (or a histogram of a number column) for the items the filter keeps, with the selected
items on top; clicking a bar adds that value (or that bin's range) to the map's filter. Used
by the Projections page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, map_filter, state
from embscope.app.cache import metadata_column
from embscope.core.filters import MAX_CONDITIONS, one_of, parse_condition
from embscope.core.store import DatasetInfo

MAX_CHARTS = 3
MAX_BARS = 12  # most common values shown per column
HISTOGRAM_BINS = 30
# A number column with at most this many values is drawn as bars of its values.
FEW_VALUES = 20


def chart_columns(info: DatasetInfo, col: Any) -> list[str]:
    """The columns to chart (kept for the session, across methods)."""
    key = f"projections.charts.{info.id}"
    state.restore_widget(key, [])
    st.session_state[key] = [c for c in st.session_state[key] if c in info.metadata_columns]
    chosen = col.multiselect(
        "Charts of", list(info.metadata_columns), key=key, max_selections=MAX_CHARTS,
        help="Each column's values for the items shown, the selected ones on top; click a bar "
        "to filter the map to it.",
    )  # fmt: skip
    state.keep_widget(key)
    return list(chosen)


def charts(
    info: DatasetInfo, columns: list[str], keep: np.ndarray | None, selected: np.ndarray | None
) -> None:
    """One chart per column, side by side; a click on a bar filters the map to it."""
    if not columns:
        return
    for col, column in zip(st.columns(len(columns)), columns, strict=True):
        with col:
            _chart(info, column, keep, selected)


def _chart(
    info: DatasetInfo, column: str, keep: np.ndarray | None, selected: np.ndarray | None
) -> None:
    values = metadata_column(info.id, column)
    shown = values if keep is None else values[keep]
    picked = None if selected is None else values.iloc[selected]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and int(values.nunique(dropna=True)) > FEW_VALUES:
        fig, conditions = _histogram(column, shown, picked)
    else:
        fig, conditions = _bars(column, shown, picked)
    if fig is None:
        st.caption(f"{column}: no values to chart.")
        return
    event = st.plotly_chart(
        fig, width="stretch", key=f"projections.chart.{info.id}.{column}",
        on_select="rerun", selection_mode="points", config={"displayModeBar": False},
    )  # fmt: skip
    selection: Any = event or {}
    points = (selection.get("selection") or {}).get("points") or []
    if points:
        position = points[0].get("customdata")
        if isinstance(position, list):
            position = position[0] if position else None
        if position is not None and 0 <= int(position) < len(conditions):
            _add_to_filter(info, conditions[int(position)])


def _bars(column: str, shown: pd.Series, picked: pd.Series | None) -> tuple[Any, list[list[str]]]:
    counts = shown.dropna().value_counts().head(MAX_BARS)
    if counts.empty:
        return None, []
    values = counts.index.tolist()
    selected = None
    if picked is not None:
        selected = picked.dropna().value_counts().reindex(values, fill_value=0).to_numpy()
    numbers = pd.api.types.is_numeric_dtype(shown) and not pd.api.types.is_bool_dtype(shown)
    conditions = [[one_of(column, [v.item() if hasattr(v, "item") else v])] for v in values]
    if pd.api.types.is_bool_dtype(shown):
        conditions = [[f"{column}={str(bool(v)).lower()}"] for v in values]
    elif not numbers:
        conditions = [[one_of(column, [str(v)])] for v in values]
    title = f"{column} (top {len(values)})" if shown.nunique() > len(values) else column
    fig = figures.metadata_bars([str(v) for v in values], counts.to_numpy(), selected, title=title)
    return fig, conditions


def _histogram(
    column: str, shown: pd.Series, picked: pd.Series | None
) -> tuple[Any, list[list[str]]]:
    numbers = shown.dropna().to_numpy(dtype=np.float64)
    if numbers.size == 0:
        return None, []
    low, high = np.quantile(numbers, [0.005, 0.995]) if numbers.size >= 200 else (
        numbers.min(), numbers.max()
    )  # fmt: skip
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    cuts = [repr(float(e)) for e in edges]  # Python floats: exact in a condition's text
    whole, _ = np.histogram(np.clip(numbers, low, high), edges)
    selected = None
    if picked is not None:
        chosen = picked.dropna().to_numpy(dtype=np.float64)
        selected, _ = np.histogram(np.clip(chosen, low, high), edges)
    # A bin is [a, b); the last one also takes b and everything the clip put there.
    conditions = [[f"{column}>={a}", f"{column}<{b}"] for a, b in zip(cuts, cuts[1:], strict=False)]
    conditions[0] = [f"{column}<{cuts[1]}"]
    conditions[-1] = [f"{column}>={cuts[-2]}"]
    return figures.metadata_histogram(edges, whole, selected, title=column), conditions


def _add_to_filter(info: DatasetInfo, conditions: list[str]) -> None:
    current = map_filter.current(info)
    new = [c for c in conditions if c not in current]
    if not new or len(current) + len(new) > MAX_CONDITIONS:
        return
    if any(parse_condition(c).column not in info.metadata_columns for c in new):
        return  # a column whose name holds an operator cannot be written as a condition
    map_filter.set_filter(info, [*current, *new])
    st.rerun()
