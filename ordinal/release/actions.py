"""Release actions that combine the pieces and leave an audit record: bundle a run, promote
a release after its policy passed, record that a service consumed a bundle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordinal.artifacts.checksums import sha256_file
from ordinal.artifacts.storage import Storage
from ordinal.release.audit import AuditLog, AuditRecord
from ordinal.release.bundle import BUNDLE_FILE, VerifiedBundle, build_bundle, verify_bundle
from ordinal.release.errors import PromotionRefusedError
from ordinal.release.policy import PolicyEvaluation
from ordinal.release.registry import Registry
from ordinal.release.run_source import collect_run
from ordinal.release.signing import fingerprint, load_private_key

__all__ = ["bundle_run", "promote_release", "record_consumption"]


def bundle_run(
    run: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    signing_key: Ed25519PrivateKey | str | os.PathLike[str],
    audit: AuditLog,
    storage: Storage | str | None = None,
    actor: str | None = None,
    overwrite: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
) -> tuple[VerifiedBundle, AuditRecord]:
    """Build the bundle of a completed run, verify it, and append a ``bundle`` audit record.

    The record's evidence says the run completed (the promotion policy's training criterion
    reads it) and carries the digests of the run summary and of both gate reports.
    """
    key = (
        signing_key if isinstance(signing_key, Ed25519PrivateKey) else load_private_key(signing_key)
    )
    inputs = collect_run(run, storage=storage, work_dir=work_dir)
    path = build_bundle(
        inputs, out_dir, name=name, version=version, signing_key=key, overwrite=overwrite
    )
    verified = verify_bundle(path, [fingerprint(key)])
    summary = inputs.run_dir / "summary.json"
    evidence: dict[str, Any] = {
        "run_id": inputs.run_id,
        "experiment_id": inputs.experiment_id,
        "training_status": (inputs.summary or {}).get("status", "completed"),
        "summary_sha256": sha256_file(summary).sha256 if summary.is_file() else None,
        "storage": inputs.storage_url,
        "reports": {k: v["sha256"] for k, v in verified.metadata["evidence"].items()},
    }
    record = audit.append(
        "bundle",
        {"name": name, "version": version, "digests": {BUNDLE_FILE: verified.digest}},
        evidence,
        actor=actor,
    )
    return verified, record


def promote_release(
    registry: Registry,
    evaluation: PolicyEvaluation,
    *,
    alias: str = "production",
    approved_by: str,
    approval: dict[str, Any] | None = None,
) -> AuditRecord:
    """Point ``alias`` at the evaluated release, after checking every criterion passed.

    The audit record's evidence holds the whole policy evaluation and who approved.

    The stored release is fetched and verified first (signature, trusted key, every file
    digest), and must be the exact ``bundle.json`` the policy was evaluated on.

    Raises
    ------
    PromotionRefusedError
        A criterion did not pass (missing evidence included), or the stored bundle is not the
        one evaluated.
    BundleVerificationError
        The stored bundle fails verification.
    """
    evaluation.require()
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        stored = registry.fetch(evaluation.name, evaluation.version, Path(tmp) / "bundle")
    if stored.digest != evaluation.bundle_sha256:
        raise PromotionRefusedError(
            f"{evaluation.name} {evaluation.version} changed after its evaluation",
            [f"bundle.json sha256 {stored.digest} != evaluated {evaluation.bundle_sha256}"],
        )
    return registry.set_alias(
        evaluation.name,
        evaluation.version,
        alias,
        actor=approved_by,
        evidence={
            "policy": evaluation.to_dict(),
            "approval": approval or {},
            "approved_by": approved_by,
        },
    )


def record_consumption(
    audit: AuditLog, bundle: VerifiedBundle, *, consumer: str, actor: str | None = None
) -> AuditRecord:
    """Append a ``consume`` record: ``consumer`` loaded this exact bundle."""
    return audit.append(
        "consume",
        {
            "name": bundle.name,
            "version": bundle.version,
            "digests": {BUNDLE_FILE: bundle.digest},
        },
        {"consumer": consumer, "path": str(Path(bundle.path)), "trusted": bundle.trusted},
        actor=actor,
    )
