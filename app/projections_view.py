"""The Projections page's parts: which layout (settings, the share link, the first visit's
most faithful stored layout), its background job, its scores, and the gallery. The map itself
(its controls, the filter, selection and side by side) is :mod:`app.map_controls`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from embscope.app import map_controls, preview_note, share, state, widgets
from embscope.app.cache import label_columns
from embscope.app.jobs import artifact_or_job
from embscope.app.runtime import get_job_runner, get_neighbour_service, get_store
from embscope.app.scatter import best_layout
from embscope.app.selection import current_selection, set_selection
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError
from embscope.core.params import AUTO, Param
from embscope.core.projections import label_scores, runs
from embscope.core.store import DatasetInfo
from embscope.core.validation import METRICS

DEFAULT_METHOD = "largevis"


# -- settings and the URL ----------------------------------------------------------------------


def _apply_param(link: share.Link, method: str, param: Param, n: int) -> None:
    """One method parameter from the link (``p.<name>=<value>``; ``auto`` where allowed),
    checked against the method's parameter table; a value out of bounds is ignored, and said."""
    key, given = f"projections.{method}.{param.name}", f"p.{param.name}"
    raw = link.raw(given)
    if raw is None:
        return
    try:
        value = param.parse(raw, n=n, owner=runs.METHOD_LABELS[method])
    except InvalidInputError as exc:
        link.ignore(given, raw, str(exc))
        return
    if param.auto:
        chosen_by_method = raw.strip().lower() == AUTO
        st.session_state[key + ".auto"] = chosen_by_method
        if chosen_by_method:
            return
    st.session_state[key] = value


def _rows_of_ids(info: DatasetInfo, link: share.Link) -> list[int] | None:
    wanted = link.values("item", max_count=share.MAX_LINK_ITEMS)
    if not wanted:
        return None
    rows = pd.Index(get_neighbour_service().ids(info.id)).get_indexer(wanted)
    for item, row in zip(wanted, rows, strict=True):
        if row < 0:
            link.ignore("item", item, f"no item of {info.name} has this id")
    found = [int(r) for r in rows if r >= 0]
    return found or None


def apply_url(info: DatasetInfo, link: share.Link | None = None) -> None:
    """Set the page's widgets from a share link: method, dims, seed, metric, the method's
    parameters (``p.<name>``), colour, hover columns, point size and opacity, cluster names
    and density (``names``, ``density``: 1 or 0), the filter (``where``, repeated), the
    search (``q``), the selected items and the side-by-side partner. Does nothing when there
    is no new link."""
    link = share.link("projections") if link is None else link
    if not link:
        return
    method = link.choice("method", runs.METHODS)
    if method is not None:
        st.session_state["projections.method"] = method
    dims = link.integer("dims", 2, 3)
    if dims is not None:
        st.session_state["projections.dims"] = dims
    seed = link.integer("seed", 0, 2**31 - 1)
    if seed is not None:
        st.session_state["projections.seed"] = seed
    metric = link.choice("metric", METRICS)
    if metric is not None:
        st.session_state[f"projections.metric.{info.id}"] = metric
    method = st.session_state.get("projections.method", DEFAULT_METHOD)
    table = runs.PARAM_TABLES.get(method, runs.PARAM_TABLES["pca"])
    for given in link.names():
        if not given.startswith("p."):
            continue
        if given[2:] in table:
            _apply_param(link, method, table[given[2:]], info.n)
        else:
            link.ignore(
                given, link.raw(given), f"{runs.METHOD_LABELS[method]} has no such parameter"
            )
    map_controls.look_from_link(info, link)
    # Coming back to the page, the selection is the session's (other pages share it).
    rows = None if link.remembered else _rows_of_ids(info, link)
    if rows is not None:
        set_selection(info, rows)
    if link.flag("side"):
        st.session_state["projections.side_by_side"] = True
    if "beside" in link:
        partner = link.fingerprint(
            "beside", [p.fingerprint for _, p in map_controls.comparable(info)]
        )
        if partner is not None:
            st.session_state["projections.side_by_side"] = True
            st.session_state[f"projections.beside.{info.id}"] = partner


