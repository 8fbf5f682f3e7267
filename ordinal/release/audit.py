"""The release audit log: append-only, hash-chained JSON records in the storage root.

Every release event (``bundle``, ``publish``, ``promote``, ``rollback``, ``retention-delete``,
``consume``, ...) appends one record::

    {"seq": 7, "time": "2026-...Z", "actor": "alice", "action": "promote",
     "subject": {"name": "demo", "version": "1.2.0", "digests": {"bundle.json": "<sha256>"}},
     "evidence": {...}, "prev_hash": "<hash of record 6>", "hash": "<sha256 of this record>"}

``hash`` is the sha256 of the record's canonical JSON without ``hash``; ``prev_hash`` chains it
to the record before (record 1 chains to 64 zeros). Records are stored one object each at
``audit/{log}/{seq:012d}.json`` in the storage root. On S3 with object lock each record is
written with a COMPLIANCE retention, so not even the bucket owner can delete or overwrite it
before the retention ends. A local mirror (``<state>/release/audit/{log}.jsonl``) keeps a
copy; :meth:`AuditLog.verify` checks the chain, and the store against the mirror, and names
the first bad sequence number.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinal.artifacts import layout
from ordinal.artifacts.storage import S3Storage, Storage
from ordinal.paths import state_dir
from ordinal.release.canonical import canonical_json
from ordinal.release.errors import AuditLogError

__all__ = [
    "GENESIS_HASH",
    "AliasChange",
    "AuditLog",
    "AuditRecord",
    "default_actor",
    "record_hash",
    "verify_records",
]

GENESIS_HASH = "0" * 64
ACTOR_ENV = "ORDINAL_ACTOR"
_FIELDS = ("seq", "time", "actor", "action", "subject", "evidence", "prev_hash", "hash")


def default_actor() -> str:
    """``$ORDINAL_ACTOR``, else the login name."""
    try:
        return os.environ.get(ACTOR_ENV) or getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in a container
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``record`` without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One verified record (the fields of the JSON object)."""

    seq: int
    time: str
    actor: str
    action: str
    subject: dict[str, Any]
    evidence: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """The record as its JSON object."""
        return {f: getattr(self, f) for f in _FIELDS}


def verify_records(records: Iterable[dict[str, Any]], where: str = "") -> int:
    """Check a sequence of records (in stored order); return how many there are.

    Raises
    ------
    AuditLogError
        At the first bad sequence number: a record whose hash does not match its content
        (edited), a gap (removed), a record whose ``prev_hash`` is not the hash before it
        (inserted or reordered), or a malformed record.
    """
    prev = GENESIS_HASH
    expected = 1
    for record in records:
        if not isinstance(record, dict) or set(record) != set(_FIELDS):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise AuditLogError(f"malformed record (fields {got})", seq=expected, where=where)
        seq = record["seq"]
        if not isinstance(seq, int) or seq != expected:
            what = (
                f"found seq={seq} where seq={expected} was expected: record {expected} was removed"
                if isinstance(seq, int) and seq > expected
                else f"found seq={seq} where seq={expected} was expected: a record was inserted "
                "or the records were reordered"
            )
            raise AuditLogError(what, seq=expected, where=where)
        if record_hash(record) != record["hash"]:
            raise AuditLogError(
                "its hash does not match its content: the record was edited", seq=seq, where=where
            )
        if record["prev_hash"] != prev:
            raise AuditLogError(
                "prev_hash is not the hash of the record before it: a record was inserted, "
                "replaced or reordered",
                seq=seq,
                where=where,
            )
        prev = record["hash"]
        expected += 1
    return expected - 1


@dataclass(frozen=True)
class AliasChange:
    """One change of an alias (``production``, ``candidate``) from the log."""

    seq: int
    time: str
    alias: str
    version: str | None
    action: str
    actor: str


