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


def pytest_collection_modifyitems(config, items):
    """Keep tests that share a fixture broader than one test on one xdist worker.

    ``make test`` runs the suite on several workers (``--dist loadgroup``); much of its time is
    spent waiting on servers, Terraform and Prefect's polling, not on the CPU. A session- or
    module-scoped fixture (a stack, a built service, a trained model) is set up once per worker,
    so the tests sharing one are joined into a single group (union-find over the fixtures they
    share) and run together; every other test is scheduled on its own.
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    shared: dict[int, list[str]] = {}
    for index, item in enumerate(items):
        info = getattr(item, "_fixtureinfo", None)
        keys = []
        for name, defs in info.name2fixturedefs.items() if info else ():
            for fixturedef in defs:
                # Fixtures of pytest and its plugins have no baseid of the project's own.
                if fixturedef.scope == "function" or not fixturedef.baseid:
                    continue
                # A module-scoped fixture has one instance per module, wherever it is defined.
                where = item.nodeid.split("::")[0] if fixturedef.scope == "module" else ""
                keys.append(f"{fixturedef.baseid}::{name}@{where}")
        shared[index] = keys
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    for index, item in enumerate(items):
        if shared[index]:
            item.add_marker(pytest.mark.xdist_group(find(shared[index][0])))

    # Longest first: xdist hands out groups in collection order, so the files holding slow
    # tests (real notebooks, VMs, the stack) start at once instead of ending the run alone,
    # the largest groups (the stack, the emulated cloud) before single slow tests. Each
    # file keeps its place and its own order.
    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    slow_files = {file_of(i) for i in items if i.get_closest_marker("slow")}
    group_of = {index: find(keys[0]) for index, keys in shared.items() if keys}
    sizes: dict[str, int] = {}
    for group in group_of.values():
        sizes[group] = sizes.get(group, 0) + 1
    first: dict[str, tuple[bool, int, int]] = {}
    for index, item in enumerate(items):
        size = sizes.get(group_of.get(index, ""), 1)
        first.setdefault(file_of(item), (file_of(item) not in slow_files, -size, index))
    items.sort(key=lambda i: first[file_of(i)])
