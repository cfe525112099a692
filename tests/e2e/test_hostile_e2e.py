"""End to end in headless Chromium: a dataset whose name, ids and metadata are HTML, script and
markdown is shown as text everywhere (tables, legend, hover, selection list, query results,
downloads) and never runs: no dialog opens, no element is injected."""

from __future__ import annotations

import urllib.parse

import numpy as np
import pandas as pd
import pytest

from embscope.app import figures
from tests.e2e.server import screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MARKUP = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "<b>bold</b>",
    "**x** [link](javascript:alert(3))",
]
NAME = " ".join(MARKUP)
OTHER = "copy " + MARKUP[1]
N = 60


def _ids() -> list[str]:
    return [f"{MARKUP[i % 4]} #{i}" for i in range(N)]


def prepare_db(path) -> None:
    from embscope.core.geometry.scorecard import get_or_compute_scorecard
    from embscope.core.ingest import from_arrays
    from embscope.core.projections.runs import compute_projection
    from embscope.core.store import Store

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8)) * 6
    X = (centres[np.arange(N) % 4] + rng.standard_normal((N, 8))).astype(np.float32)
    meta = pd.DataFrame(
        {
            "item": _ids(),
            "category": [MARKUP[i % 4] for i in range(N)],  # colour: one legend entry each
            "hover": [f"{MARKUP[(i + 1) % 4]} | {MARKUP[(i + 2) % 4]}" for i in range(N)],
        }
    )
    noise = 0.3 * rng.standard_normal(X.shape).astype(np.float32)
    with Store(path) as store:
        a = store.add_dataset(from_arrays(X, metadata=meta, id_column="item"), name=NAME)
        store.add_dataset(from_arrays(X + noise, metadata=meta, id_column="item"), name=OTHER)
        compute_projection(store, a.id, method="pca")
        get_or_compute_scorecard(store, a.id, k=10, metric="cosine")  # the page's defaults


# Elements the markup would create if it were rendered rather than shown as text.
INJECTED = """() => ({
    img: document.querySelectorAll('img[src="x"]').length,
    script: [...document.querySelectorAll('script')].filter(
        s => (s.textContent || '').includes('alert(2)')).length,
    bold: [...document.querySelectorAll('b, strong')].filter(
        e => ['bold', 'x'].includes(e.textContent)).length,
    svgBold: [...document.querySelectorAll('tspan')].filter(
        e => e.textContent === 'bold' && /bold/.test(e.getAttribute('style') || '')).length,
    link: document.querySelectorAll('a[href^="javascript"]').length,
    pwned: window.__pwned || 0,
})"""
# alert() still opens its dialog (the page fixture records dialogs); this also counts calls.
COUNT_ALERTS = """{ const alert0 = window.alert;
    window.alert = function (m) { window.__pwned = (window.__pwned || 0) + 1;
                                  return alert0.call(window, m); }; }"""
NOTHING = {"img": 0, "script": 0, "bold": 0, "svgBold": 0, "link": 0, "pwned": 0}


def _clean(page) -> None:
    assert page.dialogs == []
    assert page.evaluate(INJECTED) == NOTHING


GRID_CELLS = """() => [...document.querySelectorAll("[data-testid='stDataFrame'] td")]
    .map(td => td.textContent).join('\\n')"""


def _grid_text(page, *expect: str, timeout: float = 30_000) -> str:
    """The cells of every st.dataframe (drawn on a canvas; glide keeps an accessible table),
    once they hold every text in ``expect`` (tables fill in after the script run ends)."""
    if expect:
        page.wait_for_function(
            f"(want) => {{ const t = ({GRID_CELLS})(); return want.every(w => t.includes(w)); }}",
            arg=list(expect),
            timeout=timeout,
        )
    return page.evaluate(GRID_CELLS)


def _main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def _url(app_server, page_path: str, **params) -> str:
    return f"{app_server['url']}/{page_path}?{urllib.parse.urlencode(params)}"


