"""Restore drills: restore a backup into a staging database, verify it, boot Prefect on it.

A drill proves the backup is usable, not only present: it decrypts (refusing a tampered
file), restores, compares row counts and checksums with the manifest taken at backup time,
and, for the Prefect database, boots a throw-away Prefect server on the copy and reads a
flow run and a secret back through it. The elapsed time is recorded and alerted on when it
exceeds ``drill_max_seconds`` (30 minutes).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field

import httpx
from psycopg2 import sql

from pipelines.stack import alerts, backup, postgres, prefect_server, procs
from pipelines.stack.config import StackConfig, free_port
from pipelines.stack.credentials import get_secret
from pipelines.stack.errors import RestoreVerificationError, StackError
from pipelines.stack.files import atomic_write


@dataclass
class DrillReport:
    """What a drill did and how long each step took (seconds)."""

    database: str
    backup_key: str
    staging_database: str
    tables: int = 0
    rows: int = 0
    steps: dict[str, float] = field(default_factory=dict)
    flow_run_read: str | None = None
    secret_read: bool | None = None
    elapsed: float = 0.0
    within_objective: bool = True


def _drop_database(config: StackConfig, name: str) -> None:
    conn = postgres.connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        conn.close()


def restore_into(
    config: StackConfig, record: backup.BackupRecord, staging: str, owner: str
) -> None:
    """Decrypt ``record`` and ``pg_restore`` it into a new database ``staging``."""
    work = config.path("restore", "tmp")
    plain = work / f"{staging}.dump"
    try:
        backup.fetch_plain(config, record, plain)
        conn = postgres.connect(config)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(staging), sql.Identifier(owner)
                    )
                )
        finally:
            conn.close()
        result = subprocess.run(
            [
                str(postgres.bindir() / "pg_restore"),
                "--no-owner",
                f"--role={owner}",
                "--exit-on-error",
                "--jobs=2",
                "-d",
                staging,
                str(plain),
            ],
            env=postgres.client_env(config),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError("pg_restore failed", database=staging, stderr=result.stderr[-500:])
    finally:
        plain.unlink(missing_ok=True)


def verify(config: StackConfig, staging: str, manifest: dict) -> tuple[int, int]:
    """Compare every table's row count and checksum with the manifest; return (tables, rows).

    Raises
    ------
    RestoreVerificationError
        Naming each table that differs.
    """
    conn = postgres.connect(config, staging)
    try:
        restored = backup.table_manifest(conn.cursor())
    finally:
        conn.close()
    differing = {
        table: {"expected": manifest.get(table), "restored": restored.get(table)}
        for table in set(manifest) | set(restored)
        if manifest.get(table) != restored.get(table)
    }
    if differing:
        raise RestoreVerificationError(
            "restored database differs from its source",
            database=staging,
            tables=sorted(differing)[:10],
        )
    return len(restored), sum(int(t["rows"]) for t in restored.values())


def _read_back(
    config: StackConfig, port: int, secret_block: str | None
) -> tuple[str | None, bool | None]:
    """Read the newest flow run and (optionally) a secret block through the drill server."""
    user, _, password = get_secret(config, "prefect_api_auth").partition(":")
    base = f"http://{config.host}:{port}/api"
    with httpx.Client(auth=(user, password), timeout=30) as client:
        runs = client.post(
            f"{base}/flow_runs/filter", json={"limit": 1, "sort": "EXPECTED_START_TIME_DESC"}
        )
        runs.raise_for_status()
        flow_run = runs.json()[0]["id"] if runs.json() else None
        secret_ok = None
        if secret_block:
            block_type, _, name = secret_block.partition("/")
            response = client.get(
                f"{base}/block_types/slug/{block_type}/block_documents/name/{name}",
                params={"include_secrets": "true"},
            )
            response.raise_for_status()
            secret_ok = bool(response.json()["data"].get("value"))
    return flow_run, secret_ok


def boot_prefect_on(
    config: StackConfig, staging: str, secret_block: str | None, timeout: float = 180.0
) -> tuple[str | None, bool | None]:
    """Start a Prefect server (no services, no UI) on ``staging``, read back, stop it."""
    name = f"drill-prefect-{staging}"
    port = free_port()
    spec = prefect_server.spec(config, name=name, port=port, database=staging)
    spec = procs.ProcessSpec(
        name=spec.name,
        argv=[*spec.argv, "--no-services"],
        env=spec.env,
        stop_signal=spec.stop_signal,
    )
    procs.start(config, spec)
    try:
        procs.wait_until(
            lambda: prefect_server.is_ready(config, port),
            timeout=timeout,
            what="drill prefect server",
            config=config,
            name=name,
            interval=0.5,
        )
        return _read_back(config, port, secret_block)
    finally:
        procs.stop(config, name)


def restore_drill(
    config: StackConfig,
    database: str = "prefect",
    *,
    record: backup.BackupRecord | None = None,
    boot_prefect: bool | None = None,
    secret_block: str | None = None,
    owner: str | None = None,
) -> DrillReport:
    """Run a full drill on the newest (or the given) backup of ``database``.

    The staging database is always dropped afterwards; the report is written to
    ``<root>/drills/`` and an alert is sent when the drill fails or is too slow.
    """
    started = time.monotonic()
    records = [record] if record else backup.list_backups(config, database)
    if not records:
        raise StackError("no backup to drill", database=database)
    chosen = records[0]
    staging = f"drill_{database}_{uuid.uuid4().hex[:8]}"
    report = DrillReport(database=database, backup_key=chosen.key, staging_database=staging)
    boot = database == "prefect" if boot_prefect is None else boot_prefect
    owner = owner or (
        "prefect"
        if database == "prefect"
        else "mlflow"
        if database == "mlflow"
        else postgres.PG_SUPERUSER
    )

    def step(name: str, func):
        t0 = time.monotonic()
        value = func()
        report.steps[name] = round(time.monotonic() - t0, 3)
        return value

    try:
        manifest = step("manifest", lambda: backup.fetch_manifest(config, chosen))
        step("restore", lambda: restore_into(config, chosen, staging, owner))
        report.tables, report.rows = step("verify", lambda: verify(config, staging, manifest))
        if boot:
            report.flow_run_read, report.secret_read = step(
                "boot_and_read", lambda: boot_prefect_on(config, staging, secret_block)
            )
            if report.flow_run_read is None or report.secret_read is False:
                raise RestoreVerificationError(
                    "drill server could not read back a flow run or secret", database=staging
                )
    except Exception as exc:
        alerts.send_alert(
            config,
            alerts.Alert(
                kind="restore-drill",
                summary="restore drill failed",
                context={"database": database, "backup": chosen.key, "error": type(exc).__name__},
            ),
        )
        raise
    finally:
        _drop_database(config, staging)
        report.elapsed = round(time.monotonic() - started, 3)
        report.within_objective = report.elapsed <= config.drill_max_seconds
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        atomic_write(
            config.path("drills", f"{stamp}-{database}.json"),
            json.dumps(asdict(report), indent=2) + "\n",
        )
    if not report.within_objective:
        alerts.send_alert(
            config,
            alerts.Alert(
                kind="restore-drill",
                summary=f"restore drill took {report.elapsed:.0f} s "
                f"(objective {config.drill_max_seconds:.0f} s)",
                context={"database": database, "backup": chosen.key},
                severity="warning",
            ),
        )
    return report
