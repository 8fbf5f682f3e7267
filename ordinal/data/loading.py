"""Reading processed splits back: verified against the processed manifest, as training records.

:func:`load_split` is how notebooks and flows get the records :func:`ordinal.data.preprocess`
wrote: the split file is hashed in the same pass that reads it and refused unless its sha256
and size are the manifest's, and every image is checked the same way before it is decoded.
:func:`dataset_labels` gives the ordered label names recorded with the split.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import CHUNK_SIZE, HashingReader, sha256_bytes
from ordinal.artifacts.errors import InputChangedError, ManifestError, ObjectNotFoundError
from ordinal.artifacts.layout import Split
from ordinal.artifacts.manifest import FileEntry, Manifest, load_verified_manifest
from ordinal.artifacts.storage import Storage, open_storage
from ordinal.data.errors import DataFormatError

__all__ = ["dataset_labels", "load_split"]


def _store(storage: Storage | str | None, endpoint_url: str | None) -> Storage:
    if storage is not None and not isinstance(storage, str):
        return storage
    return open_storage(storage, endpoint_url=endpoint_url)


def _processed(store: Storage, dataset: str, version: str) -> Manifest:
    key = layout.processed_manifest(dataset, version)
    # Outputs are verified one by one as they are read, not all up front (verify=False).
    return load_verified_manifest(store, key, phase="preprocess", verify=False)


def _changed(entry: FileEntry, found: str, size: int) -> InputChangedError:
    return InputChangedError(
        entry.path,
        entry.sha256,
        found,
        detail=f"size {entry.size} -> {size}; it changed after its manifest, refusing to read it",
    )


def _read_verified(store: Storage, entry: FileEntry, limit: int | None) -> list[str] | bytes:
    """The JSONL lines (up to ``limit``) or the Parquet bytes of ``entry``, hash-checked.

    The whole file is hashed even when ``limit`` stops parsing early, so a partial read is
    verified exactly like a full one. Nothing is returned before the check passes.
    """
    parquet = entry.path.endswith(".parquet")
    lines: list[str] = []
    try:
        with store.open_read(entry.path) as fh:
            reader = HashingReader(fh)
            if parquet:
                data = io.BufferedReader(reader, CHUNK_SIZE).read()
            else:
                text = io.TextIOWrapper(io.BufferedReader(reader, CHUNK_SIZE), encoding="utf-8")
                for line in text:
                    if limit is not None and len(lines) >= limit:
                        break
                    if line.strip():
                        lines.append(line)
                while reader.read(CHUNK_SIZE):  # the rest still counts towards the hash
                    pass
    except ObjectNotFoundError:
        raise InputChangedError(
            entry.path, entry.sha256, "<missing>", detail="file listed in manifest is gone"
        ) from None
    found = reader.hexdigest()
    if found != entry.sha256 or reader.size != entry.size:
        raise _changed(entry, found, reader.size)
    return data if parquet else lines


def _rows(entry: FileEntry, content: list[str] | bytes, limit: int | None) -> list[dict[str, Any]]:
    if isinstance(content, bytes):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(content))
        return (table if limit is None else table.slice(0, limit)).to_pylist()
    rows = []
    for number, line in enumerate(content, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataFormatError(entry.path, f"line {number} is not JSON: {exc}") from None
    return rows


def _image_record(
    store: Storage, prefix: str, row: dict[str, Any], images: dict[str, FileEntry]
) -> dict[str, Any]:
    from PIL import Image

    key = layout.join(prefix, row["file"])
    entry = images.get(key)
    if entry is None:
        raise ManifestError(f"image {key} of record {row['id']!r} is not listed in the manifest")
    try:
        data = store.get_bytes(key)
    except ObjectNotFoundError:
        raise InputChangedError(
            key, entry.sha256, "<missing>", detail="file listed in manifest is gone"
        ) from None
    found = sha256_bytes(data)
    if found != entry.sha256 or len(data) != entry.size:
        raise _changed(entry, found, len(data))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return {"id": row["id"], "file": row["file"], "image": image, "label": int(row["label"])}


def load_split(
    dataset: str,
    version: str,
    split: Split,
    *,
    storage: Storage | str | None = None,
    endpoint_url: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Read one processed split as records for training or evaluation, checksums verified.

    The processed manifest is schema-validated; the split file is hashed while it is read and
    nothing is returned unless its sha256 and size match the manifest's ``split:{split}``
    entry. Images are checked the same way, one by one, before they are decoded.

    Parameters
    ----------
    dataset, version : str
        The processed dataset version (written by :func:`ordinal.data.preprocess`).
    split : {"train", "validation", "test"}
        Which split.
    storage : Storage, root URL or None
        Where the dataset lives (default :func:`ordinal.artifacts.open_storage`).
    endpoint_url : str or None
        S3-compatible endpoint for an ``s3://`` root.
    limit : int or None
        Return only the first ``limit`` records (file order); None returns all.

    Returns
    -------
    list of dict
        Text records ``{"id": str, "text": str, "label": int}``; image records
        ``{"id": str, "file": str, "image": PIL.Image.Image (RGB), "label": int}``. Labels
        are indices into :func:`dataset_labels`.

    Raises
    ------
    ManifestError
        The processed manifest is missing, invalid, from another phase, or does not list the
        split (or one of its images).
    InputChangedError
        The split file or an image is missing or differs from its manifest entry; the error
        names the file and both checksums.
    LayoutError
        ``split`` is not one of ``train``, ``validation``, ``test`` (or a name is unsafe).
    ValueError
        ``limit`` is negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    prefix = layout.processed_split(dataset, version, split)
    store = _store(storage, endpoint_url)
    manifest = _processed(store, dataset, version)
    entry = manifest.output(f"split:{split}")
    rows = _rows(entry, _read_verified(store, entry, limit), limit)
    if str(manifest.parameters.get("kind", "text")) == "image":
        images = {o.path: o for o in manifest.outputs if o.role == f"image:{split}"}
        return [_image_record(store, prefix, row, images) for row in rows]
    return [{"id": r["id"], "text": r["text"], "label": int(r["label"])} for r in rows]


def dataset_labels(
    dataset: str,
    version: str,
    *,
    storage: Storage | str | None = None,
    endpoint_url: str | None = None,
) -> tuple[str, ...]:
    """The ordered label names of a processed dataset version (label ``k`` is ``names[k]``).

    Read from the processed manifest, which records the label set preprocessing used.

    Raises
    ------
    ManifestError
        The processed manifest is missing or invalid, or records no labels.
    """
    key = layout.processed_manifest(dataset, version)
    labels = _processed(_store(storage, endpoint_url), dataset, version).parameters.get("labels")
    if not labels:
        raise ManifestError("processed manifest records no label names", key=key)
    return tuple(str(name) for name in labels)
