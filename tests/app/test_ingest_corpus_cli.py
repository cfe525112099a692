"""The whole bad-input corpus through `embscope ingest`: a clear error, exit 2, database unchanged.

The readers are tested case by case in tests/core/test_ingest.py; this runs the same files
through the public command and checks the database afterwards, as a script would see it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from embscope.app.cli import main
from embscope.core.store import Store
from tests.core.corpus import build_corpus
from tests.helpers import make_parsed, snapshot

_KWARG_FLAGS = {
    "metadata_path": "--metadata",
    "id_column": "--id-column",
    "vector_column": "--vector-column",
}


def _argv(case) -> list[str] | None:
    argv = ["ingest", str(case.path)]
    for key, value in case.kwargs.items():
        if key == "filename":
            continue  # the CLI reads real files under their own names
        if key not in _KWARG_FLAGS:
            return None  # options the CLI has no flag for (vector_columns): covered by core tests
        argv += [_KWARG_FLAGS[key], str(value)]
    return argv


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def test_every_error_case_exits_2_and_leaves_the_database_as_it_was(corpus, tmp_path, capsys):
    db = tmp_path / "corpus.duckdb"
    with Store(db) as s:
        s.add_dataset(make_parsed(np.arange(12, dtype=np.float32).reshape(4, 3)), name="existing")
        before = snapshot(s)
    errors = [c for c in corpus if c.expect == "error"]
    tried = 0
    for case in errors:
        argv = _argv(case)
        if argv is None:
            continue
        tried += 1
        with pytest.raises(SystemExit) as exit_info:
            main(["--db", str(db), *argv, "--json"])
        out = capsys.readouterr()
        assert exit_info.value.code == 2, case.name
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case.name, out.err)
        for text in case.substrings:
            assert text.lower() in lines[0].lower(), (case.name, text, lines[0])
        assert out.out == "", case.name
    assert tried >= 30
    with Store(db) as s:
        assert snapshot(s) == before


def test_every_warning_case_is_stored_with_its_warning(corpus, tmp_path, capsys):
    db = tmp_path / "warn.duckdb"
    stored = 0
    for case in (c for c in corpus if c.expect == "warning"):
        argv = _argv(case)
        if argv is None:
            continue
        code = main(["--db", str(db), *argv, "--name", case.name, "--json"])
        out = capsys.readouterr()
        assert code == 0, (case.name, out.err)
        result = json.loads(out.out)
        joined = " ".join(result["warnings"]).lower()
        for text in case.substrings:
            assert text.lower() in joined, (case.name, text, result["warnings"])
        stored += 1
    assert stored >= 10
    with Store(db) as s:
        assert len(s.list_datasets()) == stored
