"""The map's filter and search. A filter is metadata conditions (categories: picked values;
numbers: a range; text: contains), AND-ed and run as parameterised SQL by
:mod:`core.filters`; it greys out the other items on the map, limits the selection, the
exports and a clicked point's neighbours, and can be saved as a dataset of its own. A search
lights up the items whose id or metadata contain the words and, for a dataset with a text
model, the items nearest the words by meaning. Used by the Projections page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from embscope.app import access, state, widgets
from embscope.app.cache import filter_rows, metadata_column
from embscope.app.figures import Highlight
from embscope.app.runtime import get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.filters import (
    MAX_CONDITIONS,
    column_kind,
    one_of,
    parse_condition,
    parse_filter,
)
from embscope.core.store import DatasetInfo

# A column with at most this many distinct values is picked from a list; above, by range
# (numbers) or by "contains" (text).
MAX_CHOICES = 200
# Items lit up by meaning (a text search on a dataset whose model embscope can run).
MEANING_K = 25
MAX_SEARCH_CHARS = 200
# Search marks are white and black (outlined): never one of the palette's colours, so a match
# does not read as a member of a group.
CONTAINS_COLOUR = "#ffffff"
MEANING_COLOUR = "#111111"


@dataclass
class MapFilter:
    """What the filter and the search make of the map: the rows kept (None: every row) and
    the rows to light up."""

    expressions: list[str]
    keep: np.ndarray | None = None  # bool (n,)
    highlights: list[Highlight] = field(default_factory=list)

    @property
    def rows(self) -> np.ndarray | None:
        return None if self.keep is None else np.flatnonzero(self.keep)


def current(info: DatasetInfo) -> list[str]:
    """This session's filter of ``info``: its expressions."""
    return list(state.get(f"map.filter.{info.id}", []))


def set_filter(info: DatasetInfo, expressions: list[str]) -> None:
    state.put(f"map.filter.{info.id}", list(expressions))


def search_text(info: DatasetInfo) -> str:
    return str(state.widget_value(f"projections.search.{info.id}", "") or "")


def set_search(info: DatasetInfo, text: str) -> None:
    state.set_widget(f"projections.search.{info.id}", text[:MAX_SEARCH_CHARS])


def from_link(info: DatasetInfo, link: Any) -> None:
    """A share link's filter (``where``, repeated) becomes the session's filter of ``info``;
    one that does not parse is ignored, and said. Its columns are checked when it is applied."""
    where = link.values("where", max_count=MAX_CONDITIONS)
    if where is None:
        return
    try:
        parse_filter(where)
    except InvalidInputError as exc:
        link.ignore("where", " AND ".join(where), str(exc))
    else:
        set_filter(info, where)


def _fitting(info: DatasetInfo, expressions: list[str]) -> list[str]:
    """The conditions that fit the dataset's columns; each one that does not (a link made
    for another dataset, a column since renamed) is dropped, and said."""
    try:
        filter_rows(info.id, tuple(expressions))
        return expressions
    except InvalidInputError:
        pass
    kept = []
    for expression in expressions:
        try:
            filter_rows(info.id, (expression,))
        except InvalidInputError as exc:
            widgets.show_error(f"The filter condition was dropped: {exc}")
        else:
            kept.append(expression)
    set_filter(info, kept)
    return kept


def filter_line(info: DatasetInfo) -> list[str] | None:
    """On another page: the map's filter of ``info`` as a line, with a button that clears it;
    returns its expressions (None: no filter)."""
    expressions = _fitting(info, current(info))
    if not expressions:
        return None
    rows = filter_rows(info.id, tuple(expressions))
    left, right = st.columns([6, 1], vertical_alignment="center")
    left.caption(
        f":material/filter_alt: Only the {rows.size:,} items that match the map's filter: "
        + " AND ".join(md_escape(describe(e)) for e in expressions)
    )
    if right.button("Clear filter", key="map.filter.clear"):
        set_filter(info, [])
        st.rerun()
    return expressions


