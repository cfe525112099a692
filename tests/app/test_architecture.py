"""The house rules that can be checked by reading the code (DESIGN.md, "Rules of the house")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _layer(module: str) -> str:
    """The top-level name an import reaches: ``embscope.core.graph`` -> ``core``."""
    parts = module.split(".")
    if parts[0] == "embscope" and len(parts) > 1:
        return parts[1]
    return parts[0]


def _modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _imports(path: Path) -> set[str]:
    return {_layer(m) for m in _modules(path)}


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _files("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_is_free_of_ui(path):
    assert not _imports(path) & {"streamlit", "plotly", "app", "pages"}, path


@pytest.mark.parametrize("path", _files("pages"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_go_through_app_and_core(path):
    forbidden = {"duckdb", "hnswlib", "umap", "sklearn", "pynndescent", "numba"}
    assert not _imports(path) & forbidden, path


@pytest.mark.parametrize("path", _files("pages"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_stay_thin(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 150


def _python_files() -> list[Path]:
    return [p for d in ("core", "app", "pages", "tests", "bench", "assets") for p in _files(d)]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_everything_is_imported_under_the_embscope_name(path):
    """``core`` and ``app`` install as ``embscope.core`` and ``embscope.app``; importing them
    by their folder names would load a second copy of every module (two stores, two job
    runners) and works only inside the checkout."""
    bare = {m for m in _modules(path) if m.split(".")[0] in {"core", "app", "pages"}}
    assert not bare, f"{path}: import {sorted(bare)} as embscope.<...>"


def test_every_package_is_installed():
    """pyproject.toml lists every package (the folder mapping needs them named)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"embscope"}
    for folder in ("core", "app"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(("embscope", *rel)))
    assert listed == found


def test_app_never_imports_pages():
    for path in _files("app"):
        assert "pages" not in _imports(path), path


def test_only_cache_module_uses_st_cache():
    for path in _files("app") + _files("pages"):
        if path.name == "cache.py":
            continue
        assert not re.search(r"st\.cache_(data|resource)", path.read_text(encoding="utf-8")), path


def test_no_pickle_loading_in_product_code():
    for path in _files("core") + _files("app") + _files("pages"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"allow_pickle\s*=\s*True|pickle\.loads?\(", text), path


def test_sql_never_formats_text_in():
    """No SQL is built with an f-string or format(): statements are literals, and the only
    substitution, of a dataset's table names and vector dimension, happens in
    ``core.store._on_dataset`` on the store's own ``_SQL_*`` templates."""
    sql_word = r"(?:SELECT|INSERT|CREATE|DROP|DELETE|UPDATE|ALTER)\b"
    f_string = re.compile(r'\bf"[^"]*' + sql_word + r'[^"]*"')
    formatted = re.compile(r'"[^"]*' + sql_word + r'[^"]*"\s*\.format\(|%\s*\(')
    for path in _files("core") + _files("app"):
        text = path.read_text(encoding="utf-8")
        assert not f_string.findall(text), f"{path.name}: SQL in an f-string"
        for line in text.splitlines():
            if re.search(sql_word, line):
                assert not formatted.search(line), f"{path.name}: formatted SQL: {line.strip()}"
        for call in re.findall(r"_on_dataset\(\s*([^,\s)]+)", text):
            if path.name == "store.py" and call == "template:":
                continue  # the definition
            assert re.fullmatch(r"_SQL_[A-Z_]+", call), f"{path.name}: _on_dataset({call}, ...)"


def test_table_names_refuse_anything_but_integer_ids():
    from embscope.core import store

    assert store._vectors(7) == "vectors_7" and store._meta(7) == "meta_7"
    for bad in ("7; DROP TABLE datasets", "7", 7.0, True, None):
        with pytest.raises(TypeError):
            store._vectors(bad)
        with pytest.raises(TypeError):
            store._meta(bad)
        with pytest.raises(TypeError):
            store._on_dataset(store._SQL_LOAD_IDS, bad)
        with pytest.raises(TypeError):
            store._on_dataset(store._SQL_CREATE_VECTORS, 7, dim=bad)
    assert store._on_dataset(store._SQL_ROWS_WITH_META, 7) == (
        "SELECT v.row AS row, v.id AS id, m.* EXCLUDE (__row) "
        "FROM vectors_7 v JOIN meta_7 m ON m.__row = v.row WHERE list_contains(?, v.row)"
    )
    assert "FLOAT[384]" in store._on_dataset(store._SQL_CREATE_VECTORS, 7, dim=384)
    assert store.ROW_COLUMN == "__row"  # the name the templates use
    with pytest.raises(KeyError):
        store._SQL_MAX_ID["datasets; --"]
