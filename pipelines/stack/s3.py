"""The S3-compatible store: a local ``moto_server`` or any S3 endpoint by configuration.

Its buckets are made by the project's storage module (``tofu/modules/storage``, through
the root ``tofu/envs/emulated/stack``), the same module a real account's platform applies;
the Terraform state lives in the store itself (``s3://ordinal-tfstate/stack/storage.tfstate``,
with its lock file).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import time
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.provision.errors import ToolError
from pipelines.provision.runner import TOFU_ROOT, Backend, TofuRunner
from pipelines.stack import procs
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret
from pipelines.stack.errors import StackError
from pipelines.stack.files import atomic_write

NAME = "s3"
ARTIFACT_BUCKET = "ordinal-mlflow-artifacts"
BACKUP_BUCKET = "ordinal-backups"
#: Datasets, models and reports of runs on the stack (``ordinal run --stack``).
DATA_BUCKET = "ordinal-data"
#: Released bundles and the release audit log (object lock: records are write-once).
RELEASES_BUCKET = "ordinal-releases"
REGION = "us-east-1"
#: Region of the data bucket's disaster-recovery copy (``ordinal-data-dr``).
DR_REGION = "us-west-2"
NAME_PREFIX = "ordinal"
#: Default GOVERNANCE retention of the data and MLflow artefact buckets.
GOVERNANCE_RETENTION_DAYS = 7
#: COMPLIANCE retention of every version in the releases bucket.
RELEASE_RETENTION_DAYS = 7
#: Terraform state of the stack's storage (in the stack's own S3, with its lock file).
STATE_BUCKET = "ordinal-tfstate"
STATE_KEY = "stack/storage.tfstate"
STACK_ROOT = "envs/emulated/stack"
# What the fingerprint covers: the code an apply of STACK_ROOT runs.
_CODE = ("modules/storage", STACK_ROOT)


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


def _credentials(config: StackConfig) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": get_secret(config, "s3_access_key"),
        "AWS_SECRET_ACCESS_KEY": get_secret(config, "s3_secret_key"),
        "AWS_DEFAULT_REGION": REGION,
    }


def storage_variables(config: StackConfig) -> dict[str, Any]:
    """Inputs of ``envs/emulated/stack`` for this stack (no secrets)."""
    return {
        "endpoint": config.s3_url,
        "region": REGION,
        "dr_region": DR_REGION,
        "name_prefix": NAME_PREFIX,
        "governance_retention_days": GOVERNANCE_RETENTION_DAYS,
        "backup_retention_days": config.backup_retention_days,
        "release_retention_days": RELEASE_RETENTION_DAYS,
    }


def fingerprint(variables: dict[str, Any]) -> str:
    """SHA-256 of the storage module, the stack root and ``variables``.

    Kept in the state (an output) by every apply: an equal fingerprint means the code and
    the inputs are those the state was applied with.
    """
    digest = hashlib.sha256()
    for folder in _CODE:
        base = TOFU_ROOT / folder
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if not path.is_file() or any(p.startswith(".terraform") for p in rel.parts):
                continue
            if "tests" in rel.parts or path.suffix == ".md":  # they change no resource
                continue
            digest.update(f"{folder}/{rel.as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    digest.update(json.dumps(variables, sort_keys=True).encode())
    return digest.hexdigest()


def _runner(config: StackConfig) -> TofuRunner:
    return TofuRunner(
        STACK_ROOT,
        config.root / "tofu-storage",
        Backend(STATE_BUCKET, STATE_KEY, REGION, config.s3_url),
        env=_credentials(config),
    )


def applied_state(config: StackConfig) -> dict[str, Any] | None:
    """The storage root's Terraform state as stored in the stack's S3 (None: never applied)."""
    s3 = client(config)
    try:
        body = s3.get_object(Bucket=STATE_BUCKET, Key=STATE_KEY)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
            return None
        raise
    return json.loads(body)


def storage_outputs(config: StackConfig) -> dict[str, Any]:
    """Outputs of the applied storage root: buckets, locks, lifecycle tiers, fingerprint."""
    state = applied_state(config)
    if state is None:
        raise StackError(
            "the stack's storage was never applied", state=f"s3://{STATE_BUCKET}/{STATE_KEY}"
        )
    return {name: out["value"] for name, out in state.get("outputs", {}).items()}


def _ensure_state_bucket(s3: Any) -> set[str]:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if STATE_BUCKET not in existing:
        s3.create_bucket(Bucket=STATE_BUCKET)
        existing.add(STATE_BUCKET)
    s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return existing


def ensure_buckets(config: StackConfig) -> dict[str, Any]:
    """Apply the storage module (``tofu/envs/emulated/stack``) unless the state is current.

    The buckets, their versioning, object lock and lifecycle are the module's: the data
    bucket (GOVERNANCE by default, lifecycle per prefix of the data layer, replicated to a
    DR bucket), the MLflow artefact bucket (GOVERNANCE), the backup bucket (every version
    held in COMPLIANCE mode for ``backup_retention_days``: no one, not even the stack's own
    credentials, can delete or overwrite a stored version) and the releases bucket
    (COMPLIANCE; the release audit log also sets retention on each record it appends).

    Idempotent and quick when nothing changed: the state (in the stack's S3, key
    ``stack/storage.tfstate``, locked with its lock file) records the fingerprint of the
    code and inputs it was applied with; when that matches and every bucket it names
    exists, nothing runs. Otherwise ``apply`` runs (about a minute: the AWS provider waits
    for S3 lifecycle configurations to settle).

    Returns
    -------
    dict
        ``applied`` (bool), ``reason``, ``seconds``; also written to
        ``<root>/tofu-storage/last-up.json``.
    """
    started = time.monotonic()
    s3 = client(config)
    existing = _ensure_state_bucket(s3)
    variables = storage_variables(config)
    digest = fingerprint(variables)
    state = applied_state(config)
    outputs = {k: v["value"] for k, v in (state or {}).get("outputs", {}).items()}
    names = [
        *outputs.get("buckets", {}).values(),
        outputs.get("dr_bucket"),
        outputs.get("log_bucket"),
    ]
    if state is None:
        reason = "no state"
        ours = {f"{NAME_PREFIX}-{k}" for k in ("data", "mlflow-artifacts", "backups", "releases")}
        if ours & existing:
            raise StackError(
                "the stack's buckets exist but no Terraform state names them (made by an older "
                "`stack up`?): stop the stack (`ordinal stack down`; moto forgets its buckets) "
                "and start it again, or import them into the state",
                buckets=sorted(ours & existing),
                state=f"s3://{STATE_BUCKET}/{STATE_KEY}",
            )
    elif outputs.get("fingerprint") != digest:
        reason = "module code or inputs changed"
    elif not all(n and n in existing for n in names):
        reason = "a bucket named in the state is missing"
    else:
        reason = "state current"
    report: dict[str, Any] = {"applied": reason != "state current", "reason": reason}
    if report["applied"]:
        runner = _runner(config)
        copy = runner.work_dir / "tofu"
        if copy.exists():  # a work copy of older code: take the checkout's again
            shutil.rmtree(copy)
        try:
            runner.apply({**variables, "fingerprint": digest})
        except ToolError as exc:
            raise StackError("applying the stack's storage module failed", error=str(exc)) from exc
    report["seconds"] = round(time.monotonic() - started, 3)
    atomic_write(config.root / "tofu-storage" / "last-up.json", json.dumps(report, indent=2))
    return report


def data_storage_url(prefix: str = "") -> str:
    """The storage root of runs on the stack: ``s3://ordinal-data/{prefix}``."""
    return f"s3://{DATA_BUCKET}/{prefix}".rstrip("/")


