"""The quarterly resilience rehearsals, for real: a checkpoint restore of a bert-tiny run,
a dependency-upgrade rehearsal in a throwaway venv with another onnxruntime release from the
package index, the rollback drill, the quarterly flow's one report and its alert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime
import pytest
from typer.testing import CliRunner

from ordinal.release.checkpoint_drill import (
    RestoreSpec,
    checkpoint_restore_drill,
    rehearse_checkpoint_restore,
)
from ordinal.release.upgrade_drill import (
    UpgradeSpec,
    dependency_upgrade_drill,
    newer_release,
    offered_versions,
)
from pipelines.release.cli import release_app

# An onnxruntime release other than the installed one that the index offers for this Python.
# Parity must hold under it as under the installed one; the drift bound is UpgradeSpec's.
CANDIDATE = "1.31.1" if onnxruntime.__version__ != "1.31.1" else "1.32.0"


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    """Downloaded wheels, shared by the tests of one session (a git-ignored tmp folder)."""
    return tmp_path_factory.mktemp("wheels")


@pytest.fixture(scope="module")
def fixture_drill(tmp_path_factory):
    """The checkpoint-restore drill on its own bert-tiny fixture run (kept for the tests)."""
    root = tmp_path_factory.mktemp("checkpoint-drill")
    return root, rehearse_checkpoint_restore(root)


def test_checkpoint_restore_matches_the_run(fixture_drill):
    root, report = fixture_drill
    assert report.passed, report.stages
    assert list(report.stages) == ["fixture", "select", "resume", "weights", "metrics"]
    spec = RestoreSpec()
    assert report.stages["select"]["checkpoint_step"] == spec.fixture_save_steps
    assert report.stages["select"]["final_step"] == spec.fixture_steps
    assert report.stages["resume"]["global_step"] == spec.fixture_steps
    assert report.stages["weights"]["max_abs"] <= spec.weight_atol
    assert "eval_mae" in report.stages["metrics"]["differences"]
    assert max(report.stages["metrics"]["differences"].values()) <= spec.metric_atol
    # The restore trained in a fresh folder: only the restored and the final checkpoint.
    resumed = {p.name for p in (root / "resumed" / "checkpoints").glob("checkpoint-*")}
    assert resumed == {f"checkpoint-{spec.fixture_save_steps}", f"checkpoint-{spec.fixture_steps}"}


def test_checkpoint_restore_detects_differences(fixture_drill, tmp_path):
    """A run whose final weights or metrics are not what its checkpoint leads to fails."""
    import torch
    from safetensors.torch import load_file, save_file

    from ordinal.data import make_review_records

    root, _ = fixture_drill
    original = Path(shutil.copytree(root / "original", tmp_path / "original"))
    weights = original / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(weights))
    records = make_review_records(RestoreSpec().fixture_records, seed=0)
    cut = int(len(records) * 0.8)
    report = checkpoint_restore_drill(
        original,
        records[:cut],
        records[cut:],
        reference_metrics={"eval_mae": 99.0},
        work_dir=tmp_path / "work",
    )
    assert not report.passed
    assert not report.stages["weights"]["passed"]
    assert report.stages["weights"]["max_abs"] == pytest.approx(1e-3, rel=1e-2)
    assert not report.stages["metrics"]["passed"]
    assert report.stages["metrics"]["differences"]["eval_mae"] > 90
    assert torch.is_tensor(tensors[name])
    # Nothing to restore: only the final checkpoint is stored.
    for mid in original.glob("checkpoints/checkpoint-8"):
        shutil.rmtree(mid)
    report = checkpoint_restore_drill(original, records[:cut])
    assert not report.passed and "no stored checkpoint before" in report.stages["select"]["detail"]
    with pytest.raises(ValueError, match="fixture_save_steps"):
        RestoreSpec(fixture_steps=8, fixture_save_steps=8)


def test_newer_release_and_the_index():
    assert newer_release("1.31.1", ["1.32.0", "1.31.1", "1.33.0rc1", "junk"]) == "1.32.0"
    assert newer_release("1.32.0", ["1.32.0", "1.31.1"]) is None
    offered = offered_versions("onnxruntime")
    assert onnxruntime.__version__ in offered and CANDIDATE in offered


def test_a_ca_bundle_meant_for_other_servers_is_kept_from_pip(monkeypatch, tmp_path):
    """On the stack, REQUESTS_CA_BUNDLE is the stack's own CA (for Prefect and MLflow); pip
    would verify the package index against it and fail (the stack test runs into exactly
    that). Dropped for pip, the index answers with its remote releases."""
    from ordinal.release.upgrade_drill import _pip_env
    from pipelines.stack import ca
    from pipelines.stack.config import load_config

    config = load_config(tmp_path / "stack")
    ca.ensure_ca(config)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(config.ca_cert))
    monkeypatch.delenv("PIP_CERT", raising=False)  # as in a stack worker's environment
    assert "REQUESTS_CA_BUNDLE" not in _pip_env(["REQUESTS_CA_BUNDLE"])
    assert _pip_env()["REQUESTS_CA_BUNDLE"] == str(config.ca_cert)
    offered = offered_versions("onnxruntime", env_drop=["REQUESTS_CA_BUNDLE"])
    assert onnxruntime.__version__ in offered and CANDIDATE in offered


def test_dependency_upgrade_rehearsal_in_a_throwaway_venv(built_bundle, wheel_cache, tmp_path):
    report = dependency_upgrade_drill(
        built_bundle, version=CANDIDATE, wheel_cache=wheel_cache, work_dir=tmp_path
    )
    assert report.passed, report.stages
    assert list(report.stages) == ["select", "venv", "installed", "candidate", "drift"]
    assert report.stages["installed"]["onnxruntime"] == onnxruntime.__version__
    # The throwaway venv really imported the other release, from its own site-packages.
    assert report.stages["candidate"]["onnxruntime"] == CANDIDATE
    assert str(tmp_path / "venv") in report.stages["venv"]["detail"]
    assert set(report.stages["drift"]["per_output"]) >= {"probs", "cum_probs", "label"}
    assert max(report.stages["drift"]["per_output"].values()) <= UpgradeSpec().drift_atol
    assert any(wheel_cache.glob(f"onnxruntime-{CANDIDATE}-*.whl"))
    # A version the index does not have: the venv stage fails and names the requirement.
    report = dependency_upgrade_drill(
        built_bundle, version="0.0.1", wheel_cache=wheel_cache, work_dir=tmp_path / "bad"
    )
    assert not report.passed and "onnxruntime==0.0.1" in report.stages["venv"]["detail"]
    # Nothing newer offered: said plainly, and nothing to fail.
    report = dependency_upgrade_drill(built_bundle, offered=[onnxruntime.__version__])
    assert report.passed and report.stages["select"]["skipped"]
    assert "no newer onnxruntime release offered" in report.stages["select"]["detail"]


@pytest.fixture
def published(tmp_path, monkeypatch, versions, fingerprint_of):
    """Four published versions of ``demo`` in a local store (the registry the flows open)."""
    from ordinal.artifacts import open_storage
    from ordinal.release import Registry

    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ORDINAL_RELEASE_TRUSTED_KEYS", fingerprint_of["release"])
    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    storage = open_storage(str(tmp_path / "store"))
    registry = Registry(storage, [fingerprint_of["release"]], tracking_uri="")
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        registry.publish(versions[version])
    return storage


def test_quarterly_resilience_writes_one_report(published, tmp_path):
    from pipelines.release.flows import quarterly_resilience

    # A smaller fixture run than the default keeps the test short; its spec is flow data.
    small = {"fixture_steps": 4, "fixture_save_steps": 2, "fixture_records": 40}
    result = quarterly_resilience(report_dir=str(tmp_path / "reports"), restore_spec=small)
    rows = result["results"]
    assert list(rows) == ["checkpoint-restore", "rollback demo", "dependency-upgrade demo"]
    assert result["summary"]["verdict"] == "pass"
    assert rows["rollback demo"]["version"] == "1.0.0"
    assert rows["checkpoint-restore"]["stages"]["select"]["checkpoint_step"] == 2
    assert all(row["seconds"] > 0 for row in rows.values())
    data = json.loads(Path(result["reports"][0]).read_text())
    assert data["summary"]["verdict"] == "pass" and set(data["results"]) == set(rows)
    page = Path(result["reports"][1]).read_text()
    assert "Quarterly resilience rehearsal" in page and "checkpoint-restore" in page


def test_quarterly_resilience_alerts_on_failure(published, tmp_path, monkeypatch):
    """A damaged release fails its drill: the report says FAIL, the stack's webhook is told
    and the flow fails."""
    from pipelines.release.flows import quarterly_resilience
    from pipelines.stack.config import load_config
    from pipelines.stack.credentials import ensure_secrets
    from tests.stack.receivers import WebhookReceiver

    onnx = published.local_path("releases/demo/1.0.0/fp32/model.onnx")
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\1")
    # The flow reads the stack's S3 credentials into its process: keep them out of the test's.
    s3_vars = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    s3_vars += ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ORDINAL_S3_ENDPOINT_URL")
    for var in s3_vars:
        monkeypatch.setenv(var, "unused")
    with WebhookReceiver() as webhook:
        config = load_config(tmp_path / "stack", alert_webhook_url=webhook.url).save()
        ensure_secrets(config)
        with pytest.raises(RuntimeError, match="rollback demo"):
            quarterly_resilience(
                drills=["rollback"],
                report_dir=str(tmp_path / "reports"),
                stack_root=str(config.root),
            )
        text = json.dumps(webhook.received)
    assert "quarterly resilience rehearsal failed: rollback demo" in text
    assert "runbook-release-drill-failed" in text
    data = json.loads(next((tmp_path / "reports").glob("resilience-*.json")).read_text())
    assert data["summary"]["verdict"] == "FAIL"
    assert not data["results"]["rollback demo"]["stages"]["fetch-verify"]["passed"]


def test_drill_command(published, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        release_app,
        ["drill", "rollback", "demo", "--report", str(tmp_path / "d.json"),
         "--report-dir", str(tmp_path / "html")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rollback demo: pass" in result.output and "drills passed" in result.output
    assert json.loads((tmp_path / "d.json").read_text())["passed"] is True
    assert sorted(p.suffix for p in (tmp_path / "html").iterdir()) == [".html", ".json"]
    result = runner.invoke(release_app, ["drill", "nonsense-drill", "--back", "9"])
    assert result.exit_code == 1 and "needs 10" in result.output
    result = runner.invoke(release_app, ["drill", "dependency-upgrade", "missing-name"])
    assert result.exit_code == 1 and "no published version" in result.output


def test_checkpoint_restore_of_a_pipeline_run(tmp_path, monkeypatch):
    """A run laid out as notebooks/04_train.ipynb writes it: the drill reads the dataset
    version from the run's storage, resumes from its stored mid checkpoint and matches."""
    from ordinal import TrainSpec, train_ordinal_model
    from ordinal.artifacts import open_storage
    from ordinal.data import dataset_labels, ingest, load_registry, load_split, preprocess
    from ordinal.release.checkpoint_drill import rehearse_run_checkpoint_restore
    from ordinal.runs import write_step_outputs

    monkeypatch.setenv("ORDINAL_HOME", str(tmp_path / "home"))
    store = open_storage(str(tmp_path / "store"))
    registry = load_registry()
    spec = registry.get("demo-reviews")
    ingest("demo-reviews", registry=registry, storage=store)
    preprocess(spec.dataset, spec.version, storage=store)
    labels = dataset_labels(spec.dataset, spec.version, storage=store)
    train = load_split(spec.dataset, spec.version, "train", storage=store)
    evaluation = load_split(spec.dataset, spec.version, "validation", storage=store)
    run_dir = tmp_path / "runs" / "run-20260101-000000"
    result = train_ordinal_model(
        TrainSpec.quick(
            output_dir=run_dir / "train", max_steps=8, save_steps=4, num_classes=len(labels),
            label_names=list(labels), max_length=32, eval_each_epoch=False,
        ),
        train,
        evaluation,
    )  # fmt: skip
    write_step_outputs(
        run_dir,
        "train",
        {"step": "train", "dataset": spec.dataset, "version": spec.version,
         "model_dir": str(result.model_dir), "metrics": result.metrics},
    )  # fmt: skip
    (run_dir / "train" / "result.json").write_text(
        json.dumps({"step": "train", "ok": True, "params": {"storage": str(tmp_path / "store")}})
    )
    report = rehearse_run_checkpoint_restore(run_dir, work_dir=tmp_path / "drill")
    assert report.passed, report.stages
    assert report.stages["select"]["checkpoint_step"] == 4
    assert report.stages["resume"]["global_step"] == 8
    assert "eval_qwk" in report.stages["metrics"]["differences"]


def test_the_drill_reads_the_file_training_writes():
    from ordinal.release import checkpoint_drill
    from ordinal.training import TRAIN_SPEC_FILE

    assert checkpoint_drill.SPEC_FILE == TRAIN_SPEC_FILE


def test_a_drill_that_raises_is_a_failed_row_and_the_others_still_run(tmp_path):
    """A restore on a run that does not exist raises inside the drill; an unreadable
    registry raises while listing: both become failed rows, so the report still comes out."""
    from pipelines.release.flows import run_drills

    missing = tmp_path / "no-such-run"
    store = tmp_path / "not-a-folder"
    store.write_text("a file where the registry should be")
    results = run_drills(["checkpoint-restore", "rollback"], run=str(missing), storage=str(store))
    restore = results["checkpoint-restore"]
    assert restore["passed"] is False and "seconds" in restore
    assert str(missing.name) in json.dumps(restore["stages"])
    assert results["releases"]["passed"] is False
