"""Session-state accessors: every key a page keeps between reruns is named here."""

from __future__ import annotations

from typing import Any

import streamlit as st

DATASET_KEY = "embscope.dataset_id"
UPLOAD_KEY = "embscope.upload"
FLASH_KEY = "embscope.flash"


def selected_dataset_id() -> int | None:
    """The dataset chosen in the sidebar picker, or None."""
    value = st.session_state.get(DATASET_KEY)
    return int(value) if value is not None else None


def select_dataset(dataset_id: int | None) -> None:
    """Make ``dataset_id`` the current dataset of this session (every page follows it)."""
    st.session_state[DATASET_KEY] = dataset_id


def flash(kind: str, message: str) -> None:
    """Queue a message to show once after the next rerun (``kind``: success, info, warning)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def pop_flashes() -> list[tuple[str, str]]:
    """Messages queued by :func:`flash`, removed from the session."""
    return st.session_state.pop(FLASH_KEY, [])


def get(key: str, default: Any = None) -> Any:
    """A namespaced session value."""
    return st.session_state.get(f"embscope.{key}", default)


def put(key: str, value: Any) -> None:
    """Set a namespaced session value."""
    st.session_state[f"embscope.{key}"] = value


def metric_for_dataset(page: str, info: Any, allowed: tuple[str, ...] | list[str]) -> None:
    """Before a page's metric select (key ``<page>.metric``): when the page shows another
    dataset than last time, the select starts at that dataset's recorded metric (cosine where
    the page does not offer it). A share link's metric counts as chosen for its dataset
    (:func:`metric_from_link`)."""
    if st.session_state.get(f"{page}.metric_for") != info.id:
        st.session_state[f"{page}.metric"] = info.metric if info.metric in allowed else "cosine"
        st.session_state[f"{page}.metric_for"] = info.id


def metric_from_link(page: str, info: Any, metric: str) -> None:
    """A share link set the page's metric for this dataset."""
    st.session_state[f"{page}.metric"] = metric
    st.session_state[f"{page}.metric_for"] = info.id


def forget_metric_choices(dataset_id: int) -> None:
    """After the dataset's metric changed (app/metric_change.py): every page's metric select
    starts again at the new one (the keys of :func:`metric_for_dataset`, ``<page>.metric.<id>``)."""
    for key in list(st.session_state):
        name = str(key)
        mine = name.endswith(".metric_for") and st.session_state[key] == dataset_id
        if mine or name.endswith(f".metric.{dataset_id}"):
            del st.session_state[key]


# Streamlit forgets a widget's value when a run does not draw it (the map's controls while
# another method's layout is computed): these keep a copy in the session and give it back.


def restore_widget(key: str, default: Any) -> None:
    """Before a widget keyed ``key``: its last kept value (else ``default``), when Streamlit
    has forgotten it."""
    if key not in st.session_state:
        st.session_state[key] = get(f"kept.{key}", default)


def keep_widget(key: str) -> Any:
    """After the widget: keep its value for the runs that do not draw it; returns it."""
    value = st.session_state.get(key)
    put(f"kept.{key}", value)
    return value


def set_widget(key: str, value: Any) -> None:
    """Set a kept widget's value (a share link), before the widget is drawn."""
    st.session_state[key] = value
    put(f"kept.{key}", value)


def kept_value(key: str, default: Any = None) -> Any:
    """The value last kept for a widget (whatever the widget shows now)."""
    return get(f"kept.{key}", default)


def widget_value(key: str, default: Any = None) -> Any:
    """A kept widget's value: the widget's, else the last one kept, else ``default``."""
    return st.session_state.get(key, get(f"kept.{key}", default))
