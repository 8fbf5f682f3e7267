"""Artefact storage, layout, checksums and manifests.

Public API: :func:`open_storage` picks :class:`LocalStorage` or :class:`S3Storage` from a
root URL; :mod:`ordinal.artifacts.layout` builds every key; manifests are built, written,
schema-validated and checksum-verified with the functions below.
"""

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import (
    EMPTY_SHA256,
    FileDigest,
    digest_tree,
    listing_sha256,
    sha256_bytes,
    sha256_file,
    sha256_stream,
    sha256_tree,
)
from ordinal.artifacts.errors import (
    ChecksumMismatchError,
    ImmutableArtifactError,
    InputChangedError,
    LayoutError,
    ManifestError,
    ObjectNotFoundError,
    StorageError,
)
from ordinal.artifacts.manifest import (
    FileEntry,
    GitState,
    Manifest,
    load_verified_manifest,
    manifest_entry,
    manifest_schema,
    new_manifest,
    read_manifest,
    read_manifest_bytes,
    validate_manifest,
    verify_entries,
    write_manifest,
)
from ordinal.artifacts.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    default_storage_url,
    open_storage,
)

__all__ = [
    "EMPTY_SHA256",
    "ChecksumMismatchError",
    "FileDigest",
    "FileEntry",
    "GitState",
    "ImmutableArtifactError",
    "InputChangedError",
    "LayoutError",
    "LocalStorage",
    "Manifest",
    "ManifestError",
    "ObjectNotFoundError",
    "S3Storage",
    "Storage",
    "StorageError",
    "default_storage_url",
    "digest_tree",
    "layout",
    "listing_sha256",
    "load_verified_manifest",
    "manifest_entry",
    "manifest_schema",
    "new_manifest",
    "open_storage",
    "read_manifest",
    "read_manifest_bytes",
    "sha256_bytes",
    "sha256_file",
    "sha256_stream",
    "sha256_tree",
    "validate_manifest",
    "verify_entries",
    "write_manifest",
]
