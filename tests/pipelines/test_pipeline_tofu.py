"""``ordinal run --provisioner tofu``: the pipeline's compute steps on VMs applied with Terraform.

Emulated at the boundary (nothing else is): ``moto_server`` on loopback is the AWS endpoint
(EC2, S3 for the Terraform state, IAM, STS), started once for the VM tests (the ``cloud``
fixture of ``tests/pipelines/conftest.py``); each instance's user-data
(the Prefect worker bootstrap) runs as a local process group tied to its instance id; the
fault injector in front of EC2 answers spot requests with AWS's own capacity errors; the
metadata stand-in serves ``spot/instance-action`` (IMDSv2) to each instance. Terraform, the
modules, the provisioner, the Prefect workers, the step notebooks, training, MLflow and the
teardown are real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ordinal.training import latest_checkpoint
from ordinal.training.spot import SpotSpec
from pipelines.provision import VmRecord, assert_sequential
from pipelines.provision.leaks import find_leaks
from pipelines.provision.prices import load_prices
from pipelines.provision.vms import write_platform
from pipelines.steps import NOTEBOOK_DIR, NOTEBOOK_DIR_ENV, STEPS
from tests.pipelines.helpers import (
    ORDINAL,
    mlflow_runs,
    ordinal_run,
    processes_inside,
    read_summary,
)
from tests.pipelines.toy_notebooks import write_toy_notebooks

pytestmark = pytest.mark.slow

# Training steps: enough that the warning (about a second in) lands mid-training.
MAX_STEPS = 60


@pytest.fixture
def platform_file(cloud, tmp_path):
    cloud.injector.disarm()
    cloud.metadata.clear()
    return write_platform(cloud.platform(), tmp_path / "platform.json")


def _assert_no_leaks(cloud):
    assert find_leaks(cloud.client("ec2"), cloud.instance_dir) == []
    done = subprocess.run(
        [str(ORDINAL), "infra", "leaks", "--endpoint", cloud.moto.url,
         "--instance-dir", str(cloud.instance_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _records(summary):
    return [VmRecord(**v) for v in summary["vms"]]


# Three VM lifecycles (apply ~40 s, destroy ~45 s each on a loaded 2-core machine) plus the
# real steps: 8-17 minutes there (17 on 3 xdist workers beside other heavy tests).
@pytest.mark.timeout(2400)
def test_tofu_run_resumes_training_after_a_spot_interruption(
    home, cloud, platform_file, monkeypatch, tmp_path, request
):
    """GPU VM (train) interrupted by the two-minute warning mid-training, a fresh GPU VM
    resumes from the checkpoint saved after the notice, then the CPU VM runs export, parity
    and quantize; every VM destroyed before the next apply; nothing leaks; the final metrics
    equal an uninterrupted training with the same seed.

    Steps 01-04 are the real notebooks (real data, real training, the real callback); export,
    parity and quantize are stand-ins here (the CPU VM's lifecycle is what this test is
    about; the real ones run on the local provisioner in test_pipeline_end_to_end), which
    keeps three VM lifecycles inside the suite's budget."""
    notebooks = write_toy_notebooks(tmp_path / "notebooks")
    for step in ("ingest", "preprocess", "calibrate", "train"):
        shutil.copy2(NOTEBOOK_DIR / STEPS[step].notebook, notebooks / STEPS[step].notebook)
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(notebooks))  # the VMs' workers inherit it
    monkeypatch.setenv("ORDINAL_SPOT_POLL_SECONDS", "0.5")  # the VMs inherit it
    cloud.metadata.interrupt_after(polls=3)  # ~1 s into the first training
    run_dir = home / "runs" / "tofu-spot"
    training_started = run_dir / "train" / "notebook.ipynb"
    baseline = _Baseline(training_started, "tofu-spot", MAX_STEPS, home / "runs" / "uninterrupted")
    request.addfinalizer(baseline.stop)
    done = ordinal_run(
        "--run-id", "tofu-spot", "--provisioner", "tofu", "--model", "bert-tiny",
        "--max-steps", str(MAX_STEPS), "--set", "non_production=true",
        "--set", f"tofu_platform={platform_file}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert all(s["status"] == "completed" for s in summary["steps"]), summary["steps"]

    # Three VMs, one after another: the interrupted GPU VM, its replacement, the CPU VM.
    vms = _records(summary)
    assert [(v.stage, v.instance_type, v.market) for v in vms] == [
        ("train", "g4dn.xlarge", "spot"),
        ("train", "g4dn.xlarge", "spot"),
        ("export", "c6i.xlarge", "spot"),
    ]
    assert len({v.instance_id for v in vms}) == 3
    # Each VM's worker polls its run's queue every 2 s (user-data; Prefect's default is 10 s).
    user_data = (cloud.instance_dir / vms[2].instance_id / "user-data.sh").read_text()
    assert "export PREFECT_WORKER_QUERY_SECONDS='2'" in user_data
    assert_sequential(vms)
    prices = load_prices()
    for vm in vms:
        assert vm.destroy_finished is not None and vm.billed_seconds >= 60
        assert vm.cost_usd == pytest.approx(
            vm.billed_seconds * prices.hourly("us-east-1", vm.instance_type, vm.market) / 3600,
            abs=1e-6,  # recorded to the micro-dollar
        )
        assert vm.cost_usd > 0
    # Cost per 1,000 training samples per class and market (pipelines.provision.cost): the
    # two GPU VMs count together; a first run has no baseline yet.
    checks = {c["instance_type"]: c for c in summary["provisioning"]["cost_checks"]}
    assert checks["g4dn.xlarge"]["vms"] == 2 and checks["c6i.xlarge"]["vms"] == 1
    assert checks["g4dn.xlarge"]["cost_usd"] == pytest.approx(vms[0].cost_usd + vms[1].cost_usd)
    assert {c["status"] for c in checks.values()} == {"no-baseline"}
    steps = {s["step"]: s for s in summary["steps"]}
    assert vms[1].instance_id in steps["train"]["where"]
    assert all(vms[2].instance_id in steps[s]["where"] for s in ("export", "parity", "quantize"))

    # The interruption: saved within the deadline, resumed there, little work lost.
    (interruption,) = summary["provisioning"]["interruptions"]
    assert interruption["instance_id"] == vms[0].instance_id
    assert 0 < interruption["step"] < MAX_STEPS
    assert interruption["seconds_to_save"] < SpotSpec().save_deadline_seconds
    # The checkpoint left the VM: uploaded (files.json, then its completion marker) to the
    # run's storage root, where a fresh VM without the old disk restores it from.
    uploaded = home / "store" / "models" / "checkpoints" / "tofu-spot"
    assert interruption["upload"]["bytes"] > 0, interruption
    step_name = f"checkpoint-{interruption['step']}"
    assert (uploaded / "complete" / f"{step_name}.json").is_file()
    files = json.loads((uploaded / step_name / "files.json").read_text())
    assert files["step"] == interruption["step"] and files["files"], files
    checkpoints = run_dir / "train" / "checkpoints"
    checkpoint = checkpoints / f"checkpoint-{interruption['step']}"  # rotated out since
    # The checkpoint cadence: the steps between two saves the trainer makes (save_steps).
    cadence = json.loads((latest_checkpoint(checkpoints) / "trainer_state.json").read_text())
    assert 0 <= interruption["steps_recomputed"] < cadence["save_steps"]
    outputs = json.loads((run_dir / "train" / "outputs.json").read_text())
    assert outputs["resumed_from"] == str(checkpoint) and outputs["global_step"] == MAX_STEPS
    print(
        f"\nVMs: {[(v.stage, v.apply_seconds, v.destroy_seconds, v.cost_usd) for v in vms]};"
        f" interruption {interruption}; teardown {summary['teardown'].get('seconds')} s;"
        f" run {summary['seconds']:.1f} s"
    )

    # The index page's VM table; MLflow's parent run.
    index = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "<h2>VMs</h2>" in index
    assert all(v.instance_id in index for v in vms) and "c6i.xlarge" in index
    runs = {r.info.run_name: r for r in mlflow_runs(home)}
    parent = runs["tofu-spot"]
    assert parent.data.params["provisioner"] == "tofu"
    assert parent.data.params["vm.0.train.instance_type"] == "g4dn.xlarge"
    assert parent.data.params["vm.2.export.instance_id"] == vms[2].instance_id
    assert parent.data.metrics["vm_cost_usd_total"] == pytest.approx(sum(v.cost_usd for v in vms))
    assert parent.data.metrics["spot_interruptions"] == 1

    # Teardown: every state destroyed, no instance or process left.
    for state in (run_dir / "provision").glob("*/state.json"):
        assert json.loads(state.read_text())["destroyed"] is True
    assert processes_inside(run_dir) == []
    _assert_no_leaks(cloud)

    # Same seed, no interruption: the same final metrics (the same notebook, run here while
    # the run waited on its VMs).
    reference = baseline.metrics()
    resumed = steps["train"]["metrics"]
    atol = SpotSpec().resume_metrics_atol
    # The trained cutpoints and the continuous losses, not only the rounded label metrics.
    compared = ("eval_loss", "eval_rps", "eval_mae", "eval_qwk", "eval_accuracy")
    for key in (*compared, *(k for k in reference if k.startswith("cutpoint_"))):
        assert resumed[key] == pytest.approx(reference[key], abs=atol), key


_BASELINE = """
import json, sys
from pipelines.flow import check_params, plan_steps
from pipelines.notebooks import execute_step

params = check_params({"run_id": sys.argv[1], "model": "bert-tiny", "max_steps": int(sys.argv[2])})
step = plan_steps(params)["train"].model_copy(update={"run_dir": sys.argv[3]})
print(json.dumps(execute_step("train", step).metrics))
"""


class _Baseline:
    """The uninterrupted training, started in a process of its own once the run's training
    has started on its VM (the data it reads are then in place), so it runs while the run
    waits on Terraform."""

    def __init__(self, started: Path, run_id: str, max_steps: int, run_dir: Path) -> None:
        self._argv = [sys.executable, "-c", _BASELINE, run_id, str(max_steps), str(run_dir)]
        self._started = started
        self._log = run_dir.parent / f"{run_dir.name}.log"
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._start, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        deadline = time.monotonic() + 1500
        while not self._started.is_file():
            if time.monotonic() > deadline or self._stopping.wait(0.5):
                return  # the run ended (or failed) before its training started
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("w") as log:  # a file, not a pipe: a full pipe would block it
            self._process = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT)

    def metrics(self) -> dict[str, float]:
        self._thread.join(timeout=60)
        assert self._process is not None, "the run's training never started"
        assert self._process.wait(timeout=900) == 0, self._log.read_text()[-3000:]
        return json.loads(self._log.read_text().strip().splitlines()[-1])

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
