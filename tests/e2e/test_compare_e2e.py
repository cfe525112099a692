"""End to end in headless Chromium: the Compare page sets a dataset's layout beside its int8
copy's like for like, the copy's twin layout computed in the background (never a UMAP beside
a PCA)."""

from __future__ import annotations

import pytest

from tests.e2e.server import screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N_EPOCHS = 200  # a light UMAP: the test is about which layout is drawn, not its quality


def prepare_db(path) -> None:
    from embscope.core import compare_runs
    from embscope.core.artifacts import get_or_compute
    from embscope.core.compression import save_compressed_copy
    from embscope.core.demo import digits
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.projections import runs
    from embscope.core.store import Store

    with Store(path) as store:
        info = store_demo_dataset(store, digits())
        copy = save_compressed_copy(store, info.id, "int8", metric=info.metric)
        runs.compute_projection(store, info.id, method="umap", params={"n_epochs": N_EPOCHS})
        runs.compute_projection(store, info.id, method="pca")  # newer, less faithful
        request = compare_runs.comparison_request(store, info.id, copy.id, metric=info.metric)
        get_or_compute(store, compare_runs.COMPARISONS, request)  # shown at once


# Each drawn chart's title (as shown) and number of scatter points.
CHARTS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(g => ({
    title: (g.querySelector('.gtitle') || {}).textContent || '',
    points: (g._fullData || []).reduce(
        (s, t) => s + (t.x && t.type === 'scattergl' ? t.x.length : 0), 0)}))"""


def test_compare_with_an_int8_copy_defaults_to_the_same_method_on_both_sides(page, app_server):
    page.goto(app_server["url"] + "/compare?dataset=1")
    wait_for_app(page)
    page.get_by_text("Where the spaces disagree").wait_for(timeout=60_000)
    left = page.locator("[data-testid='stSelectbox']").filter(has_text="Layout of digits").first
    right = page.locator("[data-testid='stSelectbox']").filter(has_text="[int8]").first
    # the best stored layout of the original (UMAP, not the newer PCA), and the same method
    # and parameters for the copy, computed as a job: both maps are UMAP
    assert left.locator("input").input_value().startswith("UMAP 2-D")
    assert right.locator("input").input_value() == "Same method and parameters as the left"
    # a click starts the twin (a visitor who only looks starts no UMAP)
    page.get_by_role("button", name="Compute UMAP").first.click()
    page.wait_for_function(
        f"() => ({CHARTS})().filter(c => c.points === 1797).length === 2", timeout=120_000
    )
    wait_for_app(page)
    maps = [c["title"] for c in page.evaluate(CHARTS) if c["points"] == 1797]
    assert len(maps) == 2 and all(t.startswith("UMAP 2-D of digits") for t in maps), maps
    assert page.get_by_text("Like for like: both maps are UMAP").count() == 1
    page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()  # the two maps
    screenshot(page, "compare-like-for-like")
    assert page.dialogs == []