def describe(expression: str) -> str:
    """A condition as a person reads it ("module is one of json, os")."""
    try:
        c = parse_condition(expression)
    except InvalidInputError:
        return expression
    if c.op == "@":
        import json

        try:
            values = [str(v) for v in json.loads(c.value)]
        except (ValueError, TypeError):
            values = [c.value]
        shown = ", ".join(values[:4]) + (f" and {len(values) - 4} more" if len(values) > 4 else "")
        return f"{c.column} is {shown}" if len(values) == 1 else f"{c.column} is one of {shown}"
    words = {"~": "contains", "!=": "is not", "=": "is", "<=": "≤", ">=": "≥"}
    return f"{c.column} {words.get(c.op, c.op)} {c.value}"


def _kinds(info: DatasetInfo) -> dict[str, str]:
    schema = dict(get_store().metadata_schema(info.id))
    return {c: column_kind(schema[c]) for c in info.metadata_columns if c in schema}


def _new_condition(info: DatasetInfo) -> list[str]:
    """The widgets of one new condition; returns its expressions (empty until complete)."""
    kinds = _kinds(info)
    if not kinds:
        st.caption("This dataset has no metadata to filter on.")
        return []
    column = st.selectbox("Column", list(kinds), key=f"map.filter.column.{info.id}")
    made = _condition_widgets(info, column, kinds[column])
    # A column whose name holds an operator ("a=b") cannot be written as COLUMN OP VALUE.
    if any(parse_condition(e).column != column for e in made):
        st.caption(
            f"The name of column {md_escape(column)} holds an operator: it cannot be filtered."
        )
        return []
    return made


def _condition_widgets(info: DatasetInfo, column: str, kind: str) -> list[str]:
    values = metadata_column(info.id, column)
    if kind == "bool":
        pick = st.radio("Value", ("true", "false"), horizontal=True, key="map.filter.bool")
        return [f"{column}={pick}"]
    distinct = int(values.nunique(dropna=True))
    if kind == "number" and distinct > 30:
        numbers = values.dropna().to_numpy(dtype=np.float64)
        low, high = float(numbers.min()), float(numbers.max())
        if low == high:
            return [f"{column}={low!r}"]
        picked = st.slider("Range", low, high, (low, high), key=f"map.filter.range.{column}")
        return [f"{column}>={picked[0]!r}", f"{column}<={picked[1]!r}"]
    # Dates and other kinds compare by DuckDB's text form, which pandas' differs from: they
    # are filtered by "contains", as are text columns with many values.
    if kind in ("number", "text") and distinct <= MAX_CHOICES:
        if kind == "number":
            options = sorted(values.dropna().unique().tolist())
        else:
            options = values.dropna().astype(str).value_counts().index.tolist()
        chosen = st.multiselect("Values", options, key=f"map.filter.values.{column}")
        return [one_of(column, chosen)] if chosen else []
    text = st.text_input("Contains", key=f"map.filter.contains.{column}", max_chars=200)
    return [f"{column}~{text.strip()}"] if text.strip() else []


def filter_controls(info: DatasetInfo, cols: list[Any]) -> None:
    """The filter's conditions (remove one with its ×), a popover that adds one, and a button
    that saves the filtered items as a new dataset (``cols``: three columns of a row)."""
    expressions = current(info)
    with cols[0].popover("Filter", icon=":material/filter_alt:", use_container_width=True):
        new = _new_condition(info)
        room = len(expressions) + len(new) <= MAX_CONDITIONS
        if not room:
            st.caption(f"A filter has at most {MAX_CONDITIONS} conditions: remove one first.")
        if st.button("Add this condition", key="map.filter.add", disabled=not new or not room):
            set_filter(info, [*expressions, *new])
            st.rerun()
    if expressions:
        tag = abs(hash(tuple(expressions)))
        kept = cols[1].multiselect(
            "Filter", expressions, default=expressions, format_func=describe,
            key=f"map.filter.shown.{info.id}.{tag}", label_visibility="collapsed",
        )  # fmt: skip
        if list(kept) != expressions:
            set_filter(info, list(kept))
            st.rerun()
        with cols[2].popover("Save as dataset", use_container_width=True):
            _save_subset(info, expressions)


