"""Fixtures of the data-layer tests: a real S3-compatible server, isolated state, registries."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.helpers.moto import moto_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """Start ``moto_server`` on a free loopback port for the session; yield its URL."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


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
