"""The real pipeline, end to end, with the real step notebooks and small parameters.

Text: tiny BERT on the demo reviews, compute steps on the run's own Prefect worker. Image:
the same command with ``--source demo-shapes-large`` (a tiny ViT), steps in-process. A third
test kills the training kernel after a checkpoint and checks the retried task resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.pipelines.helpers import mlflow_runs, ordinal_run, processes_inside, read_summary

pytestmark = pytest.mark.slow

STEP_NAMES = ["ingest", "preprocess", "calibrate", "train", "export", "parity", "quantize"]


def test_text_pipeline_on_a_worker(home):
    """The default INT8 preset (fused) and enough steps for tiny BERT to learn the reviews."""
    done = ordinal_run(
        "--run-id", "e2e-text", "--model", "bert-tiny", "--max-steps", "300",
        "--compute", "worker",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = home / "runs" / "e2e-text"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["compute"] == "Prefect worker ordinal-e2e-text on compute/run-e2e-text"
    assert all(s["status"] == "completed" for s in summary["steps"])
    assert [s["step"] for s in summary["steps"]] == [
        *STEP_NAMES[:3], "provision", *STEP_NAMES[3:], "teardown"
    ]  # fmt: skip
    for name in STEP_NAMES:
        assert (run_dir / name / "notebook.html").is_file(), name
        assert (run_dir / name / "notebook.ipynb").is_file(), name
    index = (run_dir / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{name}/notebook.html"' in index for name in STEP_NAMES)
    assert 'href="parity/' in index  # the parity report is linked
    out = " ".join(done.stdout.split())
    assert f"index page: {run_dir / 'index.html'}" in out
    assert "open the MLflow UI with" in out
    # Training progress is relayed from the worker's kernel to the console as it happens.
    assert "train progress: step 300/300 (100%)" in out
    assert processes_inside(run_dir) == []

    # MLflow: one parent run, a nested run per step, stable metric names, artefacts.
    runs = {r.info.run_name: r for r in mlflow_runs(home)}
    parent = runs["e2e-text"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ordinal.dataset"] == "reviews/v1"
    assert parent.data.tags["mlflow.source.git.commit"]
    for name in STEP_NAMES:
        assert runs[name].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert runs[name].info.status == "FINISHED"
    train = runs["train"].data.metrics
    assert {"eval_mae", "eval_qwk", "loss", "cutpoint_0", "train_samples_per_second"} <= set(train)
    # It learned: chance is QWK 0; tiny BERT reaches ~0.8 in 300 steps on the demo reviews.
    assert train["eval_qwk"] >= 0.6 and train["eval_mae"] < 0.7
    assert runs["parity"].data.metrics["parity_max_abs_delta"] <= 1e-5
    assert runs["parity"].data.metrics["parity_num_samples"] == 500
    gate = runs["quantize"].data.metrics
    assert {"mae_int8", "int8_mae_change", "latency_ms_int8"} <= set(gate)
    assert gate["int8_gate_samples"] == 500
    assert gate["int8_mae_delta_low"] <= gate["int8_mae_delta"] <= gate["int8_mae_delta_high"]
    assert gate["int8_mae_delta_low"] <= gate["int8_mae_margin"]  # the gate passed
    int8_manifest = json.loads((run_dir / "quantize" / "manifest.json").read_text())
    assert int8_manifest["parameters"]["quantization"]["fuse_graph"] is True  # the fused preset
    assert "seconds_train" in parent.data.metrics

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(runs["parity"].info.run_id, "notebook")}
    assert logged == {"notebook/notebook.html", "notebook/notebook.ipynb"}
    review = {a.path for a in client.list_artifacts(parent.info.run_id, "review")}
    assert "review/index.html" in review

    # The loss curve has more than one point (logged at the trainer's steps).
    history = client.get_metric_history(runs["train"].info.run_id, "loss")
    assert len(history) >= 2
    # Prefect shows a markdown summary per step.
    check = subprocess.run(
        [sys.executable, "-c", _READ_ARTIFACTS],
        env={**os.environ, "PREFECT_HOME": str(home / "prefect")},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    keys = set(json.loads(check.stdout.strip().splitlines()[-1]))
    assert {f"e2e-text-{name}" for name in STEP_NAMES} <= keys


_READ_ARTIFACTS = """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    print(json.dumps([a.key for a in client.read_artifacts() if a.key]))
"""


def _user_image_folder(folder: Path, n: int) -> None:
    """A user's image folder: its own ``labels.csv`` columns, label names and a broken row."""
    import csv

    from ordinal.data.demo_images import write_shapes

    write_shapes(folder, n=n, seed=11, image_size=64)
    names = ["one", "two", "three", "four", "five"]
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (folder / "labels.csv").open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["image_id", "path", "count"])
        for row in rows:
            out.writerow([row["id"], row["file"], names[int(row["label"])]])
        out.writerow(["ghost", "images/missing.png", "two"])  # a row naming no image


