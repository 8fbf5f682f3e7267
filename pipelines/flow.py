"""The pipeline flow: ingest -> preprocess -> calibrate -> provision -> train -> export ->
parity -> quantise -> teardown, every step the generic ``run_notebook`` task.

Parameters are one pydantic model, :class:`PipelineParams`; every step's parameters are
derived and validated **before** the first step starts, so a bad value fails in a second,
not after training. Teardown runs on every completion path: success, a failed step, a
cancellation or a crash (``finally`` in the flow, plus Prefect's cancellation and crash
hooks, which tear down from the state file the provisioner keeps).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import ordinal
from ordinal.artifacts.manifest import git_state
from ordinal.config import HeadName
from ordinal.data import PreprocessSpec
from ordinal.data.sources import default_registry_path, load_registry
from ordinal.paths import state_dir
from pipelines.errors import PipelineError, StepParametersError, is_disk_full
from pipelines.notebooks import StepResult, step_reports, validate_params
from pipelines.ownership import acquire_run, current_ownership
from pipelines.provision.vms import PipelineVms, is_spot_interruption, teardown_run
from pipelines.provisioning import ComputeTarget, _api_url, get_provisioner, teardown_from_state
from pipelines.report import write_index
from pipelines.steps import STEPS, StepParams
from pipelines.tasks import record_cached_step, step_task
from pipelines.tracking import (
    Tracking,
    end_pipeline_run,
    log_parent_params,
    redact,
    run_url,
    start_pipeline_run,
)

__all__ = ["PipelineParams", "PipelineSummary", "StepRecord", "ordinal_pipeline", "plan_steps"]

log = logging.getLogger(__name__)

# Per-modality defaults, so the image pipeline is one parameter away: --source demo-shapes...
#: modality -> (model, learning rate, epochs, batch size). Images: the small ViT trained from
#: its config (no pretrained ViT is available offline) needs more epochs than a fine-tune;
#: it reaches held-out QWK ~0.93 on demo-shapes-large in 20 (docs/demo-data.md).
_MODEL_DEFAULTS = {"text": ("minilm", 5e-5, 2.0, 16), "image": ("vit-shapes", 1e-3, 20.0, 32)}
_TINY_LR = 1e-3
_COMPUTE = [name for name, step in STEPS.items() if step.compute]


class PipelineParams(BaseModel):
    """Parameters of one pipeline run (``ordinal run --help`` lists the same)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field("demo-reviews", description="Approved source to ingest")
    registry: str = Field("", description="Approved-source registry; '' is the project's")
    model: str = Field(
        "", description="minilm, bert-tiny, vit-shapes, vit-tiny or a folder; '' by modality"
    )
    head: HeadName = Field("cumulative_link", description="Ordinal head")
    link: Literal["", "logit", "probit", "cloglog"] = ""
    epochs: float = Field(0.0, ge=0, description="Training epochs; 0: 2 for text, 20 for images")
    max_steps: int = Field(-1, description="Stop training after this many steps; -1: epochs")
    batch_size: int = Field(0, ge=0, description="Training batch; 0: 16 for text, 32 for images")
    learning_rate: float = Field(0.0, ge=0, description="0 picks the model's default")
    max_length: int = Field(64, ge=2)
    seed: int = 0
    checkpoint_interval_seconds: float = Field(300.0, gt=0)
    calibration_size: int = Field(200, ge=100, le=500)
    calibration_seed: int = Field(0, description="Seed of the calibration draw")
    calibration_dir: str = Field(
        "",
        description="Committed calibration selections; '' is $ORDINAL_CALIBRATION_DIR or "
        "the project's calibration/",
    )
    propose_calibration: bool = Field(
        False,
        description="Draw and use a new calibration selection, written to the run's "
        "calibrate/proposed/ for review, instead of requiring the committed one",
    )
    parity_samples: int = Field(500, ge=1)
    non_production: bool = Field(
        False, description="Allow parity and the INT8 gate on < 500 samples (labelled reports)"
    )
    quantize_preset: Literal["auto", "fused", "static", "dynamic"] = Field(
        "auto", description="INT8 preset; auto is the model family's (fused BERT, static ViT)"
    )
    int8_prob_atol: float = Field(
        0.0,
        ge=0,
        description="Gate INT8 class probabilities at this tolerance; 0 (the default) gates "
        "on MAE only and reports the deltas",
    )
    preprocess: dict[str, Any] = Field(
        default_factory=dict,
        description="Preprocessing options (thresholds, columns, labels, split), as "
        "`ordinal data preprocess` takes them: --set preprocess.max_rejected_fraction=0.2",
    )
    storage: str = Field("", description="Storage root URL; '' is the local store")
    run_id: str = Field("", pattern=r"^[a-z0-9-]*$", description="'' makes one from the time")
    runs_root: str = Field("", description="Where run folders go; '' is <state>/runs")
    provisioner: Literal["local", "tofu"] = Field(
        "local",
        description="local: a Prefect worker for the run; tofu: a GPU VM for train, then a "
        "CPU VM for export/parity/quantize, each applied with OpenTofu/Terraform and destroyed",
    )
    gpu_instance_type: Literal["g4dn.xlarge", "g6.xlarge"] = Field(
        "g4dn.xlarge", description="tofu: the training VM's class"
    )
    market: Literal["spot", "on-demand"] = Field(
        "spot", description="tofu: the VMs' market (spot falls back to on-demand)"
    )
    tofu_platform: str = Field(
        "",
        description="tofu: a platform file (endpoints, network, profiles, image, state "
        "bucket); '' starts an emulated cloud on loopback for the run",
    )
    spot_interruptions: int = Field(
        2, ge=0, le=5, description="tofu: spot interruptions of training answered by a new VM"
    )
    compute: Literal["auto", "worker", "in-process"] = "auto"
    train_retries: int = Field(1, ge=0, le=5, description="Retries of the training step")
    experiment: str = Field("ordinal-pipeline", min_length=1, description="MLflow experiment")
    tracking_uri: str = Field("", description="MLflow tracking URI; '' is the local store")

    def with_run_id(self) -> PipelineParams:
        """A copy with ``run_id`` filled in (UTC time, to the second)."""
        if self.run_id:
            return self
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        return self.model_copy(update={"run_id": f"run-{stamp}"})

    def run_dir(self) -> Path:
        """This run's folder."""
        root = Path(self.runs_root) if self.runs_root else state_dir() / "runs"
        return (root / self.with_run_id().run_id).resolve()


