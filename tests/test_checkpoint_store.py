"""Checkpoints that leave the VM (``ordinal.training.checkpoint_store``).

Emulated at the boundary: S3 is a real ``moto_server`` on loopback (``tests/helpers/moto.py``)
and the instance metadata service is the loopback stand-in
(``pipelines.provision.emulation.MetadataStandIn``). The uploads, downloads, checksums, the
Trainer, the checkpoint and the resumed training are the real ones. A VM's lost disk is
played by deleting the local checkpoints folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from ordinal import TrainSpec, train_ordinal_model
from ordinal.artifacts import ChecksumMismatchError, LocalStorage, S3Storage, sha256_tree
from ordinal.exceptions import CheckpointError, SpotInterruptedError
from ordinal.training import (
    CHECKPOINT_UPLOAD_ENV,
    SpotInterruptionCallback,
    SpotSpec,
    is_complete_checkpoint,
    read_interruptions,
    restore_latest_checkpoint,
    upload_checkpoint,
)
from ordinal.training.checkpoint_store import remote_checkpoint_steps
from ordinal.training.spot import StoreUpload
from pipelines.provision.emulation import MetadataStandIn
from tests.helpers.keyword_data import keyword_records
from tests.helpers.moto import moto_server


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def aws(moto_url, monkeypatch):
    """The moto server as the S3 endpoint of ``open_storage``, with its fake keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_url)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return moto_url


def _bucket(endpoint: str, prefix: str = "models/checkpoints/run-1") -> S3Storage:
    return S3Storage(
        f"ckpt-{uuid.uuid4().hex[:12]}", prefix, endpoint_url=endpoint, create_bucket=True
    )


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return _bucket(request.getfixturevalue("aws"))


def _checkpoint(root: Path, step: int, seed: int = 0) -> Path:
    """A checkpoint folder as the Trainer lays it out (random bytes for the tensors)."""
    gen = torch.Generator().manual_seed(step * 100 + seed)
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(torch.rand(512, generator=gen).numpy().tobytes())
    (path / "optimizer.pt").write_bytes(torch.rand(1024, generator=gen).numpy().tobytes())
    (path / "rng_state.pth").write_bytes(b"rng %d" % step)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (root / "train_spec.json").write_text('{"learning_rate": 0.001}\n')
    return path


def test_upload_then_restore_gives_the_same_bytes(store, tmp_path):
    vm1 = tmp_path / "vm1" / "checkpoints"
    checkpoint = _checkpoint(vm1, 12)
    report = upload_checkpoint(checkpoint, store)
    # The files first, files.json after them, the completion marker last.
    assert report["keys"][-2:] == ["checkpoint-12/files.json", "complete/checkpoint-12.json"]
    assert "train_spec.json" in report["keys"] and report["files"] == 4
    assert report["bytes"] > 6 * 1024 and report["step"] == 12
    manifest = json.loads(store.get_bytes("checkpoint-12/files.json"))
    assert manifest["step"] == 12
    assert {f["path"] for f in manifest["files"]} == {p.name for p in checkpoint.iterdir()}

    vm2 = tmp_path / "vm2" / "checkpoints"  # a fresh disk
    (vm2 / "checkpoint-12.partial-dead").mkdir(parents=True)  # left by a killed restore
    restored = restore_latest_checkpoint(store, vm2)
    assert restored == vm2 / "checkpoint-12" and is_complete_checkpoint(restored)
    assert sha256_tree(restored) == sha256_tree(checkpoint)
    assert (vm2 / "train_spec.json").read_bytes() == (vm1 / "train_spec.json").read_bytes()
    assert [p.name for p in vm2.iterdir() if ".partial-" in p.name] == []


def test_a_tampered_object_is_refused_naming_the_file(aws, tmp_path):
    store = _bucket(aws)
    upload_checkpoint(_checkpoint(tmp_path / "vm1", 5), store)
    store.put_bytes(b"not the weights", "checkpoint-5/optimizer.pt")
    target = tmp_path / "vm2"
    with pytest.raises(ChecksumMismatchError, match=r"checkpoint-5/optimizer\.pt") as caught:
        restore_latest_checkpoint(store, target)
    assert "s3://" in str(caught.value) and caught.value.actual != caught.value.expected
    assert list(target.iterdir()) == []  # no partial folder, no checkpoint, no spec left


