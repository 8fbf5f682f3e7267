"""Detached service processes: start in their own session, pid files, stop by process group.

Each service runs in a new session (its own process group) so that stopping it also stops
every child it forked (gunicorn/uvicorn workers, flow-run subprocesses), and so that the
``ordinal stack up`` command can exit while the services keep running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipelines.stack.config import StackConfig
from pipelines.stack.errors import ServiceStartError
from pipelines.stack.files import atomic_write


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one service.

    Attributes
    ----------
    name : str
        Service name; names the pid file and the log file.
    argv : Sequence[str]
        Command line.
    env : Mapping[str, str]
        Full environment (not merged with the caller's).
    user : str or None
        Run as this user (needs root); PostgreSQL refuses to run as root.
    stop_signal : int
        First signal sent on stop (SIGINT lets Prefect workers and PostgreSQL shut down
        cleanly).
    cwd : Path or None
        Working directory.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    cwd: Path | None = None


def pid_file(config: StackConfig, name: str) -> Path:
    """``<root>/run/<name>.pid``."""
    return config.path("run", f"{name}.pid")


def log_file(config: StackConfig, name: str) -> Path:
    """``<root>/logs/<name>.log``: every service logs to one place."""
    return config.logs / f"{name}.log"


def read_pid(config: StackConfig, name: str) -> int | None:
    """The pid of a running service, or ``None`` (stale pid files are ignored)."""
    path = pid_file(config, name)
    try:
        pid_text, _, started = path.read_text().partition(" ")
        pid = int(pid_text)
        proc = psutil.Process(pid)
        # A recycled pid would have another start time.
        if started and abs(proc.create_time() - float(started)) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return pid
    except (FileNotFoundError, ValueError, psutil.Error):
        return None


def start(config: StackConfig, spec: ProcessSpec) -> int:
    """Start ``spec`` detached unless it already runs; return its pid."""
    running = read_pid(config, spec.name)
    if running:
        return running
    log = log_file(config, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(spec.argv),
            env=dict(spec.env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=spec.user,
            cwd=spec.cwd,
        )
    created = psutil.Process(proc.pid).create_time()
    atomic_write(pid_file(config, spec.name), f"{proc.pid} {created}\n")
    _journal(config, f"started {spec.name} pid={proc.pid}")
    atomic_write(config.path("run", f"{spec.name}.signal"), f"{int(spec.stop_signal)}\n")
    return proc.pid


def stop(config: StackConfig, name: str, timeout: float = 30.0) -> bool:
    """Stop a service and its whole process group; return whether it was running."""
    pid = read_pid(config, name)
    path = pid_file(config, name)
    if pid is None:
        path.unlink(missing_ok=True)
        return False
    try:
        sig = int(config.path("run", f"{name}.signal").read_text())
    except (FileNotFoundError, ValueError):
        sig = signal.SIGTERM
    group = _group_members(pid)
    started = time.monotonic()
    _signal_group(pid, sig)
    forced = not _wait_gone(group, timeout)
    if forced:
        _signal_group(pid, signal.SIGKILL)
        for proc in group:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_gone(group, 10.0)
    path.unlink(missing_ok=True)
    _journal(
        config,
        f"stopped {name} pid={pid} in {time.monotonic() - started:.1f}s"
        + (" (killed after timeout)" if forced else ""),
    )
    return True


def _journal(config: StackConfig, line: str) -> None:
    """Append to ``logs/stack.log``: what the stack itself did, next to the service logs."""
    config.logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with (config.logs / "stack.log").open("a") as handle:
        handle.write(f"{stamp} {line}\n")


def _group_members(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        pgid = os.getpgid(pid)
    except (psutil.Error, ProcessLookupError):
        return []
    members = [leader, *leader.children(recursive=True)]
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc not in members:
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), sig)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> bool:
    # psutil.wait_procs sleeps in coarse steps for processes that are not our children;
    # a 50 ms poll makes `down` several seconds faster.
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _alive(p)]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def service_tree(config: StackConfig, name: str) -> list[psutil.Process]:
    """The running process of ``name`` and all its descendants (for memory accounting)."""
    pid = read_pid(config, name)
    return _group_members(pid) if pid else []


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    config: StackConfig | None = None,
    name: str | None = None,
    interval: float = 0.25,
) -> float:
    """Poll ``check`` until it is true; return the seconds waited.

    Raises
    ------
    ServiceStartError
        On timeout, or when the service process ``name`` died meanwhile (with its log path).
    """
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        if config is not None and name is not None and read_pid(config, name) is None:
            raise ServiceStartError(
                f"{name} exited before it became healthy", log=log_file(config, name)
            )
        if time.monotonic() - started > timeout:
            context: dict[str, object] = {"timeout_s": timeout}
            if config is not None and name is not None:
                context["log"] = log_file(config, name)
            raise ServiceStartError(f"{what} not ready", **context)
        time.sleep(interval)


def base_env(**extra: str) -> dict[str, str]:
    """A minimal environment for services: PATH, locale, no telemetry, plus ``extra``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "DO_NOT_TRACK": "1",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.update(extra)
    return env


def leftover_processes(config: StackConfig) -> list[psutil.Process]:
    """Processes that belong to this stack (by command line or environment) and still run.

    ``down`` uses it as a final check: a flow-run subprocess that escaped its worker's
    process group would otherwise survive unnoticed.
    """
    root = str(config.root)
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == me:
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if root in cmdline:
                found.append(proc)
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if any(
            env.get(key, "").startswith(root)
            for key in ("HOME", "ORDINAL_STACK_ROOT", "PREFECT_HOME")
        ):
            found.append(proc)
    return found


def kill_leftovers(config: StackConfig, timeout: float = 10.0) -> list[int]:
    """Terminate, then kill, every leftover process of the stack; return their pids."""
    procs = leftover_processes(config)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in procs]
