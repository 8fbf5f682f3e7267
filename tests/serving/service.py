"""Build and run the Rust serving binaries: real processes on loopback, stopped by SIGTERM.

The binaries are built with ``cargo build --release --offline --locked`` in ``rust/`` (cargo's
own cache in ``rust/target`` makes a rebuild a no-op); the crates come from Debian's registry
(``rust/.cargo/config.toml``), so nothing is downloaded.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPO",
    "RUST",
    "Service",
    "ServiceError",
    "build_binaries",
    "cargo",
    "free_port",
    "ort_library",
]

REPO = Path(__file__).resolve().parents[2]
RUST = REPO / "rust"
RELEASE = RUST / "target" / "release"


class ServiceError(RuntimeError):
    """A build or a service process failed; the message carries its output."""


def ort_library() -> Path:
    """``$ORT_DYLIB_PATH``, else the ONNX Runtime library the onnxruntime wheel ships."""
    env = os.environ.get("ORT_DYLIB_PATH")
    if env:
        return Path(env)
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so.*"))
    if not found:
        raise ServiceError(f"no libonnxruntime.so.* in {capi}: set ORT_DYLIB_PATH")
    return found[-1]


def cargo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``cargo ARGS`` in ``rust/`` offline; raise :class:`ServiceError` on failure."""
    env = dict(os.environ, CARGO_TERM_COLOR="never", ORT_DYLIB_PATH=str(ort_library()))
    proc = subprocess.run(
        ["cargo", *args],
        cwd=RUST,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"cargo {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-8000:]}"
        )
    return proc


def build_binaries() -> dict[str, Path]:
    """Build (or reuse) the release binaries; return ``{name: path}``.

    ``ordinal-serve``, ``ordinal-tokenize`` (parity tests) and ``ordinal-ort-check`` (used by
    ``rust/scripts/ort-bootstrap``).
    """
    cargo("build", "--release", "--offline", "--locked", "--bins")
    paths = {
        name: RELEASE / name for name in ("ordinal-serve", "ordinal-tokenize", "ordinal-ort-check")
    }
    for name, path in paths.items():
        if not path.is_file():
            raise ServiceError(f"cargo build left no {name} at {path}")
    return paths


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``ordinal-serve`` on a free loopback port.

    Parameters
    ----------
    binary : Path
        The ``ordinal-serve`` executable.
    bundle : Path
        The bundle folder.
    trusted_keys : sequence of str
        Fingerprints (``sha256:...``) passed as ``--trusted-key``.
    args : sequence of str
        Further command-line arguments (``--variant int8``, ``--audit-log FILE``...).
    log_dir : Path, optional
        Where the process log goes (default ``$TMPDIR``).
    ort : Path, optional
        The ONNX Runtime library (default :func:`ort_library`).
    """

    def __init__(
        self,
        binary: Path,
        bundle: Path,
        trusted_keys: Sequence[str] = (),
        args: Sequence[str] = (),
        log_dir: Path | None = None,
        ort: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.command = [
            str(binary),
            "--bundle",
            str(bundle),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--ort-dylib-path",
            str(ort or ort_library()),
            *[a for k in trusted_keys for a in ("--trusted-key", k)],
            *args,
        ]
        self.log_path = (log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / (
            f"ordinal-serve-{self.port}.log"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Service:
        """Start and wait for ``/healthz``; raise with the log if the process exits."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDINAL_")}
        env.pop("ORT_DYLIB_PATH", None)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise ServiceError(
                    f"ordinal-serve exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"ordinal-serve did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 60
    ) -> tuple[int, bytes]:
        """One HTTP request on a fresh connection; ``(status, body)``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def predict(self, texts: Sequence[Any]) -> tuple[int, Any]:
        """``POST /v1/predict`` with ``{"texts": texts}``; ``(status, parsed JSON)``."""
        status, body = self.request(
            "POST", "/v1/predict", json.dumps({"texts": list(texts)}).encode()
        )
        return status, json.loads(body)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait for the exit; return the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
