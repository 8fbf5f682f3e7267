"""The ``tofu`` provisioner: one VM per pipeline phase, applied with OpenTofu/Terraform.

A :class:`TofuProvisioner` applies ``envs/<env>/compute`` for one run and one stage (state
key ``runs/<run>/<stage>.tfstate``), with the spot fallback policy, and destroys it on
teardown. The VM's user-data starts a Prefect worker on the run's queue; the compute steps
run there. What it did is recorded in ``{run_dir}/provision/<stage>/state.json`` so that a
fresh process can tear it down (:func:`teardown_from_state`), idempotently.

The provisioner does not know whether the endpoint is emulated: a :class:`Platform` gives
it endpoints, network, instance profiles and an image. The one emulation hook is
``Platform.instance_dir``: where the user-data runner keeps its process groups, so that a
teardown in a fresh process also ends the instance's processes (a real VM ends with its
instance).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.provision.errors import CapacityError, FatalProvisionError, TeardownError
from pipelines.provision.fallback import MAX_ATTEMPTS, Attempt, Placement, classify, next_placement
from pipelines.provision.prices import PriceTable, load_prices
from pipelines.provision.runner import Backend, ProviderError, TofuRunner, first_error

__all__ = [
    "GPU_CLASSES",
    "Platform",
    "TofuProvisioner",
    "VmRecord",
    "VmSpec",
    "teardown_from_state",
]

log = logging.getLogger(__name__)

GPU_CLASSES = ("g4dn.xlarge", "g6.xlarge")
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Platform:
    """Where VMs launch: the output of ``envs/<env>/platform`` plus endpoints and state.

    Attributes
    ----------
    env : str
        ``emulated`` or ``aws`` (selects ``envs/<env>/compute``).
    region : str
        Region (prices are looked up there).
    vpc_id, subnets, instance_profiles, ami_id
        Network (``[(zone, subnet_id), ...]`` in preference order), the instance profile
        per stage, the provisioning image.
    state_bucket : str
        S3 bucket of the Terraform state (one key per run and VM, locked).
    endpoint, ec2_endpoint : str or None
        The emulated endpoint (and the fault injector in front of its EC2); ``None`` on AWS.
    credentials : dict
        Environment for the emulator's fake credentials; empty on AWS (the caller's own
        credentials are used and never recorded).
    instance_dir : str or None
        Emulation only: the user-data runner's folder.
    """

    env: str
    region: str
    vpc_id: str
    subnets: list[tuple[str, str]]
    instance_profiles: dict[str, str]
    ami_id: str
    state_bucket: str
    endpoint: str | None = None
    ec2_endpoint: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)
    instance_dir: str | None = None

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any], **kwargs: Any) -> Platform:
        """Build from ``envs/<env>/platform``'s outputs."""
        return cls(
            vpc_id=outputs["vpc_id"],
            subnets=[(s["zone"], s["subnet_id"]) for s in outputs["subnets"]],
            instance_profiles=dict(outputs["instance_profiles"]),
            **kwargs,
        )


@dataclass(frozen=True)
class VmSpec:
    """What to launch for one phase."""

    stage: str
    instance_type: str
    market: str = "spot"
    owner: str = "ml-platform"
    cost_centre: str = "ml-research"
    max_lifetime_minutes: int = 720
    spot_max_price: str | None = None
    profile: str | None = None  # instance profile key; None: the stage's own (cpu: export+quantise)

    @property
    def profile_key(self) -> str:
        """The key of ``Platform.instance_profiles`` this VM uses."""
        return self.profile or self.stage


