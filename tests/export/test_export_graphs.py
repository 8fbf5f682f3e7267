"""Exported graphs match their golden expectations and run at several batch/sequence sizes.

Update a golden file only after checking the new signature by hand:
``ORDINAL_UPDATE_GOLDEN=1 pytest tests/export/test_export_graphs.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ordinal.artifacts import layout, load_verified_manifest, open_storage, sha256_file
from ordinal.export import graph_signature, load_onnx, signature_differences
from ordinal.export.onnx_export import CONFIG_DIR
from tests.export.conftest import TARGETS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "graphs"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_signature_matches_golden(exported, target):
    signature = graph_signature(load_onnx(exported[target][1].onnx_path))
    golden = GOLDEN / f"{target}.json"
    if os.environ.get("ORDINAL_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(signature, indent=2) + "\n")
    assert signature_differences(signature, json.loads(golden.read_text())) == []


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_graph_runs_with_varying_batch_and_sequence(exported, target):
    session = ort.InferenceSession(str(exported[target][1].onnx_path))
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        for length in (5, 37):
            feed = {}
            for spec in session.get_inputs():
                if spec.name == "pixel_values":
                    feed[spec.name] = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
                elif spec.name == "attention_mask":
                    feed[spec.name] = np.ones((batch, length), np.int64)
                elif spec.name == "token_type_ids":
                    feed[spec.name] = np.zeros((batch, length), np.int64)
                else:
                    feed[spec.name] = rng.integers(5, 1000, (batch, length)).astype(np.int64)
            out = dict(
                zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True)
            )
            assert out["probs"].shape == (batch, 5)
            assert out["label"].shape == (batch,) and out["label"].dtype == np.int64
            np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=1e-5)


def test_manifest_records_config_git_signature_and_checksums(exported, export_home):
    model_dir, result = exported["bert-cumulative_link-probit"]
    storage = open_storage(str(export_home / "store"))
    manifest = load_verified_manifest(
        storage, layout.join(result.key_prefix, layout.MANIFEST_NAME), phase="export"
    )
    params = manifest.parameters
    config = CONFIG_DIR / "text-classification.yaml"
    assert params["export_config"] == "configs/export/text-classification.yaml"
    assert params["export_config_sha256"] == sha256_file(config).sha256
    assert params["opset"] == 18
    assert params["link"] == "probit"
    saved = json.loads((model_dir / "config.json").read_text())["ordinal"]
    assert params["cutpoints"] == saved["cutpoints"]
    assert params["signature"] == result.signature
    assert manifest.git.sha is None or len(manifest.git.sha) == 40
    roles = {entry.path.rsplit("/", 1)[-1]: entry.role for entry in manifest.outputs}
    assert roles["model.onnx"] == "model" and roles["ordinal.json"] == "metadata"
    assert "tokenizer.json" in roles  # a consumer gets the tokenizer with the graph
