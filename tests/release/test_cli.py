"""``ordinal release`` commands end to end on a real run, store and MLflow store; the
promotion flow's human approval through Prefect's pause/resume with input."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from pipelines.release.cli import release_app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch, mlflow_uri, keys, fingerprint_of):
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("ORDINAL_RELEASE_SIGNING_KEY", str(keys["release"]))
    monkeypatch.setenv("ORDINAL_RELEASE_TRUSTED_KEYS", fingerprint_of["release"])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    monkeypatch.delenv("ORDINAL_SERVING_E2E_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ok(args, code=0):
    result = runner.invoke(release_app, args)
    assert result.exit_code == code, result.output
    return result.output


def test_keygen_bundle_verify_publish_history(env, run_dir, tmp_path):
    out = _ok(["keygen", "--key", str(tmp_path / "k" / "new.pem")])
    assert "fingerprint: sha256:" in out
    _ok(["keygen", "--key", str(tmp_path / "k" / "new.pem")], code=1)
    # The run's models come from the store the run recorded; the audit log and the
    # registry live in the release store ($ORDINAL_STORAGE_URL).
    out = _ok(["bundle", str(run_dir), "--name", "demo", "--version", "1.0.0"])
    assert "audit seq: 1" in out
    out = _ok(["verify", "demo-1.0.0"])
    assert "verified demo 1.0.0" in out
    out = _ok(["verify", "demo-1.0.0", "--any-key"])
    assert "verified demo 1.0.0" in out
    (tmp_path / "demo-1.0.0" / "README.md").write_text("edited")
    out = _ok(["verify", "demo-1.0.0"], code=1)
    assert "FAILED (digest)" in out and "README.md" in out
    _ok(["bundle", str(run_dir), "--name", "demo", "--version", "1.0.0", "--overwrite"])
    out = _ok(["publish", "demo-1.0.0"])
    assert "demo 1.0.0 published" in out and "alias candidate" in out
    out = _ok(["publish", "demo-1.0.0"])
    assert "already published with the same bytes" in out
    out = _ok(["promote", "demo", "1.0.0", "--check-only"], code=1)
    assert "REFUSED" in out and "missing" in out and "promotion refused" in out
    out = _ok(["history", "demo"])
    assert "candidate" in out and "1.0.0" in out
    assert _ok(["history", "demo", "--at", "2020-01-01T00:00:00Z"]).strip() == "none"
    out = _ok(["audit", "verify"])
    assert "audit log intact: 3 records" in out
    out = _ok(["retention", "demo"])
    assert "one of the last 3 releases" in out
    out = _ok(["rollback", "demo"], code=1)
    assert "no production version" in out
    out = _ok(["drill", "demo", "--report", str(tmp_path / "drill.json")], code=1)
    assert json.loads((tmp_path / "drill.json").read_text())["passed"] is False
    # Tamper with a stored audit record: verify names the sequence number.
    record = next((tmp_path / "store" / "audit" / "releases").glob("000000000003.json"))
    record.write_text(record.read_text().replace('"publish"', '"publisx"'))
    out = _ok(["audit", "verify"], code=1)
    assert "FAILED at seq 3" in out


def test_bundle_errors_are_reported(env, tmp_path):
    out = _ok(["bundle", str(tmp_path / "no-run"), "--name", "demo", "--version", "1.0.0"], 1)
    assert "BundleBuildError" in out


def test_promotion_waits_for_a_named_approval(env, run_dir, tmp_path, fingerprint_of):
    """The real flow pauses on Prefect's API (temporary server) until resumed with input."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState

    from ordinal.artifacts import open_storage
    from pipelines.release.flows import promotion_flow

    _ok(["bundle", str(run_dir), "--name", "demo", "--version", "1.0.0"])
    _ok(["publish", "demo-1.0.0"])
    digest = _ok(["verify", "demo-1.0.0"]).split("sha256: ")[-1].strip()
    open_storage(str(tmp_path / "store")).put_bytes(
        json.dumps({"bundle_sha256": digest, "passed": True}).encode(),
        f"releases/serving-e2e/{digest}.json",
    )
    result: dict = {}
    with get_client(sync_client=True) as client:
        client.hello()  # the temporary API server starts once, here, not in two threads

    def run() -> None:
        result.update(promotion_flow("demo", "1.0.0", poll_interval_s=1, timeout_s=300))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    paused = []
    with get_client(sync_client=True) as client:
        while not paused and time.monotonic() < deadline and thread.is_alive():
            paused = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name={"any_": ["Paused"]}))
            )
            time.sleep(0.5)
    assert paused, f"the promotion flow never paused for approval ({result})"
    out = _ok(["approve", str(paused[0].id), "--by", "alice", "--comment", "ok"])
    assert "approved by alice" in out
    thread.join(120)
    assert result["promoted"] and result["approver"] == "alice"
    out = _ok(["history", "demo"])
    assert "production" in out and "alice" in out


