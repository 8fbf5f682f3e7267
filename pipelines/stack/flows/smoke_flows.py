"""Tiny smoke flows deployed to the ``control`` and ``compute`` pools.

They exercise the three paths a production run takes: provisioning (and teardown on every
completion path), training (tracked in MLflow through the TLS proxy), and a janitor
teardown. Workers load this file from source, so it imports only the standard library,
numpy, MLflow and Prefect.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from prefect import flow, task


def resources_dir(root: str) -> Path:
    """Where smoke runs put what they provision (must be empty after every run)."""
    return Path(root) / "smoke" / "resources"


@task
def provision(root: str, tag: str) -> str:
    """Stand-in for a VM: a resource directory with a lease file."""
    path = resources_dir(root) / tag
    path.mkdir(parents=True, exist_ok=False)
    (path / "lease.json").write_text(json.dumps({"tag": tag, "pid": os.getpid()}))
    return str(path)


@task
def use(resource: str, fail: bool) -> int:
    """Stand-in for work on the provisioned resource."""
    if fail:
        raise RuntimeError("smoke failure requested: teardown must still run")
    return len(list(Path(resource).iterdir()))


@task
def teardown(resource: str) -> None:
    """Remove the resource; idempotent."""
    shutil.rmtree(resource, ignore_errors=True)


@flow(name="stack-smoke-provision")
def smoke_provision(root: str, tag: str, fail: bool = False) -> int:
    """Provision, use, and always tear down."""
    resource = provision(root, tag)
    try:
        return use(resource, fail)
    finally:
        teardown(resource)


@flow(name="stack-smoke-train")
def smoke_train(root: str, tag: str, n: int = 200) -> float:
    """Fit a 3-class ordinal threshold model on synthetic data; log it to MLflow.

    The cutpoints are the midpoints between class means of a 1-D score, which is enough to
    prove the compute path: a worker on the compute pool runs numpy and reaches MLflow
    (and, through it, the S3 store) over TLS.
    """
    import mlflow
    import numpy as np

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=n)
    scores = labels + rng.normal(0, 0.3, size=n)
    means = [scores[labels == k].mean() for k in range(3)]
    cutpoints = [(means[0] + means[1]) / 2, (means[1] + means[2]) / 2]
    predicted = np.searchsorted(cutpoints, scores)
    mae = float(np.abs(predicted - labels).mean())
    scratch = resources_dir(root).parent
    scratch.mkdir(parents=True, exist_ok=True)  # the provision flow may not have run yet
    workdir = Path(tempfile.mkdtemp(prefix=f"smoke-{tag}-", dir=scratch))
    try:
        (workdir / "cutpoints.json").write_text(json.dumps(cutpoints))
        mlflow.set_experiment("stack-smoke")
        with mlflow.start_run(run_name=f"smoke-{tag}"):
            mlflow.log_metric("mae", mae)
            mlflow.log_artifact(str(workdir / "cutpoints.json"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return mae


@flow(name="stack-smoke-teardown")
def smoke_teardown(root: str) -> int:
    """Janitor: remove any smoke resource left behind; return how many it removed."""
    base = resources_dir(root)
    leftovers = list(base.iterdir()) if base.exists() else []
    for path in leftovers:
        teardown(str(path))
    return len(leftovers)
