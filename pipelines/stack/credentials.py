"""The stack's own generated credentials, kept as 0600 files under ``<root>/secrets``.

These are the bootstrap secrets (database passwords, the Prefect API auth string, the backup
key). They never appear in logs, ``status`` output or ``stack.json``.
"""

from __future__ import annotations

import secrets as _secrets  # stdlib
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.stack.config import StackConfig
from pipelines.stack.files import read_secret, write_secret

# Names of the generated secrets; the backup key is deliberately stored apart from the
# databases it protects (in production: a secret manager, never the Prefect database).
PG_SUPERUSER = "stack_admin"
PG_ROLES = ("prefect", "mlflow")
API_USER = "ordinal"


def secret_path(config: StackConfig, name: str) -> Path:
    """Path of the secret ``name``."""
    return config.secrets_dir / name


def ensure_secrets(config: StackConfig) -> None:
    """Create every missing secret (idempotent: existing secrets are kept)."""
    config.secrets_dir.mkdir(parents=True, exist_ok=True)
    config.secrets_dir.chmod(0o700)
    wanted = {
        "pg_superuser_password": lambda: _secrets.token_urlsafe(24),
        "pg_prefect_password": lambda: _secrets.token_urlsafe(24),
        "pg_mlflow_password": lambda: _secrets.token_urlsafe(24),
        "prefect_api_auth": lambda: f"{API_USER}:{_secrets.token_urlsafe(24)}",
        "backup_key": lambda: AESGCM.generate_key(bit_length=256).hex(),
        "s3_access_key": lambda: "ordinal-" + _secrets.token_hex(6),
        "s3_secret_key": lambda: _secrets.token_urlsafe(24),
    }
    for name, make in wanted.items():
        path = secret_path(config, name)
        if not path.exists():
            write_secret(path, make())


def get_secret(config: StackConfig, name: str) -> str:
    """Read the secret ``name``."""
    return read_secret(secret_path(config, name))


def set_secret(config: StackConfig, name: str, value: str) -> None:
    """Replace the secret ``name`` atomically."""
    write_secret(secret_path(config, name), value)


def pg_password(config: StackConfig, role: str) -> str:
    """Password of a database role (``stack_admin``, ``prefect`` or ``mlflow``)."""
    key = "superuser" if role == PG_SUPERUSER else role
    return get_secret(config, f"pg_{key}_password")


def pg_dsn(config: StackConfig, role: str, database: str, driver: str = "") -> str:
    """A SQLAlchemy/libpq URL for ``role`` on ``database`` (``driver``: e.g. ``+asyncpg``)."""
    password = pg_password(config, role)
    return (
        f"postgresql{driver}://{role}:{password}@{config.host}:{config.port('postgres')}/{database}"
    )
