"""The MLflow tracking server on PostgreSQL, proxying artefacts to the S3 store."""

from __future__ import annotations

import sys

import httpx

from pipelines.stack import procs, s3
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import pg_dsn

NAME = "mlflow"


def spec(config: StackConfig) -> procs.ProcessSpec:
    """``mlflow server`` with ``postgresql+psycopg2`` and ``--artifacts-destination s3://``."""
    env = procs.base_env(
        HOME=str(config.path("home")),
        # Job execution spawns ~2.6 GiB of helper processes we do not use.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_ENABLE_TELEMETRY="false",
        # In the environment, not argv: argv (and its password) is world-readable in ps.
        MLFLOW_BACKEND_STORE_URI=pg_dsn(config, "mlflow", "mlflow", "+psycopg2"),
        **s3.client_env(config),
    )
    return procs.ProcessSpec(
        name=NAME,
        argv=[
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--artifacts-destination",
            f"s3://{s3.ARTIFACT_BUCKET}/artifacts",
            "--serve-artifacts",
            "--host",
            config.host,
            "--port",
            str(config.port("mlflow")),
            "--workers",
            "1",
            "--allowed-hosts",
            "127.0.0.1:*,localhost:*,127.0.0.1,localhost",
        ],
        env=env,
        cwd=config.path("home"),
    )


def is_ready(config: StackConfig) -> bool:
    """Whether ``/health`` answers on the private port."""
    url = f"http://{config.host}:{config.port('mlflow')}/health"
    return httpx.get(url, timeout=5).status_code == 200


def launch(config: StackConfig) -> None:
    """Start the process without waiting (``up`` starts Prefect and MLflow side by side)."""
    config.path("home").mkdir(parents=True, exist_ok=True)
    procs.start(config, spec(config))


def wait_ready(config: StackConfig, timeout: float = 180.0) -> None:
    """Wait for health (the first start runs migrations)."""
    procs.wait_until(
        lambda: is_ready(config), timeout=timeout, what="mlflow", config=config, name=NAME
    )


def start(config: StackConfig, timeout: float = 180.0) -> None:
    """Start the server and wait for health."""
    launch(config)
    wait_ready(config, timeout)
