"""The compute target on a provisioned VM: runs of ``run-compute-step`` on the VM's queue.

The VM's user-data starts a Prefect worker named ``ordinal-<run>-<stage>`` on the queue
``run-<run>-<stage>`` of the ``compute`` pool. This module deploys the compute-step flow on
that queue, waits until the worker is ONLINE, and returns the existing
:class:`pipelines.provisioning.WorkerTarget` (the same one the ``local`` provisioner uses).
"""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.errors import PipelineError
from pipelines.provision.tofu import VmRecord

__all__ = ["wait_worker_online", "worker_target"]


def wait_worker_online(pool: str, worker: str, timeout: float = 300.0) -> float:
    """Wait until the Prefect server reports ``worker`` ONLINE in ``pool``; return seconds."""
    from prefect.client.orchestration import get_client

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with get_client(sync_client=True) as client:
            workers = client.read_workers_for_work_pool(pool)
        if any(w.name == worker and str(w.status).endswith("ONLINE") for w in workers):
            return time.monotonic() - started
        time.sleep(1.0)
    raise PipelineError(f"worker {worker} on the VM did not come online in {timeout:.0f} s")


def worker_target(record: VmRecord, run_dir: Path, timeout: float = 300.0):
    """Deploy the compute-step flow on the VM's queue and return a ``WorkerTarget``."""
    from pipelines.provisioning import COMPUTE_POOL, LocalProvisioner, WorkerTarget

    queue = record.work_queue or f"run-{record.run_id}-{record.stage}"
    LocalProvisioner()._deploy(queue)  # same deployment shape as the local provisioner
    worker = f"ordinal-{record.run_id}-{record.stage}"
    wait_worker_online(COMPUTE_POOL, worker, timeout)
    target = WorkerTarget(queue, queue, worker, Path(run_dir))
    target.description = (
        f"{record.instance_type} {record.market} VM {record.instance_id} "
        f"(Prefect worker {worker} on {COMPUTE_POOL}/{queue})"
    )
    return target
