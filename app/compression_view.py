"""The Compression page's parts: choose codecs, run in the background, table, Pareto, harm map."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from embscope.app import figures, glossary, plot_style, share, state, widgets
from embscope.app.access import read_only, require_writable
from embscope.app.cache import id_row_map
from embscope.app.jobs import artifact_or_job, start_index_job
from embscope.app.layout_pair import left_layout, pair_caption, pair_or_left, right_layout
from embscope.app.runtime import get_store
from embscope.app.scatter import Panel, draw, hover_for, layout_choice, make_panel
from embscope.app.selection import current_selection, selection_list, update_selection
from embscope.app.text import md_escape
from embscope.core.compare import procrustes_align
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
    k = int(
        cols[2].number_input(
            "k", 1, 100, key="compression.k",
            help="Neighbours per query: recall@k is the share of the k true nearest "
            "neighbours that the compressed search finds.",
        )
    )  # fmt: skip
    rescore = int(
        cols[3].number_input(
            "Rescore ×", 1, 50, key="compression.rescore",
            help="r: " + glossary.explain("rerank"),
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
    glossary.what_is_this(
        glossary.PAGE_TERMS["Compression"], codecs=specs,
        label="What is this? Every codec chosen, and the terms of the table",
    )  # fmt: skip
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


# Table columns shown at 3 significant digits.
READABLE = (
    "compression_ratio", "spearman", "isoscore", "reference_isoscore", "effective_rank",
    "reference_effective_rank", "encode_seconds", "query_seconds",
)  # fmt: skip


def _readable(values: Any) -> list[float]:
    """Numbers rounded as :func:`app.plot_style.fmt_num` writes them, 3 significant digits
    (whole numbers whole; more only where 3 would round 0.9996 to 1): 0.08253 beside 0.199
    reads 0.0825, 282.04 reads 282; NaN stays NaN."""
    out = []
    for text in (plot_style.fmt_num(v) for v in values):
        try:
            out.append(float(text.replace(",", "")))
        except ValueError:  # "—": not measured
            out.append(float("nan"))
    return out


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
    for key in READABLE:
        shown[key] = _readable(shown[key])
    ci = "± half the 95 % interval (bootstrap over queries)"
    # The values are rounded to what a reader needs (_readable) and shown as they are: "%g"
    # is JavaScript's own number to text ("plain" writes 117 as 116.99999999999999, and the
    # automatic format cuts 0.00459 to 0.0046).
    plain = "%g"
    st.dataframe(
        shown, hide_index=True, width="stretch",
        column_config={
            "codec": st.column_config.TextColumn(
                "codec", help="What each codec stores: see 'What is this?' under the codecs."
            ),
            "bytes_per_vector": st.column_config.NumberColumn(
                "bytes / vector", format="%d", help=glossary.explain("bytes")
            ),
            "compression_ratio": st.column_config.NumberColumn(
                "× smaller", format=plain, help=glossary.explain("ratio")
            ),
            f"recall@{k}": st.column_config.TextColumn(
                f"recall@{k}", help=f"Mean recall@{k} over the query rows {ci}. Two-level "
                "codecs (LVQ-B1×B2, LeanVec): their first stage alone (see 'first stage').",
            ),
            f"recall@{k}_rescored": st.column_config.TextColumn(
                f"recall@{k} ×{report.rescore} re-ranked",
                help=f"recall@{k} after re-ranking the top {report.rescore}·{k} with the "
                f"representation in 're-ranked with', {ci}.",
            ),
            "rescored_with": st.column_config.TextColumn(
                "re-ranked with", help=glossary.explain("rerank")
            ),
            "bytes_per_vector_rescored": st.column_config.NumberColumn(
                "bytes re-ranked", format="%d",
                help="Bytes per vector two-stage search holds: the code plus the re-ranking "
                f"representation (float32: 4·d = {4 * report.dim:,}; a codec's own second "
                "level is already in its code).",
            ),
            "recall@100": st.column_config.TextColumn("recall@100", help=f"Mean recall@100 {ci}."),
            "spearman": st.column_config.NumberColumn(
                "Spearman ρ", format=plain, help=glossary.explain("spearman")
            ),
            "dim": st.column_config.NumberColumn("dims", format="%d"),
            "isoscore": st.column_config.NumberColumn(
                "IsoScore", format=plain, help=_geometry_help("isoscore")
            ),
            "reference_isoscore": st.column_config.NumberColumn(
                "IsoScore float32, same dims", format=plain, help=_REFERENCE_HELP
            ),
            "effective_rank": st.column_config.NumberColumn(
                "eff. rank", format=plain, help=_geometry_help("effective_rank")
            ),
            "reference_effective_rank": st.column_config.NumberColumn(
                "eff. rank float32, same dims", format=plain, help=_REFERENCE_HELP
            ),
            "first_stage": st.column_config.TextColumn(
                "first stage",
                help=f"{glossary.explain('first_stage')} Here: what recall@{k} searched with.",
            ),
            "shared_bytes": st.column_config.NumberColumn(
                "shared bytes", format="%d", help="Bytes stored once for the whole dataset: "
                "codebooks, ranges, projections.",
            ),
            "encode_seconds": st.column_config.NumberColumn(
                "encode s", format=plain, help="Seconds to fit the codec and compress every "
                "vector."
            ),
            "query_seconds": st.column_config.NumberColumn(
                "query s", format=plain, help="Seconds to search all the queries with the "
                "compressed vectors."
            ),
        },
    )  # fmt: skip
    st.caption(
        f"{report.n:,} × {report.dim} vectors"
        + (f" (a seeded sample of the {report.sampled_from:,})" if report.sampled_from else "")
        + f", {report.metric}; {len(report.query_rows):,} "
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
        f"{report.dim} dimensions, the float32 vectors score "
        f"{plot_style.fmt_num(report.original_isoscore)} and "
        f"{plot_style.fmt_num(report.original_effective_rank)}; a copy reduced to k "
        "dimensions is set beside the float32 vectors' own top-k principal components, never "
        "beside the "
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
    cols = st.columns([2, 1, 3], vertical_alignment="bottom")
    spec = cols[0].selectbox(
        "Save a compressed copy", [r.spec for r in report.results],
        key=f"compression.save_spec.{info.id}",
        help="Save the vectors as this codec gives them back (decoded to float32; for PCA, "
        "random projection, truncation and DCT the reduced vectors) as a new dataset, to "
        "project, query or compare like any other.",
    )  # fmt: skip
    if cols[1].button("Save as dataset", key="compression.save"):
        try:
            require_writable("save a compressed copy")
            copy = save_compressed_copy(get_store(), info.id, spec, metric=report.metric)
        except InvalidInputError as exc:
            widgets.show_error(exc)
        else:
            start_index_job(copy)  # ready for its first query
            # Shown beside the original just below, and said here, where the click was.
            st.session_state[f"compression.beside.{info.id}"] = copy.id
            widgets.note_for(
                f"compression.save.{info.id}",
                f"Saved {copy.name} ({copy.n:,} × {copy.dim}) as dataset {copy.id}: shown "
                "below beside the original.",
                toast=f"Saved {copy.name}",
                link=("projections.py", f"Open {copy.name} on the Projections page",
                      {"dataset": str(copy.id)}),
            )  # fmt: skip
            st.rerun()
    widgets.show_note(f"compression.save.{info.id}")


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
    with cols[0]:  # like for like by default: the copy laid out as the original is
        side_a = left_layout(info, f"compression.side_a.{info.id}")
    with cols[1]:
        side_b = right_layout(copy, f"compression.side_b.{copy.id}", side_a)
    assert side_a.coords is not None
    colour = prun.default_label_column(info)
    left = make_panel(
        info, side_a.coords, title=f"{side_a.title} of {info.name}", colour=colour,
        hover_columns=[],
    )  # fmt: skip
    forward = id_row_map(info.id, copy.id)
    right, aligned = None, ""
    if side_b.coords is not None:  # None while the copy's layout is being computed
        ours = np.flatnonzero(forward >= 0)
        try:
            alignment = procrustes_align(side_a.coords[ours], side_b.coords[forward[ours]])
        except InvalidInputError:  # a degenerate layout (every point at one place)
            alignment = None
        right = make_panel(
            copy,
            side_b.coords if alignment is None else alignment.apply(side_b.coords).astype(np.float32),
            title=f"{side_b.title} of {copy.name}" + ("" if alignment is None else " (aligned)"),
            colour=colour, hover_columns=[],
        )  # fmt: skip
        aligned = (
            " The copy's map is shown as laid out (a layout with every point at one place "
            "cannot be aligned)."
            if alignment is None
            else " The copy's map is rotated, scaled and shifted onto the original's "
            f"(Procrustes, disparity {alignment.disparity:.3g})."
        )
    st.caption(
        pair_caption(side_a, side_b) + aligned + " Select points in either to see them in both."
    )
    pair_or_left(left, right, forward, key="compression.pair", pending=side_b)
