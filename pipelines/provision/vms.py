"""The pipeline's compute phases on provisioned VMs (``ordinal run --provisioner tofu``).

:class:`PipelineVms` is what the flow drives: a GPU-class VM runs ``train`` and is destroyed;
only then a CPU VM is applied for ``export``, ``parity`` and ``quantize``, and destroyed in
turn (:func:`~pipelines.provision.phases.run_vm_phases`). A train step that fails with the
spot two-minute warning (:class:`ordinal.exceptions.SpotInterruptedError`, raised by the
training callback after it saved a checkpoint) gets a fresh GPU VM, where the step resumes
from that checkpoint, at most ``max_interruptions`` times.

Where the VMs go (a :class:`~pipelines.provision.tofu.Platform`):

* a platform file (``--set tofu_platform=platform.json``, what :func:`write_platform` writes:
  endpoints, network, instance profiles, image, state bucket), for a cloud that lives longer
  than the run (the tests' emulated cloud, or AWS);
* on the control-plane stack (``ordinal run --stack --provisioner tofu``): the stack's own
  emulated endpoint (``endpoint=``), whose ``moto_server`` serves EC2 and IAM beside the
  stack's S3; the platform root is applied there once (state
  ``s3://ordinal-tfstate/platform/platform.tfstate``, shared by the stack's runs, locked) and
  each VM's state is a key of the run in the same bucket; the run starts only its own fault
  injector, metadata stand-in and user-data runner, and leaves the stack running;
* otherwise the embedded default: the run starts its own emulated cloud
  (:class:`~pipelines.provision.emulation.cloud.EmulatedCloud`: ``moto_server`` on a free
  loopback port, the fault injector, the metadata stand-in, the user-data runner) and applies
  the platform root there, and stops it all when the run ends.

Teardown is idempotent and works from recorded state: :func:`teardown_run` destroys every VM
whose ``{run_dir}/provision/<stage>/state.json`` is not marked destroyed, and stops an
embedded cloud recorded in ``{run_dir}/provision/platform.json``. The flow calls it in its
``finally`` and its crash and cancellation hooks; :mod:`pipelines.ownership` calls it (fence
hook) when a resumed run fences a dead owner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict
from pathlib import Path
from typing import Any

import psutil

from ordinal.training.checkpoint_store import CHECKPOINT_UPLOAD_ENV
from ordinal.training.spot import SPOT_ENABLE_ENV, read_interruptions
from pipelines.errors import NotebookStepError, PipelineError
from pipelines.ownership import register_fence_hook
from pipelines.provision.errors import SpotInterruptionError, TeardownError
from pipelines.provision.fallback import Attempt
from pipelines.provision.phases import Phase, run_vm_phases
from pipelines.provision.tofu import Platform, VmRecord, VmSpec
from pipelines.provision.tofu import teardown_from_state as destroy_vm

__all__ = [
    "PLATFORM_FILE",
    "PipelineVms",
    "is_spot_interruption",
    "load_platform",
    "teardown_run",
    "write_platform",
]

log = logging.getLogger(__name__)

PLATFORM_FILE = "platform.json"
CPU_INSTANCE_TYPE = "c6i.xlarge"


def write_platform(platform: Platform, path: Path, **extra: Any) -> Path:
    """Write ``platform`` (and ``extra`` fields) as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**asdict(platform), **extra}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def load_platform(path: Path) -> Platform:
    """Read a platform file; a typed error names a missing field."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    fields = Platform.__dataclass_fields__
    required = [
        k for k, f in fields.items() if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        raise PipelineError(f"platform file {path} lacks {', '.join(sorted(missing))}")
    values = {k: v for k, v in data.items() if k in fields}
    if values.get("credentials") and values.get("env") != "emulated":
        # The platform is copied into the run folder and each VM's state: only an
        # emulator's fake keys may travel with it; real ones come from the environment.
        raise PipelineError(
            f"platform file {path}: 'credentials' is only for an emulated endpoint; for "
            f"env {values.get('env')!r} remove it and give AWS credentials in the environment"
        )
    values["subnets"] = [tuple(s) for s in values["subnets"]]
    return Platform(**values)


def is_spot_interruption(exc: BaseException) -> bool:
    """Whether a step failed with the training callback's spot interruption error."""
    return isinstance(exc, NotebookStepError) and exc.ename == "SpotInterruptedError"


def _same_process(record: dict[str, Any] | None) -> psutil.Process | None:
    if not record:
        return None
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["created"])) > 1.0:
            return None
        return proc
    except (psutil.Error, KeyError, ValueError):
        return None


