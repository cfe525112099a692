"""End to end in headless Chromium: a projection computed in the background, drawn with every
point and selected with the lasso; the compression Pareto plot and harm map; a comparison."""

from __future__ import annotations

import re

import pytest

from tests.e2e.server import screenshot, wait_for_app
from tests.helpers import lasso_middle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POINTS_DRAWN = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.map(el => (el._fullData || []).reduce(
        (s, t) => s + (t.x && t.type === 'scattergl' ? t.x.length : 0), 0));
}"""


# The scatter point nearest the middle of the map, in page pixels, with its row.
MIDDLE_POINT = """() => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => (g._fullData || []).some(t => t.type === 'scattergl'));
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
    const cx = r.left + xa._offset + xa._length / 2, cy = r.top + ya._offset + ya._length / 2;
    let best = null;
    for (const t of gd._fullData) {
        if (t.type !== 'scattergl' || !t.customdata || t.mode !== 'markers') continue;
        for (let i = 0; i < t.x.length; i++) {
            const px = r.left + xa._offset + xa.l2p(t.x[i]);
            const py = r.top + ya._offset + ya.l2p(t.y[i]);
            const d = Math.hypot(px - cx, py - cy);
            if (best === null || d < best.d) best = {d, px, py, row: t.customdata[i]};
        }
    }
    return best;
}"""

TRACES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    g => (g._fullData || []).map(t => ({name: t.name, rows: Array.from(t.customdata || [])})))"""

