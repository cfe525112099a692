"""AppTest of every page over a database whose every user string is markup: dataset names,
metadata column names, metadata values, ids, a model name, job labels and share-link values.

Streamlit renders markdown (images, links, math, and HTML shown as text) in most of what a page
sends: ``st.markdown``/``caption``/headings, alerts, toasts, metric labels and values, progress
texts, expander, tab and dialog titles, every widget label and help text, radio and
select-slider options. Only a few fields are plain text (selectbox and multiselect options,
text-input values, ``st.json``, table cells and headers: checked in Chromium, Streamlit 1.67).
Plotly renders a subset of HTML in titles, legends and hover labels.

The test walks every element and block of each page (main, sidebar, dialogs, toasts) and every
string field of its message: a field that is not known to be plain text is treated as markdown
and must hold user text only in escaped form (``app.text.md_escape``); plotly specs must hold
no raw HTML tag from the data; ``st.html`` must hold no user text at all. A new kind of label
is checked without being listed here. tests/e2e/test_hostile_e2e.py looks at the same kind of
data in a real browser (fewer pages, no labels); this one is in-process and takes seconds.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from google.protobuf.descriptor import FieldDescriptor

from embscope.app.text import md_escape
from tests.helpers import open_page

HOSTILE = (
    "![x](http://attacker.invalid/b.png)",  # an image: every viewer's browser fetches it
    "<img src=x onerror=alert(1)>",  # HTML
    "**bold**",  # formatting
    "[link](javascript:alert(1))",  # a link
    "$x$",  # math
)
# What each hostile string carries that would render if it reached markdown unescaped.
MARKERS = ("![x](", "<img", "**bold**", "[link](", "$x$")
NAME = " ".join(HOSTILE)
OTHER = "B " + NAME
N = 120


def _ids() -> list[str]:
    return [f"{HOSTILE[i % 5]} #{i}" for i in range(N)]


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> Path:
    """Dataset 1 (``NAME``) and 2 (``OTHER``) over the same items, and 3, an int8 copy of 1;
    every column name, value and id is markup. Stored: PCA layouts, the Geometry scorecard,
    the comparison of 1 and 2, the compression report, both ANN diagnostics of 1, and a job a
    dead process left running (shown as interrupted in the sidebar)."""
    from embscope.core.compare_runs import get_or_compare_datasets
    from embscope.core.compression import runs as crun
    from embscope.core.compression import save_compressed_copy
    from embscope.core.diagnostics_runs import ef_diagnostics, order_diagnostics
    from embscope.core.geometry.scorecard import get_or_compute_scorecard
    from embscope.core.ingest import from_arrays
    from embscope.core.neighbours import NeighbourService
    from embscope.core.projections.runs import compute_projection
    from embscope.core.store import Store

    path = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 8)) * 6
    X = (centres[np.arange(N) % 5] + rng.standard_normal((N, 8))).astype(np.float32)
    meta = pd.DataFrame(
        {
            HOSTILE[0]: _ids(),  # the id column
            HOSTILE[1]: [HOSTILE[i % 5] for i in range(N)],  # the label column: a legend
            HOSTILE[2]: [f"{HOSTILE[(i + 1) % 5]} | {HOSTILE[(i + 2) % 5]}" for i in range(N)],
            HOSTILE[3]: rng.standard_normal(N),  # numeric: a colour bar titled by its name
            HOSTILE[4]: [HOSTILE[(3 * i) % 5] for i in range(N)],
        }
    )
    noise = 0.3 * rng.standard_normal(X.shape).astype(np.float32)
    with Store(path) as s:
        a = s.add_dataset(
            from_arrays(X, metadata=meta, id_column=HOSTILE[0], source=HOSTILE[2] + ".parquet"),
            name=NAME,
            info={"label_column": HOSTILE[1], "model": HOSTILE[0]},
        )
        b = s.add_dataset(from_arrays(X + noise, metadata=meta, id_column=HOSTILE[0]), name=OTHER)
        for d in (a, b):
            compute_projection(s, d.id, method="pca")
        get_or_compute_scorecard(s, a.id, k=10, metric="cosine")  # the page's defaults
        get_or_compare_datasets(s, a.id, b.id, k=10, metric="cosine")
        crun.get_or_evaluate(s, a.id, metric="cosine", n_queries=N)
        copy = save_compressed_copy(s, a.id, "int8", metric="cosine")  # 3, "<NAME> [int8]"
        # The copy's twin of the original's layout, so the side by side is like for like.
        compute_projection(s, copy.id, method="pca")
        service = NeighbourService(s)
        ef_diagnostics(service, a.id, metric="cosine", k=10)
        order_diagnostics(service, a.id, metric="cosine", label_column=HOSTILE[1])
        s.put_job(
            key="f" * 40, kind="projection", dataset_id=a.id, label=f"UMAP 2-D of {NAME}",
            params={}, state="running", message=HOSTILE[0],
        )  # fmt: skip
    return path


@pytest.fixture(autouse=True)
def _hostile_env(hostile_db, monkeypatch) -> None:
    monkeypatch.setenv("EMBSCOPE_DB", str(hostile_db))
    monkeypatch.delenv("EMBSCOPE_READ_ONLY", raising=False)


# -- what a page sends, by how the browser shows it ----------------------------------------------

# Fields never shown as text (widget ids, file ids, icons, formats, ...).
NOT_SHOWN = frozenset(
    {"id", "form_id", "deferred_file_id", "url", "type", "format", "tag", "icon", "theme",
     "config", "anchor"}
)  # fmt: skip
# Fields the browser shows as plain text (no markdown): checked in Chromium.
PLAIN = frozenset(
    {
        "Selectbox.options", "Selectbox.raw_value", "Selectbox.default",
        "MultiSelect.options", "MultiSelect.raw_values", "MultiSelect.default",
        "TextInput.value", "TextInput.default", "TextArea.value", "TextArea.default",
        "Json.body", "Code.code_text", "Text.body",
    }
)  # fmt: skip


def _strings(message: Any) -> Iterator[tuple[str, str]]:
    """Every string field of a protobuf message, nested ones too: ("Type.field", text)."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for v in values:
            if field.type == FieldDescriptor.TYPE_STRING:
                yield f"{message.DESCRIPTOR.name}.{field.name}", v
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _strings(v)


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def _json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)


