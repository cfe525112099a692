"""Linked metadata charts: bars of the common values and histograms of numbers, the selection
on top, and the condition each bar adds to the filter (bins partition the rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from embscope.app import figures, map_charts
from embscope.core.filters import matching_rows
from embscope.core.store import Store
from tests.helpers import make_parsed, spec_strings

HOSTILE = "<img src=x onerror=alert(1)>"


def test_a_histograms_bins_partition_the_rows(tmp_path):
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0, 1, 995), [50.0, -40.0, 60.0, 70.0, 80.0]])
    with Store(tmp_path / "h.duckdb") as store:
        info = store.add_dataset(
            make_parsed(rng.random((1000, 4)), pd.DataFrame({"score": score})), name="h"
        )
        values = pd.Series(score)
        fig, conditions = map_charts._histogram("score", values, values.iloc[:100])
        assert len(conditions) == map_charts.HISTOGRAM_BINS
        seen = np.zeros(1000, dtype=int)
        for condition in conditions:
            seen[matching_rows(store, info.id, condition)] += 1
        assert np.all(seen == 1)  # every row in exactly one bin, outliers in the end bins
        whole = np.asarray(fig.data[0].y)
        assert whole.sum() == 1000 and np.asarray(fig.data[1].y).sum() == 100


def test_bars_count_values_and_the_selection_and_filter_to_one_value(tmp_path):
    kind = pd.Series(["cat"] * 50 + ["dog"] * 30 + [HOSTILE] * 20 + [None] * 5)
    fig, conditions = map_charts._bars("kind", kind, kind.iloc[40:60])
    assert list(fig.data[0].x) == [50, 30, 20] and list(fig.data[1].x) == [10, 10, 0]
    shown = spec_strings(fig.to_json())
    assert not any("<img" in t for t in shown) and "&lt;img src=x onerror=alert(1)&gt;" in shown
    with Store(tmp_path / "b.duckdb") as store:
        info = store.add_dataset(
            make_parsed(np.random.default_rng(0).random((105, 2)), pd.DataFrame({"kind": kind})),
            name="b",
        )
        for condition, want in zip(conditions, (50, 30, 20), strict=True):
            assert matching_rows(store, info.id, condition).size == want
    # Numbers with few values are bars of their values; an empty column gives no chart.
    fig, conditions = map_charts._bars("digit", pd.Series([3, 3, 1]), None)
    assert conditions == [["digit@[3]"], ["digit@[1]"]] and len(fig.data) == 1
    assert map_charts._bars("x", pd.Series([None, None]), None) == (None, [])
    assert map_charts._histogram("x", pd.Series([], dtype=float), None) == (None, [])
    assert isinstance(figures.metadata_bars(["a"], np.array([1]), None, title="t"), type(fig))


def test_charts_chosen_on_the_page_show_the_selection(tmp_path, monkeypatch):
    from tests.helpers import by_key, open_page, until

    path = tmp_path / "page.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"kind": ["a", "b", "c"] * 40, "size": rng.normal(0, 1, 120)})
    with Store(path) as s:
        s.add_dataset(make_parsed(rng.random((120, 6)), meta), name="p", info={"metric": "l2"})
    at = open_page("projections", {"dataset": "1", "method": "pca"})
    at = until(at, lambda a: len(a.get("plotly_chart")) > 0)
    assert len(at.get("plotly_chart")) == 1  # no chart until one is chosen
    by_key(at.multiselect, "projections.charts.1").set_value(["kind", "size"]).run()
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [0, 3, 4]}
    at.run()
    assert not at.exception, at.exception
    import json

    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")[1:]]
    bars, histogram = specs

    def values(array) -> list:
        if isinstance(array, dict):  # plotly's typed array
            import base64

            return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
        return list(array)

    whole, chosen = (dict(zip(t["y"], values(t["x"]), strict=True)) for t in bars["data"])
    assert whole == {"a": 40, "b": 40, "c": 40} and chosen == {"a": 2, "b": 1, "c": 0}
    assert [t["name"] for t in bars["data"]] == ["all", "selected"]
    assert [t["name"] for t in histogram["data"]] == ["all", "selected"]