MAP_LABELS = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    g => ((g._fullLayout || {}).annotations || []).map(a => a.text))"""


# Per chart: how many point labels and annotations are drawn, and the pairs that overlap.
LABELS_OVERLAPPING = """() => [...document.querySelectorAll('.js-plotly-plot')].map(p => {
  const r = [...p.querySelectorAll('.textpoint text, .annotation-text')]
    .filter(e => e.textContent.trim()).map(e => [e.textContent, e.getBoundingClientRect()]);
  const bad = [];
  for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
    const a = r[i][1], b = r[j][1];
    if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5
        && b.top < a.bottom - 0.5) bad.push([r[i][0], r[j][0]]);
  }
  return [r.length, bad];
})"""


def prepare_db(path) -> None:
    from embscope.core.compression import save_compressed_copy
    from embscope.core.demo import digits, stdlib_docstrings
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.store import Store

    with Store(path) as store:
        info = store_demo_dataset(store, digits())
        save_compressed_copy(store, info.id, "int8", metric="l2")
        store_demo_dataset(store, stdlib_docstrings())  # dataset 3: texts to name clusters


def _metrics(page) -> dict[str, str]:
    out = {}
    for text in page.locator("[data-testid='stMetric']").all_inner_texts():
        label, _, value = text.strip().partition("\n")
        out[label.strip()] = value.strip()
    return out


def test_projection_job_draws_every_point_and_lasso_selects(page, app_server):
    page.goto(app_server["url"] + "/projections?dataset=1&method=largevis&color=label")
    wait_for_app(page)
    page.get_by_role("button", name="Compute the LargeVis projection").click()
    # the job runs in the background: the page shows progress, then the result
    page.get_by_text("Trustworthiness@10").wait_for(timeout=120_000)
    wait_for_app(page)
    metrics = _metrics(page)
    assert float(metrics["Trustworthiness@10"]) > 0.97
    assert float(metrics["kNN accuracy@10"]) > 0.95
    page.wait_for_function(f"() => ({POINTS_DRAWN})().some(n => n === 1797)", timeout=30_000)

    # lasso a region of the scatter: the selected rows are listed
    lasso_middle(page, 0.3)
    page.get_by_text("selected point(s)").wait_for(timeout=60_000)
    wait_for_app(page)
    screenshot(page, "projections-lasso")
    assert page.dialogs == []


def test_clusters_are_named_on_the_map_and_a_click_rings_the_neighbours(page, app_server):
    # No click: PCA is drawn at once and the clusters are found by themselves, each named
    # where its points are; the link asks for them as the colour before they exist.
    page.goto(app_server["url"] + "/projections?dataset=3&method=pca&color=%28clusters%29")
    page.wait_for_function(f"() => ({MAP_LABELS})().length >= 10", timeout=60_000)
    wait_for_app(page)
    labels = page.evaluate(MAP_LABELS)
    assert any("socket" in t for t in labels) and any("logg" in t for t in labels), labels
    names = [t["name"] for t in page.evaluate(TRACES)]
    assert names[0].startswith("0 · ") and len(names) == len(set(names)) >= 10

    # Click the point in the middle of the map: its row and its ten nearest neighbours are
    # listed, and ringed on the map (rings keep each neighbour's row).
    point = page.evaluate(MIDDLE_POINT)
    page.mouse.click(point["px"], point["py"])
    page.get_by_text("nearest neighbours of").wait_for(timeout=30_000)
    wait_for_app(page)
    traces = {t["name"]: t["rows"] for t in page.evaluate(TRACES)}
    assert traces["clicked point"] == [point["row"]]
    ringed = traces["10 nearest neighbours"]
    assert len(ringed) == 10 and point["row"] not in ringed
    listed = page.locator("[data-testid='stDataFrame']").count()
    assert listed >= 2  # the selected row and its neighbours
    screenshot(page, "projections-click-neighbours")
    assert page.dialogs == []


def test_filter_and_search_change_the_map_and_the_table(page, app_server):
    page.goto(app_server["url"] + "/projections?dataset=3&method=pca&color=module")
    page.wait_for_function(f"() => ({TRACES})().length > 0", timeout=60_000)
    wait_for_app(page)
    # Search: the items containing the word light up, and those nearest it by meaning.
    box = page.get_by_placeholder("search: words in ids and metadata, or a meaning")
    box.fill("socket")
    box.press("Enter")
    page.wait_for_function(
        f"() => ({TRACES})().some(t => t.name.includes('contain “socket”'))", timeout=30_000
    )
    wait_for_app(page)
    names = {t["name"]: t["rows"] for t in page.evaluate(TRACES)}
    contain = next(n for n in names if "contain “socket”" in n)
    assert int(contain.split()[0]) == len(names[contain]) > 5
    meaning = [n for n in names if "nearest by meaning" in n]
    assert meaning and len(names[meaning[0]]) == 25
    # Filter: module is json, built in the Filter popover.
    page.get_by_role("button", name="Filter").click()
    popover = page.locator("[data-testid='stPopoverBody']")
    popover.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="module", exact=True).click()
    wait_for_app(page)
    values = popover.locator("[data-testid='stMultiSelect'] input").first
    values.fill("json")
    values.press("Enter")
    wait_for_app(page)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Add this condition").click()
    page.get_by_text("items match the filter").wait_for(timeout=30_000)
    wait_for_app(page)
    traces = {t["name"]: t["rows"] for t in page.evaluate(TRACES)}
    grey = next(n for n in traces if n.startswith("filtered out"))
    coloured = [n for n in traces if n in ("json",)]
    assert (
        coloured == ["json"]
        and len(traces["json"]) + int(grey.split("(")[1][:-1].replace(",", "")) == 2098
    )
    # The search now counts only matches inside the filter.
    assert not any(
        "contain “socket”" in n and len(r) > len(traces["json"]) for n, r in traces.items()
    )
    # Clicking a point: its neighbours are json items only (filtered search).
    point = page.evaluate(MIDDLE_POINT)
    page.mouse.click(point["px"], point["py"])
    page.get_by_text("nearest neighbours of").wait_for(timeout=30_000)
    wait_for_app(page)
    traces = {t["name"]: t["rows"] for t in page.evaluate(TRACES)}
    assert set(traces["10 nearest neighbours"]) <= set(traces["json"])
    screenshot(page, "projections-filter-search")
    assert page.dialogs == []


def test_a_click_on_a_metadata_bar_filters_the_map(page, app_server):
    page.goto(app_server["url"] + "/projections?dataset=3&method=pca&color=module")
    page.wait_for_function(f"() => ({TRACES})().length > 0", timeout=60_000)
    wait_for_app(page)
    charts_of = page.get_by_role("combobox", name="Charts of")
    charts_of.click()
    charts_of.fill("module")
    charts_of.press("Enter")
    page.keyboard.press("Escape")
    chart = page.locator(".js-plotly-plot", has_text="module (top 12)")
    chart.wait_for(timeout=30_000)
    bar = chart.locator(".bars .point path").first  # the most common module: tkinter
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()  # plotly's drag layer takes the click, and finds the bar
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_text("items match the filter").wait_for(timeout=30_000)
    wait_for_app(page)
    names = {t["name"]: t["rows"] for t in page.evaluate(TRACES) if t["rows"]}
    assert len(names["tkinter"]) == 150 and not ({"asyncio", "logging"} & set(names))
    assert page.get_by_text("150 of 2,098 items match the filter").count() == 1
    screenshot(page, "projections-bar-filter")
    assert page.dialogs == []


def test_compression_pareto_and_harm_map_render(page, app_server):
    page.goto(app_server["url"] + "/compression?dataset=1")
    wait_for_app(page)
    page.get_by_role("button", name="Run the comparison").click()
    page.get_by_text("Where compression hurts").wait_for(timeout=180_000)
    wait_for_app(page)
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=30_000
    )
    counts = page.evaluate(POINTS_DRAWN)
    assert 1797 in counts  # the harm map: every query point (the rest grey)
    page.wait_for_selector(".js-plotly-plot .xtick", timeout=30_000)  # drawn after the data
    assert page.locator(".js-plotly-plot .xtick").count() > 0  # the Pareto plot has axes
    # As drawn (not only as app/plot_style estimates): codec names, no two overlapping.
    labels, overlaps = page.evaluate(LABELS_OVERLAPPING)[0]
    assert labels >= 5 and overlaps == [], overlaps
    screenshot(page, "compression")


def test_compare_page_compares_item_by_item(page, app_server):
    page.goto(app_server["url"] + "/compare?dataset=1")
    wait_for_app(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("Items that moved most").wait_for(timeout=120_000)
    wait_for_app(page)
    metrics = _metrics(page)
    assert metrics["Items matched"] == "1,797"
    assert 0.0 < float(metrics["kNN overlap@10"]) < 1.0
    # The other dataset's twin of the left layout starts on a click (only PCA starts itself).
    compute = page.get_by_role("button", name=re.compile(r"^Compute "))
    if compute.count():
        compute.first.click()
    page.wait_for_function(
        f"() => ({POINTS_DRAWN})().filter(n => n > 0).length >= 2", timeout=120_000
    )
    screenshot(page, "compare")


# The rows each map's markers show as selected (customdata of the selected points).
SELECTED_ON_MAP = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    g => (g._fullData || []).filter(t => t.type === 'scattergl' && t.mode === 'markers'
        && t.customdata && Array.isArray(t.selectedpoints))
      .flatMap(t => t.selectedpoints.map(i => t.customdata[i])))"""

