"""The parity gate: passes on faithful graphs, fails loudly on drift, refuses small samples."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ordinal.artifacts import open_storage
from ordinal.data.demo_images import make_shape_records
from ordinal.data.demo_text import make_review_records
from ordinal.export import GraphError, ParityError, export_onnx
from ordinal.export.parity import ParitySpec, check_parity, recheck_parity, run_onnx


@pytest.fixture(scope="module")
def held_out():
    return make_review_records(60, seed=1001)


def test_parity_passes_and_writes_labelled_reports(exported, held_out, tmp_path):
    model_dir, result = exported["bert-cumulative_link-probit"]
    report = check_parity(
        model_dir, result.onnx_path, held_out, ParitySpec.smoke(), tmp_path / "parity"
    )
    assert report.passed and report.label_agreement == 1.0
    assert report.title.startswith("NON-PRODUCTION")
    assert set(report.outputs) == {"latent", "ordinal_logits", "cum_probs", "probs"}
    assert all(s["max_abs"] <= ParitySpec().atol for s in report.outputs.values())
    markdown = report.files["markdown"].read_text()
    assert markdown.startswith("# NON-PRODUCTION") and "Worst 10 samples" in markdown
    summary = json.loads(report.files["json"].read_text())
    assert summary["num_samples"] == 60 and summary["passed"] is True
    with np.load(report.files["deltas"]) as deltas:
        assert deltas["probs"].shape == (60, 5)


@pytest.mark.parametrize("target", ["distilbert-coral", "roberta-corn"])
def test_parity_for_other_families(exported, held_out, tmp_path, target):
    model_dir, result = exported[target]
    assert check_parity(model_dir, result.onnx_path, held_out, ParitySpec.smoke(), tmp_path).passed


def test_parity_on_images(exported, tmp_path):
    model_dir, result = exported["vit-cumulative_link-cloglog"]
    records = make_shape_records(24, seed=3, image_size=32)
    assert check_parity(model_dir, result.onnx_path, records, ParitySpec.smoke(), tmp_path).passed


def test_fewer_than_500_samples_are_refused_in_production(exported, held_out):
    model_dir, result = exported["bert-cumulative_link-probit"]
    with pytest.raises(
        ValueError, match=r"at least 500 held-out samples, got 60.*ParitySpec.smoke"
    ):
        check_parity(model_dir, result.onnx_path, held_out)


def test_a_drifted_graph_fails_the_gate_with_diagnostics(exported, held_out, tmp_path):
    model_dir, result = exported["bert-cumulative_link-probit"]
    graph = onnx.load(str(result.onnx_path))
    for init in graph.graph.initializer:
        if init.name.endswith("d_cutpoints"):
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(1e-3), init.name)
            )
    drifted = tmp_path / "drifted.onnx"
    onnx.save(graph, str(drifted))
    with pytest.raises(ParityError, match="ordinal_logits: .* values beyond atol=1e-05") as info:
        check_parity(model_dir, drifted, held_out, ParitySpec.smoke(), tmp_path / "report")
    assert info.value.report == tmp_path / "report" / "parity.md"
    text = info.value.report.read_text()
    assert "**FAILED**" in text and "| ordinal_logits |" in text and "FAIL |" in text


def test_recheck_uses_the_stored_reference_and_detects_drift(exported, held_out, tmp_path):
    model_dir, result = exported["distilbert-coral"]
    check_parity(model_dir, result.onnx_path, held_out, ParitySpec.smoke())
    assert recheck_parity(result.onnx_path, ParitySpec.smoke()).passed
    reference = result.onnx_path.parent / "parity" / "reference.npz"
    with np.load(reference) as data:
        stored = {k: data[k] for k in data.files}
    stored["output/probs"] = stored["output/probs"] + 1e-3
    np.savez(reference, **stored)
    with pytest.raises(ParityError, match="parity recheck failed: probs"):
        recheck_parity(result.onnx_path, ParitySpec.smoke())


def test_recheck_without_reference_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no stored parity reference"):
        recheck_parity(tmp_path / "model.onnx")


def test_graph_input_names_must_match(exported):
    _, result = exported["bert-cumulative_link-probit"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.onnx_path))
    with pytest.raises(GraphError, match=r"needs inputs \['attention_mask', 'token_type_ids'\]"):
        run_onnx(session, {"input_ids": np.ones((2, 3), np.int64)}, 8)


@pytest.mark.slow
def test_production_parity_on_the_real_minilm(tmp_path):
    """The release gate as specified: the real MiniLM, 500 real held-out reviews, atol 1e-5."""
    from ordinal import build_ordinal_model, save_ordinal_model
    from ordinal.presets import resolve_model

    resolved = resolve_model("minilm")
    model = build_ordinal_model(resolved.source, 5, "cumulative_link")
    model_dir = save_ordinal_model(model, tmp_path / "minilm", resolved.processor)
    result = export_onnx(model_dir, "minilm-parity", storage=open_storage(str(tmp_path / "store")))
    records = make_review_records(500, seed=2024)
    report = check_parity(model_dir, result.onnx_path, records, ParitySpec.production())
    assert report.passed and not report.non_production
    assert report.num_samples == 500
    assert report.title == "Parity report: ONNX Runtime vs PyTorch"


def test_re_export_replaces_the_folder(exported, held_out, export_home):
    model_dir, result = exported["roberta-corn"]
    check_parity(model_dir, result.onnx_path, held_out[:10], ParitySpec.smoke())
    assert (result.onnx_path.parent / "parity" / "reference.npz").is_file()
    again = export_onnx(model_dir, "roberta-corn", storage=open_storage(str(export_home / "store")))
    assert not (again.onnx_path.parent / "parity" / "reference.npz").exists()  # nothing stale
    with pytest.raises(FileNotFoundError, match="no stored parity reference"):
        recheck_parity(again.onnx_path)
