"""The ``ordinal`` console command: the library's commands plus orchestration (``run``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ordinal.cli import app as library_app
from ordinal.paths import STATE_DIR_ENV, state_dir
from pipelines.provision.cli import infra_app
from pipelines.release.cli import release_app
from pipelines.stack.cli import stack_app

app = typer.Typer(
    help="ordinal: ordinal regression on fine-tuned transformers.", no_args_is_help=True
)
app.add_typer(library_app)
app.add_typer(stack_app, name="stack", help="The control-plane stack: up, down, status, ...")
app.add_typer(release_app, name="release", help="Release bundles: bundle, verify, publish, ...")
app.add_typer(infra_app, name="infra", help="Provisioned infrastructure: check, leaks, ...")
console = Console()


def prefect_defaults() -> None:
    """Embedded defaults for Prefect: its home (temporary API database, results) in the state
    folder rather than ``~/.prefect``, no analytics. Set before Prefect is imported."""
    # Pinned for every process of the run (kernels run in their step's folder).
    os.environ.setdefault(STATE_DIR_ENV, str(state_dir()))
    os.environ.setdefault("PREFECT_HOME", str(state_dir() / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # A streaming step's notebook output (training progress) reaches the console and the
    # Prefect logs through papermill's logger; workers inherit this environment.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "papermill")


def _exit_cleanly_on_sigterm() -> None:
    """On SIGTERM, exit through Python (status 143) rather than die at once.

    During the flow Prefect turns SIGTERM into a graceful shutdown (teardown runs), then
    re-sends the signal to the handler it found. With the default handler the process would
    die without its exit handlers, leaving Prefect's temporary API server running.
    """

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def _parse_sets(values: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; ``GROUP.KEY=VALUE`` fills the dict parameter ``GROUP``.

    >>> _parse_sets(["max-steps=5", "preprocess.max_rejected_fraction=0.2"])
    {'max_steps': '5', 'preprocess': {'max_rejected_fraction': '0.2'}}
    """
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        group, dot, name = key.strip().partition(".")
        if dot:
            if not name:
                raise typer.BadParameter(f"expected GROUP.KEY=VALUE, got {item!r}", "--set")
            out.setdefault(group.replace("-", "_"), {})[name.replace("-", "_")] = value
        else:
            out[key.strip().replace("-", "_")] = value
    return out


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"run {summary['run_id']}: {summary['status']}", header_style="bold")
    for column in ("step", "status", "seconds", "where"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for record in summary["steps"]:
        where = record["where"]
        where = "worker" if where.startswith("Prefect worker") else where.split(" (")[0]
        table.add_row(record["step"], record["status"], f"{record['seconds']:.1f}", where)
    table.add_row("total", "", f"{summary['seconds']:.1f}", "")
    return table


def _print_where(summary: dict[str, Any]) -> None:
    run_dir = Path(summary["run_dir"])
    # Plain prints: paths must stay on one line so they can be copied from the terminal.
    print(f"index page:   {summary['index']}")
    for step, key in (("train", "model_dir"), ("export", "onnx_path"), ("quantize", "int8_path")):
        path = run_dir / step / "outputs.json"
        if path.is_file():
            print(f"{step + ':':<13} {json.loads(path.read_text())[key]}")
    uri = summary.get("tracking_uri") or ""
    print(f"MLflow run:   {summary['mlflow_run']}")
    if uri and not uri.startswith(("http://", "https://")):
        print(f"open the MLflow UI with: .venv/bin/mlflow ui --backend-store-uri {uri}")


@app.command("run")
def run(
    source: Annotated[str, typer.Option(help="Approved source (demo-shapes-large: images)")] = (
        "demo-reviews"
    ),
    model: Annotated[
        str, typer.Option(help="minilm, bert-tiny, vit-shapes, vit-tiny or a model folder")
    ] = "",
    head: Annotated[str, typer.Option(help="cumulative_link, coral or corn")] = "cumulative_link",
    epochs: Annotated[
        float, typer.Option(help="Training epochs (0: 2 for text, 20 for images)")
    ] = 0.0,
    max_steps: Annotated[int, typer.Option(help="Stop training after N steps (-1: epochs)")] = -1,
    compute: Annotated[str, typer.Option(help="auto, worker or in-process")] = "auto",
    provisioner: Annotated[
        str,
        typer.Option(
            help="local (a worker for the run) or tofu (a GPU VM for train, then a CPU VM; "
            "see docs/infrastructure.md)"
        ),
    ] = "local",
    run_id: Annotated[str, typer.Option(help="Run id; reuse one to resume a failed run")] = "",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other pipeline parameter, KEY=VALUE (repeatable)"),
    ] = None,
    on_stack: Annotated[
        bool,
        typer.Option(
            "--stack",
            help="Run on the running control-plane stack: its Prefect server (TLS), MLflow "
            "server and S3 data bucket",
        ),
    ] = False,
    stack_root: Annotated[
        Path | None,
        typer.Option(
            help="The stack's root folder (default: $ORDINAL_STACK_ROOT or <state>/stack)"
        ),
    ] = None,
    takeover: Annotated[
        bool,
        typer.Option(
            help="Take over a run id whose owner is still running: fence it (SIGTERM, then "
            "SIGKILL of its process group) first"
        ),
    ] = False,
) -> None:
    """Run the whole pipeline: ingest, preprocess, calibrate, train, export, parity, quantise.

    Every step is a notebook executed with papermill by a Prefect task, rendered to HTML and
    tracked in MLflow; the run ends with an index page for reviewers.
    """
    stack_storage = ""
    if on_stack:
        from pipelines.stack import s3
        from pipelines.stack.config import load_config
        from pipelines.stack.errors import StackError
        from pipelines.stack.run_env import check_running, run_environment

        config = load_config(stack_root)
        try:
            check_running(config)
        except StackError as exc:
            console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        # Before Prefect is imported: its client reads the API URL, auth and CA from here.
        os.environ.update(run_environment(config))
        stack_storage = s3.data_storage_url()
        console.print(
            f"on the stack at {config.root}: Prefect {config.prefect_api_url}, "
            f"MLflow {config.mlflow_url}, storage {stack_storage}"
        )
    prefect_defaults()
    from pipelines.errors import StepParametersError, is_disk_full
    from pipelines.flow import PipelineParams, check_params, ordinal_pipeline

    values = {
        "source": source,
        "model": model,
        "head": head,
        "epochs": epochs,
        "max_steps": max_steps,
        "compute": compute,
        "provisioner": provisioner,
        "run_id": run_id,
        **({"storage": stack_storage} if stack_storage else {}),
        **_parse_sets(set_ or []),
    }
    try:
        params = check_params(values)
    except StepParametersError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.rule(f"ordinal pipeline: run {params.run_id}")
    from pipelines.ownership import RunOwnedError, acquire_run

    try:  # before Prefect's temporary server starts: it inherits the owner's token
        ownership = acquire_run(PipelineParams.run_dir(params), takeover=takeover)
    except RunOwnedError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(3) from None
    if ownership.fenced:
        console.print(f"fenced the run's previous owner: {ownership.fenced}", soft_wrap=True)
    _exit_cleanly_on_sigterm()
    failure: BaseException | None = None
    try:
        summary = ordinal_pipeline(params)
    except Exception as exc:  # the summary on disk still tells what ran and where it failed
        failure = exc
        summary_path = PipelineParams.run_dir(params) / "summary.json"
        if not summary_path.is_file():
            if not is_disk_full(exc):
                raise
            _print_disk_full(PipelineParams.run_dir(params), params.run_id, exc)
            with contextlib.suppress(OSError):
                ownership.release()
            raise typer.Exit(1) from None
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    ownership.release()
    console.print(_summary_table(summary))
    print(f"compute:      {summary['compute']}")
    _print_where(summary)
    if failure is not None:
        if is_disk_full(failure):
            _print_disk_full(PipelineParams.run_dir(params), params.run_id, failure)
            raise typer.Exit(1)
        console.print(
            f"[bold red]run failed:[/] {type(failure).__name__}: {failure}", soft_wrap=True
        )
        raise typer.Exit(1)


def _print_disk_full(run_dir: Path, run_id: str, exc: BaseException) -> None:
    console.print(f"[bold red]run failed:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
    console.print(
        f"[bold red]the disk holding {run_dir} is full.[/] Finished steps are kept; free "
        f"space there and resume with `ordinal run --run-id {run_id}` (same options).",
        soft_wrap=True,
    )
