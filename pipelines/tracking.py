"""MLflow for pipeline runs: one parent run per pipeline run, one nested run per step.

Everything goes through ``MlflowClient`` with explicit run ids (no global "active run"), so a
step executed by a worker process logs into the right nested run. Metric names are stable
across runs (they are the names the step notebooks write), so runs compare side by side.

A run id has exactly one parent run, however many attempts it took: a resumed run (``ordinal
run --run-id X`` after a crash, a failure or a kill -9) finds the earlier attempt's parent by
its ``ordinal.run_id`` tag and continues it (``ordinal.attempts`` counts the attempts), and a
step logged again under the same parent updates its nested run instead of adding one. So
MLflow shows one parent per run id with each step nested once; a step's ``ordinal.attempt``
tag says which attempt executed it, ``ordinal.cached_by_attempt`` which later attempt reused
its outputs, and ``ordinal.previous_error`` what failed before a retry or a resume.
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
    "log_parent_params",
    "log_step",
    "redact",
    "run_url",
    "start_pipeline_run",
]

_SKIP_HISTORY = {"step", "epoch", "total_flos"}


#: Tags of the attempt bookkeeping (see the module's docstring).
RUN_ID_TAG = "ordinal.run_id"
ATTEMPTS_TAG = "ordinal.attempts"
ATTEMPT_TAG = "ordinal.attempt"
CACHED_BY_TAG = "ordinal.cached_by_attempt"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Tracking:
    """Where a pipeline run is tracked; passed to every step (also across processes).

    ``attempt`` counts the attempts of the run id (``"1"`` for the first); every attempt
    logs under the same ``parent_run_id``. Every field is a string: the compute steps'
    deployments take the tracking as a ``dict[str, str]`` parameter.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    attempt: str = "1"

    @property
    def attempt_id(self) -> str:
        """Names this attempt of the parent run (``{parent_run_id}:{attempt}``)."""
        return f"{self.parent_run_id}:{self.attempt}"


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
    """Create the parent run (``RUNNING``), or continue the earlier attempt's.

    When ``tags`` carry ``ordinal.run_id`` and the experiment already holds a parent run with
    that tag (an earlier attempt of the run: killed and left ``RUNNING``, ``FAILED``,
    ``KILLED``, or even ``FINISHED``), that parent is set ``RUNNING`` again and reused, its
    ``ordinal.attempts`` tag counting this attempt; otherwise a new parent is created. The
    caller must own the run (a live earlier attempt is fenced first, as ``ordinal run``
    does), so the parent is never shared by two live attempts.
    """
    import mlflow

    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    uri = configure_mlflow(name, tracking_uri)
    experiment_id = mlflow.get_experiment_by_name(name).experiment_id
    client = _client(uri)
    earlier = _earlier_parent(client, experiment_id, tags.get(RUN_ID_TAG, ""))
    if earlier is None:
        run = client.create_run(experiment_id, run_name=run_name, tags={**tags, ATTEMPTS_TAG: "1"})
        _log_params(client, run.info.run_id, {}, params)
        return Tracking(uri, experiment_id, run.info.run_id)
    run_id = earlier.info.run_id
    attempt = int(earlier.data.tags.get(ATTEMPTS_TAG, "1")) + 1
    client.update_run(run_id, status="RUNNING")
    _set_tags(
        client,
        run_id,
        {**tags, ATTEMPTS_TAG: str(attempt), "ordinal.previous_status": earlier.info.status},
    )
    _log_params(client, run_id, earlier.data.params, params)
    return Tracking(uri, experiment_id, run_id, str(attempt))


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _earlier_parent(client: Any, experiment_id: str, run_id: str) -> Any:
    """The first parent run tagged ``ordinal.run_id = run_id`` in the experiment, or None."""
    if not run_id:
        return None
    found = client.search_runs(
        [experiment_id],
        f"tags.`{RUN_ID_TAG}` = {_quoted(run_id)}",
        max_results=50,
        order_by=["attributes.start_time ASC"],
    )
    parents = [r for r in found if PARENT_TAG not in r.data.tags]
    return parents[0] if parents else None


