"""Fixtures of the release tests: one real run (tiny BERT exported, gated, quantised), keys,
and a signed bundle built from it, once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.release.run_fixture import make_run


@pytest.fixture(scope="session")
def release_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release")


@pytest.fixture(scope="session")
def run_dir(release_home: Path) -> Path:
    """A completed run (``summary.json`` status completed) with FP32 and INT8 graphs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORDINAL_HOME", str(release_home / "home"))
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        return make_run(release_home)


@pytest.fixture(scope="session")
def keys(release_home: Path) -> dict[str, Path]:
    """Two signing keys: ``release`` (trusted) and ``rogue`` (not)."""
    from ordinal.release import generate_signing_key

    out = {}
    for name in ("release", "rogue"):
        path = release_home / "keys" / f"{name}.pem"
        generate_signing_key(path)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def fingerprint_of(keys):
    from ordinal.release import fingerprint, load_private_key

    return {name: fingerprint(load_private_key(path)) for name, path in keys.items()}


@pytest.fixture(scope="session")
def built_bundle(run_dir: Path, keys, release_home: Path) -> Path:
    """``demo-1.0.0`` signed by the release key (never modified by tests: copy it first)."""
    from ordinal.release import build_bundle, collect_run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1767225600")
        inputs = collect_run(run_dir)
        return build_bundle(
            inputs,
            release_home / "bundles" / "demo-1.0.0",
            name="demo",
            version="1.0.0",
            signing_key=keys["release"],
        )


@pytest.fixture
def bundle_copy(built_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may tamper with."""
    return Path(shutil.copytree(built_bundle, tmp_path / built_bundle.name))


@pytest.fixture(scope="session")
def versions(run_dir: Path, keys, release_home: Path) -> dict[str, Path]:
    """Bundles 1.0.0 ... 1.4.0 of ``demo`` from the same run (signed by the release key)."""
    from ordinal.release import build_bundle, collect_run

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1767225600")
        inputs = collect_run(run_dir)
        for minor in range(5):
            version = f"1.{minor}.0"
            out[version] = build_bundle(
                inputs,
                release_home / "versions" / f"demo-{version}",
                name="demo",
                version=version,
                signing_key=keys["release"],
            )
    return out


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """A real ``moto_server`` on a free loopback port (S3 with versioning and object lock)."""
    from tests.helpers.moto import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Test credentials for the moto server; nothing from the real AWS chain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def locked_bucket(moto_endpoint, aws_env):
    """A fresh bucket with versioning and object lock enabled; yields its S3Storage."""
    import uuid

    import boto3

    from ordinal.artifacts import S3Storage

    name = f"releases-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return S3Storage(name, "root", endpoint_url=moto_endpoint, client=client)


class Clock:
    """A settable clock for audit records (RFC 3339 strings)."""

    def __init__(self) -> None:
        self.day = 0

    def __call__(self) -> str:
        self.day += 1
        return f"2026-02-{self.day:02d}T12:00:00.000000Z"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def mlflow_template(release_home: Path) -> Path:
    """An initialised, empty MLflow SQLite store (migrations take seconds; tests copy it)."""
    from mlflow import MlflowClient

    path = release_home / "mlflow-template.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return path


@pytest.fixture
def mlflow_uri(mlflow_template: Path, tmp_path: Path) -> str:
    """A private real MLflow store (SQLite) for one test."""
    target = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, target)
    return f"sqlite:///{target}"
