"""Typed provisioning errors; each carries the context an operator needs (never a secret)."""

from __future__ import annotations

from typing import Any

from pipelines.errors import PipelineError

__all__ = [
    "CapacityError",
    "FatalProvisionError",
    "ProvisionError",
    "SpotInterruptionError",
    "TeardownError",
    "ToolError",
]


class ProvisionError(PipelineError):
    """Provisioning failed; ``context`` names the VM, attempt, provider code and message."""

    def __init__(self, message: str, **context: Any) -> None:
        self.context = context
        details = ", ".join(f"{k}={v}" for k, v in context.items() if v is not None)
        super().__init__(f"{message} ({details})" if details else message)


class ToolError(ProvisionError):
    """terraform/tofu itself failed (init, validate, a command) outside a provider error."""


class CapacityError(ProvisionError):
    """Every attempt of the fallback policy met a capacity or quota error."""


class FatalProvisionError(ProvisionError):
    """A parameter, image or permission error: retrying cannot help.

    The provider's own message is kept in the error's text.
    """


class TeardownError(ProvisionError):
    """Destroy failed; the recorded state is kept so that a later teardown can finish it."""


class SpotInterruptionError(ProvisionError):
    """The spot VM received its two-minute interruption notice (from instance metadata)."""
