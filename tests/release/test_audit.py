"""The hash-chained audit log: append, verify, tampering named by sequence number, history,
object lock on a real moto_server."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json

import boto3
import pytest

from ordinal.artifacts import LocalStorage
from ordinal.release.audit import GENESIS_HASH, AuditLog, record_hash, verify_records
from ordinal.release.errors import AuditLogError


@pytest.fixture
def log(tmp_path, clock) -> AuditLog:
    audit = AuditLog(
        LocalStorage(tmp_path / "store"), mirror=tmp_path / "mirror.jsonl", clock=clock
    )
    for i in range(5):
        audit.append("publish", {"name": "demo", "version": f"1.{i}.0", "digests": {}}, actor="ci")
    return audit


def test_append_chains_records(log: AuditLog, tmp_path):
    records = log.records()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert all(record_hash(r.to_dict()) == r.hash for r in records)
    assert log.verify() == 5
    lines = (tmp_path / "mirror.jsonl").read_text().splitlines()
    assert [json.loads(line)["hash"] for line in lines] == [r.hash for r in records]
    assert log.storage.list("audit/releases")[0] == "audit/releases/000000000001.json"


def _chain(n=5):
    records, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        r = {
            "seq": seq,
            "time": f"t{seq}",
            "actor": "a",
            "action": "x",
            "subject": {},
            "evidence": {},
            "prev_hash": prev,
        }
        r["hash"] = record_hash(r)
        records.append(r)
        prev = r["hash"]
    return records


def test_verify_names_first_bad_seq():
    good = _chain()
    assert verify_records(good) == 5
    edited = copy.deepcopy(good)
    edited[2]["actor"] = "mallory"
    removed = good[:2] + good[3:]
    reordered = [good[0], good[1], good[3], good[2], good[4]]
    duplicate = [*good[:3], good[2], *good[3:]]
    forged = copy.deepcopy(good)  # a consistent-looking record whose prev_hash is wrong
    forged[3]["prev_hash"] = "f" * 64
    forged[3]["hash"] = record_hash(forged[3])
    malformed = [*good[:1], {"seq": 2}, *good[2:]]
    cases = {
        "edited": (edited, 3),
        "removed": (removed, 3),
        "reordered": (reordered, 3),
        "inserted": (duplicate, 4),
        "prev_hash": (forged, 4),
        "malformed": (malformed, 2),
    }
    for what, (records, seq) in cases.items():
        with pytest.raises(AuditLogError) as info:
            verify_records(records)
        assert info.value.seq == seq, what
        assert f"seq={seq}" in str(info.value)


def test_store_tampering_is_named(log: AuditLog):
    key = "audit/releases/000000000003.json"
    path = log.storage.local_path(key)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "actor": "mallory"}))
    with pytest.raises(AuditLogError, match="edited") as info:
        log.verify()
    assert info.value.seq == 3
    path.write_text(json.dumps(record))
    assert log.verify() == 5
    # A record moved to another name.
    path4 = log.storage.local_path("audit/releases/000000000004.json")
    original4 = path4.read_bytes()
    path4.write_bytes(path.read_bytes())
    with pytest.raises(AuditLogError, match="moved") as moved:
        log.verify()
    assert moved.value.seq == 4
    path4.write_bytes(original4)
    # The newest record removed: the chain alone looks fine, the mirror does not.
    last = log.storage.local_path("audit/releases/000000000005.json")
    saved = last.read_bytes()
    last.unlink()
    with pytest.raises(AuditLogError, match="removed from the store") as gone:
        log.verify()
    assert gone.value.seq == 5
    assert log.verify(against_mirror=False) == 4
    last.write_bytes(saved)
    # A whole chain rewritten consistently differs from the mirror at the first change.
    rewritten = _chain(5)
    for i, r in enumerate(rewritten, start=1):
        log.storage.put_bytes(json.dumps(r).encode(), f"audit/releases/{i:012d}.json")
    with pytest.raises(AuditLogError, match="disagree") as differs:
        log.verify()
    assert differs.value.seq == 1


def test_append_refuses_a_broken_chain(log: AuditLog):
    path = log.storage.local_path("audit/releases/000000000005.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "action": "forged"}))
    with pytest.raises(AuditLogError, match="last record"):
        log.append("publish", {"name": "demo"})


def test_mirror_corruption_and_bad_json(log: AuditLog, tmp_path):
    with (tmp_path / "mirror.jsonl").open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(AuditLogError, match="line 6 is not JSON"):
        log.verify()
    log.storage.local_path("audit/releases/000000000002.json").write_text("{")
    with pytest.raises(AuditLogError, match="not JSON") as info:
        log.records()
    assert info.value.seq == 2


def test_history_answers_production_at_time(tmp_path, clock):
    audit = AuditLog(LocalStorage(tmp_path / "s"), mirror=tmp_path / "m.jsonl", clock=clock)
    subject = {"name": "demo", "digests": {}}
    audit.append("promote", {**subject, "version": "1.0.0"}, {"alias": "production"})  # 02-01
    audit.append("promote", {**subject, "version": "1.1.0"}, {"alias": "candidate"})  # 02-02
    audit.append("promote", {**subject, "version": "1.1.0"}, {"alias": "production"})  # 02-03
    audit.append("rollback", {**subject, "version": "1.0.0"}, {"alias": "production"})  # 02-04
    audit.append("promote", {"name": "other", "version": "9.0.0"}, {"alias": "production"})
    assert audit.holder("demo", at="2026-01-31T00:00:00Z") is None
    assert audit.holder("demo", at="2026-02-02T00:00:00Z") == "1.0.0"
    assert audit.holder("demo", at="2026-02-03T13:00:00+00:00") == "1.1.0"
    assert audit.holder("demo", at="2026-02-03T12:00:00.000000Z") == "1.1.0"  # inclusive
    assert audit.holder("demo") == "1.0.0"
    assert audit.holder("demo", "candidate") == "1.1.0"
    assert audit.ever_held("demo") == ["1.0.0", "1.1.0"]
    changes = audit.alias_changes("demo")
    assert [c.action for c in changes] == ["promote", "promote", "promote", "rollback"]
    with pytest.raises(AuditLogError, match="RFC 3339"):
        audit.holder("demo", at="yesterday")


def test_object_locked_records_on_s3(locked_bucket, moto_endpoint, tmp_path, clock):
    """moto_server enforces object-lock deletes (COMPLIANCE): a record cannot be removed."""
    audit = AuditLog(locked_bucket, mirror=tmp_path / "m.jsonl", lock_days=30, clock=clock)
    for i in range(3):
        audit.append("publish", {"name": "demo", "version": f"1.{i}.0", "digests": {}})
    assert audit.verify() == 3
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    key = "root/audit/releases/000000000002.json"
    head = client.head_object(Bucket=locked_bucket.bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=locked_bucket.bucket, Key=key, VersionId=head["VersionId"])
    with pytest.raises(AuditLogError, match="exists already"):
        audit._put("audit/releases/000000000002.json", b"{}")
    assert audit.verify() == 3


def test_two_writers_keep_one_chain(tmp_path, clock):
    storage = LocalStorage(tmp_path / "store")
    first = AuditLog(storage, mirror=tmp_path / "a.jsonl", clock=clock)
    second = AuditLog(storage, mirror=tmp_path / "b.jsonl", clock=clock)
    for i in range(3):
        assert first.append("publish", {"name": "demo", "version": f"1.{i}.0"}).seq == 2 * i + 1
        assert second.append("consume", {"name": "demo", "version": f"1.{i}.0"}).seq == 2 * i + 2
    assert first.verify(against_mirror=False) == 6
    assert [r.action for r in first.records()] == ["publish", "consume"] * 3


def test_unlocked_bucket_is_refused(moto_endpoint, aws_env, tmp_path):
    from ordinal.artifacts import S3Storage

    storage = S3Storage("plain-bucket", endpoint_url=moto_endpoint, create_bucket=True)
    audit = AuditLog(storage, mirror=tmp_path / "m.jsonl", lock_days=30)
    with pytest.raises(AuditLogError, match="no object lock"):
        audit.append("publish", {"name": "demo"})
    assert storage.list("audit") == []
    unlocked = AuditLog(storage, mirror=tmp_path / "u.jsonl", lock_days=0)
    assert unlocked.append("publish", {"name": "demo"}).seq == 1
