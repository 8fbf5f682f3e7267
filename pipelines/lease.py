"""Exclusive step leases: one execution of a step writes its folder (and its storage) at a time.

* Locally, an OS file lock (``flock``) on ``{run_dir}/.{step}.lock``, in the step folder's
  parent, held for the whole execution. The kernel drops it when the holder dies, so a
  crashed execution never blocks a resume; while the holder lives a second execution waits
  (bounded) and then fails with :class:`StepLeaseHeldError` naming the holder.
* For a step writing to an ``s3://`` storage root, also a lease object
  ``{prefix}/leases/{run_id}/{step}.json`` created with a conditional write
  (``If-None-Match: *``), renewed with ``If-Match: <etag>`` before it expires, taken over
  only once expired (again ``If-Match`` on the expired one's ETag, so two contenders cannot
  both win) and deleted at the end. S3 has no lock that dies with its holder; the expiry
  bounds how long a crashed holder blocks (``ttl``). One case needs no expiry: when the
  lease object was written by the previous holder of the local lock just taken (the lease
  id recorded in the lock file matches), that holder has ended, because a holder keeps its
  local lock for as long as it holds the lease object; this is the resume after a crash or
  after an S3 outage that kept the lease from being deleted, and it takes the lease over at
  once (``If-Match``).

A lease is *lost* when its renewal fails (another execution took the expired lease) or when
the run's owner was fenced (``owner.json`` names another token). :meth:`StepLease.
check_publish` is called before a step's outputs are published (``cache_key.txt`` last):
a lost lease raises :class:`LeaseLostError` and nothing is published.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.ownership import OWNER_ENV, read_owner

__all__ = [
    "LeaseLostError",
    "StepLease",
    "StepLeaseHeldError",
    "step_lease",
]

#: Seconds a second execution of a step waits for the first to end before failing.
WAIT_ENV = "ORDINAL_STEP_LEASE_WAIT"
DEFAULT_WAIT = 10.0
DEFAULT_TTL = 60.0


class StepLeaseHeldError(PipelineError):
    """Another execution holds the step's lease; ``holder`` says which (host, pid, since)."""

    def __init__(self, step: str, where: str, holder: dict[str, Any], waited: float) -> None:
        self.step, self.where, self.holder = step, where, holder
        who = ", ".join(f"{k} {holder[k]}" for k in ("host", "pid", "since") if k in holder)
        super().__init__(
            f"step {step!r} is being executed by another process ({who or 'unknown holder'}; "
            f"lease {where}); waited {waited:.0f} s"
        )


class LeaseLostError(PipelineError):
    """The step's lease was lost (fenced or expired and taken): its outputs are not published."""

    def __init__(self, step: str, why: str) -> None:
        self.step, self.why = step, why
        super().__init__(f"step {step!r} lost its lease ({why}); its outputs were not published")


def _holder() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "owner_token": os.environ.get(OWNER_ENV, ""),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "lease_id": uuid.uuid4().hex,
    }


@dataclass
class StepLease:
    """A held lease (local lock, plus the S3 lease object when the storage is S3)."""

    step: str
    run_dir: Path
    holder: dict[str, Any]
    s3: _S3Lease | None = None

    def lost_reason(self) -> str | None:
        """Why the lease is lost, or None while it holds."""
        token = self.holder.get("owner_token")
        if token:
            # No owner record: the step runs outside an owned run (a direct task call, a
            # notebook); only another owner's record means this one was fenced.
            owner = read_owner(self.run_dir)
            if owner is not None and owner.token != token:
                return "the run's owner was fenced: another owner holds the run"
        if self.s3 is not None and self.s3.lost:
            return f"the S3 lease {self.s3.where} was not renewed in time and was taken"
        return None

    def check_publish(self) -> None:
        """Raise :class:`LeaseLostError` unless the lease still holds (call before publishing)."""
        why = self.lost_reason()
        if why is not None:
            raise LeaseLostError(self.step, why)


