"""After "Save dataset" at the foot of a tall form, the upload's progress bar and Cancel are in
view (headless Chromium at 1600 x 1000): the page brings its job panel to where the user is
looking instead of leaving them scrolled down to where the form's button was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.e2e.server import ARTIFACTS, upload_input, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VIEWPORT = {"width": 1600, "height": 1000}
DIM = 384  # MiniLM's: the job recognises the model from the texts, so it runs for a while


def prepare_db(path) -> None:
    """One stored dataset with metadata: the page stays taller than the window below the upload
    section once the form is gone (its catalog, details and metadata)."""
    from embscope.core.store import Store
    from embscope.core.validation import metric_record
    from tests.helpers import make_parsed

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8)).astype(np.float32)
    meta = pd.DataFrame({"label": [f"group {i % 5}" for i in range(300)], "size": np.arange(300)})
    with Store(path) as store:
        store.add_dataset(make_parsed(X, meta), name="already here", info=metric_record(X, "l2"))


# True once the upload's progress bar and its Cancel button are both wholly inside the window.
IN_VIEW = """() => {
  const main = document.querySelector("[data-testid='stMain']");
  if (!main) { return false; }
  const bar = [...main.querySelectorAll("[data-testid='stProgress']")]
    .find(e => e.innerText.includes("Saving"));
  const cancel = [...main.querySelectorAll("button")].find(b => b.innerText.trim() === "Cancel");
  if (!bar || !cancel) { return false; }
  const inside = r => r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
  return inside(bar.getBoundingClientRect()) && inside(cancel.getBoundingClientRect());
}"""
SCROLL_TO_SAVE = """() => {
  const main = document.querySelector("[data-testid='stMain']");
  const save = [...main.querySelectorAll("button")].find(b => b.innerText.includes("Save dataset"));
  main.scrollTop += save.getBoundingClientRect().bottom - (window.innerHeight - 12);
  return main.scrollTop;
}"""
WHERE = """() => {
  const main = document.querySelector("[data-testid='stMain']");
  const bar = [...main.querySelectorAll("[data-testid='stProgress']")]
    .find(e => e.innerText.includes("Saving"));
  const r = bar ? bar.getBoundingClientRect() : null;
  return {bar: r && [Math.round(r.top), Math.round(r.bottom)], window: window.innerHeight,
          saved: main.innerText.includes("Saved dataset")};
}"""


def test_the_uploads_progress_and_cancel_are_in_view_after_save(page, app_server):
    page.set_viewport_size(VIEWPORT)
    rng = np.random.default_rng(1)
    n = 1500
    # A CSV of vectors, one column per dimension, and a text column: the form lists the 384
    # vector columns, so its Save button is far below the window's first screen.
    frame = pd.DataFrame(rng.standard_normal((n, DIM)).astype(np.float32))
    frame.columns = [f"v{i}" for i in range(DIM)]
    frame.insert(0, "text", [f"a sentence about item {i} and topic {i % 7}" for i in range(n)])
    path = app_server["tmp"] / "tall form.csv"
    frame.to_csv(path, index=False, float_format="%.5f")
    upload_input(page).set_input_files(str(path))
    save = page.get_by_role("button", name="Save dataset")
    save.wait_for(timeout=60_000)
    wait_for_app(page)
    # Scrolled down just until the button shows at the foot of the window, as a user does.
    scrolled = page.evaluate(SCROLL_TO_SAVE)
    page.wait_for_timeout(300)
    box = save.bounding_box()
    assert scrolled > 300 and box is not None, (scrolled, box)
    assert VIEWPORT["height"] - 120 < box["y"] + box["height"] <= VIEWPORT["height"], box
    save.click()
    try:
        page.wait_for_function(IN_VIEW, polling="raf", timeout=30_000)
    except Exception as exc:  # say where the panel was
        raise AssertionError(f"progress and Cancel not in view: {page.evaluate(WHERE)}") from exc
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload-after-save.png"))  # what the user sees
    # The upload goes on to be saved as ever.
    page.get_by_text("Saved dataset").wait_for(timeout=120_000)
    wait_for_app(page)
