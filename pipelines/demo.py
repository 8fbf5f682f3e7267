"""The main job on embedded defaults: the demo reviews, the real MiniLM, local MLflow."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ordinal.cli import split_records
from ordinal.config import TrainSpec
from ordinal.data.demo_text import REVIEW_LABELS, make_review_records
from ordinal.reporting import metrics_table
from ordinal.tracking import configure_mlflow
from ordinal.training import train_ordinal_model


def run_demo(
    output_dir: Path,
    demo_size: int = 3000,
    epochs: float = 2.0,
    head: str = "cumulative_link",
    model: str = "minilm",
    console: Console | None = None,
) -> None:
    """Fine-tune ``model`` on ``demo_size`` demo reviews and print the evaluation."""
    console = console or Console()
    spec = TrainSpec(
        model=model,
        head=head,
        epochs=epochs,
        output_dir=output_dir,
        label_names=list(REVIEW_LABELS),
        run_name=f"demo-{head}",
    )
    records = make_review_records(demo_size, seed=spec.seed)
    train_records, eval_records = split_records(records, 0.2)
    console.rule("ordinal: demo run")
    console.print(
        f"fine-tuning [bold]{model}[/] with a [bold]{head}[/] head on {len(train_records)} demo "
        f"reviews, evaluating on {len(eval_records)}"
    )
    result = train_ordinal_model(spec, train_records, eval_records)
    console.print(metrics_table(result, title="Demo run: held-out evaluation"))
    tracking_uri = configure_mlflow(spec.experiment)
    # Plain prints: paths must stay on one line so they can be copied from the terminal.
    print(f"model:        {result.model_dir.resolve()}")
    print(f"checkpoints:  {result.checkpoint_dir.resolve()}")
    print(f"MLflow store: {tracking_uri} (run {result.mlflow_run_id})")
    print(f"open the MLflow UI with: .venv/bin/mlflow ui --backend-store-uri {tracking_uri}")