def test_nightly_parity_flow(env, versions, fingerprint_of, tmp_path):
    """Every retained version is fetched, verified and re-checked; a damaged one fails it."""
    from ordinal.artifacts import open_storage
    from ordinal.release import Registry
    from pipelines.release.flows import nightly_parity

    storage = open_storage(str(tmp_path / "store"))
    registry = Registry(storage, [fingerprint_of["release"]], tracking_uri="")
    for version in ("1.0.0", "1.1.0"):
        registry.publish(versions[version])
    results = nightly_parity(report_dir=str(tmp_path / "reports"))
    assert sorted(results) == ["demo 1.0.0", "demo 1.1.0"]
    pages = sorted(p.suffix for p in (tmp_path / "reports").iterdir())
    assert pages == [".html", ".json"]
    assert all(r["passed"] for r in results.values())
    onnx = storage.local_path("releases/demo/1.1.0/fp32/model.onnx")
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\1")
    with pytest.raises(RuntimeError, match="demo 1.1.0"):
        nightly_parity()


def test_quarterly_drill_flow_and_schedules(env, versions, fingerprint_of, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from ordinal.artifacts import open_storage
    from ordinal.release import Registry
    from pipelines.release.flows import quarterly_rollback_drill
    from pipelines.release.schedules import deploy_release_schedules

    registry = Registry(
        open_storage(str(tmp_path / "store")), [fingerprint_of["release"]], tracking_uri=""
    )
    for version in ("1.0.0", "1.1.0"):
        registry.publish(versions[version])
    with pytest.raises(RuntimeError, match="rollback drill failed for demo"):
        quarterly_rollback_drill(report_dir=str(tmp_path / "drills"))
    report = json.loads(next((tmp_path / "drills").glob("*.json")).read_text())
    assert "needs 4" in report["demo"]["stages"]["select"]["detail"]
    for version in ("1.2.0", "1.3.0"):
        registry.publish(versions[version])
    assert quarterly_rollback_drill()["demo"]["version"] == "1.0.0"
    with get_client(sync_client=True) as client:
        pool = f"control-{tmp_path.name[-8:]}".lower().replace("_", "-")
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        # What an earlier version scheduled: the rollback drill alone, quarterly.
        from prefect import flow as prefect_flow

        from pipelines.release.schedules import RETIRED_DEPLOYMENTS, SOURCE_DIR

        prefect_flow.from_source(
            source=str(SOURCE_DIR), entrypoint="flows.py:quarterly_rollback_drill"
        ).deploy(
            name="quarterly",
            work_pool_name=pool,
            cron="0 5 1 1,4,7,10 *",
            print_next_steps=False,
            ignore_warnings=True,
        )
        assert client.read_deployment_by_name(RETIRED_DEPLOYMENTS[0])
        names = deploy_release_schedules(
            str(tmp_path / "store"), report_dir=str(tmp_path / "reports"), work_pool=pool
        )
        assert names == ["release-nightly-parity/nightly", "release-resilience/quarterly"]
        with pytest.raises(ObjectNotFound):  # an upgraded stack drills once a quarter
            client.read_deployment_by_name(RETIRED_DEPLOYMENTS[0])
        crons = {}
        for name in names:
            deployment = client.read_deployment_by_name(name)
            crons[name] = deployment.schedules[0].schedule.cron
            assert deployment.parameters["report_dir"] == str(tmp_path / "reports")
        assert crons == {
            "release-nightly-parity/nightly": "0 2 * * *",
            "release-resilience/quarterly": "0 5 1 1,4,7,10 *",
        }