@dataclass
class StepRecord:
    """One line of the run summary.

    ``status``: pending, completed, cached (served from Prefect's cache: an earlier run of
    this run id executed it), failed or skipped.
    """

    step: str
    status: str = "pending"
    seconds: float = 0.0
    where: str = "control"
    notebook: str | None = None
    html: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None
    error: str | None = None
    #: Figures the step saved for the index page: ``{name: {"path": ..., "alt": ...}}``.
    figures: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class PipelineSummary:
    """What a pipeline run did, step by step; also written as ``summary.json``."""

    run_id: str
    run_dir: str
    status: str
    compute: str
    steps: list[StepRecord]
    index: str
    tracking_uri: str | None
    mlflow_run: str | None
    seconds: float
    teardown: dict[str, Any] = field(default_factory=dict)
    #: What the run was asked to do: source, dataset, model, head, seed, git state, ...
    parameters: dict[str, Any] = field(default_factory=dict)
    #: tofu: every VM (type, market, id, apply/destroy times, billed seconds, cost, attempts).
    vms: list[dict[str, Any]] = field(default_factory=list)
    #: tofu: fallbacks, spot interruptions (with the steps recomputed), alerts, total cost.
    provisioning: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _dataset_of(params: PipelineParams) -> tuple[str, str, str]:
    registry = load_registry(params.registry or None)
    spec = registry.get(params.source)
    kind = "image" if spec.format == "image_folder" else "text"
    return spec.dataset, spec.version, kind


