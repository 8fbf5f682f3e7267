"""The S3 step lease after a crash: a resume in the same run folder takes it over at once.

A real ``moto_server`` (S3 emulated at the boundary) and real processes: the holder takes the
step's local lock and S3 lease object, then dies by SIGKILL, so the object stays (S3 has no
lock that dies with its holder), as after an S3 outage that kept the lease from being
deleted. The next execution in the same run folder holds the local lock the dead holder held,
so that holder has ended: it takes the lease over without waiting for the expiry. An
execution in another folder (another host) cannot know that and still waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.lease import StepLeaseHeldError, step_lease

HOLDER = """
import sys, time
from pathlib import Path
from pipelines.lease import step_lease
with step_lease(Path(sys.argv[1]), sys.argv[2], sys.argv[3]):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def root(moto_url, monkeypatch) -> str:
    import boto3

    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("ORDINAL_RUN_OWNER", raising=False)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    if "lease-resume" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="lease-resume")
    return "s3://lease-resume/root"


def _lease(root: str, step: str) -> dict:
    from ordinal.artifacts.storage import open_storage

    storage = open_storage(root)
    key = f"{storage.prefix}/leases/run/{step}.json"
    return json.loads(storage._client.get_object(Bucket=storage.bucket, Key=key)["Body"].read())


def _crashed_holder(run_dir: Path, step: str, root: str) -> int:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), step, root],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait()
    return proc.pid


def test_a_resume_in_the_same_folder_takes_over_a_dead_holders_s3_lease(tmp_path, root):
    run_dir = tmp_path / "run"
    dead = _crashed_holder(run_dir, "export", root)
    assert _lease(root, "export")["pid"] == dead  # left behind, not expired (ttl 60 s)
    # Another folder sharing the storage (another host) cannot tell the holder is gone.
    with (
        pytest.raises(StepLeaseHeldError, match=f"pid {dead}"),
        step_lease(tmp_path / "elsewhere" / "run", "export", root, wait=0.5),
    ):
        pass
    t0 = time.monotonic()
    with step_lease(run_dir, "export", root, wait=0) as lease:
        waited = time.monotonic() - t0
        assert lease.s3 is not None and lease.lost_reason() is None
        assert _lease(root, "export")["pid"] == os.getpid()
    assert waited < 5, waited  # not the 60 s expiry
