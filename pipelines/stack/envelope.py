"""Authenticated encryption of backup streams (AES-256-GCM in chunks, key kept off-database).

Layout: ``MAGIC``, a 4-byte header length, a JSON header, then chunks, each a 4-byte
ciphertext length and the ciphertext. Chunk ``i`` uses nonce ``prefix || i`` and authenticates
the header digest, ``i`` and a "last chunk" flag, so modified, reordered, dropped or
truncated chunks, a swapped header or a wrong key all fail :func:`decrypt_stream`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.stack.errors import BackupTamperedError

MAGIC = b"ORDINAL-BACKUP-1\n"
CHUNK = 1 << 20


def key_id(key: bytes) -> str:
    """A non-secret fingerprint naming the key a backup needs."""
    return hashlib.sha256(b"ordinal-backup-key-id" + key).hexdigest()[:16]


def _aad(header_digest: bytes, index: int, last: bool) -> bytes:
    return header_digest + struct.pack(">I?", index, last)


def _chunks(source: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    current = source.read(CHUNK)
    while True:
        following = source.read(CHUNK)
        yield current, not following
        if not following:
            return
        current = following


def encrypt_stream(source: BinaryIO, sink: BinaryIO, key: bytes, metadata: dict) -> dict:
    """Encrypt ``source`` into ``sink``; return the (non-secret) header written."""
    aead = AESGCM(key)
    prefix = os.urandom(8)
    header = {
        **metadata,
        "alg": "AES-256-GCM",
        "chunk": CHUNK,
        "key_id": key_id(key),
        "nonce_prefix": prefix.hex(),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    digest = hashlib.sha256(header_bytes).digest()
    sink.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
    for index, (plain, last) in enumerate(_chunks(source)):
        nonce = prefix + struct.pack(">I", index)
        cipher = aead.encrypt(nonce, plain, _aad(digest, index, last))
        sink.write(struct.pack(">I", len(cipher)) + cipher)
    return header


def read_header(source: BinaryIO) -> tuple[dict, bytes]:
    """Read and parse the header; return it and its raw bytes."""
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupTamperedError("not an ordinal backup (bad magic)")
    (length,) = struct.unpack(">I", source.read(4))
    raw = source.read(length)
    try:
        return json.loads(raw), raw
    except ValueError as exc:
        raise BackupTamperedError("backup header unreadable") from exc


def decrypt_stream(source: BinaryIO, sink: BinaryIO, key: bytes, *, name: str = "") -> dict:
    """Decrypt and authenticate every chunk of ``source`` into ``sink``; return the header.

    Raises
    ------
    BackupTamperedError
        On any modification, truncation or a key that is not the one the backup names.
    """
    header, raw = read_header(source)
    if header.get("key_id") != key_id(key):
        raise BackupTamperedError(
            "backup was encrypted with another key", backup=name, key_id=header.get("key_id")
        )
    aead = AESGCM(key)
    prefix = bytes.fromhex(header["nonce_prefix"])
    digest = hashlib.sha256(raw).digest()
    index = 0
    while True:
        size = source.read(4)
        if len(size) < 4:
            raise BackupTamperedError(
                "backup truncated before its last chunk", backup=name, chunk=index
            )
        (length,) = struct.unpack(">I", size)
        cipher = source.read(length)
        nonce = prefix + struct.pack(">I", index)
        for last in (False, True):
            try:
                plain = aead.decrypt(nonce, cipher, _aad(digest, index, last))
                break
            except InvalidTag:
                continue
        else:
            raise BackupTamperedError("backup failed authentication", backup=name, chunk=index)
        sink.write(plain)
        if last:
            if source.read(1):
                raise BackupTamperedError("data after the last chunk", backup=name)
            return header
        index += 1
