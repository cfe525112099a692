"""The Compression page's parts: choose codecs, run in the background, table, Pareto, harm map."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from embscope.app import figures, share, state, widgets
from embscope.app.access import read_only, require_writable
from embscope.app.cache import id_row_map
from embscope.app.jobs import artifact_or_job, start_index_job
from embscope.app.runtime import get_store
from embscope.app.scatter import Panel, draw, hover_for, layout_choice, linked_pair, make_panel
from embscope.app.selection import current_selection, selection_list, update_selection
from embscope.app.text import md_escape
from embscope.core.compression import SPEC_GRAMMAR, as_codec, save_compressed_copy
from embscope.core.compression import runs as crun
from embscope.core.compression.evaluate import CompressionReport
from embscope.core.errors import InvalidInputError
from embscope.core.export import csv_bytes
from embscope.core.projections import runs as prun
from embscope.core.stats import format_ci
from embscope.core.store import DatasetInfo
from embscope.core.validation import METRICS

FAMILY_HELP = (
    "float16/int8/LVQ keep every dimension with fewer bits; LeanVec reduces with PCA then "
    "quantises; binary keeps one bit a dimension; PQ stores one byte per sub-vector; PCA, "
    "random projection (rp), truncation (Matryoshka) and DCT keep fewer dimensions. "
    "Two-level LVQ-B1xB2 adds a B2-bit code of each vector's residual on the paper's grid "
    "Q(r; B2, −Δ/2, Δ/2) (2^B2 levels from −Δ/2 to Δ/2, Δ the first level's step); like "
    "LeanVec (reduced primary, full secondary) it searches with its first level and re-ranks "
    "the shortlist with its second."
)

HOW_MEASURED = """\
- **Recall** is the mean over the query rows, shown ± half its 95 % interval (percentile
  bootstrap over queries; a lopsided interval is shown as its two ends).
- **Two-level codecs** (LVQ-B1×B2, LeanVec with a secondary) are scored alike, as SVS runs
  them: *recall* is their **first stage alone** (LVQ-B1 codes; LeanVec's reduced primary,
  named in *first stage*) and *re-ranked* re-ranks that stage's top r·k with their **own
  second level**, which is already in their bytes. Every other codec re-ranks with the
  **float32** vectors, which two-stage search must then hold too: its *bytes re-ranked* (and
  its point on the re-ranked Pareto plot) is the code plus 4·d bytes.
- **Geometry** of a compressed copy is set beside the float32 vectors' at the **same
  dimension** on the same rows: the float32 vectors themselves for codecs that keep every
  dimension, their own top-k principal components for PCA, random projection, truncation and
  DCT to k dimensions (IsoScore and effective rank depend on the dimension, so a k-dim copy
  beside the d-dim original would compare unlike things). PCA-k then matches its reference.
