"""Secret rotation with real validation, switch-over and rollback (database passwords).

Sequence: generate a new password, set it on the role, log in with it (real validation),
run extra validators, then switch over (secret file, Prefect Secret block, restart of the
consuming service, health check). Any failure rolls the role, the file and the service
back to the old password and raises an alert.
"""

from __future__ import annotations

import secrets as _secrets  # stdlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg2

from pipelines.stack import alerts, mlflow_server, postgres, prefect_server, procs
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import pg_password, set_secret
from pipelines.stack.errors import RotationError

Validator = Callable[[StackConfig, str], None]
# The service that reads each role's password, and how to restart it.
CONSUMERS = {"mlflow": mlflow_server, "prefect": prefect_server}


@dataclass(frozen=True)
class RotationResult:
    """Outcome of a rotation (never the password itself)."""

    role: str
    status: str
    steps: tuple[str, ...]


def login_works(config: StackConfig, role: str, password: str) -> bool:
    """Whether ``role`` can log in to its database with ``password``."""
    try:
        conn = psycopg2.connect(
            host=config.host,
            port=config.port("postgres"),
            user=role,
            password=password,
            dbname=role,
            connect_timeout=5,
        )
    except psycopg2.OperationalError:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    finally:
        conn.close()


def _restart(config: StackConfig, role: str) -> None:
    service = CONSUMERS[role]
    procs.stop(config, service.NAME)
    service.start(config)


def _update_block(config: StackConfig, role: str, password: str) -> bool:
    """Update the environment's Secret block for this password if it exists."""
    from prefect.blocks.system import Secret

    name = f"{config.environment}-{role}-db-password"
    with prefect_server.client_settings(config):
        try:
            Secret.load(name)
        except ValueError:
            return False
        Secret(value=password).save(name, overwrite=True)
    return True


def rotate_db_password(
    config: StackConfig, role: str = "mlflow", validators: Sequence[Validator] = ()
) -> RotationResult:
    """Rotate ``role``'s password; roll back and alert on any failure.

    Raises
    ------
    RotationError
        After rollback; ``context`` names the failed step.
    """
    if role not in CONSUMERS:
        raise RotationError("no rotation procedure for this role", role=role)
    old = pg_password(config, role)
    new = _secrets.token_urlsafe(24)
    steps: list[str] = []
    step = "create"
    try:
        postgres.set_role_password(config, role, new)
        steps.append("created")
        step = "validate"
        if not login_works(config, role, new):
            raise RotationError("new password does not log in", role=role)
        for validator in validators:
            validator(config, new)
        steps.append("validated")
        step = "switch"
        set_secret(config, f"pg_{role}_password", new)
        _restart(config, role)
        if _update_block(config, role, new):
            steps.append("block-updated")
        if login_works(config, role, old):
            raise RotationError("old password still logs in after switch-over", role=role)
        steps.append("switched")
        return RotationResult(role=role, status="rotated", steps=tuple(steps))
    except Exception as exc:
        rollback_ok = _rollback(config, role, old, restarted=step == "switch")
        alerts.send_alert(
            config,
            alerts.Alert(
                kind="rotation",
                summary=f"rotation of the {role} database password failed and was "
                + ("rolled back" if rollback_ok else "NOT rolled back"),
                context={"role": role, "step": step, "error": type(exc).__name__},
                severity="error" if rollback_ok else "critical",
            ),
        )
        raise RotationError(
            "rotation failed", role=role, step=step, rolled_back=rollback_ok
        ) from exc


def _rollback(config: StackConfig, role: str, old: str, *, restarted: bool) -> bool:
    """Put the old password back everywhere; return whether it logs in again."""
    postgres.set_role_password(config, role, old)
    set_secret(config, f"pg_{role}_password", old)
    if restarted:
        _restart(config, role)
        _update_block(config, role, old)
    return login_works(config, role, old)
