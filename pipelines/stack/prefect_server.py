"""The Prefect 3 server on the stack's PostgreSQL, and client settings that reach it via TLS."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import httpx

from pipelines.stack import procs
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret, pg_dsn

NAME = "prefect"


def server_env(config: StackConfig, database: str = "prefect") -> dict[str, str]:
    """Server environment: database URL, API basic auth, UI pointed at the public URL."""
    return procs.base_env(
        HOME=str(config.path("home")),
        PREFECT_HOME=str(config.path("prefect", "home")),
        PREFECT_API_DATABASE_CONNECTION_URL=pg_dsn(config, "prefect", database, "+asyncpg"),
        PREFECT_SERVER_API_AUTH_STRING=get_secret(config, "prefect_api_auth"),
        PREFECT_UI_API_URL=config.prefect_api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        # Recover from a PostgreSQL restart: pre-ping drops dead pooled connections.
        PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_RECYCLE="300",
    )


def spec(config: StackConfig, name: str = NAME, port: int | None = None, database: str = "prefect"):
    """``prefect server start`` on loopback (private port; clients use the proxy)."""
    return procs.ProcessSpec(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            config.host,
            "--port",
            str(port or config.port("prefect")),
            "--no-ui" if name != NAME else "--ui",
        ],
        env=server_env(config, database),
        stop_signal=2,
    )


def is_ready(config: StackConfig, port: int | None = None) -> bool:
    """Whether ``/api/health`` answers on the private port."""
    user, _, password = get_secret(config, "prefect_api_auth").partition(":")
    url = f"http://{config.host}:{port or config.port('prefect')}/api/health"
    return httpx.get(url, auth=(user, password), timeout=5).status_code == 200


def launch(config: StackConfig) -> None:
    """Start the process without waiting (``up`` starts Prefect and MLflow side by side)."""
    procs.start(config, spec(config))


def wait_ready(config: StackConfig, timeout: float = 180.0) -> None:
    """Wait for health (the first start runs migrations)."""
    procs.wait_until(
        lambda: is_ready(config), timeout=timeout, what="prefect", config=config, name=NAME
    )


def start(config: StackConfig, timeout: float = 180.0) -> None:
    """Start the server and wait for health."""
    launch(config)
    wait_ready(config, timeout)


def client_env(config: StackConfig) -> dict[str, str]:
    """Environment a Prefect client (CLI, worker, flow run) needs to reach the API via TLS."""
    return {
        "PREFECT_API_URL": config.prefect_api_url,
        "PREFECT_API_AUTH_STRING": get_secret(config, "prefect_api_auth"),
        "PREFECT_API_SSL_CERT_FILE": str(config.ca_cert),
        "SSL_CERT_FILE": str(config.ca_cert),
        "PREFECT_HOME": str(config.path("prefect", "client")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


@contextlib.contextmanager
def client_settings(config: StackConfig) -> Iterator[None]:
    """Point in-process Prefect clients at the stack for the duration of the block."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_SSL_CERT_FILE,
        PREFECT_API_URL,
        temporary_settings,
    )

    env = client_env(config)
    with temporary_settings(
        updates={
            PREFECT_API_URL: env["PREFECT_API_URL"],
            PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"],
            PREFECT_API_SSL_CERT_FILE: env["PREFECT_API_SSL_CERT_FILE"],
        }
    ):
        old = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = env["SSL_CERT_FILE"]
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = old
