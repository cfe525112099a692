#!/usr/bin/env bash
# Type-check embscope with mypy (configured in pyproject.toml: strict on core/).
#
# core/ and app/ install as embscope.core and embscope.app through setuptools' package-dir
# mapping, which mypy cannot follow; it checks a tree of links that has the installed shape.
set -euo pipefail
cd "$(dirname "$0")/.."
MYPY="${MYPY:-.venv/bin/mypy}"
tree=.lint-tree
rm -rf "$tree"
mkdir -p "$tree/embscope"
ln -s ../../core "$tree/embscope/core"
ln -s ../../app "$tree/embscope/app"
ln -s ../../embscope/__init__.py "$tree/embscope/__init__.py"
MYPYPATH="$tree" exec "$MYPY" --config-file pyproject.toml -p embscope "$@"
