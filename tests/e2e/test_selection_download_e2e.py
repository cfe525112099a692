"""End to end in headless Chromium: points lassoed on the map are downloaded as CSV and
Parquet, one right after the other, and the files hold the selected rows.

The selection's CSV once spun forever: its bytes were made on the click from a callable
Streamlit forgets on the next run, and the Parquet click before it had rerun the page. The
selection's files are now made with the table, served as plain files, and a click on them
reruns nothing."""

from __future__ import annotations

import csv
import io
import re

import pandas as pd
import pytest

from tests.e2e.server import wait_for_app
from tests.helpers import lasso_middle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def prepare_db(path) -> None:
    from embscope.core.demo import digits
    from embscope.core.demo_store import store_demo_dataset
    from embscope.core.projections import runs
    from embscope.core.store import Store

    with Store(path) as store:
        info = store_demo_dataset(store, digits())
        runs.compute_projection(store, info.id, method="pca", metric="l2")


def _download(page, name: str) -> bytes:
    with page.expect_download(timeout=15_000) as info:
        page.get_by_role("button", name=name, exact=True).click()
    path = info.value.path()
    assert path is not None, f"the {name} download failed: {info.value.failure()}"
    with open(path, "rb") as f:
        return f.read()


def test_selection_downloads_as_csv_right_after_parquet(page, app_server):
    page.goto(app_server["url"] + "/projections?dataset=1&method=pca")
    wait_for_app(page)
    page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=30_000)
    lasso_middle(page, 0.25)
    heading = page.get_by_text(re.compile(r"^[\d,]+ selected point\(s\)$"))
    heading.wait_for(timeout=30_000)
    wait_for_app(page)
    selected = int(heading.inner_text().split()[0].replace(",", ""))
    assert selected > 10

    parquet = pd.read_parquet(io.BytesIO(_download(page, "Parquet")))
    text = _download(page, "CSV").decode("utf-8")  # at once: this click used to hang
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(parquet) == selected
    assert {"row", "id", "label", "x", "y"} <= set(rows[0])
    assert [r["id"] for r in rows] == parquet["id"].tolist()
    assert all(r["id"].startswith("digit-") for r in rows)
    assert [float(r["x"]) for r in rows] == pytest.approx(parquet["x"].tolist(), rel=1e-6)
    # and again, after both: the same file
    assert _download(page, "CSV").decode("utf-8") == text
    assert page.dialogs == []
