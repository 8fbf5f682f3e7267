"""Artefact manifests: build, write, read, validate against the JSON Schema, verify checksums.

A manifest says which phase produced which files from which inputs, with a sha256 and a size
for every file, the record counts, the git commit and the tool versions. The schema is
``ordinal/schemas/manifest.v1.json`` (shipped as package data). A phase accepts an input only
through :func:`load_verified_manifest`, which validates the manifest and re-hashes the files
it lists: an input that changed after its manifest was written is refused, never read
silently.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ordinal.artifacts.checksums import FileDigest
from ordinal.artifacts.errors import InputChangedError, ManifestError, ObjectNotFoundError
from ordinal.artifacts.storage import Storage

SCHEMA_VERSION = "1"
SCHEMA_RESOURCE = "manifest.v1.json"
EXPERIMENT_ENV = "ORDINAL_EXPERIMENT_ID"

Phase = Literal[
    "ingest", "preprocess", "calibrate", "train", "export", "parity", "quantize", "bundle"
]

_TOOLS = ("ordinal", "pydantic", "pyarrow", "pillow", "numpy", "boto3", "jsonschema", "pyyaml")


class FileEntry(BaseModel):
    """One file a manifest lists: its key (or URI for an external source), sha256 and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    role: str | None = None
    uri: str | None = None

    @classmethod
    def from_digest(cls, digest: FileDigest, role: str | None = None) -> FileEntry:
        """Build an entry from a :class:`FileDigest`."""
        return cls(path=digest.path, sha256=digest.sha256, size=digest.size, role=role)


class DatasetRef(BaseModel):
    """A dataset name and version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str


class GitState(BaseModel):
    """The commit the code ran from and whether the tree had uncommitted changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha: str | None = None
    dirty: bool | None = None


class Manifest(BaseModel):
    """An artefact manifest (see ``ordinal/schemas/manifest.v1.json`` for the field rules)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    experiment_id: str
    dataset: DatasetRef
    phase: Phase
    git: GitState
    created_at: str
    tool_versions: dict[str, str]
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[FileEntry] = Field(default_factory=list)
    outputs: list[FileEntry] = Field(default_factory=list)
    record_counts: dict[str, int] = Field(default_factory=dict)
    _source_bytes: bytes | None = PrivateAttr(default=None)

    def to_json(self) -> bytes:
        """Serialise deterministically (sorted keys, two-space indent, trailing newline)."""
        data = self.model_dump(mode="json")
        for side in ("inputs", "outputs"):
            # Optional file fields are omitted rather than null, keeping manifests compact.
            data[side] = [{k: v for k, v in e.items() if v is not None} for e in data[side]]
        return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    def output(self, role: str) -> FileEntry:
        """Return the single output with ``role``; raise :class:`ManifestError` if not one."""
        found = [o for o in self.outputs if o.role == role]
        if len(found) != 1:
            raise ManifestError(f"manifest has {len(found)} outputs with role {role!r}, expected 1")
        return found[0]


@cache
def manifest_schema() -> dict[str, Any]:
    """Return the manifest JSON Schema (package data ``ordinal/schemas/manifest.v1.json``)."""
    text = resources.files("ordinal").joinpath("schemas", SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


@cache
def _fast_validator() -> Any:
    import fastjsonschema

    return fastjsonschema.compile(manifest_schema())


def schema_errors(data: Any) -> list[str]:
    """Return the JSON Schema violations of ``data``, one readable line each (empty if valid)."""
    import fastjsonschema

    # The common case, a valid manifest, through a compiled validator: importing jsonschema
    # costs ~2 s in a fresh process (notebook kernels), which only an invalid one pays to
    # get every violation listed.
    try:
        _fast_validator()(data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def validate_manifest(data: Any, *, key: str | None = None) -> Manifest:
    """Validate a decoded manifest against the schema and return it as a :class:`Manifest`.

    Raises
    ------
    ManifestError
        With every schema violation listed.
    """
    errors = schema_errors(data)
    if errors:
        raise ManifestError("manifest does not match schema v1", key=key, errors=errors)
    return Manifest.model_validate(data)


def git_state(cwd: str | os.PathLike[str] | None = None) -> GitState:
    """Return the current git commit and dirty flag, or unknowns outside a git checkout.

    Only read-only git commands are run.
    """
    where = str(cwd or Path.cwd())
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return GitState()
    head = sha.stdout.strip() if sha.returncode == 0 else None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return GitState(sha=head or None, dirty=dirty)


def tool_versions() -> dict[str, str]:
    """Return the versions of Python and the packages that shape the artefacts."""
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def utc_now() -> str:
    """Return the creation time as ISO 8601 UTC (``SOURCE_DATE_EPOCH`` pins it for rebuilds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (
        _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC)
        if epoch
        else _dt.datetime.now(tz=_dt.UTC)
    )
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_manifest(
    *,
    phase: Phase,
    dataset: str,
    version: str,
    inputs: Iterable[FileEntry] = (),
    outputs: Iterable[FileEntry] = (),
    record_counts: Mapping[str, int] | None = None,
    parameters: Mapping[str, Any] | None = None,
    experiment_id: str | None = None,
) -> Manifest:
    """Build a manifest with the git state, tool versions and creation time filled in.

    ``experiment_id`` defaults to ``$ORDINAL_EXPERIMENT_ID``, then ``{dataset}-{version}``.
    """
    return Manifest(
        experiment_id=experiment_id or os.environ.get(EXPERIMENT_ENV) or f"{dataset}-{version}",
        dataset=DatasetRef(name=dataset, version=version),
        phase=phase,
        git=git_state(),
        created_at=utc_now(),
        tool_versions=tool_versions(),
        parameters=dict(parameters or {}),
        inputs=list(inputs),
        outputs=sorted(outputs, key=lambda e: e.path),
        record_counts=dict(record_counts or {}),
    )


