"""Pools and queues from the declarative file, supervised workers, smoke flows and leaks."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.stack import pools, prefect_server, procs, smoke, workers
from pipelines.stack.config import StackConfig
from pipelines.stack.errors import LeakError


async def _read_pools(names: list[str]):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        result = {}
        for name in names:
            pool = await client.read_work_pool(name)
            queues = await client.read_work_queues(work_pool_name=name)
            result[name] = (pool, {q.name: q for q in queues})
        return result


def test_pools_file_is_valid_and_declares_control_and_compute() -> None:
    spec = pools.load_pools()
    assert {p.name for p in spec.pools} == {"control", "compute"}
    assert all(p.queues and p.concurrency_limit for p in spec.pools)


def test_pools_file_rejects_duplicate_queue(tmp_path) -> None:
    bad = tmp_path / "pools.yaml"
    bad.write_text(
        "pools:\n  - name: x\n    queues:\n      - {name: a, priority: 1}\n"
        "      - {name: a, priority: 2}\n"
    )
    with pytest.raises(ValueError, match="queue twice"):
        pools.load_pools(bad)


def test_pools_and_queues_match_the_file_after_repeated_apply(stack_config: StackConfig) -> None:
    spec = pools.load_pools()
    pools.apply_pools(stack_config)  # second apply (up did the first): no duplicates, no error
    with prefect_server.client_settings(stack_config):
        live = asyncio.run(_read_pools([p.name for p in spec.pools]))
    for pool in spec.pools:
        remote, queues = live[pool.name]
        assert remote.type == "process"
        assert remote.concurrency_limit == pool.concurrency_limit
        labels = remote.base_job_template["variables"]["properties"]["labels"]["default"]
        assert labels == pool.labels
        for queue in pool.queues:
            assert queues[queue.name].concurrency_limit == queue.concurrency_limit
            assert queues[queue.name].priority == queue.priority


def test_workers_are_online_and_log_in_one_place(stack_config: StackConfig) -> None:
    names = workers.worker_names(stack_config)
    assert names
    for name, pool in workers.worker_specs(stack_config):
        assert procs.read_pid(stack_config, name)
        assert workers.heartbeat_ok(stack_config, pool.name, name)
        assert procs.log_file(stack_config, name).parent == stack_config.logs


@pytest.fixture(scope="module")
def deployed(stack_config: StackConfig) -> StackConfig:
    """``up`` deployed the smoke flows already; deploying again must be harmless."""
    smoke.deploy(stack_config)
    return stack_config


def test_smoke_deployments_are_scheduled_on_their_pools(deployed: StackConfig) -> None:
    async def read():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            out = {}
            for function, pool, queue, _ in smoke.SMOKE_DEPLOYMENTS:
                name = f"{smoke.FLOW_NAMES[function]}/{smoke.DEPLOYMENT_NAME}"
                deployment = await client.read_deployment_by_name(name)
                out[function] = (deployment, pool, queue)
            return out

    with prefect_server.client_settings(deployed):
        found = asyncio.run(read())
    for deployment, pool, queue in found.values():
        assert deployment.work_pool_name == pool
        assert deployment.work_queue_name == queue
        assert deployment.schedules and deployment.schedules[0].active


def test_smoke_flows_complete_and_leave_nothing(deployed: StackConfig) -> None:
    results = smoke.run_smoke(deployed)
    assert [r.state for r in results] == ["COMPLETED"] * 3, results


def test_failed_smoke_run_still_tears_down(deployed: StackConfig) -> None:
    (result,) = smoke.run_smoke(deployed, ("smoke_provision",), fail=True)
    assert result.state == "FAILED"  # and run_smoke's leak check passed


def test_leak_check_names_a_leftover_resource(deployed: StackConfig) -> None:
    leftover = deployed.path("smoke", "resources", "forgotten-vm")
    leftover.mkdir(parents=True)
    try:
        with pytest.raises(LeakError, match="forgotten-vm"):
            smoke.leak_check(deployed)
    finally:
        leftover.rmdir()
    smoke.leak_check(deployed)
