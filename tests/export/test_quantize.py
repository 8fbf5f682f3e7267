"""Static INT8 on a calibration set, its manifest, and the INT8 accuracy gate."""

from __future__ import annotations

import shutil

import onnx
import pytest

from ordinal import TrainSpec, metrics, train_ordinal_model
from ordinal.artifacts import layout, load_verified_manifest, open_storage
from ordinal.artifacts.checksums import sha256_file
from ordinal.export import QuantizationError, export_onnx
from ordinal.export.quantize import (
    CalibrationSet,
    QuantizeSpec,
    evaluate_int8,
    mae_gate,
    quantize_onnx,
)
from tests.helpers.keyword_data import keyword_records


@pytest.fixture(scope="module")
def trained_fp32(tmp_path_factory):
    """A tiny BERT trained on the keyword task, exported to FP32."""
    root = tmp_path_factory.mktemp("int8")
    records = keyword_records(800, seed=0)
    spec = TrainSpec.quick(
        output_dir=root / "run",
        max_steps=150,
        learning_rate=5e-3,
        eval_each_epoch=False,
        logging_steps=50,
    )
    result = train_ordinal_model(spec, records[:400])
    storage = open_storage(str(root / "store"))
    exported = export_onnx(result.model_dir, "kw", storage=storage)
    return exported, storage, records


@pytest.mark.parametrize(
    "spec",
    [QuantizeSpec.avx512_vnni(), QuantizeSpec.fused_vnni(), QuantizeSpec.dynamic()],
    ids=["static", "fused-static", "dynamic"],
)
def test_int8_passes_the_accuracy_gate(trained_fp32, spec):
    exported, storage, records = trained_fp32
    calibration = CalibrationSet(records[:120], "keywords", "a" * 64, "b" * 64)
    int8_path, _ = quantize_onnx(exported.directory, calibration, "kw", spec=spec, storage=storage)
    assert (
        int8_path.parent.name == "int8"
        and int8_path.stat().st_size < exported.onnx_path.stat().st_size
    )
    report = evaluate_int8(exported.onnx_path, int8_path, records[400:800], spec.smoke())
    assert report.passed, report.failures
    assert report.non_production and report.mae_delta["n"] == 400
    assert report.mae_delta["low"] <= report.mae_delta["estimate"] <= report.mae_delta["high"]
    assert report.verdict in ("equivalent", "inconclusive")
    assert report.fp32["mae"] < 0.5  # the model learnt the task, so the gate is meaningful
    assert report.max_prob_delta <= spec.prob_atol
    assert report.latency_ms["int8"] > 0 and report.num_samples == 400
    stored = load_verified_manifest(
        storage, layout.join(layout.onnx_dir("kw", "int8"), layout.MANIFEST_NAME), phase="quantize"
    )
    assert stored.parameters["quantization"]["mode"] == spec.mode
    assert stored.parameters["quantization"]["fuse_graph"] == spec.fuse_graph
    assert stored.parameters["calibration_manifest_sha256"] == "a" * 64
    assert stored.record_counts["calibration_samples"] == 120
    assert stored.inputs[0].role == "fp32-model"


def test_a_downloaded_fp32_copy_is_recorded_by_its_storage_key(trained_fp32, tmp_path):
    """On S3 the quantise step works from a local download of the FP32 folder: the INT8
    manifest names the stored model, not the download; a graph from elsewhere keeps its path."""
    exported, storage, records = trained_fp32
    copy = shutil.copytree(exported.directory, tmp_path / "download")
    calibration = CalibrationSet(records[:100], "keywords")
    spec = QuantizeSpec.dynamic()
    for experiment, named in (("kw", "models/onnx/kw/fp32/model.onnx"), ("elsewhere", None)):
        _, manifest = quantize_onnx(copy, calibration, experiment, spec=spec, storage=storage)
        source = manifest.inputs[0]
        assert source.path == (named or str((copy / "model.onnx").resolve()))
        assert source.sha256 == sha256_file(exported.onnx_path).sha256
    # Same experiment, other bytes (an edited graph): named by where it really is.
    graph = onnx.load(copy / "model.onnx")
    graph.doc_string = "edited after export"
    onnx.save(graph, copy / "model.onnx")
    _, manifest = quantize_onnx(copy, calibration, "kw", spec=spec, storage=storage)
    assert manifest.inputs[0].path == str((copy / "model.onnx").resolve())


def test_gate_fails_when_thresholds_are_impossible(trained_fp32):
    exported, storage, records = trained_fp32
    spec = QuantizeSpec(prob_atol=1e-9)
    int8_path, _ = quantize_onnx(
        exported.directory,
        CalibrationSet(records[:100], "keywords"),
        "kw",
        spec=spec,
        storage=storage,
    )
    report = evaluate_int8(exported.onnx_path, int8_path, records[400:500], spec.smoke())
    assert not report.passed
    assert any("class probabilities differ" in f for f in report.failures)
    # A production gate refuses to judge on fewer samples than it needs.
    with pytest.raises(QuantizationError, match="needs at least 500 held-out samples, got 100"):
        evaluate_int8(exported.onnx_path, int8_path, records[400:500], spec)


def _shifted(labels, every, by=1, k=10):
    return [min(v + by, k - 1) if i % every == 0 else v for i, v in enumerate(labels)]


def test_mae_gate_reads_an_interval_that_one_sample_cannot_flip():
    """The case that failed a real run: 10 classes, 142 samples, one prediction moved by one
    class (+1.41% MAE). A point-estimate gate at 1% failed it; the interval gate does not."""
    labels = list(range(10)) * 14 + [0, 9]
    fp32 = _shifted(labels, every=2)  # MAE ~0.45
    int8 = list(fp32)
    int8[1] += 1
    delta, margin, verdict = mae_gate(labels, fp32, int8)
    assert delta.estimate == pytest.approx(1 / 142)
    assert delta.estimate / metrics.mae(labels, fp32) > 0.01  # the old gate's failure
    assert verdict != "worse" and delta.low <= margin

    # A real degradation on a production-sized sample is caught: every 5th sample moves.
    labels = list(range(10)) * 50
    fp32 = _shifted(labels, every=4)
    int8 = _shifted(fp32, every=5)
    delta, margin, verdict = mae_gate(labels, fp32, int8)
    assert verdict == "worse" and delta.low > margin

    # Identical predictions are equivalent; the same inputs give the same interval.
    assert mae_gate(labels, fp32, fp32)[2] == "equivalent"
    assert mae_gate(labels, fp32, int8)[0] == delta
    assert mae_gate(labels, fp32, int8, QuantizeSpec(seed=1))[0] != delta


def test_calibration_smaller_than_100_is_refused(trained_fp32):
    exported, storage, records = trained_fp32
    with pytest.raises(QuantizationError, match="has 99 samples; static INT8 needs at least 100"):
        quantize_onnx(
            exported.directory, CalibrationSet(records[:99], "keywords"), "kw", storage=storage
        )


def test_fused_spec_is_validated():
    with pytest.raises(ValueError, match="attention='dynamic' needs fuse_graph=True"):
        QuantizeSpec(attention="dynamic")
    with pytest.raises(ValueError, match="mode='dynamic' quantises Attention through op_types"):
        QuantizeSpec(mode="dynamic", fuse_graph=True, attention="dynamic")
