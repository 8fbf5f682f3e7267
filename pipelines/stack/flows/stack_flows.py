"""Scheduled operations flows of the control plane: backups, restore drills, rotation.

Deployed to the ``control`` pool's ``critical`` queue by ``ordinal stack deploy-ops``. The
flow bodies are thin: the work is in :mod:`pipelines.stack` so it is tested directly.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task


def _config(root: str):
    from pipelines.stack.config import load_config

    return load_config(Path(root))


@task(retries=2, retry_delay_seconds=30)
def backup_database(root: str, database: str) -> str:
    """Encrypted ``pg_dump -Fc`` of one database, uploaded to the S3 store."""
    from pipelines.stack.backup import take_backup

    return take_backup(_config(root), database).key


@task
def prune_backups(root: str, database: str) -> list[str]:
    """Apply retention."""
    from pipelines.stack.backup import prune

    return prune(_config(root), database)


@flow(name="stack-backup")
def stack_backup(root: str, databases: tuple[str, ...] = ("prefect", "mlflow")) -> list[str]:
    """Back up the control-plane databases, then apply retention."""
    keys = [backup_database(root, db) for db in databases]
    for db in databases:
        prune_backups(root, db)
    return keys


@flow(name="stack-restore-drill")
def stack_restore_drill(root: str, database: str = "prefect") -> dict:
    """Restore the newest backup into staging, verify, boot Prefect on it, time it."""
    from dataclasses import asdict

    from pipelines.stack.restore import restore_drill

    return asdict(restore_drill(_config(root), database))


@flow(name="stack-rotate-db-password")
def stack_rotate_db_password(root: str, role: str = "mlflow") -> str:
    """Rotate a database role's password with validation and rollback."""
    from pipelines.stack.rotation import rotate_db_password

    return rotate_db_password(_config(root), role).status


@flow(name="stack-renew-certs")
def stack_renew_certs(root: str) -> dict:
    """Re-issue the proxy certificate when inside its renewal window; reload nginx."""
    from dataclasses import asdict

    from pipelines.stack.renew import renew_if_needed

    return asdict(renew_if_needed(_config(root)))
