"""Deploy the smoke flows to the pools, run them, and check nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipelines.stack import prefect_server, procs
from pipelines.stack.config import StackConfig
from pipelines.stack.errors import LeakError, StackError

SOURCE_DIR = Path(__file__).resolve().parent / "flows"
DEPLOYMENT_NAME = "smoke"
# (flow function, pool, queue, cron): smoke runs every six hours, staggered.
SMOKE_DEPLOYMENTS = (
    ("smoke_provision", "control", "default", "7 */6 * * *"),
    ("smoke_train", "compute", "default", "17 */6 * * *"),
    ("smoke_teardown", "control", "default", "27 */6 * * *"),
)
FLOW_NAMES = {
    "smoke_provision": "stack-smoke-provision",
    "smoke_train": "stack-smoke-train",
    "smoke_teardown": "stack-smoke-teardown",
}
UNFINISHED = ("PENDING", "RUNNING", "CANCELLING")


@dataclass(frozen=True)
class SmokeResult:
    """Outcome of one smoke run and its leak check."""

    flow: str
    flow_run_id: str
    state: str
    seconds: float
    message: str = ""


def deploy(config: StackConfig) -> list[str]:
    """Deploy (idempotently) every smoke flow to its pool and queue, with its schedule."""
    from prefect import flow as prefect_flow

    ids = []
    with prefect_server.client_settings(config):
        for function, pool, queue, cron in SMOKE_DEPLOYMENTS:
            remote = prefect_flow.from_source(
                source=str(SOURCE_DIR), entrypoint=f"smoke_flows.py:{function}"
            )
            deployment_id = remote.deploy(
                name=DEPLOYMENT_NAME,
                work_pool_name=pool,
                work_queue_name=queue,
                cron=cron,
                parameters={"root": str(config.root), "tag": "scheduled"}
                if function != "smoke_teardown"
                else {"root": str(config.root)},
                tags=["smoke", f"pool:{pool}"],
                print_next_steps=False,
                ignore_warnings=True,
            )
            ids.append(str(deployment_id))
    return ids


async def _run_and_wait(name: str, parameters: dict, timeout: float) -> tuple[str, str, float, str]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.monotonic()
    flow_run = await run_deployment(name=name, parameters=parameters, timeout=0)
    async with get_client() as client:
        while True:
            current = await client.read_flow_run(flow_run.id)
            if current.state is not None and current.state.is_final():
                return (
                    str(flow_run.id),
                    current.state.type.value,
                    time.monotonic() - started,
                    current.state.message or "",
                )
            if time.monotonic() - started > timeout:
                raise StackError("smoke run did not finish", flow_run=flow_run.id, deployment=name)
            await asyncio.sleep(1.0)


async def _unfinished_runs() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES.values()))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(s) for s in UNFINISHED])
                )
            ),
        )
    return [f"{run.name}:{run.state_type.value if run.state_type else '?'}" for run in runs]


def leak_check(config: StackConfig, worker_names: list[str] | None = None) -> None:
    """Fail if a smoke flow run is unfinished or a smoke resource/process is left.

    Raises
    ------
    LeakError
        With the unfinished runs, leftover resources and stray flow-run processes.
    """
    from pipelines.stack import workers

    with prefect_server.client_settings(config):
        unfinished = asyncio.run(_unfinished_runs())
    base = config.path("smoke", "resources")
    resources = sorted(p.name for p in base.iterdir()) if base.exists() else []
    scratch = [p.name for p in config.path("smoke").glob("smoke-*")]
    stray = []
    for name in worker_names or workers.worker_names(config):
        tree = procs.service_tree(config, name)
        # The worker itself is expected; any descendant is a flow run still executing.
        stray.extend(p.pid for p in tree[1:])
    if unfinished or resources or scratch or stray:
        raise LeakError(
            "smoke run left something behind",
            unfinished_runs=unfinished,
            resources=resources + scratch,
            flow_run_processes=stray,
        )


def run_smoke(
    config: StackConfig,
    flows: tuple[str, ...] = ("smoke_provision", "smoke_train", "smoke_teardown"),
    *,
    fail: bool = False,
    timeout: float = 300.0,
) -> list[SmokeResult]:
    """Run smoke deployments now (in parallel), wait for them, then run the leak check."""
    tag = uuid.uuid4().hex[:8]

    async def run_all() -> list[tuple[str, str, float]]:
        jobs = []
        for function in flows:
            params: dict = {"root": str(config.root)}
            if function != "smoke_teardown":
                params["tag"] = tag
            if function == "smoke_provision" and fail:
                params["fail"] = True
            jobs.append(_run_and_wait(f"{FLOW_NAMES[function]}/{DEPLOYMENT_NAME}", params, timeout))
        return await asyncio.gather(*jobs)

    with prefect_server.client_settings(config):
        outcomes = asyncio.run(run_all())
    # Give the worker a moment to reap the flow-run subprocess before counting strays;
    # on timeout leak_check names the stray processes.
    with contextlib.suppress(StackError):
        procs.wait_until(
            lambda: _no_stray(config), timeout=30, what="flow-run subprocesses to exit"
        )
    leak_check(config)
    return [
        SmokeResult(flow=f, flow_run_id=i, state=s, seconds=t, message=m)
        for f, (i, s, t, m) in zip(flows, outcomes, strict=True)
    ]


def _no_stray(config: StackConfig) -> bool:
    from pipelines.stack import workers

    return all(len(procs.service_tree(config, n)) <= 1 for n in workers.worker_names(config))
