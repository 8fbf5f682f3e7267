"""Encrypted backups, retention, tamper refusal and restore drills against real servers."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import uuid

import httpx
import pytest
from psycopg2 import sql

from pipelines.stack import backup, postgres, prefect_server, restore, s3
from pipelines.stack.ca import tls_context
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret
from pipelines.stack.envelope import CHUNK, decrypt_stream, encrypt_stream
from pipelines.stack.errors import BackupTamperedError, RestoreVerificationError


# -- the envelope, without servers -------------------------------------------------------
@pytest.fixture
def sealed() -> tuple[bytes, bytes, bytes]:
    key = os.urandom(32)
    plain = os.urandom(2 * CHUNK + 1234)
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), out, key, {"database": "x"})
    return key, plain, out.getvalue()


def _open(key: bytes, blob: bytes) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, key)
    return out.getvalue()


def test_envelope_round_trip(sealed) -> None:
    key, plain, blob = sealed
    assert _open(key, blob) == plain
    assert plain[:64] not in blob


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # last byte flipped
        lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x80]) + b[len(b) // 2 + 1 :],
        lambda b: b[: len(b) - 700],  # truncated
        lambda b: b[: CHUNK + 200],  # cut after the first chunk
        lambda b: b.replace(b'"database": "x"', b'"database": "y"'),  # header swapped
        lambda b: b + b"extra",
    ],
    ids=["last-byte", "middle-byte", "truncated", "cut", "header", "appended"],
)
def test_envelope_refuses_tampering(sealed, damage) -> None:
    key, _, blob = sealed
    with pytest.raises(BackupTamperedError):
        _open(key, damage(blob))


def test_envelope_refuses_another_key(sealed) -> None:
    _, _, blob = sealed
    with pytest.raises(BackupTamperedError, match="another key"):
        _open(os.urandom(32), blob)


# -- real servers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secret_value(stack_config: StackConfig) -> str:
    """A Prefect Secret block and a flow run, so backups hold both."""
    from prefect.blocks.system import Secret

    value = f"s3cr3t-{uuid.uuid4().hex}"

    with prefect_server.client_settings(stack_config):
        Secret(value=value).save("drill-probe", overwrite=True)
    # A flow run to read back through the drill server (plain API: no flow code needed).
    user, _, password = get_secret(stack_config, "prefect_api_auth").partition(":")
    with httpx.Client(
        base_url=stack_config.prefect_api_url + "/",
        auth=(user, password),
        verify=tls_context(stack_config),
        timeout=30,
    ) as client:
        flow = client.post("flows/", json={"name": "stack-drill-probe"})
        flow.raise_for_status()
        run = client.post("flow_runs/", json={"flow_id": flow.json()["id"], "name": "probe"})
        run.raise_for_status()
    return value


def _prefect_encryption_key(config: StackConfig) -> str:
    conn = postgres.connect(config, "prefect")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT value::text FROM configuration WHERE key = 'ENCRYPTION_KEY'")
            (value,) = cur.fetchone()
    finally:
        conn.close()
    return value.split('"')[-2]  # {"fernet_key": "..."}


def test_backup_never_holds_a_secret_in_plain_text(
    stack_config: StackConfig, secret_value: str
) -> None:
    record = backup.take_backup(stack_config, "prefect")
    raw = s3.client(stack_config).get_object(Bucket=s3.BACKUP_BUCKET, Key=record.key)
    blob = raw["Body"].read()
    fernet_key = _prefect_encryption_key(stack_config)
    # A plain dump does expose Prefect's block key: the check below could fail.
    plain = subprocess.run(
        [str(postgres.bindir() / "pg_dump"), "-Fc", "-Z0", "-d", "prefect"],
        env=postgres.client_env(stack_config),
        capture_output=True,
        check=True,
    ).stdout
    assert fernet_key.encode() in plain
    for needle in (fernet_key, secret_value, "stack-drill-probe", "block_document"):
        assert needle.encode() not in blob, needle
    assert not list(stack_config.path("backups", "tmp").iterdir())


def test_restore_drill_verifies_and_reads_back_through_prefect(
    stack_config: StackConfig, secret_value: str
) -> None:
    record = backup.take_backup(stack_config, "prefect")
    report = restore.restore_drill(
        stack_config, "prefect", record=record, secret_block="secret/drill-probe"
    )
    assert report.tables > 10 and report.rows > 0
    assert report.flow_run_read is not None
    assert report.secret_read is True
    assert report.within_objective and 0 < report.elapsed < stack_config.drill_max_seconds
    assert set(report.steps) == {"manifest", "restore", "verify", "boot_and_read"}
    assert list(stack_config.path("drills").glob("*-prefect.json"))
    _assert_no_staging(stack_config)


def _assert_no_staging(config: StackConfig) -> None:
    conn = postgres.connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'drill_%'")
            assert cur.fetchall() == []
    finally:
        conn.close()
    assert not list(config.path("restore", "tmp").glob("*"))


@pytest.fixture(scope="module")
def tiny_db(stack_config: StackConfig) -> str:
    """A small database with known rows (cheap backups for retention and failure tests)."""
    name = "tinysource"
    conn = postgres.connect(stack_config)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    conn = postgres.connect(stack_config, name)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE item (id int PRIMARY KEY, label text)")
            cur.execute("INSERT INTO item SELECT g, 'row ' || g FROM generate_series(1, 500) g")
    finally:
        conn.close()
    return name


def test_tampered_backup_is_refused_at_restore_and_alerts(alerting, tiny_db: str) -> None:
    config, webhook, smtp = alerting
    record = backup.take_backup(config, tiny_db)
    client = s3.client(config)
    blob = bytearray(client.get_object(Bucket=s3.BACKUP_BUCKET, Key=record.key)["Body"].read())
    blob[len(blob) // 2] ^= 0x01
    bad_key = record.key.replace(".dump.enc", "-tampered.dump.enc")
    client.put_object(Bucket=s3.BACKUP_BUCKET, Key=bad_key, Body=bytes(blob))
    tampered = backup.BackupRecord(tiny_db, bad_key, record.manifest_key, record.created, 0)
    try:
        with pytest.raises(BackupTamperedError):
            restore.restore_drill(config, tiny_db, record=tampered, boot_prefect=False)
    finally:
        client.delete_object(Bucket=s3.BACKUP_BUCKET, Key=bad_key)
    _assert_no_staging(config)
    assert webhook.received and "runbook-restore-drill" in webhook.received[-1]["text"]
    assert smtp.messages and "BackupTamperedError" in smtp.messages[-1].get_payload()


def test_drill_detects_a_restore_that_differs(alerting, tiny_db: str, monkeypatch) -> None:
    config, webhook, _ = alerting
    record = backup.take_backup(config, tiny_db)
    real = backup.fetch_manifest

    def skewed(cfg, rec):
        manifest = real(cfg, rec)
        manifest["item"]["rows"] = 499
        return manifest

    monkeypatch.setattr(backup, "fetch_manifest", skewed)
    with pytest.raises(RestoreVerificationError, match="item"):
        restore.restore_drill(config, tiny_db, record=record, boot_prefect=False)
    assert "RestoreVerificationError" in webhook.received[-1]["text"]


def test_small_drill_passes_and_reports(stack_config: StackConfig, tiny_db: str) -> None:
    backup.take_backup(stack_config, tiny_db)
    report = restore.restore_drill(stack_config, tiny_db, boot_prefect=False)
    assert report.tables == 1 and report.rows == 500


def test_retention_keeps_minimum_and_recent(stack_config: StackConfig, tiny_db: str) -> None:
    now = dt.datetime.now(dt.UTC)
    for days in (30, 20, 10, 9, 8):
        backup.take_backup(stack_config, tiny_db, now=now - dt.timedelta(days=days))
    backup.take_backup(stack_config, tiny_db, now=now)
    removed = backup.prune(stack_config, tiny_db, now=now)
    kept = backup.list_backups(stack_config, tiny_db)
    cutoff = now - dt.timedelta(days=stack_config.backup_retention_days)
    assert all(r.created >= cutoff for r in kept[stack_config.backup_keep_min :])
    assert len(kept) >= stack_config.backup_keep_min
    assert removed and all("tampered" not in key for key in removed)
    assert backup.check_rpo(stack_config, tiny_db, now=now)
    assert not backup.check_rpo(stack_config, tiny_db, now=now + dt.timedelta(hours=2))


def test_scheduled_backup_flow_runs_on_the_control_pool(stack_config: StackConfig) -> None:
    import asyncio

    from pipelines.stack import operations, smoke

    async def read_schedules() -> dict[str, list]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            out = {}
            for function, name, _ in operations.OPERATIONS:
                deployment = await client.read_deployment_by_name(
                    f"{operations.FLOW_NAMES[function]}/{name}"
                )
                assert deployment.work_pool_name == "control"
                assert deployment.work_queue_name == "critical"
                out[name] = [s.schedule.cron for s in deployment.schedules]
            return out

    before = {r.key for r in backup.list_backups(stack_config, "mlflow")}
    with prefect_server.client_settings(stack_config):
        schedules = asyncio.run(read_schedules())
        _, state, _, message = asyncio.run(
            smoke._run_and_wait(
                "stack-backup/hourly",
                {"root": str(stack_config.root), "databases": ["mlflow"]},
                timeout=300,
            )
        )
    assert schedules["hourly"] == [backup.BACKUP_CRON]
    assert schedules["on-demand"] == []
    assert state == "COMPLETED", message
    after = {r.key for r in backup.list_backups(stack_config, "mlflow")}
    assert after - before


def test_slow_drill_raises_an_alert(alerting, tiny_db: str) -> None:
    config, webhook, smtp = alerting
    strict = config.model_copy(update={"drill_max_seconds": 0.001})
    report = restore.restore_drill(strict, tiny_db, boot_prefect=False)
    assert not report.within_objective
    assert "objective" in webhook.received[-1]["text"]
    assert "#runbook-restore-drill-failed-or-slow" in webhook.received[-1]["text"]
    assert "restore drill took" in smtp.messages[-1]["Subject"]


def test_stored_backups_are_held_by_object_lock(stack_config: StackConfig, tiny_db: str) -> None:
    """docs/control-plane.md's claim, checked on the S3 server (moto enforces lock deletes):
    every backup version is in COMPLIANCE mode until the retention ends and cannot be deleted,
    not even with the stack's own credentials; deleting the key only hides it."""
    from botocore.exceptions import ClientError

    from pipelines.stack import s3

    record = backup.take_backup(stack_config, tiny_db)
    client = s3.client(stack_config)
    head = client.head_object(Bucket=s3.BACKUP_BUCKET, Key=record.key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    held = head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.UTC)
    days = stack_config.backup_retention_days
    assert dt.timedelta(days=days - 1) < held <= dt.timedelta(days=days, minutes=1)
    version = head["VersionId"]
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=s3.BACKUP_BUCKET, Key=record.key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    client.delete_object(Bucket=s3.BACKUP_BUCKET, Key=record.key)  # a delete marker only
    kept = client.head_object(Bucket=s3.BACKUP_BUCKET, Key=record.key, VersionId=version)
    assert kept["ContentLength"] == record.size
