"""Blocks per environment from approved sources, rotation with rollback, and alerting."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from pipelines.stack import blocks, prefect_server, rotation
from pipelines.stack.ca import tls_context
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import pg_password, secret_path
from pipelines.stack.errors import BlockValidationError, RotationError
from pipelines.stack.sources import EnvSource, FileSource, SecretsManagerSource


def _file_source(tmp_path, environment: str, values: dict[str, str]) -> FileSource:
    folder = tmp_path / environment
    folder.mkdir(parents=True)
    for name, value in values.items():
        path = folder / name
        path.write_text(value)
        path.chmod(0o600)
    return FileSource(tmp_path)


def test_blocks_file_declares_each_environment() -> None:
    spec = blocks.load_blocks()
    assert {"dev", "staging", "prod"} <= set(spec.environments)


def test_file_source_refuses_world_readable_secret(tmp_path) -> None:
    source = _file_source(tmp_path, "dev", {"token": "x"})
    (tmp_path / "dev" / "token").chmod(0o644)
    with pytest.raises(BlockValidationError, match="readable by others"):
        source.get("dev", "token")


def test_env_source_names_variable_not_value(monkeypatch) -> None:
    source = EnvSource()
    monkeypatch.setenv("ORDINAL_SECRET_DEV_ALERT_WEBHOOK_TOKEN", "tok")
    assert source.get("dev", "alert-webhook-token") == "tok"
    with pytest.raises(BlockValidationError, match="ORDINAL_SECRET_DEV_MISSING"):
        source.get("dev", "missing")


def test_populate_dev_blocks_from_files(stack_config: StackConfig, tmp_path) -> None:
    values = {
        "mlflow-db-password": pg_password(stack_config, "mlflow"),
        "alert-webhook-token": f"tok-{uuid.uuid4().hex}",
        "tf-ssh-public-key": "ssh-ed25519 AAAA test",
    }
    saved = blocks.populate(stack_config, "dev", _file_source(tmp_path, "dev", values))
    assert "secret/dev-alert-webhook-token" in saved
    assert "ordinal-bucket-endpoint/dev-artifacts" in saved
    from prefect.blocks.system import Secret

    with prefect_server.client_settings(stack_config):
        assert Secret.load("dev-alert-webhook-token").get() == values["alert-webhook-token"]
        tf = blocks._block_classes()[1].load("dev-terraform")
        assert tf.variables["instance_type"] == "c6i.xlarge"
        assert tf.sensitive.get_secret_value()["tf-ssh-public-key"].startswith("ssh-ed25519")
    # The API does not hand secrets out unless asked, and never to an anonymous client.
    response = httpx.post(
        f"{stack_config.prefect_api_url}/block_documents/filter",
        json={},
        verify=tls_context(stack_config),
        timeout=10,
    )
    assert response.status_code == 401


def test_populate_from_secret_manager(stack_config: StackConfig, monkeypatch) -> None:
    import boto3

    from pipelines.stack.credentials import get_secret

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", get_secret(stack_config, "s3_access_key"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", get_secret(stack_config, "s3_secret_key"))
    manager = boto3.client(
        "secretsmanager", endpoint_url=stack_config.s3_url, region_name="us-east-1"
    )
    for name in ("mlflow-db-password", "alert-webhook-token", "tf-ssh-public-key"):
        manager.create_secret(Name=f"ordinal/dev/{name}", SecretString=f"sm-{name}")
    source = SecretsManagerSource(endpoint_url=stack_config.s3_url)
    saved = blocks.populate(stack_config, "dev", source)
    assert len(saved) == 5


def test_missing_secret_alerts_webhook_and_email(alerting, tmp_path) -> None:
    config, webhook, smtp = alerting
    source = _file_source(tmp_path, "dev", {"mlflow-db-password": "x"})
    with pytest.raises(BlockValidationError, match="secret file missing"):
        blocks.populate(config, "dev", source)
    (payload,) = webhook.received
    assert "block validation failed" in payload["text"]
    assert "#runbook-block-validation-failed" in payload["text"]
    assert payload["blocks"][0]["type"] == "section"
    (message,) = smtp.messages
    assert message["To"] == "oncall@example.invalid"
    assert "runbook-block-validation-failed" in message.get_payload()


def test_bucket_endpoint_is_validated_for_real(alerting, tmp_path) -> None:
    config, webhook, _ = alerting
    values = {
        "mlflow-db-password": "x",
        "alert-webhook-token": "y",
        "tf-ssh-public-key": "z",
        "artifacts-access-key-id": "AKIA",
        "artifacts-secret-access-key": "nope",
    }
    # staging's artefact bucket does not exist on this endpoint: HeadBucket must fail.
    with pytest.raises(BlockValidationError, match="bucket endpoint failed"):
        blocks.populate(config, "staging", _file_source(tmp_path, "staging", values))
    assert "ordinal-staging-mlflow-artifacts" in webhook.received[-1]["text"]


def _mlflow_healthy(config: StackConfig) -> bool:
    response = httpx.get(f"{config.mlflow_url}/health", verify=tls_context(config), timeout=10)
    return response.status_code == 200


def test_rotation_switches_to_a_validated_password(stack_config: StackConfig) -> None:
    old = pg_password(stack_config, "mlflow")
    result = rotation.rotate_db_password(stack_config, "mlflow")
    new = pg_password(stack_config, "mlflow")
    assert result.status == "rotated" and new != old
    assert rotation.login_works(stack_config, "mlflow", new)
    assert not rotation.login_works(stack_config, "mlflow", old)
    assert _mlflow_healthy(stack_config)
    assert (secret_path(stack_config, "pg_mlflow_password").stat().st_mode & 0o077) == 0


def test_failed_validation_rolls_back_and_alerts(alerting) -> None:
    config, webhook, smtp = alerting
    old = pg_password(config, "mlflow")
    seen: list[str] = []

    def reject(cfg: StackConfig, candidate: str) -> None:
        seen.append(candidate)
        raise RuntimeError("downstream consumer refused the new password")

    with pytest.raises(RotationError, match="step=validate"):
        rotation.rotate_db_password(config, "mlflow", validators=[reject])
    (candidate,) = seen
    assert pg_password(config, "mlflow") == old
    assert rotation.login_works(config, "mlflow", old)
    assert not rotation.login_works(config, "mlflow", candidate)
    assert _mlflow_healthy(config)
    assert "rolled back" in webhook.received[-1]["text"]
    assert "#runbook-secret-rotation-failed" in webhook.received[-1]["text"]
    assert "runbook-secret-rotation-failed" in smtp.messages[-1].get_payload()
    assert candidate not in webhook.received[-1]["text"]
    assert os.environ.get("PGPASSWORD") != candidate