# The clusters table (drawn on a canvas) as glide's accessible table: column names and cells.
CLUSTER_GRID = """() => {
  const df = [...document.querySelectorAll("[data-testid='stDataFrame']")].find(d =>
    [...d.querySelectorAll('canvas table thead th')].some(th => th.textContent.trim() === 'keywords'));
  if (!df) return null;
  const t = df.querySelector('canvas table');
  return {
    heads: [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()),
    rows: [...t.querySelectorAll('tbody tr')]
      .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim())),
  };
}"""


def test_a_click_on_a_cluster_row_selects_its_points(page, app_server):
    # The clusters are stored by the test above (found here first when this test runs alone).
    page.goto(app_server["url"] + "/projections?dataset=3&method=pca&color=%28clusters%29")
    page.wait_for_function(f"() => ({MAP_LABELS})().length >= 10", timeout=120_000)
    wait_for_app(page)
    assert page.evaluate(SELECTED_ON_MAP) == []  # nothing selected yet
    expander = page.get_by_text(re.compile(r"^Clusters: \d+ found"))
    expander.click()
    page.wait_for_function(f"() => ({CLUSTER_GRID})() !== null", timeout=30_000)
    grid = page.evaluate(CLUSTER_GRID)
    first = dict(zip(grid["heads"], grid["rows"][0], strict=False))
    size = int(first["size"].replace(",", ""))
    assert first["cluster"] == "0" and 10 < size < 2098, first

    # The first row's selection box (the grid's leftmost column): cluster 0 is picked.
    table = page.locator("[data-testid='stDataFrame']").filter(
        has=page.locator("canvas table thead th", has_text="keywords")
    )
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    # Streamlit draws 35 px rows under a 35 px header; the boxes' column is the first.
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 35 / 2)
    page.get_by_text(f"{size:,} selected point(s)").wait_for(timeout=30_000)
    wait_for_app(page)
    # On the map exactly the cluster's points are selected: those of its trace, "0 · ...".
    traces = {t["name"]: t["rows"] for t in page.evaluate(TRACES)}
    [name] = [n for n in traces if n.startswith("0 · ")]
    assert name.removeprefix("0 · ") == first["label"]
    page.wait_for_function(f"() => ({SELECTED_ON_MAP})().length === {size}", timeout=30_000)
    selected = page.evaluate(SELECTED_ON_MAP)
    assert sorted(selected) == sorted(traces[name]) and len(traces[name]) == size
    screenshot(page, "projections-cluster-row")
    assert page.dialogs == []
