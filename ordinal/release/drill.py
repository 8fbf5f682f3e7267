"""The rollback drill: fetch the version three releases back, verify it, spot-check parity."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ordinal.release.errors import ReleaseError
from ordinal.release.registry import Registry

__all__ = ["DrillReport", "recheck_release", "rollback_drill"]


@dataclass
class DrillReport:
    """Pass/fail of each drill stage, with details."""

    name: str
    version: str | None
    passed: bool
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def rollback_drill(
    registry: Registry,
    name: str,
    *,
    back: int = 3,
    work_dir: str | os.PathLike[str] | None = None,
) -> DrillReport:
    """Fetch the release ``back`` versions before the newest, verify it, recheck parity.

    The parity spot-check runs the bundle's FP32 graph on the stored parity inputs
    (``reports/parity-reference.npz``) with today's ONNX Runtime and compares with the
    stored PyTorch outputs (:func:`ordinal.export.parity.recheck_parity`) at the production
    tolerance. Nothing raises: each stage's outcome is in the report.
    """
    versions = registry.versions(name)
    if len(versions) < back + 1:
        report = DrillReport(name=name, version=None, passed=False)
        report.stages["select"] = {
            "passed": False,
            "detail": f"{len(versions)} published versions; the drill needs {back + 1}",
        }
        return report
    version = versions[-(back + 1)]
    report = recheck_release(registry, name, version, work_dir=work_dir)
    report.stages = {
        "select": {"passed": True, "detail": f"{version} of {versions}"},
        **report.stages,
    }
    return report


def recheck_release(
    registry: Registry,
    name: str,
    version: str,
    *,
    work_dir: str | os.PathLike[str] | None = None,
) -> DrillReport:
    """Fetch and verify one published release, then recheck its parity (see above)."""
    report = DrillReport(name=name, version=version, passed=False)
    own = work_dir is None
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="release-recheck-"))
    try:
        try:
            bundle = registry.fetch(name, version, root / "bundle")
            report.stages["fetch-verify"] = {"passed": True, "detail": bundle.digest}
        except ReleaseError as exc:
            report.stages["fetch-verify"] = {"passed": False, "detail": str(exc)}
            return report
        reference = bundle.path / "reports" / "parity-reference.npz"
        if not reference.is_file():
            report.stages["parity"] = {"passed": False, "detail": "bundle has no parity reference"}
            return report
        from ordinal.export.errors import ParityError
        from ordinal.export.parity import ParitySpec, recheck_parity

        graph = root / "recheck" / "model.onnx"
        (graph.parent / "parity").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.path / bundle.metadata["variants"]["fp32"]["path"], graph)
        shutil.copyfile(reference, graph.parent / "parity" / "reference.npz")
        try:
            result = recheck_parity(graph, ParitySpec(non_production=True))
            report.stages["parity"] = {
                "passed": True,
                "detail": f"{result.num_samples} samples within tolerance",
                "max_abs": {k: v["max_abs"] for k, v in result.outputs.items()},
            }
        except ParityError as exc:
            report.stages["parity"] = {"passed": False, "detail": str(exc)}
            return report
        report.passed = all(stage["passed"] for stage in report.stages.values())
        return report
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
