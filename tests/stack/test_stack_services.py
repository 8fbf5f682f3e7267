"""The five services are up, healthy, reachable only as intended, and report status."""

from __future__ import annotations

import json
import ssl
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from pipelines.stack import procs, s3, stack
from pipelines.stack.ca import tls_context
from pipelines.stack.cli import stack_app
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret

runner = CliRunner()
SECRET_NAMES = (
    "pg_superuser_password",
    "pg_prefect_password",
    "pg_mlflow_password",
    "prefect_api_auth",
    "backup_key",
    "s3_secret_key",
)


def _auth(config: StackConfig) -> tuple[str, str]:
    user, _, password = get_secret(config, "prefect_api_auth").partition(":")
    return user, password


def test_status_json_reports_every_service_healthy(stack_config: StackConfig) -> None:
    result = runner.invoke(stack_app, ["status", "--json", "--root", str(stack_config.root)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["services"]}
    assert set(stack.SERVICES) <= set(rows)
    assert any(name.startswith("worker-control") for name in rows)
    assert any(name.startswith("worker-compute") for name in rows)
    assert all(row["healthy"] for row in rows.values()), rows
    assert rows["prefect"]["url"] == stack_config.prefect_api_url
    assert rows["prefect"]["url"].startswith("https://127.0.0.1:")
    assert rows["mlflow"]["url"].startswith("https://127.0.0.1:")
    for name in SECRET_NAMES:
        assert get_secret(stack_config, name).split(":")[-1] not in result.output


def test_status_table_exit_code(stack_config: StackConfig) -> None:
    result = runner.invoke(stack_app, ["status", "--root", str(stack_config.root)])
    assert result.exit_code == 0
    assert "postgres" in result.output


def test_up_is_idempotent(stack_config: StackConfig) -> None:
    before = {name: procs.read_pid(stack_config, name) for name in stack.SERVICES}
    result = runner.invoke(stack_app, ["up", "--root", str(stack_config.root)])
    assert result.exit_code == 0, result.output
    after = {name: procs.read_pid(stack_config, name) for name in stack.SERVICES}
    assert before == after
    assert all(after.values())


@pytest.mark.parametrize("service", ["prefect", "mlflow"])
def test_plain_http_is_redirected_with_308(stack_config: StackConfig, service: str) -> None:
    port = stack_config.port(f"{service}_http")
    response = httpx.post(f"http://127.0.0.1:{port}/api/x?y=1", content=b"{}", timeout=10)
    assert response.status_code == 308
    https = stack_config.port(f"{service}_https")
    assert response.headers["location"] == f"https://127.0.0.1:{https}/api/x?y=1"


def test_private_ports_listen_on_loopback_only(stack_config: StackConfig) -> None:
    import psutil

    ours = set(stack_config.ports.values())
    listening = [
        c.laddr
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in ours
    ]
    assert {addr.port for addr in listening} == ours
    assert all(addr.ip == "127.0.0.1" for addr in listening)


def test_tls_certificate_is_issued_by_private_ca(stack_config: StackConfig) -> None:
    # Without the project's CA a client must refuse the certificate.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack_config.mlflow_url}/health", verify=True, timeout=10)
    ctx = ssl.create_default_context(cafile=str(stack_config.ca_cert))
    response = httpx.get(f"{stack_config.mlflow_url}/health", verify=ctx, timeout=10)
    assert response.status_code == 200
    assert response.headers.get("strict-transport-security")


@pytest.mark.parametrize(
    "auth", [None, ("ordinal", "wrong-password"), ("nobody", "x")], ids=["none", "wrong", "user"]
)
def test_prefect_api_rejects_wrong_or_missing_credentials(
    stack_config: StackConfig, auth: tuple[str, str] | None
) -> None:
    url = f"{stack_config.prefect_api_url}/flows/filter"
    response = httpx.post(url, json={}, auth=auth, verify=tls_context(stack_config), timeout=10)
    assert response.status_code == 401


def test_prefect_api_accepts_the_stack_credentials(stack_config: StackConfig) -> None:
    url = f"{stack_config.prefect_api_url}/flows/filter"
    response = httpx.post(
        url, json={}, auth=_auth(stack_config), verify=tls_context(stack_config), timeout=10
    )
    assert response.status_code == 200


def test_websocket_events_round_trip_through_proxy(stack_config: StackConfig) -> None:
    """Emit an event over ``/api/events/in`` and read it from ``/api/events/out`` (wss)."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient, PrefectEventSubscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    from pipelines.stack.prefect_server import client_settings

    name = f"ordinal.stack.test.{uuid.uuid4().hex[:8]}"

    async def round_trip() -> str:
        event_filter = EventFilter(event=EventNameFilter(name=[name]))
        async with PrefectEventSubscriber(filter=event_filter) as subscriber:
            async with PrefectEventsClient() as emitter:
                await emitter.emit(
                    Event(event=name, resource={"prefect.resource.id": "ordinal.test"})
                )
            received = await asyncio.wait_for(subscriber.__anext__(), timeout=60)
            return received.event

    with client_settings(stack_config):
        assert asyncio.run(round_trip()) == name


def test_mlflow_run_through_proxy_stores_artifacts_in_s3(
    stack_config: StackConfig, tmp_path, monkeypatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack_config.mlflow_url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack_config.ca_cert))
    artefact = tmp_path / "note.txt"
    artefact.write_text("hello")
    client = mlflow.MlflowClient(tracking_uri=stack_config.mlflow_url)
    experiment = client.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "qwk", 0.5)
    client.log_artifact(run.info.run_id, str(artefact))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics["qwk"] == 0.5
    bucket = s3.client(stack_config)
    keys = [
        obj["Key"] for obj in bucket.list_objects_v2(Bucket=s3.ARTIFACT_BUCKET).get("Contents", [])
    ]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/note.txt") for key in keys), keys


def test_no_secret_in_logs_or_config(stack_config: StackConfig) -> None:
    texts = [p.read_text(errors="replace") for p in stack_config.logs.glob("*.log")]
    texts.append(stack_config.config_file.read_text())
    texts.extend(p.read_text() for p in stack_config.path("run").glob("*"))
    for name in SECRET_NAMES:
        secret = get_secret(stack_config, name).split(":")[-1]
        assert all(secret not in text for text in texts), name
    mode = stack_config.secrets_dir.stat().st_mode & 0o777
    assert mode == 0o700
    assert all((p.stat().st_mode & 0o077) == 0 for p in stack_config.secrets_dir.iterdir())


def test_resident_memory_under_budget(stack_config: StackConfig) -> None:
    assert 100 * 2**20 < stack.resident_memory(stack_config) < 2 * 2**30
