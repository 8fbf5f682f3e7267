"""Checkpoints that leave the VM: upload one to a storage root, restore the newest one.

A spot VM's disk goes away with the VM, so the checkpoint saved on the two-minute warning
(:mod:`ordinal.training.spot`) is copied to object storage before training stops, and the
next VM restores it before it resumes. The storage root is any URL
:func:`ordinal.artifacts.open_storage` takes: ``s3://bucket/prefix/models/checkpoints/<run>``
on a provisioned VM (``ORDINAL_CHECKPOINT_UPLOAD_URL``), or a local folder. Keys under it::

    checkpoint-<N>/<every file of the checkpoint folder>
    checkpoint-<N>/files.json      manifest: relative path, sha256, size of every file, step
    train_spec.json                the settings a resume must keep (``fit.SPEC_FILE``)
    complete/checkpoint-<N>.json   {"step": N, "files_sha256": sha256 of files.json}
    interruptions/spot-interruption-<N>.json   the spot callback's records

Order is what makes it safe: the checkpoint's files and the spec first, then ``files.json``,
then the ``complete/`` marker. A checkpoint is complete only when its marker exists and its
``files.json`` exists with the sha256 the marker names, so an upload cut anywhere (the VM
reclaimed mid-upload) is never taken for a checkpoint. The marker is what makes a step
discoverable by listing one prefix (the :class:`~ordinal.artifacts.Storage` protocol lists
under a prefix, not the root). Restoring downloads into ``checkpoint-<N>.partial-<id>``,
checks every sha256 against ``files.json`` and renames the folder into place, so a broken
download never looks like a checkpoint either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ordinal.artifacts import (
    ChecksumMismatchError,
    ManifestError,
    Storage,
    layout,
    open_storage,
    sha256_bytes,
    sha256_file,
)
from ordinal.artifacts.checksums import iter_tree_files
from ordinal.training.checkpoints import latest_checkpoint

__all__ = [
    "CHECKPOINT_UPLOAD_ENV",
    "COMPLETE_PREFIX",
    "FILES_NAME",
    "checkpoint_upload_url",
    "public_url",
    "remote_checkpoint_steps",
    "restore_from_env",
    "restore_latest_checkpoint",
    "upload_checkpoint",
    "upload_interruption_record",
]

log = logging.getLogger(__name__)

#: The storage root URL checkpoints are uploaded to (set by the provisioner on training VMs).
CHECKPOINT_UPLOAD_ENV = "ORDINAL_CHECKPOINT_UPLOAD_URL"
#: The manifest written last inside ``checkpoint-<N>/``.
FILES_NAME = "files.json"
#: Prefix of the markers that make an uploaded checkpoint complete and discoverable.
COMPLETE_PREFIX = "complete"
#: Interruption records written beside the checkpoints by the spot callback.
INTERRUPTION_RECORD_GLOB = "spot-interruption-*.json"
#: Prefix of the uploaded interruption records.
INTERRUPTIONS_PREFIX = "interruptions"

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_MARKER = re.compile(r"^checkpoint-(\d+)\.json$")


def checkpoint_upload_url(environ: dict[str, str] | None = None) -> str | None:
    """The upload root from ``ORDINAL_CHECKPOINT_UPLOAD_URL``; ``None`` when unset.

    >>> checkpoint_upload_url({}) is None
    True
    >>> checkpoint_upload_url({"ORDINAL_CHECKPOINT_UPLOAD_URL": " s3://b/models/checkpoints/r1 "})
    's3://b/models/checkpoints/r1'
    """
    env = os.environ if environ is None else environ
    return env.get(CHECKPOINT_UPLOAD_ENV, "").strip() or None


def public_url(url: str) -> str:
    """``url`` without user name, password or query (what records and logs may show).

    >>> public_url("s3://key:secret@bucket/prefix?token=x")
    's3://bucket/prefix'
    >>> public_url("/tmp/store")
    '/tmp/store'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _step_of(name: str) -> int | None:
    match = _CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def _spec_file(checkpoint_dir: Path) -> list[Path]:
    """The spec fingerprint beside the checkpoints, when there is one."""
    from ordinal.training.fit import SPEC_FILE  # fit imports this module

    return [checkpoint_dir / SPEC_FILE] if (checkpoint_dir / SPEC_FILE).is_file() else []


def upload_interruption_record(path: Path, store: Storage) -> str:
    """Upload one ``spot-interruption-<N>.json`` under ``interruptions/``; return its key."""
    return store.put_file(path, layout.join(INTERRUPTIONS_PREFIX, Path(path).name)).path


