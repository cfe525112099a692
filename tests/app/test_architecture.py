"""The house rules that can be checked by reading the code (ARCHITECTURE.md, "Rules")."""

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
    found = {"embscope", "embscope.assets", "embscope.pages"}  # + the pages and demo data
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
    ``core.store_sql.on_dataset`` on the store's own ``SQL_*`` templates."""
    sql_word = r"(?:SELECT|INSERT|CREATE|DROP|DELETE|UPDATE|ALTER|SET|RESET|PRAGMA|COPY|ATTACH)\b"
    f_string = re.compile(r'\bf"[^"]*' + sql_word + r'[^"]*"')
    formatted = re.compile(r'"[^"]*' + sql_word + r'[^"]*"\s*\.format\(|%\s*\(')
    for path in _files("core") + _files("app"):
        text = path.read_text(encoding="utf-8")
        assert not f_string.findall(text), f"{path.name}: SQL in an f-string"
        for line in text.splitlines():
            if re.search(sql_word, line):
                assert not formatted.search(line), f"{path.name}: formatted SQL: {line.strip()}"
        for call in re.findall(r"on_dataset\(\s*([^,\s)]+)", text):
            if path.name == "store_sql.py" and call == "template:":
                continue  # the definition
            assert re.fullmatch(r"SQL_[A-Z_]+", call), f"{path.name}: on_dataset({call}, ...)"


def test_table_names_refuse_anything_but_integer_ids():
    from embscope.core import store_sql as store

    assert store._vectors(7) == "vectors_7" and store._meta(7) == "meta_7"
    for bad in ("7; DROP TABLE datasets", "7", 7.0, True, None):
        with pytest.raises(TypeError):
            store._vectors(bad)
        with pytest.raises(TypeError):
            store._meta(bad)
        with pytest.raises(TypeError):
            store.on_dataset(store.SQL_LOAD_IDS, bad)
        with pytest.raises(TypeError):
            store.on_dataset(store.SQL_CREATE_VECTORS, 7, dim=bad)
    assert store.on_dataset(store.SQL_ROWS_WITH_META, 7) == (
        "SELECT v.row AS row, v.id AS id, m.* EXCLUDE (__row) "
        "FROM vectors_7 v JOIN meta_7 m ON m.__row = v.row WHERE list_contains(?, v.row)"
    )
    assert "FLOAT[384]" in store.on_dataset(store.SQL_CREATE_VECTORS, 7, dim=384)
    from embscope.core.tables import ROW_COLUMN

    assert ROW_COLUMN == "__row"  # the name the templates use
    with pytest.raises(KeyError):
        store.SQL_MAX_ID["datasets; --"]


# -- how app/ is put together --------------------------------------------------------------------

# A view draws the sections of one page (app/*_view.py, and the Datasets page's forms). What two
# pages share lives in a module named for what it is (scatter, selection, jobs, text, ...).
VIEW_SUFFIX = "_view"
VIEW_MODULES = frozenset({"dataset_forms"})
# Where no module may reach into another's private names; core/ joins when it is cleaned.
SCOPES = ("core", "app", "pages")
FOLDER_OF = {"embscope.app": "app", "embscope.core": "core"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _is_view(stem: str) -> bool:
    return stem.endswith(VIEW_SUFFIX) or stem in VIEW_MODULES


def _module_of(path: Path) -> str:
    """The name a file of app/ or core/ is imported by: ``app/scatter.py`` ->
    ``embscope.app.scatter``, ``app/__init__.py`` -> ``embscope.app``; pages: ``pages.x``."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    if parts[0] in ("app", "core"):
        parts.insert(0, "embscope")
    return ".".join(parts)


def _file_of(module: str) -> Path | None:
    """The file of an ``embscope.app``/``embscope.core`` module, or None (not a module: a
    name defined in one)."""
    for package, folder in FOLDER_OF.items():
        if module == package or module.startswith(package + "."):
            rel = (
                Path(folder, *module[len(package) + 1 :].split("."))
                if module != package
                else Path(folder)
            )
            for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
                if (ROOT / candidate).is_file():
                    return ROOT / candidate
    return None


def _imported_modules(path: Path) -> dict[str, int]:
    """Every embscope module a file imports, at any depth (inside functions too), with the
    line of its first import: ``from embscope.app import share`` counts as
    ``embscope.app.share``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_of(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.setdefault(sub if _file_of(sub) else base, node.lineno)
    return {m: line for m, line in found.items() if m.split(".")[0] == "embscope"}


def test_no_view_imports_another_view():
    views = [p for p in _files("app") if _is_view(p.stem)]
    assert len(views) >= 7, "the view modules were renamed: update VIEW_SUFFIX/VIEW_MODULES"
    borrowed = [
        f"{_rel(path)}:{line} imports {module}"
        for path in views
        for module, line in sorted(_imported_modules(path).items())
        if module.startswith("embscope.app.") and _is_view(module.rsplit(".", 1)[1])
        and module != _module_of(path)
    ]  # fmt: skip
    assert not borrowed, (
        "a view borrows from another view; move what they share into a module of app/ named "
        "for what it is:\n" + "\n".join(borrowed)
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]`` (None when the chain does not start at a name)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) else None


def _private_uses(path: Path) -> list[str]:
    """Private names of other embscope modules a file imports, or reaches through a module
    (or class) it imported: ``from embscope.app.x import _y``, ``x._y``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_of(path)
    bound: dict[str, str] = {}  # local name -> what it is in embscope
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").split(".")[0] == "embscope"
        ):
            source = node.module or "."
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                if source != own and (
                    _private(alias.name) or any(map(_private, source.split(".")))
                ):
                    found.append(f"{_rel(path)}:{node.lineno}: from {source} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "embscope":
                    continue
                bound[alias.asname or "embscope"] = alias.name if alias.asname else "embscope"
                if any(map(_private, alias.name.split("."))):
                    found.append(f"{_rel(path)}:{node.lineno}: import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        chain = _dotted(node)
        if chain and chain[0] in bound and not bound[chain[0]].startswith(own + "."):
            found.append(f"{_rel(path)}:{node.lineno}: {'.'.join(chain)}")
    return found


def test_no_module_uses_another_modules_private_names():
    """A leading underscore means "only this module uses it": a name two modules need is made
    public (with a docstring) where it belongs, or moved there."""
    found = [use for folder in SCOPES for path in _files(folder) for use in _private_uses(path)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def _import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a chain ``[a, b, ..., a]``, or None when there is none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert _import_cycle({"a": {"a"}}) == ["a", "a"]


@pytest.mark.parametrize("folder", ["core", "app"])
def test_modules_import_one_another_without_a_cycle(folder):
    """Imports inside functions count: a cycle hidden in a function is still two modules that
    cannot be understood (or changed) one without the other."""
    package = f"embscope.{folder}."
    graph = {
        _module_of(path): {
            m for m in _imported_modules(path) if m.startswith(package) and _file_of(m)
        }
        for path in _files(folder)
    }
    cycle = _import_cycle(graph)
    assert cycle is None, f"import cycle in {folder}/: " + " -> ".join(
        m.removeprefix(package) for m in cycle
    )


@pytest.mark.parametrize("folder", ["core", "app"])
def test_no_module_is_over_1000_lines(folder):
    long = {
        str(path.relative_to(ROOT)): n
        for path in _files(folder)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 1000
    }
    assert not long, long
