"""Chaos beyond kill -9: an S3 connection cut mid-upload and a full disk on the run folder.

Each fault is real and injected at a seeded point of a real ``ordinal run`` (stand-in step
notebooks, in-process compute: these faults hit the data path, not the processes), then the
run is resumed under the same id. The assertions are the suite's (``check_resumed``: the
resumed run completed with the artefacts of an uninterrupted run, at most one checkpoint
interval recomputed, one execution at a time, nothing left over, one MLflow parent with each
step nested once) plus the fault's own: nothing half-written by the failed attempt.

* S3: the run's storage root is ``s3://`` on a real ``moto_server`` (S3 emulated at the
  boundary), reached through a proxy that drops every connection a seeded number of bytes
  into the step's upload and refuses new ones until the test ends the outage.
* Disk: the run folder is a real ``tmpfs`` (mounted by the test, which needs
  CAP_SYS_ADMIN), filled up by another writer at a seeded unit of the step; the space is
  freed before the resume.
"""

from __future__ import annotations

import zlib

import pytest

from tests.chaos.faults import (
    expected_payloads,
    inject_full_disk,
    inject_s3_cut,
    leases_left,
    stored_payloads,
)
from tests.chaos.harness import STEP_NAMES, check_resumed

SAMPLE_S3, SAMPLE_DISK = "export", "train"


def _seed(fault: str, step: str) -> int:
    return zlib.crc32(f"{fault}:{step}".encode())


def _s3_cut(step, home, notebooks, reference, moto_url, tmp_path):
    log = tmp_path / "run.log"
    result = inject_s3_cut(step, _seed("s3-cut", step), home, notebooks, log, moto_url)
    text = log.read_text()
    assert result.first_rc != 0, "the cut upload did not fail the step"
    # A clear error naming the upload, nothing published or stored half-way.
    assert "S3 put failed" in text and f"{step}/payload.bin" in text, text[-3000:]
    assert not result.detail["published_after_cut"]
    assert not result.detail["object_after_cut"]
    check_resumed(result, home, reference, step)
    run_dir = home / "runs" / result.run_id
    assert stored_payloads(moto_url, result.run_id) == expected_payloads(run_dir)
    assert leases_left(moto_url, result.run_id) == []


def _full_disk(step, home, notebooks, reference, tmp_path):
    log = tmp_path / "run.log"
    result = inject_full_disk(step, _seed("disk-full", step), home, notebooks, log)
    text = log.read_text()
    assert result.first_rc != 0, "the full disk did not fail the step"
    # The step's error names the step and its folder (the kernel's OSError has no path).
    folder = home / "runs" / result.run_id / step
    assert f"step {step!r} failed" in text and "No space left on device" in text, text[-3000:]
    assert str(folder) in text, text[-3000:]
    assert "is full." in text and f"ordinal run --run-id {result.run_id}" in text, text[-3000:]
    after = result.detail["after_fault"]
    assert after["broken"] == [], after  # no manifest without its files
    assert step not in after["published"], after
    # A full disk is not retried (the retry would meet the same full disk), so the fault and
    # its resume lose at most one checkpoint interval in total, as every other fault.
    check_resumed(result, home, reference, step)


@pytest.mark.slow
@pytest.mark.chaos_full
def test_an_s3_connection_cut_mid_upload_then_resume(
    home, notebooks, reference, moto_url, tmp_path
):
    _s3_cut(SAMPLE_S3, home, notebooks, reference, moto_url, tmp_path)


@pytest.mark.slow
@pytest.mark.chaos_full
def test_a_full_disk_on_the_run_folder_then_resume(home, notebooks, reference, tmp_path):
    _full_disk(SAMPLE_DISK, home, notebooks, reference, tmp_path)


@pytest.mark.slow
@pytest.mark.chaos_full
@pytest.mark.parametrize("step", [s for s in STEP_NAMES if s != SAMPLE_S3])
def test_s3_cut_in_every_step(step, home, notebooks, reference, moto_url, tmp_path):
    _s3_cut(step, home, notebooks, reference, moto_url, tmp_path)


@pytest.mark.slow
@pytest.mark.chaos_full
@pytest.mark.parametrize("step", [s for s in STEP_NAMES if s != SAMPLE_DISK])
def test_full_disk_in_every_step(step, home, notebooks, reference, tmp_path):
    _full_disk(step, home, notebooks, reference, tmp_path)
