"""A completed pipeline run built from real library calls, laid out as the step notebooks lay it.

The pipeline itself (Prefect, papermill, a worker) is not started: each step's library call is
made directly and its ``outputs.json`` written exactly as the notebook writes it
(``notebooks/0*_*.ipynb``), so the run folder the release code reads is the real format.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ordinal.artifacts import layout, open_storage
from ordinal.data import ingest, load_registry
from ordinal.data.demo_text import make_review_records
from ordinal.export import export_onnx
from ordinal.export.parity import ParitySpec, check_parity
from ordinal.export.quantize import CalibrationSet, QuantizeSpec, evaluate_int8, quantize_onnx
from ordinal.runs import write_step_outputs
from tests.export.conftest import build_tiny

REPO = Path(__file__).resolve().parents[2]


def make_run(
    root: Path,
    run_id: str = "run-20260101-000000",
    *,
    storage_url: str | None = None,
    head: str = "cumulative_link",
    options: dict | None = None,
    int8: bool = True,
    status: str = "completed",
    model_dir: Path | None = None,
    family: str = "bert",
) -> Path:
    """Train nothing, export a tiny random BERT, gate it, quantise it; return the run folder."""
    store = open_storage(storage_url or str(root / "store"))
    run_dir = root / "runs" / run_id
    registry = load_registry()
    source = "demo-shapes" if family == "vit" else "demo-reviews"
    result = ingest(source, registry=registry, storage=store)
    spec = registry.get(source)
    write_step_outputs(
        run_dir,
        "ingest",
        {
            "step": "ingest",
            "dataset": spec.dataset,
            "version": spec.version,
            "manifest": result.manifest_key,
            "metrics": {},
            "artifacts": [],
        },
    )
    write_step_outputs(
        run_dir, "preprocess", {"step": "preprocess", "metrics": {"records_validation": 300.0}}
    )
    if model_dir is None:
        model_dir = build_tiny(
            family, head, options or {"link": "logit"}, run_dir / "train" / "model"
        )
    write_step_outputs(
        run_dir,
        "train",
        {
            "step": "train",
            "dataset": spec.dataset,
            "version": spec.version,
            "model_dir": str(model_dir),
            "metrics": {
                "eval_mae": 1.2,
                "eval_qwk": 0.1,
                "eval_accuracy": 0.3,
                "global_step": 20.0,
            },
        },
    )
    (run_dir / "train" / "result.json").write_text(
        json.dumps(
            {
                "step": "train",
                "ok": True,
                "params": {"max_length": 64, "storage": storage_url or str(root / "store")},
            }
        )
    )
    experiment = run_id
    exported = export_onnx(
        model_dir, experiment, storage=store, dataset=spec.dataset, dataset_version=spec.version
    )
    model_key = layout.join(exported.key_prefix, "model.onnx")
    onnx_path = store.local_path(model_key)
    if onnx_path is None:  # remote storage: a local copy of the FP32 folder, as 07 does
        for key in store.list(exported.key_prefix):
            store.download(key, run_dir / "export" / "fp32" / key.rsplit("/", 1)[-1])
        onnx_path = run_dir / "export" / "fp32" / "model.onnx"
    write_step_outputs(
        run_dir,
        "export",
        {
            "step": "export",
            "experiment": experiment,
            "onnx_path": str(onnx_path),
            "manifest": layout.join(exported.key_prefix, "manifest.json"),
            "metrics": {},
        },
    )
    if family == "vit":
        from ordinal.data.demo_images import make_shape_records

        # A labelled non-production parity check keeps the image run short.
        held_out = make_shape_records(64, seed=1001, image_size=32)
    else:
        held_out = make_review_records(500, seed=1001)
    report = check_parity(
        model_dir,
        onnx_path,
        held_out,
        ParitySpec(max_length=64, non_production=len(held_out) < 500),
    )
    write_step_outputs(
        run_dir,
        "parity",
        {
            "step": "parity",
            "report_json": str(report.files["json"]),
            "report_markdown": str(report.files["markdown"]),
            "metrics": {},
        },
    )
    if int8:
        # Dynamic INT8 needs no calibration set; a random tiny model's MAE may move freely,
        # so the test gate only asks that the report is produced (the gate's maths is tested
        # in tests/export).
        qspec = QuantizeSpec.dynamic().model_copy(
            update={"prob_atol": None, "max_mae_increase": 10.0, "latency_runs": 1}
        )
        int8_path, _ = quantize_onnx(
            onnx_path.parent,
            CalibrationSet(records=[], dataset=spec.dataset),
            experiment,
            spec=qspec,
            storage=store,
        )
        int8_path = int8_path or store.download(
            layout.join(layout.onnx_dir(experiment, "int8"), "model.onnx"),
            run_dir / "quantize" / "int8" / "model.onnx",
        )
        int8_report = evaluate_int8(onnx_path, int8_path, held_out, qspec)
        report_json = run_dir / "quantize" / "int8_report.json"
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(int8_report.to_json() + "\n")
        write_step_outputs(
            run_dir,
            "quantize",
            {
                "step": "quantize",
                "experiment": experiment,
                "int8_path": str(int8_path),
                "report_json": str(report_json),
                "metrics": {},
            },
        )
    summary = {"run_id": run_id, "run_dir": str(run_dir), "status": status, "steps": []}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    stamp = time.mktime((2026, 1, 1, 0, 0, 0, 0, 0, 0))
    import os

    os.utime(run_dir / "summary.json", (stamp, stamp))
    return run_dir