def test_a_tampered_manifest_is_refused(tmp_path):
    store = LocalStorage(tmp_path / "store")
    upload_checkpoint(_checkpoint(tmp_path / "vm1", 5), store)
    manifest = json.loads(store.get_bytes("checkpoint-5/files.json"))
    manifest["files"][0]["sha256"] = "0" * 64
    store.put_bytes(json.dumps(manifest).encode(), "checkpoint-5/files.json")
    with pytest.raises(ChecksumMismatchError, match=r"checkpoint-5/files\.json"):
        restore_latest_checkpoint(store, tmp_path / "vm2")


def test_a_half_uploaded_checkpoint_is_ignored(aws, tmp_path):
    store = _bucket(aws)
    vm1 = tmp_path / "vm1"
    upload_checkpoint(_checkpoint(vm1, 10), store)
    # Step 20: cut before files.json (its files and marker only: as if the marker raced).
    upload_checkpoint(_checkpoint(vm1, 20), store)
    assert store.delete("checkpoint-20/files.json")
    # Step 30: cut in the middle of its files (no files.json, no marker).
    thirty = _checkpoint(vm1, 30)
    store.put_file(thirty / "model.safetensors", "checkpoint-30/model.safetensors")
    assert remote_checkpoint_steps(store) == [10]
    restored = restore_latest_checkpoint(store, tmp_path / "vm2")
    assert restored is not None and restored.name == "checkpoint-10"


def test_nothing_is_restored_when_the_local_checkpoint_is_as_new(tmp_path):
    store = LocalStorage(tmp_path / "store")
    assert restore_latest_checkpoint(store, tmp_path / "empty") is None  # nothing uploaded
    local = tmp_path / "vm" / "checkpoints"
    upload_checkpoint(_checkpoint(local, 20), store)
    before = sha256_tree(local)
    assert restore_latest_checkpoint(store, local) is None  # same step
    shutil.rmtree(local / "checkpoint-20")
    _checkpoint(local, 25)  # newer than the store
    assert restore_latest_checkpoint(store, local) is None
    assert {p.name for p in local.iterdir()} == {"checkpoint-25", "train_spec.json"}
    # An older local one is replaced by the newer upload (and kept beside it).
    shutil.rmtree(local / "checkpoint-25")
    _checkpoint(local, 8)
    assert restore_latest_checkpoint(store, local) == local / "checkpoint-20"
    assert sha256_tree(local) != before and (local / "checkpoint-8").is_dir()


def test_from_env_uploads_only_when_the_url_is_set(tmp_path):
    env = {"ORDINAL_METADATA_URL": "http://127.0.0.1:9"}
    assert SpotInterruptionCallback.from_env(env).upload is None
    url = "s3://key:secret@bucket/models/checkpoints/r1?x=1"
    watch = SpotInterruptionCallback.from_env({**env, CHECKPOINT_UPLOAD_ENV: url})
    assert isinstance(watch.upload, StoreUpload)
    assert watch.upload.url == "s3://bucket/models/checkpoints/r1"
    assert "secret" not in repr(watch.upload)


def _saved_notice(watch: SpotInterruptionCallback, out: Path, step: int):
    _checkpoint(out, step)
    watch.notice, watch.noticed_at = {"action": "terminate", "time": "t"}, time.monotonic()
    args = SimpleNamespace(output_dir=str(out))
    state = SimpleNamespace(global_step=step, max_steps=50)
    return args, state


def test_a_failed_upload_is_a_clear_error_not_an_interruption(aws, tmp_path):
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/models/checkpoints/r1"
    watch = SpotInterruptionCallback.from_env(
        {"ORDINAL_METADATA_URL": "http://127.0.0.1:9", CHECKPOINT_UPLOAD_ENV: missing}
    )
    out = tmp_path / "checkpoints"
    args, state = _saved_notice(watch, out, 7)
    with pytest.raises(CheckpointError, match="could not be uploaded") as caught:
        watch.on_save(args, state, None)
    assert not isinstance(caught.value, SpotInterruptedError)
    assert "NoSuchBucket" in str(caught.value) and "checkpoint-7" in str(caught.value)
    (record,) = read_interruptions(out)
    assert "NoSuchBucket" in record["upload"]["error"]