def _check_preprocess_options(options: dict[str, Any]) -> None:
    """Fail before any step runs on an unknown or invalid preprocessing option."""
    try:
        PreprocessSpec.from_options(options)
    except ValidationError as exc:
        raise StepParametersError.from_validation(
            "preprocess options (--set preprocess.KEY)", exc
        ) from None


def plan_steps(params: PipelineParams) -> dict[str, StepParams]:
    """Every step's parameters, validated now: a bad value fails before any step runs.

    Raises
    ------
    StepParametersError
        Naming the step and each field problem.
    """
    params = params.with_run_id()
    run_dir = str(params.run_dir())
    dataset, version, kind = _dataset_of(params)
    model, lr, epochs, batch_size = _MODEL_DEFAULTS[kind]
    model = params.model or model
    epochs, batch_size = params.epochs or epochs, params.batch_size or batch_size
    if not params.learning_rate and model in ("bert-tiny", "vit-tiny"):
        lr = _TINY_LR
    # Kernels run in their step's folder: make path-like values absolute here.
    storage = params.storage
    if storage and "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    # The registry the caller sees (--registry, $ORDINAL_SOURCES, ./sources/approved.yaml or
    # the packaged one), resolved here: a kernel runs in its step's folder, where "./" differs.
    registry = str(
        Path(params.registry).expanduser().resolve()
        if params.registry
        else default_registry_path().absolute()
    )
    _check_preprocess_options(params.preprocess)
    calibration_dir = (
        str(Path(params.calibration_dir).expanduser().resolve()) if params.calibration_dir else ""
    )
    common = {"run_dir": run_dir, "storage": storage}
    data = {**common, "dataset": dataset, "version": version}
    raw = {
        "ingest": {**common, "source": params.source, "registry": registry},
        "preprocess": {**data, "options": params.preprocess},
        "calibrate": {
            **data,
            "size": params.calibration_size,
            # Its own seed: the committed selection was drawn with it, whatever the
            # training seed of this run.
            "seed": params.calibration_seed,
            "selection_dir": calibration_dir,
            "propose_selection": params.propose_calibration,
        },
        "train": {
            **data,
            "model": model,
            "head": params.head,
            "link": params.link,
            "epochs": epochs,
            "max_steps": params.max_steps,
            "batch_size": batch_size,
            "learning_rate": params.learning_rate or lr,
            "max_length": params.max_length,
            "seed": params.seed,
            "checkpoint_interval_seconds": params.checkpoint_interval_seconds,
        },
        "export": {**common, "experiment": params.run_id},
        "parity": {
            **data,
            "num_samples": params.parity_samples,
            "non_production": params.non_production,
        },
        "quantize": {
            **data,
            "experiment": params.run_id,
            "preset": params.quantize_preset,
            "prob_atol": params.int8_prob_atol,
            "num_samples": params.parity_samples,
            "non_production": params.non_production,
            "selection_dir": calibration_dir,
            "propose_selection": params.propose_calibration,
        },
    }
    return {name: validate_params(name, values) for name, values in raw.items()}


def check_params(values: dict[str, Any] | PipelineParams) -> PipelineParams:
    """Validate flow parameters (and every step's) before anything runs."""
    if isinstance(values, PipelineParams):
        params = values
    else:
        try:
            params = PipelineParams.model_validate(values)
        except ValidationError as exc:
            raise StepParametersError.from_validation("the pipeline", exc) from None
    params = params.with_run_id()
    try:
        plan_steps(params)
    except ordinal.OrdinalError as exc:
        if isinstance(exc, StepParametersError):
            raise
        raise StepParametersError("the pipeline", [("source", str(exc))]) from None
    return params


