"""Who owns a run: an owner lease with a heartbeat, fencing of a dead (or displaced) owner.

A run's folder holds ``owner.json``: the owning ``ordinal run`` process (host, pid, process
start time, a random token), since when, and a heartbeat renewed while it runs. Every process
the owner starts (the temporary Prefect API server, the run's worker, the flow-run process
under it, the notebook kernels) inherits the token in its environment (``ORDINAL_RUN_OWNER``),
which is how a later owner finds them even after they were re-parented to ``init``.

:func:`acquire_run` is the first thing a run does:

* no owner, or the recorded owner is dead: fence it (stop every process carrying its token,
  the worker's process group and the deployment/queue recorded in ``provision/state.json``,
  the VMs of any registered provisioner teardown), then take the lease;
* the owner is alive: refuse with :class:`RunOwnedError` naming it (host, pid, since), unless
  ``takeover`` is asked for, in which case the live owner is fenced first (SIGTERM, then
  SIGKILL of its process group after a grace period).

Where the OS allows it (Linux ``PR_SET_PDEATHSIG``) children die with their parent, and a
small guard process sweeps the token's processes when the owner dies, so even a run that is
never resumed leaves no server or worker behind.

Liveness: on the same host, the recorded pid must exist with the recorded start time (a
reused pid is not the owner). On another host (a shared run folder), the heartbeat must be
younger than ``stale_after`` seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipelines.errors import PipelineError

__all__ = [
    "OWNER_ENV",
    "OWNER_FILE",
    "OwnerRecord",
    "RunOwnedError",
    "RunOwnership",
    "acquire_run",
    "current_ownership",
    "die_with_parent",
    "fence_owner",
    "kill_token_processes",
    "owner_alive",
    "read_owner",
    "register_fence_hook",
]

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
LOCK_FILE = ".owner.lock"
OWNER_ENV = "ORDINAL_RUN_OWNER"
#: Set to "0" to start no guard process (tests of the resume-side fencing use it).
GUARD_ENV = "ORDINAL_RUN_GUARD"
PR_SET_PDEATHSIG = 1

#: Teardowns of what other provisioners started (VMs): ``fn(run_dir, record) -> report``.
#: Called when a dead or displaced owner is fenced, after its local processes are stopped.
_FENCE_HOOKS: list[Callable[[Path, OwnerRecord], dict[str, Any]]] = []

try:  # resolved here, not in the forked child: a preexec_fn must not import or lock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent dies (Linux only).

    Returns None where the OS has no parent-death signal. Only a pre-resolved foreign call
    runs in the forked child, so it is safe although the parent has threads.
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        # The signal follows the thread that forked the child: a worker thread's exit
        # would kill it mid-run.
        return None
    parent = os.getpid()

    def _set() -> None:
        _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), int(sig))

    return _set


class RunOwnedError(PipelineError):
    """The run is owned by a live process; names it (host, pid, since)."""

    def __init__(self, run_dir: Path, owner: OwnerRecord) -> None:
        self.run_dir = run_dir
        self.owner = owner
        super().__init__(
            f"run {run_dir.name} is being run by pid {owner.pid} on {owner.host} since "
            f"{owner.since} (last heartbeat {owner.heartbeat_age():.0f} s ago); wait for it, "
            f"stop it, or pass --takeover to fence it and take the run over"
        )


@dataclass
class OwnerRecord:
    """One owner of a run, as ``owner.json`` records it."""

    host: str
    pid: int
    start_time: float
    token: str
    since: str
    heartbeat: float
    heartbeat_interval: float = 10.0
    #: Processes the owner started that are not under the worker: ``{name: [pid, start]}``.
    children: dict[str, list[float]] = field(default_factory=dict)
    #: The owner ended in order; its record stays so that a leftover (a kernel of a step
    #: that failed as its worker died) is still found by the token.
    released: bool = False

    def heartbeat_age(self) -> float:
        """Seconds since the last heartbeat."""
        return max(0.0, time.time() - self.heartbeat)

    def describe(self) -> str:
        """``pid P on HOST since T``."""
        return f"pid {self.pid} on {self.host} since {self.since}"


def _identity(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def read_owner(run_dir: Path) -> OwnerRecord | None:
    """The recorded owner of ``run_dir`` (None: never owned, or the file is unreadable)."""
    path = Path(run_dir) / OWNER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return OwnerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_owner(run_dir: Path, record: OwnerRecord) -> None:
    path = Path(run_dir) / OWNER_FILE
    tmp = path.with_name(f".{OWNER_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave no partial file behind
        raise


def owner_alive(record: OwnerRecord, stale_after: float | None = None) -> bool:
    """Whether ``record``'s process still runs (same host) or still beats (another host)."""
    if record.host == socket.gethostname():
        started = _identity(record.pid)
        return started is not None and abs(started - record.start_time) < 0.05
    limit = stale_after if stale_after is not None else 3 * record.heartbeat_interval
    return record.heartbeat_age() < limit


