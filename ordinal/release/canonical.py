"""Canonical JSON: the one byte form of ``bundle.json`` (and of audit records).

Keys sorted by code point, no insignificant white space, non-ASCII escaped, integers without a
fraction, floats as Python's ``repr`` (shortest round trip), no trailing newline. NaN and
infinities are refused: they are not JSON.

>>> canonical_json({"b": 1, "a": [1.5, "é", None, True]})
b'{"a":[1.5,"\\\\u00e9",null,true],"b":1}'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json"]


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` canonically (see the module docstring).

    Raises
    ------
    ValueError
        For NaN or infinite floats, or keys that are not strings.
    TypeError
        For values JSON cannot represent.
    """

    def check_keys(obj: Any) -> None:
        if isinstance(obj, dict):
            for key, item in obj.items():
                if not isinstance(key, str):
                    raise ValueError(f"canonical JSON needs string keys, got {key!r}")
                check_keys(item)
        elif isinstance(obj, list | tuple):
            for item in obj:
                check_keys(item)

    check_keys(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")
