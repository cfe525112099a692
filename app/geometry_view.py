"""The Geometry page's sections: the scorecard, its plots, comparison, post-processing, export."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, glossary, plot_style, scatter, share, state, widgets
from embscope.app.access import read_only, require_writable
from embscope.app.cache import (
    hover_texts,
    isotropy_before_after,
    pca_layout_of,
    projection_coords,
)
from embscope.app.choices import GEOMETRY_METRICS
from embscope.app.jobs import (
    artifact_or_job,
    job_panel,
    job_refusal,
    start_index_job,
    submit_for_session,
)
from embscope.app.runtime import get_job_runner, get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.core.derive import save_derived_dataset
from embscope.core.errors import InvalidInputError
from embscope.core.export import csv_bytes
from embscope.core.geometry.postprocess import POSTPROCESSORS
from embscope.core.geometry.scorecard import (
    REFERENCES,
    SCORECARDS,
    SCORES,
    Scorecard,
    get_or_compute_scorecard,
    scorecard_key,
    scorecard_request,
)
from embscope.core.projections import runs
from embscope.core.store import DatasetInfo

GROUPS = {
    "Isotropy": [
        "isoscore", "avg_cosine", "partition_isotropy", "effective_rank",
        "participation_ratio", "pca_n90", "pca_n95", "pca_n99",
    ],
    "Intrinsic dimension": ["twonn", "twonn_mle", "mle", "lid_median", "lid_mean", "dse"],
    "Hubness and duplicates": ["hubness_skew", "n_duplicates"],
}  # fmt: skip
LABELS = {
    "isoscore": "IsoScore",
    "isoscore_reference": "IsoScore of an isotropic Gaussian (same n, d)",
    "avg_cosine": "Average cosine",
    "partition_isotropy": "Partition isotropy I(W)",
    "effective_rank": "Effective rank",
    "effective_rank_reference": "Effective rank of an isotropic Gaussian (same n, d)",
    "participation_ratio": "Participation ratio",
    "pca_n90": "PCs for 90 %",
    "pca_n95": "PCs for 95 %",
    "pca_n99": "PCs for 99 %",
    "twonn": "TwoNN",
    "twonn_mle": "TwoNN (MLE)",
    "mle": "MLE (k = 20)",
    "lid_median": "LID median",
    "lid_mean": "LID mean",
    "dse": "Diffusion spectral entropy (DSE)",
    "dse_ceiling": "Diffusion spectral entropy (DSE) ceiling: log2 of its sample size",
    "hubness_skew": "k-occurrence skewness",
    "n_duplicates": "Duplicate vectors",
}
COLOUR_BY = ("LID", "k-occurrence")
ID_ONLY = "(id only)"
TRANSFORM_LABELS = {
    "mean_centre": "mean-centring",
    "whiten": "whitening",
    "all_but_the_top": "all-but-the-top (remove the top principal directions)",
}


# How a score's reference is named beside it (where the scorecard's own name is a formula).
REFERENCE_NAMES = {"dse_ceiling": "at most log2(sample size)"}


def fmt(value: Any) -> str:
    """A score as text, as every number on the page: 3 significant digits (0.0825, 0.199,
    77.2), whole numbers whole with separators, NaN/None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return plot_style.fmt_num(value)
    return str(value)


def expand_dse(text: str) -> str:
    """``text`` with its first bare "DSE" written out: "diffusion spectral entropy (DSE)"."""
    at = text.find("DSE")
    if at < 0 or text[max(at - 1, 0)] == "(":
        return text
    words = "Diffusion spectral entropy (DSE)" if at == 0 else "diffusion spectral entropy (DSE)"
    return text[:at] + words + text[at + 3 :]


def explanation(key: str) -> str:
    """What the score ``key`` means, without repeating its label ("IsoScore: IsoScore: ...")."""
    return glossary.without_label(LABELS.get(key, key), SCORES.get(key, ""))


def _k_max(info: DatasetInfo) -> int:
    return max(1, min(100, info.n - 1))


