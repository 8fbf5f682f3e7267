"""Library commands (train, heads, data) as a typer sub-app.

The ``ordinal`` console command lives in ``pipelines.cli``, which mounts this app and adds
the orchestration commands; the library itself never imports the pipeline layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ordinal.data.text_files import read_text_records  # moved; kept importable from here
from ordinal.export.cli import export_app

app = typer.Typer(help="Ordinal regression on fine-tuned transformers.", no_args_is_help=True)
console = Console()

app.add_typer(export_app)

try:  # the data commands arrive with the data layer
    from ordinal.data.cli import data_app
except ImportError:  # pragma: no cover - only while the data layer is absent
    data_app = None
else:
    app.add_typer(data_app, name="data", help="Ingest, preprocess and calibrate datasets.")


def split_records(
    records: list[dict[str, Any]], eval_fraction: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deterministic split: every ``round(1/eval_fraction)``-th record goes to evaluation."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    stride = max(2, round(1 / eval_fraction))
    evaluation = [r for i, r in enumerate(records) if i % stride == stride - 1]
    train = [r for i, r in enumerate(records) if i % stride != stride - 1]
    return train, evaluation


def _parse_labels(value: str | None) -> list[str] | None:
    """``"1,2,3"`` -> ``["1", "2", "3"]``; refuses empty or repeated names.

    >>> _parse_labels("low, medium ,high")
    ['low', 'medium', 'high']
    """
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")]
    if len(names) < 2 or any(not name for name in names):
        raise typer.BadParameter(
            f"expected at least two comma-separated names, got {value!r}", param_hint="--labels"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise typer.BadParameter(f"{repeated} listed more than once", param_hint="--labels")
    return names


@app.command("heads")
def list_heads() -> None:
    """List the registered ordinal heads and supported backbone model types."""
    # Imported here: torch and transformers are not needed to start the command.
    from ordinal.heads import available_heads
    from ordinal.models import supported_model_types

    console.print("heads: " + ", ".join(available_heads()))
    console.print("model types: " + ", ".join(supported_model_types()))


@app.command("train")
def train(
    data: Annotated[
        Path | None, typer.Option(help="CSV/JSONL with text,label columns; default: demo reviews")
    ] = None,
    demo_size: Annotated[
        int, typer.Option(help="Demo reviews to generate when --data is not given")
    ] = 3000,
    model: Annotated[
        str, typer.Option(help="minilm, bert-tiny, vit-tiny or a model directory")
    ] = "minilm",
    labels: Annotated[
        str | None,
        typer.Option(
            help="The ordered labels as --data holds them, lowest first, comma-separated "
            "(e.g. '1,2,3,4,5,6,7,8,9,10' or 'low,medium,high'); default: 0-based positions"
        ),
    ] = None,
    label_values: Annotated[
        str, typer.Option(help="name: values are the --labels; index: positions in them")
    ] = "name",
    text_column: Annotated[str, typer.Option(help="Column of --data holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="Column of --data holding the label")] = "label",
    id_column: Annotated[
        str, typer.Option(help="Column of --data holding the record id (optional)")
    ] = "id",
    head: Annotated[str, typer.Option(help="cumulative_link, coral or corn")] = "cumulative_link",
    link: Annotated[
        str | None, typer.Option(help="logit, probit or cloglog (cumulative_link)")
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option(
            help="Number of ordered classes; default: len(--labels), or 5 for the demo, or "
            "the largest position in --data plus one"
        ),
    ] = None,
    epochs: Annotated[float, typer.Option(help="Training epochs")] = 2.0,
    max_steps: Annotated[
        int, typer.Option(help="Stop after this many steps (overrides epochs)")
    ] = -1,
    batch_size: Annotated[int, typer.Option(help="Training batch size")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Backbone learning rate")] = 5e-5,
    eval_fraction: Annotated[
        float, typer.Option(help="Share of records held out for evaluation")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for data order, dropout and init")] = 0,
    output_dir: Annotated[
        Path, typer.Option(help="Checkpoints and the final model go here")
    ] = Path("runs/train"),
    mlflow: Annotated[bool, typer.Option(help="Track the run in MLflow")] = True,
) -> None:
    """Fine-tune an ordinal model on labelled text and print its evaluation.

    Your own file: ``ordinal train --data ratings.csv --text-column review --label-column
    stars --labels 1,2,3,4,5,6,7,8,9,10``.
    """
    from ordinal.config import TrainSpec
    from ordinal.data.columns import Columns
    from ordinal.reporting import metrics_table
    from ordinal.training import train_ordinal_model

    label_names = _parse_labels(labels)
    if label_values not in ("name", "index"):
        raise typer.BadParameter(
            f"must be name or index, got {label_values!r}", param_hint="--label-values"
        )
    if label_names is not None and num_classes is not None and num_classes != len(label_names):
        raise typer.BadParameter(
            f"{num_classes} classes but --labels lists {len(label_names)}",
            param_hint="--num-classes",
        )
    if data is None:
        from ordinal.data.demo_text import REVIEW_LABELS, make_review_records

        if label_names is not None:
            raise typer.BadParameter("only applies to --data", param_hint="--labels")
        records = make_review_records(demo_size, seed=seed)
        num_classes = num_classes or len(REVIEW_LABELS)
        if num_classes == len(REVIEW_LABELS):
            label_names = list(REVIEW_LABELS)
    else:
        try:
            columns = Columns(id=id_column, text=text_column, label=label_column)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--*-column") from None
        try:
            records = read_text_records(
                data,
                labels=label_names,
                label_values=label_values,  # type: ignore[arg-type]
                num_classes=None if label_names else num_classes,
                columns=columns,
            )
        except (OSError, ValueError) as exc:  # DataFormatError is a ValueError
            console.print(f"[red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        if not records:
            raise typer.BadParameter(f"{data} holds no records", param_hint="--data")
        if num_classes is None:
            num_classes = len(label_names) if label_names else max(r["label"] for r in records) + 1
    spec = TrainSpec(
        model=model,
        head=head,
        link=link,
        num_classes=num_classes,
        label_names=label_names,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        output_dir=output_dir,
        report_to=["mlflow"] if mlflow else [],
    )
    train_records, eval_records = split_records(records, eval_fraction)
    console.print(
        f"training [bold]{spec.head}[/] on [bold]{spec.model}[/]: "
        f"{len(train_records)} train / {len(eval_records)} eval records, "
        f"{spec.num_classes} classes"
    )
    result = train_ordinal_model(spec, train_records, eval_records)
    console.print(metrics_table(result))
    print(f"model saved to {result.model_dir}")
