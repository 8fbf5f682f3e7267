"""Fixtures of the pipeline tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def home() -> Path:
    """This test's private state folder (``ORDINAL_HOME``, set by the top-level conftest)."""
    return Path(os.environ["ORDINAL_HOME"])


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """The emulated cloud of the VM tests (``moto_server``, the fault injector, the metadata
    stand-in, the user-data runner) with the platform root (network, roles) applied once.

    Its test files share one xdist scope (``SHARED_SCOPES`` in ``tests/scheduling.py``); each
    test disarms the injector and clears the metadata stand-in before it starts."""
    from pipelines.provision.emulation.cloud import EmulatedCloud

    emulated = EmulatedCloud(tmp_path_factory.mktemp("cloud"))
    try:
        emulated.start(apply_platform=False)
        emulated.apply_platform()
        yield emulated
    finally:
        emulated.close()
