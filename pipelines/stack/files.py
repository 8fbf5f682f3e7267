"""Atomic file writes and secret files with owner-only permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` so readers see either the old or the new file, never half.

    Parameters
    ----------
    path : Path
        Destination; its parent is created.
    data : bytes or str
        Content; ``str`` is encoded as UTF-8.
    mode : int
        Permission bits of the new file (set before the rename, so a secret is never
        world-readable even for an instant).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_secret(path: Path, value: str) -> Path:
    """Write a secret file readable by its owner only (mode 0600)."""
    return atomic_write(path, value, mode=0o600)


def read_secret(path: Path) -> str:
    """Read a secret file written by :func:`write_secret`."""
    return path.read_text().strip()