def upload_checkpoint(checkpoint: Path, store: Storage) -> dict[str, Any]:
    """Upload ``checkpoint-<N>/`` (and the files a resume needs beside it) to ``store``.

    Parameters
    ----------
    checkpoint : Path
        A ``checkpoint-<N>`` folder the Trainer saved.
    store : Storage
        The storage root (see the module docstring for the keys written under it).

    Returns
    -------
    dict
        ``url`` (the store's, without credentials), ``step``, ``keys`` (in upload order),
        ``files`` (files of the checkpoint), ``bytes`` (all uploaded) and ``seconds``.

    Raises
    ------
    ValueError
        ``checkpoint`` is not a ``checkpoint-<N>`` folder.
    ordinal.artifacts.StorageError
        An upload failed; no marker was written, so the checkpoint is not taken as uploaded.

    Examples
    --------
    >>> import tempfile
    >>> from ordinal.artifacts import LocalStorage
    >>> root = Path(tempfile.mkdtemp())
    >>> ckpt = root / "run" / "checkpoint-7"
    >>> ckpt.mkdir(parents=True)
    >>> _ = (ckpt / "trainer_state.json").write_text('{"global_step": 7}')
    >>> report = upload_checkpoint(ckpt, LocalStorage(root / "store"))
    >>> report["keys"]
    ['checkpoint-7/trainer_state.json', 'checkpoint-7/files.json', 'complete/checkpoint-7.json']
    """
    checkpoint = Path(checkpoint)
    step = _step_of(checkpoint.name)
    if step is None or not checkpoint.is_dir():
        raise ValueError(f"{checkpoint} is not a checkpoint-<N> folder")
    started = time.perf_counter()
    name = checkpoint.name
    keys: list[str] = []
    files: list[dict[str, Any]] = []
    total = 0
    for rel, full in iter_tree_files(checkpoint):
        digest = store.put_file(full, layout.join(name, rel))
        files.append({"path": rel, "sha256": digest.sha256, "size": digest.size})
        keys.append(digest.path)
        total += digest.size
    sidecars = []
    for path in _spec_file(checkpoint.parent):
        digest = store.put_file(path, path.name)
        sidecars.append({"path": path.name, "sha256": digest.sha256, "size": digest.size})
        keys.append(digest.path)
        total += digest.size
    for path in sorted(checkpoint.parent.glob(INTERRUPTION_RECORD_GLOB)):  # earlier ones
        keys.append(upload_interruption_record(path, store))
        total += path.stat().st_size
    manifest = {"step": step, "checkpoint": name, "files": files, "sidecars": sidecars}
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    keys.append(store.put_bytes(body, layout.join(name, FILES_NAME)).path)
    marker = json.dumps({"step": step, "files_sha256": sha256_bytes(body)}).encode("utf-8")
    keys.append(store.put_bytes(marker, layout.join(COMPLETE_PREFIX, f"{name}.json")).path)
    total += len(body) + len(marker)
    seconds = time.perf_counter() - started
    log.info(
        "uploaded %s (%d files, %d bytes) to %s in %.2f s",
        name,
        len(files),
        total,
        public_url(store.url),
        seconds,
    )
    return {
        "url": public_url(store.url),
        "step": step,
        "keys": keys,
        "files": len(files),
        "bytes": total,
        "seconds": round(seconds, 3),
    }


