"""Shared fixtures: offline Hugging Face, a private state folder, tiny backbone configs."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
# Prefect (imported by the pipeline tests) keeps its home, API database and results here,
# never in ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ordinal-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The temporary API server migrates a fresh database on first use; on a loaded 2-core CI
# machine that takes longer than Prefect's 20 s default (the CLI sets the same 120 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Step kernels exit normally, so coverage (patch = subprocess) writes their data.
os.environ.setdefault("ORDINAL_KERNEL_SHUTDOWN", "graceful")


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Run state (MLflow store, default storage) goes to a temporary folder, never the repo."""
    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path_factory.mktemp("ordinal-home")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # A run owner's token (set in-process by tests that own a run) must not follow a test.
    monkeypatch.delenv("ORDINAL_RUN_OWNER", raising=False)


def pytest_sessionfinish(session, exitstatus):
    """Prefect stops its temporary API server at interpreter exit and logs it to a stream
    pytest has already closed; keep that from printing a logging traceback."""
    import logging

    logging.raiseExceptions = False
