"""A clicked point's neighbours under the map (app/selection.py point_neighbours): the caption
says where they came from, the shared neighbour graph or exact search."""

from __future__ import annotations

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from embscope.core.store import Store
from tests.helpers import make_parsed


def _neighbours_script(row: int, where: list[str] | None) -> None:
    from embscope.app.runtime import get_store
    from embscope.app.selection import point_neighbours

    point_neighbours(get_store().get_dataset(1), row, "cosine", where=where)


def _caption(row: int, where: list[str] | None = None) -> tuple[str, pd.DataFrame]:
    """The markdown above the neighbours' table (as written: its parentheses escaped) and
    the table."""
    at = AppTest.from_function(_neighbours_script, args=(row, where), default_timeout=60)
    at.run()
    assert not at.exception
    [caption] = [m.value for m in at.markdown if m.value.startswith("**Nearest neighbours of")]
    return caption, at.dataframe[0].value


def test_the_caption_names_the_source_of_the_neighbours(db):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    meta = pd.DataFrame({"half": ["a" if i < 100 else "b" for i in range(200)]})
    with Store(db) as s:
        s.add_dataset(make_parsed(X, meta), name="points")

    caption, exact = _caption(5)
    assert caption == (
        r"**Nearest neighbours of row 5 \(id 5\)** (10, cosine) by exact search, ringed on the map"
    )
    assert len(exact) == 10 and 5 not in exact["row"].tolist()

    from embscope.app.runtime import get_store
    from embscope.core.graph import get_or_build_graph

    graph = get_or_build_graph(get_store(), 1, k=15, metric="cosine")  # stored 150 wide
    caption, listed = _caption(5)
    assert caption == (
        r"**Nearest neighbours of row 5 \(id 5\)** (10, cosine) from the neighbour graph "
        f"(recall@150 {graph.recall:.3f}), ringed on the map"
    )
    # the graph is exact here: the same neighbours as exact search
    assert listed["row"].tolist() == exact["row"].tolist()
    np.testing.assert_allclose(listed["distance"], exact["distance"], atol=1e-6)
    assert listed["row"].tolist() == graph.indices[5, :10].tolist()

    # a filter on the map: exact search over the matching rows, though the graph is stored
    caption, kept = _caption(5, ["half=a"])
    assert caption.endswith("(10, cosine) by exact search, ringed on the map")
    assert set(kept["half"]) == {"a"}