class AuditLog:
    """An append-only audit log in a storage root, with a local mirror.

    Parameters
    ----------
    storage : Storage
        The storage root (the object-locked bucket on the stack).
    name : str
        The log's name (``releases``): records go to ``audit/{name}/``.
    mirror : path, optional
        The local JSON Lines mirror; default ``<state>/release/audit/{name}.jsonl``.
    lock_days : int
        On S3, the COMPLIANCE retention of each record in days (0: no lock request).
    clock : callable, optional
        Returns the record time (tests pin it); default the UTC time now.
    """

    def __init__(
        self,
        storage: Storage,
        name: str = "releases",
        *,
        mirror: str | os.PathLike[str] | None = None,
        lock_days: int = 0,
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.storage = storage
        self.name = layout.check_component(name, "audit log name")
        self.prefix = layout.join("audit", self.name)
        self.mirror = (
            Path(mirror) if mirror else state_dir() / "release" / "audit" / f"{self.name}.jsonl"
        )
        self.lock_days = lock_days
        self._clock = clock or _now
        # The newest record this object wrote or read: appends need not list the store each
        # time. Another writer is detected by the write-once check and the head re-read.
        self._head: dict[str, Any] | None = None
        self._lock_checked = False

    def _key(self, seq: int) -> str:
        return layout.join(self.prefix, f"{seq:012d}.json")

    def _stored_keys(self) -> list[str]:
        return [k for k in self.storage.list(self.prefix) if k.endswith(".json")]

    def stored_records(self) -> Iterator[dict[str, Any]]:
        """The records in the storage root, in key order."""
        for key in self._stored_keys():
            try:
                yield json.loads(self.storage.get_bytes(key))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                seq = int(key.rsplit("/", 1)[-1].split(".")[0])
                raise AuditLogError(f"not JSON: {exc}", seq=seq, where=key) from None

    def mirror_records(self) -> Iterator[dict[str, Any]]:
        """The records of the local mirror, in file order."""
        if not self.mirror.is_file():
            return
        with self.mirror.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise AuditLogError(
                            f"line {number} is not JSON: {exc}", seq=number, where=str(self.mirror)
                        ) from None

    def _last(self) -> dict[str, Any] | None:
        keys = self._stored_keys()
        return json.loads(self.storage.get_bytes(keys[-1])) if keys else None

    def _put(self, key: str, data: bytes) -> None:
        if self.storage.exists(key):
            raise AuditLogError("a record with this sequence number exists already", where=key)
        if isinstance(self.storage, S3Storage) and self.lock_days > 0:
            self._check_object_lock()
            until = _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=self.lock_days)
            self.storage._call(
                "put",
                key,
                self.storage._client.put_object,
                Bucket=self.storage.bucket,
                Key=self.storage._key(key),
                Body=data,
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=until,
                ChecksumAlgorithm="SHA256",
            )
        else:
            self.storage.put_bytes(data, key)

    def _check_object_lock(self) -> None:
        """Refuse to write to a bucket without object lock (the records would be deletable)."""
        if self._lock_checked:
            return
        storage = self.storage
        assert isinstance(storage, S3Storage)
        from botocore.exceptions import ClientError

        try:
            config = storage._client.get_object_lock_configuration(Bucket=storage.bucket)
            enabled = config["ObjectLockConfiguration"].get("ObjectLockEnabled") == "Enabled"
        except ClientError:
            enabled = False
        if not enabled:
            raise AuditLogError(
                f"bucket {storage.bucket!r} has no object lock, so audit records could be "
                "deleted: create it with object lock enabled (ObjectLockEnabledForBucket=True), "
                "or set lock_days=0 ($ORDINAL_AUDIT_LOCK_DAYS=0) to write without a lock",
                where=storage.url,
            )
        self._lock_checked = True

    def append(
        self,
        action: str,
        subject: dict[str, Any],
        evidence: dict[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> AuditRecord:
        """Append one record; return it (with its sequence number and hash).

        The previous record is re-hashed first: nothing is appended to a broken chain. If
        another writer appended meanwhile, the head is read again and the append retried.
        """
        for attempt in range(3):
            if self._head is not None and attempt == 0:
                # One read of the stored head (not a listing): has it changed since?
                last = json.loads(self.storage.get_bytes(self._key(self._head["seq"])))
            else:
                last = self._last()
            if last is not None and record_hash(last) != last.get("hash"):
                raise AuditLogError(
                    "the last record does not match its hash; run `ordinal release audit verify`",
                    seq=last.get("seq"),
                )
            record: dict[str, Any] = {
                "seq": (last["seq"] + 1) if last else 1,
                "time": self._clock(),
                "actor": actor or default_actor(),
                "action": action,
                "subject": subject,
                "evidence": evidence or {},
                "prev_hash": last["hash"] if last else GENESIS_HASH,
            }
            record["hash"] = record_hash(record)
            data = canonical_json(record)
            key = self._key(record["seq"])
            if self.storage.exists(key):
                self._head = None  # someone else appended: read the head again
                continue
            self._put(key, data)
            break
        else:
            raise AuditLogError("could not append: other writers keep appending")
        self._head = record
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        with self.mirror.open("ab") as handle:
            handle.write(data + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return AuditRecord(**record)

    def records(self) -> list[AuditRecord]:
        """Every stored record, verified."""
        raw = list(self.stored_records())
        verify_records(raw, where=self.storage.url)
        return [AuditRecord(**r) for r in raw]

    def verify(self, *, against_mirror: bool = True) -> int:
        """Verify the stored chain (and that it matches the mirror); return the record count.

        Raises
        ------
        AuditLogError
            Naming the first bad sequence number.
        """
        stored = list(self.stored_records())
        for key, record in zip(self._stored_keys(), stored, strict=True):
            name_seq = int(key.rsplit("/", 1)[-1].split(".")[0])
            if isinstance(record, dict) and record.get("seq") != name_seq:
                raise AuditLogError(
                    f"stored as {key} but holds seq={record.get('seq')}: records were moved",
                    seq=name_seq,
                    where=key,
                )
        count = verify_records(stored, where=self.storage.url)
        if against_mirror and self.mirror.is_file():
            mirrored = list(self.mirror_records())
            verify_records(mirrored, where=str(self.mirror))
            for ours, theirs in zip(stored, mirrored, strict=False):
                if ours["hash"] != theirs["hash"]:
                    raise AuditLogError("the store and the local mirror disagree", seq=ours["seq"])
            if len(mirrored) > len(stored):
                raise AuditLogError(
                    f"the store has {len(stored)} records, the mirror {len(mirrored)}: "
                    "records were removed from the store",
                    seq=len(stored) + 1,
                    where=self.storage.url,
                )
        return count

    def alias_changes(self, name: str) -> list[AliasChange]:
        """Every change of an alias of release ``name``, oldest first."""
        out = []
        for record in self.records():
            subject = record.subject
            if subject.get("name") != name or "alias" not in record.evidence:
                continue
            out.append(
                AliasChange(
                    seq=record.seq,
                    time=record.time,
                    alias=record.evidence["alias"],
                    version=subject.get("version"),
                    action=record.action,
                    actor=record.actor,
                )
            )
        return out

    def holder(self, name: str, alias: str = "production", at: str | None = None) -> str | None:
        """The version of ``name`` that held ``alias`` at time ``at`` (RFC 3339; None: now).

        This answers "which version was in production at time T".
        """
        at_key = _time_key(at) if at else None
        holder = None
        for change in self.alias_changes(name):
            if change.alias != alias:
                continue
            if at_key is not None and _time_key(change.time) > at_key:
                break
            holder = change.version
        return holder

    def ever_held(self, name: str, alias: str = "production") -> list[str]:
        """Every version of ``name`` that ever held ``alias``, in order of first holding."""
        seen: list[str] = []
        for change in self.alias_changes(name):
            if change.alias == alias and change.version and change.version not in seen:
                seen.append(change.version)
        return seen


def _time_key(value: str) -> _dt.datetime:
    text = value.replace("Z", "+00:00")
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise AuditLogError(f"not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed
