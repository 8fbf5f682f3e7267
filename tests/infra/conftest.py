"""One emulated cloud per test session, with the platform applied once, in the background.

Emulated at the boundary (the docstrings of the tests say which part): ``moto_server`` on
loopback is the AWS endpoint (EC2, S3, IAM, STS); a fault injector in front of its EC2
returns AWS's own capacity errors; a stand-in serves instance metadata; the user-data
runner runs each instance's user-data as a local process group. Terraform is real.

The two platform roots start with the session, each in a thread of its own, when a
collected test needs them: ``platform`` (network, roles: what the provisioner needs) and
``storage`` (buckets: its apply spends about a minute while the AWS provider polls S3
lifecycle configurations until they are stable). The other tests run meanwhile.
"""

from __future__ import annotations

import threading

import pytest

from pipelines.provision.emulation.cloud import EmulatedCloud
from pipelines.provision.leaks import find_leaks


class _Background:
    """Start the emulated cloud, then apply the two roots in threads of their own."""

    def __init__(self, root) -> None:
        self.cloud = EmulatedCloud(root)
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        started = threading.Event()

        def run(name: str, fn) -> None:
            try:
                if name != "servers":
                    started.wait(120)
                fn()
            except BaseException as exc:  # re-raised in the test that needs it
                self.errors[name] = exc
            finally:
                if name == "servers":
                    started.set()

        steps = {
            "servers": lambda: self.cloud.start(apply_platform=False),
            "platform": self.cloud.apply_platform,
            "storage": self.cloud.apply_storage,
        }
        for name, fn in steps.items():
            thread = threading.Thread(target=run, args=(name, fn), daemon=True, name=name)
            self.threads[name] = thread
            thread.start()

    def wait(self, *names: str) -> EmulatedCloud:
        for name in ("servers", *names):
            self.threads[name].join(900)
            if name in self.errors:
                raise self.errors[name]
            assert not self.threads[name].is_alive(), f"{name} did not finish in 900 s"
        return self.cloud


@pytest.fixture(scope="session", autouse=True)
def _cloud_in_background(request, tmp_path_factory):
    needed = any(
        {"cloud", "storage_cloud"} & set(item.fixturenames) for item in request.session.items
    )
    if not needed:
        yield None
        return
    background = _Background(tmp_path_factory.mktemp("cloud"))
    try:
        yield background
    finally:
        for thread in background.threads.values():
            thread.join(900)
        background.cloud.close()


@pytest.fixture(scope="session")
def cloud(_cloud_in_background):
    """The emulated cloud with network and roles applied (what the provisioner needs)."""
    return _cloud_in_background.wait("platform")


@pytest.fixture(scope="session")
def storage_cloud(_cloud_in_background):
    """The emulated cloud with the buckets applied as well."""
    return _cloud_in_background.wait("platform", "storage")


@pytest.fixture
def assert_no_leaks(cloud):
    """Every provisioning test ends with the leaks check."""

    def check():
        leaks = find_leaks(cloud.client("ec2"), cloud.instance_dir)
        assert leaks == [], f"leaked: {leaks}"

    return check