def write_manifest(storage: Storage, key: str, manifest: Manifest) -> FileEntry:
    """Validate ``manifest`` against the schema and write it atomically to ``key``."""
    data = json.loads(manifest.to_json())
    validate_manifest(data, key=key)
    digest = storage.put_bytes(manifest.to_json(), key)
    return FileEntry.from_digest(digest, role="manifest")


def read_manifest_bytes(storage: Storage, key: str) -> tuple[Manifest, bytes]:
    """Read the manifest at ``key`` once; return it validated, with the exact bytes read.

    A phase records the sha256 of those bytes as an input, so what it checked and what it
    recorded cannot differ.

    Raises
    ------
    ManifestError
        If it is missing, not JSON, or violates the schema.
    """
    try:
        raw = storage.get_bytes(key)
    except ObjectNotFoundError:
        raise ManifestError("manifest not found", key=key) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}", key=key) from None
    return validate_manifest(data, key=key), raw


def read_manifest(storage: Storage, key: str) -> Manifest:
    """Read and schema-validate the manifest at ``key`` (see :func:`read_manifest_bytes`)."""
    return read_manifest_bytes(storage, key)[0]


def verify_entries(storage: Storage, entries: Iterable[FileEntry]) -> None:
    """Re-hash every listed file and compare with the manifest.

    Raises
    ------
    InputChangedError
        For the first file whose sha256 or size differs, or that is missing; the error names
        the file and both checksums.
    """
    for entry in entries:
        try:
            found = storage.sha256(entry.path)
        except ObjectNotFoundError:
            raise InputChangedError(
                entry.path, entry.sha256, "<missing>", detail="file listed in manifest is gone"
            ) from None
        if found.sha256 != entry.sha256 or found.size != entry.size:
            raise InputChangedError(
                entry.path,
                entry.sha256,
                found.sha256,
                detail=f"size {entry.size} -> {found.size}; it changed after its manifest",
            )


def load_verified_manifest(
    storage: Storage, key: str, *, phase: Phase | None = None, verify: bool = True
) -> Manifest:
    """Read a manifest, validate it, check its phase, and verify the checksums of its outputs.

    This is how a phase accepts the outputs of an earlier phase as its inputs.

    Parameters
    ----------
    storage : Storage
        Where the manifest and its outputs live.
    key : str
        The manifest's key.
    phase : str or None
        The phase the manifest must come from.
    verify : bool
        Re-hash the outputs (True) or only validate the manifest (False: for callers that
        hash while reading, such as preprocessing).
    """
    manifest, raw = read_manifest_bytes(storage, key)
    if phase is not None and manifest.phase != phase:
        raise ManifestError(
            f"expected a {phase!r} manifest, found phase {manifest.phase!r}", key=key
        )
    if verify:
        verify_entries(storage, manifest.outputs)
    # The exact bytes validated, for callers that record the manifest as an input.
    manifest._source_bytes = raw
    return manifest


def manifest_entry(manifest: Manifest, key: str) -> FileEntry:
    """Return the input entry for a manifest read by :func:`load_verified_manifest`."""
    from ordinal.artifacts.checksums import sha256_bytes

    raw = manifest._source_bytes
    if raw is None:
        raise ManifestError("manifest was not read from storage", key=key)
    return FileEntry(path=key, sha256=sha256_bytes(raw), size=len(raw), role="manifest")