def _save_subset(info: DatasetInfo, expressions: list[str]) -> None:
    from embscope.core.derive import save_subset

    if access.read_only():
        st.caption("A read-only demo saves nothing.")
        return
    st.caption(
        "The filtered items become a dataset of their own (same vectors, ids and metadata; "
        "the filter recorded): it gets its own layouts, clusters and scores."
    )
    name = st.text_input("Name", value=f"{info.name} (filtered)", key="map.filter.name")
    if st.button("Save", key="map.filter.save", type="primary"):
        saved = widgets.guarded(lambda: save_subset(get_store(), info.id, expressions, name=name))
        if saved is not None:
            state.flash("success", f"Saved {saved[0].name}: {saved[0].n:,} items.")
            state.select_dataset(saved[0].id)
            st.rerun()


def search_box(info: DatasetInfo, col: Any) -> None:
    """The search box; its text is kept for the session (Streamlit forgets a widget that a
    run does not draw, as while another method's layout is computed)."""
    key = f"projections.search.{info.id}"
    state.restore_widget(key, "")
    col.text_input(
        "Search", key=key, max_chars=MAX_SEARCH_CHARS,
        placeholder="search: words in ids and metadata, or a meaning",
        label_visibility="collapsed",
    )  # fmt: skip
    state.keep_widget(key)


def apply(info: DatasetInfo, metric: str) -> MapFilter:
    """The rows the filter keeps and the search's matches (errors shown, not raised)."""
    expressions = _fitting(info, current(info))
    out = MapFilter(expressions)
    if expressions:
        out.keep = np.zeros(info.n, dtype=bool)
        out.keep[filter_rows(info.id, tuple(expressions))] = True
    text = search_text(info).strip()
    if text:
        for label, rows, colour in _search(info, text, metric, out.expressions):
            if out.keep is not None:
                rows = rows[out.keep[rows]]
            out.highlights.append(Highlight(f"{rows.size:,} {label}", rows, colour))
    return out


def _search(
    info: DatasetInfo, text: str, metric: str, where: list[str]
) -> list[tuple[str, np.ndarray, str]]:
    """(label, rows, colour) of the items containing ``text`` and of those nearest it by
    meaning; kept for the session's last search."""
    key = (info.fingerprint, text, metric, tuple(where))
    kept = state.get("map.search")
    if kept is not None and kept[0] == key:
        return list(kept[1])
    found: list[tuple[str, np.ndarray, str]] = []
    rows = widgets.guarded(lambda: get_store().search_row_numbers(info.id, text))
    if rows is not None:
        found.append((f"contain “{text}”", rows, CONTAINS_COLOUR))
    service = get_neighbour_service()
    ok, _ = service.text_status(info.id)
    if ok:

        def nearest() -> np.ndarray:
            query = service.resolve(info.id, text=text)
            answer = service.search(
                info.id, query, k=min(MEANING_K, info.n), metric=metric, backend="exact",
                where=where or None,
            )  # fmt: skip
            return np.asarray(answer.rows, dtype=np.int64)

        near = widgets.guarded(nearest)
        if near is not None and near.size:
            found.append(("nearest by meaning", near, MEANING_COLOUR))
    state.put("map.search", (key, found))
    return found


def summary(mapped: MapFilter, info: DatasetInfo) -> str:
    """One line: how many items the filter keeps and the search finds."""
    parts = []
    if mapped.keep is not None:
        parts.append(f"{int(mapped.keep.sum()):,} of {info.n:,} items match the filter")
    parts.extend(md_escape(mark.name) for mark in mapped.highlights)
    return " · ".join(parts)
