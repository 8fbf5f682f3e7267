"""``stack up`` deploys the release schedules, and the nightly parity runs on the stack.

Real stack (the session fixture): Prefect server behind the TLS proxy, the control pool's
worker, moto_server as the S3 store with the object-locked releases bucket. The bundle is a
real one (tiny BERT exported and parity-gated, signed); the webhook receiver is a local
HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from pipelines.release.schedules import FLOW_NAMES, RELEASE_SCHEDULES
from pipelines.stack import prefect_server, s3
from pipelines.stack.config import StackConfig
from pipelines.stack.smoke import _run_and_wait

NIGHTLY = "release-nightly-parity/nightly"
QUARTERLY = "release-resilience/quarterly"


def _deployments(config: StackConfig) -> dict:
    async def read():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return {
                f"{FLOW_NAMES[f]}/{n}": await client.read_deployment_by_name(f"{FLOW_NAMES[f]}/{n}")
                for f, n, _ in RELEASE_SCHEDULES
            }

    with prefect_server.client_settings(config):
        return asyncio.run(read())


def _run_together(config: StackConfig, runs: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """Run deployments at once (the control worker takes several) and wait for all."""

    async def all_runs():
        return await asyncio.gather(*(_run_and_wait(n, p, timeout=240) for n, p in runs))

    with prefect_server.client_settings(config):
        return [(state, message) for _, state, _, message in asyncio.run(all_runs())]


@pytest.fixture
def signed_bundle(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A real signed bundle (tiny BERT, FP32, parity-gated) and its signing key."""
    from ordinal.release import build_bundle, collect_run, generate_signing_key
    from tests.release.run_fixture import make_run

    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    run_dir = make_run(tmp_path, int8=False)
    key = tmp_path / "keys" / "release.pem"
    generate_signing_key(key)
    bundle = build_bundle(
        collect_run(run_dir), tmp_path / "demo-1.0.0", name="demo", version="1.0.0",
        signing_key=key,
    )  # fmt: skip
    return bundle, key


def test_up_deploys_release_schedules_and_nightly_runs(
    stack_config: StackConfig, alerting, signed_bundle, tmp_path, monkeypatch
) -> None:
    found = _deployments(stack_config)
    crons = {name: d.schedules[0].schedule.cron for name, d in found.items()}
    assert crons == {NIGHTLY: "0 2 * * *", QUARTERLY: "0 5 1 1,4,7,10 *"}
    for deployment in found.values():
        assert deployment.work_pool_name == "control" and deployment.schedules[0].active
        assert deployment.parameters["storage"] == f"s3://{s3.RELEASES_BUCKET}"
        assert deployment.parameters["stack_root"] == str(stack_config.root)
    report_dir = Path(found[NIGHTLY].parameters["report_dir"])

    # Publish a signed release into the stack's object-locked releases bucket and trust its
    # key on the stack (<root>/release/trusted/*.pub).
    from ordinal.artifacts import open_storage
    from ordinal.release import AuditLog, Registry, fingerprint, load_private_key

    bundle, key = signed_bundle
    for name, value in s3.client_env(stack_config).items():
        monkeypatch.setenv(name, value)
    storage = open_storage(f"s3://{s3.RELEASES_BUCKET}", endpoint_url=stack_config.s3_url)
    trusted = stack_config.path("release", "trusted")
    trusted.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f"{key}.pub", trusted / "test-release.pub")
    registry = Registry(
        storage,
        [fingerprint(load_private_key(key))],
        audit=AuditLog(storage, lock_days=1),
        tracking_uri="",
    )
    assert registry.publish(bundle).created

    # Two nightly runs at once: the deployed one fetches, verifies and re-checks the release
    # and completes; one pointed at an empty prefix (no release) fails loudly, and the
    # stack's webhook hears. (It runs for a copy of the stack's root whose config routes
    # alerts to the test's receivers, so the session stack's stack.json is never changed.)
    alert_config, webhook, _ = alerting
    other = tmp_path / "alert-root"
    shutil.copytree(stack_config.secrets_dir, other / "secrets")
    alert_config.model_copy(update={"root": other}).save()
    before = set(report_dir.glob("nightly-parity-*.json")) if report_dir.is_dir() else set()
    empty = {
        "stack_root": str(other),
        "storage": f"s3://{s3.RELEASES_BUCKET}/empty",
        "report_dir": str(other / "reports"),
    }
    # And the quarterly deployment, with two of its rehearsals (the rollback drill needs four
    # published versions; tests/release covers it): a small checkpoint-restore fixture run on
    # the stack's worker, and the dependency-upgrade rehearsal of demo 1.0.0 fetched from S3.
    quarterly = {
        "drills": ["checkpoint-restore", "dependency-upgrade"],
        "restore_spec": {"fixture_steps": 4, "fixture_save_steps": 2, "fixture_records": 40},
    }
    try:
        runs = _run_together(
            stack_config, [(NIGHTLY, {}), (NIGHTLY, empty), (QUARTERLY, quarterly)]
        )
        (deployed, deployed_msg), (failed, failed_msg), (rehearsed, rehearsed_msg) = runs
    finally:
        os.remove(trusted / "test-release.pub")
    (resilience,) = report_dir.glob("resilience-*.json")
    rows = json.loads(resilience.read_text())["results"]
    assert rehearsed == "COMPLETED", (rehearsed_msg, rows)
    assert list(rows) == ["checkpoint-restore", "dependency-upgrade demo"]
    assert all(row["passed"] for row in rows.values()), rows
    assert (report_dir / resilience.name.replace(".json", ".html")).is_file()
    assert deployed == "COMPLETED", deployed_msg
    (new,) = set(report_dir.glob("nightly-parity-*.json")) - before
    results = json.loads(new.read_text())
    assert results["demo 1.0.0"]["passed"], results
    assert results["demo 1.0.0"]["stages"]["parity"]["passed"]
    assert failed == "FAILED", failed_msg
    text = json.dumps(webhook.received)
    assert "nightly parity failed for releases" in text and "runbook-release-parity" in text
    assert f"s3://{s3.RELEASES_BUCKET}/empty" in text
    (failed_report,) = (other / "reports").glob("nightly-parity-*.json")
    assert not json.loads(failed_report.read_text())["releases"]["passed"]