def apply_url(info: DatasetInfo, link: share.Link | None = None) -> None:
    """Set the page from a share link: ``k``, ``metric``, the colour and hover of the PCA
    view (``color``, ``hover``), the datasets compared (``compare=2,3``), the transform and
    whether its preview is shown. Does nothing when there is no new link."""
    link = share.link("geometry") if link is None else link
    if not link:
        return
    others = [d.id for d in get_store().list_datasets() if d.id != info.id]
    metric = link.choice("metric", GEOMETRY_METRICS)
    if metric is not None:
        state.metric_from_link("geometry", info, metric)
    for key, value in (
        ("k", link.integer("k", 1, _k_max(info))),
        ("colour_by", link.choice("color", COLOUR_BY)),
        ("hover", link.choice("hover", [ID_ONLY, *info.metadata_columns])),
        ("compare", link.values("compare", options=others, sep=",")),
        ("transform", link.choice("transform", TRANSFORM_LABELS)),
        ("preview", link.flag("preview")),
    ):
        if value is not None:
            st.session_state[f"geometry.{key}"] = value


def write_url(info: DatasetInfo, options: dict[str, Any]) -> None:
    """Make the address bar the link to this view."""
    get = st.session_state.get
    compared = get("geometry.compare") or []
    preview = bool(get("geometry.preview"))
    transform = get("geometry.transform")
    share.write(
        "geometry",
        {
            **options,
            # the view's defaults are left out: a short link is easier to paste
            "color": get("geometry.colour_by") if get("geometry.colour_by") != "LID" else None,
            "hover": get("geometry.hover") if get("geometry.hover") != ID_ONLY else None,
            "compare": ",".join(map(str, compared)) if compared else None,
            "transform": transform
            if preview or transform != next(iter(TRANSFORM_LABELS))
            else None,
            "preview": 1 if preview else None,
        },
    )


def settings(info: DatasetInfo) -> dict[str, Any]:
    """k (for hubness) and the metric of the neighbour graph."""
    if not 1 <= st.session_state.get("geometry.k", 10) <= _k_max(info):
        st.session_state["geometry.k"] = min(10, _k_max(info))  # set on a larger dataset
    st.session_state.setdefault("geometry.k", min(10, _k_max(info)))
    left, right = st.columns(2)
    k = left.number_input(
        "k (hubness)", min_value=1, max_value=_k_max(info), key="geometry.k",
        help="Neighbours per point for the k-occurrence counts.",
    )  # fmt: skip
    state.metric_for_dataset("geometry", info, GEOMETRY_METRICS)
    metric = right.selectbox(
        "Metric", GEOMETRY_METRICS, key="geometry.metric",
        help="Default: the dataset's; an inner-product dataset is scored with cosine (the "
        "scorecard is defined for cosine and l2)." if info.metric == "ip" else
        "Default: the dataset's.",
    )  # fmt: skip
    return {"k": int(k), "metric": metric}


def scorecard(info: DatasetInfo, options: dict[str, Any]) -> Scorecard | None:
    """The stored scorecard; else its job's progress (with Cancel); else a Compute button."""
    request = widgets.guarded(lambda: scorecard_request(get_store(), info.id, **options))
    if request is None:
        return None
    return artifact_or_job(
        SCORECARDS,
        request,
        button="Compute the scorecard",
        button_key="geometry.run",
        caption="The scorecard reads the dataset's shared neighbour graph (built first if "
        "needed) and is stored, so it shows at once next time. It runs in the background: you "
        "can leave the page and come back.",
    )


def _reference(card: Scorecard, key: str) -> str | None:
    """The score's finite-sample reference as a metric's grey delta, e.g. "isotropic
    Gaussian of the same n, d: 0.9688"; None for other scores (and older scorecards)."""
    if key not in REFERENCES or REFERENCES[key][0] not in card.values:
        return None
    ref_key, what = REFERENCES[key]
    return f"{REFERENCE_NAMES.get(ref_key, what)}: {fmt(card.values[ref_key])}"


