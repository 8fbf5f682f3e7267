"""Shared fixtures: offline Hugging Face, a private state folder, tiny backbone configs."""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from tests.scheduling import (
    load_durations,
    make_scheduler,
    order_items,
    record_timing,
    xdist_scope,
)

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


_DURATIONS = load_durations()


def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`tests.scheduling.xdist_scope`, longest scopes first (xdist's own
    ``loadgroup`` marks no longer reach the scheduler with pytest 9's structured node ids)."""
    return make_scheduler(config, log, _DURATIONS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test's seconds, setup to teardown, when ``ORDINAL_TEST_TIMINGS`` names a file."""
    started = time.time()
    yield
    record_timing(item.nodeid, started, time.time())


def pytest_collection_modifyitems(config, items):
    """Check each xdist scope holds every fixture broader than one test; put the longest
    scopes first.

    ``make test`` runs the suite on several workers (``tests/scheduling.py``). A session- or
    module-scoped fixture is set up once per worker that uses it, so all its tests must share
    a scope: a fixture whose tests would be split is a collection error naming it.
    """
    users: dict[str, set[str]] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        for name, defs in info.name2fixturedefs.items() if info else ():
            for fixturedef in defs:
                # Fixtures of pytest and its plugins have no baseid of the project's own.
                if fixturedef.scope == "function" or not fixturedef.baseid:
                    continue
                # A module-scoped fixture has one instance per module, wherever it is defined.
                where = item.nodeid.split("::")[0] if fixturedef.scope == "module" else ""
                key = f"{fixturedef.baseid}::{name} ({fixturedef.scope}) {where}".strip()
                users.setdefault(key, set()).add(xdist_scope(item.nodeid))
    split = {k: sorted(v) for k, v in users.items() if len(v) > 1}
    if split:
        raise pytest.UsageError(
            "fixtures shared across xdist scopes (see DIRECTORY_SCOPES, SHARED_SCOPES and "
            f"PER_TEST_FILES in tests/scheduling.py): {split}"
        )

    # The longest scopes first (real notebooks, VMs, the stack), so they do not end the run
    # alone; each scope keeps its tests' order.
    order_items(items, _DURATIONS)
