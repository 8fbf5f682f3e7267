"""How label values in the data are matched to a declared, ordered label set.

A source declares ``labels``: the ordered set of label values exactly as they appear in the
data, lowest first. Label ``k`` of a processed record is the position of its value in that
list. Two ways of reading values (``label_values``):

``name`` (the default)
    A value is matched by name. Text (a CSV field, a JSON or Parquet string) must equal a
    name exactly, after stripping surrounding whitespace; matching is case-sensitive and
    ``"01"`` is not ``"1"``. A typed number (JSON or Parquet int, float, decimal; never a
    boolean) matches the name that denotes the same number: ``1`` and ``1.0`` match ``"1"``,
    ``2.5`` matches ``"2.5"``. Names count as numbers when they are plain decimals
    (``-?\\d+(\\.\\d+)?``).
``index``
    A value is a 0-based position in the list: the text ``"3"`` or the number ``3`` (or
    ``3.0``) is ``labels[3]``.

A declaration is refused (:func:`label_declaration_problems`) when it is ambiguous:

* fewer than two labels, a repeated label, an empty label or one with surrounding
  whitespace (data values are stripped, so it could never match);
* two names that denote the same number (``"1"`` and ``"1.0"``, ``"1"`` and ``"01"``): a
  typed ``1`` would match both;
* ``label_values: index`` with names that look like numbers but are not exactly
  ``"0"``..``"K-1"`` in order: the value ``1`` would mean the second label, not the label
  ``"1"`` (the data corruption this rule exists to stop). Declare such labels by name.

Labels ``"0"``..``"K-1"`` in order mean the same under both readings, so either is accepted.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "LABEL_VALUES",
    "LabelMatcher",
    "LabelValues",
    "check_label_declaration",
    "label_declaration_problems",
]

LabelValues = Literal["name", "index"]
LABEL_VALUES: tuple[str, ...] = ("name", "index")

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _as_number(name: str) -> Decimal | None:
    """The number a label name denotes, or None when it is not a plain decimal.

    >>> _as_number("10"), _as_number("2.50"), _as_number("low"), _as_number("1e3")
    (Decimal('10'), Decimal('2.50'), None, None)
    """
    return Decimal(name) if _NUMBER.fullmatch(name) else None


def label_declaration_problems(labels: Any, label_values: str = "name") -> list[str]:
    """Return what is wrong with a label declaration (empty when it is unambiguous).

    >>> label_declaration_problems(["1", "2", "3"])
    []
    >>> label_declaration_problems(["1", "2", "3"], "index")  # doctest: +ELLIPSIS
    ["label_values is 'index' but the labels look like numbers and are not '0'..'2' ...]
    >>> label_declaration_problems(["0", "1", "2"], "index")
    []
    >>> label_declaration_problems(["1", "1.0"])
    ["labels '1' and '1.0' denote the same number; a numeric value would match both"]
    """
    if label_values not in LABEL_VALUES:
        return [f"label_values must be one of {list(LABEL_VALUES)}, got {label_values!r}"]
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        return [f"labels must be a list of names, got {labels!r}"]
    problems = []
    bad = [v for v in labels if not isinstance(v, str)]
    if bad:
        quoted = ", ".join(f'"{v}"' for v in labels)
        return [
            f"labels must be strings exactly as they appear in the data; got "
            f"{', '.join(repr(v) for v in bad)} (quote them in YAML: [{quoted}])"
        ]
    if len(labels) < 2:
        problems.append(f"at least two labels are needed, got {list(labels)}")
    dupes = sorted({v for v in labels if labels.count(v) > 1})
    if dupes:
        problems.append(f"labels must be unique; repeated: {dupes}")
    for v in labels:
        if not v.strip():
            problems.append("a label is empty or only whitespace")
        elif v != v.strip():
            problems.append(
                f"label {v!r} has surrounding whitespace; values are stripped before matching"
            )
    seen: dict[Decimal, str] = {}
    for v in labels:
        number = _as_number(v)
        if number is None or v in dupes:
            continue
        if number in seen:
            problems.append(
                f"labels {seen[number]!r} and {v!r} denote the same number; "
                "a numeric value would match both"
            )
        else:
            seen[number] = v
    if label_values == "index" and seen:
        positions = [str(i) for i in range(len(labels))]
        if list(labels) != positions:
            problems.append(
                f"label_values is 'index' but the labels look like numbers and are not "
                f"'0'..'{len(labels) - 1}' in order: the value 1 would mean {labels[1]!r}, "
                f"not the label '1'. List the values as they appear in the data and use "
                f"label_values: name"
            )
    return problems


def check_label_declaration(labels: Any, label_values: str = "name") -> tuple[str, ...]:
    """Return ``labels`` as a tuple, or raise ``ValueError`` listing every problem.

    >>> check_label_declaration(["low", "medium", "high"])
    ('low', 'medium', 'high')
    """
    problems = label_declaration_problems(labels, label_values)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(labels)


class LabelMatcher:
    """Maps a raw label value to its 0-based position, under one ``label_values`` reading.

    ``lookup`` is a plain dict for the common case (a stripped string, or an ``int``);
    :meth:`match` handles everything else (floats, decimals) and returns None for a value
    outside the set. Booleans never match.

    >>> m = LabelMatcher(("1", "2", "10"), "name")
    >>> [m.match(v) for v in ("10", " 1 ", 1, 1.0, 10, "0", 0, True, "1.0")]
    [2, 0, 0, 0, 2, None, None, None, None]
    >>> i = LabelMatcher(("low", "medium", "high"), "index")
    >>> [i.match(v) for v in ("0", 2, 2.0, "high", 3, "-1")]
    [0, 2, 2, None, None, None]
    """

    def __init__(self, labels: tuple[str, ...], label_values: LabelValues = "name") -> None:
        self.labels = check_label_declaration(labels, label_values)
        self.label_values = label_values
        self.lookup: dict[Any, int] = {}
        self.numbers: dict[Decimal, int] = {}
        if label_values == "index":
            for i in range(len(labels)):
                self.lookup[str(i)] = i
                self.lookup[i] = i
                self.numbers[Decimal(i)] = i
        else:
            for i, name in enumerate(labels):
                self.lookup[name] = i
                number = _as_number(name)
                if number is not None:
                    self.numbers[number] = i
                    if number == number.to_integral_value():
                        self.lookup[int(number)] = i

    def match(self, value: Any) -> int | None:
        """Return the position of ``value`` in the label set, or None if it is not in it."""
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, str):
            return self.lookup.get(value.strip())
        if isinstance(value, int):
            return self.lookup.get(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            value = Decimal(repr(value))
        if isinstance(value, Decimal):
            try:
                return self.numbers.get(value) if value.is_finite() else None
            except (InvalidOperation, TypeError):
                return None
        return None