def reference_captions(card: Scorecard) -> dict[str, str]:
    """By group, a sentence that says what to read IsoScore, effective rank and DSE against,
    so that a small dataset does not read as anisotropic (or a small DSE sample as simple)."""
    v = card.values
    out: dict[str, str] = {}
    if "isoscore_reference" in v and "effective_rank_reference" in v:
        out["Isotropy"] = (
            "A finite sample of perfectly isotropic data does not score 1: an isotropic "
            f"Gaussian of the same size ({fmt(v.get('n'))} vectors in {fmt(v.get('dim'))} "
            f"dimensions) has IsoScore {fmt(v['isoscore_reference'])} and effective rank "
            f"{fmt(v['effective_rank_reference'])}. Read this dataset's IsoScore and effective "
            "rank against those, not against 1 and the dimension: with few vectors per "
            "dimension, even ideal data look anisotropic."
        )
    if "dse_ceiling" in v:
        out["Intrinsic dimension"] = (
            f"Diffusion spectral entropy (DSE) is at most log2 of its sample size: {fmt(v['dse_ceiling'])} bits on "
            f"{fmt(v.get('dse_n'))} points. Compare DSE across datasets as a fraction of this "
            "ceiling: a smaller sample has a lower one."
        )
    return out


def show_scorecard(card: Scorecard) -> None:
    """Every score with its one-line explanation, grouped; IsoScore, effective rank and DSE
    beside their finite-sample reference (as a grey delta and a caption)."""
    if card.notes:
        st.info(
            "\n".join(f"- {md_escape(expand_dse(note))}" for note in card.notes),
            icon=":material/info:",
        )
    captions = reference_captions(card)
    for group, keys in GROUPS.items():
        st.markdown(f"**{group}**")
        cols = st.columns(4)
        for i, key in enumerate(keys):
            cols[i % 4].metric(
                LABELS[key], fmt(card.values.get(key)), help=explanation(key) or None,
                delta=_reference(card, key), delta_color="off", delta_arrow="off",
            )  # fmt: skip
        if group in captions:
            st.caption(captions[group])
        with st.expander(f"What the {group.lower()} scores mean"):
            lines = []
            for key in keys:
                lines.append(f"- **{LABELS[key]}**: {md_escape(explanation(key))}")
                if key in REFERENCES:
                    ref_key = REFERENCES[key][0]
                    lines.append(f"- **{LABELS[ref_key]}**: {md_escape(explanation(ref_key))}")
            st.markdown("\n".join(lines))


def plots(info: DatasetInfo, card: Scorecard) -> None:
    """The plots people would rather look at than read, and the hubs with their metadata."""
    left, right = st.columns(2)
    left.plotly_chart(figures.spectrum_figure(card.spectrum), key="geometry.spectrum")
    right.plotly_chart(figures.twonn_figure(card.twonn), key="geometry.twonn")
    left, right = st.columns(2)
    left.plotly_chart(
        figures.histogram_figure(card.lid, title="Local intrinsic dimension (k = 20)",
                                 x_title="LID"),
        key="geometry.lid",
    )  # fmt: skip
    hub = card.hubness
    right.plotly_chart(
        figures.histogram_figure(hub.k_occurrence, title=f"k-occurrence (k = {hub.k})",
                                 x_title=f"N{hub.k}: how often a point is a neighbour",
                                 log_y=True),
        key="geometry.kocc",
    )  # fmt: skip
    st.markdown(
        f"**Hubs**: the points that appear in the most neighbour lists "
        f"({hub.n_antihubs:,} anti-hubs appear in none)."
    )
    rows = get_store().load_rows(info.id, hub.hubs)
    rows.insert(2, f"N{hub.k}", hub.k_occurrence[hub.hubs])
    st.dataframe(rows, hide_index=True, width="stretch", key="geometry.hubs")
    if hub.antihubs.size:
        with st.expander("Anti-hubs (never anyone's neighbour)"):
            st.dataframe(get_store().load_rows(info.id, hub.antihubs), hide_index=True)


