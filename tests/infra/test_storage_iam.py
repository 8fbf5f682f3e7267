"""Storage and IAM as applied to the emulated endpoint (moto_server on loopback).

moto enforces versioning and object-lock deletes, so the lock tests are real; it only
stores lifecycle and replication settings, so those are read back, and replication is
rehearsed by copying (the rehearsal says so).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from pipelines.provision.cli import infra_app
from pipelines.provision.iam_tables import (
    TABLE,
    check_tables,
    decide,
    role_policies,
    wildcard_actions,
)
from pipelines.provision.replication import EMULATOR_NOTE, ReplicationError, rehearse_replication

STAGES = {"ingest", "preprocess", "train", "export", "quantise", "release", "backup"}


@pytest.fixture(scope="module")
def applied_policies(cloud):
    """The roles' inline policies as IAM stored them (the cpu role carries two)."""
    names = dict(cloud.platform_outputs["role_names"])
    names.update({r.rsplit("-", 1)[-1]: r for r in cloud.platform_outputs["combined_roles"]})
    return role_policies(cloud.client("iam"), names)


def test_one_role_per_stage_with_its_instance_profile(cloud):
    iam = cloud.client("iam")
    profiles = cloud.platform_outputs["instance_profiles"]
    assert set(profiles) == STAGES | {"cpu"}
    roles = {**cloud.platform_outputs["role_names"], "cpu": "ordinal-cpu"}
    for key, name in profiles.items():
        attached = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
        assert [r["RoleName"] for r in attached] == [roles[key]]


def test_allow_deny_tables_on_applied_policies(cloud, applied_policies):
    rows = check_tables(applied_policies, f"{cloud.name_prefix}-data")
    wrong = [r for r in rows if not r["ok"]]
    assert wrong == []
    assert len(rows) == len(TABLE)
    assert wildcard_actions(applied_policies) == []


def test_evaluator_can_fail():
    """The evaluator is not vacuous: explicit deny wins, conditions are honoured."""
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": ["arn:aws:s3:::b/a/*"],
                "Condition": {"StringEquals": {"s3:object-lock-mode": "COMPLIANCE"}},
            },
            {"Effect": "Deny", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::b/a/x/*"]},
        ]
    }
    lock = {"s3:object-lock-mode": "COMPLIANCE"}
    assert decide(policy, "s3:PutObject", "arn:aws:s3:::b/a/k", lock)
    assert not decide(policy, "s3:PutObject", "arn:aws:s3:::b/a/k")
    assert not decide(policy, "s3:PutObject", "arn:aws:s3:::b/a/x/k", lock)
    assert not decide(policy, "s3:GetObject", "arn:aws:s3:::b/a/k", lock)
    assert wildcard_actions({"x": {"Statement": [{"Action": "s3:*"}]}}) == [("x", "s3:*")]


def test_layout_lifecycle_versioning_lock_replication_stored(storage_cloud):
    cloud = storage_cloud
    s3 = cloud.client("s3")
    bucket = cloud.storage_outputs["data_bucket"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    prefixes = {r["Filter"]["Prefix"]: r for r in rules}
    assert {
        "datasets/raw/",
        "datasets/processed/",
        "models/checkpoints/",
        "models/onnx/",
        "backups/",
        "releases/",
    } <= set(prefixes)
    raw = {t["StorageClass"]: t["Days"] for t in prefixes["datasets/raw/"]["Transitions"]}
    assert raw == {"STANDARD_IA": 30, "GLACIER": 180}
    assert prefixes["models/checkpoints/"]["Expiration"]["Days"] == 30
    replication = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    assert replication["Rules"][0]["Destination"]["Bucket"].endswith(
        cloud.storage_outputs["dr_bucket"]
    )
    dr = cloud.client("s3", cloud.storage_outputs["dr_region"])
    assert (
        dr.get_bucket_versioning(Bucket=cloud.storage_outputs["dr_bucket"])["Status"] == "Enabled"
    )


def test_locked_versions_cannot_be_deleted(storage_cloud):
    """COMPLIANCE for raw data and releases, GOVERNANCE by default: moto enforces both."""
    s3 = storage_cloud.client("s3")
    bucket = storage_cloud.storage_outputs["data_bucket"]
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    raw = s3.put_object(
        Bucket=bucket,
        Key="datasets/raw/t/v1/data.csv",
        Body=b"a,b\n1,2\n",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    head = s3.head_object(Bucket=bucket, Key="datasets/raw/t/v1/data.csv")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as caught:
        s3.delete_object(
            Bucket=bucket,
            Key="datasets/raw/t/v1/data.csv",
            VersionId=raw["VersionId"],
            BypassGovernanceRetention=True,
        )
    assert caught.value.response["Error"]["Code"] == "AccessDenied"

    model = s3.put_object(Bucket=bucket, Key="models/onnx/e/fp32/model.onnx", Body=b"onnx")
    assert (
        s3.head_object(Bucket=bucket, Key="models/onnx/e/fp32/model.onnx")["ObjectLockMode"]
        == "GOVERNANCE"
    )  # the bucket's default retention
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket=bucket, Key="models/onnx/e/fp32/model.onnx", VersionId=model["VersionId"]
        )
    # GOVERNANCE yields to an explicit bypass (a permission no stage role has).
    s3.delete_object(
        Bucket=bucket,
        Key="models/onnx/e/fp32/model.onnx",
        VersionId=model["VersionId"],
        BypassGovernanceRetention=True,
    )


def test_replication_rehearsal(storage_cloud):
    cloud = storage_cloud
    out = cloud.storage_outputs
    report = rehearse_replication(
        cloud.client("s3"),
        cloud.client("s3", out["dr_region"]),
        out["data_bucket"],
        out["dr_bucket"],
        mode="copy",
    )
    assert (
        report["note"] == EMULATOR_NOTE
        and "only stores the replication configuration" in report["note"]
    )
    assert report["dr_version_id"] and report["dr_version_id"] != report["source_version_id"]
    assert report["elapsed_seconds"] > 0
    dr = cloud.client("s3", out["dr_region"])
    head = dr.head_object(Bucket=out["dr_bucket"], Key=report["key"])
    assert head["Metadata"]["source-version-id"] == report["source_version_id"]
    with pytest.raises(ReplicationError, match="no enabled replication rule"):
        rehearse_replication(cloud.client("s3"), dr, out["data_bucket"], "some-other-bucket")


def test_replication_rehearsal_command(storage_cloud):
    result = CliRunner().invoke(
        infra_app, ["replication-rehearsal", "--endpoint", storage_cloud.moto.url, "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)  # the command's own report
    assert (
        report["mode"] == "copy" and "only stores the replication configuration" in report["note"]
    )