def _nested_run(client: Any, tracking: Tracking, step: str) -> Any:
    """The nested run of ``step`` under the tracking's parent run, or None."""
    found = client.search_runs(
        [tracking.experiment_id],
        f"tags.`{PARENT_TAG}` = {_quoted(tracking.parent_run_id)} "
        f"and tags.`ordinal.step` = {_quoted(step)}",
        max_results=50,
        order_by=["attributes.start_time ASC"],
    )
    return found[0] if found else None


def _set_tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)[:4000]) for k, v in sorted(tags.items())])


def _log_params(client: Any, run_id: str, logged: dict[str, str], params: dict[str, Any]) -> None:
    """Log the parameters not logged yet; MLflow's parameters are immutable, so a value that
    changed since an earlier attempt is recorded in the ``ordinal.params_changed`` tag."""
    from mlflow.entities import Param

    values = {k: redact(str(v))[:6000] for k, v in sorted(params.items())}
    new = [Param(k, v) for k, v in values.items() if k not in logged]
    changed = {k: v for k, v in values.items() if k in logged and logged[k] != v}
    for start in range(0, len(new), 90):  # MLflow caps a batch at 100 parameters
        client.log_batch(run_id, params=new[start : start + 90])
    if changed:
        _set_tags(client, run_id, {"ordinal.params_changed": json.dumps(changed)})


def log_parent_params(tracking: Tracking, params: dict[str, Any]) -> None:
    """Log ``params`` on the parent run; a value an earlier attempt logged differently goes to
    the ``ordinal.params_changed`` tag (MLflow refuses to change a parameter)."""
    client = _client(tracking.tracking_uri)
    logged = client.get_run(tracking.parent_run_id).data.params
    _log_params(client, tracking.parent_run_id, logged, params)


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
        entries = json.loads(history.read_text(encoding="utf-8"))
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue  # not a trainer's log history
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
    A step has one nested run per parent run: when the parent already holds one for ``step``
    (an earlier attempt or a retry logged it), that run is updated (``ordinal.previous_error``
    keeps a failure it replaces). A cached result that names that very nested run (an
    earlier attempt of this run executed the step) only gets ``ordinal.cached_by_attempt``.
    Returns the nested run's id.
    """
    client = _client(tracking.tracking_uri)
    tags = {"ordinal.step": step, **(tags or {})}
    existing = _nested_run(client, tracking, step)
    if existing is not None and tags.get("ordinal.cached_from") == existing.info.run_id:
        _set_tags(client, existing.info.run_id, {CACHED_BY_TAG: str(tracking.attempt)})
        return existing.info.run_id
    tags[ATTEMPT_TAG] = str(tracking.attempt)
    if existing is None:
        run_id = client.create_run(
            tracking.experiment_id,
            run_name=step,
            tags={PARENT_TAG: tracking.parent_run_id, **tags},
        ).info.run_id
        logged: dict[str, str] = {}
    else:
        run_id, logged = existing.info.run_id, existing.data.params
        client.update_run(run_id, status="RUNNING")
        previous = existing.data.tags.get("ordinal.error")
        if previous is not None:
            tags["ordinal.previous_error"] = previous
            if error is None:
                client.delete_tag(run_id, "ordinal.error")
    status = "FAILED"
    try:
        if error is not None:
            tags["ordinal.error"] = str(error)[:4000]
        metrics = _metrics(result) if result is not None else []
        _set_tags(client, run_id, tags)
        _log_params(client, run_id, logged, params)
        for start in range(0, len(metrics), 900):  # MLflow caps a batch at 1000
            client.log_batch(run_id, metrics=metrics[start : start + 900])
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
    """Close the parent run with summary metrics (seconds per step) and the index page.

    When a resumed attempt completes, the steps it did not execute were served from an
    earlier attempt's outputs: their nested runs get ``ordinal.cached_by_attempt``.
    """
    from mlflow.entities import Metric

    client = _client(tracking.tracking_uri)
    if status == "FINISHED" and int(tracking.attempt) > 1:
        for run in client.search_runs(
            [tracking.experiment_id],
            f"tags.`{PARENT_TAG}` = {_quoted(tracking.parent_run_id)}",
            max_results=500,
        ):
            executed_in = int(run.data.tags.get(ATTEMPT_TAG, "1"))
            if executed_in < int(tracking.attempt) and CACHED_BY_TAG not in run.data.tags:
                client.set_tag(run.info.run_id, CACHED_BY_TAG, tracking.attempt)
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