def write_url(info: DatasetInfo, request: dict[str, Any]) -> None:
    """Make the address bar the link to this view (see :mod:`app.share`)."""
    params: dict[str, Any] = {
        "method": request["method"],
        "dims": request["dims"],
        "seed": request["seed"],
        "metric": request["metric"],
    }
    table = runs.PARAM_TABLES[request["method"]]
    for name, value in request["params"].items():
        if value != table[name].default:
            params[f"p.{name}"] = AUTO if table[name].is_auto(value) else value
    params.update(map_controls.look_params(info))
    rows = current_selection(info)
    if rows is not None and 0 < rows.size <= share.MAX_LINK_ITEMS:
        ids = get_neighbour_service().ids(info.id)
        params["item"] = [str(ids[r]) for r in rows if 0 <= r < info.n]
    if st.session_state.get("projections.side_by_side"):
        params["side"] = 1
        partner = st.session_state.get(f"projections.beside.{info.id}")
        if isinstance(partner, str):
            params["beside"] = share.short(partner)
    share.write("projections", params)


OPENED_KEY = "projections.opened_best"


def _layout_chosen(info: DatasetInfo) -> bool:
    """Whether the session (earlier on the page, or a link just applied) has chosen a layout:
    its method, dimensions, seed, metric or a parameter (a link's ``p.<name>`` without a
    method sets the default method's)."""
    keys = ("projections.method", "projections.dims", "projections.seed")
    if any(k in st.session_state for k in (*keys, f"projections.metric.{info.id}")):
        return True
    return any(str(k).startswith(f"projections.{DEFAULT_METHOD}.") for k in st.session_state)


def open_best(info: DatasetInfo) -> None:
    """On a first visit (after :func:`apply_url`: no layout chosen in the session nor by the
    link) open the dataset's most faithful stored layout (:func:`app.scatter.best_layout`:
    highest trustworthiness@10, in the dataset's metric and 2-D when there is one, the newest
    of equals), so the map shows at once. Nothing stored: the defaults, as before."""
    if _layout_chosen(info):
        return
    stored = runs.list_projections(get_store(), info.id)
    # In the dataset's metric when there is one (a metric changed later keeps the old ones)
    stored = [p for p in stored if p.metric == info.metric] or stored
    best = best_layout([p for p in stored if p.dims == 2] or stored)
    if best is not None:
        open_stored(info, best)
        state.put(OPENED_KEY, best.fingerprint)


def opened_note(projection: runs.Projection) -> None:
    """Above the layout :func:`open_best` opened, while it is shown: which it is and why."""
    if state.get(OPENED_KEY) != projection.fingerprint:
        state.put(OPENED_KEY, None)  # another layout was chosen: the note is done
        return
    what = f"{runs.METHOD_LABELS[projection.method]}{' preview' if projection.preview else ''}"
    trust = projection.quality.get(f"trustworthiness@{runs.QUALITY_K}")
    st.caption(
        f"Showing the most faithful stored map: {what}, {projection.dims}-D, "
        f"trustworthiness {trust:.2f} — pick another below."
        if isinstance(trust, (int, float)) and math.isfinite(trust)
        else f"Showing the newest stored map: {what}, {projection.dims}-D (not scored) — "
        "pick another below."
    )


def _param_widget(method: str, param: Param, n: int) -> Any:
    """A widget for one parameter, built from its row of the method's table: its label, help,
    bounds (neighbour counts also below n) and, where the method can choose, "automatic"."""
    key = f"projections.{method}.{param.name}"
    if param.kind == "bool":
        st.session_state.setdefault(key, bool(param.default))
        return bool(st.checkbox(param.label, key=key, help=param.help))
    if param.kind == "choice":
        if st.session_state.get(key) not in param.choices:
            st.session_state[key] = param.default
        return str(st.selectbox(param.label, param.choices, key=key, help=param.help))
    high = param.high_for(n)
    if param.auto:
        st.session_state.setdefault(key + ".auto", True)
        st.session_state.setdefault(key, param.start)
        if st.checkbox(f"{param.label}: automatic", key=key + ".auto", help=param.help):
            return param.auto_value
    else:
        st.session_state.setdefault(key, min(param.default, high))
    if st.session_state[key] > high:  # set on a larger dataset
        st.session_state[key] = type(st.session_state[key])(high)
    if param.kind == "int":
        return int(
            st.number_input(param.label, int(param.low), int(high), key=key, help=param.help)
        )
    return float(
        st.number_input(
            param.label, float(param.low), float(high), key=key, help=param.help, format="%.3g"
        )
    )


