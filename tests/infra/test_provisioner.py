"""The ``tofu`` provisioner against the emulated cloud: real Terraform applies and destroys.

Emulated at the boundary: EC2/IAM/STS/S3 are moto_server on loopback; the two capacity
errors come from the fault injector (AWS's own error XML); each instance's user-data runs
as a local process group tied to its instance id.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.provision import (
    FatalProvisionError,
    Phase,
    Platform,
    TofuProvisioner,
    VmSpec,
    assert_sequential,
    run_vm_phases,
)
from pipelines.provision.prices import load_prices

pytestmark = pytest.mark.slow  # Terraform applies against the emulated cloud: minutes

OPTIONS = {
    "prefect_api_url": "http://127.0.0.1:9/api",  # nothing listens: the worker just retries
    "worker_python": sys.executable,
    "target_factory": lambda record, run_dir: record,  # the flow's target is the lead's part
}
TEARDOWN = (
    "import json, sys; from pathlib import Path;"
    "from pipelines.provision import teardown_from_state;"
    "print(json.dumps(teardown_from_state(Path(sys.argv[1]))))"
)

# A resumed run whose owner died fences it: the fence hook the pipeline registers
# (pipelines.provision.vms, imported with the flow as `ordinal run` does) destroys its VMs.
FENCE = (
    "import json, sys; from pathlib import Path; import pipelines.flow;"
    "from pipelines.ownership import OwnerRecord, fence_owner;"
    "dead = OwnerRecord('elsewhere', 2**22 + 7, 0.0, 'token-of-a-dead-owner', 'earlier', 0.0);"
    "print(json.dumps(fence_owner(Path(sys.argv[1]), dead), default=str))"
)

#: The roadmap: teardown under 10 minutes.
TEARDOWN_BOUND_SECONDS = 600


def _fence_in_fresh_process(run_dir: Path) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", FENCE, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), time.monotonic() - started


def _teardown_in_fresh_process(state: Path) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", TEARDOWN, str(state)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), time.monotonic() - started


def test_gpu_then_cpu_vm_with_spot_fallback(cloud, tmp_path, assert_no_leaks):
    """A wrong image fails at the first attempt with the provider's message; fixed, the GPU
    VM meets two capacity errors (spot zone a, spot zone b, then on-demand), is destroyed
    from a fresh process before the CPU VM's apply; then the CPU VM; both user-data booted.

    The fatal attempt and the GPU VM share a state key (the operator fixes the image and
    runs again), so the security group the failed apply made is adopted, not leaked.
    """
    fell_back, booted, running, teardowns = [], {}, {}, []
    ec2 = cloud.client("ec2")

    def run_phase(record, phase):
        deadline = time.monotonic() + 15
        while record.instance_id not in cloud.instances.alive():
            assert time.monotonic() < deadline, "the instance's user-data never started"
            time.sleep(0.2)
        folder = cloud.instance_dir / record.instance_id
        booted[phase.vm.stage] = (folder / "user-data.sh").read_text()
        described = ec2.describe_instances(InstanceIds=[record.instance_id])
        running[phase.vm.stage] = described["Reservations"][0]["Instances"][0]

    def teardown(provisioner: TofuProvisioner) -> dict:
        if provisioner.vm.stage == "export":  # the CPU VM: left by a dead owner, fenced
            fenced, seconds = _fence_in_fresh_process(tmp_path)
            teardowns.append(seconds)
            vms = fenced["_fence_vms"]["vms"]
            assert vms["export"]["destroyed"] is True, fenced
            assert vms["train"]["already_destroyed"] is True, fenced
            report, _ = _teardown_in_fresh_process(provisioner.state_path)
            assert report["already_destroyed"] is True
            return report
        report, seconds = _teardown_in_fresh_process(provisioner.state_path)
        teardowns.append(seconds)
        # Idempotent: a second call changes nothing.
        again, _ = _teardown_in_fresh_process(provisioner.state_path)
        assert again["already_destroyed"] is True
        return report

    platform = cloud.platform()
    phases = [
        Phase(VmSpec(stage="train", instance_type="g4dn.xlarge", market="spot"), ("train",)),
        Phase(VmSpec(stage="export", instance_type="c6i.xlarge", profile="cpu"), ("export",)),
    ]
    # An unknown image (moto validates AMIs) is not retried: one attempt, the provider's
    # message (it looks the image up before RunInstances), the VM's parameters named.
    wrong = type(platform)(**{**platform.__dict__, "ami_id": "ami-0badc0ffee0000000"})
    with pytest.raises(FatalProvisionError) as caught:
        TofuProvisioner(wrong, phases[0].vm, **OPTIONS).provision("r-phases", tmp_path)
    assert "ami-0badc0ffee0000000" in str(caught.value) and "g4dn.xlarge" in str(caught.value)
    state = json.loads((tmp_path / "provision" / "train" / "state.json").read_text())
    assert (
        len(state["vm"]["attempts"]) == 1 and state["vm"]["attempts"][0]["error_class"] == "fatal"
    )

    cloud.injector.arm("InsufficientInstanceCapacity", 1)
    cloud.injector.arm("UnfulfillableCapacity", 1)
    gpu, cpu = run_vm_phases(
        platform,
        phases,
        "r-phases",
        tmp_path,
        run_phase,
        teardown=teardown,
        on_fallback=fell_back.append,
        **OPTIONS,
    )
    print(
        f"\nGPU: apply {gpu.apply_seconds:.1f} s (3 attempts), destroy {gpu.destroy_seconds:.1f} s;"
        f" CPU: apply {cpu.apply_seconds:.1f} s, destroy {cpu.destroy_seconds:.1f} s;"
        f" teardown processes {', '.join(f'{s:.1f}' for s in teardowns)} s"
    )

    outcomes = [(a["market"], a["zone"], a["outcome"]) for a in gpu.attempts]
    assert outcomes == [
        ("spot", "us-east-1a", "InsufficientInstanceCapacity"),
        ("spot", "us-east-1b", "UnfulfillableCapacity"),
        ("on-demand", "us-east-1b", "ok"),
    ]
    assert gpu.market == "on-demand" and gpu.fell_back and len(fell_back) == 2
    assert [f["code"] for f in cloud.injector.injected[-2:]] == [
        "InsufficientInstanceCapacity",
        "UnfulfillableCapacity",
    ]
    assert cpu.market == "spot" and not cpu.fell_back and cpu.zone == "us-east-1a"
    assert_sequential([gpu, cpu])  # the GPU VM was gone before the CPU VM's apply began

    for record in (gpu, cpu):
        instance = running[record.stage]  # as EC2 described it while it ran
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["ordinal:run-id"] == "r-phases" and tags["ordinal:stage"] == record.stage
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["InstanceType"] == record.instance_type
    assert running["train"]["IamInstanceProfile"]["Arn"].endswith("/ordinal-train")
    assert running["export"]["IamInstanceProfile"]["Arn"].endswith("/ordinal-cpu")
    described = ec2.describe_instances(InstanceIds=[gpu.instance_id, cpu.instance_id])
    states = {i["State"]["Name"] for r in described["Reservations"] for i in r["Instances"]}
    assert states == {"terminated"}
    assert "--work-queue 'run-r-phases-train'" in booted["train"]
    assert "--work-queue 'run-r-phases-export'" in booted["export"]

    prices = load_prices()
    for record in (gpu, cpu):
        assert record.price_per_hour == prices.hourly(
            "us-east-1", record.instance_type, record.market
        )
        assert record.cost_usd == pytest.approx(
            record.billed_seconds * record.price_per_hour / 3600, abs=1e-6
        )
        assert record.billed_seconds >= 60
    # The roadmap's bound is 10 minutes; the goal here (under 1 minute) is measured in
    # docs/infrastructure.md, not asserted: on a loaded 2-core machine a destroy takes 30-165 s.
    assert max(teardowns) < TEARDOWN_BOUND_SECONDS, f"teardown took {teardowns}"
    assert_no_leaks()


CRASH_TEARDOWN = (
    "import json, sys; from pathlib import Path; from pipelines.provision.vms import teardown_run;"
    "print(json.dumps(teardown_run(Path(sys.argv[1])), default=str))"
)


def test_teardown_run_stops_what_a_crashed_embedded_run_left(tmp_path):
    """A run that started its own emulated cloud and was killed leaves moto_server (its own
    session) and instance process groups behind; the crash hook's ``teardown_run``, in a
    fresh process, stops both from the run folder alone, and a second call finds nothing.

    Emulated at the boundary: a ``sleep`` in its own session stands in for the orphaned
    moto_server; the instance group is a real user-data runner group."""
    import psutil

    from pipelines.provision.emulation.userdata import UserDataRunner
    from pipelines.provision.vms import write_platform

    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    instances = tmp_path / "cloud" / "instances"
    UserDataRunner(instances).start("i-0crashed", "#!/bin/bash\nsleep 600\n")
    platform = Platform(
        env="emulated", region="us-east-1", vpc_id="vpc-1", subnets=[("us-east-1a", "subnet-1")],
        instance_profiles={"train": "ordinal-train"}, ami_id="ami-1", state_bucket="b",
        endpoint="http://127.0.0.1:9", instance_dir=str(instances),
    )  # fmt: skip
    created = psutil.Process(orphan.pid).create_time()
    write_platform(
        platform,
        tmp_path / "provision" / "platform.json",
        embedded={"pid": orphan.pid, "created": created},
    )
    try:
        first = subprocess.run(
            [sys.executable, "-c", CRASH_TEARDOWN, str(tmp_path)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        report = json.loads(first.stdout.strip().splitlines()[-1])
        assert report["embedded_cloud_stopped"] is True
        assert report["instance_processes_killed"] == ["i-0crashed"]
        assert orphan.wait(10) == -9
        assert UserDataRunner(instances).alive() == []
        again = subprocess.run(
            [sys.executable, "-c", CRASH_TEARDOWN, str(tmp_path)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        second = json.loads(again.stdout.strip().splitlines()[-1])
        assert "embedded_cloud_stopped" not in second and "instance_processes_killed" not in second
    finally:
        if orphan.poll() is None:
            orphan.kill()
        UserDataRunner(instances).terminate("i-0crashed")
