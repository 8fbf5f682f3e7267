"""The run's owner lease: refusal while the owner lives, fencing of a dead or displaced one.

Owners are real processes (``python -c`` holding the lease and a child that carries its
token, as the worker and kernels do); kills are real signals.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipelines import ownership as own

OWNER_SCRIPT = """
import subprocess, sys, time
from pathlib import Path
from pipelines.ownership import acquire_run
o = acquire_run(Path(sys.argv[1]), heartbeat_interval=0.5)
child = subprocess.Popen(["sleep", "300"])  # inherits the token, as a worker or kernel does
print(child.pid, flush=True)
time.sleep(300)
"""


def _start_owner(run_dir: Path, guard: bool = False) -> tuple[subprocess.Popen, int]:
    env = {k: v for k, v in os.environ.items() if k != own.OWNER_ENV}
    env[own.GUARD_ENV] = "1" if guard else "0"
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(run_dir)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    return proc, child


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def lease_env(monkeypatch):
    """This process may take leases: its token and current ownership are undone after."""
    monkeypatch.delenv(own.OWNER_ENV, raising=False)
    monkeypatch.setenv(own.GUARD_ENV, "0")
    yield
    current = own.current_ownership()
    if current is not None:
        current.release()


def test_a_live_owner_is_named_and_refused(tmp_path, lease_env):
    proc, child = _start_owner(tmp_path)
    try:
        record = own.read_owner(tmp_path)
        assert record is not None and record.pid == proc.pid
        assert record.host == socket.gethostname()
        beat = record.heartbeat
        time.sleep(1.2)
        assert own.read_owner(tmp_path).heartbeat > beat  # renewed while it runs
        with pytest.raises(own.RunOwnedError) as err:
            own.acquire_run(tmp_path)
        message = str(err.value)
        assert f"pid {proc.pid}" in message and socket.gethostname() in message
        assert record.since in message and "--takeover" in message
        assert own.read_owner(tmp_path).token == record.token  # untouched
        assert os.environ.get(own.OWNER_ENV) is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_dead_owner_is_fenced_before_the_run_is_taken(tmp_path, lease_env):
    proc, child = _start_owner(tmp_path)
    old = own.read_owner(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # the orchestrator dies; its child lives on
    proc.wait()
    assert psutil.pid_exists(child) and not own.owner_alive(old)
    t0 = time.perf_counter()
    mine = own.acquire_run(tmp_path)
    fencing = time.perf_counter() - t0
    assert child in mine.fenced["processes_killed"]
    assert _gone(child, 2.0)
    assert fencing < 10.0, fencing
    new = own.read_owner(tmp_path)
    assert new.pid == os.getpid() and new.token == mine.token != old.token
    assert os.environ[own.OWNER_ENV] == mine.token
    mine.release()
    assert own.read_owner(tmp_path).released  # kept: a leftover is still found by its token
    again = own.acquire_run(tmp_path)  # this very process, alive, but the lease was released
    assert again.token != mine.token


def test_takeover_fences_a_live_owner(tmp_path, lease_env):
    proc, child = _start_owner(tmp_path)
    mine = own.acquire_run(tmp_path, takeover=True, grace=2.0)
    assert mine.fenced["owner_stopped"] in ("terminated", "killed")
    assert proc.wait(5) is not None
    assert _gone(child, 2.0)
    assert own.read_owner(tmp_path).token == mine.token


def test_a_displaced_owner_learns_it_lost_the_run(tmp_path, lease_env):
    mine = own.acquire_run(tmp_path, heartbeat_interval=60)
    record = own.read_owner(tmp_path)
    record.token = "someone-else"
    (tmp_path / own.OWNER_FILE).write_text(json.dumps(record.__dict__), encoding="utf-8")
    assert mine.renew() is False and mine.lost


def test_the_guard_stops_the_owners_processes_when_it_dies(tmp_path, lease_env):
    """No resume at all: a kill -9 of the owner still leaves nothing behind (Linux)."""
    proc, child = _start_owner(tmp_path, guard=True)
    guard = own.read_owner(tmp_path).children.get("guard")
    deadline = time.monotonic() + 10
    while guard is None and time.monotonic() < deadline:
        time.sleep(0.1)
        guard = own.read_owner(tmp_path).children.get("guard")
    assert guard is not None
    time.sleep(1.0)  # the guard's interpreter has started and armed its handler
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone(child, 10.0), "the owner's child outlived it"
    assert _gone(int(guard[0]), 10.0)


# --- step leases -------------------------------------------------------------------------

HOLDER_SCRIPT = """
import sys, time
from pathlib import Path
from pipelines.lease import step_lease
with step_lease(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""):
    print("held", flush=True)
    time.sleep(300)
