"""Registering a new source: checksum it, check its declaration, append it to a registry.

:func:`add_source` takes a local file or folder or a URI, computes the sha256 (a folder's
canonical-listing sha256, :func:`ordinal.artifacts.sha256_tree`), validates the entry like
the registry loader does (name, dataset, version, format, labels, label_values, columns,
licence, owner), checks that the declared columns exist and counts the label values that
match the declared set, and appends the entry to a registry file for review. The file's
comments and existing entries are kept byte for byte; ``registry_version`` is bumped; the
new file replaces the old one atomically, and only after it was re-read and found to hold
exactly the old entries plus the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from ordinal.artifacts.checksums import HashingReader, sha256_tree
from ordinal.artifacts.storage import staging_dir
from ordinal.data._readers import Cols, iter_csv, iter_jsonl, iter_parquet
from ordinal.data.columns import Columns
from ordinal.data.errors import DataFormatError, RegistryError, SourceExistsError
from ordinal.data.labels import LabelMatcher
from ordinal.data.sources import (
    _SCHEMES,
    DEFAULT_REGISTRY,
    REGISTRY_ENV,
    SourceSpec,
    _errors,
    fetch_source,
    parse_registry,
)

__all__ = ["AddedSource", "add_source", "target_registry_path"]

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
_NEW_REGISTRY = (
    "# Approved-source registry: the only sources `ordinal data ingest` will fetch.\n"
    "# Entries are added with `ordinal data add-source` and reviewed like code; see\n"
    "# docs/data-layer.md (Approved sources; Labels and columns).\n"
    "registry_version: 0\n"
    "sources:\n"
)
_VERSION_LINE = re.compile(r"^registry_version:[ \t]*(\d+)[ \t]*(#.*)?$", re.MULTILINE)
_SOURCES_LINE = re.compile(r"^sources:[ \t]*(\[[ \t]*\])?[ \t]*(#.*)?$", re.MULTILINE)
_TOP_LEVEL = re.compile(r"^[^\s#-]", re.MULTILINE)
_ITEM = re.compile(r"^([ \t]*)- ", re.MULTILINE)
_PLACEHOLDER_SHA = "0" * 64


@dataclass(frozen=True)
class AddedSource:
    """What :func:`add_source` appended.

    Attributes
    ----------
    source : SourceSpec
        The validated entry, with its computed sha256.
    registry : Path
        The registry file written.
    registry_version : int
        Its new ``registry_version``.
    created : bool
        True when the registry file did not exist and was created.
    label_counts : dict of str to int
        Records per declared label found in the data (label order).
    unmatched : dict
        Label values outside the declared set and how often each occurs (the 20 most
        frequent, as text); preprocessing will quarantine these records.
    records : int
        Records whose label was read.
    """

    source: SourceSpec
    registry: Path
    registry_version: int
    created: bool
    label_counts: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    records: int = 0


def target_registry_path(registry: str | os.PathLike[str] | None = None) -> Path:
    """The registry :func:`add_source` writes: ``registry``, ``$ORDINAL_SOURCES``, or
    ``./sources/approved.yaml`` (created when missing).

    Never the copy shipped inside an installed package: that one is read-only data.
    """
    if registry is not None:
        return Path(registry)
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_REGISTRY


def _uri_of(location: str | os.PathLike[str]) -> tuple[str, Path | None]:
    text = os.fspath(location)
    scheme = urlparse(text).scheme
    if scheme != "file" and (scheme in _SCHEMES or "://" in text):
        return text, None  # a URI; an unsupported scheme is refused with the entry
    path = Path(urlparse(text).path if scheme == "file" else text).expanduser()
    if not path.exists():
        raise DataFormatError(str(path), "no such file or folder")
    path = path.resolve()
    return path.as_uri(), path


def _format_of(uri: str, local: Path | None, given: str | None) -> str:
    if given:
        return given
    if local is not None and local.is_dir():
        return "image_folder"
    suffix = Path(urlparse(uri).path).suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    raise DataFormatError(
        uri, "cannot tell the format from the name; pass format (csv, jsonl, parquet, image_folder)"
    )


def _entry(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as it is written: fixed key order, defaults left out."""
    order = (
        "name",
        "dataset",
        "version",
        "uri",
        "sha256",
        "format",
        "labels",
        "label_values",
        "columns",
        "licence",
        "owner",
        "description",
    )
    out = {k: values[k] for k in order if values.get(k) not in (None, "", {})}
    if "labels" in out:
        out["labels"] = list(out["labels"])
    if "columns" in out:
        given = out["columns"]
        out["columns"] = {k: given[k] for k in ("id", "text", "file", "label") if k in given}
        out["columns"].update({k: v for k, v in given.items() if k not in out["columns"]})
    return out


