"""MLflow for pipeline runs: one parent run per pipeline run, one nested run per step.

Everything goes through ``MlflowClient`` with explicit run ids (no global "active run"), so a
step executed by a worker process logs into the right nested run. Metric names are stable
across runs (they are the names the step notebooks write), so runs compare side by side.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ordinal.tracking import DEFAULT_EXPERIMENT, configure_mlflow

if TYPE_CHECKING:
    from pipelines.notebooks import StepResult

__all__ = [
    "Tracking",
    "end_pipeline_run",
    "log_step",
    "redact",
    "run_url",
    "start_pipeline_run",
]

_SKIP_HISTORY = {"step", "epoch", "total_flos"}


@dataclass(frozen=True)
class Tracking:
    """Where a pipeline run is tracked; passed to every step (also across processes)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str):
    """One client per store and process: a new one re-opens (and re-checks) the database."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def start_pipeline_run(
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> Tracking:
    """Create the parent run (``RUNNING``) with the pipeline's parameters and tags."""
    import mlflow
    from mlflow.entities import Param

    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    uri = configure_mlflow(name, tracking_uri)
    experiment_id = mlflow.get_experiment_by_name(name).experiment_id
    client = _client(uri)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    client.log_batch(
        run.info.run_id,
        params=[Param(k, redact(str(v))[:6000]) for k, v in sorted(params.items())],
    )
    return Tracking(uri, experiment_id, run.info.run_id)


def _metrics(result: StepResult) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    # Final values at the final training step, so MLflow's "latest" is the final value.
    last = int(result.outputs.get("global_step") or 0)
    out = [Metric(k, v, now, last) for k, v in sorted(result.metrics.items()) if math.isfinite(v)]
    out.append(Metric("step_seconds", result.seconds, now, last))
    history = result.notebook.parent / "history.json"
    if history.is_file():
        # The trainer's log history: loss, cutpoint_k, throughput... at their training step.
        for entry in json.loads(history.read_text(encoding="utf-8")):
            step = int(entry.get("step", 0))
            for key, value in entry.items():
                if key in _SKIP_HISTORY or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(float(value)):
                    out.append(Metric(key, float(value), now, step))
    return out


def log_step(
    tracking: Tracking,
    step: str,
    params: dict[str, Any],
    error: BaseException | None = None,
    files: list[Path] | None = None,
    tags: dict[str, str] | None = None,
    result: StepResult | None = None,
) -> str:
    """Record one step as a nested run: parameters, metrics, notebook, HTML and artefacts.

    A failed step (``error``) is recorded too, with its notebook and HTML, as ``FAILED``.
    Returns the nested run's id.
    """
    from mlflow.entities import Param, RunTag

    client = _client(tracking.tracking_uri)
    run = client.create_run(
        tracking.experiment_id,
        run_name=step,
        tags={"mlflow.parentRunId": tracking.parent_run_id, "ordinal.step": step, **(tags or {})},
    )
    run_id = run.info.run_id
    status = "FAILED"
    try:
        extra = [RunTag("ordinal.error", str(error)[:4000])] if error is not None else []
        metrics = _metrics(result) if result is not None else []
        safe = [Param(k, redact(str(v))[:6000]) for k, v in sorted(params.items())]
        for start in range(0, max(len(metrics), 1), 900):  # MLflow caps a batch at 1000
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 900],
                params=safe if not start else [],
                tags=extra if not start else [],
            )
        for path in files or []:
            if path.is_file():
                folder = "notebook" if path.suffix in (".ipynb", ".html") else "outputs"
                client.log_artifact(run_id, str(path), artifact_path=folder)
        status = "FINISHED" if error is None else "FAILED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


def redact(text: str) -> str:
    """``text`` with the credentials of any ``scheme://user:password@host`` URI masked.

    >>> redact("postgresql://mlflow:s3cret@db:5432/mlflow")
    'postgresql://mlflow:***@db:5432/mlflow'
    >>> redact("https://token@mlflow.example")
    'https://***@mlflow.example'
    """
    text = re.sub(r"(://[^/@:\s]+):[^/@\s]*@", r"\1:***@", text)
    return re.sub(r"(://)[^/@:\s]+@", r"\1***@", text)


def end_pipeline_run(
    tracking: Tracking, status: str, metrics: dict[str, float], files: list[Path]
) -> None:
    """Close the parent run with summary metrics (seconds per step) and the index page."""
    from mlflow.entities import Metric

    client = _client(tracking.tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        tracking.parent_run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())],
    )
    for path in files:
        if path.is_file():
            client.log_artifact(tracking.parent_run_id, str(path), artifact_path="review")
    client.set_terminated(tracking.parent_run_id, status)


def run_url(tracking: Tracking) -> str:
    """Where to look at the parent run: a UI link for a server, else the store and run id."""
    uri = tracking.tracking_uri
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        run = f"#/experiments/{tracking.experiment_id}/runs/{tracking.parent_run_id}"
        return f"{redact(base)}/{run}"
    return f"{redact(uri)} (experiment {tracking.experiment_id}, run {tracking.parent_run_id})"
