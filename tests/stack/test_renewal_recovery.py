"""Certificate renewal without dropping requests, and recovery from a PostgreSQL restart."""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from pipelines.stack import ca, postgres, procs, proxy, renew
from pipelines.stack.ca import tls_context
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret


def _hammer(config: StackConfig, stop: threading.Event, outcomes: list) -> None:
    with httpx.Client(verify=tls_context(config), timeout=10) as client:
        while not stop.is_set():
            try:
                outcomes.append(client.get(f"{config.mlflow_url}/health").status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)
            time.sleep(0.05)


def test_certificate_in_renewal_window_is_reissued_and_served(stack_config: StackConfig) -> None:
    # A certificate one day from expiry: inside the 14-day window, before clients see it expire.
    short = ca.issue_server_cert(stack_config, days=1)
    proxy.reload(stack_config)
    procs.wait_until(
        lambda: renew.served_certificate(stack_config).serial_number == short.serial,
        timeout=30,
        what="short certificate served",
    )
    assert ca.needs_renewal(stack_config)
    stop, outcomes = threading.Event(), []
    worker = threading.Thread(target=_hammer, args=(stack_config, stop, outcomes))
    worker.start()
    try:
        time.sleep(0.5)
        result = renew.renew_if_needed(stack_config)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert result.renewed and result.old_serial == f"{short.serial:x}"
    served = renew.served_certificate(stack_config, "mlflow")
    assert f"{served.serial_number:x}" == result.served_serial != result.old_serial
    assert result.days_left > stack_config.renew_before_days
    assert outcomes and all(code == 200 for code in outcomes), outcomes
    # Outside the window nothing happens.
    assert not renew.renew_if_needed(stack_config).renewed


def _prefect_ok(config: StackConfig) -> bool:
    user, _, password = get_secret(config, "prefect_api_auth").partition(":")
    response = httpx.post(
        f"{config.prefect_api_url}/flows/",
        json={"name": f"pg-restart-{uuid.uuid4().hex[:6]}"},
        auth=(user, password),
        verify=tls_context(config),
        timeout=10,
    )
    return response.status_code in (200, 201)


def _mlflow_ok(config: StackConfig) -> bool:
    response = httpx.post(
        f"{config.mlflow_url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        verify=tls_context(config),
        timeout=10,
    )
    return response.status_code == 200


def test_prefect_and_mlflow_recover_after_postgres_restart(stack_config: StackConfig) -> None:
    assert _prefect_ok(stack_config) and _mlflow_ok(stack_config)
    prefect_pid = procs.read_pid(stack_config, "prefect")
    mlflow_pid = procs.read_pid(stack_config, "mlflow")
    old_pg = procs.read_pid(stack_config, "postgres")
    procs.stop(stack_config, "postgres")
    assert not postgres.is_ready(stack_config)
    postgres.start(stack_config)
    assert procs.read_pid(stack_config, "postgres") != old_pg
    # No manual action: the same server processes serve database-backed requests again.
    procs.wait_until(lambda: _prefect_ok(stack_config), timeout=90, what="prefect recovery")
    procs.wait_until(lambda: _mlflow_ok(stack_config), timeout=90, what="mlflow recovery")
    assert procs.read_pid(stack_config, "prefect") == prefect_pid
    assert procs.read_pid(stack_config, "mlflow") == mlflow_pid
