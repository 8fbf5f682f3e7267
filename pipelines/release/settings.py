"""Where the release commands find the storage root, the keys and MLflow by default."""

from __future__ import annotations

import os
from pathlib import Path

from ordinal.artifacts import open_storage
from ordinal.paths import state_dir
from ordinal.release import AuditLog, Registry, TrustedKeys

__all__ = [
    "TRUSTED_ENV",
    "default_signing_key",
    "open_audit",
    "open_registry",
    "trusted_dir",
    "trusted_keys",
]

TRUSTED_ENV = "ORDINAL_RELEASE_TRUSTED_KEYS"
KEY_ENV = "ORDINAL_RELEASE_SIGNING_KEY"
LOCK_DAYS_ENV = "ORDINAL_AUDIT_LOCK_DAYS"


def default_signing_key() -> Path:
    """``$ORDINAL_RELEASE_SIGNING_KEY`` or ``<state>/release/signing-key.pem``."""
    return Path(os.environ.get(KEY_ENV) or state_dir() / "release" / "signing-key.pem")


def trusted_dir() -> Path:
    """``<state>/release/trusted/``: every ``*.pub`` in it is trusted."""
    return state_dir() / "release" / "trusted"


def trusted_keys(extra: list[str] | None = None) -> TrustedKeys:
    """``--trust`` values, ``$ORDINAL_RELEASE_TRUSTED_KEYS`` (comma-separated fingerprints or
    public key files) and the public keys in :func:`trusted_dir`."""
    keys: list[str] = list(extra or [])
    keys += [k.strip() for k in os.environ.get(TRUSTED_ENV, "").split(",") if k.strip()]
    folder = trusted_dir()
    if folder.is_dir():
        keys += [str(p) for p in sorted(folder.glob("*.pub"))]
    return TrustedKeys(keys)


def open_audit(storage_url: str | None = None) -> AuditLog:
    """The release audit log in the storage root (S3 records locked ``$ORDINAL_AUDIT_LOCK_DAYS``,
    default 365 days)."""
    storage = open_storage(storage_url or None)
    return AuditLog(storage, lock_days=int(os.environ.get(LOCK_DAYS_ENV, "365")))


def open_registry(
    storage_url: str | None = None, trust: list[str] | None = None, tracking_uri: str | None = None
) -> Registry:
    """The registry in the storage root, with the trusted keys and MLflow."""
    audit = open_audit(storage_url)
    return Registry(audit.storage, trusted_keys(trust), audit=audit, tracking_uri=tracking_uri)
