"""Long-lived Prefect workers bound to their pools, supervised like the other services."""

from __future__ import annotations

import datetime as dt
import sys

import httpx

from pipelines.stack import ca, pools, prefect_server, procs
from pipelines.stack.config import StackConfig


def apply_pools(config: StackConfig) -> dict[str, list[str]]:
    """Apply the declarative pools file (see :mod:`pipelines.stack.pools`)."""
    return pools.apply_pools(config)


def worker_specs(config: StackConfig) -> list[tuple[str, pools.PoolSpec]]:
    """(worker name, pool) for every worker the pools file asks for."""
    spec = pools.load_pools(pools.pools_file(config))
    return [
        (f"worker-{pool.name}-{index}", pool)
        for pool in spec.pools
        for index in range(1, pool.workers + 1)
    ]


def worker_names(config: StackConfig) -> list[str]:
    """Names of the configured workers (also their process and log names)."""
    return [name for name, _ in worker_specs(config)]


def worker_env(config: StackConfig) -> dict[str, str]:
    """Worker (and flow-run) environment: the TLS API URL, auth, CA and poll interval."""
    return procs.base_env(
        HOME=str(config.path("home")),
        ORDINAL_STACK_ROOT=str(config.root),
        PREFECT_WORKER_QUERY_SECONDS=str(config.worker_query_seconds),
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        PREFECT_LOGGING_LEVEL="INFO",
        MLFLOW_TRACKING_URI=config.mlflow_url,
        REQUESTS_CA_BUNDLE=str(config.ca_cert),
        MLFLOW_ENABLE_TELEMETRY="false",
        **prefect_server.client_env(config),
    )


def spec(config: StackConfig, name: str, pool: pools.PoolSpec) -> procs.ProcessSpec:
    """``prefect worker start`` for one pool."""
    return procs.ProcessSpec(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            pool.name,
            "--name",
            name,
            "--type",
            pool.type,
            "--limit",
            str(pool.worker_limit),
            # Only the declared queues: per-run queues (``run-*``) belong to the run's own
            # worker (pipelines.provisioning), never to a long-lived one.
            *(arg for queue in pool.queues for arg in ("--work-queue", queue.name)),
        ],
        env=worker_env(config),
        # SIGINT: the worker stops polling and lets its flow-run subprocesses finish/cancel.
        stop_signal=2,
        cwd=config.path("home"),
    )


def start_all(config: StackConfig, timeout: float = 120.0) -> list[str]:
    """Start every configured worker and wait until each has sent a heartbeat."""
    config.path("home").mkdir(parents=True, exist_ok=True)
    started = []
    for name, pool in worker_specs(config):
        procs.start(config, spec(config, name, pool))
        started.append(name)
    for name, pool in worker_specs(config):
        procs.wait_until(
            lambda n=name, p=pool.name: heartbeat_ok(config, p, n),
            timeout=timeout,
            what=f"worker {name}",
            config=config,
            name=name,
            interval=1.0,
        )
    return started


def stop_all(config: StackConfig) -> list[str]:
    """Stop every worker process (first step of ``down``)."""
    names = set(worker_names(config))
    # Also stop workers of pools removed from the file since they were started.
    run_dir = config.path("run")
    if run_dir.exists():
        names |= {p.stem for p in run_dir.glob("worker-*.pid")}
    return [name for name in sorted(names) if procs.stop(config, name)]


def _workers_online(config: StackConfig, pool: str) -> dict[str, tuple[str, float]]:
    """Worker name -> (status, last heartbeat as a Unix time) as the server sees them."""
    user, _, password = prefect_server.client_env(config)["PREFECT_API_AUTH_STRING"].partition(":")
    response = httpx.post(
        f"{config.prefect_api_url}/work_pools/{pool}/workers/filter",
        json={},
        auth=(user, password),
        verify=ca.tls_context(config),
        timeout=5,
    )
    response.raise_for_status()
    out = {}
    for worker in response.json():
        beat = worker.get("last_heartbeat_time")
        when = dt.datetime.fromisoformat(beat).timestamp() if beat else 0.0
        out[worker["name"]] = (worker.get("status") or "", when)
    return out


def _process_started(config: StackConfig, name: str) -> float | None:
    tree = procs.service_tree(config, name)
    return tree[0].create_time() if tree else None


def heartbeat_ok(config: StackConfig, pool: str, name: str) -> bool:
    """Whether the running worker process ``name`` has sent a heartbeat since it started.

    A record left ONLINE by a previous process of the same name does not count.
    """
    started = _process_started(config, name)
    state, beat = _workers_online(config, pool).get(name, ("", 0.0))
    return started is not None and state == "ONLINE" and beat >= started - 1.0


def status(config: StackConfig) -> list:
    """One status row per configured worker (process alive and server heartbeat)."""
    from pipelines.stack.stack import ServiceStatus

    rows = []
    online: dict[str, dict[str, tuple[str, float]]] = {}
    for name, pool in worker_specs(config):
        pid = procs.read_pid(config, name)
        if pool.name not in online:
            try:
                online[pool.name] = _workers_online(config, pool.name) if pid else {}
            except Exception:
                online[pool.name] = {}
        state, beat = online[pool.name].get(name, ("", 0.0))
        started = _process_started(config, name)
        fresh = started is not None and beat >= started - 1.0
        rows.append(
            ServiceStatus(
                name=name,
                running=pid is not None,
                healthy=pid is not None and state == "ONLINE" and fresh,
                url=f"pool {pool.name}",
                pid=pid,
                log=str(procs.log_file(config, name)),
                detail=state.lower(),
            )
        )
    return rows
