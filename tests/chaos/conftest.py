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


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip) the full matrix unless ``ORDINAL_CHAOS=full``."""
    if os.environ.get(FULL_ENV) == "full":
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
