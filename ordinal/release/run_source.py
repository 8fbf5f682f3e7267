"""Find what a bundle is built from in a completed pipeline run.

A run folder (``<state>/runs/{run_id}/``, see :mod:`ordinal.runs`) holds ``summary.json``
(written by the pipeline when it ends) and one ``{step}/outputs.json`` per step. From them this
module finds the stored FP32 and INT8 folders (``models/onnx/{experiment}/{fp32,int8}/``),
verifies their manifests (schema and every checksum), the parity and INT8 reports and the
parity reference, and the raw dataset manifest for the lineage. Nothing is trusted that a
manifest does not vouch for: the graph the parity gate checked must be the stored FP32 graph.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import sha256_bytes, sha256_file
from ordinal.artifacts.errors import (
    ChecksumMismatchError,
    ManifestError,
    ObjectNotFoundError,
    StorageError,
)
from ordinal.artifacts.manifest import Manifest, load_verified_manifest
from ordinal.artifacts.storage import Storage, open_storage
from ordinal.paths import state_dir
from ordinal.release.errors import BundleBuildError
from ordinal.runs import OUTPUTS_FILE

__all__ = ["RunInputs", "collect_run", "find_run_dir", "source_date"]

SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.onnx"


@dataclass
class RunInputs:
    """Everything a bundle needs from one run, as local files (downloaded when remote)."""

    run_id: str
    run_dir: Path
    experiment_id: str
    fp32_dir: Path
    fp32_manifest: Manifest
    parity_report: Path
    dataset: dict[str, str]
    max_length: int
    created_at: str
    int8_dir: Path | None = None
    int8_manifest: Manifest | None = None
    int8_report: Path | None = None
    parity_reference: Path | None = None
    train_metrics: dict[str, float] = field(default_factory=dict)
    validation_records: int = 0
    summary: dict[str, Any] | None = None
    storage_url: str = ""


def find_run_dir(run: str | os.PathLike[str], runs_root: str | os.PathLike[str] | None = None):
    """A run folder from a path or a run id (looked up in ``runs_root`` or ``<state>/runs``)."""
    path = Path(run).expanduser()
    if path.is_dir():
        return path.resolve()
    root = Path(runs_root) if runs_root else state_dir() / "runs"
    candidate = root / str(run)
    if candidate.is_dir():
        return candidate.resolve()
    raise BundleBuildError(f"no run folder {run!r}: not a folder, and not a run id under {root}")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleBuildError(f"{path} does not exist: {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleBuildError(f"{path} is not valid JSON: {exc}") from None


def _step(run_dir: Path, step: str) -> dict[str, Any]:
    return _read_json(run_dir / step / OUTPUTS_FILE, f"the {step!r} step has not completed")


def _step_params(run_dir: Path, step: str) -> dict[str, Any]:
    path = run_dir / step / "result.json"
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("params") or {})
    except (ValueError, AttributeError):
        return {}


def source_date(fallback: float) -> str:
    """RFC 3339 UTC time: ``$SOURCE_DATE_EPOCH`` when set, else ``fallback`` (epoch seconds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            seconds = int(epoch)
        except ValueError:
            raise BundleBuildError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    else:
        seconds = int(fallback)
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_folder(storage: Storage, prefix: str, phase: str, work: Path) -> tuple[Path, Manifest]:
    """The stored folder ``prefix`` verified against its manifest, as a local folder."""
    key = layout.join(prefix, layout.MANIFEST_NAME)
    try:
        manifest = load_verified_manifest(storage, key, phase=phase)  # type: ignore[arg-type]
    except (ManifestError, StorageError, ChecksumMismatchError) as exc:
        raise BundleBuildError(f"{storage.url}/{key}: {exc}") from exc
    local = storage.local_path(key)
    if local is not None:
        return local.parent, manifest
    target = work / phase
    for entry in manifest.outputs:
        storage.download(entry.path, target / entry.path.rsplit("/", 1)[-1])
    # Downloaded files are re-hashed against the manifest (a changed object is refused).
    for entry in manifest.outputs:
        got = sha256_file(target / entry.path.rsplit("/", 1)[-1])
        if got.sha256 != entry.sha256:
            raise BundleBuildError(f"{entry.path} changed while it was downloaded")
    return target, manifest


def collect_run(
    run: str | os.PathLike[str],
    *,
    storage: Storage | str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    runs_root: str | os.PathLike[str] | None = None,
) -> RunInputs:
    """Gather and verify a completed run's artefacts for :func:`ordinal.release.build_bundle`.

    Parameters
    ----------
    run : path or str
        The run folder, or a run id under ``runs_root`` (default ``<state>/runs``).
    storage : Storage or str, optional
        The storage root the run wrote to; default the storage the run's steps recorded
        (``{step}/result.json``), then the local store.
    work_dir : path, optional
        Where files of a remote store are downloaded (required for S3 storage).

    Raises
    ------
    BundleBuildError
        The run did not complete, a step's outputs are missing, the parity gate failed, a
        manifest fails its schema or checksums, or the graph the parity gate checked is not
        the stored FP32 graph.
    """
    run_dir = find_run_dir(run, runs_root)
    summary = None
    if (run_dir / SUMMARY_FILE).is_file():
        summary = _read_json(run_dir / SUMMARY_FILE, "the run summary")
        if summary.get("status") != "completed":
            raise BundleBuildError(
                f"run {run_dir.name} has status {summary.get('status')!r} in "
                f"{run_dir / SUMMARY_FILE}; only a completed run can be bundled"
            )
    train = _step(run_dir, "train")
    export = _step(run_dir, "export")
    parity = _step(run_dir, "parity")
    quantize = (
        _step(run_dir, "quantize") if (run_dir / "quantize" / OUTPUTS_FILE).is_file() else None
    )
    train_params = _step_params(run_dir, "train")
    if storage is None:
        storage = train_params.get("storage") or _step_params(run_dir, "export").get("storage")
    store = storage if isinstance(storage, Storage) else open_storage(storage or None)
    if store.local_path("x") is None and work_dir is None:
        raise BundleBuildError(f"{store.url} is remote: pass work_dir for the downloads")
    work = Path(work_dir) if work_dir else run_dir / "bundle-work"
    experiment = str(export.get("experiment") or "")
    if not experiment:
        raise BundleBuildError(f"{run_dir / 'export' / OUTPUTS_FILE} names no experiment")
    fp32_dir, fp32_manifest = _local_folder(
        store, layout.onnx_dir(experiment, "fp32"), "export", work
    )
    checked_onnx = Path(export["onnx_path"])
    stored_model = fp32_manifest.output("model")
    if not checked_onnx.is_file() or sha256_file(checked_onnx).sha256 != stored_model.sha256:
        raise BundleBuildError(
            f"the graph the parity gate checked ({checked_onnx}) is not the stored FP32 graph "
            f"{stored_model.path} (sha256 {stored_model.sha256})"
        )
    parity_report = Path(parity["report_json"])
    parity_data = _read_json(parity_report, "the parity report")
    if not parity_data.get("passed"):
        raise BundleBuildError(f"the parity gate failed in this run ({parity_report})")
    reference = checked_onnx.parent / "parity" / "reference.npz"
    int8_dir = int8_manifest = int8_report = None
    if quantize is not None:
        if quantize.get("experiment") != experiment:
            raise BundleBuildError(
                f"quantize step used experiment {quantize.get('experiment')!r}, "
                f"export used {experiment!r}"
            )
        int8_dir, int8_manifest = _local_folder(
            store, layout.onnx_dir(experiment, "int8"), "quantize", work
        )
        fp32_inputs = [i for i in int8_manifest.inputs if i.role == "fp32-model"]
        if fp32_inputs and fp32_inputs[0].sha256 != stored_model.sha256:
            raise BundleBuildError(
                "the INT8 graph was quantised from another FP32 graph "
                f"(sha256 {fp32_inputs[0].sha256}, stored {stored_model.sha256})"
            )
        int8_report = Path(quantize["report_json"])
        if not _read_json(int8_report, "the INT8 report").get("passed"):
            raise BundleBuildError(f"the INT8 gate failed in this run ({int8_report})")
    dataset_name = str(train.get("dataset") or fp32_manifest.dataset.name)
    dataset_version = str(train.get("version") or fp32_manifest.dataset.version)
    raw_key = layout.raw_manifest(dataset_name, dataset_version)
    try:
        raw_sha = sha256_bytes(store.get_bytes(raw_key))
    except ObjectNotFoundError:
        raise BundleBuildError(
            f"raw dataset manifest {raw_key} is not in {store.url}: the lineage needs it"
        ) from None
    max_length = train_params.get("max_length") or parity_data.get("spec", {}).get("max_length")
    validation = 0
    if (run_dir / "preprocess" / OUTPUTS_FILE).is_file():
        metrics = _step(run_dir, "preprocess").get("metrics", {})
        validation = int(metrics.get("records_validation", 0))
    ended = (run_dir / SUMMARY_FILE) if summary else (run_dir / "parity" / OUTPUTS_FILE)
    return RunInputs(
        run_id=str((summary or {}).get("run_id") or run_dir.name),
        run_dir=run_dir,
        experiment_id=experiment,
        fp32_dir=fp32_dir,
        fp32_manifest=fp32_manifest,
        parity_report=parity_report,
        parity_reference=reference if reference.is_file() else None,
        dataset={"name": dataset_name, "version": dataset_version, "raw_sha256": raw_sha},
        max_length=int(max_length or 128),
        created_at=source_date(ended.stat().st_mtime),
        int8_dir=int8_dir,
        int8_manifest=int8_manifest,
        int8_report=int8_report,
        train_metrics={k: float(v) for k, v in train.get("metrics", {}).items()},
        validation_records=validation,
        summary=summary,
        storage_url=store.url,
    )