def shown(at: Any) -> Iterator[tuple[str, str, str]]:
    """(how it renders, where, text) for every text the page sends: "markdown", "plain",
    "plotly" (HTML subset) or "html" (raw HTML)."""
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        for where, text in _strings(proto):
            field = where.rsplit(".", 1)[1]
            if field in NOT_SHOWN:
                continue
            if where in PLAIN:
                yield "plain", where, text
            elif where == "PlotlyChart.spec":
                for s in _json_strings(json.loads(text)):
                    yield "plotly", where, s
            elif where == "Html.body":
                yield "html", where, text
            elif where == "Dataframe.columns":  # column config: labels plain, help markdown
                for name, config in json.loads(text).items():
                    yield "plain", f"{where}[{name}]", str(name)
                    for key, value in config.items():
                        if isinstance(value, str):
                            kind = "markdown" if key == "help" else "plain"
                            yield kind, f"{where}[{name}].{key}", value
            else:
                yield "markdown", where, text


_ESCAPED = re.compile(r"\\.", re.DOTALL)


def unescaped(text: str) -> list[str]:
    """The markers of hostile strings that ``text`` holds unescaped (as markdown would
    render them): escaped characters (``\\*``) are taken out before looking."""
    bare = _ESCAPED.sub("\x00", text)
    return [m for m in MARKERS if m in bare]


def check_page(at: Any) -> list[str]:
    """Assert the page holds user text only escaped; returns its markdown texts."""
    assert not at.exception, [e.value for e in at.exception]
    problems: list[str] = []
    markdown: list[str] = []
    for kind, where, text in shown(at):
        if kind == "markdown":
            markdown.append(text)
            found = unescaped(text)
            if found:
                problems.append(f"{where}: unescaped {found} in {text!r}")
            if "\\\\" in text:  # md_escape applied twice: the user would see backslashes
                problems.append(f"{where}: escaped twice: {text!r}")
        elif kind == "plotly" and "<img" in text:
            problems.append(f"{where}: raw HTML in a plotly text: {text[:200]!r}")
        elif kind == "html" and any(h in text for h in (*HOSTILE, *MARKERS)):
            problems.append(f"{where}: user text in raw HTML: {text[:200]!r}")
    assert not problems, "\n".join(problems)
    return markdown


def _has(markdown: list[str], text: str) -> bool:
    return any(md_escape(text) in m for m in markdown)


def _plain(at: Any) -> list[str]:
    return [t for kind, _, t in shown(at) if kind == "plain"]


def _plotly(at: Any) -> list[str]:
    return [t for kind, _, t in shown(at) if kind == "plotly"]


# -- the pages ------------------------------------------------------------------------------


def test_datasets_page_and_delete_dialog():
    at = open_page("datasets", {"dataset": "1"})
    markdown = check_page(at)
    assert _has(markdown, NAME) and _has(markdown, HOSTILE[2] + ".parquet")  # heading, source
    assert _has(markdown, f"UMAP 2-D of {NAME}"[:60])  # the sidebar's interrupted job
    # the picker's options are plain text: shown as typed, not with backslashes
    assert any(t.startswith(NAME) for t in _plain(at))
    next(b for b in at.button if b.label.startswith("Delete dataset")).click().run()
    markdown = check_page(at)
    assert any(m.startswith(f"**{md_escape(NAME)}**") for m in markdown)  # the dialog


