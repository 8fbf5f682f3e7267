"""One emulated cloud per test session, with the platform applied once, in the background.

Emulated at the boundary (the docstrings of the tests say which part): ``moto_server`` on
loopback is the AWS endpoint (EC2, S3, IAM, STS); a fault injector in front of its EC2
returns AWS's own capacity errors; a stand-in serves instance metadata; the user-data
runner runs each instance's user-data as a local process group. Terraform is real.

The platform apply spends most of its minute waiting (the AWS provider polls S3 lifecycle
configurations until they are stable), so it starts with the session, in a thread, when any
collected test needs ``cloud``; the other tests run meanwhile.
"""

from __future__ import annotations

import threading

import pytest

from pipelines.provision.emulation.cloud import EmulatedCloud
from pipelines.provision.leaks import find_leaks


@pytest.fixture(scope="session", autouse=True)
def _cloud_in_background(request, tmp_path_factory):
    needed = any("cloud" in item.fixturenames for item in request.session.items)
    if not needed:
        yield None
        return
    emulated = EmulatedCloud(tmp_path_factory.mktemp("cloud"))
    outcome: dict[str, BaseException] = {}

    def start() -> None:
        try:
            emulated.start()
        except BaseException as exc:  # re-raised in the test that needs the cloud
            outcome["error"] = exc

    thread = threading.Thread(target=start, name="emulated-cloud", daemon=True)
    thread.start()
    try:
        yield emulated, thread, outcome
    finally:
        thread.join(600)
        emulated.close()


@pytest.fixture(scope="session")
def cloud(_cloud_in_background):
    emulated, thread, outcome = _cloud_in_background
    thread.join(600)
    if "error" in outcome:
        raise outcome["error"]
    assert emulated.platform_outputs, "the platform apply did not finish in 600 s"
    return emulated


@pytest.fixture
def assert_no_leaks(cloud):
    """Every provisioning test ends with the leaks check."""

    def check():
        leaks = find_leaks(cloud.client("ec2"), cloud.instance_dir)
        assert leaks == [], f"leaked: {leaks}"

    return check