def test_the_callback_uploads_before_it_raises_and_records_it(aws, tmp_path):
    store = _bucket(aws, "models/checkpoints/r2")
    watch = SpotInterruptionCallback.from_env(
        {"ORDINAL_METADATA_URL": "http://127.0.0.1:9", CHECKPOINT_UPLOAD_ENV: store.url}
    )
    out = tmp_path / "checkpoints"
    args, state = _saved_notice(watch, out, 9)
    with pytest.raises(SpotInterruptedError) as caught:
        watch.on_save(args, state, None)
    (record,) = read_interruptions(out)
    assert record["upload"]["url"] == store.url and record["upload"]["files"] == 4
    assert "complete/checkpoint-9.json" in record["upload"]["keys"]
    assert record["seconds_to_save"] >= record["upload"]["seconds"]
    assert caught.value.seconds_to_save == pytest.approx(record["seconds_to_save"], abs=1e-3)
    # The record itself followed, naming the upload.
    assert (
        json.loads(store.get_bytes("interruptions/spot-interruption-9.json"))["upload"]["bytes"] > 0
    )


class _SlowSteps(TrainerCallback):
    """Each step takes at least 0.25 s, so the notice lands mid-training however fast the
    machine is (16 steps of the tiny model can take half a second; sleeping changes no
    weight)."""

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.25)


def _spec(output_dir: Path) -> TrainSpec:
    return TrainSpec.quick(
        output_dir=output_dir,
        max_steps=16,
        batch_size=8,
        save_steps=10_000,
        checkpoint_interval_seconds=None,
        eval_each_epoch=False,
        seed=11,
    )


def _weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.model_dir / "model.safetensors"))


def test_a_fresh_vm_resumes_from_the_uploaded_checkpoint(aws, tmp_path, monkeypatch, caplog):
    """Interrupt, upload to S3, lose the disk, restore and finish: as if never interrupted."""
    caplog.set_level(logging.INFO, logger="ordinal.training.checkpoint_store")
    records, evals = keyword_records(96, seed=3), keyword_records(32, seed=5)
    for var in ("ORDINAL_METADATA_URL", "ORDINAL_SPOT_INTERRUPTION", CHECKPOINT_UPLOAD_ENV):
        monkeypatch.delenv(var, raising=False)
    straight = train_ordinal_model(_spec(tmp_path / "straight"), records, evals)

    store = _bucket(aws, "models/checkpoints/run-e2e")
    run = tmp_path / "interrupted"
    monkeypatch.setenv(CHECKPOINT_UPLOAD_ENV, store.url)
    monkeypatch.setenv("ORDINAL_SPOT_POLL_SECONDS", "0.05")
    with MetadataStandIn("i-0spot", "spot") as imds:
        monkeypatch.setenv("ORDINAL_METADATA_URL", imds.instance_url("i-first"))
        imds.interrupt_after(polls=3)  # 0.1 s into training: a step or two in
        with pytest.raises(SpotInterruptedError) as caught:
            train_ordinal_model(_spec(run), records, evals, callbacks=[_SlowSteps()])
        step = caught.value.step
        assert 0 < step < 16
        (record,) = read_interruptions(run / "checkpoints")
        upload = record["upload"]
        assert upload["step"] == step and upload["url"] == store.url
        assert record["seconds_to_save"] < SpotSpec().save_deadline_seconds
        print(
            f"\nupload: {upload['files']} files, {upload['bytes']} bytes, {upload['seconds']} s;"
            f" notice to uploaded {record['seconds_to_save']} s"
        )

        shutil.rmtree(run / "checkpoints")  # the VM's disk went with the VM
        monkeypatch.setenv("ORDINAL_METADATA_URL", imds.instance_url("i-second"))
        started = time.perf_counter()
        resumed = train_ordinal_model(_spec(run), records, evals)
        print(f"restore + resumed training: {time.perf_counter() - started:.2f} s")
    (restored,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restored")]
    assert f"checkpoint-{step} from {store.url}" in restored
    print(restored)
    assert resumed.resumed_from == run / "checkpoints" / f"checkpoint-{step}"
    assert resumed.global_step == straight.global_step == 16
    # The interruption record came back with the checkpoint.
    assert [r["step"] for r in read_interruptions(run / "checkpoints")] == [step]
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"largest weight difference to the uninterrupted run: {worst:.3g}")
    assert worst <= SpotSpec().resume_metrics_atol
    assert straight.metrics.keys() == resumed.metrics.keys() and "eval_mae" in straight.metrics
    for key in ("eval_loss", "eval_mae", "eval_qwk"):
        assert resumed.metrics[key] == pytest.approx(
            straight.metrics[key], abs=SpotSpec().resume_metrics_atol
        ), key
