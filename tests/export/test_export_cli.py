"""`ordinal export | parity | parity-recheck` from the command line."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app
from tests.export.conftest import build_tiny

runner = CliRunner()


def test_export_then_parity_then_recheck(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    model_dir = build_tiny("bert", "cumulative_link", {"link": "logit"}, tmp_path / "model")
    result = runner.invoke(app, ["export", str(model_dir), "--experiment", "cli-exp"])
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "store" / "models" / "onnx" / "cli-exp" / "fp32" / "model.onnx"
    assert f"model: {onnx_path}" in result.output and "cum_probs" in result.output

    refused = runner.invoke(app, ["parity", str(model_dir), str(onnx_path), "--demo-size", "40"])
    assert refused.exit_code == 2
    assert "at least 500 held-out samples, got 40" in " ".join(refused.output.split())

    ok = runner.invoke(
        app, ["parity", str(model_dir), str(onnx_path), "--demo-size", "40", "--non-production"]
    )
    assert ok.exit_code == 0, ok.output
    assert "NON-PRODUCTION" in ok.output and "label agreement" in ok.output

    recheck = runner.invoke(app, ["parity-recheck", str(tmp_path / "store" / "models" / "onnx")])
    assert recheck.exit_code == 0, recheck.output
    assert "ok" in recheck.output and "40 samples" in recheck.output

    empty = runner.invoke(app, ["parity-recheck", str(tmp_path / "nothing")])
    assert empty.exit_code == 2

    missing = runner.invoke(app, ["quantize", "nope", "--calibration", "reviews"])
    assert missing.exit_code == 2 and "run `ordinal export` first" in missing.output
