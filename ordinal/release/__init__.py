"""Release governance: bundles, signing, verification, the audit log, registry and policy.

The library half of ``ordinal release`` (the commands and the approval flow live in
``pipelines/release/``). Bundles follow ``docs/bundle-format.md`` (``ordinal-bundle/1``).
"""

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
from ordinal.release.predictor import BundlePredictor, Prediction, load_bundle
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
    "BUNDLE_FILE",
    "BUNDLE_FORMAT",
    "SIGNATURE_FILE",
    "AuditLogError",
    "BundleBuildError",
    "BundlePredictor",
    "BundleVerificationError",
    "DigestMismatchError",
    "FileMissingError",
    "ImmutableReleaseError",
    "PolicyError",
    "Prediction",
    "PromotionRefusedError",
    "RegistryError",
    "ReleaseError",
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
    "bundle_schema",
    "bundle_schema_errors",
    "canonical_json",
    "collect_run",
    "find_run_dir",
    "fingerprint",
    "generate_signing_key",
    "is_safe_path",
    "load_bundle",
    "load_private_key",
    "load_public_key",
    "min_onnxruntime",
    "render_model_card",
    "sign_document",
    "verify_bundle",
    "verify_document",
]
