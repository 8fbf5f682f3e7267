"""Replication rehearsal: a canary written to the data bucket must arrive, intact, in DR.

On AWS, S3 replicates by itself and the rehearsal waits for the replica. The emulator
(moto) only *stores* the replication configuration and never copies anything, so there
the rehearsal performs the copy itself (``mode="copy"``) and says so in its report. In both
modes it verifies, on the DR side, the SHA-256 checksum of the bytes and the version ids
(the replica is a version of its own in the versioned DR bucket and names the source
version it came from), and reports the elapsed time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from pipelines.provision.errors import ProvisionError

__all__ = ["EMULATOR_NOTE", "ReplicationError", "rehearse_replication"]

EMULATOR_NOTE = (
    "The emulator only stores the replication configuration; it does not replicate. "
    "This rehearsal copied the canary to the DR bucket itself, then verified it there."
)


class ReplicationError(ProvisionError):
    """The canary did not reach the DR bucket intact, or replication is not configured."""


def rehearse_replication(
    s3: Any,
    s3_dr: Any,
    bucket: str,
    dr_bucket: str,
    mode: str = "copy",
    prefix: str = "backups/replication-rehearsal/",
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Write a canary, get it to DR (copy or wait), verify checksum and version ids.

    Parameters
    ----------
    s3, s3_dr : botocore clients
        Clients for the primary and the DR region.
    mode : str
        ``copy`` on the emulator (the rehearsal copies), ``wait`` on AWS (S3 replicates).
    """
    if mode not in ("copy", "wait"):
        raise ValueError(f"mode must be copy or wait, got {mode!r}")
    started = time.monotonic()
    config = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    targets = [
        r["Destination"]["Bucket"] for r in config.get("Rules", []) if r.get("Status") == "Enabled"
    ]
    if not any(t.split(":::")[-1] == dr_bucket for t in targets):
        raise ReplicationError(
            "no enabled replication rule targets the DR bucket",
            bucket=bucket,
            dr_bucket=dr_bucket,
            targets=targets,
        )
    body = b"ordinal replication canary " + secrets.token_bytes(32)
    digest = hashlib.sha256(body).hexdigest()
    key = f"{prefix}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[:12]}.bin"
    put = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest})
    source_version = put["VersionId"]

    if mode == "copy":
        original = s3.get_object(Bucket=bucket, Key=key, VersionId=source_version)
        s3_dr.put_object(
            Bucket=dr_bucket,
            Key=key,
            Body=original["Body"].read(),
            Metadata={**original.get("Metadata", {}), "source-version-id": source_version},
        )
    else:
        deadline = time.monotonic() + timeout
        while True:
            head = s3.head_object(Bucket=bucket, Key=key, VersionId=source_version)
            if head.get("ReplicationStatus") == "COMPLETED":
                break
            if head.get("ReplicationStatus") == "FAILED" or time.monotonic() > deadline:
                raise ReplicationError(
                    "S3 did not replicate the canary",
                    key=key,
                    status=head.get("ReplicationStatus"),
                    timeout_s=timeout,
                )
            time.sleep(5)

    replica = s3_dr.get_object(Bucket=dr_bucket, Key=key)
    replica_bytes = replica["Body"].read()
    replica_digest = hashlib.sha256(replica_bytes).hexdigest()
    dr_version = replica.get("VersionId")
    versions = s3_dr.list_object_versions(Bucket=dr_bucket, Prefix=key).get("Versions", [])
    problems = []
    if replica_digest != digest:
        problems.append(f"checksum differs: {replica_digest} != {digest}")
    if not dr_version or dr_version == "null":
        problems.append("the DR object has no version id (is DR versioning on?)")
    elif dr_version not in [v["VersionId"] for v in versions]:
        problems.append(f"DR version {dr_version} is not listed")
    recorded = replica.get("Metadata", {}).get("source-version-id")
    if mode == "copy" and recorded != source_version:
        problems.append(f"the replica names source version {recorded}, not {source_version}")
    source = s3.head_object(Bucket=bucket, Key=key, VersionId=source_version)
    if source.get("Metadata", {}).get("sha256") != digest:
        problems.append("the source version changed")
    if problems:
        raise ReplicationError("replication rehearsal failed", key=key, problems=problems)
    return {
        "bucket": bucket,
        "dr_bucket": dr_bucket,
        "key": key,
        "sha256": digest,
        "source_version_id": source_version,
        "dr_version_id": dr_version,
        "bytes": len(body),
        "mode": mode,
        "elapsed_seconds": round(time.monotonic() - started, 3),
        "note": EMULATOR_NOTE
        if mode == "copy"
        else "S3 replicated the canary (ReplicationStatus COMPLETED).",
    }