def test_image_pipeline_on_a_users_own_folder(home, tmp_path):
    """A user's image folder (own columns, label names, a broken row) registered with
    ``add-source`` and run through the whole pipeline: the ViT default, the INT8 preset the
    family gets (static QDQ; ``fused`` does not apply to ViT graphs), a proposed
    calibration selection (a new dataset has none committed yet)."""
    from tests.pipelines.helpers import ORDINAL

    work = tmp_path / "project"
    _user_image_folder(work / "shapes", n=1000)
    added = subprocess.run(
        [str(ORDINAL), "data", "add-source", "shapes", "--name", "my-shapes", "--dataset",
         "counts", "--labels", "one,two,three,four,five", "--id-column", "image_id",
         "--file-column", "path", "--label-column", "count",
         "--licence", "CC0-1.0", "--owner", "imaging team"],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]
    done = ordinal_run(
        "--source", "my-shapes", "--run-id", "e2e-image", "--max-steps", "30",
        "--compute", "in-process", "--set", "propose_calibration=true",
        "--set", "non_production=true", "--set", "parity_samples=150",
        "--set", f"registry={work / 'sources' / 'approved.yaml'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = home / "runs" / "e2e-image"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["compute"] == "in-process (asked for)"
    pre = json.loads((run_dir / "preprocess" / "preprocess_report.json").read_text())
    assert pre["record_counts"]["raw"] == 1001 and pre["rejected_by_reason"] == {"missing_file": 1}
    runs = {r.info.run_name: r for r in mlflow_runs(home)}
    assert runs["e2e-image"].data.params["train.model"] == "vit-shapes"
    assert runs["e2e-image"].data.tags["ordinal.dataset"] == "counts/v1"
    config = json.loads((run_dir / "train" / "model" / "config.json").read_text())
    assert config["ordinal"]["label_names"] == ["one", "two", "three", "four", "five"]
    assert runs["parity"].data.metrics["parity_num_samples"] == 150
    quantization = json.loads((run_dir / "quantize" / "manifest.json").read_text())
    assert quantization["parameters"]["quantization"]["fuse_graph"] is False  # auto: static
    assert quantization["parameters"]["quantization"]["mode"] == "static"
    assert runs["quantize"].data.metrics["int8_gate_samples"] == 150
    assert (run_dir / "calibrate" / "proposed" / "counts@v1.yaml").is_file()


def _kill_kernel_after_checkpoint(checkpoints: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if any((c / "trainer_state.json").is_file() for c in checkpoints.glob("checkpoint-*")):
            for child in psutil.Process().children(recursive=True):
                try:
                    if "ipykernel_launcher" in " ".join(child.cmdline()):
                        child.kill()
                        killed.append(child.pid)
                except psutil.Error:  # a child that exited (or a zombie) meanwhile
                    continue
            return
        time.sleep(0.05)


def test_a_retried_training_task_resumes_from_its_checkpoint(home):
    from prefect import flow

    from ordinal.data import ingest, preprocess
    from pipelines.tasks import run_notebook

    ingest("demo-reviews")
    preprocess("reviews", "v1")
    run_dir = home / "runs" / "retry"
    params = {
        "run_dir": str(run_dir), "model": "bert-tiny", "max_steps": 120, "save_steps": 10,
        "batch_size": 8,
    }  # fmt: skip

    @flow(name="retry-training")
    def retry_training():
        task = run_notebook.with_options(retries=1, retry_delay_seconds=0)
        return task("train", params)

    killed: list[int] = []
    watcher = threading.Thread(
        target=_kill_kernel_after_checkpoint, args=(run_dir / "train" / "checkpoints", killed)
    )
    watcher.start()
    result = retry_training()
    watcher.join()
    assert killed, "the kernel finished before a checkpoint was seen"
    assert result.outputs["resumed_from"] is not None
    assert "checkpoint-" in result.outputs["resumed_from"]
    assert result.outputs["global_step"] == 120
