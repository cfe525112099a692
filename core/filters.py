"""Metadata filters: ``col=value`` expressions, checked against a dataset's columns and run as
parameterised SQL in DuckDB.

A filter is a list of conditions, combined with AND. One condition is written
``COLUMN OP VALUE`` with OP one of ``!=  <=  >=  =  <  >  ~  @`` (``~``: case-insensitive
contains; ``@``: one of the values of a JSON list, ``module@["json", "os"]``); the expression is split at its first operator, two-character operators tried first
at each position, so ``a<=3`` is ``a <= 3`` and ``note~x=y`` is ``note ~ "x=y"``. Spaces
around the column and the value are dropped.

* Numeric columns take every operator but ``~``; the value must be a number (``@``: a list of
  numbers).
* Text columns take ``=``, ``!=``, ``~`` and ``@``.
* True/false columns take ``=`` and ``!=`` with ``true``/``false`` (or ``1``/``0``, ``yes``/``no``).
* Other columns (dates, times) take ``=``, ``!=``, ``~`` and ``@`` on their text form.

``@`` is an operator only where a JSON list follows it: ``recall@10>=0.5`` is the column
``recall@10``.

A missing value (NULL) satisfies no operator, ``!=`` included (SQL's three-valued logic).

Nothing typed reaches a statement: a column is named by its position in the metadata table
(``#3``, a number computed here), every value travels as a bound parameter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embscope.core.errors import InvalidInputError

if TYPE_CHECKING:
    from embscope.core.store import Store

__all__ = [
    "OPERATORS",
    "Condition",
    "CompiledFilter",
    "column_kind",
    "compile_filter",
    "matching_rows",
    "one_of",
    "parse_condition",
    "parse_filter",
    "rows_for",
]

# Two-character operators first: at a position where "<=" starts, "<" must not win.
OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~", "@")
_OPS_BY_KIND = {
    "number": ("=", "!=", "<", "<=", ">", ">=", "@"),
    "text": ("=", "!=", "~", "@"),
    "bool": ("=", "!="),
    "other": ("=", "!=", "~", "@"),
}
# Most values one "@" condition may list.
MAX_VALUES = 500
_KIND_WORDS = {"number": "numbers", "text": "text", "bool": "true/false"}
_NUMERIC = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL",
)  # fmt: skip
# Longest filter expression and most conditions accepted (a link or a script, not a program).
MAX_EXPRESSION = 10_000  # room for a list of picked values ("@")
MAX_CONDITIONS = 32


@dataclass(frozen=True)
class Condition:
    """``column op value`` as written (value still text)."""

    column: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def parse_condition(expr: Any) -> Condition:
    """One ``COLUMN OP VALUE`` expression (module docstring); InvalidInputError if it has no
    operator or no column name."""
    if not isinstance(expr, str):
        raise InvalidInputError(f"a filter is text like 'column=value', got {expr!r}")
    if len(expr) > MAX_EXPRESSION:
        raise InvalidInputError(f"a filter is at most {MAX_EXPRESSION:,} characters long")
    for i in range(len(expr)):
        for op in OPERATORS:
            # "@" is an operator only before a list: "recall@10>=0.5" names column recall@10.
            if op == "@" and not expr[i + 1 :].lstrip().startswith("["):
                continue
            if expr.startswith(op, i):
                column = expr[:i].strip()
                if not column:
                    raise InvalidInputError(
                        f"filter {expr!r} names no column: write COLUMN{op}VALUE"
                    )
                return Condition(column, op, expr[i + len(op) :].strip())
    raise InvalidInputError(
        f"filter {expr!r} has no operator: use one of {', '.join(OPERATORS)} "
        "(e.g. 'label=cat', 'year>=2020', 'title~neural')"
    )


def parse_filter(exprs: Iterable[Any] | None) -> list[Condition]:
    """Every expression parsed (AND-ed); None or empty: no filter."""
    conditions = [parse_condition(e) for e in (exprs or [])]
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidInputError(
            f"at most {MAX_CONDITIONS} filter conditions, got {len(conditions)}"
        )
    return conditions


def column_kind(sql_type: str) -> str:
    """``number``, ``text``, ``bool`` or ``other`` for a DuckDB column type."""
    base = sql_type.upper().split("(")[0].strip()
    if base in _NUMERIC:
        return "number"
    if base == "VARCHAR":
        return "text"
    if base == "BOOLEAN":
        return "bool"
    return "other"


@dataclass(frozen=True)
class CompiledFilter:
    """A WHERE clause over the metadata table (positions and ``?`` only) and its parameters."""

    where: str
    params: tuple[Any, ...]
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        """The conditions as typed, joined by AND (for captions and errors)."""
        return " AND ".join(str(c) for c in self.conditions)


def _is_integer_type(sql_type: str) -> bool:
    base = sql_type.upper().split("(")[0].strip()
    return base in _NUMERIC and base not in ("FLOAT", "DOUBLE", "REAL", "DECIMAL")


def _number(c: Condition, *, integer: bool = False) -> float | int:
    """The value as a number; a whole number for an integer column stays an int (a float
    would compare 2**53 + 1 equal to 2**53)."""
    if integer:
        try:
            whole = int(c.value.strip())
        except ValueError:
            pass
        else:
            if -(2**63) <= whole < 2**63:
                return whole
    try:
        value = float(c.value)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInputError(
            f"filter {str(c)!r}: column {c.column!r} holds numbers, and {c.value!r} is not one"
        )
    return value


def _values(c: Condition) -> list[Any]:
    """The JSON list after ``@``: strings or numbers, at least one, at most MAX_VALUES."""
    import json

    try:
        values = json.loads(c.value)
    except ValueError:
        values = None
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
    ):
        raise InvalidInputError(
            f"filter {str(c)[:80]!r}: after '@' write a JSON list of values, e.g. "
            f'{c.column}@["a", "b"]'
        )
    if len(values) > MAX_VALUES:
        raise InvalidInputError(f"filter on {c.column!r}: at most {MAX_VALUES} values after '@'")
    return values


def one_of(column: str, values: Sequence[Any]) -> str:
    """The expression keeping rows whose ``column`` is one of ``values``."""
    import json

    return f"{column}@{json.dumps(list(values), ensure_ascii=False)}"


def _bool(c: Condition) -> bool:
    text = c.value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidInputError(
        f"filter {str(c)!r}: column {c.column!r} is true/false; write {c.column}{c.op}true "
        f"or {c.column}{c.op}false"
    )


def compile_filter(
    conditions: Sequence[Condition], schema: Sequence[tuple[str, str]]
) -> CompiledFilter:
    """The SQL of ``conditions`` over a table whose columns, in order, are ``schema`` (name,
    DuckDB type). InvalidInputError for a column it does not have or an operator that does not
    fit the column's type."""
    position = {name: i + 1 for i, (name, _) in enumerate(schema)}
    types = dict(schema)
    parts: list[str] = []
    params: list[Any] = []
    shown = [name for name, _ in schema if name != "__row"]
    for c in conditions:
        if c.column not in position or c.column == "__row":
            raise InvalidInputError(
                f"filter {str(c)!r}: no column {c.column!r}; the columns are "
                f"{', '.join(map(repr, shown)) or 'none'}"
            )
        kind = column_kind(types[c.column])
        if c.op not in _OPS_BY_KIND[kind]:
            raise InvalidInputError(
                f"filter {str(c)!r}: {c.op!r} does not fit column {c.column!r} "
                f"({_KIND_WORDS.get(kind, types[c.column].lower())}); use "
                f"{', '.join(_OPS_BY_KIND[kind])}"
            )
        ref = f"#{position[c.column]:d}"
        if kind == "other":
            ref = f"CAST({ref} AS VARCHAR)"
        sql_op = "<>" if c.op == "!=" else c.op
        if c.op == "@":
            values = _values(c)
            if kind == "number":
                integer = _is_integer_type(types[c.column])
                values = [
                    _number(Condition(c.column, "=", str(v)), integer=integer) for v in values
                ]
            else:
                values = [str(v) for v in values]
            parts.append(f"{ref} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
        elif c.op == "~":
            if not c.value:
                raise InvalidInputError(f"filter {str(c)!r}: give some text after '~'")
            parts.append(f"strpos(lower({ref}), lower(?)) > 0")
            params.append(c.value)
        elif kind == "number":
            parts.append(f"{ref} {sql_op} ?")
            params.append(_number(c, integer=_is_integer_type(types[c.column])))
        elif kind == "bool":
            parts.append(f"{ref} {sql_op} ?")
            params.append(_bool(c))
        else:
            parts.append(f"{ref} {sql_op} ?")
            params.append(c.value)
    where = " AND ".join(f"({p})" for p in parts) if parts else "TRUE"
    return CompiledFilter(where, tuple(params), tuple(conditions))


def matching_rows(store: Store, dataset_id: int, exprs: Iterable[Any] | None) -> np.ndarray:
    """Row numbers (sorted int64) of a dataset whose metadata satisfies every expression."""
    if isinstance(exprs, str):
        exprs = [exprs]  # one expression, not its characters
    return rows_for(store, dataset_id, parse_filter(exprs))


def rows_for(store: Store, dataset_id: int, conditions: Sequence[Condition]) -> np.ndarray:
    """Row numbers (sorted int64) satisfying parsed conditions (never re-parsed: a condition's
    text form need not parse back to itself, e.g. column ``x!`` with ``=``)."""
    info = store.get_dataset(dataset_id)
    if not conditions:
        return np.arange(info.n, dtype=np.int64)
    compiled = compile_filter(conditions, store.metadata_schema(info.id))
    return store.rows_where(info.id, compiled.where, compiled.params)
