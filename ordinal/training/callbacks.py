"""Training callbacks: checkpoint cadence by wall clock, throughput and progress lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

__all__ = ["ProgressCallback", "ThroughputCallback", "WallClockCheckpointCallback", "format_eta"]


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


def format_eta(seconds: float) -> str:
    """Seconds as a short duration.

    >>> format_eta(5), format_eta(75), format_eta(3725)
    ('5s', '1m15s', '1h02m')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressCallback(TrainerCallback):
    """A progress line at the first step, then at least every ``interval_seconds``, and at
    the end: step/total, the latest logged loss, samples per second and the ETA.

    Lines go to ``stream`` (stdout by default) as plain text, so they show in a notebook's
    output, in papermill's log and, from there, on the pipeline's console and in Prefect's
    logs::

        train progress: step 120/254 (47%) | loss 0.8312 | 29.1 samples/s | 1m05s elapsed
        | ETA 1m12s  (one line)

    Parameters
    ----------
    interval_seconds : float
        Longest wall-clock time between two lines.
    stream : file-like, optional
        Where lines go; default ``sys.stdout`` at the time of writing.
    clock : callable, optional
        Monotonic time source in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        interval_seconds: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        self.interval_seconds = float(interval_seconds)
        self._stream = stream
        self._clock = clock
        self._started = self._last = clock()
        self._first_step = 0
        self.lines: list[str] = []

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._started = self._clock()
        self._first_step = state.global_step  # resumed runs start past 0
        self._last = float("-inf")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        now = self._clock()
        if now - self._last >= self.interval_seconds or state.global_step >= state.max_steps:
            self._emit(args, state, now)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if not self.lines or f"step {state.global_step}/" not in self.lines[-1]:
            self._emit(args, state, self._clock())

    def _emit(self, args: TrainingArguments, state: TrainerState, now: float) -> None:
        self._last = now
        total = max(int(state.max_steps or 0), 1)
        step = int(state.global_step)
        elapsed = max(now - self._started, 1e-9)
        done = step - self._first_step
        parts = [f"train progress: step {step}/{total} ({step / total:.0%})"]
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        if losses:
            parts.append(f"loss {losses[-1]:.4f}")
        if done > 0:
            per_step = args.train_batch_size * args.gradient_accumulation_steps
            parts.append(f"{done * per_step / elapsed:.1f} samples/s")
        parts.append(f"{format_eta(elapsed)} elapsed")
        if done > 0 and step < total:
            parts.append(f"ETA {format_eta((total - step) * elapsed / done)}")
        line = " | ".join(parts)
        self.lines.append(line)
        stream = self._stream or sys.stdout
        print(line, file=stream, flush=True)