@dataclass
class VmRecord:
    """One VM's life, as the run summary and the index page show it."""

    run_id: str
    stage: str
    instance_type: str
    market: str
    instance_id: str | None = None
    zone: str | None = None
    work_queue: str | None = None
    apply_started: float | None = None
    apply_finished: float | None = None
    apply_seconds: float | None = None
    destroy_started: float | None = None
    destroy_finished: float | None = None
    destroy_seconds: float | None = None
    billed_seconds: int | None = None
    cost_usd: float | None = None
    price_per_hour: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    fell_back: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class TofuProvisioner:
    """Apply one VM for one stage of a run, and destroy it on teardown.

    Implements the ``Provisioner`` semantics of :mod:`pipelines.provisioning`
    (``provision(run_name, run_dir) -> ComputeTarget``; ``teardown() -> dict``, safe to
    call twice, and :func:`teardown_from_state` from a fresh process).

    Parameters
    ----------
    platform : Platform
        Where to launch.
    vm : VmSpec
        What to launch.
    prefect_api_url : str
        The API the VM's worker connects to.
    worker_python : str
        Python with prefect on the image (on the emulator: this machine's interpreter).
    worker_env : dict or None
        Extra environment for the worker (no secrets: user-data is readable on the VM).
    target_factory : callable or None
        ``(record, run_dir) -> ComputeTarget``; by default :func:`worker_target`.
    on_fallback : callable or None
        Called with the attempts list when the policy falls back (alerting, MLflow).
    """

    name = "tofu"

    def __init__(
        self,
        platform: Platform,
        vm: VmSpec,
        prefect_api_url: str,
        worker_python: str,
        worker_env: dict[str, str] | None = None,
        target_factory: Callable[[VmRecord, Path], Any] | None = None,
        on_fallback: Callable[[list[Attempt]], None] | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        if vm.profile_key not in platform.instance_profiles:
            raise FatalProvisionError(
                "no instance profile for this VM",
                profile=vm.profile_key,
                known=sorted(platform.instance_profiles),
            )
        self.platform = platform
        self.vm = vm
        self.prefect_api_url = prefect_api_url
        self.worker_python = worker_python
        self.worker_env = dict(worker_env or {})
        self.target_factory = target_factory
        self.on_fallback = on_fallback
        self.prices = prices or load_prices()
        self.state_path: Path | None = None
        self.record: VmRecord | None = None

    # -- the Provisioner interface -------------------------------------------------------
    def provision(self, run_name: str, run_dir: Path) -> Any:
        """Apply the VM (with fallback) and return the compute target on its worker."""
        record = self.apply(run_name, run_dir)
        if self.target_factory is None:
            from pipelines.provision.target import worker_target

            return worker_target(record, run_dir)
        return self.target_factory(record, run_dir)

    def teardown(self) -> dict[str, Any]:
        """Destroy the VM; idempotent (a second call finds an empty state)."""
        if self.state_path is None:
            return {"provisioner": self.name, "started": "nothing"}
        report = teardown_from_state(self.state_path, prices=self.prices)
        if self.record is not None and "vm" in report:
            self.record = VmRecord(**report["vm"])
        return report

    # -- apply with the fallback policy --------------------------------------------------
    def apply(self, run_name: str, run_dir: Path) -> VmRecord:
        """Apply ``envs/<env>/compute`` for this run and stage; return the VM's record."""
        folder = Path(run_dir) / "provision" / self.vm.stage
        folder.mkdir(parents=True, exist_ok=True)
        self.state_path = folder / STATE_FILE
        runner = _runner(self.platform, run_name, self.vm.stage, folder)
        record = VmRecord(run_name, self.vm.stage, self.vm.instance_type, self.vm.market)
        self.record = record
        state = {
            "provisioner": self.name,
            "platform": asdict(self.platform),
            "run_id": run_name,
            "stage": self.vm.stage,
            "variables": None,
            "vm": record.as_dict(),
        }
        _write_json(self.state_path, state)

        placement = Placement(self.vm.market, *self.platform.subnets[0])
        tried_zones: set[str] = set()
        attempts: list[Attempt] = []
        record.apply_started = time.time()
        for number in range(1, MAX_ATTEMPTS + 1):
            variables = self._variables(run_name, placement)
            state["variables"] = variables
            _write_json(self.state_path, state)
            started = time.monotonic()
            result = runner.apply(variables, check=False)
            seconds = time.monotonic() - started
            if placement.market == "spot":
                tried_zones.add(placement.zone)
            if result.ok:
                attempts.append(
                    Attempt(
                        number,
                        placement.market,
                        placement.zone,
                        placement.subnet_id,
                        "ok",
                        seconds=round(seconds, 2),
                    )
                )
                break
            # No AWS API error code: the provider refused before or around the API call
            # (an image it cannot find, an invalid argument). Not retryable either way.
            error = (
                result.errors[0]
                if result.errors
                else ProviderError("ProviderError", first_error(result.output))
            )
            kind = classify(error.code)
            attempts.append(
                Attempt(
                    number,
                    placement.market,
                    placement.zone,
                    placement.subnet_id,
                    error.code,
                    kind.value,
                    error.message,
                    round(seconds, 2),
                )
            )
            record.attempts = [a.as_dict() for a in attempts]
            state["vm"] = record.as_dict()
            _write_json(self.state_path, state)
            log.warning(
                "attempt %d (%s in %s) failed: %s",
                number,
                placement.market,
                placement.zone,
                error.code,
            )
            following = next_placement(placement, error.code, self.platform.subnets, tried_zones)
            if following is None:
                raise FatalProvisionError(
                    f"{error.code}: {error.message}",
                    stage=self.vm.stage,
                    attempt=number,
                    instance_type=self.vm.instance_type,
                    market=placement.market,
                    zone=placement.zone,
                    ami_id=self.platform.ami_id,
                    instance_profile=self.platform.instance_profiles[self.vm.profile_key],
                    log=str(runner.log_path),
                )
            if number == MAX_ATTEMPTS:
                raise CapacityError(
                    f"no capacity after {MAX_ATTEMPTS} attempts; "
                    f"last: {error.code}: {error.message}",
                    stage=self.vm.stage,
                    instance_type=self.vm.instance_type,
                )
            placement = following
            if self.on_fallback is not None:
                self.on_fallback(list(attempts))

        outputs = runner.outputs()
        record.instance_id = outputs["instance_id"]
        record.zone = outputs["availability_zone"] or placement.zone
        record.work_queue = outputs["work_queue"]
        record.market = placement.market
        record.fell_back = len(attempts) > 1
        record.apply_finished = time.time()
        record.apply_seconds = round(record.apply_finished - record.apply_started, 2)
        record.price_per_hour = self.prices.hourly(
            self.platform.region, record.instance_type, record.market
        )
        record.attempts = [a.as_dict() for a in attempts]
        state["vm"] = record.as_dict()
        _write_json(self.state_path, state)
        return record

    def _variables(self, run_name: str, placement: Placement) -> dict[str, Any]:
        p = self.platform
        variables: dict[str, Any] = {
            "run_id": run_name,
            "stage": self.vm.stage,
            "instance_type": self.vm.instance_type,
            "market": placement.market,
            "ami_id": p.ami_id,
            "subnet_id": placement.subnet_id,
            "vpc_id": p.vpc_id,
            "instance_profile_name": p.instance_profiles[self.vm.profile_key],
            "owner": self.vm.owner,
            "cost_centre": self.vm.cost_centre,
            "max_lifetime_minutes": self.vm.max_lifetime_minutes,
            "prefect_api_url": self.prefect_api_url,
            "worker_python": self.worker_python,
            "worker_env": self.worker_env,
            "region": p.region,
            "work_queue": f"run-{run_name}-{self.vm.stage}",
        }
        if self.vm.spot_max_price is not None:
            variables["spot_max_price"] = self.vm.spot_max_price
        if p.endpoint is not None:
            variables["endpoint"] = p.endpoint
            variables["ec2_endpoint"] = p.ec2_endpoint
        return variables


def _runner(platform: Platform, run_id: str, stage: str, folder: Path) -> TofuRunner:
    return TofuRunner(
        f"envs/{platform.env}/compute",
        folder / "tofu",
        Backend(
            platform.state_bucket,
            f"runs/{run_id}/{stage}.tfstate",
            platform.region,
            platform.endpoint,
        ),
        env=dict(platform.credentials),
    )


def teardown_from_state(state_path: Path, prices: PriceTable | None = None) -> dict[str, Any]:
    """Destroy the VM recorded in ``state_path``; works from a fresh process; idempotent.

    The state file is kept (marked ``destroyed``) so that cost and timings survive for the
    run summary; a second call reports ``already destroyed`` and touches nothing.
    """
    state_path = Path(state_path)
    if not state_path.is_file():
        return {"provisioner": "tofu", "started": "nothing"}
    state = json.loads(state_path.read_text(encoding="utf-8"))
    record = VmRecord(**state["vm"])
    if state.get("destroyed"):
        return {"provisioner": "tofu", "already_destroyed": True, "vm": record.as_dict()}
    if state.get("variables") is None:
        return {"provisioner": "tofu", "started": "nothing"}
    platform = Platform(
        **{**state["platform"], "subnets": [tuple(s) for s in state["platform"]["subnets"]]}
    )
    runner = _runner(platform, state["run_id"], state["stage"], state_path.parent)
    record.destroy_started = time.time()
    result = runner.destroy(state["variables"], check=False)
    if not result.ok:
        raise TeardownError(
            "destroy failed; state kept for another teardown",
            stage=state["stage"],
            log=str(runner.log_path),
            error=result.errors[0].code if result.errors else None,
        )
    record.destroy_finished = time.time()
    record.destroy_seconds = round(record.destroy_finished - record.destroy_started, 2)
    if record.apply_finished is not None:
        table = prices or load_prices()
        # Billed from the end of apply (the instance is running) to the end of destroy.
        running = record.destroy_finished - record.apply_finished
        record.billed_seconds = table.billed_seconds(running)
        record.cost_usd = round(
            table.cost(platform.region, record.instance_type, record.market, running), 6
        )
    report: dict[str, Any] = {"provisioner": "tofu", "destroyed": True}
    if platform.instance_dir and record.instance_id:
        from pipelines.provision.emulation.userdata import UserDataRunner

        report["instance_processes_killed"] = UserDataRunner(Path(platform.instance_dir)).terminate(
            record.instance_id
        )
    state["vm"] = record.as_dict()
    state["destroyed"] = True
    _write_json(state_path, state)
    report["vm"] = record.as_dict()
    return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