"""


MAX_CODECS = 24


def _metric_key(info: DatasetInfo) -> str:
    return f"compression.metric.{info.id}"


def apply_url(info: DatasetInfo, link: share.Link | None = None) -> None:
    """Set the page from a share link: ``metric``, ``queries``, ``k``, ``rescore`` and the
    codecs (``codecs=int8,binary,pq:48``). Does nothing when there is no new link."""
    link = share.link("compression") if link is None else link
    if not link:
        return
    metric = link.choice("metric", METRICS)
    if metric is not None:
        st.session_state[_metric_key(info)] = metric
    for name, key, low, high in (
        ("queries", f"compression.queries.{info.id}", min(10, info.n), info.n),
        ("k", "compression.k", 1, 100),
        ("rescore", "compression.rescore", 1, 50),
    ):
        value = link.integer(name, low, high)
        if value is not None:
            st.session_state[key] = value
    given = link.values("codecs", sep=",", max_count=MAX_CODECS)
    if given is None:
        return
    metric = st.session_state.get(_metric_key(info), prun.default_metric(info))
    specs = []
    for text in given:
        try:
            codec = as_codec(text)
        except InvalidInputError as exc:
            link.ignore("codecs", text, str(exc))
            continue
        if metric not in codec.metrics:
            link.ignore("codecs", text, f"it cannot serve the {metric} metric")
        elif codec.spec not in specs:
            specs.append(codec.spec)
    defaults = crun.resolve_specs(None, dim=info.dim, n=info.n, metric=metric)
    extra_key = f"compression.extra.{info.id}"
    extra = state.get(extra_key, [])
    state.put(extra_key, [*extra, *[s for s in specs if s not in defaults and s not in extra]])
    st.session_state[f"compression.codecs.{info.id}.{metric}"] = specs


def write_url(info: DatasetInfo, options: dict[str, Any]) -> None:
    """Make the address bar the link to this view."""
    share.write(
        "compression",
        {
            "metric": options["metric"],
            "queries": options["n_queries"],
            "k": options["k"],
            "rescore": options["rescore"],
            "codecs": ",".join(options["codecs"]),
        },
    )


def settings(info: DatasetInfo) -> dict[str, Any]:
    # Defaults through session state, because share links set these too.
    st.session_state.setdefault(_metric_key(info), prun.default_metric(info))
    st.session_state.setdefault(f"compression.queries.{info.id}", min(1000, info.n))
    st.session_state.setdefault("compression.k", 10)
    st.session_state.setdefault("compression.rescore", 4)
    cols = st.columns(4)
    metric = cols[0].selectbox("Metric", METRICS, key=_metric_key(info))
    n_queries = int(
        cols[1].number_input(
            "Queries", min(10, info.n), info.n, key=f"compression.queries.{info.id}",
            help="Rows used as queries (left out of their own results). They are the points "
            "the harm map colours: use all rows to colour every point.",
        )
    )  # fmt: skip
    k = int(cols[2].number_input("k", 1, 100, key="compression.k"))
    rescore = int(
        cols[3].number_input(
            "Rescore ×", 1, 50, key="compression.rescore",
            help="Re-rank the compressed top r·k with the full vectors.",
        )
    )  # fmt: skip
    defaults = crun.resolve_specs(None, dim=info.dim, n=info.n, metric=metric)
    extra_key = f"compression.extra.{info.id}"
    extra = state.get(extra_key, [])
    options = [*defaults, *[e for e in extra if e not in defaults]]
    codecs_key = f"compression.codecs.{info.id}.{metric}"
    chosen = st.session_state.get(codecs_key)
    added = state.get(f"compression.added.{info.id}")
    if chosen is None or added or not set(chosen) <= set(options):
        chosen = [*defaults, *extra] if chosen is None else [*chosen, *([added] if added else [])]
        st.session_state[codecs_key] = [c for c in dict.fromkeys(chosen) if c in options]
        state.put(f"compression.added.{info.id}", None)
    pick, add = st.columns([4, 2])
    specs = pick.multiselect("Codecs", options, key=codecs_key, help=FAMILY_HELP)
    with add:
        with st.form(f"compression.add.{info.id}", clear_on_submit=True, border=False):
            text = st.text_input(
                "Add a codec (another budget)",
                placeholder="e.g. pq:96, pca:128, lvq:4, binary:centred",
                help="Spec grammar: " + SPEC_GRAMMAR,
            )
            if st.form_submit_button("Add") and text.strip():
                try:
                    spec = as_codec(text.strip()).spec
                except InvalidInputError as exc:
                    widgets.show_error(exc)
                else:
                    if spec not in defaults and spec not in extra:
                        state.put(extra_key, [*extra, spec])
                    state.put(f"compression.added.{info.id}", spec)  # and chosen
                    st.rerun()
    return {"codecs": specs, "metric": metric, "n_queries": n_queries, "k": k, "rescore": rescore}


def stored_or_job(info: DatasetInfo, options: dict[str, Any]) -> CompressionReport | None:
    """The stored report for these settings, or its job's progress, or a Run button."""
    if not options["codecs"]:
        st.info("Choose at least one codec.")
        return None
    request = widgets.guarded(lambda: crun.compression_request(get_store(), info.id, **options))
    if request is None:
        return None
    return artifact_or_job(
        crun.COMPRESSION,
        request,
        button="Run the comparison",
        button_key="compression.run",
        caption="Fits each codec on the dataset, searches with the compressed vectors and "
        "measures recall against exact float32 search (with 95 % intervals), with and without "
        "re-ranking, plus rank fidelity (Spearman of pair similarities), size, time and the "
        "compressed copy's geometry. Runs in the background.",
    )


def _with_interval(values: Any, intervals: Any) -> list[str]:
    """Each mean as ``0.877 ± 0.012`` (core.stats.format_ci); "–" where not measured."""
    out = []
    for value, ci in zip(values, intervals, strict=True):
        if value is None or ci is None or np.isnan(value):
            out.append("–")
        else:
            lo, hi = (np.nan if c is None else float(c) for c in ci)
            out.append(format_ci(float(value), (lo, hi)))
    return out


