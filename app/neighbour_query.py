"""The Neighbours page's query, kept in the session per dataset: chosen on that page, or set
by another page that opens it on an item (:func:`open_query`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from embscope.app import state
from embscope.core.store import DatasetInfo

QUERY_KEY = "neighbours.query"


def set_query(info: DatasetInfo, kind: str, value: Any) -> None:
    """Make an item (``row``, ``id``), a ``vector`` or a ``text`` the query of this dataset."""
    state.put(QUERY_KEY, {"dataset": info.id, "kind": kind, "value": value})


def current_query(info: DatasetInfo) -> dict[str, Any] | None:
    """The query chosen for this dataset (``{"dataset", "kind", "value"}``), or None."""
    q = state.get(QUERY_KEY)
    return q if q and q.get("dataset") == info.id else None


def open_query(info: DatasetInfo, row: int) -> None:
    """Open the Neighbours page with the item in ``row`` as the query (from another page),
    through a link to it, so the address is shareable at once."""
    set_query(info, "row", int(row))
    page = Path(__file__).resolve().parents[1] / "pages" / "neighbours.py"
    st.switch_page(page, query_params={"dataset": str(info.id), "row": str(row)})
