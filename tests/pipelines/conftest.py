"""Fixtures of the pipeline tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def home() -> Path:
    """This test's private state folder (``ORDINAL_HOME``, set by the top-level conftest)."""
    return Path(os.environ["ORDINAL_HOME"])