def best_layout(info: DatasetInfo) -> runs.Projection | None:
    """The dataset's stored 2-D projection that keeps neighbourhoods best (highest
    trustworthiness@10, then kNN preservation@10), or None when none is stored."""
    layouts = [p for p in runs.list_projections(get_store(), info.id) if p.dims == 2]
    return scatter.best_layout(layouts)


def where(info: DatasetInfo, card: Scorecard) -> None:
    """A map coloured by a per-point score: where the data is high-dimensional, or where the
    hubs are. The map is the dataset's most faithful stored layout, else its PCA."""
    left, right = st.columns(2)
    which = left.radio(
        "Colour the map by", COLOUR_BY, horizontal=True, key="geometry.colour_by",
    )  # fmt: skip
    columns = [ID_ONLY, *info.metadata_columns]
    if st.session_state.get("geometry.hover") not in columns:  # a column of another dataset
        st.session_state.pop("geometry.hover", None)
    hover_col = right.selectbox("Hover text", columns, key="geometry.hover")
    layout = best_layout(info)
    if layout is not None:
        coords = projection_coords(layout.fingerprint)
        method = runs.METHOD_LABELS.get(layout.method, layout.method)
        name, axes = f"{layout.title} layout", (f"{method} 1", f"{method} 2")
        trust = layout.quality.get(f"trustworthiness@{runs.QUALITY_K}")
        caption = (
            f"The dataset's most faithful stored layout: {md_escape(layout.label)}"
            + (f", trustworthiness@{runs.QUALITY_K} {fmt(trust)}" if trust is not None else "")
            + ". The Projections page makes others."
        )
    else:
        coords = pca_layout_of(info.id)
        name, axes = "PCA projection", ("PC 1", "PC 2")
        caption = (
            "The first two principal components. A layout made on the Projections page "
            "(UMAP, LargeVis) keeps neighbourhoods this linear view blurs, and is shown here "
            "once stored."
        )
    hover = hover_texts(info.id, None if hover_col == ID_ONLY else hover_col)
    if which == "LID":
        color, title = card.lid, "LID"
    else:
        color, title = card.hubness.k_occurrence, f"N{card.hubness.k}"
    st.plotly_chart(
        figures.scatter_figure(coords, color=color, color_title=title, hover=hover,
                               title=f"{name} coloured by {which}", axis_titles=axes),
        key="geometry.where",
    )  # fmt: skip
    st.caption(caption)


def export(info: DatasetInfo, card: Scorecard) -> None:
    """Download the scorecard as JSON or CSV: a health report a team can keep."""
    report = {"dataset": info.name, "dataset_id": info.id, **card.to_json()}
    left, right = st.columns(2)
    left.download_button(
        "Download the scorecard (JSON)", json.dumps(report, indent=2, ensure_ascii=False),
        file_name=f"scorecard-{info.id}.json", mime="application/json",
        key="geometry.export_json",
    )  # fmt: skip
    frame = pd.DataFrame(
        [{"score": k, "value": v, "meaning": SCORES.get(k, "")} for k, v in card.to_json().items()
         if k != "notes"]
    )  # fmt: skip
    right.download_button(
        "Download the scorecard (CSV)", csv_bytes(frame),
        file_name=f"scorecard-{info.id}.csv", mime="text/csv", key="geometry.export_csv",
    )  # fmt: skip


