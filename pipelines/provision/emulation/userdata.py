"""Run an emulated instance's user-data on this host, one process group per instance id.

moto records instances but runs nothing. This runner plays the hypervisor: for every
instance of the project that EC2 reports ``pending``/``running`` it starts the instance's
rendered user-data with ``bash`` in a new session (its own process group), and when EC2
reports the instance ``shutting-down``/``terminated`` (or forgets it) it kills that group.
A real VM runs the same user-data; the script sees ``ORDINAL_EMULATED_INSTANCE=1`` so that
its maximum-lifetime guard ends the group instead of powering the host off.

Each instance has a folder ``<root>/<instance-id>/`` with ``user-data.sh``, ``console.log``
(the script's output, like EC2's console output) and ``pid`` (pid and start time, so a
recycled pid is never signalled). A fresh process can reconcile from those files alone.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

__all__ = ["UserDataRunner"]

ALIVE = ("pending", "running")


class UserDataRunner:
    """Process groups standing in for instances.

    Parameters
    ----------
    root : Path
        Folder holding one sub-folder per instance.
    env : Mapping[str, str] or None
        Extra environment for every script.
    instance_env : callable or None
        ``instance_id -> {name: value}``: environment of one instance (the metadata
        stand-in's URL for that instance, for instance).
    run_id : str or None
        Follow only the instances tagged with this run id (on a shared endpoint such as
        the stack's, each run's runner starts its own instances only); ``None``: every
        instance tagged by the project.
    """

    def __init__(
        self,
        root: Path,
        env: Mapping[str, str] | None = None,
        instance_env: Callable[[str], Mapping[str, str]] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.instance_env = instance_env
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one instance --------------------------------------------------------------------
    def start(self, instance_id: str, user_data: str) -> int:
        """Run ``user_data`` for ``instance_id`` (once); return the group's pid."""
        running = self.pid(instance_id)
        if running is not None:
            return running
        folder = self.root / instance_id
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "user-data.sh"
        script.write_text(user_data, encoding="utf-8")
        env = dict(
            os.environ,
            **self.env,
            **(self.instance_env(instance_id) if self.instance_env else {}),
            ORDINAL_EMULATED_INSTANCE="1",
            ORDINAL_INSTANCE_ID=instance_id,
        )
        with (folder / "console.log").open("ab") as log:
            proc = subprocess.Popen(
                ["bash", str(script)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        created = psutil.Process(proc.pid).create_time()
        tmp = folder / "pid.tmp"
        tmp.write_text(f"{proc.pid} {created}\n")
        tmp.replace(folder / "pid")
        self._children = getattr(self, "_children", {})
        self._children[instance_id] = proc
        return proc.pid

    def pid(self, instance_id: str) -> int | None:
        """The live group leader's pid for ``instance_id``, or ``None``."""
        path = self.root / instance_id / "pid"
        try:
            pid_text, _, created = path.read_text().partition(" ")
            proc = psutil.Process(int(pid_text))
            if abs(proc.create_time() - float(created)) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                self._reap(int(pid_text))
                return None
            return proc.pid
        except (FileNotFoundError, ValueError, psutil.Error):
            return None

    def group_alive(self, instance_id: str) -> bool:
        """Whether any process of the instance's group is still alive."""
        pid = self._recorded_pid(instance_id)
        if pid is None:
            return False
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return any(_pgid(p.pid) == pid and _alive(p) for p in psutil.process_iter(["pid"]))

    def terminate(self, instance_id: str, timeout: float = 10.0) -> bool:
        """Kill the instance's process group (SIGTERM, then SIGKILL); True if it ran."""
        pid = self._recorded_pid(instance_id)
        if pid is None or not self.group_alive(instance_id):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.group_alive(instance_id):
            self._reap(pid)
            time.sleep(0.05)
        if self.group_alive(instance_id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            end = time.monotonic() + 5
            while time.monotonic() < end and self.group_alive(instance_id):
                self._reap(pid)
                time.sleep(0.05)
        self._reap(pid)
        return True

    def instances(self) -> list[str]:
        """Instance ids this runner has started (alive or not)."""
        return sorted(p.name for p in self.root.iterdir() if (p / "pid").is_file())

    def alive(self) -> list[str]:
        """Instance ids whose process group is alive."""
        return [i for i in self.instances() if self.group_alive(i)]

    # -- following EC2 -------------------------------------------------------------------
    def reconcile(self, ec2: Any) -> dict[str, list[str]]:
        """Start groups for live project instances, kill groups of ended ones."""
        states: dict[str, str] = {}
        tagged = (
            {"Name": "tag:ordinal:run-id", "Values": [self.run_id]}
            if self.run_id
            else {"Name": "tag-key", "Values": ["ordinal:run-id"]}
        )
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[tagged])
        for page in pages:
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    states[inst["InstanceId"]] = inst["State"]["Name"]
        started, killed = [], []
        for instance_id, state in states.items():
            if (
                state in ALIVE
                and self.pid(instance_id) is None
                and not (self.root / instance_id / "pid").is_file()
            ):
                attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
                encoded = attr.get("UserData", {}).get("Value")
                if encoded:
                    self.start(instance_id, base64.b64decode(encoded).decode("utf-8"))
                    started.append(instance_id)
        for instance_id in self.instances():
            if states.get(instance_id) not in ALIVE and self.terminate(instance_id):
                killed.append(instance_id)
        return {"started": started, "killed": killed}

    def watch(self, ec2: Any, interval: float = 0.5) -> UserDataRunner:
        """Reconcile in a daemon thread every ``interval`` seconds until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(Exception):
                    self.reconcile(ec2)

        self._thread = threading.Thread(target=loop, name="user-data-runner", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching (the groups are left to :meth:`terminate`/:meth:`reconcile`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- helpers -------------------------------------------------------------------------
    def _recorded_pid(self, instance_id: str) -> int | None:
        try:
            return int((self.root / instance_id / "pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _reap(self, pid: int) -> None:
        child = getattr(self, "_children", {})
        for proc in child.values():
            if proc.pid == pid:
                proc.poll()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, OSError):
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
