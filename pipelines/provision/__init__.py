"""Provisioned VMs: the OpenTofu/Terraform runner, the ``tofu`` provisioner, fallback, cost.

The cloud emulation used by the tests and by ``ordinal infra`` on a machine without AWS
lives apart, in :mod:`pipelines.provision.emulation`.
"""

from pipelines.provision.errors import (
    CapacityError,
    FatalProvisionError,
    ProvisionError,
    SpotInterruptionError,
    TeardownError,
    ToolError,
)
from pipelines.provision.fallback import MAX_ATTEMPTS, Attempt, ErrorClass, classify
from pipelines.provision.leaks import find_leaks
from pipelines.provision.phases import DEFAULT_PHASES, Phase, assert_sequential, run_vm_phases
from pipelines.provision.prices import PriceTable, load_prices
from pipelines.provision.runner import Backend, TofuRunner, find_binary
from pipelines.provision.tofu import (
    GPU_CLASSES,
    Platform,
    TofuProvisioner,
    VmRecord,
    VmSpec,
    teardown_from_state,
)

__all__ = [
    "DEFAULT_PHASES",
    "GPU_CLASSES",
    "MAX_ATTEMPTS",
    "Attempt",
    "Backend",
    "CapacityError",
    "ErrorClass",
    "FatalProvisionError",
    "Phase",
    "Platform",
    "PriceTable",
    "ProvisionError",
    "SpotInterruptionError",
    "TeardownError",
    "TofuProvisioner",
    "TofuRunner",
    "ToolError",
    "VmRecord",
    "VmSpec",
    "assert_sequential",
    "classify",
    "find_binary",
    "find_leaks",
    "load_prices",
    "run_vm_phases",
    "teardown_from_state",
]
