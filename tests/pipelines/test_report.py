"""The index page leads with the verdict: parameters, gate headlines, figures, then steps."""

from __future__ import annotations

from pipelines.flow import PipelineSummary, StepRecord
from pipelines.report import headline, write_index


def _summary(tmp_path, parity_status="completed", quantize_status="completed"):
    figure = tmp_path / "train" / "loss.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG\r\n\x1a\n")
    steps = [
        StepRecord(
            "train",
            "completed",
            metrics={"eval_mae": 0.41, "eval_qwk": 0.83, "global_step": 300.0},
            figures={"loss": {"path": str(figure), "alt": "Training loss falling to 0.7"}},
        ),
        StepRecord(
            "parity",
            parity_status,
            metrics={
                "parity_max_abs_delta": 3.8e-6,
                "parity_num_samples": 500.0,
                "parity_label_agreement": 1.0,
            }
            if parity_status == "completed"
            else {},
        ),
        StepRecord(
            "quantize",
            quantize_status,
            metrics={
                "mae_fp32": 0.300,
                "qwk_fp32": 0.924,
                "int8_mae_delta": 0.002,
                "int8_mae_delta_low": -0.004,
                "int8_mae_delta_high": 0.008,
                "int8_gate_samples": 500.0,
                "int8_mae_margin": 0.003,
                "latency_ms_fp32": 40.0,
                "latency_ms_int8": 20.0,
            },
        ),
    ]
    return PipelineSummary(
        run_id="r1", run_dir=str(tmp_path), status="completed", compute="in-process",
        steps=steps, index=str(tmp_path / "index.html"), tracking_uri=None, mlflow_run=None,
        seconds=12.0,
        parameters={"source": "my-ratings", "dataset": "ratings/v1", "modality": "text",
                    "model": "bert-tiny", "head": "cumulative_link", "link": "logit",
                    "max_steps": 300, "epochs": 2.0, "seed": 0, "storage": "local store",
                    "git_sha": "a" * 40, "git_dirty": False, "non_production": False},
    )  # fmt: skip


def test_headline_reads_each_gate_with_its_sample_count_and_interval(tmp_path):
    rows = {r["what"]: r for r in headline(_summary(tmp_path))}
    assert rows["FP32 model (ONNX) on held-out data"]["value"] == "MAE 0.300 · QWK 0.924"
    parity = rows["Parity, ONNX Runtime vs PyTorch"]
    assert parity["value"] == "max |delta| 3.8e-06" and "n = 500" in parity["detail"]
    int8 = rows["INT8 vs FP32"]
    assert int8["value"] == "ΔMAE +0.0020 [-0.0040, +0.0080]"
    assert "n = 500" in int8["detail"] and "2.00x faster" in int8["detail"]
    assert {r["status"] for r in rows.values()} == {"passed"}


def test_a_failed_gate_leads_the_page_and_the_figures_come_before_the_steps(tmp_path):
    summary = _summary(tmp_path, parity_status="failed", quantize_status="skipped")
    rows = {r["what"]: r for r in headline(summary)}
    assert rows["Parity, ONNX Runtime vs PyTorch"]["status"] == "failed"
    index, _ = write_index(summary)
    html = index.read_text(encoding="utf-8")
    assert html.index("my-ratings") < html.index("Verdict") < html.index("<h2>Steps</h2>")
    assert 'alt="Training loss falling to 0.7"' in html
    assert html.index('src="train/loss.png"') < html.index("<h2>Steps</h2>")
    assert "a" * 40 in html and "FAILED" in html


def test_the_teardown_reads_as_sentences_not_a_dict(tmp_path):
    summary = _summary(tmp_path)
    summary.teardown = {
        "provisioner": "tofu",
        "vms": {  # as teardown_run lists them: the state folders' alphabetical order
            "export": {"error": "DependencyViolation", "instance_id": "i-bbb"},
            "train": {"already_destroyed": True, "instance_id": "i-aaa"},
        },
        "destroy_seconds": {"train i-aaa": 23.79, "export i-bbb": None},
        "embedded_cloud_stopped": True,
        "seconds": 0.68,
    }
    index, _ = write_index(summary)
    html = index.read_text(encoding="utf-8")
    teardown = html[html.index("<h2>Teardown</h2>") :]
    assert "<li>train VM i-aaa: destroyed in 23.8 s when its phase ended</li>" in teardown
    assert "<li>export VM i-bbb: destroy FAILED: DependencyViolation</li>" in teardown
    assert "{" not in teardown.split("Machine-readable")[0]  # no raw Python dict
    assert "nothing left running" not in teardown  # a destroy failed
    assert teardown.index("train VM") < teardown.index("export VM")  # the order they ran