def teardown_run(run_dir: Path) -> dict[str, Any]:
    """Destroy every VM of the run that is not destroyed yet; stop an embedded cloud.

    Idempotent and usable from a fresh process (it reads only the run folder). Raises
    :class:`~pipelines.provision.errors.TeardownError` when a destroy failed (its state is
    kept for the next teardown).
    """
    folder = Path(run_dir) / "provision"
    report: dict[str, Any] = {"provisioner": "tofu", "vms": {}}
    failures: list[str] = []
    for state in sorted(folder.glob("*/state.json")):
        try:
            if json.loads(state.read_text(encoding="utf-8")).get("provisioner") != "tofu":
                continue
            outcome = destroy_vm(state)
        except Exception as exc:  # go on with the others; report below
            failures.append(f"{state.parent.name}: {exc}")
            outcome = {"error": str(exc)}
        report["vms"][state.parent.name] = {k: v for k, v in outcome.items() if k != "vm"} | {
            "instance_id": (outcome.get("vm") or {}).get("instance_id")
        }
    platform_file = folder / PLATFORM_FILE
    if platform_file.is_file():
        data = json.loads(platform_file.read_text(encoding="utf-8"))
        embedded = data.get("embedded")
        proc = _same_process(embedded)
        if proc is not None and proc.pid != os.getpid():
            # The embedded cloud's moto_server outlived its run (a crash): stop its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            report["embedded_cloud_stopped"] = True
        if (embedded or data.get("attached")) and data.get("instance_dir"):
            from pipelines.provision.emulation.userdata import UserDataRunner

            runner = UserDataRunner(Path(data["instance_dir"]))
            killed = [i for i in runner.alive() if runner.terminate(i)]
            if killed:
                report["instance_processes_killed"] = killed
    if failures:
        raise TeardownError("could not destroy every VM of the run", failures="; ".join(failures))
    return report


def _fence_vms(run_dir: Path, owner: Any) -> dict[str, Any]:
    """Fence hook: a resumed run destroys the VMs its dead owner left."""
    return teardown_run(run_dir)


register_fence_hook(_fence_vms)


