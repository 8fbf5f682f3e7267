"""Rich tables that show a training result in a terminal or a notebook."""

from __future__ import annotations

from rich.table import Table

from ordinal.training.fit import TrainResult

__all__ = ["metrics_table"]

_METRICS = (
    ("eval_mae", "MAE", "lower is better"),
    ("eval_rmse", "RMSE", "lower is better"),
    ("eval_accuracy", "accuracy", "higher is better"),
    ("eval_off_by_one_accuracy", "off-by-one accuracy", "higher is better"),
    ("eval_qwk", "quadratic weighted kappa", "higher is better"),
    ("eval_spearman", "Spearman", "higher is better"),
    ("eval_rps", "ranked probability score", "lower is better"),
    ("eval_macro_mae", "macro-averaged MAE", "lower is better"),
    ("eval_loss", "loss (ordinal NLL)", "lower is better"),
)


def metrics_table(result: TrainResult, title: str = "Evaluation") -> Table:
    """A table of the final evaluation metrics, the cutpoints and where things were saved."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    for key, label, note in _METRICS:
        if key in result.metrics:
            table.add_row(label, f"{result.metrics[key]:.4f}", note)
    if result.cutpoints is not None:
        table.add_row("cutpoints", ", ".join(f"{v:.3f}" for v in result.cutpoints), "")
    table.add_row("training steps", str(result.global_step), "")
    table.add_row("training time", f"{result.train_seconds:.1f} s", "")
    return table
