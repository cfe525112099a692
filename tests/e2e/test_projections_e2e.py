"""End to end in headless Chromium: a projection computed in the background, drawn with every
point and selected with the lasso; the compression Pareto plot and harm map; a comparison."""

from __future__ import annotations

import pytest

from tests.e2e.server import screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POINTS_DRAWN = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.map(el => (el._fullData || []).reduce(
        (s, t) => s + (t.x && t.type === 'scattergl' ? t.x.length : 0), 0));
}"""


def prepare_db(path) -> None:
    from embscope.core.compression import save_compressed_copy
    from embscope.core.demo import digits
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.store import Store

    with Store(path) as store:
        info = store_demo_dataset(store, digits())
        save_compressed_copy(store, info.id, "int8", metric="l2")


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
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * 0.3
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.get_by_text("selected point(s)").wait_for(timeout=30_000)
    wait_for_app(page)
    screenshot(page, "projections-lasso")
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
    page.wait_for_function(f"() => ({POINTS_DRAWN})().filter(n => n > 0).length >= 2")
    screenshot(page, "compare")
