"""``ordinal stack``: operator commands for the control-plane stack (typer sub-app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.stack.config import load_config
from pipelines.stack.errors import StackError

stack_app = typer.Typer(
    name="stack",
    help="Control-plane stack: PostgreSQL, Prefect, MLflow, S3 store, TLS proxy, workers.",
    no_args_is_help=True,
)
console = Console()

RootOption = Annotated[
    Path | None,
    typer.Option("--root", help="State directory (default $ORDINAL_STACK_ROOT or .ordinal/stack)"),
]


def _fail(exc: StackError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@stack_app.command("up")
def up_cmd(
    root: RootOption = None,
    workers: Annotated[bool, typer.Option(help="Also apply pools and start workers")] = True,
    deploy: Annotated[
        bool, typer.Option(help="Deploy and schedule the smoke and operations flows")
    ] = True,
) -> None:
    """Start every service that is not running (idempotent) and wait until all are healthy."""
    from pipelines.stack import stack

    config = load_config(root)
    try:
        timings = stack.up(config, with_workers=workers, deploy=deploy)
    except StackError as exc:
        _fail(exc)
    total = sum(timings.values())
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    console.print(f"stack up in {total:.1f} s ({steps}); state: {config.root}")
    console.print(f"Prefect API: {config.prefect_api_url}")
    console.print(f"MLflow:      {config.mlflow_url}")
    console.print(f"CA:          {config.ca_cert}")


@stack_app.command("down")
def down_cmd(root: RootOption = None) -> None:
    """Stop workers, then every service; leaves no process behind."""
    from pipelines.stack import stack

    stopped = stack.down(load_config(root))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def status_cmd(
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Health and URL of each service and worker; exit 1 when any is unhealthy."""
    from pipelines.stack import stack

    rows = stack.status_dicts(load_config(root))
    if as_json:
        typer.echo(json.dumps({"services": rows}, indent=2))
    else:
        table = Table("service", "running", "healthy", "url", "detail", "log")
        for row in rows:
            table.add_row(
                row["name"],
                "yes" if row["running"] else "no",
                "[green]yes[/green]" if row["healthy"] else "[red]no[/red]",
                row["url"],
                row["detail"],
                row["log"],
            )
        console.print(table)
    if not all(row["healthy"] for row in rows):
        raise typer.Exit(1)


@stack_app.command("pools")
def pools_cmd(
    root: RootOption = None,
    file: Annotated[
        Path | None, typer.Option(help="Pools file (default deploy/pools.yaml)")
    ] = None,
) -> None:
    """Create or update work pools and queues from the declarative file."""
    from pipelines.stack import pools

    try:
        applied = pools.apply_pools(load_config(root), file)
    except StackError as exc:
        _fail(exc)
    for pool, queues in applied.items():
        console.print(f"pool {pool}: queues {', '.join(queues)}")


@stack_app.command("smoke")
def smoke_cmd(
    root: RootOption = None,
    deploy_only: Annotated[bool, typer.Option(help="Deploy and schedule, do not run")] = False,
) -> None:
    """Deploy the smoke flows to their pools, run them now, and check nothing is left."""
    from pipelines.stack import smoke

    config = load_config(root)
    try:
        smoke.deploy(config)
        if deploy_only:
            return
        results = smoke.run_smoke(config)
    except StackError as exc:
        _fail(exc)
    for result in results:
        console.print(f"{result.flow}: {result.state} in {result.seconds:.1f} s")
    if any(r.state != "COMPLETED" for r in results):
        raise typer.Exit(1)


@stack_app.command("deploy-ops")
def deploy_ops_cmd(root: RootOption = None) -> None:
    """Deploy and schedule backups, restore drills, certificate renewal and rotation."""
    from pipelines.stack.operations import deploy_operations

    for name in deploy_operations(load_config(root)):
        console.print(f"deployed {name}")


