"""Promotion policy as code: load the committed policy file and evaluate it for a release.

Each criterion gets a status (``pass``, ``fail`` or ``missing``), a one-line detail and an
evidence link (a storage key with its sha256, or an audit sequence number). A release is
promotable only when every criterion passes; ``missing`` evidence refuses like a failure.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import sha256_bytes
from ordinal.artifacts.errors import ObjectNotFoundError
from ordinal.paths import project_file
from ordinal.release.bundle import BUNDLE_FILE
from ordinal.release.errors import PolicyError, PromotionRefusedError
from ordinal.release.registry import Registry, release_prefix

__all__ = [
    "DEFAULT_POLICY",
    "E2E_DIR_ENV",
    "CriterionResult",
    "Policy",
    "PolicyEvaluation",
    "evaluate_policy",
    "load_policy",
]

#: The committed policy of this repository.
DEFAULT_POLICY = project_file("deploy", "release-policy.yaml")
E2E_DIR_ENV = "ORDINAL_SERVING_E2E_DIR"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Training(_Strict):
    required_status: Literal["completed"] = "completed"


class _Parity(_Strict):
    min_samples: int = Field(500, ge=1)
    max_atol: float = Field(1e-5, gt=0)


class _Int8(_Strict):
    required: bool = True


class _Metric(_Strict):
    better: Literal["lower", "higher"]
    tolerance: float = Field(ge=0)


class _RustE2E(_Strict):
    results_dir: str = "releases/serving-e2e"


class Policy(_Strict):
    """A promotion policy file (``deploy/release-policy.yaml``)."""

    policy_version: Literal[1] = 1
    alias: Literal["production"] = "production"
    training: _Training = _Training()
    parity: _Parity = _Parity()
    int8: _Int8 = _Int8()
    metrics: dict[Literal["mae", "qwk", "accuracy"], _Metric]
    rust_e2e: _RustE2E = _RustE2E()


def load_policy(path: str | os.PathLike[str] | None = None) -> tuple[Policy, str]:
    """The policy at ``path`` (default the committed one) and the sha256 of its bytes."""
    path = Path(path) if path else DEFAULT_POLICY
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"no promotion policy at {path}") from None
    try:
        return Policy.model_validate(yaml.safe_load(data) or {}), sha256_bytes(data)
    except (ValidationError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: invalid promotion policy: {exc}") from None


@dataclass(frozen=True)
class CriterionResult:
    """One criterion's outcome."""

    criterion: str
    status: Literal["pass", "fail", "missing"]
    detail: str
    evidence: str


