"""The one generic Prefect task, ``run_notebook``, and the flow a compute worker runs it in.

Every step of the pipeline is this task with a different notebook and parameter model
(style: one generic task, not one bespoke task per step). The task validates parameters
before a kernel starts, executes with papermill, keeps and renders the notebook, logs both
to MLflow as a nested run, checks the declared outputs, and publishes a markdown artifact
so the Prefect UI shows a readable summary. Its cache key is :func:`pipelines.notebooks.
cache_key`: a changed notebook is never served from cache. Callers take the task from
:func:`step_task`, which also refuses a cache hit for a step whose files are gone or were
overwritten by another execution.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from pipelines.errors import NotebookStepError, PipelineError, is_disk_full
from pipelines.lease import LeaseLostError, StepLease, StepLeaseHeldError, step_lease
from pipelines.notebooks import (
    HTML_FILE,
    KEY_FILE,
    NOTEBOOK_FILE,
    StepResult,
    cache_key,
    execute_step,
    step_reports,
    validate_params,
)
from pipelines.steps import StepParams, get_step
from pipelines.tracking import Tracking, log_step

__all__ = [
    "RESULT_FILE",
    "read_step_result",
    "record_cached_step",
    "run_compute_step",
    "run_notebook",
    "step_task",
]

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


def _task_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    step = parameters["step"]
    return cache_key(step, _resolved(step, parameters["params"]))


def _resolved(step: str, params: dict[str, Any]) -> StepParams:
    """The validated parameters with the run folder resolved, as the task's cache sees them."""
    from ordinal.runs import resolve_run_dir

    checked = validate_params(step, params)
    return checked.model_copy(update={"run_dir": str(resolve_run_dir(checked.run_dir))})


def _markdown(result: StepResult | None, step: str, error: BaseException | None) -> str:
    if result is None:
        lines = [f"# {step}: failed", "", f"`{type(error).__name__}`: {error}"]
        if isinstance(error, NotebookStepError) and error.html is not None:
            lines += ["", f"Rendered notebook (error visible): `{error.html}`"]
        return "\n".join(lines)
    lines = [
        f"# {step}: completed in {result.seconds:.1f} s",
        "",
        f"* notebook: `{result.notebook}`",
        f"* rendered: `{result.html}`",
    ]
    lines += [f"* artefact: `{p}`" for p in result.artifacts]
    if result.metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(result.metrics.items())]
    return "\n".join(lines)


def _publish(step: str, run_name: str, markdown: str) -> None:
    key = f"{run_name}-{step}".lower().replace("_", "-")
    create_markdown_artifact(markdown=markdown, key=key, description=f"{step} step of {run_name}")


def _write_result(result: StepResult | None, step: str, run_dir: Path, error: Any = None) -> None:
    """Leave ``{step}/result.json`` for a control side in another process (the worker case)."""
    data: dict[str, Any] = {"step": step, "ok": error is None}
    if result is not None:
        data.update(
            notebook=str(result.notebook),
            html=str(result.html),
            seconds=result.seconds,
            cache_key=result.cache_key,
            params=result.params,
            timings=result.timings,
            mlflow_run_id=result.mlflow_run_id,
            tracked_under=result.tracked_under,
        )
    if error is not None:
        data["error"] = {"type": type(error).__name__, "message": str(error)}
        if isinstance(error, NotebookStepError):
            data["error"].update(
                cell_index=error.cell_index,
                ename=error.ename,
                evalue=error.evalue,
                notebook=str(error.notebook),
                html=str(error.html) if error.html else None,
            )
    path = run_dir / step / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RESULT_FILE}.tmp")
    try:  # atomic: a full disk leaves the previous file or none, never half of one
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_step_result(run_dir: Path, step: str) -> StepResult:
    """Rebuild a :class:`StepResult` from ``result.json``; re-raise the step's failure."""
    path = Path(run_dir) / step / RESULT_FILE
    if not path.is_file():
        raise PipelineError(f"step {step!r} left no {path}: its worker run did not finish")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not data["ok"]:
        err = data["error"]
        if "ename" in err:
            raise NotebookStepError(
                step,
                err["cell_index"],
                err["ename"],
                err["evalue"],
                Path(err["notebook"]),
                Path(err["html"]) if err.get("html") else None,
            )
        raise PipelineError(f"step {step!r} failed: {err['type']}: {err['message']}")
    outputs = json.loads((path.parent / "outputs.json").read_text(encoding="utf-8"))
    return StepResult(
        step=step,
        params=data["params"],
        notebook=Path(data["notebook"]),
        html=Path(data["html"]),
        outputs=outputs,
        seconds=float(data["seconds"]),
        cache_key=data["cache_key"],
        timings=data.get("timings") or {},
        mlflow_run_id=data.get("mlflow_run_id"),
        tracked_under=data.get("tracked_under"),
    )