def settings(info: DatasetInfo) -> tuple[dict[str, Any], list[Any]]:
    """Method, dimensions, seed, metric and the method's parameters (defaults that work);
    returns the request and the rest of the top row, where
    :func:`app.map_controls.map_controls` goes."""
    # Defaults go through session state, because share links and the gallery set these too
    # (a widget given both a default and a session-state value warns).
    st.session_state.setdefault("projections.method", DEFAULT_METHOD)
    st.session_state.setdefault("projections.dims", 2)
    st.session_state.setdefault("projections.seed", 0)
    # One row above the map: the layout, then how it is drawn (map_controls).
    cols = st.columns([2.2, 1.3, 2.6, 3.2, 1.5, 1.5, 1.7], vertical_alignment="bottom")
    method: str = (
        cols[0].selectbox(
            "Method",
            runs.METHODS,
            format_func=lambda m: runs.METHOD_LABELS[m],
            key="projections.method",
            help="PCA is instant; LargeVis, UMAP and heat-geodesic run in the background from the "
            "dataset's shared neighbour graph.",
        )
        or DEFAULT_METHOD
    )
    dims = cols[1].radio("Dimensions", (2, 3), horizontal=True, key="projections.dims")
    st.session_state.setdefault(f"projections.metric.{info.id}", runs.default_metric(info))
    params: dict[str, Any] = {}
    table = list(runs.PARAM_TABLES[method].values())
    with st.expander(f"{runs.METHOD_LABELS[method]}: seed, metric and parameters"):
        first = st.columns(4)
        seed = int(first[0].number_input("Seed", 0, 2**31 - 1, key="projections.seed"))
        metric = first[1].selectbox(
            "Metric",
            METRICS,
            key=f"projections.metric.{info.id}",
            help="The neighbour graph's metric (shared with the Neighbours and Geometry pages).",
        )
        per_row = 4
        for start in range(0, len(table), per_row):
            row = table[start : start + per_row]
            for col, param in zip(st.columns(per_row), row, strict=False):
                with col:
                    params[param.name] = _param_widget(method, param, info.n)
    request = {
        "method": method,
        "dims": int(dims),
        "seed": seed,
        "metric": metric,
        "params": params,
    }
    return request, list(cols[2:])


# -- the job ----------------------------------------------------------------------------------------


def _projection_key(info: DatasetInfo, request: dict[str, Any]) -> str:
    return runs.projection_key(
        get_store(), info.id, method=request["method"], dims=request["dims"],
        seed=request["seed"], metric=request["metric"], params=request["params"],
    )  # fmt: skip


def request_key(info: DatasetInfo, request: dict[str, Any]) -> str | None:
    """The fingerprint (artifact and job key) of the projection ``request`` asks for."""
    try:
        return _projection_key(info, request)
    except InvalidInputError:
        return None


def stored_or_job(info: DatasetInfo, request: dict[str, Any]) -> runs.Projection | None:
    """The stored projection for ``request``; otherwise its job's progress or a Compute button
    (PCA, instant, starts at once)."""
    method = request["method"]
    spec_request = widgets.guarded(
        lambda: runs.projection_request(
            get_store(),
            info.id,
            method=method,
            dims=request["dims"],
            seed=request["seed"],
            metric=request["metric"],
            params=request["params"],
        )  # fmt: skip
    )
    if spec_request is None:
        return None
    return artifact_or_job(
        runs.PROJECTIONS,
        spec_request,
        button=f"Compute the {runs.METHOD_LABELS[method]} projection",
        button_key="projections.compute",
        start_now=method == "pca",
        caption="Not computed yet. It runs in the background: you can leave the page and come "
        "back, and everyone using this server sees the result."
        + preview_note.compute_hint(info.n, method, request["params"]),
        with_arrays=False,  # the coordinates are read once, by projection_coords
    )


