"""Bring the whole stack up, down, and report its health.

Start order follows dependencies (PostgreSQL, S3, Prefect, MLflow, proxy, pools, workers);
stop order is the reverse, workers first so no flow run is cut off by a vanished API.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import psutil

from pipelines.stack import (
    ca,
    mlflow_server,
    postgres,
    prefect_server,
    procs,
    proxy,
    s3,
    workers,
)
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import ensure_secrets

SERVICES = ("postgres", "s3", "prefect", "mlflow", "proxy")


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``ordinal stack status``: no secrets, only health and where to reach it."""

    name: str
    running: bool
    healthy: bool
    url: str
    pid: int | None
    log: str
    detail: str = ""


def _start_side_by_side(config: StackConfig) -> None:
    prefect_server.launch(config)
    mlflow_server.launch(config)
    prefect_server.wait_ready(config)
    mlflow_server.wait_ready(config)


def _deploy(config: StackConfig) -> None:
    from pipelines.release.schedules import deploy_release_schedules
    from pipelines.stack import operations, smoke

    # Prefect's deploy prints a table per deployment; `up` reports its own summary.
    with contextlib.redirect_stdout(io.StringIO()):
        smoke.deploy(config)
        operations.deploy_operations(config)
        # Nightly parity and quarterly resilience on the releases bucket; reports under the
        # root, failures through the stack's alert channels (docs/release.md).
        deploy_release_schedules(
            f"s3://{s3.RELEASES_BUCKET}",
            report_dir=str(config.path("reports", "release")),
            config=config,
            wheel_cache=str(config.path("cache", "wheels")),
        )


@contextlib.contextmanager
def _locked(config: StackConfig) -> Iterator[None]:
    """Serialise ``up`` and ``down`` on one root (two terminals, a timer and a human)."""
    config.root.mkdir(parents=True, exist_ok=True)
    with (config.root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(config: StackConfig, *, with_workers: bool = True, deploy: bool = True) -> dict[str, float]:
    """Start every service that is not running; idempotent. Return seconds per step."""
    with _locked(config):
        return _up(config, with_workers=with_workers, deploy=deploy)


def _up(config: StackConfig, *, with_workers: bool, deploy: bool) -> dict[str, float]:
    timings: dict[str, float] = {}
    config.save()
    config.root.chmod(0o711)  # others may traverse (postgres user), not list
    ensure_secrets(config)
    ca.ensure_ca(config)
    steps = [
        ("postgres", lambda: (postgres.start(config), postgres.ensure_databases(config))),
        # The buckets come from the storage module: its apply (a minute or two on a fresh
        # S3, nothing when its state is current) runs while the other services start.
        ("s3", lambda: s3.start(config, background=True)),
        # Prefect and MLflow only need PostgreSQL and S3: start both, then wait for both.
        ("prefect+mlflow", lambda: _start_side_by_side(config)),
        ("proxy", lambda: proxy.start(config)),
    ]
    if with_workers:
        steps.append(("pools", lambda: workers.apply_pools(config)))
        steps.append(("workers", lambda: workers.start_all(config)))
    if with_workers and deploy:
        steps.append(("deployments", lambda: _deploy(config)))
    steps.append(("s3-storage", lambda: s3.wait_storage(config)))
    try:
        for name, step in steps:
            started = time.monotonic()
            step()
            timings[name] = time.monotonic() - started
    finally:  # a failed step must not leave the apply running unseen
        with contextlib.suppress(Exception):
            s3.wait_storage(config)
    return timings


def down(config: StackConfig) -> list[str]:
    """Stop workers, then services in reverse order; return what was stopped."""
    with _locked(config):
        return _down(config)


def _down(config: StackConfig) -> list[str]:
    stopped = list(workers.stop_all(config))
    for name in reversed(SERVICES):
        if procs.stop(config, name):
            stopped.append(name)
    # Anything still carrying the stack's root (an orphaned flow-run subprocess, a
    # restore-drill server) is stopped too: `down` leaves no process behind.
    for pid in procs.kill_leftovers(config):
        stopped.append(f"leftover:{pid}")
    return stopped


def _probe(check) -> tuple[bool, str]:
    try:
        return bool(check()), ""
    except Exception as exc:
        return False, type(exc).__name__


def status(config: StackConfig) -> list[ServiceStatus]:
    """Health and URL of every service and worker."""
    checks = {
        "postgres": (
            postgres.is_ready,
            f"postgresql://{config.host}:{config.ports.get('postgres')}",
        ),
        "s3": (s3.is_ready, config.s3_url if config.ports else ""),
        "prefect": (proxy_prefect_ok, config.prefect_api_url if config.ports else ""),
        "mlflow": (mlflow_server.is_ready, config.mlflow_url if config.ports else ""),
        "proxy": (proxy.is_ready, f"https://{config.host}:{config.ports.get('prefect_https')}"),
    }
    rows = []
    for name, (check, url) in checks.items():
        pid = procs.read_pid(config, name)
        external = name == "s3" and config.s3_endpoint is not None
        healthy, detail = _probe(lambda c=check: c(config)) if (pid or external) else (False, "")
        if name == "proxy" and healthy:
            info = ca.cert_info(ca.server_paths(config)[0])
            detail = f"cert serial {info.serial:x}, {info.days_left():.1f} days left"
        rows.append(
            ServiceStatus(
                name=name,
                running=pid is not None or external,
                healthy=healthy,
                url=url,
                pid=pid,
                log=str(procs.log_file(config, name)),
                detail=detail,
            )
        )
    rows.extend(workers.status(config))
    return rows


def proxy_prefect_ok(config: StackConfig) -> bool:
    """Prefect health on its private port (the proxy row checks the TLS path)."""
    return prefect_server.is_ready(config)


def status_dicts(config: StackConfig) -> list[dict]:
    """``status`` as plain dicts for ``--json``."""
    return [asdict(row) for row in status(config)]


def resident_memory(config: StackConfig) -> int:
    """Resident memory (bytes) of every process the stack runs, children included."""
    names = [*SERVICES, *workers.worker_names(config)]
    seen: set[int] = set()
    total = 0
    for name in names:
        for proc in procs.service_tree(config, name):
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
    return total
