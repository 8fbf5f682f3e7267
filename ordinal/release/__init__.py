"""Release governance: bundles, signing, verification, the audit log, registry and policy.

The library half of ``ordinal release`` (the commands and the approval flow live in
``pipelines/release/``). Bundles follow ``docs/bundle-format.md`` (``ordinal-bundle/1``).
"""

from ordinal.release.actions import bundle_run, promote_release, record_consumption
from ordinal.release.audit import AliasChange, AuditLog, AuditRecord, verify_records
from ordinal.release.bundle import (
    BUNDLE_FILE,
    SIGNATURE_FILE,
    VerifiedBundle,
    build_bundle,
    bundle_dir_name,
    is_safe_path,
    min_onnxruntime,
    verify_bundle,
)
from ordinal.release.canonical import canonical_json
from ordinal.release.changelog import changelog_entry
from ordinal.release.drill import DrillReport, rollback_drill
from ordinal.release.errors import (
    AuditLogError,
    BundleBuildError,
    BundleVerificationError,
    DigestMismatchError,
    FileMissingError,
    ImmutableReleaseError,
    PolicyError,
    PromotionRefusedError,
    RegistryError,
    ReleaseError,
    SchemaViolationError,
    SignatureError,
    SigningKeyError,
    UnlistedFileError,
    UnsafePathError,
    UntrustedKeyError,
)
from ordinal.release.model_card import render_model_card
from ordinal.release.policy import (
    CriterionResult,
    Policy,
    PolicyEvaluation,
    evaluate_policy,
    load_policy,
)
from ordinal.release.predictor import BundlePredictor, Prediction, load_bundle
from ordinal.release.registry import ALIASES, PublishResult, Registry, release_prefix
from ordinal.release.retention import RetentionPlan, plan_retention, semver_key
from ordinal.release.run_source import RunInputs, collect_run, find_run_dir
from ordinal.release.schema import BUNDLE_FORMAT, bundle_schema, bundle_schema_errors
from ordinal.release.signing import (
    TrustedKeys,
    fingerprint,
    generate_signing_key,
    load_private_key,
    load_public_key,
    sign_document,
    verify_document,
)

__all__ = [
    "ALIASES",
    "BUNDLE_FILE",
    "BUNDLE_FORMAT",
    "SIGNATURE_FILE",
    "AliasChange",
    "AuditLog",
    "AuditLogError",
    "AuditRecord",
    "BundleBuildError",
    "BundlePredictor",
    "BundleVerificationError",
    "CriterionResult",
    "DigestMismatchError",
    "DrillReport",
    "FileMissingError",
    "ImmutableReleaseError",
    "Policy",
    "PolicyError",
    "PolicyEvaluation",
    "Prediction",
    "PromotionRefusedError",
    "PublishResult",
    "Registry",
    "RegistryError",
    "ReleaseError",
    "RetentionPlan",
    "RunInputs",
    "SchemaViolationError",
    "SignatureError",
    "SigningKeyError",
    "TrustedKeys",
    "UnlistedFileError",
    "UnsafePathError",
    "UntrustedKeyError",
    "VerifiedBundle",
    "build_bundle",
    "bundle_dir_name",
    "bundle_run",
    "bundle_schema",
    "bundle_schema_errors",
    "canonical_json",
    "changelog_entry",
    "collect_run",
    "evaluate_policy",
    "find_run_dir",
    "fingerprint",
    "generate_signing_key",
    "is_safe_path",
    "load_bundle",
    "load_policy",
    "load_private_key",
    "load_public_key",
    "min_onnxruntime",
    "plan_retention",
    "promote_release",
    "record_consumption",
    "release_prefix",
    "render_model_card",
    "rollback_drill",
    "semver_key",
    "sign_document",
    "verify_bundle",
    "verify_document",
    "verify_records",
]