def _teardown_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect crash/cancellation hook: tear down from the provisioner's state file."""
    try:
        params = PipelineParams.model_validate(flow_run.parameters.get("params") or {})
    except ValidationError:
        return
    if params.run_id:
        report = teardown_from_state(params.run_dir() / "provision" / "state.json")
        logging.getLogger("ordinal.pipeline").warning("teardown after %s: %s", state.name, report)
        if params.provisioner == "tofu":  # the VMs, from the state files they recorded
            try:
                report = teardown_run(params.run_dir())
            except Exception as exc:
                report = {"error": str(exc)}
            logging.getLogger("ordinal.pipeline").warning("VMs after %s: %s", state.name, report)


def _record(record: StepRecord, result: StepResult, cached: bool = False) -> None:
    record.status = "cached" if cached else "completed"
    record.seconds = result.seconds
    record.notebook, record.html = str(result.notebook), str(result.html)
    record.metrics = result.metrics
    record.artifacts = [str(p) for p in result.artifacts]
    record.mlflow_run_id = result.mlflow_run_id
    record.figures = dict(result.outputs.get("figures") or {})


def _fail(record: StepRecord, exc: BaseException, started: float, run_dir: Path) -> None:
    record.status = "failed"
    record.seconds = time.perf_counter() - started
    record.error = f"{type(exc).__name__}: {exc}"
    if record.step in STEPS:
        record.artifacts = [str(p) for p in step_reports(run_dir, record.step)]
    for name in ("notebook", "html"):
        value = getattr(exc, name, None)
        if value is not None:
            setattr(record, name, str(value))