def _validate(entry: Mapping[str, Any], registry: Path) -> SourceSpec:
    try:
        return SourceSpec.model_validate(entry)
    except ValidationError as exc:
        label = f"source {entry.get('name')!r}"
        raise RegistryError(
            f"{label} is not a valid entry: {_errors(exc)}", path=str(registry), entries=[label]
        ) from None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # An exclusive lock on the folder (not the file, which is replaced): two add-source runs
    # on one registry take turns instead of one losing the other's entry.
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _scan(rows: Iterator[tuple], labels: tuple[str, ...], label_values: str) -> tuple:
    matcher = LabelMatcher(labels, label_values)  # type: ignore[arg-type]
    counts: Counter[int] = Counter()
    unmatched: Counter[str] = Counter()
    n = 0
    for _row, _rid, _content, label, problem in rows:
        if problem is not None:
            continue
        n += 1
        idx = matcher.match(label)
        if idx is None:
            unmatched[str(label)] += 1
        else:
            counts[idx] += 1
    return n, counts, unmatched


def _survey(spec: SourceSpec, root: Path) -> tuple[int, Counter[int], Counter[str]]:
    """Check the declared columns exist and count label values in the data at ``root``."""
    cols: Cols = spec.columns.for_kind(spec.kind)
    if spec.kind == "image":
        labels_file = root / "labels.csv"
        if not labels_file.is_file():
            raise DataFormatError(str(root), "an image folder needs a labels.csv")
        with labels_file.open("rb") as fh:
            return _scan(iter_csv(HashingReader(fh), str(labels_file), cols), *_decl(spec))
    if spec.format == "parquet":
        return _scan(iter_parquet(root, str(root), cols), *_decl(spec))
    reader = iter_csv if spec.format == "csv" else iter_jsonl
    with root.open("rb") as fh:
        return _scan(reader(HashingReader(fh), str(root), cols), *_decl(spec))


def _decl(spec: SourceSpec) -> tuple[tuple[str, ...], str]:
    return spec.labels, spec.label_values


def _append(text: str, entry: dict[str, Any], where: str) -> tuple[str, int]:
    """Return ``text`` with ``entry`` appended to ``sources`` and the version bumped."""
    version = _VERSION_LINE.search(text)
    if version is None:
        raise RegistryError("no top-level 'registry_version: N' line to bump", path=where)
    new_version = int(version.group(1)) + 1
    text = f"{text[: version.start(1)]}{new_version}{text[version.end(1) :]}"
    sources = _SOURCES_LINE.search(text)
    if sources is None:
        raise RegistryError("no top-level 'sources:' line to append to", path=where)
    if sources.group(1):  # "sources: []" becomes a block sequence
        text = f"{text[: sources.start(1)].rstrip(' ')}{text[sources.end(1) :]}"
        sources = _SOURCES_LINE.search(text)
        assert sources is not None
    after = sources.end()
    following = _TOP_LEVEL.search(text, after + 1)
    end = following.start() if following else len(text)
    item = _ITEM.search(text, after, end)
    indent = item.group(1) if item else "  "
    dumped = yaml.safe_dump(
        [entry], sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    )
    block = "".join(indent + line + "\n" for line in dumped.splitlines())
    head, tail = text[:end], text[end:]
    if not head.endswith("\n"):
        head += "\n"
    if item is not None and not head.endswith("\n\n"):
        head += "\n"  # a blank line between entries, as the file is written by hand
    if tail:
        block += "\n"
    return head + block + tail, new_version


