"""The Datasets page's Metric control: the current dataset's metric and why it was chosen, and a
change to another one (:func:`core.metric_change.set_metric`).

When results were stored under the old metric, a dialog says how many and of what kind, and
asks whether to keep them (still right for the old metric: a page shows them when that metric
is chosen) or drop them. Results another dataset of the same vectors uses too are kept either
way, and the dialog says so (with nothing left to drop, it does not ask). Dropping also stops
the dataset's jobs still computing with the old metric (their results could not be stored:
core/result_drops.py), through the job runner's Cancel, and says so. On a read-only server
only the metric and its reason are shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from embscope.app import access, state, widgets
from embscope.app.choices import metric_label
from embscope.app.runtime import get_job_runner, get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.metric_change import MetricChange, set_metric
from embscope.core.store import DatasetInfo
from embscope.core.validation import METRICS

NOTE = "datasets.metric"  # where the change says what it did
PENDING = "pending_metric"  # (dataset id, metric) waiting for keep / drop
# What a stored result of each kind is called here (singular, plural).
KIND_NAMES: Mapping[str, tuple[str, str]] = {
    "knn_graph": ("neighbour graph", "neighbour graphs"),
    "index": ("index", "indexes"),
    "projection": ("layout", "layouts"),
    "projection_labels": ("set of layout label scores", "sets of layout label scores"),
    "scorecard": ("geometry scorecard", "geometry scorecards"),
    "ef_diagnostics": ("recall-vs-ef run", "recall-vs-ef runs"),
    "order_diagnostics": ("insertion-order experiment", "insertion-order experiments"),
    "compression": ("compression report", "compression reports"),
    "comparison": ("comparison", "comparisons"),
    "clusters": ("clustering", "clusterings"),
    "hubness_reduction": ("hubness-reduction measurement", "hubness-reduction measurements"),
}


def results_text(counts: Mapping[str, int]) -> str:
    """``{"knn_graph": 1, "projection": 2}`` as "1 neighbour graph, 2 layouts"."""
    parts = []
    for kind, count in counts.items():
        one, many = KIND_NAMES.get(kind, (kind, kind))
        parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts)


def _reason(info: DatasetInfo) -> str:
    return str(info.info.get("metric_reason") or "recorded without a reason")


def metric_control(current: DatasetInfo) -> None:
    """The current dataset's metric and its reason; on a writable server, a select to change
    it, with a confirm step when results are stored under the old one."""
    st.markdown(
        f"**Metric:** {md_escape(metric_label(current.metric))} ({md_escape(_reason(current))})"
        " — every page starts with it."
    )
    if access.read_only():
        return
    choice_key = f"metric_change.choice.{current.id}"
    if st.session_state.get(choice_key) not in METRICS:
        st.session_state[choice_key] = current.metric
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    choice = left.selectbox(
        "Change the metric to", METRICS, format_func=metric_label, key=choice_key,
        help="How distances are measured in every later view. What was computed with the "
        "old metric stays right for it: you choose whether to keep or drop it.",
    )  # fmt: skip
    clicked = right.button(
        "Change metric", disabled=choice == current.metric, width="stretch",
        key=f"metric_change.apply.{current.id}",
    )  # fmt: skip
    widgets.show_note(NOTE)
    if clicked:
        try:
            access.require_writable("change a dataset's metric")
            preview = set_metric(get_store(), current.id, choice, dry_run=True)
        except InvalidInputError as exc:
            widgets.show_error(exc)
            return
        if preview.to_drop_count == 0:  # nothing a drop would delete: no question to ask
            _apply(current, choice, drop=False)
        else:
            state.put(PENDING, (current.id, choice))
    pending = state.get(PENDING)
    # Kept in session state so the dialog survives the rerun its own buttons cause.
    if pending is not None and pending[0] == current.id:
        _confirm(current, pending[1])


def _clear_pending() -> None:
    state.put(PENDING, None)


@st.dialog("Change the metric?", on_dismiss=_clear_pending)
def _confirm(current: DatasetInfo, metric: str) -> None:
    try:
        preview = set_metric(get_store(), current.id, metric, dry_run=True)
    except InvalidInputError as exc:
        _clear_pending()
        widgets.show_error(exc)
        return
    old, new = md_escape(metric_label(preview.old)), md_escape(metric_label(preview.new))
    count, shared = preview.stale_count, preview.shared_count
    text = (
        f"**{md_escape(current.name)}**: from {old} to {new}.\n\n"
        f"{count:,} stored result{'' if count == 1 else 's'} "
        f"({md_escape(results_text(preview.stale))}) {'was' if count == 1 else 'were'} "
        f"computed with {old}. Kept, they stay right for {old}: a page shows them when "
        f"{old} is chosen. "
    )
    if shared:
        text += (
            f"{shared:,} of them ({md_escape(results_text(preview.shared))}) "
            f"{'is' if shared == 1 else 'are'} used by {_names(preview.shared_with)} too (the "
            f"same vectors) and {'stays' if shared == 1 else 'stay'} either way. Dropped, the "
            f"other {preview.to_drop_count:,} ({md_escape(results_text(preview.to_drop))}) "
            "are deleted."
        )
    else:
        text += "Dropped, they are deleted."
    running = len(_computing_with(current.id, preview.old)) if not shared else 0
    if running:
        text += (
            f" {running} job{' is' if running == 1 else 's are'} computing with {old} now: "
            f"dropping stops {'it' if running == 1 else 'them'}."
        )
    st.markdown(text + " Keep them or drop them?")
    keep, drop, cancel = st.columns(3)
    if keep.button("Keep them", type="primary", key="metric_keep"):
        _apply(current, metric, drop=False)
    if drop.button("Drop them", key="metric_drop"):
        _apply(current, metric, drop=True)
    if cancel.button("Cancel", key="metric_cancel"):
        _clear_pending()
        st.rerun()


def _apply(current: DatasetInfo, metric: str, *, drop: bool) -> None:
    """Record the metric (dropping the old one's results if asked), say so, and rerun."""
    try:
        access.require_writable("change a dataset's metric")
        # also forgets the service's cached catalog row and drops the index files and Milvus
        # collections of dropped records
        change = get_neighbour_service().change_metric(current.id, metric, drop_stale=drop)
    except InvalidInputError as exc:
        _clear_pending()
        widgets.show_error(exc)
        return
    stopped = _stop_jobs(current.id, change) if drop else []
    state.forget_metric_choices(current.id)
    _clear_pending()
    widgets.note_for(NOTE, _done_text(change, stopped), toast="Metric changed")
    st.rerun()


def _names(names: tuple[str, ...]) -> str:
    """Dataset names (user input) for markdown: escaped, each in quotes."""
    return ", ".join(f"“{md_escape(name)}”" for name in names)


def _computing_with(dataset_id: int, metric: str) -> list[str]:
    """Keys of the dataset's queued and running jobs whose request names ``metric``."""
    return [s.key for s in get_job_runner().active(dataset_id) if s.params.get("metric") == metric]


def _stop_jobs(dataset_id: int, change: MetricChange) -> list[str]:
    """Cancel the dataset's jobs still computing with the old metric after a drop: asked for
    before it, their results would be refused (core/result_drops.py). None when another
    dataset shares the vectors (their results are kept: they are its too)."""
    if not change.changed or change.shared_with:
        return []
    runner = get_job_runner()
    return [key for key in _computing_with(dataset_id, change.old) if runner.cancel(key)]


def _done_text(change: MetricChange, stopped: list[str] | None = None) -> str:
    old, new = metric_label(change.old), metric_label(change.new)
    text = f"The metric of “{change.dataset.name}” is now {new} (was {old})."
    if change.shared:  # a note is escaped when shown (app.widgets.show_note): names as they are
        one = len(change.shared_with) == 1
        text += (
            f" Kept {results_text(change.shared)} computed with {old}: "
            f"{', '.join(f'“{n}”' for n in change.shared_with)} "
            f"{'holds' if one else 'hold'} the same vectors and {'uses' if one else 'use'} them."
        )
    if stopped:
        n = len(stopped)
        text += f" Stopped {n} job{'' if n == 1 else 's'} still computing with {old}."
    if change.dropped:
        return f"{text} Dropped what was computed with {old}: {results_text(change.dropped)}."
    if change.stale and not change.shared:
        return (
            f"{text} Kept what was computed with {old} ({results_text(change.stale)}): "
            f"choose {old} on a page to see it."
        )
    return text