class PipelineVms:
    """The run's VMs: platform, phases, spot resumption, records for summary and MLflow.

    Parameters
    ----------
    run_id, run_dir
        The run.
    prefect_api_url : str
        The Prefect API the VMs' workers connect to.
    gpu_instance_type, market : str
        The training VM's class and market (the CPU VM is c6i.xlarge, same market).
    platform_file : str
        A platform file; ``""`` starts an emulated cloud for the run.
    max_interruptions : int
        How many spot interruptions of training get a fresh VM.
    worker_env : dict
        Extra environment for the VMs' workers (rendered into user-data: no secrets).
    alert : callable or None
        ``(summary, context)``: called when provisioning fell back (spot to another zone or
        to on-demand).
    """

    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        prefect_api_url: str,
        gpu_instance_type: str = "g4dn.xlarge",
        market: str = "spot",
        platform_file: str = "",
        max_interruptions: int = 2,
        worker_env: dict[str, str] | None = None,
        alert: Callable[[str, dict[str, str]], None] | None = None,
        endpoint: str = "",
        checkpoint_url: str = "",
    ) -> None:
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.prefect_api_url = prefect_api_url
        self.platform_file = platform_file
        self.endpoint = endpoint
        self.checkpoint_url = checkpoint_url
        self.max_interruptions = max_interruptions
        self.worker_env = dict(worker_env or {})
        self.alert = alert
        self.phases = (
            Phase(
                VmSpec(stage="train", instance_type=gpu_instance_type, market=market), ("train",)
            ),
            Phase(
                VmSpec(
                    stage="export", instance_type=CPU_INSTANCE_TYPE, market=market, profile="cpu"
                ),
                ("export", "parity", "quantize"),
            ),
        )
        self.records: list[VmRecord] = []
        self.fallbacks: list[dict[str, Any]] = []
        self.interruptions: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.cloud: Any = None
        self.platform: Platform | None = None
        self.setup_seconds = 0.0

    @property
    def folder(self) -> Path:
        """``{run_dir}/provision``."""
        return self.run_dir / "provision"

    @property
    def description(self) -> str:
        """Where the VMs go, for the summary's ``compute``."""
        where = "an emulated endpoint" if self.platform and self.platform.endpoint else "AWS"
        if self.platform and self.platform.endpoint:
            how = ", the stack's" if self.endpoint else (", embedded" if self.cloud else "")
            where += f" ({self.platform.endpoint}{how})"
        return f"tofu VMs on {where}"

    # -- platform ---------------------------------------------------------------------------
    def open(self) -> Platform:
        """Destroy what an earlier attempt of the run left, then find or start the platform."""
        started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(TeardownError):  # an old embedded endpoint may be gone
            leftover = teardown_run(self.run_dir)
            if any("destroyed" in v for v in leftover["vms"].values()):
                log.warning("destroyed VMs left by an earlier attempt: %s", leftover)
        if self.platform_file:
            self.platform = load_platform(Path(self.platform_file))
            write_platform(self.platform, self.folder / PLATFORM_FILE)
        else:
            from pipelines.provision.emulation.cloud import EmulatedCloud

            self.cloud = EmulatedCloud(
                self.folder / "cloud",
                endpoint=self.endpoint or None,
                run_id=self.run_id if self.endpoint else None,  # a shared endpoint
            )
            try:
                self.cloud.start(apply_platform=False)
                self.cloud.apply_platform()  # on the stack: "no changes" after its first run
                self.platform = self.cloud.platform()
            except BaseException:
                self.cloud.close()
                self.cloud = None
                raise
            if self.endpoint:  # the stack's endpoint outlives the run: never stop it
                write_platform(self.platform, self.folder / PLATFORM_FILE, attached=self.endpoint)
            else:
                moto = self.cloud.moto.process
                write_platform(
                    self.platform,
                    self.folder / PLATFORM_FILE,
                    embedded={"pid": moto.pid, "created": psutil.Process(moto.pid).create_time()},
                )
        self.setup_seconds = round(time.monotonic() - started, 2)
        return self.platform

    # -- phases -----------------------------------------------------------------------------
    def _on_fallback(self, stage: str) -> Callable[[list[Attempt]], None]:
        def record(attempts: list[Attempt]) -> None:
            self.fallbacks.append({"stage": stage, "attempts": [a.as_dict() for a in attempts]})

        return record

    def _env_for(self, phase: Phase) -> dict[str, str]:
        env = dict(self.worker_env)
        if phase.vm.stage == "train":
            env[SPOT_ENABLE_ENV] = "1"  # the training callback watches the two-minute warning
            if self.checkpoint_url:  # where its checkpoint leaves the VM, and the next one
                env[CHECKPOINT_UPLOAD_ENV] = self.checkpoint_url  # restores it from
        return env

    def run(self, run_phase: Callable[[Any, Phase], None]) -> list[VmRecord]:
        """Each phase on its VM, one after another; a spot-interrupted train gets a new VM."""
        if self.platform is None:
            raise PipelineError("PipelineVms.open() first")
        for phase in self.phases:
            while True:
                before = len(self.records)
                try:
                    run_vm_phases(
                        self.platform,
                        [phase],
                        self.run_id,
                        self.run_dir,
                        run_phase,
                        records=self.records,
                        prefect_api_url=self.prefect_api_url,
                        worker_python=sys.executable,
                        worker_env=self._env_for(phase),
                        on_fallback=self._on_fallback(phase.vm.stage),
                    )
                    break
                except Exception as exc:
                    if not is_spot_interruption(exc):
                        raise
                    vm = self.records[-1] if len(self.records) > before else None
                    self._interrupted(vm)
                    if len(self.interruptions) > self.max_interruptions:
                        raise SpotInterruptionError(
                            f"training was interrupted {len(self.interruptions)} times",
                            stage=phase.vm.stage,
                            max_interruptions=self.max_interruptions,
                        ) from exc
                    log.warning(
                        "spot interruption of %s: resuming on a fresh VM (%d of at most %d)",
                        vm.instance_id if vm else "the VM",
                        len(self.interruptions),
                        self.max_interruptions,
                    )
                finally:
                    for record in self.records[before:]:
                        if record.fell_back:
                            self._alert_fallback(record)
        return self.records

    def _interrupted(self, vm: VmRecord | None) -> None:
        known = {i["step"] for i in self.interruptions}
        found = [
            r for r in read_interruptions(self.run_dir / "train" / "checkpoints")
            if r["step"] not in known
        ]  # fmt: skip
        entry: dict[str, Any] = {"instance_id": vm.instance_id if vm else None}
        if found:
            entry.update(
                step=found[-1]["step"],
                checkpoint=found[-1]["checkpoint"],
                seconds_to_save=found[-1]["seconds_to_save"],
                notice=found[-1]["notice"],
            )
            if found[-1].get("upload"):  # where the checkpoint went (no credentials)
                entry["upload"] = found[-1]["upload"]
        self.interruptions.append(entry)

    def _alert_fallback(self, record: VmRecord) -> None:
        outcomes = ", ".join(f"{a['market']} {a['zone']}: {a['outcome']}" for a in record.attempts)
        alert = {
            "kind": "provision-fallback",
            "summary": f"{record.stage} VM fell back to {record.market} after "
            f"{len(record.attempts) - 1} failed attempt(s)",
            "context": {
                "run_id": self.run_id,
                "stage": record.stage,
                "instance_type": record.instance_type,
                "attempts": outcomes,
            },
        }
        self.alerts.append(alert)
        if self.alert is not None:
            self.alert(alert["summary"], alert["context"])

    def resumed_work(self) -> list[dict[str, Any]]:
        """Per interruption: the step it stopped at, the step the next VM resumed from and
        the steps recomputed (lost work)."""
        outputs = self.run_dir / "train" / "outputs.json"
        resumed_step = None
        if outputs.is_file():
            resumed = json.loads(outputs.read_text(encoding="utf-8")).get("resumed_from") or ""
            if "checkpoint-" in resumed:
                resumed_step = int(resumed.rsplit("checkpoint-", 1)[1])
        out = [dict(entry) for entry in self.interruptions]
        # train/outputs.json records the last resume only: it answers for the last
        # interruption (an earlier one's resume was overwritten by the next VM's).
        if out and resumed_step is not None and "step" in out[-1]:
            out[-1]["resumed_from_step"] = resumed_step
            out[-1]["steps_recomputed"] = out[-1]["step"] - resumed_step
        return out

    # -- the end ----------------------------------------------------------------------------
    def teardown(self) -> dict[str, Any]:
        """Destroy what is left (idempotent), then stop an embedded cloud."""
        started = time.monotonic()
        try:
            report = teardown_run(self.run_dir)
        finally:
            if self.cloud is not None:
                self.cloud.close()
                self.cloud = None
        report["seconds"] = round(time.monotonic() - started, 2)
        # Each VM was destroyed when its phase ended; these are those destroys.
        report["destroy_seconds"] = {
            f"{r.stage} {r.instance_id}": r.destroy_seconds for r in self.records
        }
        # The records the phases kept are the final ones; a crash-path teardown updates them.
        by_id = {r.instance_id: r for r in self.records}
        for state in sorted(self.folder.glob("*/state.json")):
            with contextlib.suppress(Exception):
                vm = VmRecord(**json.loads(state.read_text(encoding="utf-8"))["vm"])
                if vm.instance_id in by_id and by_id[vm.instance_id].destroy_finished is None:
                    by_id[vm.instance_id].__dict__.update(vm.__dict__)
        return report

    def summary(self) -> dict[str, Any]:
        """The summary's provisioning fields: VMs, fallbacks, interruptions, alerts, cost."""
        vms = [r.as_dict() for r in self.records]
        return {
            "vms": vms,
            "fallbacks": self.fallbacks,
            "interruptions": self.resumed_work(),
            "alerts": self.alerts,
            "cost_usd": round(sum(v["cost_usd"] or 0.0 for v in vms), 6),
            "platform_seconds": self.setup_seconds,
        }

    def mlflow_records(self) -> tuple[dict[str, str], dict[str, float]]:
        """Parameters and metrics for the parent MLflow run."""
        params: dict[str, str] = {"vm.count": str(len(self.records))}
        metrics: dict[str, float] = {
            "vm_cost_usd_total": sum(r.cost_usd or 0.0 for r in self.records),
            # failed attempts before each VM came up (fallbacks hold running lists)
            "vm_fallback_attempts": float(sum(max(len(r.attempts) - 1, 0) for r in self.records)),
            "spot_interruptions": float(len(self.interruptions)),
        }
        for i, r in enumerate(self.records):
            prefix = f"vm.{i}.{r.stage}"
            params.update({
                f"{prefix}.instance_type": r.instance_type,
                f"{prefix}.market": r.market,
                f"{prefix}.instance_id": str(r.instance_id),
                f"{prefix}.zone": str(r.zone),
                f"{prefix}.attempts": str(len(r.attempts)),
            })  # fmt: skip
            for key in ("apply_seconds", "destroy_seconds", "billed_seconds", "cost_usd"):
                value = getattr(r, key)
                if value is not None:
                    metrics[f"vm_{i}_{r.stage}_{key}"] = float(value)
        recomputed = [r["steps_recomputed"] for r in self.resumed_work() if "steps_recomputed" in r]
        if recomputed:
            metrics["spot_steps_recomputed"] = float(sum(recomputed))
        return params, metrics