def compare(info: DatasetInfo, options: dict[str, Any]) -> None:
    """Scorecards of several datasets side by side (the stored ones; others on request)."""
    store = get_store()
    others = [d for d in store.list_datasets() if d.id != info.id]
    if not others:
        return
    names = {d.id: f"{d.name} ({d.n:,} × {d.dim})" for d in others}
    picked = st.session_state.get("geometry.compare")
    if picked is not None and not set(picked) <= set(names):  # picked on another dataset
        st.session_state["geometry.compare"] = [i for i in picked if i in names]
    chosen = st.multiselect(
        "Compare with", [d.id for d in others],
        format_func=lambda i: names[i],
        key="geometry.compare",
    )  # fmt: skip
    if not chosen:
        return
    columns: dict[str, dict[str, Any]] = {}
    missing = []
    for ds in [info, *[store.get_dataset(i) for i in chosen]]:
        card = widgets.guarded(
            partial(get_or_compute_scorecard, store, ds.id, run=False, **options)
        )
        if card is None:
            missing.append(ds)
            continue
        columns[f"{ds.name} (id {ds.id})"] = {LABELS.get(k, k): fmt(v)
                                               for k, v in card.values.items()}  # fmt: skip
    if columns:
        # Scores in the scorecard's order (a frame built from dicts would sort them by name),
        # each reference right below its score.
        order = [
            LABELS[x]
            for keys in GROUPS.values()
            for k in keys
            for x in (k, *([REFERENCES[k][0]] if k in REFERENCES else []))
        ]
        rest = [r for col in columns.values() for r in col if r not in order]
        index = order + list(dict.fromkeys(rest))
        frame = pd.DataFrame(columns).reindex(index)
        st.dataframe(frame, width="stretch", key="geometry.compare_table")
    running = [ds for ds in missing if _scorecard_job_active(ds, options)]
    for ds in running:
        job_panel(scorecard_key(store, ds.id, **options))
    waiting = [ds for ds in missing if ds not in running]
    if waiting and st.button(
        f"Compute the missing scorecard(s): {', '.join(md_escape(d.name) for d in waiting)}",
        key="geometry.compare_run",
    ):
        for ds in waiting:
            refusal = job_refusal()
            if refusal is not None:
                st.warning(refusal)
                return
            submit_for_session(SCORECARDS, scorecard_request(store, ds.id, **options))
        st.rerun()


def _scorecard_job_active(info: DatasetInfo, options: dict[str, Any]) -> bool:
    status = get_job_runner().status(scorecard_key(get_store(), info.id, **options))
    return status is not None and status.active


def postprocess(info: DatasetInfo) -> None:
    """Mean-centring, whitening or all-but-the-top: isotropy before and after, and a save."""
    transform: str = st.selectbox(
        "Transform", list(TRANSFORM_LABELS), format_func=lambda name: TRANSFORM_LABELS[name],
        key="geometry.transform",
    ) or next(iter(TRANSFORM_LABELS))  # fmt: skip
    if not st.toggle("Show the isotropy scores before and after", key="geometry.preview"):
        return
    before, after = isotropy_before_after(info.id, transform)
    st.dataframe(
        pd.DataFrame(
            {
                "before": {k: fmt(v) for k, v in before.items()},
                f"after {TRANSFORM_LABELS[transform]}": {k: fmt(v) for k, v in after.items()},
            }
        ),
        width="stretch", key="geometry.before_after",
    )  # fmt: skip
    if read_only():
        st.caption("Read-only demo: saving the result as a new dataset is turned off.")
        return
    name = st.text_input("Save as a new dataset named", value=f"{info.name} · {transform}",
                         key="geometry.derived_name")  # fmt: skip
    if st.button("Save as a new dataset", key="geometry.save_derived"):
        try:
            require_writable("save a derived dataset")
            Y = POSTPROCESSORS[transform](get_neighbour_service().vectors(info.id))
            new = save_derived_dataset(get_store(), info.id, Y, name=name, transform=transform)
        except InvalidInputError as exc:
            widgets.show_error(exc)
            return
        start_index_job(new)  # ready for its first query
        widgets.note_for(
            f"geometry.save_derived.{info.id}",
            f"Saved dataset {new.id} “{new.name}”: pick it in the sidebar, or open it here.",
            toast=f"Saved {new.name}",
            link=("geometry.py", f"Open {new.name} on the Geometry page",
                  {"dataset": str(new.id)}),
        )  # fmt: skip
        st.rerun()
    widgets.show_note(f"geometry.save_derived.{info.id}")
