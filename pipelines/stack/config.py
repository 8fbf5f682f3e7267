"""Stack configuration: state root, loopback ports and the S3 endpoint, persisted once chosen.

Ports are picked free on the first ``up`` and written to ``<root>/stack.json`` so URLs stay
stable across restarts; any of them can be set explicitly. ``ORDINAL_STACK_ROOT`` moves the
root (default ``ordinal.paths.state_dir() / "stack"``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.stack.files import atomic_write

ROOT_ENV = "ORDINAL_STACK_ROOT"
HOST = "127.0.0.1"
PORT_NAMES = (
    "postgres",
    "prefect",
    "mlflow",
    "s3",
    "prefect_https",
    "prefect_http",
    "mlflow_https",
    "mlflow_http",
)


class StackConfig(BaseModel):
    """Where the stack lives and which loopback ports it listens on.

    Attributes
    ----------
    root : Path
        The one directory holding all state (data, logs, secrets, certificates).
    ports : dict[str, int]
        One port per name in ``PORT_NAMES``; 0 means "pick a free one on first save".
    s3_endpoint : str or None
        An external S3 endpoint; ``None`` runs ``moto_server`` locally.
    environment : str
        Deployment environment name (``dev``, ``staging``, ``prod``) used for block names.
    renew_before_days : int
        A certificate whose expiry is closer than this is re-issued.
    cert_days : int
        Lifetime of issued server certificates.
    worker_query_seconds : float
        How often workers poll their pools (Prefect's default is 10 s).
    """

    model_config = ConfigDict(extra="forbid")

    root: Path
    host: str = HOST
    ports: dict[str, int] = Field(default_factory=dict)
    s3_endpoint: str | None = None
    environment: str = "dev"
    renew_before_days: int = 14
    cert_days: int = 90
    worker_query_seconds: float = 2.0
    backup_retention_days: int = 7
    backup_keep_min: int = 3
    drill_max_seconds: float = 1800.0
    alert_webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    alert_email_to: str | None = None
    alert_email_from: str = "ordinal-stack@localhost"
    runbook_base_url: str = "docs/control-plane.md"

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        # The local stack must never listen beyond loopback; production uses its own config.
        if value != HOST:
            raise ValueError(f"the local stack listens on {HOST} only, got {value!r}")
        return value

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """``<root>/stack.json``."""
        return self.root / "stack.json"

    def path(self, *parts: str) -> Path:
        """A path under the root."""
        return self.root.joinpath(*parts)

    @property
    def logs(self) -> Path:
        """All service logs, one file per service."""
        return self.root / "logs"

    @property
    def secrets_dir(self) -> Path:
        """Generated secrets (mode 0700 directory, 0600 files)."""
        return self.root / "secrets"

    @property
    def pki(self) -> Path:
        """CA and server certificates."""
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        """The private CA certificate clients must trust."""
        return self.pki / "ca.pem"

    # -- URLs ----------------------------------------------------------------------------
    def port(self, name: str) -> int:
        """The port for ``name``; raises ``KeyError`` if the config has not been saved."""
        return self.ports[name]

    @property
    def prefect_api_url(self) -> str:
        """Public (TLS, through the proxy) Prefect API URL."""
        return f"https://{self.host}:{self.port('prefect_https')}/api"

    @property
    def mlflow_url(self) -> str:
        """Public (TLS, through the proxy) MLflow URL."""
        return f"https://{self.host}:{self.port('mlflow_https')}"

    @property
    def s3_url(self) -> str:
        """The S3 endpoint (local moto server unless configured)."""
        return self.s3_endpoint or f"http://{self.host}:{self.port('s3')}"

    def save(self) -> StackConfig:
        """Fill unset ports with free ones and write ``stack.json`` atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        taken = {p for p in self.ports.values() if p}
        for name in PORT_NAMES:
            if not self.ports.get(name):
                port = free_port(exclude=taken)
                self.ports[name] = port
                taken.add(port)
        atomic_write(self.config_file, self.model_dump_json(indent=2) + "\n")
        return self


def default_root() -> Path:
    """``$ORDINAL_STACK_ROOT`` or ``ordinal.paths.state_dir() / "stack"``."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).resolve()
    from ordinal.paths import state_dir

    return state_dir() / "stack"


def load_config(root: Path | None = None, **overrides: object) -> StackConfig:
    """Load ``<root>/stack.json`` if present, apply overrides, return (unsaved) config."""
    root = (root or default_root()).resolve()
    data: dict[str, object] = {"root": root}
    config_file = root / "stack.json"
    if config_file.exists():
        data.update(json.loads(config_file.read_text()))
        data["root"] = root
    ports = dict(data.get("ports") or {})  # type: ignore[call-overload]
    ports.update(overrides.pop("ports", None) or {})  # type: ignore[arg-type]
    data["ports"] = ports
    data.update({k: v for k, v in overrides.items() if v is not None})
    return StackConfig.model_validate(data)


def free_port(exclude: set[int] | None = None) -> int:
    """A TCP port free on loopback right now (and not in ``exclude``)."""
    exclude = exclude or set()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
