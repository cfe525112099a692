"""End to end in headless Chromium: upload a file through the page, see it listed, screenshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.e2e.server import screenshot, upload_input, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVIL = "<img src=x onerror=alert(1)>"


def test_upload_save_list_and_screenshot(page, app_server):
    tmp = app_server["tmp"]
    X = np.random.default_rng(0).standard_normal((120, 16)).astype(np.float32)
    vec = tmp / "browser vectors.npy"
    np.save(vec, X)
    meta = tmp / "metadata.csv"
    pd.DataFrame(
        {
            "key": [f"item{i}" for i in range(120)],
            "note": [EVIL if i % 2 else "plain" for i in range(120)],
        }
    ).to_csv(meta, index=False)

    upload_input(page).set_input_files(str(vec))
    wait_for_app(page)
    upload_input(page, "Metadata file").set_input_files(str(meta))
    wait_for_app(page)
    page.get_by_text("Preview (first rows)").wait_for(timeout=30_000)
    metric_text = page.locator("[data-testid='stMetric']").all_inner_texts()
    assert any("120" in t for t in metric_text), metric_text
    screenshot(page, "datasets-preview")

    name_box = page.get_by_label("Name")
    name_box.fill("from the browser")
    page.get_by_role("button", name="Save dataset").click()
    page.get_by_text("Saved dataset").wait_for(timeout=60_000)
    wait_for_app(page)
    # listed in the catalog and chosen in the sidebar picker
    page.get_by_text("Stored datasets").wait_for()
    picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']")
    picked = picker.text_content() or ""
    if "from the browser" not in picked:
        picked = picker.locator("input").input_value()
    assert "from the browser" in picked, picked
    shot = screenshot(page, "datasets-saved")
    assert shot.stat().st_size > 10_000
    assert page.dialogs == [], "metadata HTML must never run as script"

    from embscope.core.store import Store

    # The server holds the database; read it through a read-only look at the page instead:
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "from the browser" in body
    assert Store  # imported to make sure the test runs against the real package


def test_bad_file_shows_a_clear_error(page, app_server):
    bad = app_server["tmp"] / "broken.npy"
    bad.write_bytes(b"\x93NUMPY garbage that is not an array")
    upload_input(page).set_input_files(str(bad))
    wait_for_app(page)
    err = page.locator("[data-testid='stAlertContentError']")
    err.first.wait_for(timeout=30_000)
    text = err.first.inner_text()
    assert "npy" in text.lower() or "numpy" in text.lower(), text
    assert page.locator("text=Traceback").count() == 0
    screenshot(page, "datasets-error")


def test_an_h5ad_storing_its_data_in_another_file_is_refused_in_the_page(page, app_server):
    """The upload that read a server file: an .h5ad whose X lives (HDF5 external storage) in
    a secret file on the server. The page refuses it; the secret shows nowhere and nothing is
    stored."""
    import h5py

    tmp = app_server["tmp"]
    secret = tmp / "server-secret.txt"
    secret.write_bytes(b"EMBSCOPE_TOKEN=a-secret-of-the-server-0123456789abcdef" * 4)
    evil = tmp / "cells.h5ad"
    with h5py.File(evil, "w") as f:
        f.create_dataset("X", shape=(4, 4), dtype="<f4", external=[(str(secret), 0, 64)])
    upload_input(page).set_input_files(str(evil))
    wait_for_app(page)
    err = page.locator("[data-testid='stAlertContentError']")
    err.first.wait_for(timeout=30_000)
    assert "outside itself" in err.first.inner_text()
    assert "a-secret-of-the-server" not in page.content()
    assert page.get_by_role("button", name="Save dataset").count() == 0
    screenshot(page, "datasets-h5ad-external-refused")


def test_upload_a_csv_of_texts_then_see_its_map(page, app_server):
    """A file of texts and no vectors: embedded at upload, then laid out, clustered and named
    on the map."""
    tmp = app_server["tmp"]
    topics = {
        "network": "socket connection port host server client packet",
        "time": "date time calendar timezone clock second minute",
        "files": "file path directory archive folder read write",
    }
    rng = np.random.default_rng(0)
    rows = []
    for t, words in topics.items():
        for i in range(40):
            picked = rng.choice(words.split(), 4, replace=False)
            rows.append(
                {
                    "id": f"{t}-{i}",
                    "topic": t,
                    "text": f"{EVIL if i == 0 else ''} " + " ".join(picked),
                }
            )
    path = tmp / "notes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    upload_input(page).set_input_files(str(path))
    page.get_by_role("button", name="Embed and save").wait_for(timeout=30_000)
    wait_for_app(page)
    screenshot(page, "datasets-texts-preview")
    page.get_by_role("button", name="Embed and save").click()
    page.get_by_text("texts of “text” embedded").wait_for(timeout=120_000)
    wait_for_app(page)
    # The map: PCA at once, the clusters found by themselves and named from the texts.
    page.goto(app_server["url"] + "/projections?dataset=notes&method=pca")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some(
            g => ((g._fullLayout || {}).annotations || []).length >= 2)""",
        timeout=90_000,
    )
    wait_for_app(page)
    labels = page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
            g => ((g._fullLayout || {}).annotations || []).map(a => a.text))"""
    )
    words = set(" ".join(labels).replace(",", " ").split())
    assert words & {"socket", "connection", "port", "host", "server", "client", "packet"}
    assert words & {"date", "time", "calendar", "timezone", "clock", "second", "minute"}
    screenshot(page, "projections-texts-map")
    assert page.dialogs == []