@task(
    name="run_notebook",
    task_run_name="{step}",
    cache_key_fn=_task_cache_key,
    persist_result=True,
)
def run_notebook(
    step: str,
    params: dict[str, Any],
    tracking: Tracking | None = None,
    run_name: str = "notebooks",
    log_output: bool = False,
) -> StepResult:
    """Run one step's notebook: validate, execute, render, track, check outputs.

    Raises
    ------
    StepParametersError
        Before any kernel starts.
    NotebookStepError
        Carries the failing cell's index, the error's name and message; the executed
        notebook and its HTML are kept (and logged to MLflow) first.
    MissingOutputsError
        The notebook did not write what the step declares.
    """
    checked = validate_params(step, params)
    from ordinal.runs import resolve_run_dir

    run_dir = resolve_run_dir(checked.run_dir)
    try:
        # One execution of a step at a time; a lost lease (fenced) publishes nothing.
        with step_lease(run_dir, step, getattr(checked, "storage", "") or "") as lease:
            result = execute_step(
                step,
                checked,
                log_output=log_output or get_step(step).stream_output,
                before_publish=lease.check_publish,
            )
            _unpublish_unless_held(lease, run_dir / step)  # lost after publishing: take back
    except (StepLeaseHeldError, LeaseLostError):
        raise  # the folder is another execution's: write nothing into it
    except PipelineError as exc:
        try:
            _write_result(None, step, run_dir, exc)  # first: the control side needs it
        except OSError as write_error:  # e.g. the disk that failed the step is still full:
            log.warning(  # the step's own error must not be replaced by this one
                "could not record step %s's failure in %s: %s", step, run_dir, write_error
            )
        if tracking is not None:
            files = [p for p in (getattr(exc, "notebook", None), getattr(exc, "html", None)) if p]
            files += step_reports(run_dir, step)  # e.g. a failed gate's report
            _quietly(
                "MLflow", log_step, tracking, step, checked.model_dump(mode="json"), exc, files
            )
        _quietly("Prefect artifact", _publish, step, run_name, _markdown(None, step, exc))
        raise
    if tracking is not None:
        # The attempt, not only the parent run: a resumed run continues the same parent.
        result.tracked_under = tracking.attempt_id
        result.mlflow_run_id = _quietly(
            "MLflow",
            log_step,
            tracking,
            step,
            result.params,
            None,
            result.record_files,
            {"ordinal.cache_key": result.cache_key},
            result,
        )
    _write_result(result, step, run_dir)
    _quietly("Prefect artifact", _publish, step, run_name, _markdown(result, step, None))
    return result


def _unpublish_unless_held(lease: StepLease, folder: Path) -> None:
    """``execute_step`` publishes (``cache_key.txt``) last; take that back if the lease was
    lost meanwhile, so that a fenced execution never vouches for the folder."""
    why = lease.lost_reason()
    if why is not None:
        (folder / KEY_FILE).unlink(missing_ok=True)
        raise LeaseLostError(lease.step, why)


