"""The reviewer's index page of a run: one place linking every rendered notebook and report.

``write_index`` writes ``{run_dir}/index.html`` and ``{run_dir}/summary.json`` atomically, on
every completion path (a failed run's page shows which step failed and links its rendered
notebook, error visible).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, select_autoescape

if TYPE_CHECKING:
    from pipelines.flow import PipelineSummary

__all__ = ["write_index"]

TEMPLATE = Path(__file__).with_name("templates") / "index.html.j2"

KEY_METRICS = {
    "records_raw",
    "records_accepted",
    "records_rejected",
    "calibration_samples",
    "eval_mae",
    "eval_qwk",
    "eval_accuracy",
    "train_samples_per_second",
    "parity_max_abs_delta",
    "parity_label_agreement",
    "parity_num_samples",
    "mae_fp32",
    "mae_int8",
    "int8_mae_change",
    "int8_max_prob_delta",
    "int8_prob_delta_p99",
    "int8_label_agreement",
    "latency_ms_fp32",
    "latency_ms_int8",
}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_index(summary: PipelineSummary) -> list[Path]:
    """Write the run's ``index.html`` and ``summary.json``; return both paths."""
    root = Path(summary.run_dir)
    root.mkdir(parents=True, exist_ok=True)

    def rel(path: str) -> str:
        try:
            return Path(os.path.relpath(path, root)).as_posix()
        except ValueError:  # another drive: keep it absolute
            return Path(path).as_uri()

    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        s=summary, rel=rel, name=lambda p: Path(p).name, keys=KEY_METRICS
    )
    index, data = root / "index.html", root / "summary.json"
    _atomic_write(index, html)
    _atomic_write(data, json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    return [index, data]
