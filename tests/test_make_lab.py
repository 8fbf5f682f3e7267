"""``make lab`` starts JupyterLab with the project's kernel, also as root (containers and CI
machines run as root; Jupyter refuses root unless told)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from pipelines.stack.config import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_make_lab_serves_jupyterlab_on_loopback(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    args = f"--ServerApp.port={port} --no-browser --IdentityProvider.token=test-token"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS={args}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(
                    f"http://127.0.0.1:{port}/api/kernelspecs",
                    headers={"Authorization": "token test-token"}, timeout=2,
                )  # fmt: skip
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        output = b""
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else b""
        assert status is not None and status.status_code == 200, output.decode()[-2000:]
        assert "ordinal" in status.json()["kernelspecs"]  # the project's kernel is offered
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
