"""Parameter tables: every setting a person can give a job, written once with its bounds.

A :class:`ParamTable` lists a method's :class:`Param` s (name, default, bounds, whether it
may be chosen from the data, a label and a help text); a setting is a number (``int``,
``float``), a switch (``bool``) or one of a few named options (``choice``). The method's
function defaults, the page's widgets, the share-link parser and the CLI's ``--param`` are
all built from it, so a value outside the bounds is refused the same way wherever it comes
from: a link, a widget, a script or the Python API. Every bound is fixed (work must stay
bounded whatever a visitor asks), and graph widths are also kept below the number of items.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from embscope.core.errors import InvalidInputError
from embscope.core.validation import check_int, check_number

__all__ = ["AUTO", "KINDS", "Param", "ParamTable"]

# The text that asks for a value chosen from the data (in a link, on the command line).
AUTO = "auto"
# A number as text: decimal digits, an optional sign, point and exponent (no nan or inf).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_MAX_NUMBER_TEXT = 32
# How a switch is written in text (a link writes 1 / 0; --param takes any of these).
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
KINDS = ("int", "float", "bool", "choice")


def _shown(value: Any) -> str:
    """A given value in an error message, shortened (it may come from a link)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


@dataclass(frozen=True)
class Param:
    """One setting of a method.

    Attributes
    ----------
    name : str
    kind : {"int", "float", "bool", "choice"}
        A number, a switch (True / False) or one of ``choices`` (text).
    default : int, float, bool, str, None or "auto"
        The value used when none is given; ``auto_value`` when it is chosen from the data.
    low, high : float
        Inclusive bounds of a given number (not used by a switch or a choice: give 0 and 1).
    label, help : str
        What a widget shows.
    auto : bool
        Whether the value may be left to the method (:data:`AUTO` in text).
    auto_value : None or "auto"
        How "chosen from the data" is passed to the method (its historical spelling).
    start : int or float, optional
        Where a widget starts when a person switches "automatic" off.
    below_n : bool
        The value counts neighbours of a point: it must also stay below the number of items.
    choices : tuple of str
        The options of a ``choice`` (lower case), in the order a widget shows them.
    """

    name: str
    kind: str
    default: Any
    low: float
    high: float
    label: str
    help: str
    auto: bool = False
    auto_value: Any = None
    start: float | None = None
    below_n: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {', '.join(KINDS)}")
        if (self.kind == "choice") != bool(self.choices) or any(
            c != c.lower() or c == AUTO for c in self.choices
        ):
            raise ValueError(
                f"parameter {self.name}: a choice (and only a choice) lists its options, "
                "in lower case"
            )
        if self.kind in ("bool", "choice") and (self.auto or self.below_n):
            raise ValueError(f"parameter {self.name}: a {self.kind} is never automatic")
        if not (self.auto and self.default == self.auto_value):
            self.check(self.default)

    def is_auto(self, value: Any) -> bool:
        """Whether ``value`` asks for the method's own choice."""
        return self.auto and (value is None or (isinstance(value, str) and value == AUTO))

    def high_for(self, n: int | None) -> float:
        """The upper bound for a dataset of ``n`` items."""
        if self.below_n and n is not None:
            return min(self.high, max(self.low, n - 1))
        return self.high

    def check(self, value: Any, *, n: int | None = None, owner: str = "") -> Any:
        """``value`` validated (and typed), or ``auto_value``; InvalidInputError otherwise."""
        if self.is_auto(value):
            return self.auto_value
        name = f"{owner} {self.name}".strip()
        if self.kind == "bool":
            return self._check_bool(value, name)
        if self.kind == "choice":
            return self._check_choice(value, name)
        if value is None or isinstance(value, str):
            hint = f" or {AUTO!r}" if self.auto else ""
            raise InvalidInputError(f"{name} must be a number{hint}, got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and math.isfinite(value) and value == int(value):
                value = int(value)  # 5.0 from JSON or a number box
            checked: Any = check_int(value, name, low=int(self.low), high=int(self.high))
        else:
            checked = check_number(value, name, low=self.low, high=self.high)
        if self.below_n and n is not None and checked > n - 1:
            raise InvalidInputError(
                f"{name} = {checked} counts neighbours, but the dataset has {n} items: choose "
                f"at most {n - 1}"
            )
        return checked

    def _check_bool(self, value: Any, name: str) -> bool:
        # True / False (numpy's too), or 0 / 1 as JSON clients write them; never 0.5 or "no"
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        raise InvalidInputError(f"{name} must be true or false, got {_shown(value)}")

    def _check_choice(self, value: Any, name: str) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        raise InvalidInputError(
            f"{name} must be one of {', '.join(self.choices)}, got {_shown(value)}"
        )

    def parse(self, text: str, *, n: int | None = None, owner: str = "") -> Any:
        """A value given as text (a link, ``--param``), validated.

        Only a plain decimal number (or ``auto`` where allowed) is read: no JSON, so that no
        text can make the parser itself fail (deep nesting, a 5,000-digit integer). A switch
        reads 1 / true / yes / on and 0 / false / no / off, a choice one of its options (case
        does not matter).
        """
        name = f"{owner} {self.name}".strip()
        text = str(text).strip()
        if self.kind == "bool":
            word = text.lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise InvalidInputError(f"{name} must be true or false (1 or 0), got {text[:40]!r}")
        if self.kind == "choice":
            return self._check_choice(text.lower(), name)
        if self.auto and text.lower() == AUTO:
            return self.auto_value
        if len(text) > _MAX_NUMBER_TEXT or not _NUMBER.fullmatch(text):
            hint = f" or {AUTO!r}" if self.auto else ""
            raise InvalidInputError(f"{name} must be a number{hint}, got {text[:40]!r}")
        value: Any = int(text) if _INTEGER.fullmatch(text) else float(text)
        return self.check(value, n=n, owner=owner)

    def describe(self) -> str:
        """The bounds in words, for help texts and errors."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        kind = "whole number" if self.kind == "int" else "number"
        high = f"{self.high:g}" + (" and below the number of items" if self.below_n else "")
        auto = f", or {AUTO}" if self.auto else ""
        return f"a {kind} from {self.low:g} to {high}{auto}"


@dataclass(frozen=True)
class ParamTable(Mapping[str, Param]):
    """The parameters of one method, in the order a page shows them."""

    owner: str
    params: tuple[Param, ...]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def default(self, name: str) -> Any:
        """The default of ``name`` (for the method's own signature)."""
        return self[name].default

    def defaults(self) -> dict[str, Any]:
        """Every parameter at its default."""
        return {p.name: p.default for p in self.params}

    def _unknown(self, names: Any) -> InvalidInputError:
        return InvalidInputError(
            f"{self.owner} has no parameter {', '.join(map(repr, sorted(names)))}; its "
            f"parameters are: {', '.join(self) or 'none'}"
        )

    def resolve(
        self, given: Mapping[str, Any] | None = None, *, n: int | None = None
    ) -> dict[str, Any]:
        """The defaults overridden by ``given``, every value checked against its bounds."""
        given = dict(given or {})
        unknown = set(given) - set(self)
        if unknown:
            raise self._unknown(unknown)
        out = self.defaults()
        for name, value in given.items():
            out[name] = self[name].check(value, n=n, owner=self.owner)
        # A default above a small dataset's size (n_neighbors 150 at n = 40) is kept: the
        # methods cap it at the graph's width themselves.
        return out

    def parse(self, pairs: Mapping[str, str], *, n: int | None = None) -> dict[str, Any]:
        """Values given as text by name (``--param NAME=VALUE``), checked."""
        unknown = set(pairs) - set(self)
        if unknown:
            raise self._unknown(unknown)
        return {name: self[name].parse(text, n=n, owner=self.owner) for name, text in pairs.items()}
