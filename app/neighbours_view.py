"""The Neighbours page's sections: search settings, the query picker, and the answer marked
against the exact one."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import map_filter, share, state, widgets
from embscope.app.choices import backend_label, metric_label
from embscope.app.jobs import artifact_or_job, job_panel, last_run_notice, start_index_job
from embscope.app.neighbour_query import current_query, set_query
from embscope.app.runtime import get_job_runner, get_neighbour_service, get_store
from embscope.app.text import md_escape
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.graph import GRAPHS, GraphRequest
from embscope.core.hubness_reduction import METHOD_LABELS, METHODS, resolve_neighbours
from embscope.core.index import BACKENDS
from embscope.core.ingest import MAX_QUERY_VECTOR_BYTES, read_query_vector
from embscope.core.neighbours import DEFAULT_EF, Query, QueryComparison
from embscope.core.store import DatasetInfo
from embscope.core.validation import METRICS, check_metric

FIND_BY = {"search": "searching its metadata", "id": "its id", "row": "its row"}
TABS = {"row": "By item", "id": "By item", "vector": "By vector", "text": "By text"}
MAX_TEXT_CHARS = 1_000
REDUCE_HELP = (
    "In high dimensions a few items (hubs) come out near almost everything and crowd every "
    "answer, while others are never anyone's neighbour. Reducing hubs re-ranks the nearest "
    "max(10 k, 100) candidates, marking down items that are near everything: CSLS (Conneau "
    "et al. 2018) subtracts how close each item already is to its own 10 nearest; mutual "
    "proximity (Schnitzer et al. 2012) keeps an item near only if the query is also unusually "
    "near it from the item's side. Distances stay the true ones; the score column is what "
    "ordered the answer. The effect on this dataset is measured below."
)


def _k_max(info: DatasetInfo) -> int:
    return max(1, min(200, info.n - 1))


def apply_url(info: DatasetInfo, link: share.Link | None = None) -> None:
    """Set the page from a share link: ``k``, ``metric``, ``backend``, ``ef``, how the item
    is found (``find``), the filter (``where``, shared with the map) and the query itself
    (``row``, ``id`` or ``text``), which then runs as the page opens. Does nothing when there
    is no new link."""
    link = share.link("neighbours") if link is None else link
    if not link:
        return
    metric = link.choice("metric", METRICS)
    if metric is not None:
        state.metric_from_link("neighbours", info, metric)
    for name, value in (
        ("k", link.integer("k", 1, _k_max(info))),
        ("backend", link.choice("backend", BACKENDS)),
        ("reduce", link.choice("reduce", METHODS)),
        ("ef", link.integer("ef", 1, 500)),
        ("item_how", link.choice("find", FIND_BY)),
        ("search", link.text("search", max_chars=200)),
    ):
        if value is not None:
            st.session_state[f"neighbours.{name}"] = value
    map_filter.from_link(info, link)
    service = get_neighbour_service()
    row = link.integer("row", 0, info.n - 1)
    item_id = link.text("id")
    text = link.text("text", max_chars=MAX_TEXT_CHARS)
    if item_id is not None:
        try:
            service.row_of_id(info.id, item_id)
        except InvalidInputError:
            link.ignore("id", item_id, f"no item of {info.name} has this id")
            item_id = None
    if text is not None:
        ok, reason = service.text_status(info.id)
        if not ok:
            link.ignore("text", text, reason)
            text = None
    if row is not None:
        st.session_state["neighbours.item_how"] = "row"
        st.session_state["neighbours.row"] = row
        set_query(info, "row", row)
    elif item_id is not None:
        st.session_state["neighbours.item_how"] = "id"
        st.session_state["neighbours.id"] = item_id
        set_query(info, "id", item_id)
    elif text is not None:
        st.session_state["neighbours.text"] = text
        set_query(info, "text", text)


def write_url(info: DatasetInfo, options: dict[str, Any]) -> None:
    """Make the address bar the link to this view: settings and the query (a pasted vector
    is not put in a link)."""
    params: dict[str, Any] = dict(options)
    reduce = params.pop("hubness_reduction", "none")
    params["reduce"] = None if reduce == "none" else reduce  # only a reduction is written
    how = st.session_state.get("neighbours.item_how")
    if how in FIND_BY and how != "search":
        params["find"] = how
    elif (st.session_state.get("neighbours.search") or "").strip():
        params["search"] = st.session_state["neighbours.search"].strip()
    q = current_query(info)
    if q is not None and q["kind"] in ("row", "id", "text"):
        params[q["kind"]] = q["value"]
    if map_filter.current(info):
        params["where"] = map_filter.current(info)
    share.write("neighbours", params)


def settings(info: DatasetInfo) -> dict[str, Any]:
    """k, metric, backend, ef and the hubness reduction, in one row."""
    # Defaults through session state, because share links set these too.
    st.session_state.setdefault("neighbours.k", min(10, _k_max(info)))
    if st.session_state["neighbours.k"] > _k_max(info):  # set on a larger dataset
        st.session_state["neighbours.k"] = min(10, _k_max(info))
    st.session_state.setdefault("neighbours.ef", DEFAULT_EF)
    cols = st.columns(5)
    k = cols[0].number_input(
        "k (neighbours)", min_value=1, max_value=_k_max(info), key="neighbours.k"
    )
    state.metric_for_dataset("neighbours", info, METRICS)
    metric = cols[1].selectbox(
        "Metric", METRICS, format_func=metric_label, key="neighbours.metric",
        help=f"Default: the dataset's, {info.metric} "
        f"({info.info.get('metric_reason', 'recorded without a reason')}).",
    )  # fmt: skip
    backend = cols[2].selectbox(
        "Index backend",
        BACKENDS,
        format_func=backend_label,
        key="neighbours.backend",
        help="HNSW is the default; Milvus is the scale-out backend (Milvus Lite beside the "
        "database, or the server in $EMBSCOPE_MILVUS_URI).",
    )
    ef = cols[3].slider(
        "ef (HNSW search breadth)",
        min_value=1,
        max_value=500,
        key="neighbours.ef",
        disabled=backend == "exact",
        help="Candidates HNSW keeps while searching (at least k are used). Larger: better "
        "recall, slower queries.",
    )
    reduce = cols[4].selectbox(
        "Reduce hubs", list(METHODS), format_func=lambda m: METHOD_LABELS[m],
        key="neighbours.reduce",
        help=REDUCE_HELP,
    )  # fmt: skip
    return {
        "k": int(k), "metric": metric, "backend": backend, "ef": int(ef),
        "hubness_reduction": reduce,
    }  # fmt: skip


def _parse_vector(text: str) -> np.ndarray:
    parts = [p for p in re.split(r"[\s,;\[\]()]+", text.strip()) if p]
    if not parts:
        raise InvalidInputError("paste the numbers of a vector, separated by commas or spaces")
    try:
        return np.array([float(p) for p in parts], dtype=np.float32)
    except ValueError as exc:
        raise InvalidInputError(f"the pasted vector is not a list of numbers: {exc}") from exc


def _match_labels(found: pd.DataFrame) -> list[str]:
    """One line per matching row: its row, its id and the start of its metadata."""
    labels = []
    for record in found.to_dict("records"):
        rest = " · ".join(str(v) for k, v in record.items() if k not in ("row", "id"))
        line = f"row {record['row']} · {record['id']}" + (f" · {rest}" if rest else "")
        labels.append(line if len(line) <= 160 else line[:159] + "…")
    return labels


def _item_tab(info: DatasetInfo) -> None:
    store = get_store()
    how = st.radio(
        "Find the item by", list(FIND_BY), horizontal=True, key="neighbours.item_how",
        format_func=FIND_BY.get,
    )  # fmt: skip
    if how == "search":
        text = st.text_input(
            "Search ids and metadata",
            key="neighbours.search",
            placeholder="a word from a label, a text, an id…",
        )
        if text.strip():
            found = widgets.guarded(lambda: store.search_rows(info.id, text, limit=200))
            if found is None:
                return
            if found.empty:
                st.caption("Nothing matches.")
                return
            labels = _match_labels(found)
            count = len(found)
            picked = st.selectbox(
                f"{count:,} matching item{'' if count == 1 else 's'}"
                + (" (the first 200)" if count == 200 else ""),
                options=list(range(count)),
                index=0 if count == 1 else None,  # the only match needs no picking
                format_func=lambda i: labels[i],
                placeholder="pick the item",
                key=f"neighbours.pick.{text}",
            )
            if picked is not None:
                row = int(found.iloc[picked]["row"])
                current = current_query(info)
                if not current or current["kind"] != "row" or current["value"] != row:
                    set_query(info, "row", row)
    elif how == "id":
        # A form: Enter in the box, or one click on the button, answers (a box outside a
        # form keeps its text from the script until it loses focus).
        with st.form("neighbours.id_form", border=False):
            item_id = st.text_input("Item id", key="neighbours.id")
            go = st.form_submit_button("Find neighbours", key="neighbours.go_id")
        if go:
            if item_id.strip():
                set_query(info, "id", item_id.strip())
            else:
                st.caption("Type an item's id first.")
    else:
        if not 0 <= st.session_state.get("neighbours.row", 0) < info.n:
            st.session_state["neighbours.row"] = 0  # set on a larger dataset
        row = st.number_input("Row number", min_value=0, max_value=info.n - 1, key="neighbours.row")
        if st.button("Find neighbours", key="neighbours.go_row"):
            set_query(info, "row", int(row))


def _vector_tab(info: DatasetInfo) -> None:
    with st.form("neighbours.vector_form", border=False):  # Ctrl+Enter or one click answers
        pasted = st.text_area(
            f"Paste a vector ({info.dim} numbers)",
            key="neighbours.vector_text",
            height=100,
            placeholder="0.12, -0.03, 0.51, …",
        )
        upload = st.file_uploader(
            "…or upload one as .npy",
            type=["npy"],
            key="neighbours.vector_file",
            max_upload_size=MAX_QUERY_VECTOR_BYTES // 2**20,
        )
        go = st.form_submit_button("Find neighbours", key="neighbours.go_vector")
    if go and not (pasted.strip() or upload):
        st.caption("Paste a vector or upload one first.")
    elif go:
        try:
            if upload is not None:
                vec = read_query_vector(upload.getvalue(), label=upload.name, dim=info.dim)
            else:
                vec = _parse_vector(pasted)
        except InvalidInputError as exc:
            widgets.show_error(exc)
            return
        except (ValueError, OSError) as exc:
            widgets.show_error(InvalidInputError(f"could not read that vector: {exc}"))
            return
        set_query(info, "vector", np.asarray(vec, dtype=np.float32).reshape(-1).tolist())


def _text_tab(info: DatasetInfo) -> None:
    ok, reason = get_neighbour_service().text_status(info.id)
    if not ok:
        st.info(md_escape(reason), icon=":material/info:")
        return
    st.caption(
        f"The text is embedded with {md_escape(info.info.get('model'))}, "
        "the model this dataset was embedded with (run offline with onnxruntime)."
    )
    # A form: Enter in the box, or one click on the button right after typing, answers.
    with st.form("neighbours.text_form", border=False):
        text = st.text_input(
            "Text",
            key="neighbours.text",
            placeholder="open a zip archive",
            max_chars=MAX_TEXT_CHARS,
        )
        go = st.form_submit_button("Find neighbours", key="neighbours.go_text")
    if go:
        if text.strip():
            set_query(info, "text", text.strip())
        else:
            st.caption("Type a text to search for first.")


def query_picker(info: DatasetInfo) -> None:
    """Tabs to choose the query: an item, a vector, or a text."""
    q = current_query(info)
    # The tab of the current query is the one open (a shared text query opens on its text).
    item, vector, text = st.tabs(
        ["By item", "By vector", "By text"], default=TABS[q["kind"]] if q else None
    )
    with item:
        _item_tab(info)
    with vector:
        _vector_tab(info)
    with text:
        _text_tab(info)


def _resolve(info: DatasetInfo, q: dict[str, Any]) -> Query:
    service = get_neighbour_service()
    kind, value = q["kind"], q["value"]
    if kind == "text":
        with st.spinner("Embedding the text…"):
            return service.resolve(info.id, text=value)
    return service.resolve(
        info.id,
        row=value if kind == "row" else None,
        item_id=value if kind == "id" else None,
        vector=np.asarray(value, dtype=np.float32) if kind == "vector" else None,
    )


def run_query(info: DatasetInfo, options: dict[str, Any]) -> tuple[Query, QueryComparison] | None:
    """Answer the current query with the chosen backend and exactly. An index that does not
    exist yet is built by a background job (shared by every session); the page waits a few
    seconds for it, then shows its progress and answers when it is ready."""
    q = current_query(info)
    if q is None:
        st.caption("Choose an item, a vector or a text above to see its nearest neighbours.")
        return None
    service = get_neighbour_service()
    try:
        query = _resolve(info, q)
        backend, metric = options["backend"], options["metric"]
        if not service.has_index(info.id, metric=metric, backend=backend):
            if not _index_ready_soon(info, metric, backend):
                st.caption(
                    f"The {backend_label(backend)} index of {md_escape(info.name)} is being "
                    "built; the answer shows as soon as it is ready."
                )
                return None
        reduce = options.get("hubness_reduction", "none")
        if reduce != "none" and not _graph_ready(info, metric, reduce):
            return None
        return query, service.compare(info.id, query, **options)
    except (InvalidInputError, OperationCancelled) as exc:
        widgets.show_error(exc)
        return None


def _graph_ready(info: DatasetInfo, metric: str, method: str) -> bool:
    """True when the shared neighbour graph a hubness reduction reads is stored; else it is
    built by a background job (its progress shown) and False returned."""
    request = GraphRequest(info, check_metric(metric), resolve_neighbours(method, n=info.n))
    if GRAPHS.find(get_store(), request) is not None:
        return True
    found = artifact_or_job(
        GRAPHS, request, button="Build the neighbour graph", button_key="neighbours.build_graph",
        start_now=True,
        caption="Reducing hubs reads the dataset's shared neighbour graph: the answer shows "
        "as soon as it is built.",
    )  # fmt: skip
    return found is not None


# How long a query waits for its index job before the page shows the job's progress instead:
# a small dataset's index is ready within it, so its first query simply answers.
INDEX_WAIT_S = 5.0


def _index_ready_soon(info: DatasetInfo, metric: str, backend: str) -> bool:
    """True when the index is there or its background job finishes within
    :data:`INDEX_WAIT_S`; else the job's progress (or how its last run ended, with a button to
    build it again) is shown and False returned.

    The job starts by itself only when it never ran in this server: after a Cancel or a
    failure the page says so and waits for the person to ask again.
    """
    service = get_neighbour_service()
    runner = get_job_runner()
    key = service.index_fingerprint(info.id, metric=metric, backend=backend)
    status = runner.status(key)
    if status is None:
        start_index_job(info, metric=metric, backend=backend)
    elif not status.active:
        last_run_notice(status)
        if st.button(f"Build the {backend_label(backend)} index", key="neighbours.build_index"):
            start_index_job(info, metric=metric, backend=backend)
            st.rerun()
        return False
    job = runner.get(key)
    if job is not None:
        with st.spinner(f"Building the {backend_label(backend)} index…"):
            job.wait(INDEX_WAIT_S)
    if service.has_index(info.id, metric=metric, backend=backend):
        return True
    status = runner.status(key)
    if status is not None and status.active:
        job_panel(key)
    else:
        last_run_notice(status)
    return False


# The mark column of the answer table: how each row stands against exact search.
MARK = "vs exact"
FOUND = "✓"
MISSED = "✕ missed"
MARK_HELP = (
    "✓: one of the exact k nearest, found by the index. ✕ missed: one of the exact k "
    "nearest that the index did not return (shown at its place, without a rank). "
    "–: returned by the index but not among the exact k nearest (it took a missed item's "
    "place)."
)
MISSED_STYLE = "background-color: rgba(255, 75, 75, 0.12)"
# Columns the page adds; a metadata column of the same name is shown renamed.
ADDED_COLUMNS = ("rank", MARK, "found by index", "distance", "score")
# Widths in pixels of the columns the page adds (the rest are sized by their content).
COLUMN_PX = {"rank": 48, MARK: 130, "found by index": 110, "row": 64, "distance": 80, "score": 80}
# Long texts wrap: their columns share what the others leave of a table this wide (the main
# area of a 1,400-px window; a wider one stretches every column a little), at least this much
# each. About CHAR_PX a character, LINE_PX a line, at most MAX_LINES lines a row.
TABLE_PX, MIN_TEXT_PX, CHAR_PX, LINE_PX, MAX_LINES = 1_000, 320, 7.5, 19, 8
DISTANCE_HELP = (
    "True metric distance to the query: 1 − cos for cosine, Euclidean for l2, 1 − ⟨q, x⟩ for "
    "inner product."
)


def _outside(k: int) -> str:
    return f"– not in exact top {k}"


def _rows_frame(info: DatasetInfo, rows: list[int]) -> pd.DataFrame:
    """``row``, ``id`` and the metadata of ``rows``; metadata named like a column the page
    adds gets " (metadata)" after its name."""
    frame = get_store().load_rows(info.id, rows)
    clash = {c: f"{c} (metadata)" for c in frame.columns if c in ADDED_COLUMNS}
    return frame.rename(columns=clash) if clash else frame


def answer_table(info: DatasetInfo, comparison: QueryComparison) -> pd.DataFrame:
    """The index's answer with the items it missed put in at their place: one row per item,
    ordered as the answer is (by distance, or by score when hubs are reduced), ``rank`` in
    the index's answer (none for a missed item) and the :data:`MARK` column."""
    approx, exact = comparison.approximate, comparison.exact
    k = len(exact.rows)
    in_exact, in_approx = set(exact.rows.tolist()), set(approx.rows.tolist())
    entries: list[tuple[int, float, float | None, int | None, str]] = []
    for i, r in enumerate(approx.rows.tolist()):
        score = None if approx.scores is None else float(approx.scores[i])
        mark = FOUND if r in in_exact else _outside(k)
        entries.append((int(r), float(approx.distances[i]), score, i + 1, mark))
    for i, r in enumerate(exact.rows.tolist()):
        if r not in in_approx:
            score = None if exact.scores is None else float(exact.scores[i])
            entries.append((int(r), float(exact.distances[i]), score, None, MISSED))
    if approx.scores is not None:
        entries.sort(key=lambda e: -(e[2] if e[2] is not None else -np.inf))
    else:
        entries.sort(key=lambda e: e[1])  # stable: the index's order among equal distances
    frame = _rows_frame(info, [e[0] for e in entries])
    frame.insert(0, "rank", pd.array([e[3] for e in entries], dtype="Int64"))
    frame.insert(1, MARK, [e[4] for e in entries])
    frame.insert(4, "distance", np.array([e[1] for e in entries], dtype=np.float64))
    if approx.scores is not None:
        frame.insert(5, "score", np.array([e[2] for e in entries], dtype=np.float64))
    return frame


