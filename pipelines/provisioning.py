"""Where a run's compute steps execute: one ``Provisioner`` interface, ``local`` built in.

``LocalProvisioner`` is the embedded default. Its "VM" is a Prefect worker process started
for the run, bound to a per-run queue of the ``compute`` pool; the compute steps are runs of
the ``run-compute-step`` deployment on that queue, and teardown stops the worker (and every
process under it) and removes the queue and deployment. Asked for ``in-process`` (or when the
Prefect API is not reachable over HTTP) it runs the steps in the flow's own process instead,
and says so. OpenTofu-provisioned VMs come later behind the same interface.

Teardown is idempotent and works from a fresh process: the provisioner records what it
started in ``{run_dir}/provision/state.json``, so a crash or cancellation hook can clean up.
The worker dies with the process that started it (Linux ``PR_SET_PDEATHSIG``), and a
resumed run fences what a dead owner left before it provisions (:mod:`pipelines.ownership`;
other provisioners add their teardown with ``register_fence_hook``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from pipelines.errors import PipelineError
from pipelines.notebooks import StepResult
from pipelines.ownership import die_with_parent
from pipelines.tasks import read_step_result, step_task
from pipelines.tracking import Tracking

__all__ = [
    "COMPUTE_POOL",
    "ComputeTarget",
    "InProcessTarget",
    "LocalProvisioner",
    "Provisioner",
    "WorkerTarget",
    "get_provisioner",
    "teardown_from_state",
]

log = logging.getLogger(__name__)

COMPUTE_POOL = "compute"
REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = "pipelines/tasks.py:run_compute_step"
FLOW_NAME = "run-compute-step"
STATE_FILE = "state.json"
Mode = Literal["auto", "worker", "in-process"]


class ComputeTarget(ABC):
    """Runs compute steps somewhere; ``description`` goes into the run summary."""

    kind: str
    description: str

    @abstractmethod
    def run_step(
        self,
        step: str,
        params: dict[str, Any],
        tracking: Tracking | None,
        run_name: str,
        retries: int = 0,
    ) -> StepResult:
        """Run one step's notebook there and return its result (or raise its error)."""


class Provisioner(ABC):
    """Brings up a compute target for one run and tears it down on every completion path."""

    name: str

    @abstractmethod
    def provision(self, run_name: str, run_dir: Path) -> ComputeTarget:
        """Start what the run's compute steps need."""

    @abstractmethod
    def teardown(self) -> dict[str, Any]:
        """Stop and remove everything :meth:`provision` started; safe to call twice."""


class InProcessTarget(ComputeTarget):
    """Compute steps as tasks of the flow itself (no worker, no separate machine)."""

    kind = "in-process"

    def __init__(self, reason: str) -> None:
        self.description = f"in-process ({reason})"

    def run_step(self, step, params, tracking, run_name, retries=0):
        runner = step_task(step, params, retries=retries, retry_delay_seconds=1)
        return runner(step, params, tracking, run_name)


class WorkerTarget(ComputeTarget):
    """Compute steps as runs of the ``run-compute-step`` deployment on the run's own queue."""

    kind = "worker"

    def __init__(
        self,
        deployment: str,
        queue: str,
        worker: str,
        run_dir: Path,
        process: subprocess.Popen | None = None,
    ) -> None:
        self.deployment = deployment
        self.queue = queue
        self.description = f"Prefect worker {worker} on {COMPUTE_POOL}/{queue}"
        self.run_dir = run_dir
        self.process = process
        self.log_path = run_dir / "provision" / "worker.log"

    def run_step(self, step, params, tracking, run_name, retries=0):
        from prefect.deployments import run_deployment

        (self.run_dir / step / "result.json").unlink(missing_ok=True)
        flow_run = run_deployment(
            name=f"{FLOW_NAME}/{self.deployment}",
            parameters={
                "step": step,
                "params": params,
                # The tracking URI (it may hold credentials) reaches the worker through its
                # environment, not through stored and displayed flow-run parameters.
                "tracking": None if tracking is None else {**tracking.__dict__, "tracking_uri": ""},
                "run_name": run_name,
                "retries": retries,
            },
            timeout=0,  # only create the run; wait below, where a signal can interrupt
            flow_run_name=f"{run_name}-{step}",
        )
        state = _wait_final(flow_run.id, self.process, self.log_path)
        log.info("compute step %s finished on the worker: %s", step, state)
        try:
            return read_step_result(self.run_dir, step)
        except PipelineError as exc:
            if (self.run_dir / step / "result.json").is_file():
                raise  # the step's own failure
            raise PipelineError(
                f"{exc} (flow run {state}); worker log: {_tail(self.log_path)}"
            ) from None


