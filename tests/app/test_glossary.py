"""The glossary (app/glossary.py) and where the pages show it; numbers at 3 significant
digits; feedback next to the control that caused it (a saved copy, a rename)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embscope.app import geometry_view, glossary
from embscope.core.compression import default_codecs
from embscope.core.demo import gaussian_mixture
from embscope.core.demo_store import store_demo_dataset
from embscope.core.geometry.scorecard import SCORES
from embscope.core.store import Store
from tests.helpers import by_key, make_parsed, open_page, until


def _head(label: str) -> str:
    return re.sub(r"\s*\(.*\)$", "", label).lower()


def test_no_explanation_repeats_its_term():
    for key, (term, text) in glossary.TERMS.items():
        assert text and not text.lower().startswith(_head(term)), key
        assert not glossary.explain(key)[0].islower()


def test_every_term_a_page_lists_is_explained():
    for page, terms in glossary.PAGE_TERMS.items():
        assert terms and set(terms) <= set(glossary.TERMS), page


@pytest.mark.parametrize(
    "spec", [*default_codecs(384), "lvq:4", "leanvec:192:4", "dct:64:renorm", "int8:absmax"]
)
def test_every_codec_is_explained_with_its_own_numbers(spec):
    text = glossary.codec_explanation(spec)
    assert "does not describe" not in text
    for number in re.findall(r"\d+", spec.split(":", 1)[1] if ":" in spec else ""):
        assert number in text, (spec, text)


def test_a_two_level_codec_names_both_levels():
    assert "4-bit" in glossary.codec_explanation("lvq:4x8")
    assert "8-bit" in glossary.codec_explanation("lvq:4x8")
    assert glossary.codec_family("lvq:4x8") == "lvq2" and glossary.codec_family("pq:48") == "pq"
    assert "8-bit LVQ to re-rank" in glossary.codec_explanation("leanvec:192:4x8")


def test_explanations_do_not_repeat_their_label():
    assert glossary.without_label("IsoScore", "IsoScore: how evenly") == "How evenly"
    assert glossary.without_label("TwoNN", "TwoNN intrinsic dimension") == "Intrinsic dimension"
    assert glossary.without_label("Average cosine", "Mean cosine") == "Mean cosine"
    for key, label in geometry_view.LABELS.items():
        if key in SCORES:
            shown = geometry_view.explanation(key)
            assert shown and not shown.lower().startswith(_head(label)), (key, shown)


def test_scores_read_at_three_significant_digits():
    assert geometry_view.fmt(0.08253) == "0.0825"
    assert geometry_view.fmt(0.19912) == "0.199"
    assert geometry_view.fmt(77.21) == "77.2"
    assert geometry_view.fmt(282.04) == "282"
    assert geometry_view.fmt(np.int64(2098)) == "2,098"
    assert geometry_view.fmt(float("nan")) == "—"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "glossary.duckdb"
    monkeypatch.setenv("EMBSCOPE_DB", str(path))
    with Store(path) as s:
        store_demo_dataset(s, gaussian_mixture(400, 32, 4, seed=0), name="gm")
    return path


def _between(at, first, last) -> list[str]:
    """The types of the elements drawn after ``first`` and before ``last`` (in page order)."""
    nodes = list(at.main)
    i = next(n for n, node in enumerate(nodes) if first(node))
    j = next(n for n, node in enumerate(nodes) if n > i and last(node))
    return [getattr(node, "type", "") for node in nodes[i + 1 : j]]


def test_compression_explains_its_codecs_and_says_saved_under_the_button(db):
    at = open_page("compression")
    by_key(at.multiselect, "compression.codecs.1.cosine").set_value(["int8", "lvq:4x8", "pq:4"])
    by_key(at.number_input, "compression.queries.1").set_value(100)
    at.run()
    what = next(e for e in at.expander if e.label.startswith("What is this?"))
    text = " ".join(m.value for m in what.markdown)
    assert "**int8**" in text and "**lvq\\:4x8**" in text and "**pq\\:4**" in text
    assert "cut into 4 pieces" in text and "a 4-bit code" in text
    assert "**Pareto front**" in text and "**re-ranking (re-ranked with)**" in text
    by_key(at.button, "compression.run").click()
    at.run()
    at = until(at, lambda a: any("codec" in d.value.columns for d in a.dataframe))
    table = next(d.value for d in at.dataframe if "codec" in d.value.columns)
    for column in ("spearman", "isoscore", "effective_rank"):  # 3 significant digits,
        for value in table[column]:  # more only where 3 would round 0.9999 to 1
            digits = len(re.sub(r"[^0-9]", "", f"{value:g}").lstrip("0"))
            assert digits <= 3 or abs(value - round(value)) < 5e-4, (column, value)
    by_key(at.selectbox, "compression.save_spec.1").set_value("lvq:4x8")
    by_key(at.button, "compression.save").click()
    at.run()
    assert not at.exception
    saved = [s.value for s in at.success if "Saved gm" in s.value]
    assert len(saved) == 1 and "beside the original" in saved[0]
    assert any("Saved gm" in t.value for t in at.toast)
    # right under the button: nothing drawn in between but the button's row itself
    between = _between(
        at,
        lambda n: getattr(n, "key", None) == "compression.save",
        lambda n: getattr(n, "type", "") == "success" and "Saved gm" in str(n.value),
    )
    assert not {"plotly_chart", "dataframe"} & set(between), between
    links = [link.value for link in at.get("page_link")]
    assert any(link.startswith("Open gm") and "Projections" in link for link in links)
    from embscope.app.runtime import get_store  # the page holds the database open: share it

    [copy] = [d for d in get_store().list_datasets() if "lvq" in d.name]
    assert by_key(at.selectbox, "compression.beside.1").value == copy.id  # shown below


def test_rename_says_so_beside_the_box(db):
    from streamlit.testing.v1 import AppTest

    main = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
    with Store(db) as s:
        s.add_dataset(make_parsed(np.eye(3, dtype=np.float32)), name="small")
    at = AppTest.from_file(main, default_timeout=60).run()
    [box] = [t for t in at.text_input if t.label == "Rename to"]
    box.set_value("tiny")
    [b for b in at.button if b.label == "Rename"][0].click()
    at.run()
    assert not at.exception
    [note] = [s.value for s in at.success if "Renamed" in s.value]
    assert "tiny" in note
    assert any("renamed" in t.value for t in at.toast)
    between = _between(
        at,
        lambda n: getattr(n, "label", None) == "Rename",
        lambda n: getattr(n, "type", "") == "success" and "Renamed" in str(n.value),
    )
    assert "dataframe" not in between, between
