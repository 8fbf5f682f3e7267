"""Ed25519 keys, fingerprints and the detached signature ``bundle.sig``.

A private key is a PKCS#8 PEM file (mode 0600); its public key is written beside it as
``{name}.pub`` (SubjectPublicKeyInfo PEM). A fingerprint is ``sha256:`` plus the hex sha256 of
the raw 32-byte public key, so any consumer can compute it without parsing PEM or DER.

``bundle.sig`` is canonical JSON ``{"algorithm", "key_fingerprint", "public_key",
"signature"}`` (standard base64). The signature is over the exact bytes given, never a
re-serialisation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ordinal.release.canonical import canonical_json
from ordinal.release.errors import SignatureError, SigningKeyError

__all__ = [
    "ALGORITHM",
    "TrustedKeys",
    "fingerprint",
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "public_key_bytes",
    "sign_document",
    "verify_document",
]

ALGORITHM = "ed25519"


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32 bytes of a public key (of a private key: of its public half)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> str:
    """``sha256:<hex>`` of the raw public key.

    >>> fingerprint(bytes(32))
    'sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925'
    """
    raw = key if isinstance(key, bytes) else public_key_bytes(key)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def generate_signing_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> str:
    """Write a new Ed25519 private key to ``path`` (0600) and its public key to ``path.pub``.

    Returns the key's fingerprint. An existing key is never replaced unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise SigningKeyError(f"{path} exists; refusing to replace a signing key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    Path(f"{path}.pub").write_bytes(pub)
    return fingerprint(key)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PKCS#8 PEM, unencrypted)."""
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path}") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file, PEM bytes, or the raw 32 bytes."""
    if isinstance(source, bytes) and len(source) == 32:
        return Ed25519PublicKey.from_public_bytes(source)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(f"not a PEM public key ({source!r:.80}): {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source!r:.80} is a {type(key).__name__}, not Ed25519")
    return key


def sign_document(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The ``bundle.sig`` bytes for ``data``: canonical JSON with the signature and key."""
    raw_pub = public_key_bytes(key)
    return canonical_json(
        {
            "algorithm": ALGORITHM,
            "key_fingerprint": fingerprint(raw_pub),
            "public_key": base64.b64encode(raw_pub).decode("ascii"),
            "signature": base64.b64encode(key.sign(data)).decode("ascii"),
        }
    )


@dataclass(frozen=True)
class SignatureInfo:
    """What a verified ``bundle.sig`` says: the key's fingerprint and its raw bytes."""

    key_fingerprint: str
    public_key: bytes


def verify_document(data: bytes, sig: bytes, *, where: str = "bundle.sig") -> SignatureInfo:
    """Check that ``sig`` (``bundle.sig`` bytes) is a valid Ed25519 signature over ``data``.

    The key inside must match the fingerprint inside. Trust is checked by the caller.

    Raises
    ------
    SignatureError
        Malformed file, fingerprint not matching the key, or a signature that does not verify.
    """
    try:
        doc: Any = json.loads(sig)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{where} is not JSON: {exc}", path=where) from None
    fields = ("algorithm", "key_fingerprint", "public_key", "signature")
    if not isinstance(doc, dict) or sorted(doc) != sorted(fields):
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise SignatureError(f"{where} must have exactly the fields {list(fields)}, got {got}")
    if doc["algorithm"] != ALGORITHM:
        raise SignatureError(f"{where}: algorithm {doc['algorithm']!r}, expected 'ed25519'")
    try:
        raw_pub = base64.b64decode(doc["public_key"], validate=True)
        raw_sig = base64.b64decode(doc["signature"], validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise SignatureError(f"{where}: bad base64: {exc}", path=where) from None
    if len(raw_pub) != 32 or len(raw_sig) != 64:
        raise SignatureError(
            f"{where}: public key of {len(raw_pub)} bytes and signature of {len(raw_sig)} bytes "
            "(expected 32 and 64)",
            path=where,
        )
    if fingerprint(raw_pub) != doc["key_fingerprint"]:
        raise SignatureError(
            f"{where}: key_fingerprint does not match its public_key",
            path=where,
            expected=doc["key_fingerprint"],
            actual=fingerprint(raw_pub),
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw_pub).verify(raw_sig, data)
    except InvalidSignature:
        raise SignatureError(
            "the signature does not verify over the bytes of bundle.json (it changed after "
            "signing, or was signed by another key)",
            path="bundle.json",
        ) from None
    return SignatureInfo(key_fingerprint=doc["key_fingerprint"], public_key=raw_pub)


class TrustedKeys:
    """The keys a verifier trusts: fingerprints, public keys, or PEM files of public keys.

    ``TrustedKeys.any_self_signed()`` accepts any correctly self-signed bundle; verification
    then reports that no trust was checked. An empty set trusts nothing.
    """

    def __init__(self, keys: Iterable[Any] = (), *, accept_any: bool = False) -> None:
        self.fingerprints: set[str] = set()
        self.accept_any = accept_any
        for key in keys:
            self.add(key)

    @classmethod
    def any_self_signed(cls) -> TrustedKeys:
        """Trust any key (tests, inspection); verification results say so."""
        return cls(accept_any=True)

    @classmethod
    def coerce(cls, value: Any) -> TrustedKeys:
        """``value`` as :class:`TrustedKeys` (an instance, None, one key, or an iterable)."""
        if isinstance(value, TrustedKeys):
            return value
        if value is None:
            return cls()
        if isinstance(value, str | bytes | os.PathLike | Ed25519PublicKey | Ed25519PrivateKey):
            return cls([value])
        return cls(value)

    def add(self, key: Any) -> None:
        """Trust ``key``: a ``sha256:`` fingerprint, a key object, raw bytes or a PEM path."""
        if isinstance(key, str) and key.startswith("sha256:"):
            if len(key) != 71 or any(c not in "0123456789abcdef" for c in key[7:]):
                raise SigningKeyError(f"malformed fingerprint {key!r}")
            self.fingerprints.add(key)
        elif isinstance(key, Ed25519PublicKey | Ed25519PrivateKey):
            self.fingerprints.add(fingerprint(key))
        elif isinstance(key, bytes):
            self.fingerprints.add(fingerprint(load_public_key(key)))
        elif isinstance(key, str | os.PathLike):
            path = Path(key)
            if not path.is_file():
                raise SigningKeyError(f"no public key file at {path}")
            self.fingerprints.add(fingerprint(load_public_key(path)))
        else:
            raise SigningKeyError(f"cannot trust {type(key).__name__} {key!r:.60}")

    def trusts(self, key_fingerprint: str) -> bool:
        """Whether a bundle signed by ``key_fingerprint`` is accepted."""
        return self.accept_any or key_fingerprint in self.fingerprints

    def __repr__(self) -> str:
        mode = "any self-signed" if self.accept_any else f"{len(self.fingerprints)} keys"
        return f"TrustedKeys({mode})"
