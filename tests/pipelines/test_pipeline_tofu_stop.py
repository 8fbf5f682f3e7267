"""``ordinal run --provisioner tofu`` stopped from outside while training runs on its VM.

Two completion paths of the issue's list: SIGTERM of ``ordinal run`` (what a scheduler or
an operator's Ctrl-C sends) and cancellation of the step's flow run in Prefect (what an
operator does in the UI). Each ends with the VM destroyed, its state marked destroyed, no CPU
VM applied and nothing leaked. A cancelled step is a failed step (the flow's one failure
path; a notebook that raises takes it too, on the local provisioner in
``test_flow_paths.py``), so the cancelled run also checks what a failed run records: the
failure in the summary, the index page and MLflow, and, its first spot request meeting a
capacity error, the fallback to another zone with its alert.

Emulated at the boundary as in ``test_pipeline_tofu.py``, on the same emulated cloud
(``moto_server``, fault injector, metadata stand-in and user-data runner): each instance's
user-data (the Prefect worker bootstrap) runs as a local process group tied to its instance
id. Terraform, the provisioner, Prefect and the teardown are real; the step notebooks are
stand-ins whose training sleeps, so the stop lands mid-step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.provision.leaks import find_leaks
from pipelines.provision.vms import write_platform
from pipelines.steps import NOTEBOOK_DIR_ENV
from tests.pipelines.helpers import ORDINAL, mlflow_runs, processes_inside, read_summary
from tests.pipelines.toy_notebooks import write_toy_notebooks

pytestmark = pytest.mark.slow


def _cancel_step(run_dir, step: str) -> None:
    """Cancel the step's flow run through the run's Prefect API, as an operator would."""
    state = json.loads((run_dir / "provision" / "train" / "state.json").read_text())
    api = state["variables"]["prefect_api_url"]
    env = {**os.environ, "PREFECT_API_URL": api}
    script = (
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName\n"
        "from prefect.states import Cancelling\n"
        "with get_client(sync_client=True) as c:\n"
        f"    (run,) = c.read_flow_runs(flow_run_filter=FlowRunFilter("
        f"name=FlowRunFilterName(any_=[{run_dir.name + '-' + step!r}])))\n"
        "    c.set_flow_run_state(run.id, Cancelling())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _assert_failure_and_fallback_recorded(summary, run_dir, home, vm) -> None:
    train = next(s for s in summary["steps"] if s["step"] == "train")
    assert "Cancelled" in train["error"], train["error"]
    # The capacity error, then the next zone: recorded in the summary, alerted, on the page.
    assert [a["outcome"] for a in vm["attempts"]] == ["InsufficientInstanceCapacity", "ok"]
    assert vm["fell_back"] and vm["market"] == "spot" and vm["zone"] == "us-east-1b"
    provisioning = summary["provisioning"]
    assert provisioning["fallbacks"][0]["stage"] == "train"
    assert "fell back" in provisioning["alerts"][0]["summary"]
    index = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "InsufficientInstanceCapacity" in index and "Cancelled" in index
    # MLflow: the parent run failed, with the VM's attempts.
    parent = {r.info.run_name: r for r in mlflow_runs(home)}[run_dir.name]
    assert parent.info.status == "FAILED"
    assert parent.data.params["vm.0.train.attempts"] == "2"
    assert parent.data.metrics["vm_fallback_attempts"] == 1


@pytest.mark.parametrize("how", ["sigterm", "cancelled"])
def test_a_stopped_tofu_run_destroys_its_vm(how, home, cloud, tmp_path, monkeypatch):
    """Stop the run while train runs on the GPU VM; the VM is destroyed, nothing leaks."""
    cloud.injector.disarm()
    cloud.metadata.clear()
    if how == "cancelled":
        cloud.injector.arm("InsufficientInstanceCapacity", 1)  # the first spot request
    platform_file = write_platform(cloud.platform(), tmp_path / "platform.json")
    notebooks = write_toy_notebooks(tmp_path / "notebooks", sleep={"train": 300.0})
    # The VMs' workers are started by this process's user-data runner: they inherit it here.
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(notebooks))
    run_id = f"tofu-{how}"
    run_dir = home / "runs" / run_id
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:  # a file, not a pipe: a full pipe would block the run
        process = subprocess.Popen(
            [str(ORDINAL), "run", "--run-id", run_id, "--provisioner", "tofu",
             "--model", "bert-tiny", "--set", f"tofu_platform={platform_file}",
             "--set", "train_retries=0"],
            env={**os.environ, NOTEBOOK_DIR_ENV: str(notebooks),
                 "PREFECT_HOME": str(home / "prefect")},
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "train" / "notebook.ipynb").is_file():
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started on the VM"
            time.sleep(0.5)
        time.sleep(2.0)  # the step is running on the VM's worker
        assert cloud.instances.alive(), "no instance process while training"
        stopped = time.monotonic()
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            _cancel_step(run_dir, "train")
        process.wait(timeout=300)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    # SIGTERM: the shell's 128 + 15; a cancelled step fails the run (exit 1).
    assert process.returncode == (143 if how == "sigterm" else 1), output[-3000:]
    summary = read_summary(run_dir)
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status["train"] == "failed" and status["export"] == "skipped", status
    assert status["teardown"] == "completed", status
    assert status == {
        "ingest": "completed", "preprocess": "completed", "calibrate": "completed",
        "provision": "completed", "train": "failed", "export": "skipped",
        "parity": "skipped", "quantize": "skipped", "teardown": "completed",
    }  # fmt: skip
    text = (run_dir / "train" / "notebook.ipynb").read_text()
    assert "time.sleep(300.0)" in text  # the stand-in ran on the VM, stopped mid-sleep
    state = json.loads((run_dir / "provision" / "train" / "state.json").read_text())
    assert state["destroyed"] is True
    assert not (run_dir / "provision" / "export").exists()  # no CPU VM after a stop
    (vm,) = summary["vms"]
    assert vm["destroy_finished"] is not None and vm["cost_usd"] > 0
    assert find_leaks(cloud.client("ec2"), cloud.instance_dir) == []
    assert processes_inside(run_dir) == []
    if how == "cancelled":
        _assert_failure_and_fallback_recorded(summary, run_dir, home, vm)
    print(f"\n{how}: stop to exit {took:.1f} s (destroy {vm['destroy_seconds']} s)")
