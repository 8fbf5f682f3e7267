"""The JSON Schema of ``bundle.json`` (package data ``ordinal/schemas/bundle.v1.json``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["BUNDLE_FORMAT", "bundle_schema", "bundle_schema_errors"]

BUNDLE_FORMAT = "ordinal-bundle/1"
SCHEMA_RESOURCE = "bundle.v1.json"


@cache
def bundle_schema() -> dict[str, Any]:
    """The bundle JSON Schema (draft 2020-12)."""
    text = resources.files("ordinal").joinpath("schemas", SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(bundle_schema())


def bundle_schema_errors(data: Any) -> list[str]:
    """Every schema violation of ``data``, one line each as ``field/path: message``."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]