def _wait_final(
    flow_run_id: Any, process: subprocess.Popen | None, log_path: Path, poll: float = 1.0
) -> str:
    """Wait in this thread for a flow run to end; on an interrupt, cancel it and re-raise.

    Waiting here rather than inside ``run_deployment`` keeps SIGINT/SIGTERM effective: the
    flow's ``finally`` (teardown) runs at once.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        try:
            while True:
                state = client.read_flow_run(flow_run_id).state
                if state is not None and state.is_final():
                    return state.name
                if process is not None and process.poll() is not None:
                    raise PipelineError(
                        f"the run's worker exited ({process.returncode}) during a step: "
                        f"{_tail(log_path)}"
                    )
                time.sleep(poll)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_flow_run_state(flow_run_id, Cancelling(), force=True)
            raise


def _api_url() -> str | None:
    """The Prefect API this process talks to, if it is an HTTP server (also a temporary one)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url or "")
    return url if url.startswith(("http://", "https://")) else None


class LocalProvisioner(Provisioner):
    """The embedded default: a Prefect worker process for the run stands in for a VM."""

    name = "local"

    def __init__(self, mode: Mode = "auto", start_timeout: float = 90.0) -> None:
        if mode not in ("auto", "worker", "in-process"):
            raise ValueError(f"mode must be auto, worker or in-process, got {mode!r}")
        self.mode = mode
        self.start_timeout = start_timeout
        self.state_path: Path | None = None

    def provision(self, run_name: str, run_dir: Path) -> ComputeTarget:
        if self.mode == "in-process":
            return InProcessTarget("asked for")
        api = _api_url()
        if api is None:
            if self.mode == "worker":
                raise PipelineError("a worker needs a Prefect API over HTTP; none is configured")
            return InProcessTarget("no Prefect server reachable over HTTP")
        folder = run_dir / "provision"
        folder.mkdir(parents=True, exist_ok=True)
        self.state_path = folder / STATE_FILE
        # A resumed run whose control process was killed outright may have left a worker.
        leftover = teardown_from_state(self.state_path)
        if leftover.get("started") != "nothing":
            log.warning("tore down a worker left by an earlier attempt: %s", leftover)
        queue = f"run-{run_name}"
        worker = f"ordinal-{run_name}"
        deployment_id = self._deploy(queue)
        state: dict[str, Any] = {
            "api_url": api,
            "queue": queue,
            "deployment": queue,
            "deployment_id": deployment_id,
            "worker": worker,
        }
        _write_state(self.state_path, state)
        env = dict(os.environ, PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="1")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                COMPUTE_POOL,
                "--work-queue",
                queue,
                "--name",
                worker,
                "--type",
                "process",
                "--limit",
                "1",
            ],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # teardown stops the worker's whole process group
            # Dies with this process (Linux): a kill -9 of the orchestrator leaves no worker.
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        threading.Thread(
            target=_tee, args=(process, folder / "worker.log"), daemon=True, name=worker
        ).start()
        state["pid"] = process.pid
        _write_state(self.state_path, state)
        self._wait_online(worker, process, folder / "worker.log")
        return WorkerTarget(queue, queue, worker, run_dir, process)

    def _deploy(self, queue: str) -> str:
        from prefect import flow as prefect_flow
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                client.read_work_pool(COMPUTE_POOL)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=COMPUTE_POOL, type="process"))
        remote = prefect_flow.from_source(source=str(REPO_ROOT), entrypoint=ENTRYPOINT)
        deployment_id = remote.deploy(
            name=queue,
            work_pool_name=COMPUTE_POOL,
            work_queue_name=queue,
            tags=["ordinal", "compute"],
            print_next_steps=False,
            ignore_warnings=True,
        )
        return str(deployment_id)

    def _wait_online(self, worker: str, process: subprocess.Popen, log_path: Path) -> None:
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PipelineError(
                    f"worker {worker} exited with {process.returncode}: {_tail(log_path)}"
                )
            with get_client(sync_client=True) as client:
                workers = client.read_workers_for_work_pool(COMPUTE_POOL)
            if any(w.name == worker and str(w.status).endswith("ONLINE") for w in workers):
                return
            time.sleep(0.5)
        raise PipelineError(
            f"worker {worker} did not come online in {self.start_timeout:.0f} s: {_tail(log_path)}"
        )

    def teardown(self) -> dict[str, Any]:
        if self.state_path is None:
            return {"provisioner": self.name, "started": "nothing"}
        return teardown_from_state(self.state_path)


