"""The stack's S3 is made by the storage module (``tofu/modules/storage``), and it holds.

``stack up`` applied ``tofu/envs/emulated/stack`` with real Terraform against the stack's
own ``moto_server`` (the emulated boundary: no cloud). moto enforces versioning and
object-lock deletes (COMPLIANCE, GOVERNANCE and its bypass), so the lock tests here are
real. It only stores lifecycle rules without acting on them, so those are read back from
the store and compared with the tiers the module declares.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from botocore.exceptions import ClientError

from pipelines.stack import s3
from pipelines.stack.config import StackConfig

STACK_BUCKETS = {
    "data": s3.DATA_BUCKET,
    "mlflow-artifacts": s3.ARTIFACT_BUCKET,
    "backups": s3.BACKUP_BUCKET,
    "releases": s3.RELEASES_BUCKET,
}


@pytest.fixture(scope="module")
def outputs(stack_config: StackConfig) -> dict:
    return s3.storage_outputs(stack_config)


def _denied(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


def test_the_stack_buckets_come_from_the_storage_module(stack_config, outputs) -> None:
    assert outputs["buckets"] == STACK_BUCKETS
    assert outputs["data_bucket"] == s3.DATA_BUCKET
    # The state is in the stack's own S3, applied with this code and these inputs.
    assert outputs["fingerprint"] == s3.fingerprint(s3.storage_variables(stack_config))
    backend = (stack_config.root / "tofu-storage" / "backend.hcl").read_text()
    assert f'bucket = "{s3.STATE_BUCKET}"' in backend and "use_lockfile = true" in backend
    client = s3.client(stack_config)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3.STATE_BUCKET)["Contents"]]
    assert s3.STATE_KEY in keys
    assert f"{s3.STATE_KEY}.tflock" not in keys  # the lock is released after the apply
    for role, bucket in STACK_BUCKETS.items():
        assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
        tags = {t["Key"]: t["Value"] for t in client.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags["ordinal:managed-by"] == "ordinal", bucket
        lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        retention = lock["Rule"]["DefaultRetention"]
        assert (retention["Mode"], retention["Days"]) == (
            outputs["locks"][role]["mode"],
            outputs["locks"][role]["days"],
        ), bucket
    # COMPLIANCE for backups and released bundles, GOVERNANCE for the rest.
    assert {role: lock["mode"] for role, lock in outputs["locks"].items()} == {
        "data": "GOVERNANCE",
        "mlflow-artifacts": "GOVERNANCE",
        "backups": "COMPLIANCE",
        "releases": "COMPLIANCE",
    }
    assert outputs["locks"]["backups"]["days"] == stack_config.backup_retention_days
    assert outputs["compliance_prefixes"] == ["datasets/raw/", "releases/"]
    dr = s3.client(stack_config)
    assert dr.get_bucket_versioning(Bucket=outputs["dr_bucket"])["Status"] == "Enabled"
    replication = client.get_bucket_replication(Bucket=s3.DATA_BUCKET)["ReplicationConfiguration"]
    assert replication["Rules"][0]["Destination"]["Bucket"].endswith(outputs["dr_bucket"])


def test_a_compliance_locked_raw_version_cannot_be_deleted(stack_config) -> None:
    client = s3.client(stack_config)
    key = f"datasets/raw/lock-{uuid.uuid4().hex[:8]}/v1/data.csv"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    put = client.put_object(
        Bucket=s3.DATA_BUCKET,
        Key=key,
        Body=b"text,label\ngood,4\n",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    version = put["VersionId"]
    assert client.head_object(Bucket=s3.DATA_BUCKET, Key=key)["ObjectLockMode"] == "COMPLIANCE"
    # Not even a governance bypass removes a COMPLIANCE version.
    for bypass in (False, True):
        code = _denied(
            client.delete_object,
            Bucket=s3.DATA_BUCKET,
            Key=key,
            VersionId=version,
            BypassGovernanceRetention=bypass,
        )
        assert code == "AccessDenied"
    client.delete_object(Bucket=s3.DATA_BUCKET, Key=key)  # only a delete marker
    kept = client.get_object(Bucket=s3.DATA_BUCKET, Key=key, VersionId=version)
    assert kept["Body"].read() == b"text,label\ngood,4\n"


def test_a_governance_version_needs_the_bypass(stack_config) -> None:
    client = s3.client(stack_config)
    key = f"models/onnx/lock-{uuid.uuid4().hex[:8]}/fp32/model.onnx"
    version = client.put_object(Bucket=s3.DATA_BUCKET, Key=key, Body=b"onnx")["VersionId"]
    head = client.head_object(Bucket=s3.DATA_BUCKET, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"  # the bucket's default retention
    held = head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=6) < held <= dt.timedelta(days=s3.GOVERNANCE_RETENTION_DAYS)
    code = _denied(client.delete_object, Bucket=s3.DATA_BUCKET, Key=key, VersionId=version)
    assert code == "AccessDenied"
    client.delete_object(
        Bucket=s3.DATA_BUCKET, Key=key, VersionId=version, BypassGovernanceRetention=True
    )
    versions = client.list_object_versions(Bucket=s3.DATA_BUCKET, Prefix=key).get("Versions", [])
    assert versions == []


def test_a_released_bundle_is_held_in_compliance_mode(stack_config) -> None:
    client = s3.client(stack_config)
    key = f"bundles/lock-{uuid.uuid4().hex[:8]}/1.0.0/metadata.json"
    version = client.put_object(Bucket=s3.RELEASES_BUCKET, Key=key, Body=b"{}")["VersionId"]
    assert client.head_object(Bucket=s3.RELEASES_BUCKET, Key=key)["ObjectLockMode"] == "COMPLIANCE"
    code = _denied(
        client.delete_object,
        Bucket=s3.RELEASES_BUCKET,
        Key=key,
        VersionId=version,
        BypassGovernanceRetention=True,
    )
    assert code == "AccessDenied"


def _expected_rule(prefix: str, tier: dict, rule_id: str) -> dict:
    """The S3 lifecycle rule a tier declares (what the module's dynamic blocks must make)."""
    rule: dict = {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}}
    transitions = [
        {"Days": tier[k], "StorageClass": cls}
        for k, cls in (("warm_days", "STANDARD_IA"), ("archive_days", "GLACIER"))
        if tier.get(k)
    ]
    if transitions:
        rule["Transitions"] = transitions
    if tier.get("expire_days"):
        rule["Expiration"] = {"Days": tier["expire_days"]}
    if tier.get("noncurrent_days"):
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": tier["noncurrent_days"]}
    return rule


