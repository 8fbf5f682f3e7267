"""Checkpoint cadence by wall clock, complete-checkpoint discovery, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ordinal import TrainSpec, train_ordinal_model
from ordinal.training import (
    ProgressCallback,
    ThroughputCallback,
    WallClockCheckpointCallback,
    latest_checkpoint,
)
from tests.helpers.keyword_data import keyword_records

CHILD = Path(__file__).parent / "helpers" / "train_child.py"
# Resumed and uninterrupted runs replay the same batches with the same RNG states; on one
# CPU thread layout they agree to float32 rounding. The bound leaves room for that only.
RESUME_ATOL = 1e-4


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wall_clock_callback_saves_after_interval():
    clock = FakeClock()
    callback = WallClockCheckpointCallback(interval_seconds=300, clock=clock)
    args, state = TrainingArguments(output_dir="unused", report_to=[]), TrainerState()
    callback.on_train_begin(args, state, TrainerControl())
    clock.now = 299.0
    assert not callback.on_step_end(args, state, TrainerControl()).should_save
    clock.now = 300.0
    assert callback.on_step_end(args, state, TrainerControl()).should_save
    callback.on_save(args, state, TrainerControl())  # any save, step- or time-based, resets
    clock.now = 450.0
    assert not callback.on_step_end(args, state, TrainerControl()).should_save
    with pytest.raises(ValueError, match="interval_seconds must be > 0"):
        WallClockCheckpointCallback(0)


def test_progress_lines_come_at_least_every_interval_with_loss_rate_and_eta():
    import io

    clock, out = FakeClock(), io.StringIO()
    progress = ProgressCallback(interval_seconds=30, stream=out, clock=clock)
    args = TrainingArguments(output_dir="unused", report_to=[], per_device_train_batch_size=8)
    state = TrainerState(max_steps=100)
    progress.on_train_begin(args, state, TrainerControl())
    for step in range(1, 101):
        clock.now = step * 1.0  # one step a second: 8 samples/s
        state.global_step = step
        if step % 10 == 0:
            state.log_history.append({"loss": 1.0 / step, "step": step})
        progress.on_step_end(args, state, TrainerControl())
    progress.on_train_end(args, state, TrainerControl())
    lines = out.getvalue().splitlines()
    # The first step, then every 30 s, then the last step (once).
    assert [line.split()[3] for line in lines] == ["1/100", "31/100", "61/100", "91/100", "100/100"]
    assert lines[1] == (
        "train progress: step 31/100 (31%) | loss 0.0333 | 8.0 samples/s | 31s elapsed | ETA 1m09s"
    )
    assert "ETA" not in lines[-1] and "loss 0.0100" in lines[-1]
    with pytest.raises(ValueError, match="interval_seconds must be > 0"):
        ProgressCallback(0)


def test_throughput_callback_rate_per_window():
    clock = FakeClock()
    meter = ThroughputCallback(clock=clock)
    assert meter.rate() is None
    meter.record(32)
    clock.now = 2.0
    assert meter.rate() == pytest.approx(16.0)
    clock.now = 3.0
    assert meter.rate() is None  # nothing recorded in this window


def _fake_checkpoint(
    root: Path, step: int, *, state: str | None = "{}", weights: bool = True
) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "optimizer.pt").write_bytes(b"x")
    if weights:
        (path / "model.safetensors").write_bytes(b"x")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    _fake_checkpoint(tmp_path, 5)
    good = _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 15, state=None)  # killed before the state was written
    _fake_checkpoint(tmp_path, 20, state='{"global_st')  # killed while writing it
    _fake_checkpoint(tmp_path, 25, weights=False)
    (tmp_path / "checkpoint-notanumber").mkdir()
    assert latest_checkpoint(tmp_path) == good


class SlowSteps(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.3)


def test_wall_clock_cadence_saves_without_step_saves(tmp_path):
    records = keyword_records(64, seed=2)
    spec = TrainSpec.quick(
        output_dir=tmp_path,
        max_steps=6,
        batch_size=8,
        save_steps=10_000,
        save_total_limit=10,
        checkpoint_interval_seconds=0.5,
        eval_each_epoch=False,
    )
    result = train_ordinal_model(spec, records, callbacks=[SlowSteps()])
    saved = sorted(p.name for p in result.checkpoint_dir.glob("checkpoint-*"))
    assert len(saved) >= 2, saved  # save_steps alone would have written only the final one
    assert result.metrics == {}


def _child(output_dir: Path, markers: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(output_dir), str(markers), mode],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
    killed_dir, markers = tmp_path / "killed", tmp_path / "markers"
    proc = _child(killed_dir, markers, "slow")
    deadline = time.monotonic() + 240
    while not (markers / "saved-8").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the child never saved its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)  # now inside the slowed steps after checkpoint-8
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "result.json").exists()
    assert latest_checkpoint(killed_dir / "checkpoints").name == "checkpoint-8"

    _finish(_child(killed_dir, markers, "plain"))
    straight_dir = tmp_path / "straight"
    _finish(_child(straight_dir, tmp_path / "markers2", "plain"))

    resumed = json.loads((killed_dir / "result.json").read_text())
    straight = json.loads((straight_dir / "result.json").read_text())
    assert resumed["resumed_from"].endswith("checkpoint-8")
    assert straight["resumed_from"] is None
    assert resumed["global_step"] == straight["global_step"] == 24
    for key in ("eval_loss", "eval_mae", "eval_qwk", "eval_rps"):
        assert resumed["metrics"][key] == pytest.approx(
            straight["metrics"][key], abs=RESUME_ATOL
        ), key
    assert resumed["cutpoints"] == pytest.approx(straight["cutpoints"], abs=RESUME_ATOL)