"""


def _hold(run_dir: Path, step: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(run_dir), step, *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def toys(tmp_path, monkeypatch):
    from pipelines.steps import NOTEBOOK_DIR_ENV
    from tests.pipelines.toy_notebooks import write_toy_notebooks

    folder = write_toy_notebooks(tmp_path / "notebooks")
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(folder))
    monkeypatch.delenv(own.OWNER_ENV, raising=False)
    return folder


def test_a_second_execution_of_a_step_fails_naming_the_first_and_writes_nothing(
    toys, tmp_path, monkeypatch
):
    from pipelines.lease import StepLeaseHeldError, step_lease
    from pipelines.tasks import run_notebook

    run_dir = tmp_path / "run"
    holder = _hold(run_dir, "ingest")
    try:
        monkeypatch.setenv("ORDINAL_STEP_LEASE_WAIT", "1")
        t0 = time.perf_counter()
        with pytest.raises(StepLeaseHeldError) as err:
            run_notebook.fn("ingest", {"run_dir": str(run_dir), "source": "demo-shapes"})
        assert 1.0 <= time.perf_counter() - t0 < 5.0  # waited, bounded
        assert f"pid {holder.pid}" in str(err.value) and socket.gethostname() in str(err.value)
        assert not (run_dir / "ingest").exists()  # nothing written beside the holder
    finally:
        holder.kill()  # kill -9: the OS drops the lock with its holder
        holder.wait()
    with step_lease(run_dir, "ingest", wait=0) as lease:  # at once, not after a timeout
        assert lease.holder["pid"] == os.getpid()
        assert json.loads((run_dir / ".ingest.lock").read_text())["pid"] == os.getpid()


def test_a_fenced_execution_does_not_publish(toys, tmp_path, monkeypatch):
    """The run's owner changed while the step ran: no cache_key.txt, LeaseLostError."""
    from pipelines.lease import LeaseLostError
    from pipelines.tasks import run_notebook

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = own.OwnerRecord("elsewhere", 1, 0.0, "the-new-owner", "now", time.time())
    (run_dir / own.OWNER_FILE).write_text(json.dumps(record.__dict__), encoding="utf-8")
    monkeypatch.setenv(own.OWNER_ENV, "the-fenced-owner")
    with pytest.raises(LeaseLostError, match="owner was fenced"):
        run_notebook.fn("ingest", {"run_dir": str(run_dir), "source": "demo-shapes"})
    assert (run_dir / "ingest" / "outputs.json").is_file()  # it ran ...
    assert not (run_dir / "ingest" / "cache_key.txt").exists()  # ... but vouches for nothing
    assert not (run_dir / "ingest" / "result.json").exists()


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory):
    """A real ``moto_server`` on loopback (moto 5.2 enforces ``If-None-Match: *`` and
    ``If-Match`` on PutObject, as S3 does since 2024); yields an ``s3://`` storage root."""
    import urllib.request

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **creds},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server failed"
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"
    }).create_bucket(Bucket="leases")  # fmt: skip
    yield url
    proc.kill()
    proc.wait()
    log.close()


@pytest.fixture
def s3_env(moto_s3, monkeypatch):
    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv(own.OWNER_ENV, raising=False)
    return "s3://leases/root"


def _lease_object(root: str, run: str, step: str):
    from ordinal.artifacts.storage import open_storage

    storage = open_storage(root)
    key = f"{storage.prefix}/leases/{run}/{step}.json"
    return storage._client, storage.bucket, key


def test_an_s3_lease_is_exclusive_renewed_and_released(tmp_path, s3_env):
    from pipelines.lease import StepLeaseHeldError, step_lease

    # Another host holds it: a separate run folder (so no shared local lock), same run id.
    other = tmp_path / "host-b" / "run"
    holder = _hold(other, "train", s3_env, env={"ORDINAL_STEP_LEASE_WAIT": "0"})
    client, bucket, key = _lease_object(s3_env, "run", "train")
    try:
        with (
            pytest.raises(StepLeaseHeldError) as err,
            step_lease(tmp_path / "host-a" / "run", "train", s3_env, wait=1.0),
        ):
            pass
        assert f"pid {holder.pid}" in str(err.value) and f"s3://leases/{key}" in str(err.value)
    finally:
        holder.kill()  # no release: the object stays until it expires
        holder.wait()
    assert json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["pid"] == (
        holder.pid
    )
    # A crashed holder's lease blocks until its expiry (60 s here); an expired one is taken.
    body = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps({**body, "expires": 0}).encode())
    with step_lease(tmp_path / "host-a" / "run", "train", s3_env, wait=0, ttl=1.5) as lease:
        first = lease.s3.etag
        time.sleep(1.2)  # renewed every ttl/3
        assert lease.s3.etag != first and lease.lost_reason() is None
        lease.check_publish()
        stored = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert stored["pid"] == os.getpid() and stored["expires"] > time.time()
    with pytest.raises(client.exceptions.NoSuchKey):  # released: deleted
        client.get_object(Bucket=bucket, Key=key)


def test_an_s3_lease_taken_by_another_is_lost_and_does_not_publish(tmp_path, s3_env):
    from pipelines.lease import LeaseLostError, step_lease

    client, bucket, key = _lease_object(s3_env, "run", "export")
    with step_lease(tmp_path / "run", "export", s3_env, wait=0, ttl=1.5) as lease:
        # The holder stalled past its expiry and another execution took the lease over.
        client.put_object(Bucket=bucket, Key=key, Body=b'{"pid": 1, "expires": 1e12}')
        time.sleep(1.0)
        assert lease.s3.lost
        with pytest.raises(LeaseLostError, match="not renewed in time"):
            lease.check_publish()
    # The new holder's object is left alone.
    assert json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["pid"] == 1


def test_release_stops_what_the_run_orphaned_but_spares_its_own_children(tmp_path, lease_env):
    """A step process whose worker died under it is re-parented: the run's end stops it."""
    mine = own.acquire_run(tmp_path)
    child = subprocess.Popen(["sleep", "300"])  # still this process's child: spared
    out = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )  # the shell exits: its sleep is an orphan carrying the token
    orphan = int(out.stdout)
    try:
        mine.release()
        assert _gone(orphan, 10.0)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
