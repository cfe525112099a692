"""core.params: switches (bool) and named options (choice), as heat-geodesic's table uses them."""

from __future__ import annotations

import numpy as np
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.params import Param, ParamTable
from embscope.core.projections import runs

FLAG = Param("complete", "bool", True, 0, 1, "complete", "help")
PATH = Param("mds", "choice", "reference", 0, 1, "MDS", "help", choices=("reference", "weighted"))


def test_a_switch_reads_text_and_values():
    for text in ("1", "true", "TRUE", " yes ", "on"):
        assert FLAG.parse(text) is True
    for text in ("0", "false", "No", "off"):
        assert FLAG.parse(text) is False
    for bad in ("2", "", "auto", "truthy", "1.0", "x" * 10_000):
        with pytest.raises(InvalidInputError, match="true or false"):
            FLAG.parse(bad)
    assert FLAG.check(True) is True and FLAG.check(np.bool_(False)) is False
    assert FLAG.check(0) is False and FLAG.check(1) is True  # JSON clients write 0 / 1
    for bad in (None, "true", 0.5, 2, 1.0, [True]):
        with pytest.raises(InvalidInputError, match="complete must be true or false"):
            FLAG.check(bad)
    assert FLAG.describe() == "true or false"


def test_a_choice_reads_its_options_only():
    assert PATH.parse("weighted") == "weighted" and PATH.parse(" Reference ") == "reference"
    assert PATH.check("weighted") == "weighted"
    for bad in ("smacof", "", "auto", 1, None, "<b>x</b>" * 100):
        with pytest.raises(InvalidInputError, match="one of reference, weighted"):
            PATH.check(bad) if not isinstance(bad, str) else PATH.parse(bad)
    assert PATH.describe() == "one of reference, weighted"
    with pytest.raises(InvalidInputError) as err:
        PATH.parse("y" * 5000)
    assert len(str(err.value)) < 200  # a long link value is not echoed whole


def test_kinds_are_declared_consistently():
    with pytest.raises(ValueError, match="kind"):
        Param("x", "text", "a", 0, 1, "x", "help")
    with pytest.raises(ValueError, match="lists its options"):
        Param("x", "choice", "a", 0, 1, "x", "help")  # a choice without options
    with pytest.raises(ValueError, match="lists its options"):
        Param("x", "bool", True, 0, 1, "x", "help", choices=("a",))
    with pytest.raises(ValueError, match="lower case"):
        Param("x", "choice", "A", 0, 1, "x", "help", choices=("A", "b"))
    with pytest.raises(ValueError, match="never automatic"):
        Param("x", "bool", None, 0, 1, "x", "help", auto=True)
    with pytest.raises(InvalidInputError):  # a default outside the options
        Param("x", "choice", "c", 0, 1, "x", "help", choices=("a", "b"))


def test_heat_geodesic_table_takes_switch_and_path():
    table = runs.PARAM_TABLES["heatgeo"]
    assert table["complete"].kind == "bool" and table["mds"].kind == "choice"
    resolved = table.resolve({"complete": False, "mds": "weighted"})
    assert resolved["complete"] is False and resolved["mds"] == "weighted"
    assert table.parse({"complete": "0", "mds": "WEIGHTED"}) == {
        "complete": False,
        "mds": "weighted",
    }
    with pytest.raises(InvalidInputError, match="Heat-geodesic mds must be one of"):
        table.parse({"mds": "smacof"})
    with pytest.raises(InvalidInputError, match="Heat-geodesic complete must be true or false"):
        table.resolve({"complete": "no"})


def test_a_table_of_every_kind():
    table = ParamTable("T", (FLAG, PATH, Param("k", "int", 3, 1, 5, "k", "help")))
    assert table.defaults() == {"complete": True, "mds": "reference", "k": 3}
    assert table.parse({"complete": "off", "k": "4"}) == {"complete": False, "k": 4}
