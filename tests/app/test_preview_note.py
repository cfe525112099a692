"""AppTest: a preview layout on the Projections page is labelled as one (app/preview_note.py),
from a share link or the settings, and the full layout of the same settings is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embscope.core.projections import runs
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page

N, SAMPLE = 1_200, 1_000
CAPTION = "Preview: layout of a 1,000-point sample, the other 200 placed by their neighbours"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "preview.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    rng = np.random.default_rng(0)
    centres = 6 * rng.standard_normal((4, 8))
    X = (rng.standard_normal((N, 8)) + centres[rng.integers(0, 4, N)]).astype(np.float32)
    with Store(path) as s:
        info = s.add_dataset(make_parsed(X), name="points")
        params = {"preview": True, "preview_sample": SAMPLE}
        runs.compute_projection(s, info.id, method="largevis", params=params)
    return path


def _notes(at) -> list[str]:
    return [i.value for i in at.info]


def test_a_preview_is_labelled_and_the_full_layout_is_not(db):
    at = open_page(
        "projections",
        {"dataset": "1", "method": "largevis", "p.preview": "1", "p.preview_sample": str(SAMPLE)},
    )
    assert not at.exception
    assert any(note.startswith(CAPTION) for note in _notes(at)), _notes(at)
    assert any("LargeVis 2-D preview" in c.proto.spec for c in at.get("plotly_chart"))
    # Preview off: the full layout (not computed yet), and no label.
    by_key(at.checkbox, "projections.largevis.preview").uncheck()
    at.run()
    assert not at.exception and not any(n.startswith("Preview:") for n in _notes(at))


def test_a_full_layout_that_takes_minutes_points_to_the_preview(db, monkeypatch):
    """Above HINT_N items the Compute caption of a full LargeVis or UMAP layout says where the
    preview is; below it, for PCA, or with preview on, it does not."""
    from embscope.app import preview_note

    def captions(at) -> str:
        return " ".join(c.value for c in at.caption)

    at = open_page("projections", {"dataset": "1", "method": "largevis"})
    assert not at.exception and "'preview' switch" not in captions(at)  # 1,200 < HINT_N
    monkeypatch.setattr(preview_note, "HINT_N", 1_000)
    at = open_page("projections", {"dataset": "1", "method": "umap"})
    assert not at.exception and "On 1,200 items a full layout takes minutes" in captions(at)
    assert preview_note.compute_hint(1_200, "pca", {}) == ""
    assert preview_note.compute_hint(1_200, "largevis", {"preview": True}) == ""


def test_the_gallery_lists_a_previews_settings_not_its_record(db):
    """The gallery's parameters column shows preview=True and its sample, not the dict of
    what the preview did (that is the note above the map)."""
    from embscope.app.projections_view import _gallery_rows

    with Store(db) as s:
        stored = runs.list_projections(s, 1)
    frame = _gallery_rows(stored)
    text = " ".join(frame["parameters"])
    assert "preview=True" in text and f"preview_sample={SAMPLE}" in text and "{" not in text
