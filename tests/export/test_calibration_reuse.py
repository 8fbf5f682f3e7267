"""`ordinal quantize` reuses the data layer's stored calibration set, verified against the
committed selection of its dataset version, and records it in the INT8 manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ordinal import TrainSpec, train_ordinal_model
from ordinal.artifacts import layout, load_verified_manifest, open_storage, sha256_bytes
from ordinal.data import (
    CalibrationError,
    CalibrationSpec,
    SelectionMismatchError,
    SelectionMissingError,
    calibrate,
    ingest,
    preprocess,
)
from ordinal.data.demo_text import make_review_records
from ordinal.export import export_onnx
from ordinal.export.quantize import load_calibration_set
from pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store_with_calibration(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    store = open_storage(str(root / "store"))
    ingest("demo-reviews", storage=store)
    preprocess("reviews", "v1", storage=store)
    calibrate("reviews", "v1", spec=CalibrationSpec(size=200), storage=store)
    return root, store


COMMITTED = REPO / "calibration" / "reviews@v1.yaml"


def test_load_calibration_set_matches_the_committed_selection(
    store_with_calibration, tmp_path, monkeypatch
):
    _, store = store_with_calibration
    monkeypatch.chdir(tmp_path)  # the default folder is the project's, not ./calibration
    monkeypatch.delenv("ORDINAL_CALIBRATION_DIR", raising=False)
    calibration = load_calibration_set("reviews", store)
    assert len(calibration.records) == 200
    assert {"id", "text", "label"} <= set(calibration.records[0])
    manifest_bytes = store.get_bytes(layout.calibration_manifest("reviews"))
    assert calibration.manifest_sha256 == sha256_bytes(manifest_bytes)
    assert calibration.version == "v1"
    assert calibration.selection_path == str(COMMITTED)
    assert calibration.selection_status == "committed"
    assert load_calibration_set("reviews", store, version="v1").records == calibration.records


def test_a_selection_that_differs_is_refused(store_with_calibration, tmp_path):
    _, store = store_with_calibration
    committed = COMMITTED.read_text()
    first_id = next(line for line in committed.splitlines() if line.startswith("- rev-"))
    (tmp_path / "reviews@v1.yaml").write_text(committed.replace(first_id, "- rev-999999"))
    with pytest.raises(SelectionMismatchError) as info:
        load_calibration_set("reviews", store, selection_dir=tmp_path)
    assert info.value.diff.added == (first_id.removeprefix("- "),)
    assert info.value.diff.removed == ("rev-999999",)
    assert "ids: committed 200, stored 200; 1 added, 1 removed" in str(info.value)


def test_a_missing_committed_selection_is_not_skipped(store_with_calibration, tmp_path):
    _, store = store_with_calibration
    with pytest.raises(SelectionMissingError, match="--propose"):
        load_calibration_set("reviews", store, selection_dir=tmp_path)
    with pytest.raises(SelectionMissingError, match=r"reviews@v1\.yaml does not exist"):
        load_calibration_set("reviews", store, proposal_dir=tmp_path)
    with pytest.raises(CalibrationError, match="drawn from reviews/v1, not reviews/v2"):
        load_calibration_set("reviews", store, version="v2")


def test_quantize_command_end_to_end(store_with_calibration, monkeypatch):
    root, store = store_with_calibration
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(root / "store"))
    records = make_review_records(600, seed=7)
    spec = TrainSpec.quick(output_dir=root / "run", max_steps=40, eval_each_epoch=False)
    trained = train_ordinal_model(spec, records[:400])
    export_onnx(trained.model_dir, "reviews-int8", storage=store)
    data = root / "held-out.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records[400:]))
    result = CliRunner().invoke(
        app,
        # 200 held-out records: below the gate's production minimum, so a labelled check.
        [
            "quantize",
            "reviews-int8",
            "--calibration",
            "reviews",
            "--data",
            str(data),
            "--non-production",
        ],
    )
    # The tiny model predicts little, so the gate may fail on MAE; the exit status must then
    # say so, and either way the calibration set must have been reused and recorded.
    assert result.exit_code in (0, 1), result.output
    assert ("INT8 gate FAILED" in result.output) == (result.exit_code == 1), result.output
    assert "vs FP32 on 200 held-out samples" in result.output  # the preset is the default
    manifest = load_verified_manifest(
        store,
        layout.join(layout.onnx_dir("reviews-int8", "int8"), layout.MANIFEST_NAME),
        phase="quantize",
    )
    assert manifest.parameters["calibration_dataset"] == "reviews"
    assert manifest.parameters["quantization"]["attention"] == "dynamic"
    assert manifest.record_counts["calibration_samples"] == 200
    assert manifest.parameters["calibration_manifest_sha256"] == sha256_bytes(
        store.get_bytes(layout.calibration_manifest("reviews"))
    )
