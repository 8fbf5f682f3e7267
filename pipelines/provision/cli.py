"""``ordinal infra``: leaks, check, replication-rehearsal, prices.

Mounted by ``pipelines/cli.py`` as ``app.add_typer(infra_app, name="infra")``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["infra_app"]

infra_app = typer.Typer(
    help="Provisioned infrastructure: leak check, policy checks, DR rehearsal, prices.",
    no_args_is_help=True,
)
console = Console()

EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help="An S3/EC2-compatible endpoint (the emulator); default: AWS with the "
        "environment's credentials.",
        envvar="ORDINAL_AWS_ENDPOINT",
    ),
]
RegionOpt = Annotated[str, typer.Option("--region", envvar="AWS_REGION")]


def _client(service: str, endpoint: str | None, region: str):
    import boto3

    kwargs = {"region_name": region}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
        kwargs.setdefault("aws_access_key_id", os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
        kwargs.setdefault(
            "aws_secret_access_key", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
        )
    return boto3.client(service, **kwargs)


@infra_app.command()
def leaks(
    endpoint: EndpointOpt = None,
    region: RegionOpt = "us-east-1",
    instance_dir: Annotated[
        Path | None,
        typer.Option(
            help="Emulator only: the user-data runner's folder of instance process groups."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    on_stack: Annotated[
        bool,
        typer.Option("--stack", help="Look on the running stack's emulated endpoint."),
    ] = False,
) -> None:
    """List everything tagged for a run that is still alive; exit 1 when there is any."""
    from pipelines.provision.leaks import find_leaks

    if on_stack and endpoint:
        console.print(
            "[bold red]error:[/] --stack and --endpoint each name an endpoint to look on: "
            "pass one of them"
        )
        raise typer.Exit(2)
    if on_stack:
        from pipelines.stack.config import load_config

        config = load_config()
        if not config.config_file.is_file():
            console.print(
                f"[bold red]error:[/] no stack at {config.root} (no stack.json): start one "
                "with `ordinal stack up`, or set ORDINAL_STACK_ROOT, or pass --endpoint"
            )
            raise typer.Exit(2)
        if config.s3_endpoint:
            console.print(
                f"[bold red]error:[/] the stack at {config.root} uses an external S3 "
                f"endpoint ({config.s3_endpoint}), not an emulated cloud; pass --endpoint"
            )
            raise typer.Exit(2)
        endpoint = config.s3_url

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = find_leaks(_client("ec2", endpoint, region), instance_dir)
    except (BotoCoreError, ClientError) as exc:
        where = endpoint or f"AWS ({region})"
        console.print(f"[bold red]error:[/] could not list instances on {where}: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(found, indent=2))
    elif not found:
        console.print("no leaks: nothing tagged ordinal:run-id is alive")
    else:
        table = Table(title=f"{len(found)} leaked resource(s)", header_style="bold")
        for column in ("kind", "id", "state", "run_id", "stage"):
            table.add_column(column)
        for leak in found:
            table.add_row(
                *(str(leak.get(c, "")) for c in ("kind", "id", "state", "run_id", "stage"))
            )
        console.print(table)
    raise typer.Exit(1 if found else 0)


@infra_app.command()
def check(
    checkov: Annotated[bool, typer.Option(help="Run checkov on the plan JSON.")] = True,
    work_dir: Annotated[Path | None, typer.Option(help="Keep work files here.")] = None,
) -> None:
    """fmt, validate, terraform test, checkov on plan JSON, IAM allow/deny tables."""
    from pipelines.provision.checks import run_checks

    def show(step) -> None:
        mark = "[green]ok[/green]" if step.ok else "[red]FAILED[/red]"
        console.print(f"{mark} {step.name} ({step.seconds:.1f} s)")
        if step.detail:
            print(step.detail)

    steps = run_checks(work_dir, checkov=checkov, progress=show)
    failed = [s.name for s in steps if not s.ok]
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        raise typer.Exit(1)
    console.print("all infrastructure checks passed")


@infra_app.command("replication-rehearsal")
def replication_rehearsal(
    bucket: Annotated[
        str | None, typer.Option(help="Data bucket (default: <prefix>-data).")
    ] = None,
    dr_bucket: Annotated[
        str | None, typer.Option(help="DR bucket (default: <prefix>-data-dr).")
    ] = None,
    dr_region: Annotated[str, typer.Option(help="Region of the DR bucket.")] = "us-west-2",
    name_prefix: Annotated[str, typer.Option(help="Bucket name prefix.")] = "ordinal",
    endpoint: EndpointOpt = None,
    region: RegionOpt = "us-east-1",
    emulated: Annotated[
        bool,
        typer.Option(help="Start a throw-away emulated cloud, apply the platform, rehearse there."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a canary, get it to DR, verify checksum and version ids, report the time."""
    import tempfile

    from pipelines.provision.replication import rehearse_replication

    bucket = bucket or f"{name_prefix}-data"
    dr_bucket = dr_bucket or f"{name_prefix}-data-dr"
    if emulated:
        from pipelines.provision.emulation.cloud import EmulatedCloud

        with EmulatedCloud(
            Path(tempfile.mkdtemp(prefix="ordinal-rehearsal-")), name_prefix
        ) as cloud:
            report = rehearse_replication(
                cloud.client("s3"), cloud.client("s3", dr_region), bucket, dr_bucket, mode="copy"
            )
    else:
        mode = "copy" if endpoint else "wait"
        report = rehearse_replication(
            _client("s3", endpoint, region),
            _client("s3", endpoint, dr_region),
            bucket,
            dr_bucket,
            mode=mode,
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for key in (
        "bucket",
        "dr_bucket",
        "key",
        "sha256",
        "source_version_id",
        "dr_version_id",
        "elapsed_seconds",
    ):
        print(f"{key + ':':<19} {report[key]}")
    print(report["note"])


@infra_app.command()
def prices() -> None:
    """Print the committed price table (deploy/prices.yaml) with its date and source."""
    from pipelines.provision.prices import load_prices

    table = load_prices()
    out = Table(title=f"prices ({table.currency}/hour) as of {table.date}", header_style="bold")
    for column in ("region", "class", "on-demand", "spot"):
        out.add_column(column)
    for region, classes in table.prices.items():
        for itype, markets in classes.items():
            out.add_row(region, itype, f"{markets['on-demand']:.4f}", f"{markets['spot']:.4f}")
    console.print(out)
    print(f"source: {table.source}")


def main() -> None:  # pragma: no cover - `python -m pipelines.provision.cli`
    infra_app(prog_name="ordinal infra")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
