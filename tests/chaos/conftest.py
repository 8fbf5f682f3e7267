"""The chaos suite: ``make test`` runs a sample; ``ORDINAL_CHAOS=full`` runs the whole matrix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.chaos_notebooks import write_chaos_notebooks
from tests.chaos.harness import checksums, env_for, run_args, run_to_end

FULL_ENV = "ORDINAL_CHAOS"


def pytest_configure(config):
    config.addinivalue_line("markers", "chaos_full: part of the full chaos matrix only")


#: The order of the full matrix, so that a run cut short has one cell of every kind of fault:
#: the quick checks, the sample cell of each fault, the stack, the new faults in every step,
#: then the kill -9 matrix.
FIRST = (
    "test_tracking_attempts",
    "test_s3_lease_resume",
    "test_kill_9_of_the_orchestrator_during_training",
    "test_an_s3_connection_cut_mid_upload",
    "test_a_full_disk_on_the_run_folder",
    "test_a_stack_service_restart",
    "test_s3_cut_in_every_step",
    "test_full_disk_in_every_step",
)


def _priority(item) -> int:
    for rank, prefix in enumerate(FIRST):
        if prefix in item.nodeid:
            return rank
    return len(FIRST)


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip) the full matrix unless ``ORDINAL_CHAOS=full``."""
    if os.environ.get(FULL_ENV) == "full":
        items.sort(key=_priority)  # stable: the file order within a priority
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("chaos_full") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def home() -> Path:
    """This test's private state folder (``ORDINAL_HOME``, set by the top-level conftest)."""
    return Path(os.environ["ORDINAL_HOME"])


@pytest.fixture(scope="session")
def notebooks(tmp_path_factory) -> Path:
    return write_chaos_notebooks(tmp_path_factory.mktemp("chaos-notebooks"))


@pytest.fixture(scope="session")
def reference(tmp_path_factory, notebooks) -> dict[str, str]:
    """Checksums of the artefacts of an uninterrupted run with the same seed."""
    home = tmp_path_factory.mktemp("chaos-reference")
    log = home / "run.log"
    rc = run_to_end(run_args("reference", "in-process"), env_for(home, notebooks, True), log)
    assert rc == 0, log.read_text()[-3000:]
    return checksums(home / "runs" / "reference")


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory) -> str:
    """A real ``moto_server`` on a free loopback port (S3 emulated at the boundary)."""
    from tests.helpers.moto import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url
