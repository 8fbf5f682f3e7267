"""Helpers for the pipeline tests: run ``ordinal run`` as a user would, read what it left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

ORDINAL = Path(sys.executable).with_name("ordinal")


def ordinal_run(*args: str, env: dict[str, str] | None = None, timeout: float = 1700):
    """Run the ``ordinal run`` console command in a fresh process; return the completed process."""
    return subprocess.run(
        [str(ORDINAL), "run", *args],
        env={
            **os.environ,
            "COLUMNS": "200",
            # The run's own Prefect home, as on a fresh machine (the CLI's embedded default).
            "PREFECT_HOME": str(Path(os.environ["ORDINAL_HOME"]) / "prefect"),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def processes_inside(folder: Path) -> list[str]:
    """Live processes whose working directory is inside ``folder`` (kernels, workers)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cwd = Path(proc.cwd())
        except (psutil.Error, OSError):
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
    return found


def prefect_servers_of(prefect_home: Path) -> list[str]:
    """Live temporary Prefect API servers started with ``PREFECT_HOME=prefect_home``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "prefect.server.api.server:create_app" not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.environ().get("PREFECT_HOME") == str(prefect_home):
                found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'])[:120]}")
        except (psutil.Error, OSError):
            continue
    return found


def mlflow_runs(home: Path, experiment: str = "ordinal-pipeline") -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], max_results=500)
