"""The Neighbours page's ANN diagnostics: recall vs ef, recall vs LID, and insertion order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from embscope.app import figures, widgets
from embscope.app.jobs import artifact_or_job
from embscope.app.runtime import get_neighbour_service
from embscope.app.text import md_escape
from embscope.core.diagnostics_runs import (
    DIAGNOSTIC_EFS,
    ORDER_MIN_ITEMS,
    EfDiagnosticsSpec,
    OrderDiagnosticsSpec,
    ef_request,
    order_request,
)
from embscope.core.neighbours import DEFAULT_HNSW
from embscope.core.stats import format_ci
from embscope.core.store import DatasetInfo

NO_LABEL = "(no label column)"


def section(info: DatasetInfo, options: dict[str, Any]) -> None:
    """Three measurements of what approximate search costs on this dataset, and where."""
    st.subheader("ANN diagnostics")
    st.caption(
        "How far an HNSW index is from exact search on this dataset, and why: recall falls "
        "as the search breadth ef shrinks, on queries of high local intrinsic dimension, and "
        "when the index was filled in an unlucky order (Elliott & Clark, “The Impacts of "
        "Data, Ordering, and Intrinsic Dimensionality on Recall in HNSW”, ICTIR 2024). "
        "Every experiment holds its queries out of the index it measures, as a new query "
        f"would be (M = {DEFAULT_HNSW['M']}, ef_construction = "
        f"{DEFAULT_HNSW['ef_construction']}, the settings of the index queries use); "
        "intervals are 95 % bootstrap intervals over the queries."
    )
    ef_tab, lid_tab, order_tab = st.tabs(["Recall vs ef", "Recall vs LID", "Insertion order"])
    metric, k = options["metric"], options["k"]
    service = get_neighbour_service()
    stored = None
    with ef_tab:
        request = widgets.guarded(lambda: ef_request(service, info.id, metric=metric, k=k))
        if request is not None:
            stored = artifact_or_job(
                EfDiagnosticsSpec(service),
                request,
                button="Measure recall vs ef",
                button_key="diagnostics.run_ef",
                caption=f"Holds {request.n_queries} items out, builds an HNSW index of the "
                f"other {request.sample - request.n_queries:,}"
                + (" (a seeded sample)" if request.sample < info.n else "")
                + f" and measures recall@{k} and single-query latency at ef = "
                f"{', '.join(map(str, DIAGNOSTIC_EFS))}. Runs in the background.",
            )
        if stored is not None:
            curve = stored.curve
            st.plotly_chart(figures.recall_ef_figure(curve), key="diagnostics.ef_plot")
            st.dataframe(_ef_table(curve), hide_index=True, width="stretch")
            st.caption(
                f"{curve.n_queries} queries held out of an index of "
                f"{curve.n_points - curve.n_queries:,} items: recall is that of a query the "
                "index has never seen (a query that is already in the index reads higher)."
            )
    with lid_tab:
        if stored is None:
            st.caption("Run “Measure recall vs ef” first: this plot uses the same queries.")
        elif stored.lid is None:
            st.info("LID needs non-negative distances: choose cosine or l2 to see this plot.")
        else:
            st.plotly_chart(figures.recall_lid_figure(stored.lid), key="diagnostics.lid_plot")
            st.caption(
                "Each dot is one held-out query; its LID comes from the dataset's shared "
                "neighbour graph. A negative Spearman ρ is the paper's finding: high-LID "
                "queries are harder."
            )
    with order_tab:
        _order(info, metric)


def _order(info: DatasetInfo, metric: str) -> None:
    if info.n < ORDER_MIN_ITEMS:
        st.info(
            f"The insertion-order experiment needs at least {ORDER_MIN_ITEMS} items: this "
            f"dataset has {info.n}."
        )
        return
    service = get_neighbour_service()
    columns = [NO_LABEL, *info.metadata_columns]
    default = info.info.get("label_column")
    label = st.selectbox(
        "Label column (for the cluster-by-cluster orders)",
        columns,
        index=columns.index(default) if default in columns else 0,
        key="diagnostics.label_column",
    )
    label_column = None if label == NO_LABEL else label
    request = widgets.guarded(
        lambda: order_request(service, info.id, metric=metric, label_column=label_column)
    )
    if request is None:
        return
    result = artifact_or_job(
        OrderDiagnosticsSpec(service),
        request,
        button="Run the insertion-order experiment",
        button_key="diagnostics.run_order",
        caption=f"Builds {request.seeds} single-threaded HNSW indexes (M = "
        f"{DEFAULT_HNSW['M']}, ef_construction = {DEFAULT_HNSW['ef_construction']}, seeds "
        f"0–{request.seeds - 1}) per insertion order on {request.sample:,} items and "
        f"measures recall@{request.k} on {request.n_queries} held-out queries: random order, "
        "by LID, and label by label. Runs in the background.",
    )
    if result is None:
        return
    st.plotly_chart(figures.order_figure(result), key="diagnostics.order_plot")
    st.caption(
        f"Bars: mean recall over {result.seeds} builds per order (different seeds, the same "
        "held-out queries), ± one standard deviation; circles: each build. A gap between "
        "orders smaller than the spread of one order is not an effect of the order."
    )
    for order, why in result.skipped.items():
        st.caption(f"{figures.ORDER_LABELS.get(order, order)} skipped: {md_escape(why)}")
    rows = pd.DataFrame(result.to_rows())
    st.dataframe(rows[rows["label"].isna()].drop(columns=["label"]), hide_index=True)
    if result.label_values is not None:
        with st.expander("Recall per label"):
            st.dataframe(rows[rows["label"].notna()], hide_index=True, width="stretch")


def _ef_table(curve: Any) -> pd.DataFrame:
    """Recall vs ef as a person reads it: recall with its interval, latency in ms."""
    return pd.DataFrame(
        {
            "ef": curve.ef,
            f"recall@{curve.k}": [
                format_ci(float(r), (float(c[0]), float(c[1])))
                for r, c in zip(curve.recall, curve.recall_ci, strict=True)
            ],
            "p50 (ms)": np.round(curve.p50_ms, 3),
            "p99 (ms)": np.round(curve.p99_ms, 3),
            "queries / s": np.round(curve.qps).astype(int),
        }
    )
