"""``ordinal data`` commands: ingest, preprocess and calibrate, with progress and a summary.

This module defines the typer sub-app ``data_app``; the top-level ``ordinal`` command (in
``pipelines/``) mounts it. Every command is a thin wrapper over a library function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ordinal.data.calibration import (
    CalibrationSpec,
    calibrate,
    load_selection,
    selection_path,
    verify_selection,
)
from ordinal.data.ingest import ingest
from ordinal.data.preprocess import PreprocessSpec, preprocess
from ordinal.data.splits import SplitSpec
from ordinal.exceptions import OrdinalError

data_app = typer.Typer(
    name="data",
    help="Ingest approved sources, preprocess them, and draw calibration sets.",
    no_args_is_help=True,
)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="ORDINAL_STORAGE_URL",
        help="Storage root: a folder, file:// URL or s3://bucket/prefix (default .ordinal/store).",
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="ORDINAL_S3_ENDPOINT_URL",
        help="S3-compatible endpoint for s3:// roots and sources (default AWS S3).",
    ),
]
VersionOpt = Annotated[str, typer.Option("--version", "-v", help="Dataset version.")]

# Option defaults come from the specs, so a threshold has one source of truth.
_PP = PreprocessSpec.model_fields
_SPLIT = SplitSpec.model_fields
_CAL = CalibrationSpec.model_fields


def _console() -> Console:
    return Console(highlight=False)


@contextmanager
def _progress(console: Console, label: str) -> Iterator[Callable[[str, int, int], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{label}: {stage}", total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


def _fail(console: Console, exc: Exception, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
    return typer.Exit(code)


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


@data_app.command("ingest")
def ingest_cmd(
    source: Annotated[str, typer.Argument(help="Name of an approved source.")],
    registry: Annotated[
        Path | None,
        typer.Option("--registry", envvar="ORDINAL_SOURCES", help="Approved-source registry."),
    ] = None,
    storage: StorageOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Fetch an approved source, check its sha256 and write datasets/raw/{dataset}/{version}/."""
    console = _console()
    try:
        with _progress(console, "ingest") as progress:
            result = ingest(
                source,
                registry=registry,
                storage=storage,
                endpoint_url=endpoint_url,
                progress=progress,
            )
    except OrdinalError as exc:
        raise _fail(console, exc) from None
    spec = result.source
    console.print(
        _table(
            f"ingest {spec.name}",
            [
                ("dataset", f"{spec.dataset}/{spec.version}"),
                ("status", "ingested" if result.created else "already ingested (no-op)"),
                ("sha256", spec.sha256),
                ("files", str(len(result.files))),
                ("bytes", f"{result.size:,}"),
                ("manifest", result.manifest_key),
            ],
        )
    )


@data_app.command("preprocess")
def preprocess_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    version: VersionOpt = "v1",
    storage: StorageOpt = None,
    endpoint_url: EndpointOpt = None,
    max_rejected_fraction: Annotated[
        float, typer.Option(help="Fail above this fraction of invalid records.")
    ] = _PP["max_rejected_fraction"].default,
    max_duplicate_fraction: Annotated[
        float, typer.Option(help="Fail above this fraction of duplicate records.")
    ] = _PP["max_duplicate_fraction"].default,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or parquet.")] = _PP[
        "output_format"
    ].default,
    dedupe: Annotated[bool, typer.Option(help="Drop duplicate content.")] = _PP["dedupe"].default,
    train: Annotated[float, typer.Option(help="Train fraction.")] = _SPLIT["train"].default,
    validation: Annotated[float, typer.Option(help="Validation fraction.")] = _SPLIT[
        "validation"
    ].default,
    test: Annotated[float, typer.Option(help="Test fraction.")] = _SPLIT["test"].default,
) -> None:
    """Validate records, quarantine rejects, de-duplicate and split a raw dataset version."""
    console = _console()
    try:
        spec = PreprocessSpec(
            max_rejected_fraction=max_rejected_fraction,
            max_duplicate_fraction=max_duplicate_fraction,
            output_format=output_format,  # type: ignore[arg-type]
            dedupe=dedupe,
            split=SplitSpec(train=train, validation=validation, test=test),
        )
    except ValidationError as exc:
        raise _fail(console, exc, 2) from None
    try:
        with _progress(console, "preprocess") as progress:
            result = preprocess(
                dataset,
                version,
                storage=storage,
                endpoint_url=endpoint_url,
                spec=spec,
                progress=progress,
            )
    except OrdinalError as exc:
        raise _fail(console, exc) from None
    counts = result.report.record_counts()
    rows = [(k, f"{v:,}") for k, v in counts.items()]
    rows += [(f"rejected: {k}", f"{v:,}") for k, v in sorted(result.report.reasons.items())]
    rows.append(("manifest", result.manifest_key))
    console.print(_table(f"preprocess {dataset}/{version}", rows))
    dist = result.report.label_distribution(tuple(result.manifest.parameters["labels"]))
    labels = Table(title="label distribution (accepted)", header_style="bold")
    labels.add_column("label")
    for split in ("train", "validation", "test"):
        labels.add_column(split, justify="right")
    labels.add_column("all", justify="right")
    for name in dist["labels"]:
        labels.add_row(
            name,
            *(str(dist["splits"][s][name]) for s in ("train", "validation", "test")),
            str(dist["overall"][name]),
        )
    console.print(labels)


@data_app.command("calibrate")
def calibrate_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    version: VersionOpt = "v1",
    size: Annotated[int, typer.Option(help="Number of samples (100-500).")] = _CAL["size"].default,
    seed: Annotated[int, typer.Option(help="Selection seed.")] = _CAL["seed"].default,
    size_bins: Annotated[int, typer.Option(help="Input-size bins per label.")] = _CAL[
        "size_bins"
    ].default,
    selection_dir: Annotated[
        Path, typer.Option(help="Where the commit-ready {dataset}.yaml is written.")
    ] = Path("calibration"),
    check: Annotated[
        bool,
        typer.Option(help="Do not write the selection file; fail if it differs from it."),
    ] = False,
    storage: StorageOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Draw a stratified calibration set from the training split and record the selection."""
    console = _console()
    try:
        spec = CalibrationSpec(size=size, seed=seed, size_bins=size_bins)
    except ValidationError as exc:
        raise _fail(console, exc, 2) from None
    try:
        committed = load_selection(selection_path(dataset, selection_dir)) if check else None
        with _progress(console, "calibrate") as progress:
            result = calibrate(
                dataset,
                version,
                spec=spec,
                storage=storage,
                endpoint_url=endpoint_url,
                selection_dir=None if check else selection_dir,
                progress=progress,
            )
        if committed is not None:
            verify_selection(committed, result.selection)
    except OrdinalError as exc:
        raise _fail(console, exc) from None
    sel = result.selection
    rows = [
        ("dataset", f"{dataset}/{version} ({sel.kind})"),
        ("selected", str(len(sel.ids))),
        ("seed", str(spec.seed)),
        ("size bin edges", ", ".join(map(str, sel.size_edges))),
        ("train sha256", sel.train_sha256),
        ("manifest", result.manifest_key),
        (
            "selection file",
            "matches committed file" if check else str(result.selection_path),
        ),
    ]
    rows += [(f"stratum {k}", str(v)) for k, v in sel.strata.items()]
    console.print(_table(f"calibrate {dataset}", rows))
