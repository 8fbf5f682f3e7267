"""The ``tofu`` provisioner against the emulated cloud: real Terraform applies and destroys.

Emulated at the boundary: EC2/IAM/STS/S3 are moto_server on loopback; the two capacity
errors come from the fault injector (AWS's own error XML); the instance's user-data runs
as a local process group tied to its instance id.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pipelines.provision import FatalProvisionError, TofuProvisioner, VmSpec
from pipelines.provision.prices import load_prices


def _provisioner(cloud, **vm):
    spec = VmSpec(**{"stage": "train", "instance_type": "g4dn.xlarge", "market": "spot", **vm})
    return TofuProvisioner(
        cloud.platform(),
        spec,
        prefect_api_url="http://127.0.0.1:9/api",  # nothing listens: the worker just retries
        worker_python=sys.executable,
        target_factory=lambda record, run_dir: record,
    )


def test_spot_fallback_then_teardown_from_fresh_process(cloud, tmp_path, assert_no_leaks):
    """Two capacity errors: spot in zone a, spot in zone b, then on-demand succeeds."""
    fell_back = []
    provisioner = _provisioner(cloud)
    provisioner.on_fallback = fell_back.append
    cloud.injector.arm("InsufficientInstanceCapacity", 1)
    cloud.injector.arm("UnfulfillableCapacity", 1)
    record = provisioner.provision("r-fallback", tmp_path)

    outcomes = [(a["market"], a["zone"], a["outcome"]) for a in record.attempts]
    assert outcomes == [
        ("spot", "us-east-1a", "InsufficientInstanceCapacity"),
        ("spot", "us-east-1b", "UnfulfillableCapacity"),
        ("on-demand", "us-east-1b", "ok"),
    ]
    assert record.market == "on-demand" and record.fell_back and len(fell_back) == 2
    assert [f["code"] for f in cloud.injector.injected[-2:]] == [
        "InsufficientInstanceCapacity",
        "UnfulfillableCapacity",
    ]
    ec2 = cloud.client("ec2")
    (instance,) = [
        i
        for r in ec2.describe_instances(InstanceIds=[record.instance_id])["Reservations"]
        for i in r["Instances"]
    ]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["ordinal:run-id"] == "r-fallback" and tags["ordinal:stage"] == "train"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"

    # The user-data runner boots the instance: its process group runs the rendered script.
    deadline = time.monotonic() + 15
    while record.instance_id not in cloud.instances.alive():
        assert time.monotonic() < deadline, "the instance's user-data never started"
        time.sleep(0.2)
    script = (cloud.instance_dir / record.instance_id / "user-data.sh").read_text()
    assert "--work-queue 'run-r-fallback-train'" in script

    # Teardown from recorded state, in a fresh process, twice (idempotent).
    code = (
        "import json, sys; from pathlib import Path;"
        "from pipelines.provision import teardown_from_state;"
        "print(json.dumps(teardown_from_state(Path(sys.argv[1]))))"
    )
    state = tmp_path / "provision" / "train" / "state.json"
    started = time.monotonic()
    first = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    teardown_seconds = time.monotonic() - started
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["destroyed"]
    # Killed by this teardown, or a moment earlier by the runner following EC2.
    assert record.instance_id not in cloud.instances.alive()
    vm = report["vm"]
    prices = load_prices()
    assert vm["price_per_hour"] == prices.hourly("us-east-1", "g4dn.xlarge", "on-demand")
    assert vm["cost_usd"] == pytest.approx(
        vm["billed_seconds"] * vm["price_per_hour"] / 3600, rel=1e-6
    )
    assert teardown_seconds < 60, f"teardown took {teardown_seconds:.1f} s"
    second = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(second.stdout.strip().splitlines()[-1])["already_destroyed"] is True
    print(
        f"apply {vm['apply_seconds']:.1f} s (3 attempts), destroy {vm['destroy_seconds']:.1f} s, "
        f"teardown process {teardown_seconds:.1f} s"
    )
    assert_no_leaks()


def test_fatal_error_fails_first_attempt_with_provider_message(cloud, tmp_path, assert_no_leaks):
    """An unknown image (moto validates AMIs) is not retried: one attempt, AWS's message."""
    provisioner = _provisioner(cloud, stage="export", instance_type="c6i.xlarge")
    provisioner.platform = type(provisioner.platform)(
        **{**provisioner.platform.__dict__, "ami_id": "ami-0badc0ffee0000000"}
    )
    with pytest.raises(FatalProvisionError) as caught:
        provisioner.provision("r-fatal", tmp_path)
    assert "InvalidAMIID.NotFound" in str(caught.value)
    assert "ami-0badc0ffee0000000" in str(caught.value)
    state = json.loads((tmp_path / "provision" / "export" / "state.json").read_text())
    assert len(state["vm"]["attempts"]) == 1
    report = provisioner.teardown()  # removes the security group the failed apply made
    assert report["destroyed"]
    assert provisioner.teardown()["already_destroyed"]
    assert_no_leaks()
