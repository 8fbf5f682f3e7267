"""The flow's control paths, run as a user runs them (``ordinal run`` in a fresh process).

The step notebooks are stand-ins (``toy_notebooks``) taking the real parameters, so these
tests exercise validation, the per-run Prefect worker, teardown and MLflow records in about a
minute; ``test_pipeline_end_to_end`` runs the real notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from pipelines.steps import NOTEBOOK_DIR_ENV
from tests.pipelines.helpers import (
    ORDINAL,
    mlflow_runs,
    ordinal_run,
    prefect_servers_of,
    processes_inside,
    read_summary,
)
from tests.pipelines.toy_notebooks import write_toy_notebooks


def test_bad_flow_parameters_are_rejected_before_any_step(home):
    done = ordinal_run(
        "--head", "ordinal_forest", "--epochs", "-1", "--set", "calibration_size=20",
        "--set", "optimiser=sgd",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "invalid parameters for the pipeline" in out
    for field in ("head", "epochs", "calibration_size", "optimiser"):
        assert f"- {field}:" in out
    assert "unknown head 'ordinal_forest'" in out
    assert not (home / "runs").exists()  # no step started, no run folder


def test_an_unapproved_source_is_rejected_before_any_step(home):
    done = ordinal_run("--source", "somebody-elses-data")
    assert done.returncode == 2
    assert "somebody-elses-data" in done.stdout
    assert not (home / "runs").exists()


@pytest.mark.slow
def test_a_terminated_run_tears_down_its_worker(home, tmp_path):
    """SIGTERM (what a scheduler sends to cancel) while training runs on the worker."""
    notebooks = write_toy_notebooks(tmp_path / "notebooks", sleep={"train": 120.0})
    run_dir = home / "runs" / "terminated"
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:  # a file, not a pipe: a full pipe would block the run
        process = subprocess.Popen(
            [str(ORDINAL), "run", "--run-id", "terminated", "--compute", "worker",
             "--model", "bert-tiny"],
            env={**os.environ, NOTEBOOK_DIR_ENV: str(notebooks),
                 "PREFECT_HOME": str(home / "prefect")},
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # a loaded machine: the worker starts slowly
        while not (run_dir / "train" / "notebook.ipynb").is_file():
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        time.sleep(2.0)  # the step is running on the worker
        assert (run_dir / "provision" / "state.json").is_file()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    assert process.returncode == 143, output[-3000:]
    assert not (run_dir / "provision" / "state.json").exists(), output[-3000:]
    assert processes_inside(run_dir) == []
    assert prefect_servers_of(home / "prefect") == []  # its temporary API server stopped too
    summary = read_summary(run_dir)
    assert summary["teardown"]["worker_stopped"] is True
    assert {s["step"]: s["status"] for s in summary["steps"]}["train"] == "failed"


@pytest.mark.slow
def test_a_failing_notebook_fails_after_teardown_and_a_rerun_resumes(home, tmp_path):
    """A failing notebook fails the run after teardown, with the failure on the summary, the
    index page and MLflow. Its notebook fixed, the run re-run under the same id: finished
    steps come from Prefect's cache (also the compute step run by the worker), the fixed one
    runs."""
    notebooks = write_toy_notebooks(tmp_path / "notebooks", fail="export")
    env = {NOTEBOOK_DIR_ENV: str(notebooks)}
    args = ("--run-id", "failing", "--compute", "worker", "--model", "bert-tiny")
    done = ordinal_run(*args, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    run_dir = home / "runs" / "failing"
    summary = read_summary(run_dir)
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status == {
        "ingest": "completed",
        "preprocess": "completed",
        "calibrate": "completed",
        "provision": "completed",
        "train": "completed",
        "export": "failed",
        "parity": "skipped",
        "quantize": "skipped",
        "teardown": "completed",
    }
    export = next(s for s in summary["steps"] if s["step"] == "export")
    assert "sabotaged export step" in export["error"]
    assert export["where"].startswith("Prefect worker ordinal-failing on compute/run-failing")
    html = (run_dir / "export" / "notebook.html").read_text(encoding="utf-8")
    assert "sabotaged export step" in html
    # Teardown ran: the worker is gone with everything under it, its state file removed.
    assert summary["teardown"]["worker_stopped"] is True
    assert summary["teardown"]["deployment_deleted"] is True
    assert not (run_dir / "provision" / "state.json").exists()
    assert processes_inside(run_dir) == []
    # The index page shows the failure and links the failed notebook.
    index = (run_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="export/notebook.html"' in index and "sabotaged export step" in index
    assert "run failed" in " ".join(done.stdout.split())
    # MLflow: the parent run and the failed step's nested run are FAILED, with the notebook.
    runs = {r.info.run_name: r for r in mlflow_runs(home)}
    assert runs["failing"].info.status == "FAILED"
    assert runs["export"].info.status == "FAILED"
    assert runs["export"].data.tags["mlflow.parentRunId"] == runs["failing"].info.run_id
    assert runs["train"].info.status == "FINISHED"
    assert "parity" not in runs
    stamps = {s: (run_dir / s / "notebook.ipynb").stat().st_mtime_ns for s in ("ingest", "train")}

    # The notebook fixed, the same run id again.
    fixed = write_toy_notebooks(tmp_path / "fixed")
    shutil.copy2(fixed / "05_export.ipynb", notebooks / "05_export.ipynb")
    done = ordinal_run(*args, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "completed"
    for step, stamp in stamps.items():  # not executed again
        assert (run_dir / step / "notebook.ipynb").stat().st_mtime_ns == stamp, step
    assert "sabotaged" not in (run_dir / "export" / "notebook.html").read_text(encoding="utf-8")
    statuses = {s["step"]: s["status"] for s in read_summary(run_dir)["steps"]}
    cached = ["ingest", "preprocess", "calibrate", "train"]
    assert [s for s, status in statuses.items() if status == "cached"] == cached
    # One parent run for the run id, both attempts; each step nested once. The steps the
    # first attempt executed keep its record and say which attempt reused them.
    parents = [r for r in mlflow_runs(home) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["ordinal.attempts"] == "2"
    nested = [r for r in mlflow_runs(home) if "mlflow.parentRunId" in r.data.tags]
    steps = {run.info.run_name: run for run in nested}
    assert len(nested) == len(steps) == 7
    for step in cached:
        assert steps[step].data.tags["ordinal.attempt"] == "1", step
        assert steps[step].data.tags["ordinal.cached_by_attempt"] == "2", step
        assert steps[step].info.status == "FINISHED", step
    export = steps["export"]
    assert export.data.tags["ordinal.attempt"] == "2" and export.info.status == "FINISHED"
    assert "ordinal.cached_by_attempt" not in export.data.tags
    assert "sabotaged" in export.data.tags.get("ordinal.previous_error", "")


def test_a_failed_teardown_fails_the_run(home, tmp_path, monkeypatch):
    """Whatever teardown could not stop may still be running (on a VM, billing): the run is
    failed, with the summary written, and the owner lease released all the same."""
    from pipelines.errors import PipelineError
    from pipelines.flow import run_pipeline
    from pipelines.provisioning import LocalProvisioner

    def broken(self):
        raise RuntimeError("destroy refused: RequestLimitExceeded")

    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(write_toy_notebooks(tmp_path / "notebooks")))
    monkeypatch.setattr(LocalProvisioner, "teardown", broken)
    with pytest.raises(PipelineError, match="teardown failed: destroy refused"):
        run_pipeline({"run_id": "teardown-fails", "model": "bert-tiny", "compute": "in-process"})
    run_dir = home / "runs" / "teardown-fails"
    summary = read_summary(run_dir)
    assert summary["status"] == "failed"
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["quantize"]["status"] == "completed"
    assert (
        steps["teardown"]["status"] == "failed"
        and "RequestLimitExceeded" in (steps["teardown"]["error"])
    )
    owner = json.loads((run_dir / "owner.json").read_text())
    assert owner.get("released"), owner
