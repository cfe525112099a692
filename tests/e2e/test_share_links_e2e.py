"""End to end in headless Chromium: a share link opens the view it names, the Copy link button
puts the address (never a token) on the clipboard, and a Neighbours link runs its query."""

from __future__ import annotations

import pytest

from tests.e2e.server import screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The dataset's points (not the rings and lines around a clicked point and its neighbours).
POINTS_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el =>
    (el._fullData || []).reduce((s, t) => s + (t.x && t.type === 'scattergl'
        && !/nearest neighbours|clicked point|neighbour links/.test(t.name || '')
        ? t.x.length : 0), 0))"""


def prepare_db(path) -> None:
    from embscope.core.demo import digits
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.projections import runs
    from embscope.core.store import Store

    with Store(path) as store:
        info = store_demo_dataset(store, digits())
        runs.compute_projection(store, info.id, method="pca", metric="l2")


def _copy_link(page) -> str:
    status = page.locator(".embscope-share-status")
    page.get_by_role("button", name="Copy link").click()
    page.wait_for_function(
        "() => document.querySelector('.embscope-share-status').textContent === 'Link copied'",
        timeout=5_000,
    )
    assert status.inner_text() == "Link copied"
    return page.evaluate("navigator.clipboard.readText()")


def test_projections_link_opens_the_view_and_copy_link_copies_it(page, app_server):
    base = app_server["url"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.goto(base + "/projections?dataset=1&method=pca&color=label&item=digit-5")
    wait_for_app(page)
    page.get_by_text("1 selected point(s)").wait_for(timeout=30_000)
    wait_for_app(page)
    assert page.get_by_role("combobox", name="Method").input_value() == "PCA"
    assert page.get_by_role("combobox", name="Colour by").input_value() == "label"
    assert page.get_by_text("Nearest neighbours of row 5 (id digit-5)").count() == 1
    page.wait_for_function(f"() => ({POINTS_DRAWN})().some(n => n === 1797)", timeout=30_000)
    # the page wrote its whole view back into the address
    assert page.url == (
        base + "/projections?dataset=1&method=pca&dims=2&seed=0&metric=l2&color=label&item=digit-5"
    )
    # the button sits at the right of the title
    title = page.get_by_role("heading", name="Projections").bounding_box()
    button = page.get_by_role("button", name="Copy link").bounding_box()
    assert button["x"] > title["x"] + 600 and abs(button["y"] - title["y"]) < 60
    assert _copy_link(page) == page.url
    screenshot(page, "share-link-projections")
    # a token in the address is never copied along
    page.evaluate("history.replaceState({}, '', location.href + '&token=s3cret')")
    copied = _copy_link(page)
    assert "token" not in copied and copied == page.url.replace("&token=s3cret", "")
    assert page.dialogs == []


def test_neighbours_link_runs_its_query(page, app_server):
    page.goto(app_server["url"] + "/neighbours?dataset=1&k=5&metric=l2&row=42")
    wait_for_app(page)
    page.locator("[data-testid='stMarkdown']", has_text="Query:").wait_for(timeout=30_000)
    page.get_by_text("Exact search latency").wait_for(timeout=30_000)
    wait_for_app(page)
    assert (
        "row 42 (id digit-42)"
        in page.locator("[data-testid='stMarkdown']", has_text="Query:").inner_text()
    )
    assert page.locator("[data-testid='stMetric']", has_text="recall@5").count() == 1
    assert page.locator("[data-testid='stDataFrame']").count() >= 2  # index and exact answers
    assert "row=42" in page.url and "k=5" in page.url
    screenshot(page, "share-link-neighbours")
    assert page.dialogs == []