@contextlib.contextmanager
def _local_lock(
    run_dir: Path, step: str, wait: float
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Hold the step's ``flock``; yield (this holder, the previous holder the file named)."""
    path = Path(run_dir) / f".{step}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started >= wait:
                    try:
                        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
                    except (OSError, ValueError):
                        holder = {}
                    raise StepLeaseHeldError(
                        step, str(path), holder, time.monotonic() - started
                    ) from None
                time.sleep(0.2)
        try:
            previous = json.loads(os.pread(fd, 65536, 0) or b"{}")
        except ValueError:
            previous = {}
        holder = _holder()
        # The lock file names its holder (for the other side's error); the lock is the fd's.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield holder, previous if isinstance(previous, dict) else {}
    finally:
        os.close(fd)  # releases the lock


class _S3Lease:
    """A lease object on S3: conditional create, renewal by ETag, expiry, takeover."""

    def __init__(self, storage: Any, key: str, step: str, holder: dict[str, Any], ttl: float):
        self.client, self.bucket = storage._client, storage.bucket
        self.key = f"{storage.prefix}/{key}".strip("/")
        self.where = f"s3://{self.bucket}/{self.key}"
        self.step, self.holder, self.ttl = step, holder, ttl
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({**self.holder, "expires": time.time() + self.ttl}).encode()

    def _put(self, **condition: str) -> str | None:
        """Conditional put; the new ETag, or None when the condition failed."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body(), **condition
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or (
                status in (409, 412)
            ):
                return None
            raise
        return response["ETag"]

    def _current(self) -> tuple[dict[str, Any], str] | None:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            data = json.loads(obj["Body"].read())
        except ValueError:
            data = {}
        return data, obj["ETag"]

    def acquire(self, wait: float, previous: dict[str, Any] | None = None) -> None:
        """Create or take over the lease object, waiting up to ``wait`` s for a live holder.

        ``previous`` is the previous holder of the local lock now held: a lease object with
        its ``lease_id`` is that ended holder's and is taken over without waiting.
        """
        started = time.monotonic()
        ended = (previous or {}).get("lease_id")
        while True:
            self.etag = self._put(IfNoneMatch="*")
            if self.etag is not None:
                break
            current = self._current()
            if current is not None:
                data, etag = current
                orphaned = bool(ended) and data.get("lease_id") == ended
                if orphaned or float(data.get("expires", 0)) < time.time():  # take it over
                    self.etag = self._put(IfMatch=etag)
                    if self.etag is not None:
                        break
                elif time.monotonic() - started >= wait:
                    raise StepLeaseHeldError(
                        self.step, self.where, data, time.monotonic() - started
                    )
            time.sleep(0.5)
        self._thread = threading.Thread(target=self._renew, daemon=True, name="step-lease")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                etag = self._put(IfMatch=self.etag or "")
            except Exception:  # a connection cut: try again before the expiry
                continue
            if etag is None:
                self.lost = True
                return
            self.etag = etag

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if not self.lost and self.etag is not None:
            with contextlib.suppress(Exception):
                current = self._current()
                if current is not None and current[1] == self.etag:
                    self.client.delete_object(Bucket=self.bucket, Key=self.key)


@contextlib.contextmanager
def step_lease(
    run_dir: Path,
    step: str,
    storage: str = "",
    *,
    wait: float | None = None,
    ttl: float = DEFAULT_TTL,
) -> Iterator[StepLease]:
    """Hold ``step``'s exclusive lease for the body of the ``with`` block.

    Parameters
    ----------
    run_dir : Path
        The run folder; the lock file goes beside the step's folder.
    storage : str
        The step's storage root; an ``s3://`` root adds the S3 lease object.
    wait : float or None
        Seconds to wait for another holder (default ``$ORDINAL_STEP_LEASE_WAIT`` or 10).
    ttl : float
        Expiry of the S3 lease object; renewed every ``ttl / 3`` seconds.

    Raises
    ------
    StepLeaseHeldError
        Another execution still holds the lease after ``wait`` seconds.
    """
    if wait is None:
        wait = float(os.environ.get(WAIT_ENV, DEFAULT_WAIT))
    run_dir = Path(run_dir)
    with _local_lock(run_dir, step, wait) as (holder, previous):
        lease = StepLease(step, run_dir, holder)
        if storage.startswith("s3://"):
            from ordinal.artifacts.storage import open_storage

            lease.s3 = _S3Lease(
                open_storage(storage), f"leases/{run_dir.name}/{step}.json", step, holder, ttl
            )
            lease.s3.acquire(wait, previous)
        try:
            yield lease
        finally:
            if lease.s3 is not None:
                lease.s3.release()