def other_jobs(info: DatasetInfo, current_key: str | None) -> None:
    """Projection jobs of this dataset running for anyone (other settings, other sessions)."""
    active = [
        s
        for s in get_job_runner().active(info.id)
        if s.kind == "projection" and s.key != current_key
    ]
    if active:
        st.caption(
            "Also running: " + "; ".join(f"{md_escape(s.label)} ({s.fraction:.0%})" for s in active)
        )


# -- its scores -----------------------------------------------------------------------------------


def _with_interval(
    quality: Mapping[str, Any], labels: Mapping[str, str], label: str, value: float
) -> str:
    """``0.912 ±0.004`` when the score has a sampled interval, else ``0.912``."""
    key = next(k for k, v in labels.items() if v == label)
    ci = quality.get(f"{key}_ci")
    if not ci or ci[0] is None or ci[1] is None or ci[0] == ci[1]:
        return f"{value:.3f}"
    return f"{value:.3f} ±{(ci[1] - ci[0]) / 2:.3f}"


def quality_metrics(projection: runs.Projection) -> None:
    labels = {
        "trustworthiness@10": "Trustworthiness@10",
        "continuity@10": "Continuity@10",
        "knn_preservation@10": "kNN preservation@10",
        "knn_accuracy@10": "kNN accuracy@10",
        "geodesic_spearman": "Geodesic Spearman",
    }
    shown = [
        (label, float(projection.quality[key]))
        for key, label in labels.items()
        if projection.quality.get(key) is not None
    ]
    cols = st.columns(len(shown) + 1)
    for col, (label, value) in zip(cols, shown, strict=False):
        col.metric(label, _with_interval(projection.quality, labels, label, value))
    cols[-1].metric("Seconds", "—" if projection.seconds is None else f"{projection.seconds:.1f}")
    sample = projection.quality.get("sample")
    intervals = [v for k, v in projection.quality.items() if k.endswith("_ci") and v]
    exact = bool(intervals) and all(v[0] == v[1] for v in intervals)
    st.caption(
        "Faithfulness of the layout to the neighbour graph"
        + (
            f", scored on every point ({sample:,})"
            if exact
            else f", scored on {sample:,} sampled points"
            + (" (± half a 95 % bootstrap interval over the points)" if intervals else "")
            if sample
            else ""
        )
        + ". Trustworthiness: are layout neighbours true neighbours; continuity: are true "
        "neighbours kept close; kNN preservation: share of each point's 10 neighbours kept; "
        "kNN accuracy: a 10-NN vote on the layout recovers the label column."
    )
    chosen = chosen_caption(projection).strip()
    if chosen:  # what the method chose and where it departs from its paper: a paragraph
        st.caption(chosen)
    fit_advice(projection)


def _switch_method(method: str) -> None:
    st.session_state["projections.method"] = method


def fit_advice(projection: runs.Projection) -> None:
    """Beside a heat-geodesic layout that measured poorly (its own trustworthiness@10, or a
    stored LargeVis / UMAP layout of the dataset scoring far better): say so, and offer
    LargeVis or UMAP (:func:`core.projections.runs.heatgeo_fit_advice`)."""
    advice = runs.heatgeo_fit_advice(get_store(), projection)
    if advice is None:
        return
    peer, peer_trust = advice.peer, advice.peer_trust
    better = peer is not None and peer_trust is not None and peer_trust > advice.trust
    suggest = peer.method if better and peer is not None else "largevis"
    why = (
        f"its trustworthiness@10 is {advice.trust:.3f}, below {runs.POOR_FIT_TRUST:.2f}: many "
        "of a point's neighbours in the layout are not its neighbours in the data"
        if advice.below_threshold
        else f"its trustworthiness@10 is {advice.trust:.3f}"
    )
    compared = ""
    if better and peer is not None and peer_trust is not None:
        pres = peer.quality.get(f"knn_preservation@{runs.QUALITY_K}")
        compared = (
            f" The stored {runs.METHOD_LABELS[peer.method]} {peer.dims}-D layout of this "
            f"dataset scores {peer_trust:.3f}"
            + (
                f" (kNN preservation@10 {pres:.3f} against {advice.knn_preservation:.3f})"
                if pres is not None and advice.knn_preservation is not None
                else ""
            )
            + "."
        )
    st.warning(
        "**Heat-geodesic is a poor fit for this dataset**: "
        + why
        + "."
        + compared
        + " Heat-geodesic distances suit points near one smooth manifold (the Swiss roll); on "
        "clustered high-dimensional embeddings such as text they saturate and MDS squeezes the "
        "clusters together. LargeVis or UMAP keep neighbourhoods better here.",
        icon="⚠️",
    )
    order = (suggest, *(m for m in ("largevis", "umap") if m != suggest))
    for col, method in zip(st.columns([1, 1, 3]), order, strict=False):
        col.button(
            f"Show {runs.METHOD_LABELS[method]} instead",
            key=f"projections.advice.{method}",
            on_click=_switch_method,
            args=(method,),
        )


