"""VMs one after another: each phase's VM is destroyed before the next phase's apply.

This is the shape of ``ordinal run --provisioner tofu``: a GPU VM for training, destroyed,
then a CPU VM for export, parity and quantisation, destroyed in turn. The flow calls
:func:`run_vm_phases` with a callback that runs the phase's steps on the target; the
records it returns go into the run summary and the index page, and
:func:`assert_sequential` is the check a test makes on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from pipelines.provision.tofu import Platform, TofuProvisioner, VmRecord, VmSpec

__all__ = ["DEFAULT_PHASES", "Phase", "assert_sequential", "run_vm_phases"]


@dataclass(frozen=True)
class Phase:
    """One VM and the steps that run on it."""

    vm: VmSpec
    steps: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_PHASES = (
    Phase(VmSpec(stage="train", instance_type="g4dn.xlarge", market="spot"), ("train",)),
    Phase(
        VmSpec(stage="export", instance_type="c6i.xlarge", market="spot", profile="cpu"),
        ("export", "parity", "quantize"),
    ),
)


def run_vm_phases(
    platform: Platform,
    phases: Sequence[Phase],
    run_name: str,
    run_dir: Path,
    run_phase: Callable[[Any, Phase], None],
    teardown: Callable[[TofuProvisioner], dict[str, Any]] | None = None,
    records: list[VmRecord] | None = None,
    **provisioner_options: Any,
) -> list[VmRecord]:
    """Provision, run and destroy each phase's VM in turn; return their records.

    Parameters
    ----------
    run_phase : callable
        ``(target, phase)``: runs the phase's steps on the compute target.
    teardown : callable or None
        How a VM is torn down (default ``provisioner.teardown()``); it runs on every
        completion path, before the next phase's apply.
    records : list or None
        Appended to as each VM is torn down, so a caller still has the records of a run
        that failed (the return value is then never reached).
    provisioner_options
        Passed to every :class:`TofuProvisioner` (``prefect_api_url``, ``worker_python``,
        ``target_factory``, ``on_fallback``, ...).
    """
    records = [] if records is None else records
    for phase in phases:
        provisioner = TofuProvisioner(platform, phase.vm, **provisioner_options)
        try:
            target = provisioner.provision(run_name, run_dir)
            run_phase(target, phase)
        finally:
            if provisioner.state_path is not None:
                report = (teardown or TofuProvisioner.teardown)(provisioner)
                vm = report.get("vm")
                if vm is not None:
                    provisioner.record = VmRecord(**vm)
            if provisioner.record is not None:
                records.append(provisioner.record)
    return records


def assert_sequential(records: Sequence[VmRecord]) -> None:
    """Each VM's destroy finished before the next VM's apply began (else ``AssertionError``)."""
    for before, after in pairwise(records):
        if before.destroy_finished is None or after.apply_started is None:
            raise AssertionError(f"{before.stage} or {after.stage} has no timing recorded")
        if before.destroy_finished > after.apply_started:
            raise AssertionError(
                f"{before.stage} VM destroyed at {before.destroy_finished:.3f}, after the "
                f"{after.stage} VM's apply began at {after.apply_started:.3f}"
            )