# Prefect's log lines ("12:00:01.234 | INFO    | Task run 'train' - ..."): the progress
# of the compute steps, shown on the console as well as kept in worker.log.
_PROGRESS = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| (INFO|WARNING|ERROR|CRITICAL) ")


def _tee(process: subprocess.Popen, log_path: Path) -> None:
    """Copy the worker's output to ``worker.log``; echo its Prefect log lines."""
    assert process.stdout is not None
    with log_path.open("ab") as log_file:
        for line in process.stdout:
            log_file.write(line)
            log_file.flush()
            text = line.decode("utf-8", errors="replace")
            if _PROGRESS.match(text):
                sys.stdout.write(f"[worker] {text}")
                sys.stdout.flush()


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(path)


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return "(no worker log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stop_group(pid: int, timeout: float = 20.0) -> bool:
    """SIGINT the worker (it stops polling), then SIGKILL its process group if still there."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def teardown_from_state(state_path: Path) -> dict[str, Any]:
    """Stop the worker recorded in ``state_path``; delete its deployment and queue.

    Idempotent: a second call finds nothing to do. Works from any process (crash hooks).
    """
    if not state_path.is_file():
        return {"provisioner": "local", "started": "nothing"}
    state = json.loads(state_path.read_text(encoding="utf-8"))
    report: dict[str, Any] = {"provisioner": "local", "worker": state.get("worker")}
    pid = state.get("pid")
    report["worker_stopped"] = bool(pid) and _stop_group(int(pid))
    report.update(_remove_server_objects(state))
    state_path.unlink(missing_ok=True)
    return report


def _remove_server_objects(state: dict[str, Any]) -> dict[str, Any]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    out: dict[str, Any] = {}
    try:
        with get_client(sync_client=True) as client:
            try:
                client.delete_deployment(UUID(state["deployment_id"]))
                out["deployment_deleted"] = True
            except ObjectNotFound:
                out["deployment_deleted"] = False
            queues = client.read_work_queues(work_pool_name=COMPUTE_POOL)
            for queue in queues:
                if queue.name == state["queue"]:
                    client.delete_work_queue_by_id(queue.id)
                    out["queue_deleted"] = True
    except Exception as exc:  # the server may be gone already; the process is what matters
        log.warning("could not remove the run's deployment/queue: %s", exc)
        out["server_cleanup_error"] = str(exc)
    return out


def get_provisioner(name: str, **options: Any) -> Provisioner:
    """The provisioner called ``name`` (only ``local`` for now)."""
    if name == "local":
        return LocalProvisioner(**options)
    raise PipelineError(f"unknown provisioner {name!r}; available: ['local']")
