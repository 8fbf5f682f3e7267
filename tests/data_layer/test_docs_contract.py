"""The data-layer documentation and package data stay in step with the code."""

from __future__ import annotations

import json
from pathlib import Path

from ordinal.artifacts import __all__ as artifacts_all
from ordinal.data import REASON_CODES
from ordinal.data import __all__ as data_all

REPO = Path(__file__).resolve().parents[2]


def test_every_reason_code_is_documented():
    doc = (REPO / "docs" / "data-layer.md").read_text("utf-8")
    missing = [code for code in REASON_CODES if f"`{code}`" not in doc]
    assert not missing, f"document these reason codes in docs/data-layer.md: {missing}"


def test_manifest_schema_is_valid_json_schema_and_documented():
    import jsonschema

    schema = json.loads((REPO / "ordinal" / "schemas" / "manifest.v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = (REPO / "docs" / "data-layer.md").read_text("utf-8")
    assert all(f"`{field}`" in doc for field in schema["properties"])


def test_public_names_resolve():
    import ordinal.artifacts
    import ordinal.data

    for mod, names in ((ordinal.data, data_all), (ordinal.artifacts, artifacts_all)):
        for name in names:
            assert getattr(mod, name) is not None, name