# Storage applies started by ``start(..., background=True)``, by stack root.
_APPLYING: dict[str, tuple[threading.Thread, dict[str, Any]]] = {}


def start(config: StackConfig, timeout: float = 60.0, *, background: bool = False) -> None:
    """Start moto unless an external endpoint is configured; apply the storage module.

    With ``background``, the apply (about a minute when needed, most of it the AWS provider
    waiting for lifecycle rules to settle) runs in a thread while the caller starts other
    services; :func:`wait_storage` joins it and raises what it raised.
    """
    if config.s3_endpoint is None:
        procs.start(config, spec(config))
        procs.wait_until(
            lambda: is_ready(config), timeout=timeout, what="s3", config=config, name=NAME
        )
    if not background:
        ensure_buckets(config)
        return
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = ensure_buckets(config)
        except BaseException as exc:  # re-raised by wait_storage
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="stack-storage-apply", daemon=True)
    _APPLYING[str(config.root)] = (thread, outcome)
    thread.start()


def wait_storage(config: StackConfig, timeout: float = 900.0) -> dict[str, Any] | None:
    """Wait for a background storage apply of this stack; None when none was started."""
    entry = _APPLYING.pop(str(config.root), None)
    if entry is None:
        return None
    thread, outcome = entry
    thread.join(timeout)
    if thread.is_alive():
        raise StackError("the stack's storage apply did not finish", timeout_s=timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]