def _read_manifest(store: Storage, step: int) -> tuple[dict[str, Any], str] | None:
    """``files.json`` of ``checkpoint-<step>`` and its sha256, if marker and manifest agree."""
    name = f"checkpoint-{step}"
    key = layout.join(name, FILES_NAME)
    if not store.exists(key):
        return None
    marker = json.loads(store.get_bytes(layout.join(COMPLETE_PREFIX, f"{name}.json")))
    body = store.get_bytes(key)
    actual = sha256_bytes(body)
    if actual != marker.get("files_sha256"):
        raise ChecksumMismatchError(
            f"{key} under {public_url(store.url)}", str(marker.get("files_sha256")), actual
        )
    try:
        manifest = json.loads(body)
        entries = manifest["files"] + manifest.get("sidecars", [])
        for entry in entries:
            layout.join(entry["path"])  # no absolute or parent-relative path
            str(entry["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"unreadable checkpoint manifest: {exc}", key=key) from exc
    return manifest, actual


def remote_checkpoint_steps(store: Storage) -> list[int]:
    """Steps of the checkpoints whose upload completed (marker and ``files.json``), newest
    first. A half-uploaded checkpoint (no marker, or no ``files.json``) is left out."""
    steps = []
    for key in store.list(COMPLETE_PREFIX):
        match = _MARKER.match(key.rsplit("/", 1)[-1])
        if match and store.exists(layout.join(f"checkpoint-{match.group(1)}", FILES_NAME)):
            steps.append(int(match.group(1)))
    return sorted(steps, reverse=True)


def _download_verified(store: Storage, key: str, dest: Path, entry: dict[str, Any]) -> int:
    store.download(key, dest)
    digest = sha256_file(dest)
    if digest.sha256 != entry["sha256"] or digest.size != int(entry["size"]):
        raise ChecksumMismatchError(
            f"{key} under {public_url(store.url)}",
            entry["sha256"],
            digest.sha256,
            detail=f"size {digest.size}, expected {entry['size']}",
        )
    return digest.size


def _restore_records(store: Storage, checkpoint_dir: Path) -> int:
    """Copy the uploaded interruption records this folder lacks (they are informational:
    the run summary reads them); an unreadable one is skipped with a warning."""
    total = 0
    for key in store.list(INTERRUPTIONS_PREFIX):
        name = key.rsplit("/", 1)[-1]
        dest = checkpoint_dir / name
        if dest.exists() or not Path(name).match(INTERRUPTION_RECORD_GLOB):
            continue
        body = store.get_bytes(key)
        try:
            json.loads(body)
        except ValueError:
            log.warning("skipping unreadable interruption record %s", key)
            continue
        tmp = checkpoint_dir / f".{name}.partial-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(body)
        os.replace(tmp, dest)
        total += len(body)
    return total


def restore_latest_checkpoint(store: Storage, checkpoint_dir: Path) -> Path | None:
    """Download the newest uploaded checkpoint into ``checkpoint_dir`` unless it has one as new.

    Parameters
    ----------
    store : Storage
        The storage root :func:`upload_checkpoint` wrote to.
    checkpoint_dir : Path
        The Trainer's output folder (``<output_dir>/checkpoints``).

    Returns
    -------
    Path or None
        The ``checkpoint-<N>`` folder restored; ``None`` when the store holds no complete
        checkpoint or ``checkpoint_dir`` already has a complete one at step ``N`` or later.

    Raises
    ------
    ordinal.artifacts.ChecksumMismatchError
        A downloaded file (named in the message) is not the one ``files.json`` lists; nothing
        is left in ``checkpoint_dir`` but what was there before.
    """
    checkpoint_dir = Path(checkpoint_dir)
    steps = remote_checkpoint_steps(store)
    if not steps:
        return None
    step = steps[0]
    local = latest_checkpoint(checkpoint_dir)
    if local is not None and (_step_of(local.name) or 0) >= step:
        log.info("%s is as new as the uploaded checkpoint-%d: nothing to restore", local, step)
        return None
    found = _read_manifest(store, step)
    if found is None:  # files.json deleted between the listing and now
        return None
    manifest, _ = found
    started = time.perf_counter()
    name = f"checkpoint-{step}"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir.glob("checkpoint-*.partial-*"):  # a restore killed midway
        shutil.rmtree(stale, ignore_errors=True)
    partial = checkpoint_dir / f"{name}.partial-{uuid.uuid4().hex[:8]}"
    total = 0
    staged: list[tuple[Path, Path]] = []
    try:
        for entry in manifest["files"]:
            rel = layout.join(entry["path"])
            total += _download_verified(store, layout.join(name, rel), partial / rel, entry)
        for entry in manifest.get("sidecars", []):
            tmp = checkpoint_dir / f".{entry['path']}.partial-{uuid.uuid4().hex[:8]}"
            staged.append((tmp, checkpoint_dir / entry["path"]))
            total += _download_verified(store, layout.join(entry["path"]), tmp, entry)
        final = checkpoint_dir / name
        if final.exists():  # an incomplete local copy (killed mid-save): the upload wins
            shutil.rmtree(final)
        os.replace(partial, final)
        for tmp, dest in staged:
            os.replace(tmp, dest)
        total += _restore_records(store, checkpoint_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    log.info(
        "restored %s from %s (%d bytes) in %.2f s",
        name,
        public_url(store.url),
        total,
        time.perf_counter() - started,
    )
    return final


def restore_from_env(checkpoint_dir: Path, environ: dict[str, str] | None = None) -> Path | None:
    """:func:`restore_latest_checkpoint` from ``ORDINAL_CHECKPOINT_UPLOAD_URL``; ``None``
    (and nothing read) when it is unset."""
    url = checkpoint_upload_url(environ)
    if url is None:
        return None
    return restore_latest_checkpoint(open_storage(url), checkpoint_dir)
