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
) -> None:
    """Start every service that is not running (idempotent) and wait until all are healthy."""
    from pipelines.stack import stack

    config = load_config(root)
    try:
        timings = stack.up(config, with_workers=workers)
    except StackError as exc:
        _fail(exc)
    total = sum(timings.values())
    console.print(f"stack up in {total:.1f} s (state: {config.root})")
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
    file: Annotated[Path | None, typer.Option(help="Pools file (default deploy/pools.yaml)")] = None,
) -> None:
    """Create or update work pools and queues from the declarative file."""
    from pipelines.stack import pools

    try:
        applied = pools.apply_pools(load_config(root), file)
    except StackError as exc:
        _fail(exc)
    for pool, queues in applied.items():
        console.print(f"pool {pool}: queues {', '.join(queues)}")


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
