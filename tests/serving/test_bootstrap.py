"""``rust/scripts/ort-bootstrap`` and the systemd template that runs it as ExecStartPre.

The archive case uses an archive laid out like the official ``onnxruntime-linux-x64-X.Y.Z.tgz``
(``<top>/lib/libonnxruntime.so.X.Y.Z``) built from the wheel's library, since nothing can be
downloaded here.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.serving.service import REPO, RUST, Service, ort_library

BOOTSTRAP = RUST / "scripts" / "ort-bootstrap"
UNIT = REPO / "deploy" / "systemd" / "ordinal-serve@.service"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*args: str, checker: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BOOTSTRAP), *args, "--checker", str(checker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_wheel_library_is_found_verified_and_printed(binaries, bundle, tmp_path):
    import sys

    lib = ort_library()
    env_file = tmp_path / "run" / "ort.env"
    proc = _run(
        "--python", sys.executable, "--sha256", _sha(lib), "--bundle", str(bundle),
        "--env-file", str(env_file), checker=binaries["ordinal-ort-check"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ORT_DYLIB_PATH={lib.resolve()}"
    assert env_file.read_text() == proc.stdout
    assert re.search(r"is ONNX Runtime \d+\.\d+\.\d+", proc.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sha256", "00" * 32], "sha256 of"),
        (["--min-version", "99.0.0", "--api-level", "14"], "version required >= 99.0.0"),
        (["--min-version", "1.0.0", "--api-level", "999"], "no C API for level 999"),
    ],
)
def test_refusals_name_the_reason(binaries, args, message):
    proc = _run("--library", str(ort_library()), *args, checker=binaries["ordinal-ort-check"])
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_not_onnx_runtime_is_refused(binaries, tmp_path):
    fake = tmp_path / "libonnxruntime.so.1.99.0"
    fake.write_bytes(b"\x7fELF not really")
    proc = _run("--library", str(fake), checker=binaries["ordinal-ort-check"])
    assert proc.returncode == 1 and str(fake) in proc.stderr


def test_archive_is_checked_and_extracted(binaries, tmp_path):
    top = tmp_path / "src" / "onnxruntime-linux-x64-1.32.0"
    (top / "lib").mkdir(parents=True)
    shutil.copy(ort_library(), top / "lib" / ort_library().name)
    archive = tmp_path / "onnxruntime-linux-x64-1.32.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    checker = binaries["ordinal-ort-check"]
    proc = _run("--archive", str(archive), "--dest", str(tmp_path / "dest"), checker=checker)
    assert proc.returncode == 2 and "needs --sha256" in proc.stderr
    proc = _run(
        "--archive", str(archive), "--sha256", "ab" * 32, "--dest", str(tmp_path / "dest"),
        checker=checker,
    )  # fmt: skip
    assert proc.returncode == 1 and "sha256 of" in proc.stderr
    proc = _run(
        "--archive", str(archive), "--sha256", _sha(archive), "--dest", str(tmp_path / "dest"),
        "--min-version", "1.14.0", "--api-level", "14", checker=checker,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    extracted = tmp_path / "dest" / top.name / "lib" / ort_library().name
    assert proc.stdout.strip() == f"ORT_DYLIB_PATH={extracted}"
    assert _sha(extracted) == _sha(ort_library())


def _local_unit(binaries, tmp_path: Path) -> str:
    """The template with /opt, /run and /var paths pointed at this checkout and tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, path in [("ort-bootstrap", BOOTSTRAP), *binaries.items()]:
        target = bin_dir / name
        if not target.exists():
            target.symlink_to(path)
    text = UNIT.read_text()
    text = text.replace("/opt/ordinal/bin", str(bin_dir))
    text = text.replace("/run/ordinal-serve", str(tmp_path / "run"))
    return text.replace("/var/lib/ordinal", str(tmp_path / "var"))


def test_systemd_template_verifies(binaries, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is needed to check the unit (apt-get install systemd)")
    unit = tmp_path / "ordinal-serve@ci.service"
    unit.write_text(_local_unit(binaries, tmp_path))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 0 and problems == [], problems


def test_exec_start_pre_then_exec_start(binaries, bundle, signing, tmp_path):
    """Run the unit's ExecStartPre line as systemd would expand it, then start the service
    with the ORT_DYLIB_PATH it wrote (no systemd runs in the test environment)."""
    import sys

    unit = _local_unit(binaries, tmp_path)
    pre = re.search(r"^ExecStartPre=(.+)$", unit, re.M).group(1)
    pre = pre.replace("%i", "ci").replace("${ORDINAL_BUNDLE}", str(bundle))
    bootstrap_args = f"--python {sys.executable} --sha256 {_sha(ort_library())}"
    pre = pre.replace("$ORT_BOOTSTRAP_ARGS", bootstrap_args)
    proc = subprocess.run(shlex.split(pre), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    env = (tmp_path / "run" / "ci" / "ort.env").read_text().strip()
    assert env.startswith("ORT_DYLIB_PATH=")
    library = Path(env.split("=", 1)[1])
    with Service(
        binaries["ordinal-serve"],
        bundle,
        [signing["release_fingerprint"]],
        log_dir=tmp_path,
        ort=library,
    ) as service:
        assert service.request("GET", "/readyz")[0] == 200