def results(report: Any) -> None:
    frame = report.to_frame()
    k = report.k
    shown = frame[
        [
            # what each codec costs first (size, recall, rank fidelity, geometry), then how
            "codec", "bytes_per_vector", "compression_ratio", f"recall@{k}",
            f"recall@{k}_rescored", "rescored_with", "bytes_per_vector_rescored", "recall@100",
            "spearman", "isoscore", "reference_isoscore", "effective_rank",
            "reference_effective_rank", "dim", "first_stage", "shared_bytes", "encode_seconds",
            "query_seconds",
        ]
    ].copy()  # fmt: skip
    for key in (f"recall@{k}", f"recall@{k}_rescored", "recall@100"):
        shown[key] = _with_interval(frame[key], frame[key + "_ci"])
    ci = "± half the 95 % interval (bootstrap over queries)"
    st.dataframe(
        shown, hide_index=True, width="stretch",
        column_config={
            "compression_ratio": st.column_config.NumberColumn("× smaller", format="%.1f"),
            f"recall@{k}": st.column_config.TextColumn(
                f"recall@{k}", help=f"Mean recall@{k} over the query rows {ci}. Two-level "
                "codecs (LVQ-B1×B2, LeanVec): their first stage alone (see 'first stage').",
            ),
            f"recall@{k}_rescored": st.column_config.TextColumn(
                f"recall@{k} ×{report.rescore} re-ranked",
                help=f"recall@{k} after re-ranking the top {report.rescore}·{k} with the "
                f"representation in 're-ranked with', {ci}.",
            ),
            "rescored_with": st.column_config.TextColumn("re-ranked with"),
            "bytes_per_vector_rescored": st.column_config.NumberColumn(
                "bytes re-ranked", format="%d",
                help="Bytes per vector two-stage search holds: the code plus the re-ranking "
                f"representation (float32: 4·d = {4 * report.dim:,}; a codec's own second "
                "level is already in its code).",
            ),
            "recall@100": st.column_config.TextColumn("recall@100", help=f"Mean recall@100 {ci}."),
            "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.4f"),
            "dim": st.column_config.NumberColumn("dims", format="%d"),
            "isoscore": st.column_config.NumberColumn(
                "IsoScore", format="%.3f", help=_geometry_help("isoscore")
            ),
            "reference_isoscore": st.column_config.NumberColumn(
                "IsoScore float32, same dims", format="%.3f", help=_REFERENCE_HELP
            ),
            "effective_rank": st.column_config.NumberColumn(
                "eff. rank", format="%.1f", help=_geometry_help("effective_rank")
            ),
            "reference_effective_rank": st.column_config.NumberColumn(
                "eff. rank float32, same dims", format="%.1f", help=_REFERENCE_HELP
            ),
            "first_stage": st.column_config.TextColumn(
                "first stage", help=f"Two-level codecs: what recall@{k} searched with."
            ),
            "encode_seconds": st.column_config.NumberColumn("encode s", format="%.2f"),
            "query_seconds": st.column_config.NumberColumn("query s", format="%.2f"),
        },
    )  # fmt: skip
    st.caption(
        f"{report.n:,} × {report.dim} vectors, {report.metric}; {len(report.query_rows):,} "
        f"query rows{' held out' if report.held_out else ' (each left out of its own results)'}; "
        f"exact search of all queries took {report.ground_truth_seconds:.2f} s. Recall: mean "
        f"over the query rows {ci}. Bytes per vector include per-vector constants; shared "
        "bytes (codebooks, ranges, projections) are stored once. " + _geometry_caption(report)
    )
    with st.expander("What these numbers measure"):
        st.markdown(HOW_MEASURED)
    st.download_button(
        "Table (CSV)", csv_bytes(frame), "compression.csv", "text/csv",
        key="compression.csv",
    )  # fmt: skip
    rescored = st.toggle("Plot recall after re-ranking", key="compression.pareto_rescored")
    st.plotly_chart(
        figures.pareto_figure(frame, k=k, rescored=rescored), width="stretch",
        key="compression.pareto",
    )  # fmt: skip
    st.caption(_pareto_caption(report, rescored))


def _pareto_caption(report: Any, rescored: bool) -> str:
    bars = "Error bars: 95 % intervals (bootstrap over queries)."
    if rescored:
        return (
            f"Each re-ranked point sits at the bytes two-stage search holds: the code plus the "
            f"representation that re-ranks its top {report.rescore}·{report.k}, named in the "
            f"legend and on hover: float32 vectors (4·d = {4 * report.dim:,} bytes per vector) "
            "for one-level codecs; LVQ-B1×B2 and LeanVec re-rank with their own second level, "
            f"already in their code. {bars}"
        )
    return (
        "Each point: recall of the compressed search against the code's bytes per vector; "
        "for LVQ-B1×B2 and LeanVec, their first stage alone, placed at their whole code (both "
        f"levels are stored). {bars}"
    )


def _geometry_caption(report: Any) -> str:
    if report.original_isoscore is None or report.geometry_rows == 0:
        return ""  # a report stored before geometry was measured
    rows = (
        f"all {report.geometry_rows:,} rows"
        if report.geometry_rows >= report.n_database
        else f"{report.geometry_rows:,} sampled rows"
    )
    return (
        f"Geometry of each compressed copy on {rows}: IsoScore (1 = variance equal in every "
        "direction) and effective rank, each beside the float32 vectors' at the same "
        "dimension on the same rows: for codecs that keep all "
        f"{report.dim} dimensions, the float32 vectors score {report.original_isoscore:.3f} "
        f"and {report.original_effective_rank:.1f}; a copy reduced to k dimensions is set "
        "beside the float32 vectors' own top-k principal components, never beside the "
        f"{report.dim}-dimensional original (both scores depend on the dimension)."
    )


