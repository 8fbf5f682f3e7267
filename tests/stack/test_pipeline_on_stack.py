"""``ordinal run`` against the real control plane: Prefect on PostgreSQL behind the TLS proxy,
the MLflow server with artefacts in S3, and a per-run worker beside the stack's own.

The step notebooks are stand-ins (``tests.pipelines.toy_notebooks``, the real parameter
cells) so this checks the wiring in about a minute; the real notebooks run end to end in
``tests/pipelines``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.stack import prefect_server, workers
from pipelines.stack.config import StackConfig
from pipelines.steps import NOTEBOOK_DIR_ENV
from tests.pipelines.helpers import ordinal_run, processes_inside, read_summary
from tests.pipelines.toy_notebooks import write_toy_notebooks

pytestmark = pytest.mark.slow


def test_pipeline_runs_on_the_stack_with_a_per_run_worker(
    stack_config: StackConfig, tmp_path, monkeypatch
):
    notebooks = write_toy_notebooks(tmp_path / "notebooks")
    env = {
        **workers.worker_env(stack_config),
        "ORDINAL_HOME": os.environ["ORDINAL_HOME"],
        NOTEBOOK_DIR_ENV: str(notebooks),
    }
    done = ordinal_run("--run-id", "on-stack", "--compute", "auto", "--model", "bert-tiny", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = Path(os.environ["ORDINAL_HOME"]) / "runs" / "on-stack"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    # The per-run worker ran the compute steps, not the stack's long-lived compute worker.
    assert summary["compute"] == "Prefect worker ordinal-on-stack on compute/run-on-stack"
    assert summary["mlflow_run"].startswith(f"{stack_config.mlflow_url}/#/experiments/")
    assert processes_inside(run_dir) == []

    with prefect_server.client_settings(stack_config):
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            queues = {q.name for q in client.read_work_queues(work_pool_name="compute")}
            assert "run-on-stack" not in queues  # torn down
            assert {"default", "gpu"} <= queues
            runs = client.read_flow_runs()
            steps = [r for r in runs if r.name.startswith("on-stack-")]
            assert sorted(r.name for r in steps) == [
                "on-stack-export", "on-stack-parity", "on-stack-quantize", "on-stack-train"
            ]  # fmt: skip
            assert all(r.state_type.value == "COMPLETED" for r in steps)
            # Each ran from the run's own queue (the stack's workers serve only theirs).
            assert {r.work_queue_name for r in steps} == {"run-on-stack"}

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack_config.ca_cert))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack_config.mlflow_url)
    exp = client.get_experiment_by_name("ordinal-pipeline")
    found = client.search_runs([exp.experiment_id], "tags.`ordinal.run_id` = 'on-stack'")
    assert len(found) == 1
    parent = found[0]
    nested = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in nested) == sorted(
        ["ingest", "preprocess", "calibrate", "train", "export", "parity", "quantize"]
    )
    # Artefacts went through the server into S3.
    logged = {a.path for a in client.list_artifacts(nested[0].info.run_id, "notebook")}
    assert logged == {"notebook/notebook.html", "notebook/notebook.ipynb"}
