"""The ``ordinal`` console command: the library's commands plus orchestration (``run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ordinal.cli import app as library_app
from pipelines.stack.cli import stack_app

app = typer.Typer(
    help="ordinal: ordinal regression on fine-tuned transformers.", no_args_is_help=True
)
app.add_typer(library_app)
app.add_typer(stack_app, name="stack", help="The control-plane stack: up, down, status, ...")
console = Console()


@app.command("run")
def run(
    output_dir: Annotated[
        Path, typer.Option(help="Where the run's model and checkpoints go")
    ] = Path("runs/demo"),
    demo_size: Annotated[int, typer.Option(help="Demo reviews to generate")] = 3000,
    epochs: Annotated[float, typer.Option(help="Training epochs")] = 2.0,
    head: Annotated[str, typer.Option(help="cumulative_link, coral or corn")] = "cumulative_link",
    model: Annotated[str, typer.Option(help="minilm or a model directory")] = "minilm",
) -> None:
    """The main job on embedded defaults: fine-tune MiniLM on the demo reviews, evaluate."""
    from pipelines.demo import run_demo

    run_demo(
        output_dir=output_dir,
        demo_size=demo_size,
        epochs=epochs,
        head=head,
        model=model,
        console=console,
    )
