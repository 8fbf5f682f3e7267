"""``ordinal data`` commands: add-source, ingest, preprocess and calibrate, with a summary.

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

from ordinal.data._records import parse_list
from ordinal.data.add_source import add_source
from ordinal.data.calibration import calibrate
from ordinal.data.errors import RegistryError, SourceExistsError
from ordinal.data.ingest import ingest
from ordinal.data.preprocess import PreprocessSpec, preprocess
from ordinal.data.selection import SELECTION_DIR_ENV, CalibrationSpec
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


def _ingest_status(result) -> str:
    if result.created:
        return "ingested"
    if result.declaration_updated:
        fields = ", ".join(result.declaration_updated)
        return f"already ingested (same bytes); recorded the registry's new {fields}"
    return "already ingested (no-op)"


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
                ("status", _ingest_status(result)),
                ("sha256", spec.sha256),
                ("files", str(len(result.files))),
                ("bytes", f"{result.size:,}"),
                ("manifest", result.manifest_key),
            ],
        )
    )


def _list(text: str | None) -> list[str] | None:
    """``a,b,c``, a JSON list (for names with commas) or an integer range ``1..10``."""
    if text is None:
        return None
    try:
        return parse_list(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _help(option: str, what: str) -> str:
    """Help text naming the spec default, so a threshold has one source of truth."""
    field = _PP.get(option) or _SPLIT.get(option.removeprefix("split_"))
    default = getattr(field, "default", None)
    if option.endswith("_column"):
        column = option.removesuffix("_column")
        return f"{what} (default: the registry's columns, else {column!r})."
    if option in ("labels", "label_values"):
        return f"{what} (default: the registry's declaration)."
    if isinstance(default, tuple):
        default = ",".join(default)
    return f"{what} (default {default})."


LabelsOpt = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help=_help(
            "labels",
            "Ordered labels as the data holds them: a,b,c, a JSON list, or a range 1..10",
        ),
    ),
]
LabelValuesOpt = Annotated[
    str | None,
    typer.Option(
        "--label-values",
        help=_help("label_values", "'name': match values to labels by name; 'index': 0-based"),
    ),
]
IdColumnOpt = Annotated[
    str | None, typer.Option("--id-column", help=_help("id_column", "Column of the record id"))
]
TextColumnOpt = Annotated[
    str | None, typer.Option("--text-column", help=_help("text_column", "Column of the text"))
]
LabelColumnOpt = Annotated[
    str | None, typer.Option("--label-column", help=_help("label_column", "Column of the label"))
]
FileColumnOpt = Annotated[
    str | None,
    typer.Option("--file-column", help=_help("file_column", "Image folders: column of the file")),
]


@data_app.command("preprocess")
def preprocess_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    version: VersionOpt = "v1",
    storage: StorageOpt = None,
    endpoint_url: EndpointOpt = None,
    labels: LabelsOpt = None,
    label_values: LabelValuesOpt = None,
    id_column: IdColumnOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    file_column: FileColumnOpt = None,
    labels_file: Annotated[
        str | None, typer.Option(help=_help("labels_file", "Image folders: the labels file"))
    ] = None,
    min_text_chars: Annotated[
        int | None, typer.Option(help=_help("min_text_chars", "Shortest text, in characters"))
    ] = None,
    max_text_chars: Annotated[
        int | None, typer.Option(help=_help("max_text_chars", "Longest text, in characters"))
    ] = None,
    max_rejected_fraction: Annotated[
        float | None,
        typer.Option(
            help=_help("max_rejected_fraction", "Fail above this fraction of invalid records")
        ),
    ] = None,
    max_duplicate_fraction: Annotated[
        float | None,
        typer.Option(
            help=_help("max_duplicate_fraction", "Fail above this fraction of duplicates")
        ),
    ] = None,
    dedupe: Annotated[
        bool | None,
        typer.Option("--dedupe/--no-dedupe", help=_help("dedupe", "Drop duplicate content")),
    ] = None,
    train: Annotated[float | None, typer.Option(help=_help("train", "Train fraction"))] = None,
    validation: Annotated[
        float | None, typer.Option(help=_help("validation", "Validation fraction"))
    ] = None,
    test: Annotated[float | None, typer.Option(help=_help("test", "Test fraction"))] = None,
    split_salt: Annotated[
        str | None, typer.Option(help=_help("split_salt", "Salt of the id hash that splits"))
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", "--output-format", help=_help("output_format", "jsonl or parquet")
        ),
    ] = None,
    image_modes: Annotated[
        str | None, typer.Option(help=_help("image_modes", "Allowed image modes, comma-separated"))
    ] = None,
    min_image_side: Annotated[
        int | None, typer.Option(help=_help("min_image_side", "Smallest image side, pixels"))
    ] = None,
    max_image_side: Annotated[
        int | None, typer.Option(help=_help("max_image_side", "Largest image side, pixels"))
    ] = None,
) -> None:
    """Validate records, quarantine rejects, de-duplicate and split a raw dataset version.

    Every option left out keeps its default; labels, label values and columns default to
    the source's registry entry (recorded at ingestion).
    """
    console = _console()
    options = {
        "labels": _list(labels),
        "label_values": label_values,
        "id_column": id_column,
        "text_column": text_column,
        "label_column": label_column,
        "file_column": file_column,
        "labels_file": labels_file,
        "min_text_chars": min_text_chars,
        "max_text_chars": max_text_chars,
        "max_rejected_fraction": max_rejected_fraction,
        "max_duplicate_fraction": max_duplicate_fraction,
        "dedupe": dedupe,
        "train": train,
        "validation": validation,
        "test": test,
        "split_salt": split_salt,
        "output_format": output_format,
        "image_modes": _list(image_modes),
        "min_image_side": min_image_side,
        "max_image_side": max_image_side,
    }
    try:
        spec = PreprocessSpec.from_options(options)
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
    params = result.manifest.parameters
    rows += [
        ("label values", str(params.get("label_values"))),
        ("columns", ", ".join(f"{k}={v}" for k, v in _columns_read(params).items())),
        ("manifest", result.manifest_key),
    ]
    console.print(_table(f"preprocess {dataset}/{version}", rows))
    dist = result.report.label_distribution(tuple(params["labels"]))
    labels_table = Table(title="label distribution (accepted)", header_style="bold")
    labels_table.add_column("label")
    for split in ("train", "validation", "test"):
        labels_table.add_column(split, justify="right")
    labels_table.add_column("all", justify="right")
    for name in dist["labels"]:
        labels_table.add_row(
            name,
            *(str(dist["splits"][s][name]) for s in ("train", "validation", "test")),
            str(dist["overall"][name]),
        )
    console.print(labels_table)


def _columns_read(params: dict) -> dict[str, str]:
    cols = dict(params.get("columns") or {})
    content = "file" if params.get("kind") == "image" else "text"
    return {k: cols[k] for k in ("id", content, "label") if k in cols}


@data_app.command("add-source")
def add_source_cmd(
    location: Annotated[str, typer.Argument(help="A file, a folder, or a URI (s3://, https://).")],
    name: Annotated[str, typer.Option(help="Source name (unique in the registry).")],
    dataset: Annotated[str, typer.Option(help="Dataset name: datasets/raw/{dataset}/{version}/.")],
    labels: Annotated[
        str,
        typer.Option(
            help="Ordered labels, lowest first, as the data holds them: a,b,c, a JSON list, "
            "or a range 1..10."
        ),
    ],
    licence: Annotated[str, typer.Option(help="Licence of the data.")],
    owner: Annotated[str, typer.Option(help="Person or team accountable for the data.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Dataset version.")] = "v1",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl, parquet or image_folder (default: inferred)."),
    ] = None,
    label_values: Annotated[
        str,
        typer.Option(help="'name': values are the labels themselves; 'index': 0-based positions."),
    ] = "name",
    id_column: Annotated[str | None, typer.Option(help="Column of the record id.")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column of the text.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column of the label.")] = None,
    file_column: Annotated[
        str | None, typer.Option(help="Image folders: labels.csv column of the image file.")
    ] = None,
    description: Annotated[str, typer.Option(help="One line about the data.")] = "",
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            envvar="ORDINAL_SOURCES",
            help="Registry to append to (default ./sources/approved.yaml, created if missing).",
        ),
    ] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Checksum a file, folder or URI and append its entry to a registry for review."""
    console = _console()
    columns = {
        "id": id_column,
        "text": text_column,
        "label": label_column,
        "file": file_column,
    }
    try:
        with console.status("hashing and checking the data"):
            added = add_source(
                location,
                name=name,
                dataset=dataset,
                version=version,
                format=fmt,
                labels=_list(labels) or [],
                label_values=label_values,
                columns={k: v for k, v in columns.items() if v},
                licence=licence,
                owner=owner,
                description=description,
                registry=registry,
                endpoint_url=endpoint_url,
            )
    except SourceExistsError as exc:
        raise _fail(console, exc) from None
    except RegistryError as exc:
        # The entry itself is invalid: a parameter problem (exit 2), like other commands.
        raise _fail(console, exc, 2 if exc.entries else 1) from None
    except OrdinalError as exc:
        raise _fail(console, exc) from None
    spec = added.source
    rows = [
        ("source", spec.name),
        ("dataset", f"{spec.dataset}/{spec.version}"),
        ("uri", spec.uri),
        ("sha256", spec.sha256),
        ("format", spec.format),
        ("labels", ", ".join(spec.labels)),
        ("label values", spec.label_values),
        ("columns", ", ".join(f"{k}={v}" for k, v in spec.declared_columns().items())),
        (
            "registry",
            f"{added.registry} ({'created' if added.created else 'appended'}, "
            f"registry_version {added.registry_version})",
        ),
        ("records read", f"{added.records:,}"),
    ]
    rows += [(f"label {k}", f"{v:,}") for k, v in added.label_counts.items()]
    if added.unmatched:
        outside = ", ".join(f"{k!r} x{v}" for k, v in added.unmatched.items())
        rows.append(("not in labels", f"{outside} (preprocessing will quarantine these)"))
    console.print(_table(f"add-source {spec.name}", rows))
    console.print(
        f"Review the entry in {added.registry} and commit it; then ingest it with "
        f"`ordinal data ingest {spec.name}`."
    )


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
        Path | None,
        typer.Option(
            envvar=SELECTION_DIR_ENV,
            help="Folder of committed selections ({dataset}@{version}.yaml); default: the "
            "project's calibration/ (never the current folder).",
        ),
    ] = None,
    propose: Annotated[
        bool,
        typer.Option(
            "--propose",
            help="Write the drawn selection for review (to --proposal-dir) instead of "
            "failing when it differs from the committed one, or when there is none.",
        ),
    ] = False,
    proposal_dir: Annotated[
        Path | None,
        typer.Option(help="Where --propose writes (default: {selection dir}/proposed/)."),
    ] = None,
    storage: StorageOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Draw a stratified calibration set from the training split and check it against the
    committed selection of the dataset version (or, with --propose, write it for review).

    Without --propose a drawn selection that differs from the committed one, or a dataset
    version without one, fails (exit 1) and stores nothing.
    """
    console = _console()
    try:
        spec = CalibrationSpec(size=size, seed=seed, size_bins=size_bins)
    except ValidationError as exc:
        raise _fail(console, exc, 2) from None
    try:
        with _progress(console, "calibrate") as progress:
            result = calibrate(
                dataset,
                version,
                spec=spec,
                storage=storage,
                endpoint_url=endpoint_url,
                selection_dir=selection_dir,
                propose=propose,
                proposal_dir=proposal_dir,
                progress=progress,
            )
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
    ]
    if result.status == "committed":
        rows.append(("selection", f"matches the committed {result.selection_path}"))
    else:
        rows.append(("selection", f"PROPOSED, not committed: {result.proposal_path}"))
    rows += [(f"stratum {k}", str(v)) for k, v in sel.strata.items()]
    console.print(_table(f"calibrate {dataset}", rows))
    if result.status == "proposed":
        diff = result.proposal_diff
        if diff is None:
            console.print(f"There is no committed selection at {result.committed_path}.")
        elif not diff:
            console.print(f"The proposal equals the committed {result.committed_path}.")
        else:
            console.print(
                f"The proposal differs from the committed {result.committed_path}:\n"
                + "\n".join(diff.lines("proposed")),
                soft_wrap=True,
                markup=False,
            )
        # Plain print: the paths must survive copy and paste whatever the terminal width.
        print(f"proposed selection written for review: {result.proposal_path}")
        print(f"to adopt it, review it and commit it as {result.committed_path}")