def step_task(step: str, params: dict[str, Any], **options: Any) -> Any:
    """``run_notebook`` with Prefect task ``options`` (``retries``, ...), for this call.

    A cached result is only as good as the files it points to. The cache entry is refreshed
    (the step runs again) unless the step's folder holds what an execution under the same
    cache key left: its ``cache_key.txt`` names that key, and the declared outputs, executed
    notebook and HTML exist. So a deleted or moved step folder, a failed attempt, or a later
    execution with other parameters that overwrote the folder is never vouched for by an
    older cache entry.
    """
    resolved = _resolved(step, params)
    run_dir = Path(resolved.run_dir)
    folder = run_dir / step
    kept = [*get_step(step).declared_outputs(run_dir), folder / NOTEBOOK_FILE, folder / HTML_FILE]
    recorded, key = _recorded_key(folder), cache_key(step, resolved)
    missing = [p for p in kept if not p.exists()]
    if recorded != key or missing:
        options["refresh_cache"] = True  # else the task's (and Prefect's) own setting
        if recorded is not None:  # there was a completed execution: say why it is not used
            why = f"{missing[0]} is gone" if missing else f"it holds the files of {recorded}"
            log.info("step %s: not using a cached %s: %s", step, key, why)
    if options.get("retries"):
        options.setdefault("retry_condition_fn", _retry_unless_disk_full)
    return run_notebook.with_options(**options)


def _retry_unless_disk_full(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: a full disk is not retried (the retry would hit the same
    full disk and only lose the checkpoint interval a second time)."""
    failure = state.data if isinstance(state.data, BaseException) else None
    if is_disk_full(failure) or "No space left on device" in (state.message or ""):
        log.warning("step %s: the disk is full; not retrying", task_run.name)
        return False
    return True


def _recorded_key(folder: Path) -> str | None:
    """The cache key of the execution whose files are in ``folder`` (None: none completed)."""
    try:
        return (folder / KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def record_cached_step(result: StepResult, tracking: Tracking | None) -> bool:
    """Give a step served from the cache its nested run under this pipeline run too.

    A cache hit does not execute the task, so its result still names the nested run of the
    pipeline run that executed it. This logs the same record (parameters, metrics, notebook,
    HTML, reports) under ``tracking``'s parent run, tagged ``ordinal.cached_from`` with the
    original run, so every pipeline run in MLflow lists all its steps. Returns whether the
    result came from the cache, known from the attempt it was executed in (False when there
    is no tracking). A resumed run continues its earlier attempt's parent run, where the
    nested run of a step that attempt executed only gets ``ordinal.cached_by_attempt``.
    """
    if tracking is None or result.tracked_under == tracking.attempt_id:
        return False  # executed in this attempt of the pipeline run
    tags = {"ordinal.cache_key": result.cache_key}
    if result.mlflow_run_id is not None:  # None: the executing run could not record it
        tags["ordinal.cached_from"] = result.mlflow_run_id
    logged = _quietly(
        "MLflow", log_step, tracking, result.step, result.params, None, result.record_files, tags,
        result,
    )  # fmt: skip
    if logged is not None:
        result.mlflow_run_id = logged
    result.tracked_under = tracking.attempt_id
    return True


def _quietly(what: str, fn: Any, *args: Any) -> Any:
    """Record-keeping must not fail (or retry) a step that ran: warn and carry on."""
    try:
        return fn(*args)
    except Exception as exc:
        log.warning("could not record the step in %s: %s: %s", what, type(exc).__name__, exc)
        return None


@flow(name="run-compute-step", log_prints=True)
def run_compute_step(
    step: str,
    params: dict[str, Any],
    tracking: dict[str, str] | None = None,
    run_name: str = "notebooks",
    retries: int = 0,
) -> str:
    """Run one compute step on the provisioned machine (a worker bound to the run's queue).

    ``retries`` applies to this step's task (training resumes from its latest checkpoint).
    Returns the step's result file; the control side reads it.
    """
    from ordinal.runs import resolve_run_dir

    checked = validate_params(step, params)
    if tracking and not tracking.get("tracking_uri"):
        # The URI travels in the worker's environment, not in (stored, displayed) parameters.
        tracking = {**tracking, "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI", "")}
    runner = step_task(step, params, retries=retries, retry_delay_seconds=1)
    result = runner(
        step,
        checked.model_dump(mode="json"),
        Tracking(**tracking) if tracking else None,
        run_name,
    )
    run_dir = resolve_run_dir(checked.run_dir)
    _write_result(result, step, run_dir)  # also when the task was served from the cache
    return str(run_dir / step / RESULT_FILE)