@dataclass
class PolicyEvaluation:
    """Every criterion's outcome for one release."""

    name: str
    version: str
    bundle_sha256: str
    policy_sha256: str
    results: list[CriterionResult]

    @property
    def passed(self) -> bool:
        """Whether every criterion passed."""
        return all(r.status == "pass" for r in self.results)

    @property
    def failed(self) -> list[str]:
        """The criteria that did not pass."""
        return [f"{r.criterion} ({r.status})" for r in self.results if r.status != "pass"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded as the promotion's evidence)."""
        return {
            "name": self.name,
            "version": self.version,
            "bundle_sha256": self.bundle_sha256,
            "policy_sha256": self.policy_sha256,
            "passed": self.passed,
            "results": [asdict(r) for r in self.results],
        }

    def require(self) -> None:
        """Raise :class:`PromotionRefusedError` unless every criterion passed."""
        if not self.passed:
            raise PromotionRefusedError(
                f"{self.name} {self.version} does not meet the promotion policy", self.failed
            )


def _report(registry: Registry, prefix: str, meta: dict, gate: str) -> tuple[dict | None, str]:
    entry = meta["evidence"].get(gate)
    if entry is None:
        return None, "(none in bundle)"
    key = layout.join(prefix, entry["path"])
    data = registry.storage.get_bytes(key)
    link = f"{registry.storage.url}/{key} (sha256 {entry['sha256'][:12]})"
    if sha256_bytes(data) != entry["sha256"]:
        return None, link + " DIGEST MISMATCH"
    return json.loads(data), link


def _training(registry: Registry, name: str, digest: str, policy: Policy) -> CriterionResult:
    for record in reversed(registry.audit.records()):
        if (
            record.action == "bundle"
            and record.subject.get("digests", {}).get(BUNDLE_FILE) == digest
        ):
            status = record.evidence.get("training_status")
            ok = status == policy.training.required_status
            summary = str(record.evidence.get("summary_sha256"))[:12]
            return CriterionResult(
                "training completed",
                "pass" if ok else "fail",
                f"run {record.evidence.get('run_id')} status {status!r}",
                f"audit seq {record.seq} (run summary sha256 {summary})",
            )
    return CriterionResult(
        "training completed",
        "missing",
        "no `bundle` audit record for this bundle (build it with `ordinal release bundle`)",
        "-",
    )


def _parity(report: dict | None, link: str, policy: Policy) -> CriterionResult:
    if report is None:
        return CriterionResult("parity >= 500 @ 1e-5", "missing", "no parity report", link)
    spec = report.get("spec", {})
    problems = []
    if not report.get("passed"):
        problems.append("gate failed")
    if int(report.get("num_samples", 0)) < policy.parity.min_samples:
        problems.append(f"{report.get('num_samples')} samples < {policy.parity.min_samples}")
    if float(spec.get("atol", 1.0)) > policy.parity.max_atol:
        problems.append(f"atol {spec.get('atol')} > {policy.parity.max_atol:g}")
    if report.get("non_production"):
        problems.append("non-production report")
    detail = "; ".join(problems) or (
        f"{report['num_samples']} samples at atol {spec.get('atol'):g}, passed"
    )
    name = f"parity >= {policy.parity.min_samples} @ {policy.parity.max_atol:g}"
    return CriterionResult(name, "fail" if problems else "pass", detail, link)


def _int8(report: dict | None, link: str, policy: Policy) -> CriterionResult:
    if report is None:
        status = "missing" if policy.int8.required else "pass"
        return CriterionResult("INT8 gate", status, "no INT8 report in the bundle", link)
    ok = bool(report.get("passed")) and not report.get("non_production", False)
    detail = (
        f"MAE change {float(report.get('mae_increase', 0.0)):+.2%} on "
        f"{report.get('num_samples')} samples, verdict {report.get('verdict', 'n/a')}"
    )
    return CriterionResult("INT8 gate", "pass" if ok else "fail", detail, link)


def _metrics(registry: Registry, name: str, version: str, meta: dict, policy: Policy):
    current = registry.alias(name, policy.alias)
    variant = meta["default_variant"]
    if current is None or current == version:
        return CriterionResult(
            "metrics vs production", "pass", "no other production version to compare with", "-"
        )
    old = registry.metadata(name, current)
    ours = meta["metrics"].get(variant)
    theirs = old["metrics"].get(old["default_variant"])
    problems, cells = [], []
    for metric, rule in policy.metrics.items():
        delta = ours[metric] - theirs[metric]
        worse = delta if rule.better == "lower" else -delta
        cells.append(f"{metric} {ours[metric]:.4f} vs {theirs[metric]:.4f} ({delta:+.4f})")
        if worse > rule.tolerance:
            problems.append(f"{metric} worse by {worse:.4f} > {rule.tolerance:g}")
    link = f"{registry.storage.url}/{release_prefix(name, current)}/bundle.json"
    detail = "; ".join(problems or cells)
    return CriterionResult(
        f"metrics vs production {current}", "fail" if problems else "pass", detail, link
    )


def _rust_e2e(registry: Registry, digest: str, policy: Policy) -> CriterionResult:
    folder = os.environ.get(E2E_DIR_ENV) or policy.rust_e2e.results_dir
    title = "Rust e2e on this bundle"
    if Path(folder).is_absolute():
        path = Path(folder) / f"{digest}.json"
        link = str(path)
        data = path.read_bytes() if path.is_file() else None
    else:
        key = layout.join(folder, f"{digest}.json")
        link = f"{registry.storage.url}/{key}"
        try:
            data = registry.storage.get_bytes(key)
        except ObjectNotFoundError:
            data = None
    if data is None:
        return CriterionResult(
            title, "missing", "no end-to-end result for this bundle's sha256 (never waived)", link
        )
    try:
        result = json.loads(data)
    except json.JSONDecodeError:
        return CriterionResult(title, "fail", "result file is not JSON", link)
    if result.get("bundle_sha256") != digest:
        return CriterionResult(title, "fail", "result is for another bundle", link)
    ok = result.get("passed") is True
    detail = f"{'passed' if ok else 'failed'}: {result.get('summary', '')}".rstrip(": ")
    return CriterionResult(title, "pass" if ok else "fail", detail, link)


def evaluate_policy(
    registry: Registry,
    name: str,
    version: str,
    policy: Policy | None = None,
    policy_sha256: str = "",
) -> PolicyEvaluation:
    """Evaluate ``policy`` (default the committed one) for a published release."""
    if policy is None:
        policy, policy_sha256 = load_policy()
    prefix = release_prefix(name, version)
    meta = registry.metadata(name, version)
    digest = sha256_bytes(registry.storage.get_bytes(layout.join(prefix, BUNDLE_FILE)))
    parity, parity_link = _report(registry, prefix, meta, "parity")
    int8, int8_link = _report(registry, prefix, meta, "int8")
    results = [
        _training(registry, name, digest, policy),
        _parity(parity, parity_link, policy),
        _int8(int8, int8_link, policy),
        _metrics(registry, name, version, meta, policy),
        _rust_e2e(registry, digest, policy),
    ]
    return PolicyEvaluation(name, version, digest, policy_sha256, results)
