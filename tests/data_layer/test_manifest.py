"""Manifest schema, serialisation, verification and the git / time fields."""

from __future__ import annotations

import json

import pytest

from ordinal.artifacts import (
    FileEntry,
    InputChangedError,
    ManifestError,
    load_verified_manifest,
    manifest_entry,
    manifest_schema,
    new_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from ordinal.artifacts.manifest import git_state


def _manifest(store, **kw):
    d = store.put_bytes(b"payload", "datasets/raw/ds/v1/data.csv")
    return new_manifest(
        phase=kw.pop("phase", "ingest"),
        dataset="ds",
        version="v1",
        inputs=[FileEntry(path="file:///x", uri="file:///x", sha256="0" * 64, size=7)],
        outputs=[FileEntry.from_digest(d, role="raw")],
        record_counts={"files": 1},
        parameters={"source": "x"},
        **kw,
    )


def test_schema_is_versioned_package_data():
    schema = manifest_schema()
    assert schema["properties"]["schema_version"] == {"const": "1"}
    for field in ("experiment_id", "dataset", "phase", "git", "created_at", "tool_versions"):
        assert field in schema["required"]


def test_roundtrip_and_fields(local_store, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    m = _manifest(local_store, experiment_id="exp-7")
    entry = write_manifest(local_store, "datasets/raw/ds/v1/manifest.json", m)
    assert entry.role == "manifest"
    back = read_manifest(local_store, "datasets/raw/ds/v1/manifest.json")
    assert back == m
    assert back.created_at == "2023-11-14T22:13:20Z"
    assert back.experiment_id == "exp-7"
    assert back.tool_versions["python"].startswith("3.")
    assert "pydantic" in back.tool_versions
    assert back.to_json() == m.to_json()  # deterministic bytes
    data = json.loads(m.to_json())
    assert "role" not in data["inputs"][0]  # optional fields omitted, not null
    assert data["git"].keys() == {"sha", "dirty"}


def test_default_experiment_id(local_store, monkeypatch):
    assert _manifest(local_store).experiment_id == "ds-v1"
    monkeypatch.setenv("ORDINAL_EXPERIMENT_ID", "from-env")
    assert _manifest(local_store).experiment_id == "from-env"


def test_git_state_in_and_outside_a_checkout(tmp_path):
    outside = git_state(tmp_path)
    assert outside.sha is None
    state = git_state()  # the project checkout: dirty flag known even before a first commit
    assert state.sha is None or len(state.sha) == 40


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("phase"), "'phase' is a required property"),
        (lambda d: d["outputs"][0].update(sha256="xyz"), "outputs/0/sha256"),
        (lambda d: d.update(phase="deploy"), "phase"),
        (lambda d: d["record_counts"].update(files=-1), "record_counts/files"),
        (lambda d: d.update(extra=1), "Additional properties"),
        (lambda d: d.update(created_at="yesterday"), "created_at"),
    ],
)
def test_schema_violations_are_listed(local_store, mutate, expected):
    data = json.loads(_manifest(local_store).to_json())
    mutate(data)
    with pytest.raises(ManifestError) as err:
        validate_manifest(data, key="k.json")
    assert expected in str(err.value)
    assert err.value.errors
    assert err.value.key == "k.json"


def test_read_refuses_missing_garbage_and_invalid(local_store):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(local_store, "m.json")
    local_store.put_bytes(b"{not json", "m.json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(local_store, "m.json")
    local_store.put_bytes(b"{}", "m.json")
    with pytest.raises(ManifestError, match="schema"):
        read_manifest(local_store, "m.json")


def test_later_phase_never_reads_a_changed_input(local_store):
    key = "datasets/raw/ds/v1/manifest.json"
    write_manifest(local_store, key, _manifest(local_store))
    assert load_verified_manifest(local_store, key, phase="ingest").phase == "ingest"
    with pytest.raises(ManifestError, match="expected a 'preprocess' manifest"):
        load_verified_manifest(local_store, key, phase="preprocess")
    local_store.put_bytes(b"payloaX", "datasets/raw/ds/v1/data.csv")  # same size, new bytes
    with pytest.raises(InputChangedError) as err:
        load_verified_manifest(local_store, key)
    assert err.value.expected != err.value.actual
    assert err.value.expected in str(err.value)
    assert err.value.actual in str(err.value)
    local_store.delete("datasets/raw/ds/v1/data.csv")
    with pytest.raises(InputChangedError, match="missing"):
        load_verified_manifest(local_store, key)


def test_manifest_entry_records_the_bytes_that_were_validated(local_store):
    key = "datasets/raw/ds/v1/manifest.json"
    written = write_manifest(local_store, key, _manifest(local_store))
    m = load_verified_manifest(local_store, key)
    entry = manifest_entry(m, key)
    assert (entry.sha256, entry.size, entry.role) == (written.sha256, written.size, "manifest")
    with pytest.raises(ManifestError, match="not read from storage"):
        manifest_entry(_manifest(local_store), key)


def test_output_by_role(local_store):
    m = _manifest(local_store)
    assert m.output("raw").path.endswith("data.csv")
    with pytest.raises(ManifestError, match="0 outputs"):
        m.output("split:train")
