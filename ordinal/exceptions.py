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


class SpotInterruptedError(OrdinalError):
    """The spot VM got its two-minute interruption notice; training saved and stopped.

    Parameters
    ----------
    checkpoint : str
        The checkpoint saved after the notice (resume from it).
    step : int
        The training step that checkpoint holds.
    notice : dict
        The metadata service's ``spot/instance-action`` document (``action``, ``time``).
    seconds_to_save : float
        From the notice being seen to the checkpoint being saved (and uploaded).
    """

    def __init__(self, checkpoint: str, step: int, notice: dict, seconds_to_save: float) -> None:
        self.checkpoint = checkpoint
        self.step = step
        self.notice = dict(notice)
        self.seconds_to_save = seconds_to_save
        super().__init__(
            f"spot interruption notice ({notice.get('action')} at {notice.get('time')}): "
            f"checkpoint {checkpoint} (step {step}) saved {seconds_to_save:.1f} s after the "
            "notice; resume from it on a new VM"
        )

    def __reduce__(self):  # picklable across process boundaries
        return (type(self), (self.checkpoint, self.step, self.notice, self.seconds_to_save))