def chosen_caption(projection: runs.Projection) -> str:
    """What the method chose for itself, as a sentence (empty when nothing is recorded)."""
    c = projection.chosen
    if "tau" in c:
        how = "chosen by the time-entropy knee" if c.get("tau_auto") else "set by hand"
        text = (
            f" Diffusion time τ = {c['tau']:.3g} ({how}), Chebyshev order {c['order']}, "
            f"{c['n_landmarks']:,} landmarks"
            + (
                f", heat kernel on {c['heat_points']:,} sampled points"
                if c.get("heat_sampled")
                else ""
            )
            + "."
        )
        if "mds" in c:
            path = {
                "reference": "the paper's (unit weights, steps 1 to 0.01)",
                "weighted": "weighted 1/d² (steps to 0.1)",
            }.get(c["mds"], str(c["mds"]))
            text += f" Metric MDS: {path}."
        if c.get("completed") and c.get("completed_pairs"):
            text += (
                f" Completion on: {c['completed_pairs']:,} of "
                f"{c.get('landmark_pairs', 0):,} landmark distances beyond the heat kernel's "
                "reach replaced by shortest paths (our addition)."
            )
        elif c.get("completed"):
            text += (
                " Completion on, but every landmark distance was within the heat kernel's "
                "reach: nothing replaced."
            )
        elif "completed" in c:
            text += " Completion off: saturated distances kept, as in the paper."
        return text + _departures_text(c, "the paper's method")
    if "n_epochs" in c:  # UMAP
        text = f" {c['n_epochs']:,} epochs from a {c.get('init', 'spectral')} start."
        return text + _departures_text(c, "umap-learn's defaults")
    if "total_samples" in c:  # LargeVis
        # what a departure already says is not said twice
        departures = c.get("differs_from_paper") or {}
        parts = [f"K = {c['n_neighbors']}", f"perplexity {c['perplexity']:g}"]
        if "samples" not in departures:
            parts.insert(0, f"{c['total_samples']:,} edge samples")
        if "start" not in departures:
            parts.append(f"{'PCA' if c['init'] == 'pca' else c['init']} start")
        return " " + ", ".join(parts) + "." + _departures_text(c, "the paper's method")
    return ""


def _departures_text(c: Mapping[str, Any], reference: str) -> str:
    """The sentence " Differs from <reference>: ...; ... ." from a recorded
    ``differs_from_paper`` (empty when none is recorded)."""
    departures = c.get("differs_from_paper")
    if not isinstance(departures, dict):
        return ""
    if not departures:
        return f" This is {reference} as its code runs it."
    return f" Differs from {reference}: " + "; ".join(map(str, departures.values())) + "."


# -- the gallery ----------------------------------------------------------------------------------


def _with_chosen(p: runs.Projection, name: str, value: Any) -> str:
    """A parameter as set, with the value the method chose for it where it chose one
    ("tau=auto (24.1)", "n_epochs=auto (50)"); a record (a preview's) is not a value."""
    chosen = p.chosen.get(name)
    if chosen is None or chosen == value or isinstance(chosen, Mapping):
        return str(value)
    shown = "auto" if value is None else value
    return f"{shown} ({chosen:.3g})" if isinstance(chosen, float) else f"{shown} ({chosen})"


