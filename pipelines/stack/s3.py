"""The S3-compatible store: a local ``moto_server`` or any S3 endpoint by configuration."""

from __future__ import annotations

import sys

import boto3
import httpx
from botocore.config import Config

from pipelines.stack import procs
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret

NAME = "s3"
ARTIFACT_BUCKET = "ordinal-mlflow-artifacts"
BACKUP_BUCKET = "ordinal-backups"
#: Datasets, models and reports of runs on the stack (``ordinal run --stack``).
DATA_BUCKET = "ordinal-data"
#: Released bundles and the release audit log (object lock: records are write-once).
RELEASES_BUCKET = "ordinal-releases"
REGION = "us-east-1"


def spec(config: StackConfig) -> procs.ProcessSpec:
    """``moto_server`` on loopback (state is in memory; backups must not rely on it)."""
    return procs.ProcessSpec(
        name=NAME,
        argv=[
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            config.host,
            "-p",
            str(config.port("s3")),
        ],
        env=procs.base_env(HOME=str(config.path("home"))),
    )


def client_env(config: StackConfig) -> dict[str, str]:
    """AWS variables a client (MLflow server, boto3) needs for the store."""
    return {
        "AWS_ACCESS_KEY_ID": get_secret(config, "s3_access_key"),
        "AWS_SECRET_ACCESS_KEY": get_secret(config, "s3_secret_key"),
        "AWS_DEFAULT_REGION": REGION,
        "MLFLOW_S3_ENDPOINT_URL": config.s3_url,
        "AWS_ENDPOINT_URL_S3": config.s3_url,
    }


def client(config: StackConfig):
    """A boto3 S3 client for the configured endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=config.s3_url,
        aws_access_key_id=get_secret(config, "s3_access_key"),
        aws_secret_access_key=get_secret(config, "s3_secret_key"),
        region_name=REGION,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def is_ready(config: StackConfig) -> bool:
    """Whether the endpoint answers."""
    return httpx.get(config.s3_url, timeout=3).status_code < 500


def ensure_buckets(config: StackConfig) -> None:
    """Create the artefact, data, releases and backup buckets (idempotent), all versioned.

    The backup bucket is created with object lock, and every new backup version is held in
    COMPLIANCE mode for ``backup_retention_days``: within that time no one, not even the
    stack's own credentials, can delete or overwrite a stored version (deleting a key only
    adds a delete marker). The releases bucket has object lock enabled too; the release
    audit log sets retention on each record it appends (``docs/release.md``).
    """
    s3 = client(config)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (ARTIFACT_BUCKET, DATA_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for bucket in (BACKUP_BUCKET, RELEASES_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    lock = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": config.backup_retention_days}},
    }
    current = s3.get_object_lock_configuration(Bucket=BACKUP_BUCKET)["ObjectLockConfiguration"]
    if not current.get("Rule"):  # set once: S3 may refuse changing it on a non-empty bucket
        s3.put_object_lock_configuration(Bucket=BACKUP_BUCKET, ObjectLockConfiguration=lock)


def data_storage_url(prefix: str = "") -> str:
    """The storage root of runs on the stack: ``s3://ordinal-data/{prefix}``."""
    return f"s3://{DATA_BUCKET}/{prefix}".rstrip("/")


def start(config: StackConfig, timeout: float = 60.0) -> None:
    """Start moto unless an external endpoint is configured; create the buckets."""
    if config.s3_endpoint is None:
        procs.start(config, spec(config))
        procs.wait_until(
            lambda: is_ready(config), timeout=timeout, what="s3", config=config, name=NAME
        )
    ensure_buckets(config)