def test_datasets_and_projections_show_markup_as_text(page, app_server):
    page.add_init_script(COUNT_ALERTS)
    # Datasets: the catalog, the heading and the metadata table.
    page.goto(_url(app_server, "", dataset=1))
    wait_for_app(page)
    page.get_by_role("heading", name=NAME).wait_for()
    _grid_text(page, NAME, OTHER, *MARKUP, _ids()[3])
    _clean(page)

    # Projections: title, legend (one entry per category), hover text and the selection list.
    page.goto(_url(app_server, "projections", dataset=1, method="pca", color="category",
                   hover="hover"))  # fmt: skip
    wait_for_app(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot .legendtext').length >= 4"
    )
    legend = sorted(plot.locator(".legendtext").all_text_contents())
    # as text, cut at LEGEND_CHARS (the hover has the whole value)
    cut = figures.LEGEND_CHARS
    assert legend == sorted(m if len(m) <= cut else m[: cut - 1] + "…" for m in MARKUP)
    assert NAME in plot.locator(".gtitle").text_content()
    # hover the first point of the first trace: its label is the row's hover column, as text
    point = page.evaluate(
        """() => { const gd = document.querySelector('.js-plotly-plot');
            const t = gd._fullData[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.getBoundingClientRect();
            return [box.x + xa._offset + xa.l2p(t.x[0]), box.y + ya._offset + ya.l2p(t.y[0]),
                    t.customdata[0]]; }"""
    )
    page.mouse.move(point[0] - 3, point[1] - 3)
    page.mouse.move(point[0], point[1], steps=3)
    hover = plot.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=10_000)
    row = int(point[2])
    label = hover.first.text_content()
    assert f"{MARKUP[(row + 1) % 4]} | {MARKUP[(row + 2) % 4]}" in label, label
    _clean(page)

    # lasso the whole plotting area (the mode bar's lasso tool): the points are listed
    plot.hover()
    page.locator(".modebar-btn[data-val='lasso']").first.click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0 = box["x"] + 4, box["y"] + 4
    x1, y1 = box["x"] + box["width"] - 4, box["y"] + box["height"] - 4
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0)):
        page.mouse.move(x, y, steps=6)
    page.mouse.up()
    page.get_by_text("selected point(s)").wait_for(timeout=60_000)
    wait_for_app(page)
    _grid_text(page, _ids()[0], _ids()[3], MARKUP[3], f"{MARKUP[1]} | {MARKUP[2]}")
    # the selection's CSV download holds the text verbatim
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="CSV", exact=True).click()
    csv = open(download.value.path(), encoding="utf-8").read()
    for text in (*_ids()[:4], *MARKUP):
        assert text in csv, text
    screenshot(page, "hostile-projections")
    _clean(page)


def test_neighbours_compare_and_geometry_show_markup_as_text(page, app_server):
    page.add_init_script(COUNT_ALERTS)
    # Neighbours, from a share link whose id is markup: the query line and the result table.
    item = _ids()[0]
    page.goto(_url(app_server, "neighbours", dataset=1, id=item, backend="exact"))
    wait_for_app(page)
    page.get_by_text("Exact search latency").wait_for(timeout=60_000)
    wait_for_app(page)
    query = page.locator("[data-testid='stMarkdown']", has_text="Query:").last.inner_text()
    assert item in query, query
    grid = _grid_text(page, MARKUP[0] + " #")  # its neighbours (itself left out)
    assert sum(i in grid for i in _ids()) >= 5, grid  # the neighbours' ids, as text
    screenshot(page, "hostile-neighbours")
    _clean(page)
    # a share link whose values are markup: the toast naming the ignored value shows it as text
    page.goto(_url(app_server, "neighbours", dataset=1, id=MARKUP[0] + " nowhere"))
    wait_for_app(page)
    toast = page.locator("[data-testid='stToast']").first
    toast.wait_for(timeout=10_000)
    assert MARKUP[0] in toast.inner_text(), toast.inner_text()
    _clean(page)
    # searching for markup (as the neighbours' search box does) lists the matches as text
    page.goto(_url(app_server, "neighbours", dataset=1, find="search", search=MARKUP[2]))
    wait_for_app(page)
    page.locator("[data-testid='stSelectbox']", has_text="matching item").click()
    options = page.get_by_role("option").all_text_contents()
    assert len(options) >= 5 and all(MARKUP[2] in o for o in options), options
    expected = sum(MARKUP[2] in f"{MARKUP[i % 4]} {MARKUP[(i + 1) % 4]} {MARKUP[(i + 2) % 4]}"
                   for i in range(N))  # fmt: skip
    assert f"{expected} matching items" in _main_text(page)
    page.keyboard.press("Escape")
    _clean(page)

    # Compare: the other dataset's name and the items that moved most.
    page.goto(_url(app_server, "compare", dataset=1))
    wait_for_app(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("Items that moved most").wait_for(timeout=60_000)
    wait_for_app(page)
    assert OTHER in _main_text(page)
    _grid_text(page, MARKUP[0])
    grid = _grid_text(page)
    assert sum(i in grid for i in _ids()) >= 5, grid
    screenshot(page, "hostile-compare")
    _clean(page)

    # Geometry: the hubs table lists ids and metadata.
    page.goto(_url(app_server, "geometry", dataset=1))
    wait_for_app(page)
    page.get_by_text("the points that appear in the most neighbour lists").wait_for(timeout=60_000)
    grid = _grid_text(page, MARKUP[0], MARKUP[3])
    assert sum(i in grid for i in _ids()) >= 5, grid
    _clean(page)
