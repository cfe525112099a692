"""The map's filter and search on the Projections page: built in the page, in the link, applied
to the map, the selection and a clicked point's neighbours, hostile text shown as text."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embscope.app import figures
from embscope.app.map_filter import describe
from embscope.core.filters import one_of
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page, spec_strings, until

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "filter.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    rng = np.random.default_rng(0)
    n = 300
    kind = np.array(["cat", "dog", HOSTILE])[np.arange(n) % 3]
    X = (rng.standard_normal((n, 8)) + 5 * (np.arange(n) % 3)[:, None]).astype(np.float32)
    meta = pd.DataFrame(
        {"kind": kind, "year": 1990 + np.arange(n) % 40, "note": [f"item {i}" for i in range(n)]}
    )
    with Store(path) as s:
        s.add_dataset(make_parsed(X, meta), name="animals", info={"metric": "l2"})
    return path


def _spec(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def _shown(query: dict):
    at = open_page("projections", {"dataset": "1", "method": "pca", **query})
    return until(at, lambda a: len(a.get("plotly_chart")) > 0)


def test_a_filter_in_the_link_greys_out_the_rest_and_limits_the_selection(db):
    where = [one_of("kind", ["cat", HOSTILE]), "year>=2000"]
    at = _shown({"where": where, "hover": ["kind"]})
    assert not at.exception, at.exception
    spec = _spec(at)
    by_name = {t["name"]: t for t in spec["data"]}
    kept = [i for i in range(300) if i % 3 != 1 and 1990 + i % 40 >= 2000]
    assert f"filtered out ({300 - len(kept):,})" in by_name
    coloured = sorted(
        int(r)
        for t in spec["data"]
        if t.get("customdata") is not None
        for r in np.frombuffer(base64.b64decode(t["customdata"]["bdata"]), dtype=np.int32)
    )
    assert coloured == kept
    assert any(f"{len(kept):,} of 300 items match the filter" in c.value for c in at.caption)
    # The condition is shown as a person reads it, markup as text.
    chips = next(m for m in at.multiselect if m.key.startswith("map.filter.shown"))
    assert describe(where[0]) == f"kind is one of cat, {HOSTILE}" and len(chips.value) == 2
    # A selection across the filter lists only the rows the filter keeps.
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [0, 1, 2, 30]}
    at.run()
    table = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert sorted(table["row"]) == [r for r in (0, 1, 2, 30) if r in kept]
    # One point: its neighbours come from inside the filter only.
    at.session_state["embscope.projections.selection"] = {"dataset": 1, "rows": [kept[5]]}
    at.run()
    neighbours = [df.value for df in at.dataframe if "distance" in df.value.columns][0]
    assert len(neighbours) == 10 and set(neighbours["row"]) <= set(kept)
    shown = spec_strings(at.get("plotly_chart")[0].proto.spec)
    assert not any("<img" in t for t in shown) and any("&lt;img" in t for t in shown)


def test_a_link_with_a_filter_that_does_not_fit_is_ignored_and_said(db):
    for where in (["colour=red"], ["year~20"], ["kind@[1"], ["no operator"]):
        at = _shown({"where": where, "hover": ["kind"]})
        assert not at.exception, (where, at.exception)
        assert not any(t["name"].startswith("filtered out") for t in _spec(at)["data"])


def test_search_lights_up_matches_and_hostile_text_stays_text(db):
    at = _shown({"q": "item 1"})
    traces = {t["name"]: t for t in _spec(at)["data"]}
    # "item 1", "item 10".."item 19", "item 100".."item 199": 111 items
    marks = traces["111 contain “item 1”"]["marker"]
    assert marks["color"] not in figures._PALETTE  # a match is not read as a group
    at = _shown({"q": HOSTILE})
    spec = at.get("plotly_chart")[0].proto.spec
    shown = spec_strings(spec)
    name = "100 contain “" + HOSTILE + "”"
    assert not any("<img" in t for t in shown)
    assert html.escape(name[: figures.LEGEND_CHARS - 1]) + "…" in shown  # cut, then escaped


def test_a_condition_built_in_the_page(db):
    at = _shown({})
    by_key(at.selectbox, "map.filter.column.1").set_value("kind").run()
    by_key(at.multiselect, "map.filter.values.kind").set_value(["dog"]).run()
    by_key(at.button, "map.filter.add").click().run()
    assert not at.exception, at.exception
    assert any("100 of 300 items match the filter" in c.value for c in at.caption)
    # A number column with many values: a range, two conditions.
    by_key(at.selectbox, "map.filter.column.1").set_value("year").run()
    by_key(at.slider, "map.filter.range.year").set_value((2000.0, 2009.0)).run()
    by_key(at.button, "map.filter.add").click().run()
    assert any("27 of 300 items match the filter" in c.value for c in at.caption)
    # Removing a condition from the list drops it.
    chips = next(m for m in at.multiselect if m.key.startswith("map.filter.shown"))
    chips.set_value([v for v in chips.value if v.startswith("year")]).run()
    assert any("80 of 300 items match the filter" in c.value for c in at.caption)


def test_the_neighbours_page_keeps_to_the_maps_filter(db):
    where = [one_of("kind", ["dog"])]
    # Row 0 is a cat: with the filter its neighbours are the nearest dogs.
    at = open_page("neighbours", {"dataset": "1", "row": "0", "where": where, "backend": "exact"})
    assert not at.exception, at.exception
    assert any("Only the 100 items that match the map's filter" in c.value for c in at.caption)
    tables = [df.value for df in at.dataframe if "distance" in df.value.columns]
    assert tables and all(set(t["kind"]) == {"dog"} for t in tables)
    by_key(at.button, "map.filter.clear").click().run()
    tables = [df.value for df in at.dataframe if "distance" in df.value.columns]
    assert tables and all(set(t["kind"]) == {"cat"} for t in tables)
    assert not any("match the map's filter" in c.value for c in at.caption)