def exact_table(info: DatasetInfo, comparison: QueryComparison) -> pd.DataFrame:
    """The exact answer, with whether the index found each item."""
    approx, exact = comparison.approximate, comparison.exact
    found = set(approx.rows.tolist())
    frame = _rows_frame(info, exact.rows.tolist())
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    frame.insert(1, "found by index", [int(r) in found for r in exact.rows])
    frame.insert(4, "distance", np.asarray(exact.distances, dtype=np.float64))
    if exact.scores is not None:
        frame.insert(5, "score", np.asarray(exact.scores, dtype=np.float64))
    return frame


def _long_text_columns(frame: pd.DataFrame) -> dict[str, int]:
    """Text columns (not the id) whose longest value does not fit a plain cell, with that
    length."""
    long = {}
    for column in frame.columns:
        values = frame[column]
        if column in ("id", MARK) or not pd.api.types.is_string_dtype(values.dtype):
            continue
        lengths = values.dropna().astype(str).str.len()
        longest = int(lengths.max()) if len(lengths) else 0
        if longest > 40:
            long[str(column)] = longest
    return long


def _content_px(frame: pd.DataFrame, column: str) -> float:
    """About how wide the grid draws a column sized by its content."""
    if column in COLUMN_PX:
        return COLUMN_PX[column]
    lengths = frame[column].dropna().astype(str).str.len()
    chars = max(len(str(column)), int(lengths.max()) if len(lengths) else 0)
    return min(chars * CHAR_PX + 24, 300)


