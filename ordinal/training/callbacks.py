"""Training callbacks: checkpoint cadence by wall clock, and throughput measurement."""

from __future__ import annotations

import time
from collections.abc import Callable

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

__all__ = ["ThroughputCallback", "WallClockCheckpointCallback"]


class WallClockCheckpointCallback(TrainerCallback):
    """Ask the Trainer to save whenever ``interval_seconds`` passed since the last save.

    Works alongside step-based saving (``save_steps``): whichever comes first saves. With
    the default 5-minute interval, a run killed at any moment loses at most the interval plus
    one step and one save, well under the 10-minute bound the pipeline promises.

    Parameters
    ----------
    interval_seconds : float
        Longest wall-clock time between two checkpoints.
    clock : callable, optional
        Monotonic time source in seconds; tests pass a fake one.
    """

    def __init__(
        self, interval_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        self.interval_seconds = float(interval_seconds)
        self._clock = clock
        self._last_save = clock()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._last_save = self._clock()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        if self._clock() - self._last_save >= self.interval_seconds:
            control.should_save = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._last_save = self._clock()


class ThroughputCallback(TrainerCallback):
    """Training samples per second over the window since the previous reading.

    The trainer calls :meth:`record` with each training batch's size and reads
    :meth:`rate` at every logging step.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._samples = 0
        self._since = clock()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._samples = 0
        self._since = self._clock()

    def record(self, num_samples: int) -> None:
        """Count ``num_samples`` more training samples in the current window."""
        self._samples += int(num_samples)

    def rate(self) -> float | None:
        """Samples per second since the last call (``None`` if nothing was recorded)."""
        now = self._clock()
        elapsed, samples = now - self._since, self._samples
        self._since, self._samples = now, 0
        if samples == 0 or elapsed <= 0:
            return None
        return samples / elapsed
