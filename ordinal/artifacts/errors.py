"""Typed errors of the artefact layer (storage, checksums, manifests).

Each error carries the context a user needs to act on it: the key or path involved and,
for checksum problems, both sums.
"""

from __future__ import annotations

from ordinal.exceptions import OrdinalError


class StorageError(OrdinalError):
    """A storage operation that failed (unreachable endpoint, permission, missing object).

    Parameters
    ----------
    message : str
        What went wrong.
    key : str or None
        The storage key involved.
    root : str or None
        The storage root URL (never includes credentials).
    """

    def __init__(self, message: str, *, key: str | None = None, root: str | None = None) -> None:
        self.key = key
        self.root = root
        where = f" (root {root!r}, key {key!r})" if key or root else ""
        super().__init__(message + where)


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """A key that does not exist under the storage root."""


class ChecksumMismatchError(OrdinalError, ValueError):
    """Bytes whose sha256 is not the one that was expected.

    Attributes
    ----------
    what : str
        The file, key or source whose bytes were checked.
    expected : str
        The sha256 that was recorded or declared.
    actual : str
        The sha256 of the bytes found.
    """

    def __init__(self, what: str, expected: str, actual: str, *, detail: str = "") -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        extra = f"; {detail}" if detail else ""
        super().__init__(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}{extra}"
        )


class ImmutableArtifactError(ChecksumMismatchError):
    """An attempt to overwrite write-once data with different bytes."""


class ManifestError(OrdinalError, ValueError):
    """A manifest that is missing, unreadable or fails its JSON Schema.

    Attributes
    ----------
    key : str or None
        Where the manifest was read from.
    errors : list of str
        Schema violations, one line each (empty when the manifest could not be read).
    """

    def __init__(self, message: str, *, key: str | None = None, errors: list[str] | None = None):
        self.key = key
        self.errors = list(errors or [])
        where = f" ({key})" if key else ""
        detail = ("\n  - " + "\n  - ".join(self.errors)) if self.errors else ""
        super().__init__(f"{message}{where}{detail}")


class InputChangedError(ChecksumMismatchError):
    """An input whose bytes changed after the manifest that lists it was written."""


class LayoutError(OrdinalError, ValueError):
    """A dataset, version or experiment name that cannot be used as a path component."""