def test_projections_page_with_legend_hover_and_a_selected_point():
    ids = _ids()
    query = {"dataset": "1", "method": "pca", "color": HOSTILE[1],
             "hover": [HOSTILE[2], HOSTILE[4]], "item": ids[3]}  # fmt: skip
    at = open_page("projections", query)
    markdown = check_page(at)
    assert at.metric and any(m.startswith("**Nearest neighbours of") for m in markdown)
    assert _has(markdown, ids[3])  # the clicked point's id
    texts = _plotly(at)
    assert any("&lt;img" in t for t in texts)  # legend entries and hover labels, escaped
    # side by side (the other dataset's layout), coloured by a numeric column
    side = open_page("projections", {"dataset": "1", "method": "pca", "side": "1",
                                     "color": HOSTILE[3]})  # fmt: skip
    check_page(side)
    assert len(side.get("plotly_chart")) == 2


def test_neighbours_page_with_an_answer_diagnostics_and_search():
    ids = _ids()
    at = open_page("neighbours", {"dataset": "1", "id": ids[0], "backend": "exact"})
    markdown = check_page(at)
    assert any(m.startswith("**Query:**") and md_escape(ids[0]) in m for m in markdown)
    assert len(at.dataframe) >= 5  # both answers, recall vs ef, both insertion-order tables
    assert any(md_escape(HOSTILE[0]) in i.value for i in at.info)  # the model, escaped
    found = open_page("neighbours", {"dataset": "1", "find": "search", "search": "bold"})
    check_page(found)
    assert any("matching item" in s.label for s in found.selectbox)


def test_compression_page_with_a_report_and_a_saved_copy():
    at = open_page("compression", {"dataset": "1", "queries": str(N)})
    markdown = check_page(at)
    assert any("codec" in d.value.columns for d in at.dataframe)
    assert _has(markdown, NAME) and _has(markdown, NAME + " [int8]")  # "Layout of ..." labels
    assert len(at.get("plotly_chart")) == 4  # Pareto, harm map, original beside its copy


def test_compare_page_with_a_second_dataset():
    at = open_page("compare", {"dataset": "1", "other": "2", "color": HOSTILE[1]})
    markdown = check_page(at)
    assert any(m.label == "Linear CKA" for m in at.metric)
    assert _has(markdown, OTHER)
    assert any(OTHER in t for t in _plain(at))  # the partner picker, as typed


def test_geometry_page_with_a_scorecard_comparison_and_a_running_job():
    from embscope.app.runtime import get_job_runner, get_store
    from embscope.core.geometry.scorecard import scorecard_key

    # Dataset 2's scorecard is being computed (a job whose label and message are markup),
    # dataset 3's is missing: the page shows the one's progress and a button for the other.
    release = threading.Event()

    def work(progress):
        progress(0.3, HOSTILE[3])
        release.wait(60)

    key = scorecard_key(get_store(), 2, k=10, metric="cosine")
    job = get_job_runner().submit(key, work, kind="scorecard", label=f"Scorecard of {OTHER}")
    try:
        at = open_page("geometry", {"dataset": "1", "compare": "2,3", "hover": HOSTILE[2]})
        markdown = check_page(at)
        assert any(m.label == "IsoScore" for m in at.metric)
        assert any(c.startswith(NAME) for c in at.dataframe[-1].value.columns)
        button = next(b for b in at.button if b.key == "geometry.compare_run")
        assert md_escape(NAME + " [int8]") in button.label
        assert _has(markdown, f"Scorecard of {OTHER}"[:60])  # the job's progress text
        assert _has(markdown, HOSTILE[3])
    finally:
        release.set()
        job.wait(30)


@pytest.mark.parametrize(
    ("page", "bad", "good"),
    [
        ("projections", {"p.n_neighbors": HOSTILE[0], "item": HOSTILE[1],
                         "color": HOSTILE[2] + "x", "hover": HOSTILE[3] + "x"}, {"method": "umap"}),
        ("neighbours", {"id": HOSTILE[0] + " nowhere", "text": HOSTILE[1]}, {}),
        ("compression", {"codecs": f"{HOSTILE[2]},{HOSTILE[3]}", "metric": HOSTILE[4]}, {}),
        ("compare", {"other": HOSTILE[4], "color": HOSTILE[0] + "x", "layout_a": HOSTILE[1]}, {}),
        ("geometry", {"hover": HOSTILE[1] + "x", "compare": HOSTILE[0], "k": HOSTILE[2]}, {}),
        ("datasets", {"dataset": HOSTILE[1]}, {}),
    ],
)  # fmt: skip
def test_links_with_markup_are_ignored_with_escaped_toasts(page, bad, good):
    at = open_page(page, {"dataset": "1", **good, **bad})
    check_page(at)
    toasts = [t.value for t in at.toast]
    for name in bad:  # each bad value is named in a toast (which check_page looked at)
        assert any(f"ignored {md_escape(name)}=" in t for t in toasts), (name, toasts)