def _is_ancestor_or_self(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        me = psutil.Process()
        return pid == me.pid or pid in {p.pid for p in me.parents()}
    return False


def kill_token_processes(
    token: str, grace: float = 5.0, spare: frozenset[int] = frozenset()
) -> list[int]:
    """SIGTERM every process whose environment carries ``token``, SIGKILL the rest after
    ``grace`` seconds; returns their pids. Never this process, its ancestors or ``spare``."""
    if not token:
        return []
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in spare or _is_ancestor_or_self(proc.pid):
            continue
        try:
            if proc.environ().get(OWNER_ENV) == token:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    alive = _wait_gone(found, grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_gone(alive, 5.0)
    return sorted(p.pid for p in found)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` exited (a zombie whose new parent has not reaped it counts)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _stop_owner(record: OwnerRecord, grace: float) -> str:
    """SIGTERM a live owner (its own teardown runs), then SIGKILL its process group."""
    try:
        proc = psutil.Process(record.pid)
    except psutil.Error:
        return "gone"
    proc.terminate()
    try:
        proc.wait(grace)
        return "terminated"
    except psutil.TimeoutExpired:
        pass
    try:
        group = os.getpgid(record.pid)
    except OSError:
        return "gone"
    if group != os.getpgid(0) and group == record.pid:  # its own group: kill all of it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    else:  # it shares our group (a test harness): only the process itself
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(psutil.Error):
        proc.wait(10)
    return "killed"


def register_fence_hook(hook: Callable[[Path, OwnerRecord], dict[str, Any]]) -> None:
    """Add a teardown run when an owner is fenced (e.g. the ``tofu`` provisioner's VMs,
    torn down from the state it recorded in the run folder)."""
    if hook not in _FENCE_HOOKS:
        _FENCE_HOOKS.append(hook)


def fence_owner(
    run_dir: Path, record: OwnerRecord, *, live: bool = False, grace: float = 15.0
) -> dict[str, Any]:
    """Stop everything ``record``'s owner started; the run folder is then safe to reuse.

    ``live``: the owner itself still runs (a takeover): SIGTERM it, SIGKILL its process group
    after ``grace`` seconds. Then every process carrying its token (server, worker, flow-run
    process, kernels) is stopped, the worker recorded in ``provision/state.json`` is torn
    down with its deployment and queue, and the registered hooks (VMs) run.
    """
    from pipelines.provisioning import teardown_from_state

    started = time.perf_counter()
    report: dict[str, Any] = {"owner": record.describe()}
    if live:
        report["owner_stopped"] = _stop_owner(record, grace)
    report["processes_killed"] = kill_token_processes(record.token)
    for name, (pid, start) in record.children.items():  # recorded, in case env was unreadable
        now = _identity(int(pid))
        if now is not None and abs(now - start) < 0.05:
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(pid)).kill()
                report.setdefault("children_killed", []).append(name)
    report["worker"] = teardown_from_state(Path(run_dir) / "provision" / "state.json")
    for hook in _FENCE_HOOKS:
        try:
            report[getattr(hook, "__name__", "hook")] = hook(Path(run_dir), record)
        except Exception as exc:  # report, and go on fencing the rest
            report[getattr(hook, "__name__", "hook")] = {"error": str(exc)}
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


@contextlib.contextmanager
def _acquisition_lock(run_dir: Path, timeout: float = 30.0) -> Iterator[None]:
    """Serialise two ``ordinal run --run-id X`` starting at once (a short, local lock)."""
    fd = os.open(Path(run_dir) / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PipelineError(
                        f"another process is taking over run {Path(run_dir).name}"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


class RunOwnership:
    """This process's lease on a run: heartbeat thread, guard process, release.

    ``lost`` becomes True when another owner displaced this one (its token is no longer the
    recorded one); steps check it before they publish.
    """

    def __init__(self, run_dir: Path, record: OwnerRecord, fenced: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.record = record
        self.fenced = fenced
        self.lost = False
        self._stop = threading.Event()
        self._guard: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._beat, daemon=True, name="ordinal-owner")

    @property
    def token(self) -> str:
        """The random token of this ownership (also in the environment of its processes)."""
        return self.record.token

    def _start(self) -> None:
        self._thread.start()
        if os.environ.get(GUARD_ENV, "1") != "0" and _prctl is not None:
            self._guard = subprocess.Popen(
                [sys.executable, "-m", "pipelines.ownership", self.token],
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),
                start_new_session=True,  # a SIGINT at the terminal is the owner's to handle
            )
            self.record_child("guard", self._guard.pid)

    def _beat(self) -> None:
        while not self._stop.wait(self.record.heartbeat_interval):
            try:
                self.renew()
            except OSError as exc:  # a full disk, a lost mount: beat again next interval
                log.warning("could not renew the run's heartbeat in %s: %s", self.run_dir, exc)

    def still_owner(self) -> bool:
        """Whether ``owner.json`` still names this ownership's token."""
        current = read_owner(self.run_dir)
        return current is not None and current.token == self.token

    def renew(self) -> bool:
        """Renew the heartbeat; False (and ``lost``) when another owner took the run."""
        if self.lost:
            return False
        with _acquisition_lock(self.run_dir):
            if not self.still_owner():
                self.lost = True
                log.error("run %s was taken over by another owner", self.run_dir.name)
                return False
            self.record.heartbeat = time.time()
            _write_owner(self.run_dir, self.record)
        return True

    def record_child(self, name: str, pid: int) -> None:
        """Record a process this owner started outside the worker (the API server)."""
        start = _identity(pid)
        if start is None:
            return
        with _acquisition_lock(self.run_dir):
            if self.still_owner():
                self.record.children[name] = [pid, start]
                _write_owner(self.run_dir, self.record)

    def record_prefect_server(self) -> int | None:
        """Find this process's temporary Prefect API server (a uvicorn child) and record it."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=False):
                with contextlib.suppress(psutil.Error):
                    if "prefect.server.api.server:create_app" in " ".join(child.cmdline()):
                        self.record_child("prefect_server", child.pid)
                        return child.pid
        return None

    def release(self) -> None:
        """End the lease: stop the heartbeat, mark ``owner.json`` released if still ours."""
        global _CURRENT
        self._stop.set()
        # Orphans of this run (a step's process whose worker died under it) end with it;
        # this process's own children (the API server, still in use until exit) are spared.
        with contextlib.suppress(psutil.Error):
            mine = frozenset(p.pid for p in psutil.Process().children(recursive=True))
            swept = kill_token_processes(self.token, grace=5.0, spare=mine)
            if swept:
                log.warning("stopped processes the run left behind: %s", swept)
        with contextlib.suppress(OSError, PipelineError), _acquisition_lock(self.run_dir, 5):
            if self.still_owner():
                self.record.released = True
                self.record.heartbeat = time.time()
                _write_owner(self.run_dir, self.record)
        if self._guard is not None and self._guard.poll() is None:
            # SIGKILL: no sweep. The run ended in order; its server is still in use until exit.
            self._guard.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._guard.wait(15)
        if _CURRENT is self:
            _CURRENT = None


_CURRENT: RunOwnership | None = None


def current_ownership() -> RunOwnership | None:
    """The ownership this process holds (None: none, e.g. a worker or a test)."""
    return _CURRENT


def acquire_run(
    run_dir: Path,
    *,
    takeover: bool = False,
    heartbeat_interval: float = 10.0,
    grace: float = 15.0,
) -> RunOwnership:
    """Become the owner of ``run_dir``, fencing a dead (or, with ``takeover``, live) owner.

    Sets ``ORDINAL_RUN_OWNER`` in this process's environment so that every process started
    afterwards (the temporary Prefect server, the worker, kernels) carries the token.

    Raises
    ------
    RunOwnedError
        The recorded owner is alive and ``takeover`` is False.
    """
    global _CURRENT
    run_dir = Path(run_dir)
    if _CURRENT is not None and _CURRENT.run_dir == run_dir and not _CURRENT.lost:
        return _CURRENT  # already ours (the CLI acquired it before calling the flow)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _acquisition_lock(run_dir):
        fenced: dict[str, Any] = {}
        previous = read_owner(run_dir)
        token = secrets.token_hex(16)
        # First: a Prefect server the fencing starts (to delete the old deployment) is ours.
        before = os.environ.get(OWNER_ENV)
        os.environ[OWNER_ENV] = token
        if previous is not None:
            alive = not previous.released and owner_alive(previous)
            if alive and not takeover:
                if before is None:
                    os.environ.pop(OWNER_ENV, None)
                else:
                    os.environ[OWNER_ENV] = before
                raise RunOwnedError(run_dir, previous)
            fenced = fence_owner(run_dir, previous, live=alive, grace=grace)
            log.warning("fenced the previous owner of run %s: %s", run_dir.name, fenced)
        else:  # no owner recorded: still stop a worker a pre-lease version may have left
            state = run_dir / "provision" / "state.json"
            if state.is_file():
                from pipelines.provisioning import teardown_from_state

                fenced = {"worker": teardown_from_state(state)}
        now = time.time()
        record = OwnerRecord(
            host=socket.gethostname(),
            pid=os.getpid(),
            start_time=_identity(os.getpid()) or now,
            token=token,
            since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            heartbeat=now,
            heartbeat_interval=heartbeat_interval,
        )
        _write_owner(run_dir, record)
    ownership = RunOwnership(run_dir, record, fenced)
    _CURRENT = ownership
    ownership._start()
    return ownership


def _guard(token: str) -> None:
    """The guard process: wait for the owner's death (SIGTERM), then sweep its processes."""

    def _sweep(signum: int, frame: Any) -> None:
        kill_token_processes(token, grace=5.0)
        os._exit(0)

    signal.signal(signal.SIGTERM, _sweep)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        signal.pause()


if __name__ == "__main__":
    _guard(sys.argv[1])
