"""The spot two-minute warning during training (``ordinal.training.spot``).

Emulated at the boundary: the instance metadata service is a loopback stand-in
(``pipelines.provision.emulation.MetadataStandIn``) with AWS's IMDSv2 contract (session
token from ``PUT /latest/api/token``, ``401`` without it, ``404`` on
``spot/instance-action`` until a notice). The callback, the Trainer, the checkpoint and the
resumed training are real.
"""

from __future__ import annotations

import time

import pytest
from transformers import TrainerCallback

from ordinal import TrainSpec, train_ordinal_model
from ordinal.exceptions import SpotInterruptedError
from ordinal.training import (
    CHECKPOINT_UPLOAD_ENV,
    OrdinalRegressionTrainer,
    SpotInterruptionCallback,
    SpotSpec,
    is_complete_checkpoint,
    read_interruptions,
)
from pipelines.provision.emulation import MetadataStandIn
from tests.helpers.keyword_data import keyword_records


@pytest.fixture
def imds():
    with MetadataStandIn("i-0spot", "spot") as stand_in:
        yield stand_in


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_notice_is_404_and_the_token_is_reused_until_it_expires(imds):
    clock = Clock()
    spec = SpotSpec(metadata_url=imds.instance_url("i-1"), token_ttl_seconds=60)
    watch = SpotInterruptionCallback(spec, clock=clock)
    assert watch.poll_once() is None and watch.poll_once() is None  # 404: no notice
    assert len(imds._tokens) == 1  # one session token for both reads
    clock.now = 60.0  # past 90% of the TTL: a new token before the next read
    assert watch.poll_once() is None
    assert len(imds._tokens) == 2
    assert imds.polls == 3 and watch.notice is None


def test_a_revoked_token_gets_a_new_one_then_the_notice(imds):
    watch = SpotInterruptionCallback(SpotSpec(metadata_url=imds.instance_url("i-1")))
    assert watch.poll_once() is None
    imds._tokens.clear()  # the service forgot the session (401 on the next read)
    notice = imds.interrupt(instance_id="i-1")
    assert watch.poll_once() == notice and watch.notice == notice
    # A notice for one instance is not another's.
    other = SpotInterruptionCallback(SpotSpec(metadata_url=imds.instance_url("i-2")))
    assert other.poll_once() is None


def test_the_watch_is_off_unless_configured(monkeypatch):
    monkeypatch.delenv("ORDINAL_METADATA_URL", raising=False)
    monkeypatch.delenv("ORDINAL_SPOT_INTERRUPTION", raising=False)
    assert SpotInterruptionCallback.from_env() is None
    monkeypatch.setenv("ORDINAL_SPOT_INTERRUPTION", "1")
    assert SpotInterruptionCallback.from_env().spec.metadata_url == "http://169.254.169.254"


def _spec(tmp_path, **kw):
    values = {
        "output_dir": tmp_path,
        "max_steps": 40,
        "batch_size": 8,
        "save_steps": 10_000,
        "checkpoint_interval_seconds": None,
        "eval_each_epoch": False,
    }
    return TrainSpec.quick(**{**values, **kw})


def test_a_notice_saves_a_checkpoint_and_raises_then_training_resumes(imds, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDINAL_METADATA_URL", imds.instance_url("i-first"))
    monkeypatch.setenv("ORDINAL_SPOT_POLL_SECONDS", "0.05")
    monkeypatch.delenv(CHECKPOINT_UPLOAD_ENV, raising=False)  # the shared-folder case
    records = keyword_records(96, seed=3)
    imds.interrupt_after(polls=3)
    started = time.monotonic()
    with pytest.raises(SpotInterruptedError) as caught:
        train_ordinal_model(_spec(tmp_path), records)
    error = caught.value
    assert 0 < error.step < 40
    assert error.seconds_to_save < SpotSpec().save_deadline_seconds
    assert time.monotonic() - started < 120
    checkpoint = tmp_path / "checkpoints" / f"checkpoint-{error.step}"
    assert error.checkpoint == str(checkpoint) and is_complete_checkpoint(checkpoint)
    assert error.notice == imds.issued[0][1] and imds.issued[0][0] == "i-first"
    (record,) = read_interruptions(tmp_path / "checkpoints")
    assert record["step"] == error.step and record["notice"]["action"] == "terminate"
    assert "upload" not in record  # no store configured: nothing claims it left the VM

    # A fresh VM (another instance: no notice) resumes from that checkpoint.
    monkeypatch.setenv("ORDINAL_METADATA_URL", imds.instance_url("i-second"))
    result = train_ordinal_model(_spec(tmp_path), records)
    assert result.resumed_from == checkpoint and result.global_step == 40


class SlowSteps(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.05)


def test_without_a_notice_training_runs_to_the_end(imds, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDINAL_METADATA_URL", imds.instance_url("i-calm"))
    monkeypatch.setenv("ORDINAL_SPOT_POLL_SECONDS", "0.05")
    result = train_ordinal_model(
        _spec(tmp_path, max_steps=12), keyword_records(48, seed=4), callbacks=[SlowSteps()]
    )
    assert result.global_step == 12
    assert imds._polls["i-calm"] >= 2  # it watched (404 every time) and let training finish
    assert read_interruptions(tmp_path / "checkpoints") == []
    assert not list((tmp_path / "checkpoints").glob("spot-interruption-*"))


def test_the_trainer_adds_the_watch_only_when_asked(monkeypatch, tmp_path):
    from ordinal.models import build_ordinal_model
    from ordinal.presets import resolve_model
    from ordinal.training import training_arguments

    monkeypatch.delenv("ORDINAL_METADATA_URL", raising=False)
    monkeypatch.delenv("ORDINAL_SPOT_INTERRUPTION", raising=False)
    spec = _spec(tmp_path)
    model = build_ordinal_model(resolve_model(spec.model).source, spec.num_classes, spec.head)
    args = training_arguments(spec, tmp_path, has_eval=False)
    assert OrdinalRegressionTrainer(model=model, args=args).spot_watch is None
    explicit = OrdinalRegressionTrainer(
        model=model, args=args, spot_interruption=SpotSpec(metadata_url="http://127.0.0.1:9")
    )
    assert explicit.spot_watch in explicit.callback_handler.callbacks
