"""Approved secret sources: environment variables, 0600 files, or a secret manager.

Each source answers one question, ``get(environment, name)``, and raises
:class:`BlockValidationError` (naming the secret, never its value) when it cannot.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipelines.stack.errors import BlockValidationError


class SecretSource(Protocol):
    """Where secret values come from."""

    description: str

    def get(self, environment: str, name: str) -> str:
        """The value of secret ``name`` in ``environment``."""
        ...


@dataclass(frozen=True)
class EnvSource:
    """``ORDINAL_SECRET_<ENV>_<NAME>`` (upper case, dashes as underscores)."""

    prefix: str = "ORDINAL_SECRET_"
    description: str = "environment"

    def variable(self, environment: str, name: str) -> str:
        """The variable name that holds secret ``name``."""
        return f"{self.prefix}{environment}_{name}".upper().replace("-", "_")

    def get(self, environment: str, name: str) -> str:
        value = os.environ.get(self.variable(environment, name))
        if not value:
            raise BlockValidationError(
                "secret missing from the environment",
                secret=name,
                variable=self.variable(environment, name),
            )
        return value


@dataclass(frozen=True)
class FileSource:
    """``<directory>/<env>/<name>``; files readable by group or others are refused."""

    directory: Path
    description: str = "files"

    def get(self, environment: str, name: str) -> str:
        path = self.directory / environment / name
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BlockValidationError("secret file missing", secret=name, path=path) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BlockValidationError(
                "secret file is readable by others (chmod 600)", secret=name, path=path
            )
        value = path.read_text().strip()
        if not value:
            raise BlockValidationError("secret file is empty", secret=name, path=path)
        return value


@dataclass(frozen=True)
class SecretsManagerSource:
    """AWS Secrets Manager (or a compatible endpoint): secret id ``ordinal/<env>/<name>``."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    description: str = "secretsmanager"

    def get(self, environment: str, name: str) -> str:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client(
            "secretsmanager", endpoint_url=self.endpoint_url, region_name=self.region
        )
        secret_id = f"ordinal/{environment}/{name}"
        try:
            return client.get_secret_value(SecretId=secret_id)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            raise BlockValidationError(
                "secret manager lookup failed", secret=secret_id, error=type(exc).__name__
            ) from None


def make_source(kind: str, *, path: Path | None = None, endpoint: str | None = None):
    """Build a source from CLI words: ``env``, ``file`` (with ``path``) or ``secretsmanager``."""
    if kind == "env":
        return EnvSource()
    if kind == "file":
        if path is None:
            raise BlockValidationError("the file source needs a directory")
        return FileSource(path)
    if kind == "secretsmanager":
        return SecretsManagerSource(endpoint_url=endpoint)
    raise BlockValidationError("unknown secret source", source=kind)
