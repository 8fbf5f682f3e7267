"""Chaos on the stack: a PostgreSQL restart and a Prefect-server restart in the middle of a run.

The run is ``ordinal run --stack`` on the real control plane (Prefect on PostgreSQL behind the
TLS proxy, the MLflow server, the stack's S3 data bucket) with the stand-in step notebooks
and the run's own Prefect worker. At a seeded unit of the training step the test restarts
PostgreSQL (stop, start: every database connection of Prefect and MLflow breaks) or the
Prefect server (stop, start: the worker and the flow run lose their API for as long as it
takes), lets the run end (it may survive), and resumes it under the same id. Assertions are
the suite's (``check_resumed``), with the leftovers and the MLflow runs read from the stack:
no deployment or work queue of the run on the stack's Prefect, no process in the run folder,
one parent run on the stack's MLflow server.

One stack for both faults (started by this module, about a minute, and stopped when its
tests end, checked for leftover processes as ``tests/stack`` does); these cells belong to
the full matrix only (``make chaos``).
"""

from __future__ import annotations

import os
import zlib

import pytest

from pipelines.stack import postgres, prefect_server, procs
from pipelines.stack.config import StackConfig
from tests.chaos.faults import inject_during
from tests.chaos.harness import check_resumed, env_for
from tests.pipelines.helpers import ORDINAL, processes_inside
from tests.stack.conftest import _make_root, _teardown

pytestmark = [pytest.mark.slow, pytest.mark.chaos_full]


@pytest.fixture(scope="module")
def stack_config():
    """A running stack for this module's tests, always stopped after them."""
    import shutil

    from pipelines.stack import stack
    from pipelines.stack.config import load_config

    base = _make_root("ordinal-chaos-stack-")
    config = load_config(base / "stack")
    try:
        stack.up(config)
        yield config
    finally:
        _, leftovers = _teardown(config)
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"processes left after down: {leftovers}"


STEP = "train"


def _args(run_id: str, config: StackConfig) -> list[str]:
    return [str(ORDINAL), "run", "--stack", "--stack-root", str(config.root), "--run-id",
            run_id, "--compute", "worker", "--model", "bert-tiny", "--set", "seed=7"]  # fmt: skip


def _leftovers(config: StackConfig, home, run_id: str) -> dict[str, list[str]]:
    """What the run left: processes in its folder; its deployment and queue on the stack."""
    from prefect.client.orchestration import get_client

    out = {"processes": processes_inside(home / "runs" / run_id)}
    with prefect_server.client_settings(config), get_client(sync_client=True) as client:
        name = f"run-{run_id}"
        out["queues"] = [q.name for q in client.read_work_queues(work_pool_name="compute")
                         if q.name == name]  # fmt: skip
        out["deployments"] = [d.name for d in client.read_deployments() if d.name == name]
    return out


def _mlflow_runs(config: StackConfig, monkeypatch) -> list:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(config.ca_cert))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow_url)
    exp = client.get_experiment_by_name("ordinal-pipeline")
    return client.search_runs([exp.experiment_id], max_results=500)


def _restart(config: StackConfig, service: str) -> dict:
    import time

    old = procs.read_pid(config, service)
    t0 = time.monotonic()
    procs.stop(config, service)
    (postgres if service == "postgres" else prefect_server).start(config)
    assert procs.read_pid(config, service) != old
    return {"restarted": service, "down_seconds": round(time.monotonic() - t0, 1)}


@pytest.mark.parametrize("service", ["postgres", "prefect"])
def test_a_stack_service_restart_mid_run_then_resume(
    service,
    stack_config,
    home,
    notebooks,
    reference,
    tmp_path,
    monkeypatch,
):
    run_id = f"chaos-{service}-restart"
    env = env_for(home, notebooks, True)
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "run.log"
    seed = zlib.crc32(f"{service}-restart:{STEP}".encode())
    result = inject_during(
        f"{service} restart", STEP, seed, run_id, home, _args(run_id, stack_config), env, log,
        lambda: _restart(stack_config, service),
    )  # fmt: skip
    assert os.path.getsize(log) > 0
    check_resumed(
        result, home, reference, STEP,
        left=_leftovers(stack_config, home, run_id),
        runs=_mlflow_runs(stack_config, monkeypatch),
    )  # fmt: skip
