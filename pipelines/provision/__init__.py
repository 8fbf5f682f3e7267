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
    "GPU_CLASSES",
    "MAX_ATTEMPTS",
    "Attempt",
    "Backend",
    "CapacityError",
    "ErrorClass",
    "FatalProvisionError",
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
    "classify",
    "find_binary",
    "find_leaks",
    "load_prices",
    "teardown_from_state",
]
