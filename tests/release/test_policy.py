"""The committed promotion policy evaluated on published releases; promotion refused until
every criterion passes, the Rust end-to-end result included (never waived)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ordinal.artifacts import LocalStorage
from ordinal.release import (
    AuditLog,
    PolicyError,
    PromotionRefusedError,
    Registry,
    bundle_run,
    evaluate_policy,
    load_policy,
    promote_release,
    record_consumption,
)
from ordinal.release.policy import DEFAULT_POLICY, E2E_DIR_ENV


@pytest.fixture
def registry(tmp_path, fingerprint_of, clock, monkeypatch) -> Registry:
    monkeypatch.delenv(E2E_DIR_ENV, raising=False)
    storage = LocalStorage(tmp_path / "store")
    audit = AuditLog(storage, mirror=tmp_path / "audit.jsonl", clock=clock)
    return Registry(storage, [fingerprint_of["release"]], audit=audit, tracking_uri="")


def _release(registry, run_dir, keys, tmp_path, version):
    verified, record = bundle_run(
        run_dir,
        tmp_path / f"demo-{version}",
        name="demo",
        version=version,
        signing_key=keys["release"],
        audit=registry.audit,
        actor="ci",
    )
    assert record.action == "bundle" and record.evidence["training_status"] == "completed"
    registry.publish(verified.path, actor="ci")
    return verified


def _e2e(registry, digest, **fields):
    result = {"bundle_sha256": digest, "passed": True, "summary": "12 requests", **fields}
    registry.storage.put_bytes(json.dumps(result).encode(), f"releases/serving-e2e/{digest}.json")


def test_committed_policy_loads():
    policy, sha = load_policy()
    assert policy.parity.min_samples == 500 and policy.parity.max_atol == 1e-5
    assert policy.int8.required and set(policy.metrics) == {"mae", "qwk"}
    assert len(sha) == 64 and DEFAULT_POLICY.name == "release-policy.yaml"


def test_policy_errors(tmp_path):
    with pytest.raises(PolicyError, match="no promotion policy"):
        load_policy(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy_version: 1\nmetrics: {}\nrust_e2e: {waived: true}\n")
    with pytest.raises(PolicyError, match="waived"):
        load_policy(bad)


def test_promotion_refused_until_rust_e2e_passes(registry, run_dir, keys, tmp_path):
    verified = _release(registry, run_dir, keys, tmp_path, "1.0.0")
    evaluation = evaluate_policy(registry, "demo", "1.0.0")
    status = {r.criterion.split(" ")[0]: r.status for r in evaluation.results}
    assert status == {
        "training": "pass",
        "parity": "pass",
        "INT8": "pass",
        "metrics": "pass",
        "Rust": "missing",
    }
    rust = evaluation.results[-1]
    assert verified.digest in rust.evidence and "never waived" in rust.detail
    assert "reports/parity.json" in evaluation.results[1].evidence
    assert evaluation.results[0].evidence.startswith("audit seq 1")
    with pytest.raises(PromotionRefusedError, match="Rust e2e") as refused:
        promote_release(registry, evaluation, approved_by="alice")
    assert refused.value.failed == ["Rust e2e on this bundle (missing)"]
    assert registry.alias("demo") is None
    for bad, detail in (
        ({"passed": False}, "failed"),
        ({"bundle_sha256": "0" * 64}, "another bundle"),
    ):
        _e2e(registry, verified.digest, **bad)
        result = evaluate_policy(registry, "demo", "1.0.0").results[-1]
        assert result.status == "fail" and detail in result.detail
    registry.storage.put_bytes(b"{", f"releases/serving-e2e/{verified.digest}.json")
    assert (
        evaluate_policy(registry, "demo", "1.0.0").results[-1].detail == "result file is not JSON"
    )
    _e2e(registry, verified.digest)
    evaluation = evaluate_policy(registry, "demo", "1.0.0")
    assert evaluation.passed, evaluation.failed
    record = promote_release(
        registry, evaluation, approved_by="alice", approval={"comment": "looks good"}
    )
    assert record.actor == "alice" and record.evidence["policy"]["passed"] is True
    assert record.evidence["approval"] == {"comment": "looks good"}
    assert registry.alias("demo") == "1.0.0"
    consumed = record_consumption(registry.audit, verified, consumer="ordinal-serve@test")
    assert (
        consumed.action == "consume" and registry.audit.verify() == 4
    )  # bundle, publish, promote, consume


def test_e2e_results_from_an_absolute_folder(registry, run_dir, keys, tmp_path, monkeypatch):
    verified = _release(registry, run_dir, keys, tmp_path, "1.0.0")
    folder = tmp_path / "e2e"
    folder.mkdir()
    (folder / f"{verified.digest}.json").write_text(
        json.dumps({"bundle_sha256": verified.digest, "passed": True})
    )
    monkeypatch.setenv(E2E_DIR_ENV, str(folder))
    result = evaluate_policy(registry, "demo", "1.0.0").results[-1]
    assert result.status == "pass" and result.evidence == str(folder / f"{verified.digest}.json")


def test_metric_regression_and_parity_size_fail(registry, run_dir, keys, tmp_path):
    first = _release(registry, run_dir, keys, tmp_path, "1.0.0")
    _e2e(registry, first.digest)
    promote_release(registry, evaluate_policy(registry, "demo", "1.0.0"), approved_by="alice")
    # A run whose INT8 metrics are worse than production's by more than the tolerance.
    worse = Path(shutil.copytree(run_dir, tmp_path / "worse" / run_dir.name))
    report_path = worse / "quantize" / "int8_report.json"
    report = json.loads(report_path.read_text())
    report["int8"]["mae"] += 0.5
    report_path.write_text(json.dumps(report))
    outputs = json.loads((worse / "quantize" / "outputs.json").read_text())
    outputs["report_json"] = str(report_path)
    (worse / "quantize" / "outputs.json").write_text(json.dumps(outputs))
    second = _release(registry, worse, keys, tmp_path, "1.1.0")
    _e2e(registry, second.digest)
    evaluation = evaluate_policy(registry, "demo", "1.1.0")
    metrics = evaluation.results[3]
    assert metrics.criterion == "metrics vs production 1.0.0" and metrics.status == "fail"
    assert "mae worse by 0.5000 > 0.02" in metrics.detail
    with pytest.raises(PromotionRefusedError, match="metrics vs production"):
        evaluation.require()
    # The same release under a stricter policy file: 500 parity samples are not enough.
    strict = tmp_path / "strict.yaml"
    strict.write_text(DEFAULT_POLICY.read_text().replace("min_samples: 500", "min_samples: 1000"))
    policy, sha = load_policy(strict)
    parity = evaluate_policy(registry, "demo", "1.0.0", policy, sha).results[1]
    assert parity.status == "fail" and "500 samples < 1000" in parity.detail


def test_training_criterion_needs_the_bundle_record(registry, built_bundle):
    registry.publish(built_bundle)  # published without `ordinal release bundle`'s record
    result = evaluate_policy(registry, "demo", "1.0.0").results[0]
    assert result.status == "missing" and "ordinal release bundle" in result.detail


def test_promotion_verifies_the_stored_bundle(registry, run_dir, keys, tmp_path):
    from ordinal.release import DigestMismatchError

    verified = _release(registry, run_dir, keys, tmp_path, "1.0.0")
    _e2e(registry, verified.digest)
    evaluation = evaluate_policy(registry, "demo", "1.0.0")
    assert evaluation.passed
    graph = registry.storage.local_path("releases/demo/1.0.0/int8/model.onnx")
    graph.write_bytes(graph.read_bytes()[:-1] + b"\1")
    with pytest.raises(DigestMismatchError, match="int8/model.onnx"):
        promote_release(registry, evaluation, approved_by="alice")
    assert registry.alias("demo") is None
