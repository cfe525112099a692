"""End to end in headless Chromium: the Neighbours page answers a point query, a vector query and
a text query, each with the exact answer and recall beside it."""

from __future__ import annotations

import re

import pytest

from tests.e2e.server import screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def prepare_db(path) -> None:
    from embscope.core.demo import stdlib_docstrings
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.store import Store

    with Store(path) as store:
        store_demo_dataset(store, stdlib_docstrings())


def _answer(page, expect: str) -> dict[str, str]:
    """The query line and the three metrics once the answer to ``expect`` is on the page."""
    page.locator("[data-testid='stMarkdown']", has_text="Query:").filter(has_text=expect).wait_for(
        timeout=60_000
    )
    page.get_by_text("Exact search latency").wait_for(timeout=60_000)
    wait_for_app(page)
    metrics = {}
    for text in page.locator("[data-testid='stMetric']").all_inner_texts():
        label, _, value = text.strip().partition("\n")
        metrics[label.strip()] = value.strip()
    query = page.locator("[data-testid='stMarkdown']", has_text="Query:").last.inner_text()
    return {"query": query, **metrics}


def _check(answer: dict[str, str]) -> None:
    assert re.fullmatch(r"(\d|10) of 10", answer["recall@10 of this query"]), answer
    assert re.fullmatch(r"[\d.]+ ms", answer["HNSW (hnswlib) latency"]), answer
    assert re.fullmatch(r"[\d.]+ ms", answer["Exact search latency"]), answer


def _find(page) -> None:
    page.get_by_role("button", name="Find neighbours").filter(visible=True).click()
    wait_for_app(page)


def test_point_vector_and_text_queries(page, app_server):
    page.goto(app_server["url"] + "/neighbours")
    wait_for_app(page)
    page.get_by_role("heading", name="Neighbours").wait_for()

    # A point, found by searching its metadata.
    page.get_by_label("Search ids and metadata").fill("json.dumps")
    page.keyboard.press("Enter")
    wait_for_app(page)
    page.locator("[data-testid='stSelectbox']", has_text="matching item").click()
    page.get_by_role("option").filter(has_text="row 842").click()
    wait_for_app(page)
    answer = _answer(page, "row 842")
    assert "row 842 (id json.dumps)" in answer["query"]
    _check(answer)
    screenshot(page, "neighbours-point")

    # A pasted vector: the first item's own vector finds it first.
    page.get_by_role("tab", name="By vector").click()
    from embscope.core.demo import stdlib_docstrings

    vector = stdlib_docstrings().vectors[3]
    page.get_by_label("Paste a vector").fill(", ".join(f"{v:.6f}" for v in vector))
    page.keyboard.press("Control+Enter")  # a text area commits its value on Ctrl+Enter or blur
    wait_for_app(page)
    _find(page)
    answer = _answer(page, "vector")
    assert answer["query"].endswith("vector")
    _check(answer)
    screenshot(page, "neighbours-vector")

    # Text, embedded with the dataset's own model through onnxruntime.
    page.get_by_role("tab", name="By text").click()
    page.get_by_label("Text", exact=True).fill("parse a JSON document")
    page.keyboard.press("Enter")
    wait_for_app(page)
    _find(page)
    answer = _answer(page, "parse a JSON document")
    assert "parse a JSON document" in answer["query"]
    _check(answer)
    screenshot(page, "neighbours-text")
    assert page.dialogs == []
