"""The ``ordinal data`` typer sub-app, driven with CliRunner."""

from __future__ import annotations

import pytest
from dl_helpers import file_source, good_rows, make_registry, write_csv
from typer.testing import CliRunner

from ordinal.data.cli import data_app


@pytest.fixture
def env(tmp_path, monkeypatch):
    rows = [(f"r{i:04d}", "word " * (1 + i % 13) + str(i), i % 5) for i in range(400)]
    src = write_csv(tmp_path / "src" / "ds.csv", rows)
    bad = write_csv(
        tmp_path / "src" / "bad.csv", good_rows(50) + [(f"x{i}", "t", 9) for i in range(10)]
    )
    reg = make_registry(tmp_path / "r.yaml", [file_source(src, "ds"), file_source(bad, "bad")])
    monkeypatch.setenv("ORDINAL_SOURCES", str(reg))
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def _run(*args):
    return CliRunner().invoke(data_app, list(args))


def test_ingest_preprocess_calibrate(env):
    res = _run("ingest", "ds")
    assert res.exit_code == 0, res.output
    assert "ingested" in res.output
    assert "datasets/raw/ds/v1/manifest.json" in res.output
    res = _run("ingest", "ds")
    assert "already ingested (no-op)" in res.output
    res = _run("preprocess", "ds", "--version", "v1")
    assert res.exit_code == 0, res.output
    assert "accepted" in res.output
    assert "label distribution" in res.output
    cal = env / "cal"
    res = _run("calibrate", "ds", "--size", "100", "--selection-dir", str(cal))
    assert res.exit_code == 1  # no committed selection yet: the next step is --propose
    assert "--propose" in res.output
    res = _run("calibrate", "ds", "--size", "100", "--selection-dir", str(cal), "--propose")
    assert res.exit_code == 0, res.output
    assert (cal / "proposed" / "ds@v1.yaml").is_file()
    assert not (cal / "ds@v1.yaml").exists()
    assert "selected" in res.output
    (cal / "proposed" / "ds@v1.yaml").rename(cal / "ds@v1.yaml")
    res = _run("calibrate", "ds", "--size", "100", "--selection-dir", str(cal))
    assert res.exit_code == 0, res.output
    assert "matches the committed" in res.output
    res = _run("calibrate", "ds", "--size", "100", "--seed", "5", "--selection-dir", str(cal))
    assert res.exit_code == 1
    assert "spec.seed: committed 0, drawn 5" in res.output


def test_errors_exit_non_zero_with_a_message(env):
    res = _run("ingest", "nope")
    assert res.exit_code == 1
    assert "SourceNotApprovedError" in res.output
    res = _run("preprocess", "ds")
    assert res.exit_code == 1
    assert "manifest not found" in res.output
    assert _run("ingest", "bad").exit_code == 0
    res = _run("preprocess", "bad")
    assert res.exit_code == 1
    assert "RejectionThresholdError" in res.output
    assert _run("preprocess", "bad", "--max-rejected-fraction", "0.2").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("calibrate", "ds", "--size", "50"),
        ("preprocess", "ds", "--train", "0.9"),
        ("preprocess", "ds", "--format", "xml"),
    ],
)
def test_invalid_parameters_exit_2(env, args):
    res = _run(*args)
    assert res.exit_code == 2
    assert "ValidationError" in res.output


def test_parquet_output_through_the_cli(env):
    assert _run("ingest", "ds").exit_code == 0
    res = _run("preprocess", "ds", "--format", "parquet", "--no-dedupe")
    assert res.exit_code == 0, res.output
    assert (env / "store/datasets/processed/ds/v1/train/records.parquet").is_file()
    res = _run("calibrate", "ds", "--size", "100", "--selection-dir", str(env / "cal"), "--propose")
    assert res.exit_code == 0, res.output
