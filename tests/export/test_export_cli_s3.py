"""`ordinal data | export | parity | parity-recheck | quantize` on an ``s3://`` storage root.

Everything runs against a real ``moto_server`` (an S3-compatible HTTP server started on
loopback by the test, standing in for the stack's S3 bucket, which cannot exist here); the
commands reach it through ``$ORDINAL_S3_ENDPOINT_URL`` as they would reach AWS S3. What the
commands store is read back with a plain boto3 client, not through the library.
"""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipelines.cli import app
from tests.export.conftest import build_tiny
from tests.helpers.moto import moto_server

runner = CliRunner()
BUCKET = "ordinal-s3-cli"
ROOT = f"s3://{BUCKET}/team"
FP32 = "team/models/onnx/s3-exp/fp32"
PARITY_FILES = {"parity.json", "parity.md", "deltas.npz", "reference.npz"}


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A boto3 client on a fresh moto_server with one bucket; the commands' env points at it."""
    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    for var in ("ORDINAL_STORAGE_URL", "ORDINAL_SOURCES", "ORDINAL_CALIBRATION_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("COLUMNS", "200")
    with moto_server(tmp_path) as url:
        monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", url)
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _keys(client, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", [])}


def _get(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _code(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_every_library_command_on_an_s3_root(s3, tmp_path):
    # Data: the demo reviews ingested, preprocessed and calibrated into the bucket, checked
    # against the committed selection calibration/reviews@v1.yaml (the project's default).
    _ok("data", "ingest", "demo-reviews", "--storage", ROOT)
    _ok("data", "preprocess", "reviews", "--storage", ROOT)
    assert "matches the committed" in _ok("data", "calibrate", "reviews", "--storage", ROOT)
    assert "manifest.json" in _keys(s3, "team/datasets/processed/reviews/calibration")

    torch.manual_seed(0)
    model_dir = build_tiny("bert", "cumulative_link", {"link": "logit"}, tmp_path / "model")
    _ok("export", str(model_dir), "--experiment", "s3-exp", "--storage", ROOT)
    assert {"model.onnx", "manifest.json"} <= _keys(s3, FP32)

    common = ("--experiment", "s3-exp", "--storage", ROOT, "--demo-size", "40")
    # Both forms at once, or neither, is refused before anything runs.
    assert _code("parity", str(model_dir), str(tmp_path / "x.onnx"), *common)[0] == 2
    assert _code("parity", str(model_dir), "--non-production")[0] == 2
    code, out = _code("parity", str(model_dir), "--experiment", "nope", "--storage", ROOT)
    assert code == 2 and "no fp32 model for experiment 'nope'" in out

    # A failing gate (another model's weights) still stores its reports for the reviewer.
    torch.manual_seed(1)
    other = build_tiny("bert", "cumulative_link", {"link": "logit"}, tmp_path / "other")
    code, out = _code("parity", str(other), *common, "--non-production")
    assert code == 1 and "parity FAILED" in out
    assert PARITY_FILES <= _keys(s3, f"{FP32}/parity")
    assert json.loads(_get(s3, f"{FP32}/parity/parity.json"))["passed"] is False

    out = _ok("parity", str(model_dir), *common, "--non-production")
    assert "NON-PRODUCTION" in out and f"stored: {ROOT}/models/onnx/s3-exp/fp32/parity/" in out
    summary = json.loads(_get(s3, f"{FP32}/parity/parity.json"))
    assert summary["passed"] is True and summary["num_samples"] == 40
    with np.load(io.BytesIO(_get(s3, f"{FP32}/parity/reference.npz"))) as ref:
        assert len(ref["ids"]) == 40 and "output/probs" in ref.files

    # Recheck from the bucket, given as the argument or as --storage; its reports are stored.
    assert "40 samples" in _ok("parity-recheck", ROOT)
    assert "40 samples" in _ok("parity-recheck", "--storage", ROOT)
    assert json.loads(_get(s3, f"{FP32}/parity-recheck/parity.json"))["passed"] is True
    assert _code("parity-recheck", f"s3://{BUCKET}/empty")[0] == 2

    # Drift: the stored reference no longer matches what the stored graph computes.
    good = _get(s3, f"{FP32}/parity/reference.npz")
    with np.load(io.BytesIO(good)) as ref:
        arrays = {k: ref[k] for k in ref.files}
    arrays["output/probs"] = arrays["output/probs"] + 1e-3
    drifted = io.BytesIO()
    np.savez_compressed(drifted, **arrays)
    s3.put_object(Bucket=BUCKET, Key=f"{FP32}/parity/reference.npz", Body=drifted.getvalue())
    code, out = _code("parity-recheck", ROOT)
    assert code == 1 and "FAIL" in out and "probs" in out
    assert json.loads(_get(s3, f"{FP32}/parity-recheck/parity.json"))["passed"] is False
    s3.put_object(Bucket=BUCKET, Key=f"{FP32}/parity/reference.npz", Body=good)

    # Quantize from the bucket's FP32 model and calibration set; the INT8 model is stored.
    out = _ok(
        "quantize", "s3-exp", "--calibration", "reviews", "--storage", ROOT,
        "--non-production", "--demo-size", "40",
    )  # fmt: skip
    assert "INT8" in out and "NON-PRODUCTION" in out
    assert {"model.onnx", "manifest.json"} <= _keys(s3, "team/models/onnx/s3-exp/int8")


def test_experiment_form_on_a_local_store(tmp_path, monkeypatch):
    """The same commands on a local storage root: the reports stay beside the stored model."""
    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORDINAL_STORAGE_URL", raising=False)
    store = tmp_path / "store"
    torch.manual_seed(0)
    model_dir = build_tiny("bert", "cumulative_link", {"link": "logit"}, tmp_path / "model")
    _ok("export", str(model_dir), "--experiment", "loc", "--storage", str(store))
    args = ("--experiment", "loc", "--storage", str(store), "--demo-size", "30")
    assert "report:" in _ok("parity", str(model_dir), *args, "--non-production")
    fp32 = store / "models" / "onnx" / "loc" / "fp32"
    assert PARITY_FILES <= {p.name for p in (fp32 / "parity").iterdir()}
    assert "30 samples" in _ok("parity-recheck", "--storage", str(store))
    assert json.loads((fp32 / "parity-recheck" / "parity.json").read_text())["passed"] is True
    assert _code("parity-recheck", "--storage", str(tmp_path / "empty"))[0] == 2
