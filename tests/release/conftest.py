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
