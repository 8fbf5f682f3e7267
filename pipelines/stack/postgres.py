"""The stack's own PostgreSQL cluster: initdb, start/stop, roles and databases.

PostgreSQL refuses to run as root, so when the stack runs as root the cluster directory is
owned by, and the server runs as, the ``postgres`` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from pipelines.stack import procs
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import PG_ROLES, PG_SUPERUSER, pg_password
from pipelines.stack.errors import PermissionLayoutError, StackError

NAME = "postgres"
SERVICE_USER = "postgres"
DATABASES = {"prefect": "prefect", "mlflow": "mlflow"}


def bindir() -> Path:
    """Directory of the PostgreSQL server binaries (``pg_config --bindir``).

    Falls back to the newest ``/usr/lib/postgresql/<major>/bin`` (Debian's layout) when
    ``pg_config`` is absent.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "postgres").exists():
            return candidate
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise StackError("PostgreSQL server binaries not found: apt-get install -y postgresql-15")
    return found[-1].parent


def run_as() -> str | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves."""
    return SERVICE_USER if os.geteuid() == 0 else None


def data_dir(config: StackConfig) -> Path:
    """The cluster directory."""
    return config.path("postgres", "data")


def _chown(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_reachable(path: Path, user: str | None) -> None:
    """Fail early with a clear error when ``user`` cannot traverse to ``path``."""
    if not user:
        return
    probe = subprocess.run(["test", "-x", str(path)], user=user, capture_output=True, check=False)
    if probe.returncode != 0:
        raise PermissionLayoutError(
            "the postgres user cannot reach the state directory; give every parent "
            "directory o+x (e.g. chmod 711)",
            path=path,
        )


def init(config: StackConfig) -> bool:
    """Create the cluster once (idempotent); return whether it was created now."""
    data = data_dir(config)
    if (data / "PG_VERSION").exists():
        return False
    user = run_as()
    parent = data.parent
    parent.mkdir(parents=True, exist_ok=True)
    _check_reachable(config.root, user)
    data.mkdir(mode=0o700, exist_ok=True)
    _chown(data, user)
    pwfile = parent / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pg_password(config, PG_SUPERUSER) + "\n")
        _chown(pwfile, user)
        result = subprocess.run(
            [
                str(bindir() / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            user=user,
            capture_output=True,
            text=True,
            check=False,
            env=procs.base_env(),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise StackError("initdb failed", stderr=result.stderr.strip()[-500:])
    return True


def spec(config: StackConfig) -> procs.ProcessSpec:
    """Run the postmaster in the foreground (procs detaches it); TCP on loopback only."""
    return procs.ProcessSpec(
        name=NAME,
        argv=[
            str(bindir() / "postgres"),
            "-D",
            str(data_dir(config)),
            "-c",
            f"listen_addresses={config.host}",
            "-c",
            f"port={config.port('postgres')}",
            # No Unix socket: /var/run/postgresql may not exist or be writable.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "fsync=on",
        ],
        env=procs.base_env(),
        user=run_as(),
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit.
        stop_signal=signal.SIGINT,
    )


def connect(config: StackConfig, database: str = "postgres", role: str = PG_SUPERUSER):
    """A psycopg2 connection (autocommit) as ``role``."""
    conn = psycopg2.connect(
        host=config.host,
        port=config.port("postgres"),
        user=role,
        password=pg_password(config, role),
        dbname=database,
        connect_timeout=5,
    )
    conn.autocommit = True
    return conn


def is_ready(config: StackConfig) -> bool:
    """Whether the server accepts an authenticated connection."""
    try:
        conn = connect(config)
    except psycopg2.Error:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    except psycopg2.Error:
        return False
    finally:
        conn.close()


def start(config: StackConfig, timeout: float = 60.0) -> None:
    """Start the server if needed and wait until it accepts connections."""
    init(config)
    procs.start(config, spec(config))
    procs.wait_until(
        lambda: is_ready(config), timeout=timeout, what="postgres", config=config, name=NAME
    )


def ensure_databases(config: StackConfig) -> None:
    """Create the ``prefect`` and ``mlflow`` roles and databases (idempotent)."""
    conn = connect(config)
    try:
        cur = conn.cursor()
        for role in PG_ROLES:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                    (pg_password(config, role),),
                )
        for database, owner in DATABASES.items():
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(owner)
                    )
                )
    finally:
        conn.close()


def set_role_password(config: StackConfig, role: str, password: str) -> None:
    """Change a role's password (used by rotation)."""
    conn = connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (password,)
            )
    finally:
        conn.close()


def client_env(config: StackConfig) -> dict[str, str]:
    """Environment for ``pg_dump``/``pg_restore``/``psql`` as the superuser."""
    return procs.base_env(
        PGHOST=config.host,
        PGPORT=str(config.port("postgres")),
        PGUSER=PG_SUPERUSER,
        PGPASSWORD=pg_password(config, PG_SUPERUSER),
    )