@flow(
    name="ordinal-pipeline",
    description=(
        "Ingest an approved source, preprocess, calibrate, provision compute, train, export "
        "to ONNX, check parity, quantise to INT8, tear down. Parameters: see PipelineParams "
        "(source, model, head, link, epochs, max_steps, batch_size, learning_rate, "
        "calibration_size, parity_samples, quantize_preset, storage, run_id, provisioner, "
        "compute, train_retries, experiment, tracking_uri) and docs/pipeline.md."
    ),
    on_crashed=[_teardown_hook],
    on_cancellation=[_teardown_hook],
    log_prints=True,
)
def ordinal_pipeline(params: PipelineParams) -> dict[str, Any]:
    """Run the whole pipeline; returns the run summary (also written beside the index page)."""
    logger = get_run_logger()
    params = params.with_run_id()
    plan = plan_steps(params)
    run_dir = params.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Fence a dead earlier owner of this run first (a no-op when `ordinal run` holds it).
    held, ownership = current_ownership(), acquire_run(run_dir)
    ownership.record_prefect_server()
    dataset, version, kind = _dataset_of(params)
    git = git_state(Path(__file__).parent)
    tracking: Tracking = start_pipeline_run(
        params.run_id,
        {**params.model_dump(mode="json"), "train.model": plan["train"].model},
        tags={
            "ordinal.run_id": params.run_id,
            "ordinal.experiment_id": params.run_id,
            "ordinal.dataset": f"{dataset}/{version}",
            "ordinal.modality": kind,
            "ordinal.version": ordinal.__version__,
            "mlflow.source.git.commit": git.sha or "unknown",
            "ordinal.git_dirty": str(git.dirty),
        },
        experiment=params.experiment,
        tracking_uri=params.tracking_uri or None,
    )
    # Kernels and the run's worker inherit it (it is never passed as a parameter).
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri
    names = [*[*STEPS][:3], "provision", *[*STEPS][3:], "teardown"]
    records = {name: StepRecord(name) for name in names}
    tofu = params.provisioner == "tofu"
    provisioner = None if tofu else get_provisioner(params.provisioner, mode=params.compute)
    vms: PipelineVms | None = None
    target: ComputeTarget | None = None

    def run_compute(target: ComputeTarget, name: str) -> None:
        """One compute step on ``target``; its record says where and how it went."""
        record, t0 = records[name], time.perf_counter()
        record.where, record.status, record.error = target.description, "pending", None
        values = plan[name].model_dump(mode="json")
        logger.info("step %s: starting on %s", name, target.description)
        attempts = 1 + (params.train_retries if name == "train" and tofu else 0)
        for attempt in range(1, attempts + 1):
            try:
                # tofu: no task retries: a spot interruption must reach the flow (new VM).
                retries = 0 if tofu else (params.train_retries if name == "train" else 0)
                result = target.run_step(name, values, tracking, params.run_id, retries)
                break
            except BaseException as exc:
                _fail(record, exc, t0, run_dir)
                if attempt == attempts or is_spot_interruption(exc) or is_disk_full(exc):
                    raise
                if not isinstance(exc, Exception):
                    raise
                logger.warning("step %s failed on the VM (%s); retrying there", name, exc)
        _record(record, result, record_cached_step(result, tracking))
        record.seconds = time.perf_counter() - t0  # the worker's round trip too
        logger.info("step %s: %s in %.1f s", name, record.status, record.seconds)

    status, started = "failed", time.perf_counter()
    teardown: dict[str, Any] = {}
    try:
        for name in names:
            if name == "teardown":
                continue  # in finally, on every completion path
            record, t0 = records[name], time.perf_counter()
            if tofu and name in STEPS and STEPS[name].compute:
                continue  # ran on the VMs, in the provision phase above
            if name in STEPS:
                live = run_dir / name / "notebook.ipynb"
                logger.info("step %s: starting (notebook saved cell by cell: %s)", name, live)
            else:
                logger.info("step %s: starting", name)
            try:
                if name == "provision" and tofu:
                    vms = _pipeline_vms(params, run_dir, tracking)
                    vms.open()
                    record.status, record.where = "completed", vms.description
                    record.seconds = time.perf_counter() - t0
                    vms.run(lambda target, phase: [run_compute(target, s) for s in phase.steps])
                elif name == "provision":
                    target = provisioner.provision(params.run_id, run_dir)
                    record.status, record.where = "completed", target.description
                    record.seconds = time.perf_counter() - t0
                elif STEPS[name].compute:
                    assert target is not None
                    record.where = target.description
                    retries = params.train_retries if name == "train" else 0
                    values = plan[name].model_dump(mode="json")
                    result = target.run_step(name, values, tracking, params.run_id, retries)
                    _record(record, result, record_cached_step(result, tracking))
                    record.seconds = time.perf_counter() - t0  # the worker's round trip too
                else:
                    values = plan[name].model_dump(mode="json")
                    result = step_task(name, values)(name, values, tracking, params.run_id)
                    if record_cached_step(result, tracking):
                        _record(record, result, cached=True)
                        record.seconds = time.perf_counter() - t0  # not the original run's
                    else:
                        _record(record, result)
            except BaseException as exc:
                # tofu: a compute step's failure is that step's (already recorded), not the
                # provisioning's; an apply or destroy that failed is the provisioning's.
                stepped = f"{type(exc).__name__}: {exc}"
                if not (tofu and any(records[s].error == stepped for s in _COMPUTE)):
                    _fail(record, exc, t0, run_dir)
                raise
            logger.info("step %s: %s in %.1f s", name, record.status, record.seconds)
        status = "completed"
    finally:
        t0 = time.perf_counter()
        teardown_error: Exception | None = None
        try:
            teardown = (
                vms.teardown()
                if vms is not None
                else (provisioner.teardown() if provisioner is not None else {"started": "nothing"})
            )
            records["teardown"].status = "completed"
        except Exception as exc:  # report it, but never hide the step failure behind it
            records["teardown"].status, records["teardown"].error = "failed", str(exc)
            teardown = {"error": str(exc)}
            # Something may still be running (and billing): the run did not complete.
            teardown_error, status = exc, "failed"
        if held is None:  # this flow took the lease, so it gives it back
            try:
                ownership.release()
            except Exception as exc:
                logger.warning("could not release the run's owner lease: %s", exc)
        records["teardown"].seconds = time.perf_counter() - t0
        records["teardown"].where = (
            target.description if target else vms.description if vms else "control"
        )
        for record in records.values():
            if record.status == "pending":
                record.status = "skipped"
        summary = PipelineSummary(
            run_id=params.run_id,
            run_dir=str(run_dir),
            status=status,
            compute=(
                target.description if target else vms.description if vms else "not provisioned"
            ),
            steps=list(records.values()),
            index=str(run_dir / "index.html"),
            tracking_uri=redact(tracking.tracking_uri),
            mlflow_run=run_url(tracking),
            seconds=time.perf_counter() - started,
            teardown=teardown,
            parameters={
                "source": params.source,
                "dataset": f"{dataset}/{version}",
                "modality": kind,
                "model": plan["train"].model,
                "head": params.head,
                "link": params.link or ("logit" if params.head == "cumulative_link" else ""),
                "max_steps": params.max_steps,
                "epochs": plan["train"].epochs,
                "seed": params.seed,
                "quantize_preset": params.quantize_preset,
                "storage": redact(plan["train"].storage) or "local store",
                "git_sha": git.sha,
                "git_dirty": git.dirty,
                "non_production": params.non_production,
                "provisioner": params.provisioner,
            },
            vms=[] if vms is None else [r.as_dict() for r in vms.records],
            provisioning={} if vms is None else vms.summary(),
        )
        vm_metrics: dict[str, float] = {}
        if vms is not None:
            vm_metrics = _log_vms(tracking, vms, logger)
            # Every VM destroyed: its cost is known. A cached train step trained nothing on
            # its VM, so that run says nothing about the cost per sample (nor its baseline).
            if status == "completed" and records["train"].status == "completed":
                checks = _check_cost(vms, records["train"], plan["train"], logger)
                summary.provisioning["cost_checks"] = checks
                vm_metrics |= {
                    f"cost_per_1k_samples_{c['instance_type']}_{c['market']}": c["cost_per_1k"]
                    for c in checks
                }
        try:  # the review record must not hide the step's own error
            files = write_index(summary)
            end_pipeline_run(
                tracking,
                "FINISHED" if status == "completed" else "FAILED",
                {f"seconds_{r.step}": r.seconds for r in summary.steps}
                | {"seconds_total": summary.seconds}
                | vm_metrics,
                files,
            )
        except Exception as exc:
            logger.warning("could not write the run's review record: %s", exc)
        logger.info("run %s %s; review it at %s", params.run_id, status, summary.index)
        if teardown_error is not None and sys.exc_info()[0] is None:
            # Raised only when no step error is on its way out (that one is the run's error).
            raise PipelineError(
                f"teardown failed: {teardown_error}; see `ordinal infra leaks` and the run's "
                f"provision/ folder in {run_dir}"
            ) from teardown_error
    return summary.to_dict()