_REFERENCE_HELP = (
    "The float32 vectors on the same rows at the copy's dimension: themselves for codecs that "
    "keep every dimension, their own top-k principal components for copies reduced to k "
    "dimensions (PCA-k matches it; what another reducer shows beside it is its own doing)."
)


def _geometry_help(score: str) -> str:
    return {
        "isoscore": "IsoScore of the compressed copy (0: all variance on one line, 1: equal in "
        "every direction); compare it with the float32 column at the same dimension",
        "effective_rank": "Effective rank of the compressed copy (how many directions carry "
        "its variance); compare it with the float32 column at the same dimension",
    }[score]


def harm_map(info: DatasetInfo, report: Any) -> None:
    """Each query point coloured by how many of its true neighbours the codec still finds."""
    specs = [r.spec for r in report.results]
    cols = st.columns([2, 3])
    spec = cols[0].selectbox(
        "Codec", specs, index=specs.index("binary") if "binary" in specs else 0,
        key=f"compression.harm.{info.id}",
    )  # fmt: skip
    with cols[1]:
        coords, label = layout_choice(info, f"compression.layout.{info.id}")
    result = report.result(spec)
    values = np.full(info.n, np.nan)
    values[report.query_rows] = result.overlap
    title = f"recall@{report.k} of {spec}"
    panel = Panel(
        info, coords, f"Where {spec} hurts ({label})", values, False, title,
        hover_for(info, []),
    )  # fmt: skip
    fig, event, redrawn = draw(panel, selected=current_selection(info), key="compression.map")
    if event is not None and update_selection(
        info, "compression.map", figures.selected_rows(fig, event), redrawn=redrawn
    ):
        st.rerun()
    hurt = result.overlap < 0.5
    st.caption(
        f"Colour: the share of each query point's {report.k} true neighbours that "
        f"{md_escape(spec)} still returns (grey points were not queries). "
        f"{int(hurt.sum()):,} of {hurt.size:,} query points keep fewer than half."
    )
    selection_list(info, coords=coords, metric=report.metric)


def _save_copy(info: DatasetInfo, report: Any) -> None:
    cols = st.columns([2, 1, 3])
    spec = cols[0].selectbox(
        "Save a compressed copy", [r.spec for r in report.results],
        key=f"compression.save_spec.{info.id}",
    )  # fmt: skip
    cols[1].write("")
    if cols[1].button("Save as dataset", key="compression.save"):
        try:
            require_writable("save a compressed copy")
            copy = save_compressed_copy(get_store(), info.id, spec, metric=report.metric)
        except InvalidInputError as exc:
            widgets.show_error(exc)
        else:
            start_index_job(copy)  # ready for its first query
            state.flash("success", f"Saved {copy.name} ({copy.n:,} × {copy.dim}).")
            st.rerun()


def saved_copies(info: DatasetInfo, report: Any) -> None:
    """Save a compressed copy as a dataset, and show the original beside a saved copy."""
    store = get_store()
    if read_only():
        st.caption("Read-only demo: saving a compressed copy as a new dataset is turned off.")
    else:
        _save_copy(info, report)
    copies = [
        d for d in store.list_datasets()
        if (d.info or {}).get("derived_from") == info.id
        and (d.info or {}).get("transform") == "compress"
    ]  # fmt: skip
    if not copies:
        st.caption(
            "A saved copy is a dataset like any other: project it, query it, score its "
            "geometry, and compare it with the original here or on the Compare page."
        )
        return
    by_id = {d.id: d for d in copies}
    copy_id = st.selectbox(
        "Original beside a saved copy", list(by_id), format_func=lambda i: by_id[i].name,
        key=f"compression.beside.{info.id}",
    )  # fmt: skip
    copy = by_id[copy_id]
    cols = st.columns(2)
    with cols[0]:
        coords_a, label_a = layout_choice(info, f"compression.side_a.{info.id}")
    with cols[1]:
        coords_b, label_b = layout_choice(copy, f"compression.side_b.{copy.id}")
    colour = prun.default_label_column(info)
    left = make_panel(
        info, coords_a, title=f"{label_a} of {info.name}", colour=colour, hover_columns=[]
    )
    right = make_panel(
        copy, coords_b, title=f"{label_b} of {copy.name}", colour=colour, hover_columns=[]
    )
    linked_pair(left, right, id_row_map(info.id, copy.id), key="compression.pair")
