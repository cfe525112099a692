"""The Neighbours page's measured effect of reducing hubs: skewness, agreement with exact
search and (with a label column) label agreement, per method, as a stored background job."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from embscope.app import widgets
from embscope.app.jobs import artifact_or_job
from embscope.app.runtime import get_store
from embscope.app.text import md_escape
from embscope.core.hubness_reduction import EFFECT_QUERIES, METHOD_LABELS
from embscope.core.hubness_runs import HUBNESS_EFFECTS, HubnessEffect, effect_request
from embscope.core.store import DatasetInfo

NO_LABEL = "(no label column)"


def effect_section(info: DatasetInfo, options: dict[str, Any]) -> None:
    """An expander that measures what each hubness reduction does to this dataset's k-NN
    lists (a job, stored once), for the page's metric and k."""
    metric, k = options["metric"], options["k"]
    with st.expander("Effect of reducing hubs on this dataset"):
        st.caption(
            f"Every item (up to {EFFECT_QUERIES:,}, a seeded sample above) is a query with "
            f"itself left out; its {k} nearest neighbours are re-ranked by each method from "
            "the dataset's shared neighbour graph. Skewness of the k-occurrence (how often "
            "each item appears in someone's list) measures hubness: near 0 is even, above 1 "
            "means hubs. Recall is the share of the unreduced exact list a method keeps."
        )
        columns = [NO_LABEL, *info.metadata_columns]
        default = (info.info or {}).get("label_column")
        label = st.selectbox(
            "Label column (optional: how many neighbours share the query's label)",
            columns, index=columns.index(default) if default in columns else 0,
            key="hubness.label_column",
        )  # fmt: skip
        label_column = None if label == NO_LABEL else label
        request = widgets.guarded(
            lambda: effect_request(
                get_store(), info.id, metric=metric, k=k, label_column=label_column
            )
        )
        if request is None:
            return
        result = artifact_or_job(
            HUBNESS_EFFECTS, request, button="Measure the effect", button_key="hubness.run",
            caption="Reads the shared neighbour graph (built first if missing). Runs in the "
            "background.",
        )  # fmt: skip
        if result is not None:
            _show(result)


def _show(result: HubnessEffect) -> None:
    rows = {r.method: r for r in result.rows}
    before = rows["none"]
    cols = st.columns(len(result.rows))
    cols[0].metric(f"skewness of N{result.k}, unreduced", f"{before.skewness:.2f}")
    for col, r in zip(cols[1:], result.rows[1:], strict=True):
        col.metric(
            f"skewness, {METHOD_LABELS[r.method]}",
            f"{r.skewness:.2f}",
            delta=f"{r.skewness - before.skewness:+.2f}",
            delta_color="inverse",
            help=f"recall@{result.k} against the unreduced exact lists: {r.recall_vs_exact:.3f}",
        )
    table = pd.DataFrame(
        {
            "method": [METHOD_LABELS[r.method] for r in result.rows],
            "K": [str(r.neighbours) if r.neighbours else "–" for r in result.rows],
            f"skewness of N{result.k}": [r.skewness for r in result.rows],
            f"recall@{result.k} vs exact": [r.recall_vs_exact for r in result.rows],
            "anti-hubs (in no list)": [r.antihubs for r in result.rows],
            "largest N_k": [r.max_occurrence for r in result.rows],
        }
    )
    if result.label_column is not None:
        table[f"same {result.label_column}"] = [r.label_agreement for r in result.rows]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="hubness.effect_table",
        column_config={
            "K": st.column_config.TextColumn(help="Neighbours each point's scale is read from"),
            f"skewness of N{result.k}": st.column_config.NumberColumn(format="%.2f"),
            f"recall@{result.k} vs exact": st.column_config.NumberColumn(format="%.3f"),
            **(
                {f"same {result.label_column}": st.column_config.NumberColumn(format="%.3f")}
                if result.label_column is not None
                else {}
            ),
        },
    )
    graph = (
        "exact"
        if result.graph_recall >= 1.0
        else f"{result.graph_method}, recall {result.graph_recall:.3f}"
    )
    st.caption(
        f"{result.n_queries:,} queries, {result.metric}, candidate pool {result.pool} "
        f"(graph: {md_escape(graph)})."
    )