#: How often a VM's Prefect worker asks for its run's next step (seconds).
VM_WORKER_QUERY_SECONDS = "2"


def _pipeline_vms(params: PipelineParams, run_dir: Path, tracking: Tracking) -> PipelineVms:
    """The run's VMs, with what their workers need (never a credential in user-data)."""
    from pipelines.stack.run_env import EMULATED_CLOUD_ENV

    api = _api_url()
    if api is None:
        raise PipelineError("the tofu provisioner needs a Prefect API over HTTP; none is running")
    # A VM's worker serves one run's queue: polling it every 2 s (Prefect's default is 10 s)
    # starts each step sooner, as the stack's workers do, at a negligible cost to the API.
    env: dict[str, str] = {"PREFECT_WORKER_QUERY_SECONDS": VM_WORKER_QUERY_SECONDS}
    if redact(tracking.tracking_uri) == tracking.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri
    else:  # user-data is readable on the VM: the VM's own configuration must provide it
        log.warning("the MLflow URI holds credentials: not passed to the VMs' user-data")
    return PipelineVms(
        params.run_id,
        run_dir,
        api,
        gpu_instance_type=params.gpu_instance_type,
        market=params.market,
        platform_file=params.tofu_platform,
        max_interruptions=params.spot_interruptions,
        worker_env=env,
        alert=_provisioning_alert,
        # On the stack (`ordinal run --stack`): its emulated endpoint, unless a platform file
        # names another cloud.
        endpoint="" if params.tofu_platform else os.environ.get(EMULATED_CLOUD_ENV, ""),
        checkpoint_url=_checkpoint_url(params),
    )


