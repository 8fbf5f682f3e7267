"""The chaos suite: ``make test`` runs a sample; ``ORDINAL_CHAOS=full`` runs the whole matrix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
