"""Ingestion: fetch an approved source, check its sha256, and hydrate ``datasets/raw/``.

Raw data is write-once. Ingesting the same bytes again is a no-op; different bytes for a
dataset version that already exists are refused with both checksums named. Files are
uploaded first and the manifest last, so a dataset version exists only once its manifest
does: an interrupted ingestion leaves nothing a later phase would accept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ordinal.artifacts import layout
from ordinal.artifacts.errors import ChecksumMismatchError
from ordinal.artifacts.manifest import (
    FileEntry,
    Manifest,
    new_manifest,
    read_manifest,
    verify_entries,
    write_manifest,
)
from ordinal.artifacts.storage import Storage, open_storage, staging_dir
from ordinal.data.errors import EmptyDatasetError, RawDataConflictError, SourceChecksumError
from ordinal.data.sources import SourceRegistry, SourceSpec, fetch_source, load_registry

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest` did.

    Attributes
    ----------
    source : SourceSpec
        The approved source.
    manifest_key : str
        Key of the raw manifest.
    manifest : Manifest
        The raw manifest (new, or the existing one when nothing changed).
    created : bool
        False when the same bytes were already ingested (no-op).
    declaration_updated : list of str
        When the same bytes were already ingested but the registry now declares them
        differently (``labels``, ``label_values``, ``columns``): the fields whose recorded
        value was replaced (the raw bytes are untouched).
    """

    source: SourceSpec
    manifest_key: str
    manifest: Manifest
    created: bool
    declaration_updated: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[FileEntry]:
        """The raw files with their checksums."""
        return [o for o in self.manifest.outputs if o.role == "raw"]

    @property
    def size(self) -> int:
        """Total raw bytes."""
        return sum(f.size for f in self.files)


def _declaration(spec: SourceSpec) -> dict[str, object]:
    """How the raw bytes are to be read, as recorded in the raw manifest."""
    return {
        "labels": list(spec.labels),
        "label_values": spec.label_values,
        "columns": spec.columns.model_dump(mode="json"),
    }


def ingest(
    source: str,
    *,
    registry: SourceRegistry | str | os.PathLike[str] | None = None,
    storage: Storage | str | None = None,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest one approved source into ``datasets/raw/{dataset}/{version}/``.

    Parameters
    ----------
    source : str
        Source name in the registry.
    registry : SourceRegistry, path or None
        The registry (default :func:`ordinal.data.sources.default_registry_path`).
    storage : Storage, root URL or None
        Where to write (default :func:`ordinal.artifacts.open_storage`).
    endpoint_url : str or None
        S3-compatible endpoint for ``s3://`` sources and storage roots.
    progress : callable or None
        Called as ``progress(stage, done, total)`` while files are uploaded.

    Raises
    ------
    SourceNotApprovedError
        The source is not in the registry.
    SourceChecksumError
        The fetched bytes do not match the registry's sha256 (both sums named).
    EmptyDatasetError
        The source is a 0-byte file or an empty folder.
    RawDataConflictError
        The dataset version exists with different bytes (both sums named).
    """
    reg = registry if isinstance(registry, SourceRegistry) else load_registry(registry)
    spec = reg.get(source)
    store = (
        storage
        if storage is not None and not isinstance(storage, str)
        else open_storage(storage, endpoint_url=endpoint_url)
    )
    manifest_key = layout.raw_manifest(spec.dataset, spec.version)
    raw_prefix = layout.raw_dir(spec.dataset, spec.version)

    with staging_dir("ingest-") as tmp:
        fetched = fetch_source(spec, Path(tmp) / "src", endpoint_url=endpoint_url)
        if fetched.sha256 != spec.sha256:
            raise SourceChecksumError(spec.name, spec.uri, spec.sha256, fetched.sha256)
        if not fetched.files or fetched.size == 0:
            raise EmptyDatasetError(
                spec.uri, "the source has no bytes (0-byte file or empty folder)"
            )

        if store.exists(manifest_key):
            existing = read_manifest(store, manifest_key)
            old = str(existing.parameters.get("source_sha256", ""))
            if old != fetched.sha256:
                raise RawDataConflictError(spec.dataset, spec.version, old, fetched.sha256)
            # Same bytes: nothing to write, but the stored copy must still be intact.
            verify_entries(store, existing.outputs)
            declared = _declaration(spec)
            changed = [k for k, v in declared.items() if existing.parameters.get(k) != v]
            if not changed:
                return IngestResult(spec, manifest_key, existing, created=False)
            # How the bytes are read is the registry's to say (labels, label_values,
            # columns); a reviewed change of it, or a manifest from before these fields,
            # is recorded so preprocessing never reads the bytes by an outdated declaration.
            updated = existing.model_copy(
                update={"parameters": {**existing.parameters, **declared}}
            )
            write_manifest(store, manifest_key, updated)
            return IngestResult(
                spec, manifest_key, updated, created=False, declaration_updated=changed
            )

        outputs: list[FileEntry] = []
        total = len(fetched.files)
        for i, local in enumerate(fetched.files, start=1):
            key = layout.join(raw_prefix, local.path)
            stored = store.put_file(fetched.root / local.path, key)
            if stored.sha256 != local.sha256:
                # The staged copy changed between hashing and upload: never record it.
                raise ChecksumMismatchError(key, local.sha256, stored.sha256)
            outputs.append(FileEntry(path=key, sha256=stored.sha256, size=stored.size, role="raw"))
            if progress:
                progress("upload", i, total)

    manifest = new_manifest(
        phase="ingest",
        dataset=spec.dataset,
        version=spec.version,
        inputs=[
            FileEntry(
                path=spec.uri, uri=spec.uri, sha256=fetched.sha256, size=fetched.size, role="source"
            )
        ],
        outputs=outputs,
        record_counts={"files": len(outputs), "bytes": fetched.size},
        parameters={
            "source": spec.name,
            "uri": spec.uri,
            "format": spec.format,
            **_declaration(spec),
            "licence": spec.licence,
            "owner": spec.owner,
            "source_sha256": fetched.sha256,
            "registry_version": reg.registry_version,
        },
    )
    write_manifest(store, manifest_key, manifest)
    return IngestResult(spec, manifest_key, manifest, created=True)
