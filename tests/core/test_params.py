"""core.params and the projection methods' tables: one set of bounds for every entry point."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.params import AUTO, Param, ParamTable
from embscope.core.projections import runs
from embscope.core.projections.heatgeo import heatgeo_embedding
from embscope.core.projections.largevis import largevis_layout
from embscope.core.projections.params import MAX_NEIGHBOURS
from embscope.core.projections.umap_layout import umap_layout
from tests.helpers import make_parsed

LAYOUTS = {"largevis": largevis_layout, "umap": umap_layout, "heatgeo": heatgeo_embedding}


@pytest.mark.parametrize("method", sorted(LAYOUTS))
def test_the_layout_functions_take_their_defaults_from_the_table(method):
    signature = inspect.signature(LAYOUTS[method])
    for name, param in runs.PARAM_TABLES[method].items():
        if name in runs.PREVIEW_KEYS:  # preview_layout's (tests/core/test_projections_preview.py)
            continue
        assert signature.parameters[name].default == param.default, name


@pytest.mark.parametrize("method", runs.METHODS)
def test_every_parameter_has_bounds_help_and_a_valid_default(method):
    for param in runs.PARAM_TABLES[method].values():
        assert param.low <= param.high and np.isfinite(param.high), param
        assert param.help and param.label
        assert param.check(param.default) == param.default
        if param.auto:
            assert param.low <= param.start <= param.high


def test_values_at_their_bounds_pass_and_past_them_fail():
    table = runs.PARAM_TABLES["largevis"]
    assert table.resolve({"negatives": 1, "gamma": 50.0})["negatives"] == 1
    for name, bad in [("negatives", 0), ("negatives", 21), ("gamma", 50.5), ("perplexity", 0.5)]:
        with pytest.raises(InvalidInputError, match=name):
            table.resolve({name: bad})
    with pytest.raises(InvalidInputError, match="whole number"):
        table.resolve({"negatives": 2.5})
    with pytest.raises(InvalidInputError, match="whole number"):
        table.resolve({"negatives": True})
    assert table.resolve({"negatives": 3.0})["negatives"] == 3  # a whole float from a box


def test_neighbour_counts_are_capped_and_kept_below_n():
    umap = runs.PARAM_TABLES["umap"]
    assert umap.resolve({"n_neighbors": MAX_NEIGHBOURS})["n_neighbors"] == MAX_NEIGHBOURS
    with pytest.raises(InvalidInputError, match="between 2 and 200"):
        umap.resolve({"n_neighbors": 2999}, n=3000)  # n - 1: the attack of a share link
    with pytest.raises(InvalidInputError, match="at most 39"):
        umap.resolve({"n_neighbors": 45}, n=40)
    assert umap.resolve({"n_neighbors": 39}, n=40)["n_neighbors"] == 39


def test_auto_in_text_and_in_values():
    heat = runs.PARAM_TABLES["heatgeo"]
    assert heat.parse({"tau": "auto", "n_landmarks": "AUTO"}) == {"tau": AUTO, "n_landmarks": None}
    assert heat.parse({"tau": "12.5"}) == {"tau": 12.5}
    assert heat.resolve({"n_landmarks": None})["n_landmarks"] is None
    with pytest.raises(InvalidInputError, match="knn must be a number, got 'auto'"):
        heat.parse({"knn": "auto"})
    with pytest.raises(InvalidInputError, match="no parameter 'perplexity'"):
        heat.parse({"perplexity": "3"})


def test_a_table_refuses_a_default_outside_its_own_bounds():
    with pytest.raises(InvalidInputError):
        ParamTable("x", (Param("k", "int", 0, 1, 5, "k", "help"),))


def test_projection_requests_are_checked_before_any_work(store):
    info = store.add_dataset(make_parsed(np.random.default_rng(0).normal(size=(30, 4))), name="d")
    with pytest.raises(InvalidInputError, match="at most 29"):
        runs.projection_key(store, info.id, method="umap", params={"n_neighbors": 30})
    with pytest.raises(InvalidInputError, match="seed"):
        runs.projection_key(store, info.id, method="umap", seed=2**31)
    assert store.list_artifacts() == []


def test_pca_ignores_the_seed(store):
    """PCA is deterministic: one stored layout, whatever seed a link carries."""
    info = store.add_dataset(make_parsed(np.random.default_rng(0).normal(size=(30, 4))), name="d")
    keys = {runs.projection_key(store, info.id, method="pca", seed=s) for s in range(5)}
    assert len(keys) == 1
    assert runs.compute_projection(store, info.id, method="pca", seed=3).seed == 0
