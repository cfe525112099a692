"""Plotly figure builders: arrays in, ``go.Figure`` out (no streamlit here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ORDER_LABELS = {
    "random": "random",
    "lid_ascending": "LID ascending",
    "lid_descending": "LID descending",
    "label_low_lid_first": "by label, low-LID labels first",
    "label_high_lid_first": "by label, high-LID labels first",
}


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        height=380,
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
    )
    return fig


def recall_ef_figure(curve: Any) -> go.Figure:
    """recall@k (left axis) and median/p99 single-query latency (right axis) against ef."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ef = np.asarray(curve.ef)
    fig.add_trace(
        go.Scatter(x=ef, y=curve.recall, mode="lines+markers", name=f"recall@{curve.k}"),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(x=ef, y=curve.p50_ms, mode="lines+markers", name="latency p50 (ms)",
                   line={"dash": "dot"}),
        secondary_y=True,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=ef, y=curve.p99_ms, mode="lines+markers", name="latency p99 (ms)",
                   line={"dash": "dash"}),
        secondary_y=True,
    )  # fmt: skip
    fig.update_xaxes(type="log", title_text="ef (search breadth, log scale)")
    fig.update_yaxes(title_text=f"recall@{curve.k}", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="milliseconds", rangemode="tozero", secondary_y=True)
    return _layout(fig, f"HNSW recall@{curve.k} and latency against ef")


def recall_lid_figure(result: Any) -> go.Figure:
    """Per-query recall against the query's LID, with the mean recall per LID decile."""
    lid, recall = np.asarray(result.lid, float), np.asarray(result.recall, float)
    ok = np.isfinite(lid)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.015, 0.015, ok.sum())  # recall takes few values: spread them
    fig = go.Figure(
        go.Scattergl(
            x=lid[ok], y=recall[ok] + jitter, mode="markers", name="one query",
            marker={"size": 5, "opacity": 0.5},
            hovertemplate="LID %{x:.1f}<br>recall %{customdata:.2f}<extra></extra>",
            customdata=recall[ok],
        )
    )  # fmt: skip
    if ok.sum() >= 20:
        edges = np.unique(np.quantile(lid[ok], np.linspace(0, 1, 11)))
        which = np.clip(np.searchsorted(edges, lid[ok], side="right") - 1, 0, len(edges) - 2)
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
        means = [recall[ok][which == i].mean() if (which == i).any() else np.nan
                 for i in range(len(edges) - 1)]  # fmt: skip
        fig.add_trace(go.Scatter(x=centres, y=means, mode="lines+markers", name="mean per decile"))
    rho = result.spearman_rho
    fig.update_xaxes(title_text="local intrinsic dimension of the query (LID, k = 20)")
    fig.update_yaxes(
        title_text="recall", range=[max(-0.05, float(recall[ok].min(initial=1.0)) - 0.1), 1.05]
    )
    title = f"Per-query recall at ef = {result.ef} against LID"
    if np.isfinite(rho):
        title += f" (Spearman ρ = {rho:.2f})"
    return _layout(fig, title)


def order_figure(result: Any) -> go.Figure:
    """recall@k of each insertion order, one bar group per ef."""
    fig = go.Figure()
    names = [ORDER_LABELS.get(o, o) for o in result.orders]
    for j, ef in enumerate(np.asarray(result.ef)):
        fig.add_trace(go.Bar(x=names, y=result.recall[:, j], name=f"ef = {ef}",
                             text=[f"{v:.3f}" for v in result.recall[:, j]],
                             textposition="outside"))  # fmt: skip
    low = float(np.nanmin(result.recall))
    fig.update_yaxes(title_text=f"recall@{result.k}", range=[max(0.0, low - 0.1), 1.02])
    fig.update_layout(barmode="group")
    return _layout(fig, f"recall@{result.k} by insertion order (single-threaded builds)")