def _checkpoint_url(params: PipelineParams) -> str:
    """Where a spot-interrupted training's checkpoint goes: the run's storage root,
    ``models/checkpoints/<run>`` (the train role may write there)."""
    from ordinal.artifacts import default_storage_url
    from ordinal.artifacts.layout import model_dir

    root = params.storage or default_storage_url()
    if "://" not in root:
        return str(Path(root).expanduser().resolve() / model_dir("checkpoints", params.run_id))
    return f"{root.rstrip('/')}/{model_dir('checkpoints', params.run_id)}"


def _provisioning_alert(summary: str, context: dict[str, str]) -> None:
    """Alert that provisioning fell back: the stack's channels when the run is on the stack,
    else a log warning (the summary's ``provisioning.alerts`` keeps it either way)."""
    log.warning("provisioning alert: %s (%s)", summary, context)
    if not os.environ.get("ORDINAL_S3_ENDPOINT_URL"):  # set by `ordinal run --stack`
        return
    try:
        from pipelines.stack.alerts import Alert, send_alert
        from pipelines.stack.config import load_config

        send_alert(load_config(None), Alert("provision-fallback", summary, context, "warning"))
    except Exception as exc:  # alerting must not fail the run it reports on
        log.warning("could not send the provisioning alert: %s", exc)


def _check_cost(
    vms: PipelineVms, train: StepRecord, spec: StepParams, logger: Any
) -> list[dict[str, Any]]:
    """Cost per 1,000 training samples per class against its rolling baseline
    (:mod:`pipelines.provision.cost`); alerts through the stack's channels on the stack."""
    from pipelines.provision.cost import check_run_cost

    samples = int(train.metrics.get("global_step", 0)) * int(getattr(spec, "batch_size", 0))
    if samples <= 0:
        return []
    alert = None
    try:
        if os.environ.get("ORDINAL_S3_ENDPOINT_URL"):  # set by `ordinal run --stack`
            from pipelines.stack.config import load_config

            alert = load_config(None)
        from ordinal.artifacts import open_storage

        store = open_storage(getattr(spec, "storage", "") or None)  # the history's root
        checks = check_run_cost(vms.records, samples, store, run_id=vms.run_id, alert=alert)
    except Exception as exc:  # the cost check must not fail a run that completed
        logger.warning("could not check the run's cost against its baseline: %s", exc)
        return []
    return [c.as_dict() for c in checks]


def _log_vms(tracking: Tracking, vms: PipelineVms, logger: Any) -> dict[str, float]:
    """VM parameters on the parent MLflow run; returns the VM metrics to log with it."""
    params, metrics = vms.mlflow_records()
    try:
        log_parent_params(tracking, {k: v[:6000] for k, v in params.items()})
    except Exception as exc:
        logger.warning("could not record the VMs in MLflow: %s", exc)
    return metrics


def run_pipeline(values: dict[str, Any] | PipelineParams) -> dict[str, Any]:
    """Validate, then run the flow; raises the failing step's error after teardown."""
    params = check_params(values)
    if not isinstance(params, PipelineParams):  # pragma: no cover - defensive
        raise PipelineError("invalid parameters")
    return ordinal_pipeline(params)