def _as_stored(rule: dict) -> dict:
    out = {k: rule[k] for k in ("ID", "Status") if k in rule}
    out["Filter"] = {"Prefix": rule["Filter"]["Prefix"]}
    if rule.get("Transitions"):
        out["Transitions"] = sorted(  # S3 keeps no order among a rule's transitions
            ({"Days": t["Days"], "StorageClass": t["StorageClass"]} for t in rule["Transitions"]),
            key=lambda t: t["Days"],
        )
    if rule.get("Expiration", {}).get("Days"):
        out["Expiration"] = {"Days": rule["Expiration"]["Days"]}
    if rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"):
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        }
    return out


def test_lifecycle_rules_are_those_the_module_declares(stack_config, outputs) -> None:
    tiers, ids = outputs["lifecycle_tiers"], outputs["lifecycle_rule_ids"]
    stored = s3.client(stack_config).get_bucket_lifecycle_configuration(Bucket=s3.DATA_BUCKET)
    rules = stored["Rules"]
    by_prefix = {r["Filter"]["Prefix"]: r for r in rules if r.get("Filter", {}).get("Prefix")}
    assert set(by_prefix) == set(tiers)
    for prefix, tier in tiers.items():
        assert _as_stored(by_prefix[prefix]) == _expected_rule(prefix, tier, ids[prefix]), prefix
    # The hot -> warm -> archived tiers of raw data, as variables.tf declares them.
    assert (
        tiers["datasets/raw/"]["warm_days"] == 30 and tiers["datasets/raw/"]["archive_days"] == 180
    )
    (abort,) = [r for r in rules if r["ID"] == "abort-incomplete-uploads"]
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert len(rules) == len(tiers) + 1


def test_a_second_up_does_not_apply_again(stack_config) -> None:
    report = s3.ensure_buckets(stack_config)
    assert report["applied"] is False and report["reason"] == "state current"
    assert report["seconds"] < 5
    last = json.loads((stack_config.root / "tofu-storage" / "last-up.json").read_text())
    assert last == report
    # The background form (the apply overlapping other services' start) says the same.
    assert s3.wait_storage(stack_config) is None  # nothing started yet
    s3.start(stack_config, background=True)
    waited = s3.wait_storage(stack_config)
    assert waited is not None and waited["applied"] is False


def test_a_changed_input_would_apply(stack_config, outputs) -> None:
    """The fingerprint in the state follows the inputs (applying it here would cost a minute)."""
    changed = {**s3.storage_variables(stack_config), "backup_retention_days": 30}
    assert s3.fingerprint(changed) != outputs["fingerprint"]


def test_buckets_without_state_are_not_adopted(tmp_path) -> None:
    """Buckets an older ``stack up`` made (no state names them) stop the apply, clearly.

    A moto_server of its own on loopback, configured as the stack's external endpoint; the
    error comes before any terraform runs, through the background path as well.
    """
    from pipelines.provision.emulation.moto import MotoServer
    from pipelines.stack.config import load_config
    from pipelines.stack.credentials import ensure_secrets
    from pipelines.stack.errors import StackError

    with MotoServer(log_path=tmp_path / "moto.log") as moto:
        config = load_config(tmp_path / "stack").model_copy(update={"s3_endpoint": moto.url})
        config.save()
        ensure_secrets(config)
        s3.client(config).create_bucket(Bucket=s3.BACKUP_BUCKET)
        with pytest.raises(StackError, match="no Terraform state") as caught:
            s3.ensure_buckets(config)
        assert s3.BACKUP_BUCKET in str(caught.value)
        s3.start(config, background=True)
        with pytest.raises(StackError, match="no Terraform state"):
            s3.wait_storage(config)
        assert not (config.root / "tofu-storage" / "tofu").exists()  # nothing was applied
