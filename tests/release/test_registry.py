"""The registry on local storage and a real moto_server, with a real MLflow (SQLite) registry:
publish, immutability, aliases, rollback, retention, changelog, the rollback drill."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow import MlflowClient

from ordinal.artifacts import LocalStorage
from ordinal.release import (
    ImmutableReleaseError,
    RegistryError,
    UntrustedKeyError,
    build_bundle,
    collect_run,
)
from ordinal.release.audit import AuditLog
from ordinal.release.drill import rollback_drill
from ordinal.release.registry import Registry


@pytest.fixture
def registry(tmp_path, fingerprint_of, clock, mlflow_uri) -> Registry:
    storage = LocalStorage(tmp_path / "store")
    audit = AuditLog(storage, mirror=tmp_path / "audit.jsonl", clock=clock)
    return Registry(
        storage,
        [fingerprint_of["release"]],
        audit=audit,
        tracking_uri=mlflow_uri,
    )


def test_publish_registers_and_is_immutable(
    registry, versions, run_dir, keys, fingerprint_of, tmp_path, monkeypatch
):
    result = registry.publish(versions["1.0.0"], actor="alice")
    assert result.created and result.mlflow_version == "1" and result.audit_seq == 1
    stored = registry.storage.list("releases/demo/1.0.0")
    assert (
        "releases/demo/1.0.0/bundle.sig" in stored
        and "releases/demo/1.0.0/fp32/model.onnx" in stored
    )
    assert registry.versions("demo") == ["1.0.0"]
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    mv = client.get_model_version_by_alias("demo", "candidate")
    assert str(mv.version) == "1"
    assert mv.tags["ordinal.release.bundle_sha256"] == result.digest
    assert mv.tags["ordinal.evidence.parity.passed"] == "true"
    assert registry.alias("demo", "candidate") == "1.0.0"
    # The same bytes again: nothing happens.
    again = registry.publish(versions["1.0.0"])
    assert not again.created and again.digest == result.digest
    assert len(registry.audit.records()) == 1
    # Other bytes under the same version: refused.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767312000")
    other = build_bundle(
        collect_run(run_dir),
        tmp_path / "other",
        name="demo",
        version="1.0.0",
        signing_key=keys["release"],
    )
    with pytest.raises(ImmutableReleaseError, match="never changes"):
        registry.publish(other)
    # Untrusted bundles never reach the registry.
    rogue = Registry(registry.storage, [fingerprint_of["rogue"]], tracking_uri="")
    with pytest.raises(UntrustedKeyError):
        rogue.publish(versions["1.1.0"])
    fetched = registry.fetch("demo", "1.0.0", tmp_path / "fetched")
    assert fetched.digest == result.digest
    with pytest.raises(RegistryError, match="not published"):
        registry.fetch("demo", "9.9.9")
    with pytest.raises(RegistryError, match="not published"):
        registry.metadata("demo", "9.9.9")


def test_unfinished_upload_is_not_a_version(registry, versions):
    registry.storage.put_bytes(b"partial", "releases/demo/1.3.0/fp32/model.onnx")
    assert registry.versions("demo") == []
    assert registry.publish(versions["1.3.0"]).created
    assert registry.storage.get_bytes("releases/demo/1.3.0/fp32/model.onnx") != b"partial"


def test_aliases_rollback_retention_changelog(registry, versions):
    for version in ("1.0.0", "1.1.0"):
        registry.publish(versions[version])
    registry.set_alias("demo", "1.0.0", "production", actor="alice")
    for version in ("1.2.0", "1.3.0", "1.4.0"):
        registry.publish(versions[version])
    registry.set_alias("demo", "1.2.0", "production", actor="bob")
    registry.set_alias("demo", "1.3.0", "production", actor="bob")
    assert registry.alias("demo") == "1.3.0"
    client = registry._client()
    assert (
        client.get_model_version_by_alias("demo", "production").tags["ordinal.release.version"]
        == "1.3.0"
    )
    record = registry.rollback("demo", actor="carol", reason="drill")
    assert record.action == "rollback" and record.subject["version"] == "1.2.0"
    assert record.evidence["rolled_back_from"] == "1.3.0"
    assert registry.alias("demo") == "1.2.0"
    assert (
        client.get_model_version_by_alias("demo", "production").tags["ordinal.release.version"]
        == "1.2.0"
    )
    # History: which version was in production when.
    times = {
        c.version: c.time for c in registry.audit.alias_changes("demo") if c.alias == "production"
    }
    assert registry.alias("demo", at=times["1.0.0"]) == "1.0.0"
    # Retention: last three (1.2, 1.3, 1.4) + ever production (1.0, 1.2, 1.3) -> 1.1 goes.
    plan = registry.retention_plan("demo")
    assert plan.deleted == ["1.1.0"]
    assert "held production" in plan.kept["1.0.0"]
    assert plan.kept["1.4.0"] == ["one of the last 3 releases", "holds an alias now"]
    rows = plan.rows()
    assert rows[0][0] == "1.4.0" and ("1.1.0", "delete", "allowed") in rows
    assert registry.sweep("demo", dry_run=True).deleted == ["1.1.0"]
    assert "1.1.0" in registry.versions("demo")
    registry.sweep("demo", actor="retention")
    assert registry.versions("demo") == ["1.0.0", "1.2.0", "1.3.0", "1.4.0"]
    assert registry.storage.list("releases/demo/1.1.0") == []
    assert registry.mlflow_version("demo", "1.1.0") is None
    assert registry.audit.records()[-1].action == "retention-delete"
    assert registry.audit.verify() == len(registry.audit.records())
    # Rolling back twice reaches the oldest production version, then refuses.
    registry.rollback("demo")
    assert registry.alias("demo") == "1.0.0"
    with pytest.raises(RegistryError, match="oldest version that held production"):
        registry.rollback("demo")
    # Changelog: newest first, with deltas against the previous release.
    text = registry.changelog("demo")
    assert text.startswith("# Changelog")
    assert text.index("## demo 1.4.0") < text.index("## demo 1.0.0")
    assert "compared with 1.3.0" in text and "(+0.0000)" in text
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.set_alias("demo", "1.0.0", "staging")
    with pytest.raises(ValueError, match="at least the last 3"):
        registry.retention_plan("demo", keep_last=2)


def test_rollback_needs_a_production_version(registry, versions):
    with pytest.raises(RegistryError, match="no production version"):
        registry.rollback("demo")


def test_rollback_drill(registry, versions, tmp_path):
    report = rollback_drill(registry, "demo")
    assert not report.passed and "needs 4" in report.stages["select"]["detail"]
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        registry.publish(versions[version])
    report = rollback_drill(registry, "demo")
    assert report.passed and report.version == "1.0.0"
    assert report.stages["parity"]["detail"] == "500 samples within tolerance"
    assert json.dumps(report.to_dict())
    # A damaged stored graph fails the drill at verification, naming the file.
    path = registry.storage.local_path("releases/demo/1.0.0/fp32/model.onnx")
    path.write_bytes(path.read_bytes()[:-1] + b"\1")
    broken = rollback_drill(registry, "demo", work_dir=tmp_path / "drill")
    assert not broken.passed and "fp32/model.onnx" in broken.stages["fetch-verify"]["detail"]


def test_publish_and_fetch_on_s3(locked_bucket, versions, fingerprint_of, tmp_path, clock):
    audit = AuditLog(locked_bucket, mirror=tmp_path / "a.jsonl", lock_days=1, clock=clock)
    registry = Registry(locked_bucket, [fingerprint_of["release"]], audit=audit, tracking_uri="")
    result = registry.publish(versions["1.0.0"])
    assert result.created and result.mlflow_version is None
    assert registry.versions("demo") == ["1.0.0"]
    fetched = registry.fetch("demo", "1.0.0", tmp_path / "f")
    assert fetched.digest == result.digest
    registry.set_alias("demo", "1.0.0", "production")
    assert registry.alias("demo") == "1.0.0" and audit.verify() == 2
    shutil.rmtree(tmp_path / "f")
