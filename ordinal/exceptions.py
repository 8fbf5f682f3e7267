"""Typed errors that carry the context a user needs to fix the problem."""

from __future__ import annotations


class OrdinalError(Exception):
    """Base class of every error this library raises on purpose."""


class LabelError(OrdinalError, ValueError):
    """Labels that are not integers in ``[0, num_classes)`` or do not match the inputs."""


class UnsupportedArchitectureError(OrdinalError, ValueError):
    """A backbone whose family has no registered head-replacement rule."""

    def __init__(self, model_type: str, supported: list[str]) -> None:
        self.model_type = model_type
        self.supported = sorted(supported)
        super().__init__(
            f"unsupported architecture {model_type!r}; supported model types: "
            + ", ".join(self.supported)
        )


class CheckpointError(OrdinalError):
    """A checkpoint directory that is missing, incomplete or does not match the run."""
