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


#: Folders whose conftest holds session fixtures (a stack, a built service, an emulated cloud,
#: a reference run): their tests run on one xdist worker, so each is set up once.
DIRECTORY_SCOPES = (
    "tests/chaos",
    "tests/data_layer",
    "tests/export",
    "tests/infra",
    "tests/release",
    "tests/serving",
    "tests/stack",
)
#: Files of long, independent tests (no fixture broader than a test): one test per scope, so
#: they spread over the workers instead of queueing on one.
PER_TEST_FILES = (
    "tests/pipelines/test_flow_paths.py",
    "tests/pipelines/test_pipeline_end_to_end.py",
)


def xdist_scope(nodeid: str) -> str:
    """The unit ``make test`` schedules on one xdist worker: a folder above, a single test of
    ``PER_TEST_FILES``, else the test's file (its module fixtures are set up once)."""
    path = nodeid.split("::")[0]
    if path in PER_TEST_FILES:
        return nodeid
    return next((d for d in DIRECTORY_SCOPES if path.startswith(d + "/")), path)


def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`xdist_scope` (xdist's own ``loadgroup`` marks no longer reach the
    scheduler with pytest 9's structured node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ScopeScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Check the scopes above hold every fixture broader than one test; put slow scopes first.

    ``make test`` runs the suite on several workers; much of its time is spent waiting on
    servers, Terraform and Prefect's polling, not on the CPU. A session- or module-scoped
    fixture is set up once per worker that uses it, so all its tests must share a scope: a
    fixture whose tests would be split is a collection error naming it.
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
            "fixtures shared across xdist scopes (see DIRECTORY_SCOPES and PER_TEST_FILES in "
            f"tests/conftest.py): {split}"
        )

    # Longest first: xdist hands out scopes in collection order, so the scopes holding slow
    # tests (real notebooks, VMs, the stack) start at once instead of ending the run alone,
    # the largest first. Each file keeps its tests' order.
    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    slow_files = {file_of(i) for i in items if i.get_closest_marker("slow")}
    slow_scopes = {xdist_scope(i.nodeid) for i in items if file_of(i) in slow_files}
    sizes: dict[str, int] = {}
    for item in items:
        scope = xdist_scope(file_of(item) + "::")
        sizes[scope] = sizes.get(scope, 0) + 1
    first: dict[str, tuple[bool, int, int]] = {}
    for index, item in enumerate(items):
        scope = xdist_scope(file_of(item) + "::")
        slow = scope in slow_scopes or file_of(item) in slow_files
        first.setdefault(file_of(item), (not slow, -sizes[scope], index))
    items.sort(key=lambda i: first[file_of(i)])