def add_source(
    location: str | os.PathLike[str],
    *,
    name: str,
    dataset: str,
    labels: list[str] | tuple[str, ...],
    licence: str,
    owner: str,
    version: str = "v1",
    format: str | None = None,
    label_values: str = "name",
    columns: Columns | Mapping[str, str] | None = None,
    description: str = "",
    registry: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
    timeout: float = 60.0,
) -> AddedSource:
    """Checksum a file, folder or URI and append its entry to a registry for review.

    Parameters
    ----------
    location : str or path-like
        A local file or folder, or a ``file://``, ``s3://``, ``https://`` (``http://`` on
        loopback) or ``demo://`` URI. Remote sources are fetched once to be hashed.
    name, dataset, version, labels, label_values, licence, owner, description
        The entry's fields (see :class:`ordinal.data.SourceSpec`).
    format : str or None
        ``csv``, ``jsonl``, ``parquet`` or ``image_folder``; None infers it (a folder is an
        image folder, otherwise the file suffix).
    columns : Columns, mapping or None
        Column names, when they are not ``id``, ``text`` (``file``), ``label``. Only the
        keys given are written.
    registry : path-like or None
        The registry to append to (:func:`target_registry_path`); created when missing.
    endpoint_url : str or None
        S3-compatible endpoint for an ``s3://`` location.

    Returns
    -------
    AddedSource

    Raises
    ------
    RegistryError
        The entry is invalid (naming it and each problem) or the registry cannot be edited.
    SourceExistsError
        The registry already has a source of that name (or that dataset version).
    MissingColumnError, DataFormatError
        A declared column is not in the data; the location does not exist.
    SourceFetchError
        A remote location cannot be read.
    """
    target = target_registry_path(registry)
    uri, local = _uri_of(location)
    fmt = _format_of(uri, local, format)
    if isinstance(columns, Columns):
        column_values = columns.model_dump(exclude_unset=True)
    else:
        column_values = {k: v for k, v in dict(columns or {}).items() if v}
    values: dict[str, Any] = {
        "name": name,
        "dataset": dataset,
        "version": version,
        "uri": uri,
        "sha256": _PLACEHOLDER_SHA,
        "format": fmt,
        "labels": list(labels),
        "label_values": label_values,
        "columns": column_values,
        "licence": licence,
        "owner": owner,
        "description": description,
    }
    # Everything that can be refused without reading the data is refused first.
    spec = _validate(_entry(values), target)
    _refuse_existing(target, spec)

    with staging_dir("add-source-") as tmp:
        if local is not None:
            root = local
            sha = sha256_tree(local) if local.is_dir() else _sha256_of(local)
        else:
            fetched = fetch_source(
                spec, Path(tmp) / "src", endpoint_url=endpoint_url, timeout=timeout
            )
            sha = fetched.sha256
            root = fetched.root if spec.kind == "image" else fetched.root / fetched.files[0].path
        spec = _validate(_entry({**values, "sha256": sha}), target)
        records, counts, unmatched = _survey(spec, root)

    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.resolve()  # a link (the checkout's sources/approved.yaml) stays a link
    with _locked(path.parent):
        created = not path.exists()
        text = _NEW_REGISTRY if created else path.read_text("utf-8")
        old_sources = [] if created else list(_load_text(text, str(target)).sources)
        _refuse_existing(target, spec, old_sources)
        new_text, new_version = _append(text, _entry({**values, "sha256": sha}), str(target))
        new = _load_text(new_text, str(target))
        if list(new.sources) != [*old_sources, spec] or new.registry_version != new_version:
            raise RegistryError(
                "could not append without changing other content (is 'sources' a block list?)",
                path=str(target),
            )
        _atomic_write(path, new_text)
    return AddedSource(
        source=spec,
        registry=target,
        registry_version=new_version,
        created=created,
        label_counts={spec.labels[i]: counts.get(i, 0) for i in range(len(spec.labels))},
        unmatched=dict(unmatched.most_common(20)),
        records=records,
    )


def _sha256_of(path: Path) -> str:
    from ordinal.artifacts.checksums import sha256_file

    return sha256_file(path).sha256


def _load_text(text: str, where: str):
    try:
        data = yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError as exc:
        raise RegistryError(f"registry is not valid YAML: {exc}", path=where) from None
    return parse_registry(data, where)


def _refuse_existing(
    target: Path, spec: SourceSpec, sources: list[SourceSpec] | None = None
) -> None:
    if sources is None:
        if not target.exists():
            return
        sources = list(_load_text(target.read_text("utf-8"), str(target)).sources)
    for other in sources:
        if other.name == spec.name:
            raise SourceExistsError(spec.name, str(target), f"a source named {spec.name!r}")
        if (other.dataset, other.version) == (spec.dataset, spec.version):
            raise SourceExistsError(
                spec.name,
                str(target),
                f"source {other.name!r} already makes {spec.dataset}/{spec.version}",
            )


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
