"""``ordinal run --stack``: the real step notebooks 01-07 on the real control plane.

Prefect on PostgreSQL behind the TLS proxy (the run's flow and its compute steps are
registered there, reached with the stack's CA and API auth), the MLflow server with artefacts
proxied into S3, and datasets, models and reports in the stack's S3 data bucket. Tiny BERT
keeps it to a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipelines.stack import prefect_server, s3
from pipelines.stack.config import StackConfig, load_config
from tests.pipelines.helpers import ordinal_run, processes_inside, read_summary

pytestmark = pytest.mark.slow

STEPS = ["ingest", "preprocess", "calibrate", "train", "export", "parity", "quantize"]


def test_real_notebooks_run_on_the_stack(stack_config: StackConfig, tmp_path, monkeypatch):
    env = {"ORDINAL_HOME": os.environ["ORDINAL_HOME"], "PREFECT_HOME": str(tmp_path / "prefect")}
    done = ordinal_run(
        "--stack", "--stack-root", str(stack_config.root), "--run-id", "on-stack",
        "--model", "bert-tiny", "--max-steps", "20", "--compute", "auto",
        "--set", "quantize_preset=dynamic", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = Path(os.environ["ORDINAL_HOME"]) / "runs" / "on-stack"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["parameters"]["storage"] == "s3://ordinal-data"
    # The per-run worker ran the compute steps, not the stack's long-lived compute worker.
    assert summary["compute"] == "Prefect worker ordinal-on-stack on compute/run-on-stack"
    assert summary["mlflow_run"].startswith(f"{stack_config.mlflow_url}/#/experiments/")
    assert processes_inside(run_dir) == []

    # Prefect: the run's flow and its steps were registered with the stack's server, every
    # one reached a final state, and the run's queue was drained and removed.
    with prefect_server.client_settings(stack_config):
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            queues = {q.name for q in client.read_work_queues(work_pool_name="compute")}
            assert "run-on-stack" not in queues
            runs = client.read_flow_runs()
            mine = [
                r
                for r in runs
                if r.name.startswith("on-stack-")
                or (r.parameters.get("params") or {}).get("run_id") == "on-stack"
            ]
            assert {r.name for r in mine} >= {f"on-stack-{s}" for s in STEPS[3:]}
            assert len(mine) == len(STEPS[3:]) + 1  # the compute steps and the pipeline
            assert all(r.state_type.value == "COMPLETED" for r in mine), [
                (r.name, r.state_type.value) for r in mine
            ]

    # MLflow server: one parent run and every step nested under it, with its metrics.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack_config.ca_cert))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack_config.mlflow_url)
    exp = client.get_experiment_by_name("ordinal-pipeline")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`ordinal.run_id` = 'on-stack'")
    nested = {
        r.info.run_name: r
        for r in client.search_runs(
            [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
    }
    assert sorted(nested) == sorted(STEPS)
    assert "records_accepted" in nested["preprocess"].data.metrics
    assert {"eval_mae", "eval_qwk"} <= set(nested["train"].data.metrics)
    assert nested["parity"].data.metrics["parity_num_samples"] == 500
    assert {"int8_mae_delta", "int8_gate_samples"} <= set(nested["quantize"].data.metrics)
    logged = {a.path for a in client.list_artifacts(nested["train"].info.run_id, "notebook")}
    assert logged == {"notebook/notebook.html", "notebook/notebook.ipynb"}

    # S3: every object a manifest lists exists in the data bucket with that sha256.
    bucket = s3.client(stack_config)
    keys = [
        o["Key"]
        for page in bucket.get_paginator("list_objects_v2").paginate(Bucket=s3.DATA_BUCKET)
        for o in page.get("Contents", [])
    ]
    manifests = [k for k in keys if k.endswith("/manifest.json")]
    phases = set()
    checked = 0
    for key in manifests:
        manifest = json.loads(bucket.get_object(Bucket=s3.DATA_BUCKET, Key=key)["Body"].read())
        phases.add(manifest["phase"])
        for entry in manifest["outputs"]:
            if "://" in entry["path"] or entry["path"].startswith("/"):
                continue  # a local file the phase read, not a stored object
            body = bucket.get_object(Bucket=s3.DATA_BUCKET, Key=entry["path"])["Body"].read()
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["path"]
            checked += 1
    assert {"ingest", "preprocess", "calibrate", "export", "quantize"} <= phases, phases
    assert checked >= 10


def test_run_on_a_stack_that_is_not_running_is_refused(tmp_path):
    root = tmp_path / "no-stack"
    load_config(root).save()  # configured, never started
    done = ordinal_run("--stack", "--stack-root", str(root), "--run-id", "nowhere")
    assert done.returncode == 2
    out = " ".join(done.stdout.split())
    assert "is not ready" in out and "postgres" in out and "ordinal stack up" in out
