"""Encrypted logical backups of the Prefect and MLflow databases to the S3 store.

``pg_dump -Fc`` is streamed straight into the encryptor: plaintext never touches the disk
and never leaves the host (Prefect keeps its block encryption key in the same database, so
a plain dump would expose every secret). Each backup carries an encrypted manifest of row
counts and checksums taken from the very snapshot ``pg_dump`` used, which the restore drill
verifies against.

Recovery point objective: backups run hourly (``BACKUP_CRON``), so at most one hour of
control-plane state is lost; retention keeps ``backup_retention_days`` days and never fewer
than ``backup_keep_min`` backups.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.stack import postgres, s3
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret
from pipelines.stack.envelope import decrypt_stream, encrypt_stream
from pipelines.stack.errors import BackupError

BACKUP_CRON = "0 * * * *"
RPO = dt.timedelta(hours=1)
DATABASES = ("prefect", "mlflow")
PREFIX = "backups"


@dataclass(frozen=True)
class BackupRecord:
    """One stored backup."""

    database: str
    key: str
    manifest_key: str
    created: dt.datetime
    size: int


def backup_key(config: StackConfig) -> bytes:
    """The 256-bit backup key (kept in the stack's secrets, never in a database)."""
    return bytes.fromhex(get_secret(config, "backup_key"))


def table_manifest(cursor, schema: str = "public") -> dict[str, dict[str, object]]:
    """Row count and an order-independent checksum of every table in ``schema``.

    The checksum is the md5 of the sorted md5s of each row's text form, so it does not
    depend on physical row order (which a restore changes).
    """
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
    )
    tables = [row[0] for row in cursor.fetchall()]
    manifest: dict[str, dict[str, object]] = {}
    for table in tables:
        ident = f'"{schema}"."{table}"'
        cursor.execute(
            f"SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
            f"FROM (SELECT md5(t::text) AS h FROM {ident} t) s"
        )
        count, checksum = cursor.fetchone()
        manifest[table] = {"rows": int(count), "checksum": checksum}
    return manifest


def _encrypt_bytes(config: StackConfig, data: bytes, metadata: dict) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, backup_key(config), metadata)
    return out.getvalue()


def decrypt_bytes(config: StackConfig, data: bytes, name: str = "") -> bytes:
    """Decrypt a small encrypted object (a manifest) held in memory."""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, backup_key(config), name=name)
    return out.getvalue()


def take_backup(config: StackConfig, database: str, now: dt.datetime | None = None) -> BackupRecord:
    """Dump ``database``, encrypt it on the fly, upload it and its manifest; return the record."""
    import json

    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{PREFIX}/{database}/{stamp}.dump.enc"
    manifest_key = f"{PREFIX}/{database}/{stamp}.manifest.enc"
    conn = postgres.connect(config, database)
    conn.autocommit = False
    try:
        cur = conn.cursor()
        # One snapshot for the manifest and for pg_dump, so they describe the same data.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cur.fetchone()
        manifest = table_manifest(cur)
        work = config.path("backups", "tmp")
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work, suffix=".enc") as encrypted:
            dump = subprocess.Popen(
                [
                    str(postgres.bindir() / "pg_dump"),
                    "-Fc",
                    f"--snapshot={snapshot}",
                    "-d",
                    database,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=postgres.client_env(config),
            )
            assert dump.stdout is not None
            meta = {"database": database, "created": now.isoformat(), "format": "pg_dump -Fc"}
            encrypt_stream(dump.stdout, encrypted, backup_key(config), meta)
            stderr = dump.stderr.read().decode(errors="replace") if dump.stderr else ""
            if dump.wait() != 0:
                raise BackupError("pg_dump failed", database=database, stderr=stderr[-500:])
            encrypted.flush()
            size = encrypted.tell()
            encrypted.seek(0)
            client = s3.client(config)
            client.upload_fileobj(encrypted, s3.BACKUP_BUCKET, key)
        client.put_object(
            Bucket=s3.BACKUP_BUCKET,
            Key=manifest_key,
            Body=_encrypt_bytes(config, json.dumps(manifest).encode(), {"database": database}),
        )
    finally:
        conn.rollback()
        conn.close()
    return BackupRecord(database, key, manifest_key, now, size)


def list_backups(config: StackConfig, database: str) -> list[BackupRecord]:
    """Stored backups of ``database``, newest first."""
    client = s3.client(config)
    paginator = client.get_paginator("list_objects_v2")
    records = []
    for page in paginator.paginate(Bucket=s3.BACKUP_BUCKET, Prefix=f"{PREFIX}/{database}/"):
        for obj in page.get("Contents", []):
            name = obj["Key"]
            if not name.endswith(".dump.enc"):
                continue
            stamp = name.rsplit("/", 1)[1].removesuffix(".dump.enc")
            created = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
            records.append(
                BackupRecord(
                    database,
                    name,
                    name.removesuffix(".dump.enc") + ".manifest.enc",
                    created,
                    obj["Size"],
                )
            )
    return sorted(records, key=lambda r: r.created, reverse=True)


def prune(config: StackConfig, database: str, now: dt.datetime | None = None) -> list[str]:
    """Delete backups past retention, keeping at least ``backup_keep_min``; return keys."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=config.backup_retention_days)
    records = list_backups(config, database)
    doomed = [r for r in records[config.backup_keep_min :] if r.created < cutoff]
    client = s3.client(config)
    for record in doomed:
        for key in (record.key, record.manifest_key):
            client.delete_object(Bucket=s3.BACKUP_BUCKET, Key=key)
    return [r.key for r in doomed]


def check_rpo(config: StackConfig, database: str, now: dt.datetime | None = None) -> bool:
    """Whether the newest backup is younger than the recovery point objective."""
    now = now or dt.datetime.now(dt.UTC)
    records = list_backups(config, database)
    return bool(records) and now - records[0].created <= RPO


def fetch_plain(config: StackConfig, record: BackupRecord, dest: Path) -> dict:
    """Download, authenticate and decrypt a backup into ``dest`` (mode 0600).

    Raises
    ------
    BackupTamperedError
        When any byte of the object was changed; ``dest`` is removed then.
    """
    client = s3.client(config)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=dest.parent) as encrypted:
        client.download_fileobj(s3.BACKUP_BUCKET, record.key, encrypted)
        encrypted.seek(0)
        try:
            with dest.open("wb") as plain:
                dest.chmod(0o600)
                return decrypt_stream(encrypted, plain, backup_key(config), name=record.key)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


def fetch_manifest(config: StackConfig, record: BackupRecord) -> dict:
    """The decrypted manifest of a backup."""
    import json

    body = s3.client(config).get_object(Bucket=s3.BACKUP_BUCKET, Key=record.manifest_key)
    return json.loads(decrypt_bytes(config, body["Body"].read(), record.manifest_key))
