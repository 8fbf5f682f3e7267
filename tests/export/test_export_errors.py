"""Bad input to export: clear, typed errors that name the culprit."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForSequenceClassification, BertConfig

from ordinal import UnsupportedArchitectureError
from ordinal.export import ExportConfig, ExportError, GraphError, export_onnx, load_onnx


def test_missing_model_directory(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(tmp_path / "nope", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="has no config.json"):
        export_onnx(tmp_path / "empty", "x")


def test_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ExportError, match="cannot read"):
        export_onnx(tmp_path, "x")


def test_not_an_ordinal_model(tmp_path):
    small = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
    )
    AutoModelForSequenceClassification.from_config(small).save_pretrained(tmp_path)
    with pytest.raises(ExportError, match="no 'ordinal' section"):
        export_onnx(tmp_path, "x")


def test_unsupported_architecture_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "ordinal": {"head": "coral"}})
    )
    with pytest.raises(
        UnsupportedArchitectureError, match=r"'gpt2'.*supported model types: bert, distilbert"
    ):
        export_onnx(tmp_path, "x")


def test_corrupt_onnx_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(GraphError, match="is not a valid ONNX model"):
        load_onnx(bad)
    with pytest.raises(GraphError, match="no ONNX file"):
        load_onnx(tmp_path / "missing.onnx")


def test_export_config_is_validated(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("task: text-classification\nopset: 14\n")  # Shape(start, end) needs 15
    with pytest.raises(ExportError, match="invalid export config"):
        ExportConfig.load(config)
    with pytest.raises(ExportError, match="no export config"):
        ExportConfig.load(tmp_path / "missing.yaml")
    config.write_text(
        "task: text-classification\nopset: 17\noptimize: O2\nconstant_folding: false\n"
    )
    loaded, digest = ExportConfig.load(config)
    assert loaded.cli_args() == [
        "--task",
        "text-classification",
        "--opset",
        "17",
        "--optimize",
        "O2",
        "--no-constant-folding",
    ]
    assert len(digest) == 64
