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
    assert not (tmp_path / own.OWNER_FILE).exists()


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
