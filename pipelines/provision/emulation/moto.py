"""``moto_server`` on loopback: the emulated AWS endpoint (EC2, S3, IAM, STS)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["MotoServer", "free_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class MotoServer:
    """A ``moto_server`` process of our own, in its own process group.

    State is in memory: stopping it forgets every bucket and instance. AMI validation is on,
    so an unknown image fails as it does on AWS (``InvalidAMIID.NotFound``).

    Parameters
    ----------
    log_path : Path or None
        Where the server's output goes (``os.devnull`` when ``None``).
    port : int or None
        Port to bind on 127.0.0.1; a free one when ``None``.
    """

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        """Start the server and wait until it answers."""
        env = dict(
            os.environ,
            MOTO_ENABLE_AMI_VALIDATION="true",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/moto-api/", timeout=2).status_code < 500:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.url} in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