@stack_app.command("backup")
def backup_cmd(
    root: RootOption = None,
    database: Annotated[list[str] | None, typer.Option(help="prefect and/or mlflow")] = None,
    prune: Annotated[bool, typer.Option(help="Apply retention afterwards")] = True,
) -> None:
    """Take encrypted backups now and upload them to the S3 store."""
    from pipelines.stack import backup

    config = load_config(root)
    try:
        for db in database or list(backup.DATABASES):
            record = backup.take_backup(config, db)
            console.print(f"{db}: s3://{backup.s3.BACKUP_BUCKET}/{record.key} ({record.size} B)")
            if prune:
                for key in backup.prune(config, db):
                    console.print(f"  pruned {key}")
    except StackError as exc:
        _fail(exc)


@stack_app.command("drill")
def drill_cmd(
    root: RootOption = None,
    database: Annotated[
        str, typer.Option(help="Database whose newest backup to drill")
    ] = "prefect",
    secret_block: Annotated[
        str | None, typer.Option(help="Block to read back, e.g. secret/dev-alert-webhook-token")
    ] = None,
) -> None:
    """Restore the newest backup into staging, verify it, boot Prefect on it, time it."""
    from pipelines.stack.restore import restore_drill

    try:
        report = restore_drill(load_config(root), database, secret_block=secret_block)
    except StackError as exc:
        _fail(exc)
    console.print(
        f"drill {database}: {report.tables} tables, {report.rows} rows verified in "
        f"{report.elapsed:.1f} s (steps: {report.steps})"
    )
    if not report.within_objective:
        raise typer.Exit(1)


@stack_app.command("rotate")
def rotate_cmd(
    root: RootOption = None,
    role: Annotated[str, typer.Option(help="Database role: mlflow or prefect")] = "mlflow",
) -> None:
    """Rotate a database password: validate the new one for real, switch, or roll back."""
    from pipelines.stack.rotation import rotate_db_password

    try:
        result = rotate_db_password(load_config(root), role)
    except StackError as exc:
        _fail(exc)
    console.print(f"{role}: {result.status} ({', '.join(result.steps)})")


@stack_app.command("blocks")
def blocks_cmd(
    root: RootOption = None,
    env: Annotated[str, typer.Option(help="Environment in deploy/blocks.yaml")] = "dev",
    source: Annotated[str, typer.Option(help="env, file or secretsmanager")] = "env",
    path: Annotated[Path | None, typer.Option(help="Directory for the file source")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Secret manager endpoint")] = None,
) -> None:
    """Create or update an environment's blocks from an approved secret source."""
    from pipelines.stack.blocks import populate
    from pipelines.stack.sources import make_source

    try:
        saved = populate(load_config(root), env, make_source(source, path=path, endpoint=endpoint))
    except StackError as exc:
        _fail(exc)
    for name in saved:
        console.print(f"saved {name}")


@stack_app.command("renew-certs")
def renew_cmd(
    root: RootOption = None,
    force: Annotated[bool, typer.Option(help="Re-issue even outside the window")] = False,
) -> None:
    """Re-issue the proxy certificate inside its renewal window and reload the proxy."""
    from pipelines.stack.renew import renew_if_needed

    try:
        result = renew_if_needed(load_config(root), force=force)
    except StackError as exc:
        _fail(exc)
    state = "renewed" if result.renewed else "not due"
    console.print(f"{state}: serial {result.served_serial}, {result.days_left:.0f} days left")


@stack_app.command("env")
def env_cmd(root: RootOption = None) -> None:
    """Print shell exports for clients (the auth string is read from a file, not printed)."""
    from pipelines.stack.credentials import secret_path

    config = load_config(root)
    auth_file = secret_path(config, "prefect_api_auth")
    typer.echo(f"export PREFECT_API_URL={config.prefect_api_url}")
    typer.echo(f"export PREFECT_API_SSL_CERT_FILE={config.ca_cert}")
    typer.echo(f'export PREFECT_API_AUTH_STRING="$(cat {auth_file})"')
    typer.echo(f"export MLFLOW_TRACKING_URI={config.mlflow_url}")
    typer.echo(f"export REQUESTS_CA_BUNDLE={config.ca_cert}")


if __name__ == "__main__":
    stack_app()