# The gallery's score columns (three decimals); its rows (up to four lines each) shown at once.
GALLERY_ROWS = 8
GALLERY_ROW_HEIGHT = 78
_SCORES = ("trust@10", "continuity@10", "kNN pres.@10", "kNN acc.@10", "geodesic ρ")
ACCURACY_HELP = (
    "kNN accuracy@10: a 10-NN vote on the layout recovers the label column. It is scored "
    "when a layout is computed, on the dataset's label column of that moment; choose "
    "another categorical column above the table to score the stored layouts on it (their "
    "coordinates are read again, nothing is laid out anew)."
)


def _accuracy(p: runs.Projection, label: str | None, rescored: Mapping[str, Any]) -> float | None:
    """The layout's kNN accuracy on ``label``: its own score when it was scored on that
    column, else one scored since (:mod:`core.projections.label_scores`), else None."""
    if label is None:
        return None
    if p.label_column == label and p.quality.get("knn_accuracy@10") is not None:
        return float(p.quality["knn_accuracy@10"])
    score = rescored.get(p.fingerprint)
    return None if score is None else float(score.knn_accuracy)


def _gallery_rows(
    projections: list[runs.Projection],
    label: str | None = None,
    rescored: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per stored projection; only the columns with at least one value."""
    rows = []
    for p in projections:
        q = p.quality
        rows.append(
            {
                "method": runs.METHOD_LABELS.get(p.method, p.method),
                "dims": p.dims,
                "metric": p.metric,
                "seed": p.seed,
                "parameters": ", ".join(
                    f"{k}={_with_chosen(p, k, v)}"
                    for k, v in sorted(p.params.items())
                    if v is not None or k in p.chosen
                ),
                "trust@10": q.get("trustworthiness@10"),
                "continuity@10": q.get("continuity@10"),
                "kNN pres.@10": q.get("knn_preservation@10"),
                "kNN acc.@10": _accuracy(p, label, rescored or {}),
                "geodesic ρ": q.get("geodesic_spearman"),
                "differs from paper": ", ".join(p.chosen.get("differs_from_paper") or {}),
                "seconds": p.seconds,
                "created": p.created,
            }
        )
    frame = pd.DataFrame(rows)
    filled = [
        c
        for c in frame.columns
        if frame[c].notna().any() and not (frame[c].astype(str).str.strip() == "").all()
    ]
    return frame[filled]


def _label_columns(info: DatasetInfo) -> list[str]:
    """The metadata columns that can serve as class labels (not continuous, 2-200 values)."""
    return label_columns(info.id)


def _label_default(
    info: DatasetInfo, projections: list[runs.Projection], candidates: list[str]
) -> str:
    """The column most stored layouts were scored on; else the one the map is coloured by;
    else the dataset's label column; else the first that can be one."""
    scored = [p.label_column for p in projections if p.label_column in candidates]
    if scored:
        return max(set(scored), key=scored.count)
    for column in (st.session_state.get(f"projections.colour.{info.id}"),
                   runs.default_label_column(info)):  # fmt: skip
        if column in candidates:
            return str(column)
    return candidates[0]


def _gallery_label(info: DatasetInfo, projections: list[runs.Projection]) -> str | None:
    """The label column the gallery's kNN accuracy is shown on (chosen above the table)."""
    candidates = _label_columns(info)
    if not candidates:
        st.caption(
            "kNN accuracy needs a categorical metadata column (class labels): this dataset "
            "has none, so the layouts are scored without it."
        )
        return None
    key = f"projections.gallery.labels.{info.id}"
    if st.session_state.get(key) not in candidates:
        st.session_state[key] = _label_default(info, projections, candidates)
    cols = st.columns([1, 2])
    return str(
        cols[0].selectbox(
            "kNN accuracy on the label column", candidates, key=key, help=ACCURACY_HELP
        )  # fmt: skip
    )


def _rescore(
    info: DatasetInfo, projections: list[runs.Projection], label: str, frame: pd.DataFrame
) -> None:
    """Score the layouts that have no kNN accuracy on ``label`` yet, as a background job
    (stored: :mod:`core.projections.label_scores`), or show its progress."""
    if "kNN acc.@10" in frame.columns:
        missing = [p.fingerprint for p, v in zip(projections, frame["kNN acc.@10"], strict=True)
                   if pd.isna(v)]  # fmt: skip
    else:
        missing = [p.fingerprint for p in projections]
    if not missing:
        return
    request = widgets.guarded(
        lambda: label_scores.label_scores_request(get_store(), info.id, label, missing)
    )
    if request is None:
        return
    count = len(missing)
    layouts = f"{count} layout{'' if count == 1 else 's'}"
    artifact_or_job(
        label_scores.LABEL_SCORES,
        request,
        button=f"Score kNN accuracy on {md_escape(label)} ({layouts})",
        button_key=f"projections.gallery.rescore.{info.id}",
        caption=f"{count} of {len(projections)} layouts were not scored on "
        f"{md_escape(label)} when they were computed: the button scores their stored "
        "coordinates against it in the background (nothing is laid out again).",
    )


def gallery(info: DatasetInfo) -> None:
    """Every stored projection of the dataset with its parameters and scores (only the
    columns that have a value), the kNN accuracy on a label column of the reader's choice
    (scored again on demand); pick a row to open it."""
    store = get_store()
    projections = runs.list_projections(store, info.id)
    if not projections:
        st.caption("No projection of this dataset is stored yet.")
        return
    label = _gallery_label(info, projections)
    rescored = label_scores.stored_label_scores(store, info.id, label) if label else {}
    frame = _gallery_rows(projections, label, rescored)
    accuracy = "kNN acc.@10" if label is None else f"kNN acc.@10 ({label})"
    accuracy_help = ACCURACY_HELP if label is None else f"On {md_escape(label)}. {ACCURACY_HELP}"
    rows_shown = min(len(frame), GALLERY_ROWS)
    event = st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        # Rows of four lines: long parameters wrap (Streamlit wraps above 64 px) instead of
        # widening the table past the page; the widths fit 1,600 px with every column.
        row_height=GALLERY_ROW_HEIGHT,
        height=48 + rows_shown * GALLERY_ROW_HEIGHT,  # the header and up to GALLERY_ROWS rows
        on_select="rerun",
        selection_mode="single-row",
        key=f"projections.gallery.{info.id}",
        column_config={
            **{c: st.column_config.NumberColumn(format="%.3f", width=90) for c in _SCORES},
            "continuity@10": st.column_config.NumberColumn(format="%.3f", width=96),
            "kNN acc.@10": st.column_config.NumberColumn(
                accuracy, format="%.3f", width=140,
                help=accuracy_help,
            ),
            "method": st.column_config.TextColumn(pinned=True, width=80),
            "dims": st.column_config.NumberColumn(width=44),
            "metric": st.column_config.TextColumn(width=58),
            "seed": st.column_config.NumberColumn(width=44),
            "parameters": st.column_config.TextColumn(width=200),
            "differs from paper": st.column_config.TextColumn(width=110),
            "seconds": st.column_config.NumberColumn(format="%.1f", width=62),
            "created": st.column_config.DatetimeColumn(format="distance", width=116),
        },
    )  # fmt: skip
    if label is not None:
        _rescore(info, projections, label, frame)
    rows = event.selection.rows if event else []
    picked = rows[0] if rows else None
    if picked is not None:
        p = projections[picked]
        if st.button(f"Open {md_escape(p.label)}", key=f"projections.gallery.open.{p.fingerprint}"):
            open_stored(info, p)
            st.rerun()


def open_stored(info: DatasetInfo, p: runs.Projection) -> None:
    """Set the page's widgets to a stored projection's settings."""
    st.session_state["projections.method"] = p.method
    st.session_state["projections.dims"] = p.dims
    st.session_state["projections.seed"] = p.seed
    st.session_state[f"projections.metric.{info.id}"] = p.metric
    table = runs.PARAM_TABLES[p.method]
    if "preview" in table:  # a full layout's parameters leave the preview's out
        st.session_state[f"projections.{p.method}.preview"] = bool(p.preview)
    for name, value in p.params.items():
        key = f"projections.{p.method}.{name}"
        param = table.get(name)
        if param is not None and param.auto:
            st.session_state[key + ".auto"] = param.is_auto(value)
            if not param.is_auto(value):
                st.session_state[key] = value
        else:
            st.session_state[key] = value
