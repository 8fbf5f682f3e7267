"""MLflow tracking with a local store under the project's state folder by default."""

from __future__ import annotations

import os
from pathlib import Path

from ordinal.paths import state_dir

__all__ = ["DEFAULT_EXPERIMENT", "configure_mlflow", "local_tracking_uri"]

DEFAULT_EXPERIMENT = "ordinal"


def local_tracking_uri(root: Path | None = None) -> str:
    """The embedded default: a SQLite store in ``<state>/mlflow/mlflow.db``."""
    folder = (root or state_dir()) / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def configure_mlflow(experiment: str | None = None, tracking_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` (or ``$MLFLOW_TRACKING_URI``, or the local store).

    Creates the experiment if needed, with artefacts beside a local store rather than in the
    current directory, and makes it the active one. Returns the tracking URI in use.
    """
    import mlflow  # heavy import, only when tracking is asked for

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri()
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        artifacts = None
        if uri.startswith("sqlite:///"):
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)
    return uri
