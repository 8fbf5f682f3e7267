"""Fixtures of the data-layer tests: a real S3-compatible server, isolated state, registries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """Start ``moto_server`` on a free loopback port for the session; yield its URL."""
    exe = VENV_BIN / "moto_server"
    if not exe.exists():
        exe = Path(shutil.which("moto_server") or "moto_server")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start (exit {proc.poll()})")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test's state folder, storage root and AWS settings inside ``tmp_path``."""
    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    for var in (
        "ORDINAL_STORAGE_URL",
        "ORDINAL_S3_ENDPOINT_URL",
        "ORDINAL_SOURCES",
        "ORDINAL_CALIBRATION_DIR",
        "ORDINAL_EXPERIMENT_ID",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "SOURCE_DATE_EPOCH",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-do-not-log")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return tmp_path


@pytest.fixture
def local_store(tmp_path):
    from ordinal.artifacts import LocalStorage

    return LocalStorage(tmp_path / "store")


@pytest.fixture
def s3_store(moto_endpoint):
    """An :class:`S3Storage` on a fresh bucket of the moto server."""
    from ordinal.artifacts import S3Storage

    return S3Storage(
        f"bucket-{uuid.uuid4().hex[:12]}",
        "root/prefix",
        endpoint_url=moto_endpoint,
        create_bucket=True,
        max_attempts=2,
    )


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """Every demo source of the repository registry ingested (which checks its pinned sha256)
    and the two default demo datasets preprocessed, once per session."""
    from ordinal.artifacts import LocalStorage
    from ordinal.data import ingest, load_registry, preprocess

    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORDINAL_HOME", str(root / "home"))
        store = LocalStorage(root / "store")
        registry = load_registry(REPO / "sources" / "approved.yaml")
        for name in registry.names():
            ingest(name, registry=registry, storage=store)
        for dataset in ("reviews", "shapes"):
            preprocess(dataset, "v1", storage=store)
        yield store
