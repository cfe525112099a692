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
