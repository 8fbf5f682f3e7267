"""The approved-source registry and fetching sources into a staging folder.

The registry is a versioned YAML file (:func:`default_registry_path`: ``$ORDINAL_SOURCES``,
``./sources/approved.yaml``, or the copy shipped in the package, which the repository's
``sources/approved.yaml`` links to). Each entry pins one dataset version to a URI and the
sha256 of its bytes, and declares its labels (:mod:`ordinal.data.labels`) and columns.
Ingestion only fetches sources listed there, and only accepts bytes whose checksum matches.

URI schemes:

* ``file:///abs/path`` (a file, or a folder for ``image_folder`` sources);
* ``s3://bucket/key`` (a prefix for folders; endpoint from ``$ORDINAL_S3_ENDPOINT_URL``);
* ``https://host/path`` (``http://`` only for loopback hosts, for local mirrors and tests);
* ``demo://reviews?n=3000&seed=0&fmt=csv`` and ``demo://shapes?n=1000&seed=0&image_size=64``:
  the demo datasets, materialised by the generators in :mod:`ordinal.data.demo_text` and
  :mod:`ordinal.data.demo_images`. They are byte-deterministic, so the pinned sha256 is a
  real check.

A folder's checksum is the canonical-listing sha256 of :func:`ordinal.artifacts.sha256_tree`.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import (
    CHUNK_SIZE,
    FileDigest,
    HashingReader,
    digest_tree,
    listing_sha256,
)
from ordinal.data.columns import Columns
from ordinal.data.errors import RegistryError, SourceFetchError, SourceNotApprovedError
from ordinal.data.labels import LabelValues, label_declaration_problems

REGISTRY_ENV = "ORDINAL_SOURCES"
DEFAULT_REGISTRY = Path("sources") / "approved.yaml"
PACKAGED_REGISTRY = Path("registry") / "approved.yaml"  # relative to this module's folder

Format = Literal["csv", "jsonl", "parquet", "image_folder"]
_SCHEMES = ("file", "s3", "https", "http", "demo")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SECRET_PARAM = re.compile(r"sig|credential|token|secret|passw|key|auth", re.IGNORECASE)


class SourceSpec(BaseModel):
    """One approved source: which bytes a dataset version is made of, and who answers for them.

    Attributes
    ----------
    name : str
        Unique source name (what ``ordinal data ingest`` takes).
    dataset, version : str
        Where the bytes land: ``datasets/raw/{dataset}/{version}/``.
    uri : str
        ``file://``, ``s3://``, ``https://`` or ``demo://`` URI.
    sha256 : str
        Expected sha256 of the file, or the canonical-listing sha256 of a folder.
    format : str
        ``csv``, ``jsonl``, ``parquet`` (text) or ``image_folder`` (images + labels.csv).
    labels : list of str
        The ordered label set, lowest first: the label values exactly as they appear in the
        data (quoted strings in YAML: ``["1", "2", "3"]``).
    label_values : {"name", "index"}
        ``name`` (default): values are matched to ``labels`` by name. ``index``: values are
        0-based positions in ``labels``. Rules and refused (ambiguous) declarations:
        :mod:`ordinal.data.labels`.
    columns : Columns
        Which columns hold the id, the text (``file`` for an image folder's labels file)
        and the label; default ``id``, ``text`` (``file``), ``label``.
    licence, owner : str
        Licence of the data and the person or team accountable for it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dataset: str
    version: str
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Format
    labels: tuple[str, ...]
    label_values: LabelValues = "name"
    columns: Columns = Field(default_factory=Columns)
    licence: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    description: str = ""

    @field_validator("name", "dataset", "version")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return layout.check_component(value)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in _SCHEMES:
            raise ValueError(f"unsupported URI scheme {parsed.scheme!r}; use one of {_SCHEMES}")
        if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
            raise ValueError("plain http is only allowed for loopback hosts; use https")
        # The registry is committed and URIs are copied into manifests: no secrets in them.
        if parsed.username or parsed.password:
            raise ValueError("credentials in a source URI; use the environment instead")
        secret = [k for k in parse_qs(parsed.query) if _SECRET_PARAM.search(k)]
        if secret:
            raise ValueError(f"secret-looking query parameters in a source URI: {secret}")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_written(cls, value: Any) -> Any:
        # Checked before pydantic's coercion: YAML reads [1, 2] as ints and [yes, no] as
        # booleans, and a label must be the value's text exactly as the data holds it.
        problems = label_declaration_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _declaration(self) -> SourceSpec:
        problems = label_declaration_problems(list(self.labels), self.label_values)
        if problems:
            raise ValueError("; ".join(problems))
        self.columns.for_kind(self.kind)
        other = "text" if self.kind == "image" else "file"
        if other in self.columns.model_fields_set:
            raise ValueError(f"columns.{other} does not apply to a {self.format} source")
        return self

    def declared_columns(self) -> dict[str, str]:
        """The columns this source reads, by role (``id``, ``text`` or ``file``, ``label``)."""
        roles = ("id", "file" if self.kind == "image" else "text", "label")
        return dict(zip(roles, self.columns.for_kind(self.kind), strict=True))

    @property
    def kind(self) -> Literal["text", "image"]:
        """``image`` for ``image_folder`` sources, else ``text``."""
        return "image" if self.format == "image_folder" else "text"


class SourceRegistry(BaseModel):
    """The approved-source registry (``sources/approved.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry_version: int = Field(ge=1)
    sources: tuple[SourceSpec, ...]
    path: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> SourceRegistry:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate source names: {dupes}")
        pairs = [(s.dataset, s.version) for s in self.sources]
        clash = sorted({p for p in pairs if pairs.count(p) > 1})
        if clash:
            raise ValueError(f"more than one source for dataset versions: {clash}")
        return self

    def names(self) -> list[str]:
        """Return the approved source names, sorted."""
        return sorted(s.name for s in self.sources)

    def get(self, name: str) -> SourceSpec:
        """Return the source called ``name``; raise :class:`SourceNotApprovedError` if none."""
        for spec in self.sources:
            if spec.name == name:
                return spec
        raise SourceNotApprovedError(name, self.names(), self.path)

    def for_dataset(self, dataset: str, version: str) -> SourceSpec:
        """Return the source that makes ``dataset``/``version``."""
        for spec in self.sources:
            if (spec.dataset, spec.version) == (dataset, version):
                return spec
        raise SourceNotApprovedError(f"{dataset}/{version}", self.names(), self.path)


def packaged_registry_path() -> Path:
    """The registry shipped inside the package (the repository's ``sources/approved.yaml``
    is a link to this file, so there is one copy)."""
    return Path(__file__).resolve().parent / PACKAGED_REGISTRY


def default_registry_path() -> Path:
    """Return the registry to read: ``$ORDINAL_SOURCES``, else ``./sources/approved.yaml``
    when the current folder has one, else the registry shipped in the package.

    Nothing here depends on where the package is installed or on a repository checkout.
    """
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    local = Path.cwd() / DEFAULT_REGISTRY
    if local.is_file():
        return local
    return packaged_registry_path()


def _entry_label(raw: Any, i: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"source {name!r} (entry {i + 1})" if name else f"entry {i + 1}"


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_registry(data: Any, path: str | None = None) -> SourceRegistry:
    """Validate registry data (parsed YAML), naming every entry that is refused.

    Raises
    ------
    RegistryError
        Listing each invalid entry by name with its problems (``entries`` holds the names).
    """
    if not isinstance(data, dict):
        raise RegistryError("registry must be a mapping with 'sources'", path=path)
    raw_sources = data.get("sources")
    if raw_sources is None:
        raw_sources = []
    if not isinstance(raw_sources, list):
        raise RegistryError("'sources' must be a list of entries", path=path)
    problems: list[str] = []
    bad: list[str] = []
    for i, raw in enumerate(raw_sources):
        try:
            SourceSpec.model_validate(raw)
        except ValidationError as exc:
            label = _entry_label(raw, i)
            bad.append(label)
            problems.append(f"{label}: {_errors(exc)}")
    if problems:
        raise RegistryError(
            "invalid registry entries: " + " | ".join(problems), path=path, entries=bad
        )
    try:
        return SourceRegistry.model_validate({**data, "sources": raw_sources, "path": path})
    except ValidationError as exc:
        raise RegistryError(f"invalid registry: {_errors(exc)}", path=path) from None


def load_registry(path: str | os.PathLike[str] | None = None) -> SourceRegistry:
    """Load and validate the approved-source registry (default :func:`default_registry_path`).

    Raises
    ------
    RegistryError
        If the file is missing, not YAML, or has invalid entries (each one named, with its
        problems).
    """
    p = Path(path) if path is not None else default_registry_path()
    try:
        data = yaml.safe_load(p.read_text("utf-8"))
    except FileNotFoundError:
        raise RegistryError("approved-source registry not found", path=str(p)) from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"registry is not valid YAML: {exc}", path=str(p)) from None
    return parse_registry(data, str(p))


@dataclass(frozen=True)
class Fetched:
    """A source materialised in a staging folder.

    Attributes
    ----------
    root : Path
        The staging folder whose contents become ``datasets/raw/{dataset}/{version}/``.
    files : list of FileDigest
        Every file under ``root`` (relative POSIX paths), sorted.
    sha256 : str
        The file's sha256 (single-file sources) or the folder's listing sha256.
    """

    root: Path
    files: list[FileDigest] = field(default_factory=list)
    sha256: str = ""

    @property
    def size(self) -> int:
        """Total bytes fetched."""
        return sum(f.size for f in self.files)


def _copy_hashing(src, dest: Path) -> FileDigest:
    reader = HashingReader(src)
    with dest.open("wb") as out:
        shutil.copyfileobj(reader, out, CHUNK_SIZE)
    return FileDigest(path=dest.name, sha256=reader.hexdigest(), size=reader.size)


def _demo(spec: SourceSpec, dest: Path) -> None:
    parsed = urlparse(spec.uri)
    q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    try:
        if parsed.netloc == "reviews":
            from ordinal.data.demo_text import write_reviews

            fmt = q.get("fmt", "csv")
            write_reviews(
                dest / f"reviews.{fmt}",
                n=int(q.get("n", 3000)),
                seed=int(q.get("seed", 0)),
                fmt=fmt,
            )
        elif parsed.netloc == "shapes":
            from ordinal.data.demo_images import write_shapes

            write_shapes(
                dest,
                n=int(q.get("n", 1000)),
                seed=int(q.get("seed", 0)),
                image_size=int(q.get("image_size", 64)),
            )
        else:
            raise ValueError(f"unknown demo dataset {parsed.netloc!r}; use reviews or shapes")
    except (ValueError, TypeError) as exc:
        raise SourceFetchError(spec.name, spec.uri, str(exc)) from None


def _s3(spec: SourceSpec, dest: Path, endpoint_url: str | None) -> None:
    from ordinal.artifacts.errors import StorageError
    from ordinal.artifacts.storage import S3Storage

    parsed = urlparse(spec.uri)
    key = parsed.path.lstrip("/")
    endpoint = endpoint_url or os.environ.get("ORDINAL_S3_ENDPOINT_URL") or None
    store = S3Storage(parsed.netloc, "", endpoint_url=endpoint)
    try:
        if spec.format == "image_folder":
            keys = store.list(key.rstrip("/"))
            if not keys:
                raise SourceFetchError(spec.name, spec.uri, "no objects under this prefix")
            for k in keys:
                store.download(k, dest / k[len(key.rstrip("/")) + 1 :])
        else:
            store.download(key, dest / Path(key).name)
    except StorageError as exc:
        raise SourceFetchError(spec.name, spec.uri, str(exc)) from None


def _http(spec: SourceSpec, dest: Path, timeout: float) -> FileDigest:
    if spec.format == "image_folder":
        raise SourceFetchError(spec.name, spec.uri, "a folder cannot be fetched over http(s)")
    name = Path(unquote(urlparse(spec.uri).path)).name or "download"
    try:
        # The scheme was checked on the spec (https, or http on loopback only).
        with urllib.request.urlopen(spec.uri, timeout=timeout) as resp:
            return _copy_hashing(resp, dest / name)
    except OSError as exc:
        raise SourceFetchError(spec.name, spec.uri, str(exc)) from None


def fetch_source(
    spec: SourceSpec,
    dest: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    timeout: float = 60.0,
) -> Fetched:
    """Materialise an approved source into the empty folder ``dest`` and checksum it.

    Nothing is compared with the registry here; :func:`ordinal.data.ingest.ingest` does that.

    Raises
    ------
    SourceFetchError
        If the source cannot be read.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    parsed = urlparse(spec.uri)
    copied: FileDigest | None = None  # a digest taken while copying spares a second pass
    if parsed.scheme == "demo":
        _demo(spec, root)
    elif parsed.scheme == "file":
        src = Path(unquote(parsed.path))
        if spec.format == "image_folder":
            if not src.is_dir():
                raise SourceFetchError(spec.name, spec.uri, "not a folder")
            shutil.copytree(src, root, dirs_exist_ok=True, symlinks=True)
        else:
            try:
                with src.open("rb", buffering=0) as fh:
                    copied = _copy_hashing(fh, root / src.name)
            except OSError as exc:
                raise SourceFetchError(spec.name, spec.uri, str(exc)) from None
    elif parsed.scheme == "s3":
        _s3(spec, root, endpoint_url)
    else:
        copied = _http(spec, root, timeout)
    if copied is not None:
        return Fetched(root=root, files=[copied], sha256=copied.sha256)
    try:
        files = digest_tree(root)
    except ValueError as exc:
        raise SourceFetchError(spec.name, spec.uri, str(exc)) from None
    if spec.format == "image_folder":
        sha = listing_sha256(files)
    else:
        if len(files) != 1:
            raise SourceFetchError(spec.name, spec.uri, f"expected one file, found {len(files)}")
        sha = files[0].sha256
    return Fetched(root=root, files=files, sha256=sha)