def _text_px(frame: pd.DataFrame, long: dict[str, int]) -> int:
    """The width each long text column gets: what the other columns leave of the table."""
    others = sum(_content_px(frame, str(c)) for c in frame.columns if c not in long)
    return max(MIN_TEXT_PX, int((TABLE_PX - others) / max(len(long), 1)))


def _row_height(long: dict[str, int], text_px: int) -> int | None:
    """A row height that shows the longest text wrapped in ``text_px`` (None: one line is
    enough). The grid wraps text only in rows taller than 64 px, so a wrapped row is at least
    three lines."""
    per_line = max(1, int((text_px - 16) / CHAR_PX))
    lines = max((-(-n // per_line) for n in long.values()), default=1)
    if lines <= 1:
        return None
    return max(3, min(lines, MAX_LINES)) * LINE_PX + 8


def _show_table(frame: pd.DataFrame, *, key: str, scored: bool, styled: bool = False) -> None:
    long = _long_text_columns(frame)
    text_px = _text_px(frame, long)
    # rank and row are pinned (drawn faded, as an index is): they stay in view when the table
    # scrolls sideways, and the width left over goes to the columns that read (a pinned column
    # keeps its width).
    config: dict[str, Any] = {
        "rank": st.column_config.NumberColumn(
            "rank",
            width=COLUMN_PX["rank"],
            help="Place in the answer (a missed item has none).",
            pinned=True,
        ),
        MARK: st.column_config.TextColumn(MARK, width=COLUMN_PX[MARK], help=MARK_HELP),
        "found by index": st.column_config.CheckboxColumn(
            "found by index",
            width=COLUMN_PX["found by index"],
            help="Whether the index returned this item too.",
        ),
        "row": st.column_config.NumberColumn("row", width=COLUMN_PX["row"], pinned=True),
        "distance": st.column_config.NumberColumn(
            "distance", width=COLUMN_PX["distance"], format="%.4f", help=DISTANCE_HELP
        ),
        **{c: st.column_config.TextColumn(c, width=text_px) for c in long},
    }
    if scored:
        config["score"] = st.column_config.NumberColumn(
            "score",
            width=COLUMN_PX["score"],
            format="%.4f",
            help="What ordered the answer once hubs are reduced: higher is nearer.",
        )
    data: Any = frame
    if styled and (frame[MARK] == MISSED).any():
        data = frame.style.apply(
            lambda r: [MISSED_STYLE if r[MARK] == MISSED else ""] * len(r), axis=1
        )
    st.dataframe(
        data,
        hide_index=True,
        width="stretch",
        column_config=config,
        row_height=_row_height(long, text_px),
        height="content",  # every row shown: no scrolling inside the page
        placeholder="",
        key=key,
    )


def show_answer(info: DatasetInfo, query: Query, comparison: QueryComparison) -> None:
    """The index's answer in one table, the items it missed marked in their place, with
    recall@k and the two latencies; the exact answer on demand."""
    approx, exact = comparison.approximate, comparison.exact
    k = len(exact.rows)
    st.markdown(f"**Query:** {md_escape(query.description)}")
    cols = st.columns(3)
    found = len(set(approx.rows.tolist()) & set(exact.rows.tolist()))
    cols[0].metric(
        f"recall@{k} of this query",
        f"{found} of {k}",
        help="How many of this query's exact k nearest neighbours the index found: a count "
        "for one query, not an estimate. What queries find in general, with a 95 % "
        "interval over held-out queries, is under ANN diagnostics below.",
    )
    cols[1].metric(f"{backend_label(approx.backend)} latency", f"{approx.latency_ms:.2f} ms")
    cols[2].metric("Exact search latency", f"{exact.latency_ms:.2f} ms")
    name = backend_label(approx.backend)
    if k == 0:
        st.caption("No item matches the filter: there are no neighbours to show.")
        return
    if found == k:
        summary = f"the same {k} items as exact search"
    else:
        summary = (
            f"{found} of the exact {k} nearest; the {k - found} it missed are marked "
            f"{MISSED} in their place"
        )
    st.markdown(f"**{md_escape(name)}** found {summary}.")
    scored = approx.scores is not None
    _show_table(
        answer_table(info, comparison), key="neighbours.approx_table", scored=scored, styled=True
    )
    with st.expander(f"Show the exact answer (ground truth, {found} of {k} found by the index)"):
        _show_table(exact_table(info, comparison), key="neighbours.exact_table", scored=scored)
    reduced = ""
    if approx.hubness_reduction is not None:
        reduced = (
            f" Both answers are re-ranked by {METHOD_LABELS[approx.hubness_reduction]} (the "
            "score column, higher is nearer) from their nearest max(10 k, 100) candidates."
        )
    st.caption(
        "Distances are true metric distances: 1 − cos for cosine, Euclidean for l2, "
        "1 − ⟨q, x⟩ for inner product. The query item itself is left out." + reduced
    )
