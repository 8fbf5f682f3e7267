"""Typed errors of the release layer: each names exactly what is wrong and where."""

from __future__ import annotations

from ordinal.exceptions import OrdinalError

__all__ = [
    "AuditLogError",
    "BundleBuildError",
    "BundleVerificationError",
    "DigestMismatchError",
    "FileMissingError",
    "ImmutableReleaseError",
    "PolicyError",
    "PromotionRefusedError",
    "RegistryError",
    "ReleaseError",
    "SchemaViolationError",
    "SignatureError",
    "SigningKeyError",
    "UnlistedFileError",
    "UnsafePathError",
    "UntrustedKeyError",
]


class ReleaseError(OrdinalError):
    """Base class of every release error."""


class SigningKeyError(ReleaseError, ValueError):
    """A signing or public key file that is missing, unreadable or not Ed25519."""


class BundleBuildError(ReleaseError):
    """A run whose outputs cannot become a bundle (missing step, failed gate, bad input)."""


class BundleVerificationError(ReleaseError):
    """A bundle that fails verification; ``check`` says which check, ``path`` which file.

    Attributes
    ----------
    check : str
        ``schema``, ``signature``, ``untrusted-key``, ``digest``, ``missing``, ``unlisted``,
        ``unsafe-path`` or ``reference``.
    path : str or None
        The file (relative to the bundle) or field involved.
    expected, actual : str or None
        What was recorded and what was found, where that applies.
    """

    check = "bundle"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        bundle: str | None = None,
    ) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        self.bundle = bundle
        where = f" [{bundle}]" if bundle else ""
        super().__init__(f"{self.check}: {message}{where}")


class SchemaViolationError(BundleVerificationError):
    """``bundle.json`` does not parse or does not match ``bundle.v1.json``.

    ``errors`` lists every violation, one line each.
    """

    check = "schema"

    def __init__(self, message: str, *, errors: list[str] | None = None, **kwargs) -> None:
        self.errors = list(errors or [])
        detail = ("\n  - " + "\n  - ".join(self.errors)) if self.errors else ""
        super().__init__(message + detail, **kwargs)


class SignatureError(BundleVerificationError):
    """``bundle.sig`` is missing or malformed, names another key, or does not verify."""

    check = "signature"


class UntrustedKeyError(BundleVerificationError):
    """The bundle is correctly signed, by a key the verifier does not trust."""

    check = "untrusted-key"


class DigestMismatchError(BundleVerificationError):
    """A file whose size or sha256 differs from ``files``, or a digest field disagreeing."""

    check = "digest"


class FileMissingError(BundleVerificationError):
    """A file listed in ``files`` is absent."""

    check = "missing"


class UnlistedFileError(BundleVerificationError):
    """A file in the bundle folder that ``files`` does not list."""

    check = "unlisted"


class UnsafePathError(BundleVerificationError):
    """A path in ``bundle.json`` that is absolute, has ``..`` or an empty component."""

    check = "unsafe-path"


class RegistryError(ReleaseError):
    """A registry operation that cannot be done (unknown version, no previous version...)."""


class ImmutableReleaseError(RegistryError):
    """A second publish of a released version with different bytes.

    Attributes
    ----------
    release : str
        ``{name} {version}``.
    published, offered : str
        sha256 of the published and of the offered ``bundle.json``.
    """

    def __init__(self, release: str, published: str, offered: str) -> None:
        self.release = release
        self.published = published
        self.offered = offered
        super().__init__(
            f"{release} is published with bundle.json sha256 {published}; the offered bundle "
            f"has {offered}: a published version never changes, publish a new version"
        )


class AuditLogError(ReleaseError):
    """An audit log that fails verification; ``seq`` is the first bad sequence number.

    Attributes
    ----------
    seq : int or None
        The first sequence number whose record is wrong (edited, missing, inserted or out of
        order); None when the log cannot be read at all.
    reason : str
        What is wrong with it.
    """

    def __init__(self, reason: str, *, seq: int | None = None, where: str | None = None):
        self.seq = seq
        self.reason = reason
        self.where = where
        at = f"record seq={seq}: " if seq is not None else ""
        loc = f" ({where})" if where else ""
        super().__init__(f"audit log broken at {at}{reason}{loc}")


class PolicyError(ReleaseError, ValueError):
    """A promotion policy file that is missing or invalid."""


class PromotionRefusedError(ReleaseError):
    """A promotion whose policy criteria are not all met; ``failed`` names them."""

    def __init__(self, message: str, failed: list[str]) -> None:
        self.failed = list(failed)
        super().__init__(f"{message}: {', '.join(self.failed)}")
